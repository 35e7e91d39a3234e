"""Former-DFER baseline (Zhao & Liu, ACM MM 2021) with an MLP regression head.

QAFE-Net's Table 2 lists "Former-DFER†" (DFEW-pretrained, MLP evaluator) but
releases no code for this PFED5 adaptation. The harness's choice, documented
here: the same RGB encoder QAFE-Net uses (:class:`FormerDFEREncoder`, one 512-d
feature per 16-frame sub-clip), QAFE-Net's MLP evaluator (512-256-128-1, keys
``evaluator.evaluator.layer{1,2,3}``) applied to every sub-clip feature, and the
prediction = the mean over sub-clips (as QAFE-Net averages its token scores).
Loss, optimiser and schedule are QAFE-Net's (BMC, SGD 1e-3, StepLR 40/0.1, 100
epochs, batch 4): the paper gives none for the baselines.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig
from methods.backbones.former_dfer import FORMER_DFER_FILE, FormerDFEREncoder, load_former_dfer_checkpoint
from methods.qafe_net import (_LOSS_OPTIONS, _RGB_OPTIONS, Evaluator, build_bmc_or_mse, param_groups_with_sigma,
                              qafe_training_defaults)


class FormerDFERRegressor(nn.Module):
    """Former-DFER encoder + per-sub-clip MLP score, averaged over sub-clips.

    Args:
        geometry: clip geometry (``n`` sub-clips of ``L`` frames, RGB side ``S``).
        rgb_layout: ``"frames"`` or ``"channel_major"`` (see :class:`FormerDFEREncoder`).

    ``forward(rgb)``: ``(B, 3, n*L, S, S) -> (B,)`` scores in label units.
    """

    def __init__(self, geometry: ClipGeometry | None = None, rgb_layout: str = "frames") -> None:
        super().__init__()
        g = geometry or ClipGeometry()
        self.geometry = g
        self.rgb_encoder = FormerDFEREncoder(image_size=g.rgb_size, frames=g.subclip_len, layout=rgb_layout)
        self.evaluator = Evaluator(1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        g = self.geometry
        if rgb.dim() != 5 or rgb.shape[1] != 3 or rgb.shape[2] != g.clip_len:
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, {g.rgb_size}, {g.rgb_size}), got {tuple(rgb.shape)}")
        feats = self.rgb_encoder.encode_clip(rgb)  # (B, n, 512)
        return self.evaluator(feats).squeeze(-1).mean(dim=1)


class FormerDFERMethod(Method):
    """The Former-DFER† baseline adapter (RGB only).

    Options: ``rgb_layout``, ``rgb_normalisation``, ``pos_embed_resize``, ``loss``,
    ``bmc_sigma`` (as QAFE-Net's; the loss options have no released-code value for
    this baseline). Pretrained file: ``rgb`` = ``FormerDFER-DFEWset1-model_best.pth``.
    """

    name = "former_dfer"
    display_name = "Former-DFER"
    repository = "github.com/zengqunzhao/Former-DFER"
    licence = "MIT"
    backbone = "Former-DFER"
    pretraining = "DFEW"
    reference = ("Zhao & Liu: Former-DFER: Dynamic Facial Expression Recognition Transformer, ACM MM 2021 "
                 "(github.com/zengqunzhao/Former-DFER); MLP regression head as in QAFE-Net Table 2 (adaptation "
                 "code not released)")
    options_spec = {
        "rgb_layout": Option(
            _RGB_OPTIONS["rgb_layout"].default,
            _RGB_OPTIONS["rgb_layout"].help + " The baseline's PFED5 code is not released; 'channel_major' is "
            "what QAFE-Net's released RGB pipeline (the same encoder module) does.",
            choices=_RGB_OPTIONS["rgb_layout"].choices, code_value=_RGB_OPTIONS["rgb_layout"].code_value),
        "rgb_normalisation": _RGB_OPTIONS["rgb_normalisation"],
        "pos_embed_resize": _RGB_OPTIONS["pos_embed_resize"],
        "loss": Option(_LOSS_OPTIONS["loss"].default,
                       _LOSS_OPTIONS["loss"].help + " For this baseline the paper gives no loss: the harness uses "
                       "QAFE-Net's.", choices=_LOSS_OPTIONS["loss"].choices),
        "bmc_sigma": Option(_LOSS_OPTIONS["bmc_sigma"].default,
                            _LOSS_OPTIONS["bmc_sigma"].help + " (No released code for this baseline.)",
                            choices=_LOSS_OPTIONS["bmc_sigma"].choices),
    }
    pretrained_files = {"rgb": FORMER_DFER_FILE}
    learning_recipe = {
        "overfit_steps": 40,
        "options": {"loss": "mse"}, "data": "nuisance_free", "asserted": False,
        "why": "RGB only: at chance on 'tiny' in 6 CPU epochs (2.5 / 6.9 / 6.9 / -7.4 over four recipes); "
               "seed-dependent (11.3 .. 87.8) on 'nuisance_free'; see benchmark/learning.py",
    }

    def input_spec(self) -> InputSpec:
        """RGB only, with the ``rgb_normalisation`` option."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation=self.options["rgb_normalisation"],
                         subclip_len=16, rgb_size=224)

    def build_model(self) -> FormerDFERRegressor:
        return FormerDFERRegressor(self.geometry, rgb_layout=self.options["rgb_layout"])

    def build_loss(self) -> nn.Module:
        return build_bmc_or_mse(self.options)

    def training_defaults(self) -> TrainingConfig:
        """QAFE-Net's settings (the harness's choice: the paper gives none for the baselines)."""
        return qafe_training_defaults()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        return param_groups_with_sigma(model, loss, cfg)

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load ``rgb`` = ``FormerDFER-DFEWset1-model_best.pth`` into the encoder (strict, after
        QAFE-Net's key filter and the ``pos_embed_resize`` handling).

        Returns JSON-able info (``rgb`` details, ``random_init`` parts).
        Raises ConfigError (unknown role) or CheckpointError.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        random_init = ["evaluator"]
        if "rgb" in files:
            info["rgb"] = load_former_dfer_checkpoint(model.rgb_encoder, files["rgb"],
                                                      pos_embed_resize=self.options["pos_embed_resize"])
        else:
            random_init.append("rgb_encoder")
        info["random_init"] = random_init
        return info
