"""R3D-18 / R3D-34 baselines (Hara, Kataoka, Satoh; QAFE-Net Table 3 "Kataoka et al. ArXiv'20").

QAFE-Net's Table 3 (UNBC-McMaster VAS) lists R3D-18 and R3D-34 with an "MLP
head" at 80 and 144 input frames; no adaptation code is released. The backbone
follows kenshohara/3D-ResNets-PyTorch ``models/resnet.py`` with the released
``r3d{18,34}_{KM,K}_200ep.pth`` weights (:class:`methods.backbones.r3d.R3DEncoder`).
The harness's choices, documented here and as options:

* Head (``clip_mode = "subclips"``, default): the clip is cut into its ``n``
  consecutive 16-frame sub-clips (80 -> 5, 144 -> 9; R3D's pretraining
  ``sample_duration`` is 16); each gives a 512-d feature; QAFE-Net's MLP evaluator
  (:class:`methods.qafe_net.Evaluator`, 512-256-128-1) scores every sub-clip and
  the prediction is their mean -- the same head as the Former-DFER baseline
  (``methods.former_dfer``), which shares Table 3 with R3D.
  ``aggregate = "features"`` averages the sub-clip features before the MLP instead.
  ``clip_mode = "whole"`` feeds the full clip (80 or 144 frames) to R3D at once;
  its adaptive average pool makes one 512-d feature.
* Input: 112 x 112 crops (``sample_size`` 112) of frames resized to
  ``frame_resize`` (default ``"128x128"``: the face crop resized, then cropped to
  112 as C3D-style pipelines do; ``"112x112"`` = the original validation transform
  Resize(112) + CenterCrop(112), the whole face; ``"none"``: a 112 crop of the
  256 face crop). Pixels in [0, 1] with the Kinetics mean / std (``mean.py``,
  ``value_scale`` 1): InputSpec ``"kinetics"``.
* Weights: role ``backbone``; option ``pretrained_variant`` ``"KM"`` (default,
  Kinetics-700 + Moments in Time, 1039 classes: the README's headline models) or
  ``"K"`` (Kinetics-700, 700 classes) selects the file name
  (``r3d18_KM_200ep.pth`` / ``r3d18_K_200ep.pth`` ...); the classifier is dropped.
* Loss and optimisation: the paper gives none for the baselines; as the
  Former-DFER baseline, QAFE-Net's (BMC, SGD lr 1e-3, momentum 0.9, wd 1e-4,
  StepLR 40 / 0.1, 100 epochs, batch 4), the whole network fine-tuned (the
  original's fine-tuning default ``--ft_begin_module ''``: all layers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Mapping

import torch
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig
from benchmark.errors import ConfigError
from methods.checkpoints import register_sources
from methods.backbones.r3d import (R3D_FILES, R3D_PRETRAIN_CLASSES, R3D_SOURCES, R3DEncoder,
                                   load_r3d_checkpoint)
from methods.qafe_net import (_LOSS_OPTIONS, Evaluator, build_bmc_or_mse, param_groups_with_sigma,
                              qafe_training_defaults)

#: File names of the original sources (for ``methods.checkpoints.ORIGINAL_SOURCES``).
ORIGINAL_SOURCES = dict(R3D_SOURCES)
register_sources(ORIGINAL_SOURCES)

_RESIZES: dict[str, tuple[int, int] | None] = {"128x128": (128, 128), "112x112": (112, 112), "none": None}


class R3DRegressor(nn.Module):
    """R3D encoder + QAFE-Net MLP evaluator.

    Args:
        depth: 18 or 34.
        geometry: clip geometry (``n`` sub-clips of ``L`` frames, RGB side ``S``).
        clip_mode: ``"subclips"`` (one feature per ``L``-frame sub-clip) or ``"whole"``
            (the whole clip at once).
        aggregate: ``"scores"`` (MLP per sub-clip, mean of the scores) or
            ``"features"`` (mean of the sub-clip features, then the MLP).

    ``forward(rgb)``: ``(B, 3, n*L, S, S)`` Kinetics-normalised -> ``(B,)`` scores.
    Keys: ``encoder.*`` (3D-ResNets names), ``evaluator.evaluator.layer{1,2,3}.*``.

    Raises:
        ConfigError: unknown ``clip_mode`` / ``aggregate`` or depth.
    """

    def __init__(self, depth: int = 18, geometry: ClipGeometry | None = None, clip_mode: str = "subclips",
                 aggregate: str = "scores") -> None:
        super().__init__()
        if clip_mode not in ("subclips", "whole"):
            raise ConfigError(f"clip_mode must be 'subclips' or 'whole', got {clip_mode!r}")
        if aggregate not in ("scores", "features"):
            raise ConfigError(f"aggregate must be 'scores' or 'features', got {aggregate!r}")
        self.geometry = geometry or ClipGeometry(5, 16, 112, 56)
        self.clip_mode, self.aggregate = clip_mode, aggregate
        self.encoder = R3DEncoder(depth)
        self.evaluator = Evaluator(1)

    def clip_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """512-d features ``(B, n, 512)`` (``n = 1`` in ``"whole"`` mode)."""
        g = self.geometry
        if rgb.dim() != 5 or rgb.shape[1] != 3 or rgb.shape[2] != g.clip_len:
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, {g.rgb_size}, {g.rgb_size}), got {tuple(rgb.shape)}")
        b = rgb.shape[0]
        if self.clip_mode == "whole":
            return self.encoder(rgb).unsqueeze(1)
        n, t = g.n_subclips, g.subclip_len
        x = rgb.reshape(b, 3, n, t, *rgb.shape[-2:]).permute(0, 2, 1, 3, 4, 5).reshape(b * n, 3, t, *rgb.shape[-2:])
        return self.encoder(x).reshape(b, n, -1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        feats = self.clip_features(rgb)
        if self.aggregate == "features":
            feats = feats.mean(dim=1, keepdim=True)
        return self.evaluator(feats).squeeze(-1).mean(dim=1)


class _R3DMethod(Method):
    """Shared adapter of R3D-18 / R3D-34 (subclasses set ``depth``, ``name``, ``display_name``).

    Options: ``pretrained_variant`` (``KM`` | ``K``), ``clip_mode``, ``aggregate``,
    ``frame_resize``, ``loss``, ``bmc_sigma`` (see the module docstring).
    Pretrained file: ``backbone`` = ``r3d<depth>_<variant>_200ep.pth``.
    """

    depth: ClassVar[int] = 18
    repository = "github.com/kenshohara/3D-ResNets-PyTorch"
    licence = "MIT"
    pretraining = "Kinetics-700 (K) / +Moments in Time (KM)"
    reference = ("Hara, Kataoka, Satoh: Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs and ImageNet?, "
                 "CVPR 2018; Kataoka et al.: Would Mega-scale Datasets Further Enhance Spatiotemporal 3D CNNs?, "
                 "arXiv 2004.04968 (2020) (github.com/kenshohara/3D-ResNets-PyTorch); MLP head as in QAFE-Net "
                 "Table 3 (adaptation code not released)")
    options_spec = {
        "pretrained_variant": Option(
            "KM",
            "Which released weights the 'backbone' role names: 'KM' = r3d<depth>_KM_200ep.pth (Kinetics-700 + "
            "Moments in Time, 1039 classes) or 'K' = r3d<depth>_K_200ep.pth (Kinetics-700, 700 classes); "
            "3D-ResNets-PyTorch README. The classifier is dropped either way.",
            choices=("KM", "K")),
        "clip_mode": Option(
            "subclips",
            "'subclips': one R3D feature per consecutive 16-frame sub-clip (the pretraining sample_duration), "
            "scored by the MLP; 'whole': the whole 80- / 144-frame clip through R3D at once (adaptive average "
            "pool). QAFE-Net Table 3 gives only 'MLP head, 80 / 144 frames'.",
            choices=("subclips", "whole")),
        "aggregate": Option(
            "scores",
            "'scores': the MLP scores each sub-clip feature and the scores are averaged (as QAFE-Net and the "
            "Former-DFER baseline); 'features': sub-clip features averaged, then one MLP score.",
            choices=("scores", "features")),
        "frame_resize": Option(
            "128x128",
            "Frame resize (W x H) before the 112 x 112 crop: '128x128', '112x112' (3D-ResNets validation: "
            "Resize(112) + CenterCrop(112), the whole face) or 'none' (crop from the 256 x 256 face crop).",
            choices=tuple(_RESIZES)),
        "loss": Option(_LOSS_OPTIONS["loss"].default,
                       _LOSS_OPTIONS["loss"].help + " For this baseline the paper gives no loss: the harness uses "
                       "QAFE-Net's.", choices=_LOSS_OPTIONS["loss"].choices),
        "bmc_sigma": Option(_LOSS_OPTIONS["bmc_sigma"].default,
                            _LOSS_OPTIONS["bmc_sigma"].help + " (No released code for this baseline.)",
                            choices=_LOSS_OPTIONS["bmc_sigma"].choices),
    }
    learning_recipe = {
        "overfit_steps": 30,
        "options": {"loss": "mse"}, "training": {}, "data": "nuisance_free", "asserted": False,
        "why": "R3D-18 measured 2026-12-02 (2 CPU cores, 244 s + 213 s): true -7.2 vs shuffled -12.1, margin "
               "4.9 < 30 on 'nuisance_free' in 6 epochs from random init (R3D-34 not run); RGB only like "
               "former_dfer, which is seed-dependent there",
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = (0.0, 4.0)) -> None:
        super().__init__(options, geometry, label_range)
        # instance attribute: the file name follows the pretrained_variant option
        self.pretrained_files = {"backbone": R3D_FILES[(self.depth, self.options["pretrained_variant"])]}

    @classmethod
    def accepted_files(cls) -> dict[str, tuple[str, ...]]:
        """Role -> every original file name the role accepts (KM first: the class default)."""
        return {"backbone": (R3D_FILES[(cls.depth, "KM")], R3D_FILES[(cls.depth, "K")])}

    def input_spec(self) -> InputSpec:
        """RGB, Kinetics mean / std, 16-frame sub-clips, 112 crops of ``frame_resize`` frames."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="kinetics", subclip_len=16, rgb_size=112,
                         rgb_resize=_RESIZES[self.options["frame_resize"]], min_rgb_size=16, min_subclip_len=1)

    def build_model(self) -> R3DRegressor:
        return R3DRegressor(self.depth, self.geometry, clip_mode=self.options["clip_mode"],
                            aggregate=self.options["aggregate"])

    def build_loss(self) -> nn.Module:
        return build_bmc_or_mse(self.options)

    def training_defaults(self) -> TrainingConfig:
        """QAFE-Net's settings (the harness's choice: the paper gives none for the baselines)."""
        return qafe_training_defaults()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        return param_groups_with_sigma(model, loss, cfg)

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load ``backbone`` (``r3d<depth>_{KM,K}_200ep.pth``) into ``model.encoder`` (``fc`` dropped, strict).

        Returns JSON-able ``{"backbone": {...}, "random_init": [...]}``; ``backbone`` notes when the
        file's classifier width does not match the ``pretrained_variant`` (e.g. a 700-class file
        under the KM name). Raises ConfigError (unknown role) or CheckpointError.
        """
        self.check_pretrained_roles(files, f"backbone ({' or '.join(self.accepted_files()['backbone'])})")
        info: dict[str, Any] = {}
        random_init = ["evaluator"]
        if "backbone" in files:
            name = self.pretrained_files["backbone"]
            info["backbone"] = load_r3d_checkpoint(model.encoder, files["backbone"], expected_name=name)
            n_cls = info["backbone"]["n_pretrain_classes"]
            want = R3D_PRETRAIN_CLASSES[self.options["pretrained_variant"]]
            if n_cls is not None and n_cls != want:
                info["backbone"]["note"] = (f"the file's classifier has {n_cls} classes, variant "
                                            f"{self.options['pretrained_variant']!r} ({name}) has {want}")
        else:
            random_init.append("encoder")
        info["random_init"] = random_init
        return info


class R3D18Method(_R3DMethod):
    """R3D-18 baseline (3D ResNet-18, BasicBlock x (2, 2, 2, 2)); see :mod:`methods.r3d`."""

    name = "r3d_18"
    display_name = "R3D-18"
    backbone = "R3D-18"
    depth = 18
    pretrained_files = {"backbone": R3D_FILES[(18, "KM")]}


class R3D34Method(_R3DMethod):
    """R3D-34 baseline (3D ResNet-34, BasicBlock x (3, 4, 6, 3)); see :mod:`methods.r3d`."""

    name = "r3d_34"
    display_name = "R3D-34"
    backbone = "R3D-34"
    depth = 34
    pretrained_files = {"backbone": R3D_FILES[(34, "KM")]}
