"""The method-adapter contract between the harness and every method.

A method is a subclass of :class:`Method` registered under a name (in-tree via
the ``qafe_bench.methods`` entry-point group in ``pyproject.toml``, or by an
installed plugin package through the same group). The harness owns everything
dataset- and protocol-specific (files, splits, clip sampling, augmentation,
heatmap rendering); a method only

* declares which inputs it needs, with its own clip geometry and normalisation
  (:class:`InputSpec`), and whether it needs exemplars (:class:`ExemplarSpec`),
* builds an ``nn.Module``; :meth:`Method.forward` runs it on a batch and may return
  any tensor or dict (a score, a distribution over score bins, class logits,
  group logits with offsets): the engine never assumes its shape,
* computes its loss from that output and the batch (:meth:`Method.loss`) and
  decodes the output to one score per clip, shape ``(B,)`` (:meth:`Method.decode`),
* builds its optimiser parameter groups and training defaults,
* loads the authors' released checkpoints (by original file name and layout),
* declares its own learning-check recipe (:attr:`Method.learning_recipe`).

Its named options (:class:`Option`) carry the paper's value as default and, where
the released code disagrees, the code's value, so that every run records which
it used and the report can list the deviations.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from .errors import ConfigError, MissingWeightsError

INPUTS = ("rgb", "heatmap", "trajectory")
STREAM_SYNCS = ("flip", "flip_crop", "none")


@dataclass(frozen=True)
class ClipGeometry:
    """Sizes of the clips the harness feeds a method (resolved from the method's
    :class:`InputSpec`, the protocol's clip length and the scale; see
    :meth:`benchmark.scales.Scale.resolve`).

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


#: RGB pixel normalisations a method can ask for (:func:`benchmark.protocols.pfed5.to_tensor`):
#: name -> (mean, std) applied after scaling pixels to [0, 1] (None: no mean/std).
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]] | None] = {
    # torchvision / QAFE-Net dataloader/Parkinson_landmarkheatmap.py Normalize
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # [0, 1] only: Former-DFER's DFEW training (originals 2)
    "unit": None,
    # kenshohara/3D-ResNets-PyTorch main.py get_mean_std(value_scale=1, dataset='kinetics')
    "kinetics": ((0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),
    # piergiaj/pytorch-i3d: (x / 255) * 2 - 1, i.e. mean 0.5, std 0.5
    "minus_one_one": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


@dataclass(frozen=True)
class InputSpec:
    """What a method needs from the data pipeline, at the PAPER scale.

    The harness resolves it with the protocol's clip length and the scale into a
    :class:`ClipGeometry` (the ``tiny`` scale shrinks frames and sizes, clamped to
    the ``min_*`` values an architecture needs; the code path is the same).

    Attributes:
        rgb: needs RGB clips ``(B, 3, T, rgb_size, rgb_size)``.
        heatmap: needs landmark heatmap volumes ``(B, 3, T, heatmap_size, heatmap_size)``
            in [0, 1].
        rgb_normalisation: a key of :data:`NORMALISATIONS`: ``"imagenet"`` (ImageNet
            mean/std after scaling to [0, 1], as QAFE-Net's loader), ``"unit"`` ([0, 1]
            only, as Former-DFER's DFEW training), ``"kinetics"`` (3D-ResNets), or
            ``"minus_one_one"`` (I3D, pixels in [-1, 1]).
        heatmap_mode: ``"paper"``, ``"official"`` or ``"points"`` (see
            :mod:`benchmark.data.heatmaps`).
        heatmap_sigma: Gaussian sigma in pixels of the heatmap rendering.
        stream_sync: how training augmentation of the two streams is paired:
            ``"flip"`` (one horizontal-flip draw for RGB and heatmaps, crops drawn
            independently: the paper's "same flip for both"), ``"flip_crop"`` (flip
            and the crop window shared) or ``"none"`` (independent draws, as the
            released loader does).
        subclip_len: frames per sub-clip the backbone takes (16: C3D, I3D, Former-DFER).
        clip_len: frames per clip; None: the protocol's (PFED5 80). ``clip_len //
            subclip_len`` sub-clips.
        rgb_size: side of the square RGB crop in pixels (224; 112 for C3D / R3D).
        rgb_resize: ``(W, H)`` the frames are resized to before cropping (C3D:
            ``(171, 128)``); None: the prepared face crop (256 x 256) as it is.
        heatmap_size, heatmap_resize: heatmap crop side and the size heatmap frames
            are resized to before cropping (56 and 64 in QAFE-Net's loader).
        min_rgb_size, min_subclip_len: the smallest crop / sub-clip the architecture
            takes (C3D's fc6 fixes 112 and 16); the ``tiny`` scale never goes below.
        test_crop: how a test clip's RGB frames become ``rgb_size``: ``"centre"`` (centre crop of
            the resized frame, QAFE-Net's loader) or ``"resize"`` (the whole frame resized,
            TraMP-Former's ``Resize((224, 224))``).
        trajectory: needs landmark trajectories (:mod:`benchmark.data.trajectories`): batches
            then carry ``trajectory (B, V, L, 5)`` (x, y relative to the reference point of the
            video's first frame, in crop pixels; r, g, b of the 1x1 patch at the point in [0, 1])
            and ``index_t (B, L)`` (each frame's position, ``2 idx / L - 1``).
        trajectory_frames: L, frames per trajectory sample (128: TraMP-Former's others).
        trajectory_frames_by_expression: ``((expression, L), ...)`` overriding L per expression
            (TraMP-Former: ``(("sit_at_rest", 64),)``).
        trajectory_points: the V landmark indices (into the dataset's landmark scheme) in model order.
        trajectory_reference: the landmark whose first-frame position is the origin.
        trajectory_reverse_p: probability of reversing a training trajectory in time.
        trajectory_landmarks: the landmark scheme the indices refer to (``insightface_73``-compatible:
            any scheme of 73 points in that order).
    """

    rgb: bool = True
    heatmap: bool = False
    rgb_normalisation: str = "imagenet"
    heatmap_mode: str = "paper"
    heatmap_sigma: float = 1.0
    stream_sync: str = "flip"
    subclip_len: int = 16
    clip_len: int | None = None
    rgb_size: int = 224
    rgb_resize: tuple[int, int] | None = None
    heatmap_size: int = 56
    heatmap_resize: int = 64
    min_rgb_size: int = 8
    min_subclip_len: int = 1
    test_crop: str = "centre"
    trajectory: bool = False
    trajectory_frames: int = 128
    trajectory_frames_by_expression: tuple = ()
    trajectory_points: tuple = ()
    trajectory_reference: int = 0
    trajectory_reverse_p: float = 0.0
    trajectory_landmarks: int = 73

    def trajectory_len(self, expression: str) -> int:
        """Frames per trajectory sample for ``expression`` (the per-expression override, else the default)."""
        return int(dict(self.trajectory_frames_by_expression).get(expression, self.trajectory_frames))

    def __post_init__(self) -> None:
        if self.test_crop not in ("centre", "resize"):
            raise ConfigError(f"unknown test_crop {self.test_crop!r}; choose 'centre' or 'resize'")
        if self.rgb_normalisation not in NORMALISATIONS:
            raise ConfigError(f"unknown rgb_normalisation {self.rgb_normalisation!r}; "
                              f"choose one of {', '.join(NORMALISATIONS)}")
        if self.stream_sync not in STREAM_SYNCS:
            raise ConfigError(f"unknown stream_sync {self.stream_sync!r}; choose one of {', '.join(STREAM_SYNCS)}")
        if self.rgb_resize is not None:
            object.__setattr__(self, "rgb_resize", (int(self.rgb_resize[0]), int(self.rgb_resize[1])))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n in INPUTS if getattr(self, n))


@dataclass(frozen=True)
class ExemplarSpec:
    """A contrastive method's exemplars, supplied by the harness (never by the method).

    Training: one exemplar per sample, drawn (seeded) from the training partition
    of the same expression / fold, never the query video itself. Test:
    ``test_voters`` exemplars per test video drawn (seeded) from the training
    partition; the method decodes one score per voter and the engine averages them.
    Source: CoRe (yuxumin/CoRe) and AQA-TPT (baiyang4/aqa_tpt), ``voter_number`` /
    ``num_voting`` = 10.

    Batches then carry ``batch["exemplar"] = {<input names>: tensors, "label": (B,),
    "index": (B,)}`` (``index``: the exemplar's row in the training partition).
    """

    test_voters: int = 10

    def __post_init__(self) -> None:
        if int(self.test_voters) < 1:
            raise ConfigError(f"ExemplarSpec.test_voters must be >= 1, got {self.test_voters!r}")


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


#: Policies of a :class:`WeightsAssumption` when its released file is absent.
FROM_SCRATCH_POLICIES = ("adapt", "refuse")


@dataclass(frozen=True)
class WeightsAssumption:
    """A part of a method's recipe that assumes one of its released checkpoints is loaded
    (a frozen BatchNorm, a frozen feature extractor, a learning-rate factor for a pretrained
    backbone), and what a run does when that file is absent (the from-scratch policy).

    Declared on :attr:`Method.weights_assumptions`; applied by :meth:`Method.adapt_from_scratch`
    when a run is resolved (:func:`benchmark.runs.resolve`), recorded in the run's config and
    ``result.json`` under ``from_scratch`` (hashed into the run id) and listed as a deviation on
    the table and the method card.

    Attributes:
        role: the :attr:`Method.pretrained_files` role whose file the recipe assumes.
        assumes: what the original recipe does that needs the file (``"the I3D BatchNorm layers
            stay in eval mode (fix_bn)"``).
        policy: ``"adapt"``: without the file the run applies :attr:`options` / :attr:`training`
            (each unless the user set it) and records it; ``"refuse"``: without the file the run is
            refused before training unless the user sets every :attr:`options` value explicitly
            (the error names the file, where it comes from and the ``--set`` that trains anyway).
        adaptation: what the run does instead, in words (shown on tables and method cards).
        options: method option values that implement the adaptation.
        training: training-setting overrides of the adaptation (e.g. ``{"precise_bn": 8}``).
        why: why this policy for this method (the method's docstring says it too).

    Raises:
        ConfigError: an unknown policy, or an ``adapt`` / ``refuse`` assumption with nothing to apply.
    """

    role: str
    assumes: str
    policy: str = "adapt"
    adaptation: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    training: Mapping[str, Any] = field(default_factory=dict)
    why: str = ""

    def __post_init__(self) -> None:
        if self.policy not in FROM_SCRATCH_POLICIES:
            raise ConfigError(f"WeightsAssumption({self.role!r}): unknown policy {self.policy!r}; choose one of "
                              f"{', '.join(FROM_SCRATCH_POLICIES)}")
        if not self.options and not self.training:
            raise ConfigError(f"WeightsAssumption({self.role!r}): an assumption must name the options or "
                              "training settings that adapt to (or, when refused, train anyway without) the file")


#: Values of :attr:`TrainingConfig.amp`.
AMP_MODES = ("none", "bf16", "fp16")


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
        num_workers: DataLoader worker processes (with pinned memory and a prefetch of 2 batches
            per worker on CUDA).
        amp: mixed precision of forward and loss: ``none`` (float32, the paper's), ``bf16``
            (``torch.autocast`` bfloat16, CPU or CUDA) or ``fp16`` (CUDA only, with a gradient
            scaler). Part of the run id: it changes results beyond float32 rounding.
        compile: ``none``, or a ``torch.compile`` backend applied to the model's ``forward``
            (``inductor``; ``aot_eager`` to check the tracing quickly). Not in the run id: results
            equal float32 eager within rounding (``tests/test_engine_speed.py``).
        channels_last: store 4-D / 5-D conv weights and 5-D inputs channels-last (GPU tensor
            cores); not in the run id, same results within rounding.
        precise_bn: before every evaluation, re-estimate the running statistics of the BatchNorm
            layers that train (those in training mode while the model trains; frozen ones are left
            alone) as the plain average over this many training batches, augmentation as in
            training (precise BatchNorm: SlowFast / pytorchvideo ``precise_bn``,
            :func:`benchmark.engine.recompute_bn_statistics`); 0: off (every original evaluates with
            the running averages it trained with). Training itself is unchanged (the random
            streams are forked). Part of the run id unless 0.
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
    amp: str = "none"
    compile: str = "none"
    channels_last: bool = False
    precise_bn: int = 0

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
            if typ is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ConfigError(f"{where}: training setting {key}={value!r} is not a bool (true/false)")
                value = value.lower() in ("true", "1", "yes")
            try:
                setattr(out, key, typ(value))
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: training setting {key}={value!r} is not a {typ.__name__}") from None
        if out.precise_bn < 0:
            raise ConfigError(f"{where}: training setting precise_bn={out.precise_bn!r} must be >= 0 (batches; 0: off)")
        if out.amp not in AMP_MODES:
            raise ConfigError(f"{where}: training setting amp={out.amp!r}; choose one of {', '.join(AMP_MODES)}")
        return out


class Method:
    """Base class of a method adapter.

    Subclasses set the class attributes and override :meth:`build_model`; the other
    hooks have defaults that fit most regression methods.

    Class attributes:
        name: registry name (``qafe_net``).
        display_name: name in tables (``QAFE-Net``).
        reference: citation and original repository.
        repository: the original implementation's repository (``github.com/owner/name``).
        licence: its software licence as its repository states it (``MIT``; ``none stated``:
            all rights reserved, so this project re-implements from facts and ships none of it).
        backbone, pretraining: as the paper's tables print them (``I3D``, ``K-400``).
        options_spec: named options (:class:`Option`).
        pretrained_files: role -> original checkpoint file name, e.g.
            ``{"rgb": "FormerDFER-DFEWset1-model_best.pth"}``; looked up in the
            user's ``--weights`` folder.
        exemplars: None, or an :class:`ExemplarSpec` for contrastive methods (the
            harness then puts ``batch["exemplar"]`` in every batch).
        learning_recipe: the method's learning check (:mod:`benchmark.learning`):
            ``{"options": {...}, "training": {...}, "data": "tiny", "asserted": bool,
            "why": "reason when not asserted"}``; None for non-learners (the dummy).
        weights_assumptions: the parts of the recipe that assume a released file
            (:class:`WeightsAssumption`): the from-scratch policy. Every method with a
            frozen BatchNorm, a frozen extractor or a pretrained-backbone learning-rate factor
            declares one per such part; the conformance suite checks that a run without
            any file either adapts (recorded) or is refused.
        scale_options: scale name -> option values that scale applies beneath the
            user's overrides, for options whose paper value the scale's clip cannot
            hold (AQA-TPT's 20 snippets of a 16-frame ``tiny`` clip). Applied by
            :meth:`benchmark.scales.Scale.options_for`, recorded in the run's options
            (so hashed into its id); never set for ``paper``.

    Args:
        options: option overrides (validated against ``options_spec``).
        geometry: the clip geometry the harness will feed (default: the paper-scale
            geometry of :meth:`input_spec` with an 80-frame clip).
        label_range: ``(min, max)`` of the dataset card's labels (PFED5 severity
            ``(0, 4)``, UNBC VAS ``(0, 10)``), for methods whose output depends on it
            (score bins, score-range normalisation).

    Raises:
        ConfigError: unknown options or values, an empty label range.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    repository: ClassVar[str] = ""
    licence: ClassVar[str] = ""
    backbone: ClassVar[str] = ""
    pretraining: ClassVar[str] = ""
    options_spec: ClassVar[dict[str, Option]] = {}
    pretrained_files: ClassVar[dict[str, str]] = {}
    exemplars: ClassVar[ExemplarSpec | None] = None
    learning_recipe: ClassVar[Mapping[str, Any] | None] = None
    weights_assumptions: ClassVar[tuple[WeightsAssumption, ...]] = ()
    scale_options: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = (0.0, 4.0)) -> None:
        self.options = self.resolve_options(options or {})
        self.label_range = (float(label_range[0]), float(label_range[1]))
        if self.label_range[1] <= self.label_range[0]:
            raise ConfigError(f"method {self.name!r}: label range {label_range!r} is empty")
        if geometry is None:
            spec = self.input_spec()
            n = max(1, (spec.clip_len or 80) // spec.subclip_len)
            geometry = ClipGeometry(n, spec.subclip_len, spec.rgb_size, spec.heatmap_size)
        self.geometry = geometry

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

    @classmethod
    def locate_pretrained(cls, weights_dir: str | Path | None = None) -> dict[str, Path]:
        """Role -> local path of each :attr:`pretrained_files` entry: ``weights_dir/<name>`` or
        ``weights_dir/pretrain/<name>`` (the original file names). Never downloads; missing roles
        are absent (the run then starts from random weights and records it). Methods with a
        library cache of their own (X3D: torch.hub's) override this to look there too.
        """
        out: dict[str, Path] = {}
        if not weights_dir:
            return out
        for role, name in cls.pretrained_files.items():
            for cand in (Path(weights_dir) / name, Path(weights_dir) / "pretrain" / name):
                if cand.is_file():
                    out[role] = cand
                    break
        return out

    def adapt_from_scratch(self, loaded_roles, explicit_options: Mapping[str, Any] | None = None,
                           explicit_training: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Apply the from-scratch policy (:attr:`weights_assumptions`) for a run that loads the
        files of ``loaded_roles`` only: for each assumption whose role is not loaded, an ``adapt``
        assumption sets its option values on :attr:`options` (those the user did not set in
        ``explicit_options``); a ``refuse`` assumption raises unless the user set every one of its
        option values explicitly. Returns one record per assumption not met (JSON-able:
        ``role``, ``file``, ``assumes``, ``policy``, ``adaptation``, ``options`` and ``training``
        actually applied, ``options_before`` (those options' values before), ``by_user``), which :func:`benchmark.runs.resolve` stores in the run's
        config and the engine copies into ``result.json``.

        Raises:
            MissingWeightsError: a ``refuse`` assumption without its file, naming the file, where it
                comes from and the ``--set`` options that train anyway.
        """
        from methods.checkpoints import ORIGINAL_SOURCES

        explicit_options = dict(explicit_options or {})
        explicit_training = dict(explicit_training or {})
        records = []
        for a in self.weights_assumptions:
            if a.role in loaded_roles:
                continue
            file = self.pretrained_files.get(a.role, a.role)
            by_user = bool(a.options) and all(k in explicit_options and explicit_options[k] == v
                                              for k, v in a.options.items())
            if a.policy == "refuse" and not by_user:
                source = ORIGINAL_SOURCES.get(file)
                sets = " ".join(f"--set {k}={str(v).lower() if isinstance(v, bool) else v}"
                                for k, v in a.options.items())
                raise MissingWeightsError(
                    f"method {self.name!r} assumes the released {file} ({a.assumes}), and it is not in the "
                    f"weights folder: put it there and pass --weights DIR"
                    + (f" (it comes from: {source})" if source else "")
                    + f", or train without it with {sets} ({a.adaptation}; recorded as a deviation)")
            options = {k: v for k, v in a.options.items() if k not in explicit_options}
            training = {k: v for k, v in a.training.items() if k not in explicit_training}
            before = {k: self.options[k] for k in options}
            self.options.update(self.resolve_options({**self.options, **options}))
            records.append({"role": a.role, "file": file, "assumes": a.assumes, "policy": a.policy,
                            "adaptation": a.adaptation, "options": options, "options_before": before,
                            "training": training, "by_user": by_user})
        return records

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
        """A fresh model for :attr:`geometry` (called by :meth:`forward`; by default
        ``forward(**inputs)`` with the :meth:`input_spec` names as keyword arguments)."""
        raise NotImplementedError

    def build_loss(self) -> nn.Module:
        """The training loss module handed to :meth:`loss` (its parameters, e.g. a
        learned BMC sigma, are saved with the run). Default: MSE on ``(B,)`` scores."""
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

    def check_pretrained_roles(self, files: Mapping[str, Any], roles: str | None = None) -> None:
        """Refuse checkpoint roles this method does not have (for :meth:`load_pretrained`).

        Args:
            files: role -> path, as given to :meth:`load_pretrained`.
            roles: how to name the accepted roles in the message (default: each role of
                :attr:`pretrained_files` with its original file name).

        Raises:
            ConfigError: naming the unknown role(s) and the accepted ones.
        """
        unknown = sorted(set(files) - set(self.pretrained_files))
        if unknown:
            roles = roles or ", ".join(f"{k} ({v})" for k, v in self.pretrained_files.items()) or "(none)"
            raise ConfigError(f"method {self.name!r} has no pretrained role(s) {unknown}; roles: {roles}")

    def on_train_start(self, model: nn.Module, train_labels: np.ndarray) -> None:
        """Called once before training with all training labels ``(N,)`` (e.g. the
        dummy's mean, a GMM for the GAI loss)."""

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> Any:
        """The model's raw output for a batch: any tensor or dict of tensors.

        ``batch`` holds the :meth:`input_spec` inputs (``rgb (B, 3, T, S, S)``,
        ``heatmap (B, 3, T, s, s)``), ``label (B,)`` and, for methods with
        :attr:`exemplars`, ``exemplar`` (a dict of the same inputs plus ``label``).
        Default: ``model(**inputs)``."""
        return model(**{k: batch[k] for k in self.input_spec().names})

    def loss(self, loss_fn: nn.Module, output: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """The scalar training loss from the model's output and the batch.
        Default: ``loss_fn(output.reshape(-1), batch["label"])`` (a score per clip)."""
        return loss_fn(output.reshape(-1), batch["label"])

    def decode(self, output: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """One score per clip ``(B,)`` in label units from the model's output (for
        metrics). For exemplar methods: the score relative to this batch's exemplar
        (one voter); the engine averages the voters. Default: ``output.reshape(-1)``."""
        return output.reshape(-1)

    def predict(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Scores ``(B,)``: :meth:`decode` of :meth:`forward`."""
        return self.decode(self.forward(model, batch), batch).reshape(-1)


def random_batch(method: Method, batch_size: int, seed: int = 0) -> dict[str, Any]:
    """A batch of random inputs shaped as the harness feeds ``method`` (for shape, cost and
    conformance checks; the values mean nothing).

    Keys: ``label`` ``(B,)`` float (0, 1, 2, 3, 4, 0, ...); ``rgb`` ``(B, 3, T, S, S)`` standard
    normal when ``method.input_spec().rgb`` (T = ``geometry.clip_len``, S = ``geometry.rgb_size``);
    ``heatmap`` ``(B, 3, T, H, H)`` uniform in [0, 1) when it reads heatmaps (H =
    ``geometry.heatmap_size``); ``trajectory`` ``(B, V, L, 5)`` standard normal and ``index_t``
    ``(B, L)`` (``2 idx / L - 1``) when it reads trajectories (L = ``trajectory_frames``); and for a
    method with exemplars, ``exemplar``: the same keys
    drawn from ``seed + 1`` with labels shifted by 2 (mod 5) plus ``index`` ``(B,)``, as the
    protocol pairs each video with an exemplar.
    """
    def inputs(s: int, shift: int) -> dict[str, Any]:
        spec, geometry = method.input_spec(), method.geometry
        g = torch.Generator().manual_seed(s)
        out: dict[str, Any] = {"label": torch.tensor([float((i + shift) % 5) for i in range(batch_size)])}
        if spec.rgb:
            out["rgb"] = torch.randn(batch_size, 3, geometry.clip_len, geometry.rgb_size, geometry.rgb_size,
                                     generator=g)
        if spec.heatmap:
            out["heatmap"] = torch.rand(batch_size, 3, geometry.clip_len, geometry.heatmap_size,
                                        geometry.heatmap_size, generator=g)
        if spec.trajectory:
            length = spec.trajectory_frames
            out["trajectory"] = torch.randn(batch_size, len(spec.trajectory_points), length, 5, generator=g)
            out["index_t"] = (2 * torch.arange(length, dtype=torch.float32) / length - 1).repeat(batch_size, 1)
        return out

    batch = inputs(seed, 0)
    if method.exemplars is not None:
        batch["exemplar"] = {**inputs(seed + 1, 2), "index": torch.arange(batch_size)}
    return batch
