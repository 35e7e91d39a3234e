"""TraMP-Former (Duan, Dadashzadeh, Whone, Mirmehdi: "Trajectory-guided Motion Perception for Facial
Expression Quality Assessment in Neurological Disorders", IEEE FG 2025, arXiv 2504.09530;
shuchaoduan/TraMP-Former, MIT licence): the current state of the art on PFED5.

Two streams: RGB clips through Former-DFER (:mod:`methods.backbones.former_dfer`, 512 per 16-frame
sub-clip) and landmark trajectories (:mod:`benchmark.data.trajectories`: 63 points x L frames x
(x, y, r, g, b)) through SkateFormer (:mod:`methods.backbones.skateformer`, 256 per sample). The
RGB sub-clip features go through ``rgb_transform`` Linear(512, 256) and are averaged into one token;
three one-way cross-attention blocks (:class:`TrajectoryGuidedFusion`, queries from the RGB token,
keys and values from the trajectory token) fuse them; an MLP head (256 -> 128 -> 64 -> 1) scores.

Module layout and state-dict keys follow the released ``models/Quality_Model.py``::

    encoder         SkateFormer_DFEW_rgb1x1     ('encoder.*')
    rgb_encoder     FormerDFER                  ('rgb_encoder.s_former.*', 'rgb_encoder.t_former.*')
    fusion          decoder_fuser_1             ('fusion.model.i.*')
    evaluator       MLP_head                    ('evaluator.layer1/2/3')
    rgb_transform   Linear(512, 256)            ('rgb_transform')

Released pretrained files (``models/pretrained_weights/`` in its README): ``FormerDFER_DFEW.pth``
(the Former-DFER DFEW layout QAFE-Net also loads) and ``SkateFormer_256_rgb1x1.pth`` (its own
trajectory encoder pretraining: ``ckpt['model']``, keys with ``module.``, an ``evaluator.head`` the
code drops). Where its paper and code differ, named options (default: the paper, or the code where
the paper is silent) record the choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig
from benchmark.data.trajectories import TRAMP_DEFAULT_FRAMES, TRAMP_FRAMES, TRAMP_POINTS, TRAMP_REFERENCE
from benchmark.errors import CheckpointError, ConfigError
from benchmark.losses import BMCLoss, MSELoss
from methods.backbones.former_dfer import FormerDFEREncoder, load_former_dfer_checkpoint
from methods.backbones.skateformer import SKATEFORMER_FILE, SkateFormerEncoder
from methods.checkpoints import read_checkpoint, register_sources, state_dict_of
from methods.qafe_net import param_groups_with_sigma

TRAMP_RGB_FILE = "FormerDFER_DFEW.pth"
register_sources({
    TRAMP_RGB_FILE: "Former-DFER on DFEW, TraMP-Former README (Google Drive folder models/pretrained_weights/); "
                    "the layout of FormerDFER-DFEWset1-model_best.pth",
    SKATEFORMER_FILE: "SkateFormer trajectory encoder pretrained on DFEW landmark trajectories (rgb1x1 input), "
                      "TraMP-Former README (Google Drive folder models/pretrained_weights/)",
})
DIM = 256


class CrossAttention(nn.Module):
    """``q_map``/``k_map``/``v_map`` Linear(d, d, no bias), h heads, scale ``(d / h) ** -0.5``, ``proj``
    Linear(d, d). ``forward(q (B, N, d), kv (B, M, d)) -> (B, N, d)`` (keys and values from ``kv``).
    Source: TraMP-Former ``models/fusion/vit_decoder_1.py`` ``CrossAttention``."""

    def __init__(self, dim: int = DIM, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.q_map = nn.Linear(dim, dim, bias=False)
        self.k_map = nn.Linear(dim, dim, bias=False)
        self.v_map = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        h = self.heads
        q = rearrange(self.q_map(q), "b n (h d) -> b h n d", h=h)
        k = rearrange(self.k_map(kv), "b m (h d) -> b h m d", h=h)
        v = rearrange(self.v_map(kv), "b m (h d) -> b h m d", h=h)
        # softmax(q k^T * scale) v, fused (scaled_dot_product_attention; golden test: equal within 1e-5)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class _Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class FusionBlock(nn.Module):
    """One-way cross-attention block: ``x = x + CA(norm_q(x), norm_v(y)); x = x + MLP(norm2(x))``
    (MLP 4x, exact GELU). Source: ``vit_decoder_1.py`` ``DecoderBlock`` (the reverse direction is
    commented out there)."""

    def __init__(self, dim: int = DIM, heads: int = 8) -> None:
        super().__init__()
        self.norm_q, self.norm_v, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)
        self.mlp = _Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_v(y))
        return x + self.mlp(self.norm2(x))


class TrajectoryGuidedFusion(nn.Module):
    """``decoder_fuser_1(dim=256, num_heads=8, num_layers=3)``: the RGB token attends to the trajectory
    token through ``blocks`` :class:`FusionBlock` (keys ``model.i``). ``(B, 1, d), (B, 1, d) -> (B, 1, d)``."""

    def __init__(self, dim: int = DIM, heads: int = 8, blocks: int = 3) -> None:
        super().__init__()
        self.model = nn.ModuleList(FusionBlock(dim, heads) for _ in range(blocks))

    def forward(self, rgb: torch.Tensor, trajectory: torch.Tensor) -> torch.Tensor:
        for block in self.model:
            rgb = block(rgb, trajectory)
        return rgb


class RegressionHead(nn.Module):
    """``MLP_head(256)``: ``layer1`` 256->128, ReLU, ``layer2`` 128->64, ReLU, ``layer3`` 64->1."""

    def __init__(self, dim: int = DIM) -> None:
        super().__init__()
        self.activation = nn.ReLU()
        self.layer1, self.layer2, self.layer3 = nn.Linear(dim, dim // 2), nn.Linear(dim // 2, dim // 4), nn.Linear(dim // 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.activation(self.layer2(self.activation(self.layer1(x)))))


class TraMPFormer(nn.Module):
    """TraMP-Former (``Quality_Model``): see the module docstring.

    Args:
        geometry: RGB clip geometry (``n`` sub-clips of ``L`` frames; PFED5: 5 x 16 at 224 px).
        rgb_layout: ``"frames"`` or ``"channel_major"``: the released code hands Former-DFER the
            loader's ``(B, 3, T, H, W)`` clip and S-Former ``view(-1, 3, 224, 224)``-s it, so each
            pseudo-frame is 3 consecutive planes of the channel-major stack of the WHOLE clip (not of
            each sub-clip, as in QAFE-Net's code).
        t_partition_n: SkateFormer's N (8); its M is each input's ``frames // 8`` (8 for 64 frames, 16 for
            128), as ``utils.get_max_len_128``, so one model takes both lengths.

    ``forward(rgb, trajectory, index_t)``: ``rgb (B, 3, n*L, S, S)`` normalised, ``trajectory (B, 63, T, 5)``,
    ``index_t (B, T)`` -> scores ``(B,)``.
    """

    def __init__(self, geometry: ClipGeometry | None = None, rgb_layout: str = "frames", t_partition_n: int = 8,
                 attn_drop: float = 0.5, drop_path: float = 0.2) -> None:
        super().__init__()
        g = geometry or ClipGeometry()
        if rgb_layout not in ("frames", "channel_major"):
            raise ValueError(f"rgb_layout must be 'frames' or 'channel_major', got {rgb_layout!r}")
        self.geometry, self.rgb_layout = g, rgb_layout
        self.encoder = SkateFormerEncoder(in_channels=5, t_partition=(int(t_partition_n), None), p_partition=(7, 9),
                                          num_points=len(TRAMP_POINTS), attn_drop=attn_drop, drop_path=drop_path)
        self.rgb_encoder = FormerDFEREncoder(image_size=g.rgb_size, frames=g.subclip_len, layout="frames")
        self.fusion = TrajectoryGuidedFusion(DIM)
        self.evaluator = RegressionHead(DIM)
        self.rgb_transform = nn.Linear(2 * DIM, DIM)

    def rgb_tokens(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, n*L, S, S) -> (B, n, 512)``: one Former-DFER feature per sub-clip, sample-major."""
        b, c, t, h, w = rgb.shape
        g = self.geometry
        if c != 3 or t != g.clip_len or (h, w) != (g.rgb_size, g.rgb_size):
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, {g.rgb_size}, {g.rgb_size}), got {tuple(rgb.shape)}")
        if self.rgb_layout == "channel_major":  # pseudo-frame j = planes 3j..3j+2 of the (C, T) stack
            rgb = rgb.reshape(b, 3 * t, h, w).reshape(b, t, 3, h, w).transpose(1, 2)
        packed = rearrange(rgb, "b c (n l) h w -> (b n) c l h w", l=g.subclip_len)
        return rearrange(self.rgb_encoder(packed), "(b n) d -> b n d", b=b)

    def forward(self, rgb: torch.Tensor, trajectory: torch.Tensor, index_t: torch.Tensor) -> torch.Tensor:
        rgb_token = self.rgb_transform(self.rgb_tokens(rgb)).mean(dim=1, keepdim=True)  # (B, 1, 256)
        traj_token = self.encoder(trajectory, index_t).unsqueeze(1)  # (B, 1, 256)
        fused = self.fusion(rgb_token, traj_token).mean(dim=1)
        return self.evaluator(fused).reshape(-1)


def tramp_training_defaults() -> TrainingConfig:
    """``main_rgb1x1_128.py`` with its YAML (``configs/RGB_SkateFormer_256_DFEW_rgb1x1_detect.yaml``):
    Adam lr 1e-4 (the YAML's ``base_lr``; the Adam call passes no weight decay), StepLR(10, 0.5), 100
    epochs, batch 4 (README), each training video 5x per epoch."""
    return TrainingConfig(epochs=100, batch_size=4, optimizer="adam", lr=1e-4, weight_decay=0.0, lr_step=10,
                          lr_gamma=0.5, reps_per_epoch=5)


class TraMPFormerMethod(Method):
    """The TraMP-Former method adapter (see the module docstring for the model and its sources)."""

    name = "tramp_former"
    display_name = "TraMP-Former"
    repository = "github.com/shuchaoduan/TraMP-Former"
    licence = "MIT"
    backbone = "Former-DFER+SkateFormer"
    pretraining = "DFEW+DFEW"
    reference = ("Duan, Dadashzadeh, Whone, Mirmehdi: Trajectory-guided Motion Perception for Facial Expression "
                 "Quality Assessment in Neurological Disorders, IEEE FG 2025, arXiv 2504.09530; "
                 "github.com/shuchaoduan/TraMP-Former")
    options_spec = {
        "rgb_layout": Option(
            "frames",
            "How Former-DFER cuts the (3, T, H, W) clip into frames: 'frames' (the paper: frame t is the RGB "
            "planes of time t) or 'channel_major' (released code: FormerDFER gets the loader's (C, T, H, W) "
            "tensor and S_Former view(-1, 3, 224, 224)-s the whole clip, so pseudo-frame j = planes 3j..3j+2).",
            choices=("frames", "channel_major"), code_value="channel_major"),
        "loss": Option("bmc", "Training loss: 'bmc' Balanced MSE (losses/BMC.py, init sigma 1.0) or 'mse'.",
                       choices=("bmc", "mse")),
        "bmc_sigma": Option(
            "learned",
            "BMC noise sigma: 'learned' (Balanced MSE as published) or 'fixed' (released main_rgb1x1_128.py never "
            "gives the criterion's parameter to Adam: sigma stays 1.0).",
            choices=("learned", "fixed"), code_value="fixed"),
        "bmc_order": Option(
            "prediction_first",
            "Argument order of the BMC call: 'prediction_first' (Balanced MSE: logits_ij = -(pred_i - label_j)^2 "
            "/ 2 sigma^2) or 'label_first' (released code: criterion(label, pred_label), the transposed matrix).",
            choices=("prediction_first", "label_first"), code_value="label_first"),
        "trajectory_frames": Option(
            "by_expression",
            "Frames per trajectory sample: 'by_expression' (code utils.get_max_len_128: 64 for sit at rest, 128 "
            "for the other expressions and any other dataset's) or a number (a multiple of 64: SkateFormer halves "
            "T three times and its partitions take 8 and T / 8 frames).", choices=None),
        "t_partition_n": Option(8, "SkateFormer's N, frames of its type 1/2 partitions (get_max_len_128: 8)."),
        "rgb_temporal_pretrained": Option(
            "loaded",
            "Whether FormerDFER_DFEW.pth's T-Former transformer is loaded: 'loaded' (the paper: the RGB encoder is "
            "pretrained on DFEW) or 'random' (released code: Quality_Model.load_pretrained renames the file's "
            "t_former.spatial_transformer keys to t_former.temporal_transformer, but TraMP-Former's own T_Former "
            "calls that module spatial_transformer, and the non-strict load silently keeps its 3 transformer "
            "layers at their random initialisation).",
            choices=("loaded", "random"), code_value="random"),
    }
    pretrained_files = {"rgb": TRAMP_RGB_FILE, "trajectory": SKATEFORMER_FILE}
    scale_options = {"tiny": {"trajectory_frames": 64}}
    learning_recipe = {
        "overfit_steps": 20,
        "options": {"loss": "mse"}, "data": "tiny", "asserted": False,
        "why": "measured once, not asserted: 83.6 vs 1.1 rho x 100 on 'tiny' (2026-12-06), but its two runs "
               "take about 30 minutes on 2 CPU cores, which would bring .ci/run near its 60-minute budget",
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = (0.0, 4.0)) -> None:
        super().__init__(options, geometry, label_range)
        frames = self.options["trajectory_frames"]
        if frames != "by_expression":
            try:
                n = int(frames)
            except (TypeError, ValueError):
                raise ConfigError(f"option trajectory_frames={frames!r} of method 'tramp_former' must be "
                                  "'by_expression' or a number") from None
            if n < 64 or n % 64:
                raise ConfigError(f"option trajectory_frames={frames!r} of method 'tramp_former' must be a multiple "
                                  "of 64 (SkateFormer's partitions of 8 and T / 8 frames after three halvings)")

    def _frames(self, expression: str | None = None) -> int:
        frames = self.options["trajectory_frames"]
        if frames != "by_expression":
            return int(frames)
        return TRAMP_FRAMES.get(expression or "", TRAMP_DEFAULT_FRAMES)

    def input_spec(self) -> InputSpec:
        """RGB (80 frames = 5 x 16, 224 px, ImageNet normalisation; test frames resized, not cropped, as
        the released loader) and trajectories (63 points, per-expression length, reversed with p 0.5)."""
        by_expr = tuple(TRAMP_FRAMES.items()) if self.options["trajectory_frames"] == "by_expression" else ()
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="imagenet", subclip_len=16, clip_len=80,
                         rgb_size=224, test_crop="resize", trajectory=True, trajectory_frames=self._frames(),
                         trajectory_frames_by_expression=by_expr, trajectory_points=TRAMP_POINTS,
                         trajectory_reference=TRAMP_REFERENCE, trajectory_reverse_p=0.5)

    def build_model(self) -> TraMPFormer:
        return TraMPFormer(self.geometry, rgb_layout=self.options["rgb_layout"],
                           t_partition_n=int(self.options["t_partition_n"]))

    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """``model(rgb, trajectory, index_t)``: scores ``(B,)``."""
        return model(batch["rgb"], batch["trajectory"], batch["index_t"])

    def build_loss(self) -> nn.Module:
        if self.options["loss"] == "mse":
            return MSELoss()
        return BMCLoss(init_noise_sigma=1.0, learn_sigma=self.options["bmc_sigma"] == "learned")

    def loss(self, loss_fn: nn.Module, output: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        if self.options["loss"] == "bmc" and self.options["bmc_order"] == "label_first":
            return loss_fn(batch["label"], output.reshape(-1))
        return loss_fn(output.reshape(-1), batch["label"])

    def training_defaults(self) -> TrainingConfig:
        return tramp_training_defaults()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        return param_groups_with_sigma(model, loss, cfg)

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """``rgb``: ``FormerDFER_DFEW.pth`` into ``rgb_encoder`` (the Former-DFER filter: strip ``module.``,
        rename the temporal transformer, drop the 7-class head; loaded strictly, where the released code
        loads non-strictly and would ignore a wrong file). ``trajectory``: ``SkateFormer_256_rgb1x1.pth``
        (:func:`load_skateformer_checkpoint`).

        Raises:
            ConfigError: an unknown role. CheckpointError: unreadable, unsafe or mismatching files.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        random_init = ["fusion", "evaluator", "rgb_transform"]
        if "rgb" in files:
            keep = None
            if self.options["rgb_temporal_pretrained"] == "random":  # the released code's outcome
                keep = {k: v.clone() for k, v in model.rgb_encoder.state_dict().items()
                        if k.startswith("t_former.temporal_transformer.")}
            info["rgb"] = load_former_dfer_checkpoint(model.rgb_encoder, files["rgb"], expected_name=TRAMP_RGB_FILE)
            if keep is not None:
                model.rgb_encoder.load_state_dict(keep, strict=False)
                info["rgb"]["kept_random_init"] = sorted(keep)
                random_init.append("rgb_encoder.t_former.temporal_transformer")
        else:
            random_init.append("rgb_encoder")
        if "trajectory" in files:
            info["trajectory"] = load_skateformer_checkpoint(model.encoder, files["trajectory"])
        else:
            random_init.append("encoder")
        info["random_init"] = random_init
        return info


#: TraMP-Former's own T-Former names its transformer ``spatial_transformer`` (as Former-DFER does);
#: this project's (QAFE-Net's) ``temporal_transformer``.
_ORIGINAL_T = "rgb_encoder.t_former.spatial_transformer"
_PROJECT_T = "rgb_encoder.t_former.temporal_transformer"


def original_to_project_key(key: str) -> str:
    """A ``Quality_Model`` state-dict key -> this project's ``TraMPFormer`` key (only the T-Former's
    transformer is named differently)."""
    return _PROJECT_T + key[len(_ORIGINAL_T):] if key.startswith(_ORIGINAL_T) else key


def project_to_original_key(key: str) -> str:
    """The inverse of :func:`original_to_project_key`."""
    return _ORIGINAL_T + key[len(_PROJECT_T):] if key.startswith(_PROJECT_T) else key


def load_tramp_training_checkpoint(model: TraMPFormer, path: str | Path) -> dict[str, Any]:
    """Load a TraMP-Former training checkpoint (``main_rgb1x1_128.py`` ``save_checkpoint``: a dict with
    ``epoch``, ``model`` (the whole ``Quality_Model`` state, ``module.`` prefixed when trained with
    nn.DataParallel), ``best_pho``, ``optimizer``, ``scheduler``, ``recorder``) strictly into ``model``.

    Raises:
        CheckpointError: unreadable or unsafe file, no ``model`` entry, or keys / shapes that differ.
    """
    from methods.checkpoints import load_strict

    ckpt = read_checkpoint(path)
    sd = state_dict_of(ckpt, "model", path)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    sd = {original_to_project_key(k): v for k, v in sd.items()}
    load_strict(model, sd, path, "TraMP-Former (Quality_Model)")
    epoch = ckpt.get("epoch") if isinstance(ckpt, Mapping) else None
    return {"file": str(path), "loaded_tensors": len(sd), "epoch": int(epoch) if isinstance(epoch, int) else None}


def load_skateformer_checkpoint(encoder: SkateFormerEncoder, path: str | Path) -> dict[str, Any]:
    """Load ``SkateFormer_256_rgb1x1.pth`` into the trajectory encoder.

    As ``Quality_Model.load_pretrained``: ``ckpt['model']``, the first 7 characters (``module.``) cut,
    ``evaluator.head.weight`` / ``.bias`` dropped. The code then loads non-strictly, which silently keeps
    random weights for any key that does not match; here every encoder tensor must come from the file
    (an ``encoder.`` prefix is accepted too) and other keys are listed in the returned info.

    Raises:
        CheckpointError: unreadable or unsafe file, no ``model`` entry, missing encoder tensors or shapes
            that differ (listed, with the file).
    """
    ckpt = read_checkpoint(path, expected_name=SKATEFORMER_FILE)
    sd = state_dict_of(ckpt, "model", path)
    own = encoder.state_dict()
    state, ignored = {}, []
    for k, v in sd.items():
        name = k[7:] if k.startswith("module.") else k
        if name.startswith("evaluator.head."):
            continue
        if name not in own and name.startswith("encoder.") and name[len("encoder."):] in own:
            name = name[len("encoder."):]
        (state.__setitem__(name, v) if name in own else ignored.append(name))
    missing = sorted(set(own) - set(state))
    shapes = sorted(f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}" for k, v in state.items()
                    if tuple(v.shape) != tuple(own[k].shape))
    if missing or shapes:
        raise CheckpointError(f"{str(path)!r} does not fit the SkateFormer trajectory encoder: "
                              + (f"missing {len(missing)} tensor(s) ({', '.join(missing[:5])}); " if missing else "")
                              + (f"shapes differ: {'; '.join(shapes[:5])}" if shapes else "")
                              + f" (expected the original {SKATEFORMER_FILE})")
    encoder.load_state_dict(state, strict=True)
    return {"file": str(path), "original_name": SKATEFORMER_FILE, "loaded_tensors": len(state),
            "dropped": ["evaluator.head.weight", "evaluator.head.bias"], "ignored": ignored}


__all__ = ["TRAMP_RGB_FILE", "TraMPFormer", "TraMPFormerMethod", "TrajectoryGuidedFusion", "load_skateformer_checkpoint",
           "load_tramp_training_checkpoint", "original_to_project_key", "project_to_original_key", "tramp_training_defaults"]
