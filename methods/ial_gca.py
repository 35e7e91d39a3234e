"""IAL-GCA baseline (Li et al., AAAI 2023) with an MLP regression head.

QAFE-Net's Table 2 lists "IAL-GCA†": the DFEW-pretrained IAL-GCA network with its
7-way expression head replaced by QAFE-Net's 3-layer MLP regressor. No code or weights
of that adaptation are released (nor any trained IAL-GCA weights); the harness's
reconstruction, each choice a named option:

* Network: :class:`methods.backbones.ial_gca.IALGCANet` (the original ``GenerateModel``
  without ``fc_f``), 16-frame clips of 112 x 112 frames (fixed by the architecture: the
  GCA global convolutions are tied to 14x14 / 7x7 maps and the temporal tokens are
  4096 wide, so the tiny scale runs at 112 px too; see ``min_rgb_size``), pixels in
  [0, 1] (the original divides by 255 and normalises no further).
* ``head``: the 4096-d clip feature x_FER -> ``"mlp"`` QAFE-Net's ``MLP_block`` shape with a
  4096-wide input (4096-256-128-1, keys ``evaluator.evaluator.layer{1,2,3}``: fc_f
  Linear(4096, 7) replaced by the 3-layer MLP) or ``"proj_mlp"`` Linear(4096, 512)
  (``proj``) then QAFE-Net's evaluator unchanged (512-256-128-1).
* ``clip_mode``: an 80-frame PFED5 clip -> ``"subclips"`` 5 consecutive 16-frame sub-clips,
  one score each, averaged (as QAFE-Net and the harness's Former-DFER† do) or
  ``"segments"`` 16 frames sampled from the clip as the original DFEW loader samples a
  video (16 equal segments; random frame per segment in training, the segment centre
  otherwise).
* The auxiliary classifiers (``AUX_fc`` of the GCA blocks) stay in the model so an
  original checkpoint loads strictly, but do not enter the regression loss: their
  targets are DFEW's 7 expression classes, which PFED5 does not have. Nor does the
  intensity-aware loss (a target-vs-most-confusable-class cross-entropy): the regression
  loss is ``loss`` = BMC (QAFE-Net's) or MSE.
* Optimiser (``recipe``): ``"ial"`` the original ``main.py`` (SGD lr 1e-3, momentum 0.9,
  weight decay 0.1, StepLR(7, 0.5), 40 sixteen-frame clips per step) or ``"qafe"``
  (QAFE-Net's ``main_PFED5.py`` settings, as the harness's Former-DFER†).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from einops import rearrange
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig
from benchmark.errors import ConfigError
from benchmark.losses import BMC_SIGMA_LR
from methods.backbones.ial_gca import (FEAT_DIM, FRAME_SIZES, IAL_GCA_FILE, IAL_GCA_SOURCE, MAX_FRAMES, MIN_FRAMES,
                                       IALGCANet, load_ial_gca_checkpoint)
from methods.qafe_net import _LOSS_OPTIONS, Evaluator, MLPBlock, build_bmc_or_mse, qafe_training_defaults

#: Original checkpoint names and sources (for ``methods.checkpoints.ORIGINAL_SOURCES``).
ORIGINAL_SOURCES = {IAL_GCA_FILE: IAL_GCA_SOURCE}

HEADS = ("mlp", "proj_mlp")
CLIP_MODES = ("subclips", "segments")
LAYOUTS = ("frames", "channel_major")
#: Clips of 16 frames per SGD step in the original main.py (DataLoader batch_size=40).
ORIGINAL_BATCH_CLIPS = 40
#: Sub-clips per PFED5 clip at the paper scale (80 frames = 5 x 16).
PAPER_SUBCLIPS = 5


class WideEvaluator(nn.Module):
    """QAFE-Net's ``MLP_block`` with a ``dim``-wide input: ``evaluator.layer1`` dim->256, ReLU,
    ``layer2`` 256->128, ReLU, ``layer3`` 128->1. Shapes ``(..., dim) -> (..., 1)``.
    Source: QAFE-Net ``models/evaluator.py`` (there dim = 512)."""

    def __init__(self, dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.evaluator = MLPBlock(1, dim=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluator(x)


def segment_indices(clip_len: int, frames: int, train: bool, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """Frame indices of the original DFEW sampler (``dataset_DFEW.py``, U = 16 segments, V = 1).

    Training (``_get_train_indices``): ``d = clip_len // frames``; index ``i * d + randint(d)``.
    Otherwise (``_get_test_indices``): ``int(tick / 2 + tick * i)`` with ``tick = clip_len / frames``;
    a clip of exactly ``frames`` frames gives ``0 .. frames - 1`` (the original returns all zeros
    there, i.e. frame 0 sixteen times: not reproduced).

    Returns:
        ``(frames,)`` int64 indices into the clip.

    Raises:
        ValueError: ``clip_len < frames``.
    """
    if clip_len < frames:
        raise ValueError(f"cannot sample {frames} frames from a clip of {clip_len}")
    if train:
        d = clip_len // frames
        return torch.arange(frames) * d + torch.randint(d, (frames,), generator=generator)
    if clip_len == frames:
        return torch.arange(frames)
    tick = clip_len / frames
    return torch.tensor([int(tick / 2.0 + tick * i) for i in range(frames)], dtype=torch.int64)


class IALGCARegressor(nn.Module):
    """IAL-GCA network + MLP score per 16-frame clip.

    Args:
        geometry: clip geometry; ``subclip_len`` = frames per IAL-GCA clip (16 in the
            original), ``rgb_size`` one of :data:`~methods.backbones.ial_gca.FRAME_SIZES` (112).
        clip_mode: ``"subclips"`` (score each of the ``n`` sub-clips, average) or
            ``"segments"`` (:func:`segment_indices` picks ``subclip_len`` frames of the clip).
        head: ``"mlp"`` (:class:`WideEvaluator` 4096-256-128-1) or ``"proj_mlp"``
            (``proj`` Linear(4096, 512) + :class:`methods.qafe_net.Evaluator`).
        rgb_layout: ``"frames"`` (frame ``t`` = ``rgb[:, :, t]``) or ``"channel_major"`` (the
            ``(3, L, H, W)`` memory read as ``L`` RGB triples, what QAFE-Net's loader tensor fed to
            the original ``view(-1, 3, 112, 112)`` would give; see the option's help).

    Keys: ``backbone.s_former.*`` (original ``GenerateModel`` names), ``proj.*`` (``proj_mlp``),
    ``evaluator.evaluator.layer{1,2,3}.*``.

    ``forward(rgb)``: ``(B, 3, n*L, S, S) -> (B,)`` scores in label units.
    :meth:`clip_outputs` gives the per-clip features and auxiliary logits.

    Raises:
        ValueError: unknown mode / head / layout, or a geometry the architecture does not take.
    """

    def __init__(self, geometry: ClipGeometry | None = None, clip_mode: str = "subclips", head: str = "mlp",
                 rgb_layout: str = "frames") -> None:
        super().__init__()
        g = geometry or ClipGeometry(5, 16, 112, 56)
        for name, value, allowed in (("clip_mode", clip_mode, CLIP_MODES), ("head", head, HEADS),
                                     ("rgb_layout", rgb_layout, LAYOUTS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
        self.geometry = g
        self.clip_mode = clip_mode
        self.rgb_layout = rgb_layout
        self.backbone = IALGCANet(g.rgb_size, g.subclip_len, expression_head=False)
        if head == "mlp":
            self.proj = nn.Identity()
            self.evaluator: nn.Module = WideEvaluator(FEAT_DIM)
        else:
            self.proj = nn.Linear(FEAT_DIM, 512)
            self.evaluator = Evaluator(1)

    def _clips(self, rgb: torch.Tensor) -> tuple[torch.Tensor, int]:
        """``(B, 3, n*L, S, S)`` -> ``(B*k, L, 3, S, S)`` IAL-GCA clips (row ``b*k + j``) and ``k``."""
        g = self.geometry
        if rgb.dim() != 5 or rgb.shape[1] != 3 or rgb.shape[2] != g.clip_len \
                or tuple(rgb.shape[-2:]) != (g.rgb_size, g.rgb_size):
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, {g.rgb_size}, {g.rgb_size}), got {tuple(rgb.shape)}")
        L = g.subclip_len
        if self.clip_mode == "segments":
            idx = segment_indices(g.clip_len, L, self.training).to(rgb.device)
            sub = rgb.index_select(2, idx).unsqueeze(1)  # (B, 1, 3, L, S, S)
        else:
            sub = rearrange(rgb, "b c (n t) h w -> b n c t h w", t=L)
        k = sub.shape[1]
        sub = sub.reshape(-1, 3, L, g.rgb_size, g.rgb_size)
        if self.rgb_layout == "frames":
            return sub.permute(0, 2, 1, 3, 4).contiguous(), k
        return sub.contiguous().reshape(-1, L, 3, g.rgb_size, g.rgb_size), k

    def clip_outputs(self, rgb: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per IAL-GCA clip: ``features`` x_FER ``(B, k, 4096)``, ``aux2`` / ``aux3`` ``(B, k, 7)``
        and ``scores`` ``(B, k)`` (``k`` = n sub-clips, or 1 with ``segments``)."""
        clips, k = self._clips(rgb)
        out = self.backbone(clips)
        res = {name: rearrange(v, "(b k) d -> b k d", k=k) for name, v in out.items()}
        res["scores"] = self.evaluator(self.proj(res["features"])).squeeze(-1)
        return res

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.clip_outputs(rgb)["scores"].mean(dim=1)


class IALGCAMethod(Method):
    """The IAL-GCA† baseline adapter (RGB only).

    Options: ``head``, ``clip_mode``, ``rgb_layout``, ``rgb_normalisation``, ``loss``,
    ``bmc_sigma``, ``recipe`` (help strings give the sources and choices). Pretrained file:
    ``backbone`` = ``pretrain_DFEW.pth`` (original ``main.py`` layout; not released).
    """

    name = "ial_gca"
    display_name = "IAL-GCA"
    repository = "github.com/muse1998/IAL-for-Facial-Expression-Recognition"
    licence = "MIT"
    backbone = "IAL-GCA"
    pretraining = "DFEW"
    reference = ("Li, Niu, Zhu, Zhao: Intensity-Aware Loss for Dynamic Facial Expression Recognition in the Wild, "
                 "AAAI 2023 (github.com/muse1998/IAL-for-Facial-Expression-Recognition); MLP regression head as in "
                 "QAFE-Net Table 2 (adaptation code not released)")
    options_spec = {
        "head": Option(
            "mlp",
            "Regression head replacing the 7-way fc_f on the 4096-d clip feature x_FER (QAFE-Net Table 2 'MLP'; "
            "its adaptation code is unreleased). 'mlp': QAFE-Net's 3-layer MLP_block with a 4096-wide input, "
            "4096-256-128-1 (fc_f replaced by the 3-layer regressor); 'proj_mlp': Linear(4096, 512) then QAFE-Net's "
            "Evaluator unchanged (512-256-128-1).", choices=HEADS),
        "clip_mode": Option(
            "subclips",
            "How an 80-frame PFED5 clip reaches the 16-frame network. 'subclips': 5 consecutive 16-frame sub-clips, "
            "one score each, averaged (QAFE-Net's own protocol, main_PFED5.py). 'segments': 16 frames sampled from "
            "the clip like the original DFEW loader (dataset_DFEW.py: 16 segments, a random frame per segment in "
            "training, the segment centre at test).", choices=CLIP_MODES),
        "rgb_layout": Option(
            "frames",
            "How a (3, 16, H, W) sub-clip becomes 16 frames. 'frames': frame t = the RGB planes of time t (the "
            "original's own (16, 3, H, W) input). 'channel_major': the channel-major memory read as consecutive "
            "RGB triples, which is what QAFE-Net's loader tensor (C, T, H, W) fed to the original "
            "view(-1, 3, 112, 112) would give (as QAFE-Net's released pipeline does for Former-DFER; whether its "
            "IAL-GCA run did is unknown).", choices=LAYOUTS),
        "rgb_normalisation": Option(
            "unit",
            "RGB pixel normalisation: 'unit' (/255 only: the original's ToTorchFormatTensor, no mean/std, so a "
            "DFEW checkpoint expects it) or 'imagenet' (QAFE-Net's loader).", choices=("unit", "imagenet")),
        "loss": Option(_LOSS_OPTIONS["loss"].default,
                       _LOSS_OPTIONS["loss"].help + " The original's loss (CE + 0.05 CE(aux layer2) + 0.1 intensity-"
                       "aware CE) is for 7 expression classes and does not apply; the paper gives no loss for this "
                       "baseline, so the harness uses QAFE-Net's. The aux heads do not enter it.",
                       choices=_LOSS_OPTIONS["loss"].choices),
        "bmc_sigma": Option(_LOSS_OPTIONS["bmc_sigma"].default,
                            _LOSS_OPTIONS["bmc_sigma"].help + " (No released code for this baseline.)",
                            choices=_LOSS_OPTIONS["bmc_sigma"].choices),
        "recipe": Option(
            "ial",
            "Optimiser and schedule. 'ial': the original main.py: SGD lr 1e-3, momentum 0.9, weight decay 0.1, "
            "StepLR(step 7, gamma 0.5), 40 sixteen-frame clips per step (8 five-sub-clip clips with "
            "clip_mode='subclips', 40 with 'segments'), 100 epochs (main.py's 1000 is a ceiling: after 100 "
            "epochs the step schedule has cut the lr to 6e-8); the BMC sigma group has no weight decay. 'qafe': "
            "QAFE-Net's main_PFED5.py settings (SGD 1e-3, momentum 0.9, wd 1e-4, StepLR(40, 0.1), 100 epochs, "
            "batch 4), as the harness's Former-DFER† uses.", choices=("ial", "qafe")),
    }
    pretrained_files = {"backbone": IAL_GCA_FILE}
    learning_recipe = {
        "overfit_steps": 20,
        "options": {"loss": "mse"},
        "training": {"optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0, "batch_size": 4},
        "data": "nuisance_free",
        "asserted": False,
        "why": "measured once (2026-12-03): 95.6 vs 33.1, margin 62.4 in 598 s + 570 s on 2 cores; to be "
               "repeated before CI asserts it (RGB only, like Former-DFER, whose margin depends on the seed)",
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = (0.0, 4.0)) -> None:
        super().__init__(options, geometry, label_range)
        g = self.geometry
        if g.rgb_size not in FRAME_SIZES:
            raise ConfigError(f"method 'ial_gca' needs {FRAME_SIZES.start}..{FRAME_SIZES.stop - 1} px frames (the "
                              f"GCA global convolutions are tied to 14x14 / 7x7 maps; the original uses 112), got "
                              f"rgb_size={g.rgb_size}")
        if not MIN_FRAMES <= g.subclip_len <= MAX_FRAMES:
            raise ConfigError(f"method 'ial_gca' takes {MIN_FRAMES}..{MAX_FRAMES} frames per clip (the original 16), "
                              f"got subclip_len={g.subclip_len}")

    def input_spec(self) -> InputSpec:
        """RGB only: 16-frame sub-clips of 112 x 112 frames, the whole face crop resized to 112 (the
        original's test GroupResize(112); no crop, so training keeps only the flip), at least 112 px
        and 2 frames at any scale."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation=self.options["rgb_normalisation"],
                         subclip_len=16, rgb_size=112, rgb_resize=(112, 112), min_rgb_size=112, min_subclip_len=2)

    def build_model(self) -> IALGCARegressor:
        o = self.options
        return IALGCARegressor(self.geometry, clip_mode=o["clip_mode"], head=o["head"], rgb_layout=o["rgb_layout"])

    def build_loss(self) -> nn.Module:
        return build_bmc_or_mse(self.options)

    def training_defaults(self) -> TrainingConfig:
        """``recipe='ial'``: the original main.py settings (see the option); ``'qafe'``: QAFE-Net's."""
        if self.options["recipe"] == "qafe":
            return qafe_training_defaults()
        per_step = ORIGINAL_BATCH_CLIPS if self.options["clip_mode"] == "segments" else \
            ORIGINAL_BATCH_CLIPS // PAPER_SUBCLIPS
        return TrainingConfig(epochs=100, batch_size=per_step, optimizer="sgd", lr=1e-3, momentum=0.9,
                              weight_decay=0.1, lr_step=7, lr_gamma=0.5, reps_per_epoch=5)

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        """All trainable model parameters at ``cfg.lr`` (main.py: ``SGD(model.parameters(), ...)``) plus,
        when the BMC sigma is learned, the sigma at :data:`~benchmark.losses.BMC_SIGMA_LR` with
        ``weight_decay`` 0 (the original's 0.1 would pull the noise scale to zero) and no lr decay.
        Parameters without gradients (aux heads, the original's unused tensors) are skipped by SGD."""
        groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
        sigma = getattr(loss, "noise_sigma", None)
        if isinstance(sigma, nn.Parameter) and sigma.requires_grad:
            groups.append({"params": [sigma], "lr": BMC_SIGMA_LR, "weight_decay": 0.0, "name": "noise_sigma",
                           "decay": False})
        return groups

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load ``backbone`` = ``pretrain_DFEW.pth`` (original ``main.py`` layout: ``module.s_former.*``,
        ``module.fc_f.*``, or that dict under ``"state_dict"``) strictly into ``model.backbone``, dropping the
        7-way ``fc_f`` (recorded; the aux heads are kept and loaded).

        Returns JSON-able info (``backbone`` details, ``random_init`` parts).
        Raises ConfigError (unknown role) or CheckpointError (file missing, unsafe or not fitting).
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        random_init = ["proj", "evaluator"] if isinstance(model.proj, nn.Linear) else ["evaluator"]
        if "backbone" in files:
            info["backbone"] = load_ial_gca_checkpoint(model.backbone, files["backbone"])
        else:
            random_init.append("backbone")
        info["random_init"] = random_init
        return info


from methods.checkpoints import register_sources as _register_sources  # noqa: E402

_register_sources(ORIGINAL_SOURCES)
