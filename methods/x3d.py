"""X3D-S (Feichtenhofer, CVPR 2020) from pytorchvideo's builder, with an MLP regression head.

A method beyond the paper, and the worked example of adding one (README "Adding a
method"). Nothing here re-implements X3D: the backbone is
``pytorchvideo.models.x3d.create_x3d`` (pytorchvideo 0.1.5), built with the hub
settings of ``pytorchvideo.models.hub.x3d.x3d_s`` (13 frames, 160 px; width 2.0,
depth 2.2), and the weights are the official hub checkpoint ``X3D_S.pyth``
(Kinetics-400, top-1 73.33; ``{"model_state": state_dict}`` as ``_x3d`` reads it).

Why X3D-S and not X3D-M: both are the same network (the same 563 state-dict
entries, 3,794,274 parameters with the Kinetics classifier; the hub files differ
only in the weights) and differ only in the input they were trained on, 13 x 160 px
(S) versus 16 x 224 px (M). X3D-S costs 2.96 GFLOPs per view against 6.72
(pytorchvideo model zoo), which matters with 6 sub-clips per PFED5 clip and 5 samples
per video per epoch. An X3D-M adapter is a subclass changing ``name``,
``pretrained_files`` (``X3D_M.pyth``) and :attr:`X3DMethod.variant`.

Changes to the hub model, all recorded in :meth:`X3DMethod.load_pretrained`'s info:

* the Kinetics classifier (``blocks.5.proj``, 2048 -> 400), its dropout (0.5) and
  softmax are dropped;
* the head's fixed ``AvgPool3d((13, 5, 5))`` is replaced by global average pooling.
  At 13 x 160 px the last feature map is exactly ``(13, 5, 5)``, so the two are equal
  there (tested); the global pool also runs the tiny CI geometry (6 frames x 32 px).
* the regression head is QAFE-Net's MLP evaluator layout (``MLP_block``: Linear,
  ReLU, Linear, ReLU, Linear; keys ``evaluator.evaluator.layer{1,2,3}``) widened at
  its input to X3D's pooled 2048-d feature: 2048-256-128-1 (QAFE-Net: 512-256-128-1).
  Keeping the head's pretrained ``post_conv`` (432 -> 2048) keeps every pretrained
  weight but the classifier.

One 2048-d feature per sub-clip, one MLP score per sub-clip, the prediction is the
mean over sub-clips (as :mod:`methods.former_dfer` and QAFE-Net average token scores).

Pixel normalisation: the hub models were trained on [0, 1] frames normalised with
mean 0.45 and std 0.225 on every channel (pytorchvideo ``transforms_factory``
defaults and the torch-hub X3D tutorial). These are NOT torchvision's Kinetics
numbers (mean 0.43216, 0.394666, 0.37645; std 0.22803, 0.22145, 0.216989), so the
method asks the harness for ``unit`` input and normalises inside the model
(:data:`X3D_MEAN`, :data:`X3D_STD`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import torch
from einops import rearrange
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig, WeightsAssumption
from methods.checkpoints import load_strict, read_checkpoint, state_dict_of, strip_prefix
from methods.qafe_net import _LOSS_OPTIONS, MLPBlock, build_bmc_or_mse, param_groups_with_sigma, qafe_training_defaults

X3D_S_FILE = "X3D_S.pyth"
"""Original file name of the X3D-S Kinetics-400 checkpoint (as torch.hub stores it)."""

X3D_SOURCES: dict[str, str] = {
    X3D_S_FILE: ("pytorchvideo model zoo X3D-S Kinetics-400 (top-1 73.33), "
                 "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics/X3D_S.pyth "
                 "(pytorchvideo/models/hub/x3d.py); torch.hub caches it as "
                 "<torch.hub.get_dir()>/checkpoints/X3D_S.pyth"),
}
"""File name -> source, for :data:`methods.checkpoints.ORIGINAL_SOURCES`."""

X3D_MEAN = (0.45, 0.45, 0.45)
X3D_STD = (0.225, 0.225, 0.225)
"""Per-channel mean / std of the pytorchvideo hub X3D models, on [0, 1] RGB."""

FEAT_DIM = 2048
"""Width of X3D's pooled head feature (``blocks.5.pool.post_conv`` output)."""

#: Kinetics classifier entries of the hub state dict, dropped on loading.
KINETICS_HEAD_KEYS = ("blocks.5.proj.weight", "blocks.5.proj.bias")


@dataclasses.dataclass(frozen=True)
class X3DVariant:
    """Settings of one hub X3D model: builder arguments (``pytorchvideo.models.hub.x3d``),
    frames per clip, crop side and the short side frames are resized to before cropping
    (pytorchvideo model zoo: X3D-S 182 -> 160, X3D-M 256 -> 224), in pixels."""

    name: str
    clip_length: int
    crop_size: int
    resize: int
    depth_factor: float = 2.2
    width_factor: float = 2.0


X3D_VARIANTS = {
    "s": X3DVariant("X3D-S", clip_length=13, crop_size=160, resize=182),
    "m": X3DVariant("X3D-M", clip_length=16, crop_size=224, resize=256),
}


def build_x3d_backbone(variant: X3DVariant = X3D_VARIANTS["s"]) -> nn.Module:
    """pytorchvideo's X3D ``Net`` without its Kinetics classifier, globally pooled.

    Built by ``pytorchvideo.models.x3d.create_x3d`` with the hub settings of
    ``variant``; then in the head (``blocks[5]``, ``ResNetBasicHead``) the
    ``AvgPool3d`` of ``ProjectedPool`` becomes ``AdaptiveAvgPool3d(1)`` and
    ``dropout``, ``proj`` and ``activation`` are removed. State-dict keys are the
    hub checkpoint's minus :data:`KINETICS_HEAD_KEYS`.

    ``forward``: ``(B, 3, T, H, W)`` normalised RGB (any ``T >= 1``,
    ``H, W >= 32``) -> ``(B, 2048)``.
    """
    from pytorchvideo.models.x3d import create_x3d  # the models package only (its transforms break on new torchvision)

    net = create_x3d(input_clip_length=variant.clip_length, input_crop_size=variant.crop_size,
                     depth_factor=variant.depth_factor, width_factor=variant.width_factor)
    head = net.blocks[-1]
    head.pool.pool = nn.AdaptiveAvgPool3d(1)
    head.dropout = None
    head.proj = None
    head.activation = None
    return net


class X3DEvaluator(nn.Module):
    """QAFE-Net's ``Evaluator`` layout (key ``evaluator.layer{1,2,3}``) on 2048-d input:
    2048-256-128-1 with ReLUs. Shapes ``(..., 2048) -> (..., 1)``.
    Source: QAFE-Net ``models/evaluator.py`` ``MLP_block`` (input width changed)."""

    def __init__(self, dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.evaluator = MLPBlock(1, dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluator(x)


class X3DRegressor(nn.Module):
    """X3D backbone -> one 2048-d feature per sub-clip -> MLP score, averaged.

    Args:
        geometry: clip geometry (``n`` sub-clips of ``L`` frames, side ``S``).
        variant: the hub X3D model (:data:`X3D_VARIANTS`).

    Submodules: ``backbone`` (:func:`build_x3d_backbone`, keys ``blocks.*``),
    ``evaluator`` (:class:`X3DEvaluator`).

    ``forward(rgb)``: ``rgb (B, 3, n*L, S, S)`` in [0, 1] -> scores ``(B,)`` in label units.
    """

    def __init__(self, geometry: ClipGeometry | None = None, variant: X3DVariant = X3D_VARIANTS["s"]) -> None:
        super().__init__()
        self.geometry = geometry or ClipGeometry()
        self.backbone = build_x3d_backbone(variant)
        self.evaluator = X3DEvaluator()
        self.register_buffer("mean", torch.tensor(X3D_MEAN).view(1, 3, 1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(X3D_STD).view(1, 3, 1, 1, 1), persistent=False)

    def features(self, rgb: torch.Tensor) -> torch.Tensor:
        """Per-sub-clip X3D features: ``(B, 3, n*L, S, S)`` in [0, 1] -> ``(B, n, 2048)``.

        Raises:
            ValueError: ``rgb`` does not have the geometry's shape.
        """
        g = self.geometry
        if rgb.dim() != 5 or rgb.shape[1] != 3 or rgb.shape[2] != g.clip_len:
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, S, S), got {tuple(rgb.shape)}")
        x = (rgb - self.mean) / self.std
        x = rearrange(x, "b c (n t) h w -> (b n) c t h w", n=g.n_subclips)
        return rearrange(self.backbone(x), "(b n) d -> b n d", n=g.n_subclips)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.evaluator(self.features(rgb)).squeeze(-1).mean(dim=1)


def find_x3d_checkpoint(file_name: str = X3D_S_FILE, weights_dir: str | Path | None = None) -> Path | None:
    """Where a local copy of the hub checkpoint is, without downloading anything.

    Looks in ``weights_dir`` (and its ``pretrain/`` folder, as
    :func:`benchmark.runs.find_weights`), then in torch.hub's cache
    ``torch.hub.get_dir()/checkpoints/<file_name>`` (where
    ``torch.hub.load_state_dict_from_url`` put it if the user ever ran
    ``torch.hub.load("facebookresearch/pytorchvideo", "x3d_s", pretrained=True)``).

    Returns:
        The first existing path, or None.
    """
    candidates = []
    if weights_dir:
        candidates += [Path(weights_dir) / file_name, Path(weights_dir) / "pretrain" / file_name]
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / file_name)
    return next((p for p in candidates if p.is_file()), None)


def load_x3d_checkpoint(backbone: nn.Module, path: str | Path, file_name: str = X3D_S_FILE) -> dict[str, Any]:
    """Load a pytorchvideo hub X3D checkpoint into :func:`build_x3d_backbone`'s module.

    Layout (``pytorchvideo/models/hub/x3d.py`` ``_x3d``: ``checkpoint["model_state"]``):
    a dict whose ``model_state`` is the state dict of ``create_x3d``'s ``Net``
    (keys ``blocks.0.*`` .. ``blocks.5.*``; other top-level entries are ignored). A
    ``module.`` prefix (DataParallel) is stripped. The Kinetics classifier
    (:data:`KINETICS_HEAD_KEYS`) is dropped; everything else loads strictly.

    Returns:
        JSON-able info: file, format, tensors loaded, dropped keys, prefix stripped,
        the pooling change.

    Raises:
        CheckpointError: missing / unreadable / unsafe file, no ``model_state``
            entry, or keys / shapes that do not fit (listed, naming the file).
    """
    ckpt = read_checkpoint(path, expected_name=file_name)
    sd = state_dict_of(ckpt, "model_state", path)
    sd, had_module = strip_prefix(sd, "module.")
    dropped = sorted(k for k in KINETICS_HEAD_KEYS if k in sd)
    for k in dropped:
        del sd[k]
    load_strict(backbone, sd, path, "X3D backbone (pytorchvideo create_x3d Net without blocks.5.proj)")
    return {"file": str(path), "format": "pytorchvideo_hub", "tensors": len(sd),
            "dropped": {k: "Kinetics-400 classifier" for k in dropped}, "stripped_module_prefix": had_module,
            "changed": "blocks.5.pool.pool AvgPool3d -> global average (equal at the hub input size)"}


class X3DMethod(Method):
    """X3D-S (pytorchvideo) with QAFE-Net's MLP head widened to 2048 inputs (RGB only).

    From scratch (no ``X3D_S.pyth``): adapts with precise BatchNorm before evaluation.

    Options: ``loss``, ``bmc_sigma`` (QAFE-Net's; no original for this method).
    Pretrained file: ``backbone`` = ``X3D_S.pyth`` (pytorchvideo hub layout), from the
    ``--weights`` folder or torch.hub's cache (:meth:`locate_pretrained`).
    Training settings: QAFE-Net's (the harness's choice, as for the Former-DFER baseline).
    """

    name = "x3d_s"
    display_name = "X3D-S (pytorchvideo)"
    repository = "github.com/facebookresearch/pytorchvideo"
    licence = "Apache-2.0"
    backbone = "X3D-S"
    pretraining = "K-400"
    reference = ("Feichtenhofer: X3D: Expanding Architectures for Efficient Video Recognition, CVPR 2020; "
                 "pytorchvideo 0.1.5 create_x3d + hub X3D_S.pyth (github.com/facebookresearch/pytorchvideo); "
                 "not in the QAFE-Net paper, MLP head as QAFE-Net's evaluator")
    variant = X3D_VARIANTS["s"]
    options_spec = {
        "loss": Option(_LOSS_OPTIONS["loss"].default,
                       _LOSS_OPTIONS["loss"].help + " (Not in the paper: the harness uses QAFE-Net's loss.)",
                       choices=_LOSS_OPTIONS["loss"].choices),
        "bmc_sigma": Option(_LOSS_OPTIONS["bmc_sigma"].default,
                            _LOSS_OPTIONS["bmc_sigma"].help + " (No released code for this method.)",
                            choices=_LOSS_OPTIONS["bmc_sigma"].choices),
    }
    pretrained_files = {"backbone": X3D_S_FILE}
    weights_assumptions = (WeightsAssumption(
        role="backbone",
        assumes="the BatchNorm running statistics start from Kinetics' (X3D_S.pyth) and follow training with "
                "pytorchvideo's momentum 0.1",
        policy="adapt",
        adaptation="BatchNorm statistics re-estimated on training clips before each evaluation (precise "
                   "BatchNorm, 8 batches)",
        training={"precise_bn": 8},
        why="from random initialisation the running averages of a few hundred steps lag the weights: eval-mode "
            "rho 1.2 where the same weights with re-estimated statistics gave 93"),)
    learning_recipe = {
        "overfit_steps": 40,
        "options": {"loss": "mse"},
        "training": {},
        "data": "nuisance_free",
        "asserted": False,
        "why": "measured 2026-12-07 (2 CPU cores, 188 s + 143 s) with precise BatchNorm: true -6.7 vs shuffled "
               "-25.3, margin 18.6 < 30 on 'nuisance_free' in 6 epochs from random init (it memorises 8 clips in "
               "eval mode: the overfit check); RGB only like Former-DFER (seed-dependent there)",
    }

    def input_spec(self) -> InputSpec:
        """RGB only, ``unit`` ([0, 1]; the model applies X3D's mean/std), 13-frame sub-clips at
        160 px cut from face crops resized to 182 x 182 (X3D-S: short side 182, crop 160).

        The clip is the protocol's (``clip_len`` None): as many 13-frame sub-clips as fit,
        PFED5 6 x 13 = 78 of 80 frames, UNBC 11 x 13 = 143 of 144, so X3D sees about the
        frames the 16-frame methods see. ``min_rgb_size`` 32: ``create_x3d`` asserts a crop
        of at least its total spatial stride (32)."""
        v = self.variant
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="unit", subclip_len=v.clip_length,
                           rgb_size=v.crop_size, rgb_resize=(v.resize, v.resize), min_rgb_size=32)

    def build_model(self) -> X3DRegressor:
        """A fresh :class:`X3DRegressor` at this method's geometry (pytorchvideo's initialisation)."""
        return X3DRegressor(self.geometry, self.variant)

    def build_loss(self) -> nn.Module:
        return build_bmc_or_mse(self.options)

    def training_defaults(self) -> TrainingConfig:
        """QAFE-Net's (SGD 1e-3, StepLR 40/0.1, 100 epochs, batch 4): the harness's choice."""
        return qafe_training_defaults()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        return param_groups_with_sigma(model, loss, cfg)

    @classmethod
    def locate_pretrained(cls, weights_dir: str | Path | None = None) -> dict[str, Path]:
        """Role -> local path of :attr:`pretrained_files`: the ``--weights`` folder first, then
        torch.hub's cache (:func:`find_x3d_checkpoint`), where pytorchvideo's own
        ``x3d_s(pretrained=True)`` leaves it; never downloads. Missing roles are absent. The harness
        calls it for every run (``benchmark.runs.find_weights``), with or without ``--weights``."""
        out = {}
        for role, file_name in cls.pretrained_files.items():
            p = find_x3d_checkpoint(file_name, weights_dir)
            if p is not None:
                out[role] = p
        return out

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load ``backbone`` = the hub checkpoint (:func:`load_x3d_checkpoint`).

        Returns JSON-able ``{"backbone": {...}, "random_init": ["evaluator"]}``.
        Raises ConfigError (unknown role) or CheckpointError.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        random_init = ["evaluator"]
        if "backbone" in files:
            info["backbone"] = load_x3d_checkpoint(model.backbone, files["backbone"],
                                                   self.pretrained_files["backbone"])
        else:
            random_init.append("backbone")
        info["random_init"] = random_init
        return info


from methods.checkpoints import register_sources as _register_sources  # noqa: E402

_register_sources(X3D_SOURCES)
