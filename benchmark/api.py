"""The method-adapter contract between the harness and every method.

A method is a subclass of :class:`Method` registered under a name (in-tree via
the ``qafe_bench.methods`` entry-point group in ``pyproject.toml``, or by an
installed plugin package through the same group). The harness owns everything
dataset- and protocol-specific (files, splits, clip sampling, augmentation,
heatmap rendering); a method only

* declares which inputs it needs (:class:`InputSpec`),
* builds an ``nn.Module`` whose ``forward(rgb=..., heatmap=...)`` maps a batch of
  clips to one score per clip, shape ``(B,)``,
* builds its loss, its optimiser parameter groups and training defaults,
* loads the authors' released checkpoints (by original file name and layout).

Its named options (:class:`Option`) carry the paper's value as default and, where
the released code disagrees, the code's value, so that every run records which
it used and the report can list the deviations.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .errors import ConfigError

INPUTS = ("rgb", "heatmap")


@dataclass(frozen=True)
class ClipGeometry:
    """Sizes of the clips the harness feeds a method (set by protocol and scale).

    Attributes:
        n_subclips: sub-clips per clip (5 in the paper's PFED5 setting, 9 for UNBC).
        subclip_len: frames per sub-clip (16 in the paper).
        rgb_size: side of the square RGB crop in pixels (224 in the paper).
        heatmap_size: side of the square heatmap crop in pixels (56 in the paper).

    ``clip_len = n_subclips * subclip_len`` frames (80 for PFED5).
    """

    n_subclips: int = 5
    subclip_len: int = 16
    rgb_size: int = 224
    heatmap_size: int = 56

    @property
    def clip_len(self) -> int:
        return self.n_subclips * self.subclip_len


@dataclass(frozen=True)
class InputSpec:
    """What a method needs from the data pipeline.

    Attributes:
        rgb: needs RGB clips ``(B, 3, T, rgb_size, rgb_size)``.
        heatmap: needs landmark heatmap volumes ``(B, 3, T, heatmap_size, heatmap_size)``
            in [0, 1].
        rgb_normalisation: ``"imagenet"`` (ImageNet mean/std after scaling to [0, 1],
            as QAFE-Net's loader) or ``"unit"`` ([0, 1] only, as Former-DFER's DFEW
            training).
        heatmap_mode: ``"paper"``, ``"official"`` or ``"points"`` (see
            :mod:`benchmark.data.heatmaps`).
        heatmap_sigma: Gaussian sigma in pixels of the heatmap rendering.
        stream_sync: how training augmentation of the two streams is paired:
            ``"flip"`` (one horizontal-flip draw for RGB and heatmaps, crops drawn
            independently: the paper's "same flip for both"), ``"flip_crop"`` (flip
            and the crop window shared) or ``"none"`` (independent draws, as the
            released loader does).
    """

    rgb: bool = True
    heatmap: bool = False
    rgb_normalisation: str = "imagenet"
    heatmap_mode: str = "paper"
    heatmap_sigma: float = 1.0
    stream_sync: str = "flip"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in INPUTS if getattr(self, n))


@dataclass(frozen=True)
class Option:
    """A named method option.

    Attributes:
        default: the value used unless overridden; the paper's where the paper is explicit.
        help: what it controls, with its source (paper section, original file).
        choices: allowed values (None: any value of the default's type).
        code_value: the released code's value where it differs from the paper
            (None when the two agree or the code has no say); recorded in the report.
    """

    default: Any
    help: str
    choices: tuple | None = None
    code_value: Any = None


@dataclass
class TrainingConfig:
    """Optimisation settings of one run (method defaults, then scale, then user overrides).

    Attributes:
        epochs: training epochs.
        batch_size: clips per step.
        optimizer: ``"sgd"`` or ``"adam"``.
        lr, momentum, weight_decay: optimiser settings.
        lr_step, lr_gamma: StepLR every ``lr_step`` epochs by ``lr_gamma`` (``lr_step`` 0: constant).
        reps_per_epoch: each training video is sampled this many times per epoch
            with independent random clips (5 in the official PFED5 loader).
        eval_every: evaluate on the test split every N epochs (the last epoch always).
        grad_clip: max gradient norm (0: none).
        num_workers: DataLoader worker processes.
    """

    epochs: int = 100
    batch_size: int = 4
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 40
    lr_gamma: float = 0.1
    reps_per_epoch: int = 5
    eval_every: int = 1
    grad_clip: float = 0.0
    num_workers: int = 0

    def updated(self, overrides: Mapping[str, Any], where: str) -> "TrainingConfig":
        """A copy with ``overrides`` applied (values coerced to each field's type).

        Raises:
            ConfigError: an unknown field (with a "did you mean") or a bad value.
        """
        names = {f.name: f for f in fields(self)}
        out = TrainingConfig(**{k: getattr(self, k) for k in names})
        for key, value in overrides.items():
            if key not in names:
                hint = difflib.get_close_matches(key, names, n=1)
                raise ConfigError(
                    f"{where}: unknown training setting {key!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else f"; known: {', '.join(names)}")
                )
            typ = type(getattr(self, key))
            try:
                setattr(out, key, typ(value))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: training setting {key}={value!r} is not a {typ.__name__}") from None
        return out


class Method:
    """Base class of a method adapter.

    Subclasses set the class attributes and override :meth:`build_model`; the other
    hooks have defaults that fit most regression methods.

    Class attributes:
        name: registry name (``qafe_net``).
        display_name: name in tables (``QAFE-Net``).
        reference: citation and original repository.
        options_spec: named options (:class:`Option`).
        pretrained_files: role -> original checkpoint file name, e.g.
            ``{"rgb": "FormerDFER-DFEWset1-model_best.pth"}``; looked up in the
            user's ``--weights`` folder.

    Args:
        options: option overrides (validated against ``options_spec``).
        geometry: the clip geometry the harness will feed.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    options_spec: ClassVar[dict[str, Option]] = {}
    pretrained_files: ClassVar[dict[str, str]] = {}

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None) -> None:
        self.geometry = geometry or ClipGeometry()
        self.options = self.resolve_options(options or {})

    # ----------------------------------------------------------------- options
    @classmethod
    def resolve_options(cls, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults updated with ``overrides``, each checked against its choices.

        Raises:
            ConfigError: unknown option (with a "did you mean") or a value outside its choices.
        """
        out = {k: o.default for k, o in cls.options_spec.items()}
        for key, value in overrides.items():
            if key not in cls.options_spec:
                hint = difflib.get_close_matches(key, cls.options_spec, n=1)
                raise ConfigError(
                    f"method {cls.name!r} has no option {key!r}"
                    + (f"; did you mean {hint[0]!r}?" if hint else
                       f"; options: {', '.join(cls.options_spec) or '(none)'}")
                )
            spec = cls.options_spec[key]
            if isinstance(spec.default, bool) and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ConfigError(f"option {key}={value!r} of method {cls.name!r} must be true or false")
                value = value.lower() in ("true", "1", "yes")
            elif isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool) and isinstance(value, str):
                try:
                    value = type(spec.default)(value)
                except ValueError:
                    raise ConfigError(f"option {key}={value!r} of method {cls.name!r} must be a number") from None
            if spec.choices is not None and value not in spec.choices:
                raise ConfigError(
                    f"option {key}={value!r} of method {cls.name!r} must be one of {', '.join(map(str, spec.choices))}"
                )
            out[key] = value
        return out

    def deviations_from_paper(self) -> dict[str, Any]:
        """Options whose resolved value equals the released code's value where it differs from the paper."""
        return {
            k: v for k, v in self.options.items()
            if self.options_spec[k].code_value is not None and v == self.options_spec[k].code_value
            and v != self.options_spec[k].default
        }

    # ------------------------------------------------------------------- hooks
    def input_spec(self) -> InputSpec:
        """The inputs this method needs (default: RGB only, ImageNet normalisation)."""
        return InputSpec()

    def build_model(self) -> nn.Module:
        """A fresh model; ``forward(**inputs)`` with the :meth:`input_spec` names as
        keyword arguments returns scores of shape ``(B,)``."""
        raise NotImplementedError

    def build_loss(self) -> nn.Module:
        """The training loss: ``loss(pred (B,), target (B,)) -> scalar``. Default MSE."""
        return nn.MSELoss()

    def training_defaults(self) -> TrainingConfig:
        """The method's own (paper) optimisation settings."""
        return TrainingConfig()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        """Optimiser parameter groups. Default: every trainable model parameter at ``cfg.lr``.

        A group may carry ``"decay": False`` to keep its learning rate constant under
        the step schedule (``lr_step`` / ``lr_gamma``)."""
        params = [p for p in model.parameters() if p.requires_grad]
        return [{"params": params}] if params else []

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load released checkpoints, ``files`` mapping role -> path (roles of
        :attr:`pretrained_files`). Returns a JSON-able description of what was loaded
        (recorded in the run's provenance).

        Raises:
            CheckpointError: unreadable, unsafe, or mismatching files.
        """
        if files:
            raise ConfigError(f"method {self.name!r} loads no pretrained files, got {sorted(files)}")
        return {}

    def on_train_start(self, model: nn.Module, train_labels: np.ndarray) -> None:
        """Called once before training with all training labels ``(N,)`` (e.g. the
        dummy's mean, a GMM for the GAI loss)."""

    def predict(self, model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Scores ``(B,)`` for a batch dict holding the :meth:`input_spec` inputs."""
        return model(**{k: batch[k] for k in self.input_spec().names})


@dataclass
class RegisteredMethod:
    """A registry entry: name, where it comes from, and the lazily imported class."""

    name: str
    target: str  # "module:attr"
    origin: str  # "in-tree" or the plugin distribution's name
    aliases: Sequence[str] = field(default_factory=tuple)
