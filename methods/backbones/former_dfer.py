"""Former-DFER RGB encoder (S-Former + T-Former) as used by QAFE-Net.

Re-implementation of Zhao & Liu, "Former-DFER: Dynamic Facial Expression
Recognition Transformer", ACM MM 2021 (zengqunzhao/Former-DFER), in the form
QAFE-Net modified it (shuchaoduan/QAFE-Net ``models/S_Former.py``,
``models/T_Former.py``, ``models/ST_Former.py``, class ``GenerateModel`` with
its ``fc`` head removed). The state-dict keys are the same as QAFE-Net's
``GenerateModel``::

    s_former.conv1.weight, s_former.bn1.*, s_former.layer{1-4}.{0,1}.{conv1,bn1,conv2,bn2}.*,
    s_former.layer{2-4}.0.downsample.{0,1}.*, s_former.pos_embedding (1, N, 256),
    s_former.spatial_transformer.layers.0.0.fn.norm.*, ...0.fn.fn.to_qkv.weight,
    ...0.fn.fn.to_out.0.*, ...1.fn.norm.*, ...1.fn.fn.net.{0,3}.*,
    t_former.cls_token (1, 1, 512), t_former.pos_embedding (1, L+1, 512),
    t_former.temporal_transformer.layers.{0,1,2}.<same pattern>

Image size and frames per sub-clip are parameters: ``N`` is the number of
tokens of the layer3 map for the input size (196 at 224 px as in QAFE-Net, 49 at
112 px as in Former-DFER, 9 at the tiny scale's 40 px) and ``L`` the sub-clip
length (16 in both papers), so the tiny scale runs the same architecture.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from benchmark.errors import CheckpointError
from methods.checkpoints import load_strict, read_checkpoint, state_dict_of

#: Original file name of the DFEW-pretrained Former-DFER checkpoint QAFE-Net loads.
FORMER_DFER_FILE = "FormerDFER-DFEWset1-model_best.pth"

#: RGB input layouts (see :class:`FormerDFEREncoder`).
LAYOUTS = ("frames", "channel_major")
#: How a positional-embedding size mismatch with a checkpoint is handled.
POS_EMBED_RESIZE = ("interpolate", "strict")


# --------------------------------------------------------------------------- transformer
class _Residual(nn.Module):
    """``x + fn(x)`` (attribute name ``fn`` fixes the key names)."""

    def __init__(self, fn: nn.Module) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fn(x)


class _PreNorm(nn.Module):
    """``fn(LayerNorm(x))``, LayerNorm eps 1e-5 (keys ``norm``, ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused bias-free QKV projection.

    ``to_qkv``: Linear(dim, 3 * heads * dim_head, bias=False); scale
    ``dim_head ** -0.5``; ``to_out``: Sequential(Linear(heads * dim_head, dim), Dropout).
    Shapes: ``(B, N, dim) -> (B, N, dim)``. Source: Former-DFER ``S_Former.py`` /
    ``T_Former.py`` class ``Attention`` (no mask is ever passed).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = (rearrange(t, "b n (h d) -> b h n d", h=self.heads) for t in self.to_qkv(x).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v)  # default scale = dim_head ** -0.5
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


class FeedForward(nn.Module):
    """``net``: Linear(dim, hidden), tanh-approximated GELU, Dropout, Linear(hidden, dim), Dropout.

    Keys ``net.0`` and ``net.3``. Former-DFER writes the tanh approximation of
    GELU by hand (``0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))``), which is
    ``nn.GELU(approximate="tanh")``.
    """

    def __init__(self, dim: int, hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm transformer encoder without a final norm.

    ``layers[i] = ModuleList([Residual(PreNorm(Attention)), Residual(PreNorm(FeedForward))])``.
    Shapes: ``(B, N, dim) -> (B, N, dim)``.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([
                _Residual(_PreNorm(dim, SelfAttention(dim, heads, dim_head, dropout))),
                _Residual(_PreNorm(dim, FeedForward(dim, mlp_dim, dropout))),
            ])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = ff(attn(x))
        return x


# --------------------------------------------------------------------------- S-Former
class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, + identity / downsample, ReLU.

    Keys ``conv1, bn1, conv2, bn2, downsample.{0,1}`` (torchvision layout).
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


def layer3_grid(image_size: int) -> int:
    """Side of the S-Former layer3 map for a square input of ``image_size`` pixels.

    Four stride-2 stages precede layer3's output (stem conv 7x7/2 p3, max-pool
    3x3/2 p1, layer2, layer3; each maps s -> floor((s - 1) / 2) + 1 = ceil(s / 2)):
    224 -> 14, 112 -> 7, 40 -> 3.
    """
    s = int(image_size)
    for _ in range(4):
        s = (s - 1) // 2 + 1
    return s


class SFormer(nn.Module):
    """Spatial Former: ResNet-18 with one spatial transformer between layer3 and layer4.

    Per frame: stem (conv 7x7/2, BN, ReLU, max-pool 3x3/2), layer1-3 (BasicBlock
    x2, widths 64/128/256), layer3 map ``(256, g, g)`` -> ``g*g`` tokens +
    ``pos_embedding`` ``(1, g*g, 256)`` -> Transformer(dim 256, depth 1, heads 8,
    dim_head 32, mlp 512) -> back to ``(256, g, g)`` -> layer4 (512) -> global
    average pool.

    Args:
        image_size: input side in pixels (224 in QAFE-Net, 112 in Former-DFER);
            sets ``g = layer3_grid(image_size)``.

    Shapes: ``(F, 3, H, W) -> (F, 512)`` with ``H = W = image_size``.
    Init (as the original): kaiming-normal fan-out convolutions, BN 1/0,
    ``pos_embedding`` standard normal, Linear layers PyTorch default.
    Source: QAFE-Net ``models/S_Former.py`` (class ``ResNet``).
    """

    def __init__(self, image_size: int = 224, dim: int = 256, depth: int = 1, heads: int = 8,
                 dim_head: int = 32, mlp_dim: int = 512, dropout: float = 0.0) -> None:
        super().__init__()
        self.image_size = int(image_size)
        self.grid = layer3_grid(image_size)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.pos_embedding = nn.Parameter(torch.randn(1, self.grid * self.grid, dim))
        self.spatial_transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-3:] != (3, self.image_size, self.image_size):
            raise ValueError(f"S-Former built for (3, {self.image_size}, {self.image_size}) frames, "
                             f"got {tuple(x.shape[-3:])}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer3(self.layer2(self.layer1(x)))
        h, w = x.shape[-2:]
        tokens = rearrange(x, "f c h w -> f (h w) c") + self.pos_embedding
        x = rearrange(self.spatial_transformer(tokens), "f (h w) c -> f c h w", h=h, w=w)
        return torch.flatten(self.avgpool(self.layer4(x)), 1)


# --------------------------------------------------------------------------- T-Former
class TFormer(nn.Module):
    """Temporal Former: a class token plus ``frames`` per-frame features through a transformer.

    ``cls_token`` ``(1, 1, 512)`` prepended, ``pos_embedding`` ``(1, frames + 1, 512)``
    added, Transformer(dim 512, depth 3, heads 8, dim_head 64, mlp 1024), output
    = the class token. Attribute ``temporal_transformer`` (QAFE-Net's name;
    Former-DFER's own checkpoints call it ``spatial_transformer``).

    Shapes: ``(B', frames, 512) -> (B', 512)``.
    Source: QAFE-Net ``models/T_Former.py`` (class ``TFormer``).
    """

    def __init__(self, frames: int = 16, dim: int = 512, depth: int = 3, heads: int = 8,
                 dim_head: int = 64, mlp_dim: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        self.frames = int(frames)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.randn(1, self.frames + 1, dim))
        self.temporal_transformer = Transformer(dim, depth, heads, dim_head, mlp_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.frames:
            raise ValueError(f"T-Former built for {self.frames} frames, got {x.shape[1]}")
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embedding
        return self.temporal_transformer(x)[:, 0]


# --------------------------------------------------------------------------- encoder
class FormerDFEREncoder(nn.Module):
    """Former-DFER clip encoder: S-Former per frame, T-Former per sub-clip -> 512 per sub-clip.

    Args:
        image_size: RGB frame side in pixels (224 at the paper scale).
        frames: frames per sub-clip ``L`` (16 at the paper scale).
        layout: how a ``(B', 3, L, H, W)`` sub-clip tensor is cut into frames:

            * ``"frames"`` -- frame ``t`` is ``x[:, :, t]`` (the 3 colour planes of
              time ``t``), the paper's description and Former-DFER's own
              ``(T, C)`` input layout;
            * ``"channel_major"`` -- the released QAFE-Net code: ``GenerateModel``
              receives the loader's ``(C, T, H, W)`` tensor and S-Former
              ``view(-1, 3, H, W)``-s it without permuting, so pseudo-frame ``g``
              is planes ``3g, 3g+1, 3g+2`` of the channel-major stack
              (plane ``p = c * L + t``); e.g. pseudo-frame 0 = R of t0, t1, t2;
              5 = R t15, G t0, G t1 (originals-detail 1.2).

    Shapes: ``forward`` ``(B', 3, L, H, W) -> (B', 512)``; :meth:`encode_clip`
    ``(B, 3, n*L, H, W) -> (B, n, 512)`` (packs sub-clips on the batch axis
    clip-major, row ``k*B + b``, as ``main_PFED5.py``).
    Keys: ``s_former.*``, ``t_former.*`` (QAFE-Net ``GenerateModel``).
    """

    def __init__(self, image_size: int = 224, frames: int = 16, layout: str = "frames") -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.layout = layout
        self.image_size = int(image_size)
        self.frames = int(frames)
        self.s_former = SFormer(image_size=image_size)
        self.t_former = TFormer(frames=frames)

    def to_frames(self, x: torch.Tensor) -> torch.Tensor:
        """``(B', 3, L, H, W) -> (B' * L, 3, H, W)``: the frames S-Former sees, per :attr:`layout`."""
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != self.frames:
            raise ValueError(f"expected (B', 3, {self.frames}, H, W) sub-clips, got {tuple(x.shape)}")
        if self.layout == "frames":
            return rearrange(x, "b c t h w -> (b t) c h w")
        # Reinterpret the channel-major memory order as consecutive RGB triples.
        return x.reshape(-1, 3, x.shape[-2], x.shape[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        feats = self.s_former(self.to_frames(x))
        return self.t_former(feats.reshape(b, self.frames, -1))

    def encode_clip(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, n*L, H, W) -> (B, n, 512)``: one feature per consecutive L-frame sub-clip."""
        if x.dim() != 5 or x.shape[2] % self.frames:
            raise ValueError(f"expected (B, 3, n*{self.frames}, H, W), got {tuple(x.shape)}")
        packed = rearrange(x, "b c (n t) h w -> (n b) c t h w", t=self.frames)
        return rearrange(self(packed), "(n b) d -> b n d", b=x.shape[0])


# --------------------------------------------------------------------------- checkpoint
def _resize_spatial_pos(pos: torch.Tensor, grid: int) -> torch.Tensor:
    """Bicubic resize of a ``(1, g0*g0, C)`` token grid (row-major ``h*w``) to ``(1, grid*grid, C)``."""
    g0 = math.isqrt(pos.shape[1])
    img = rearrange(pos, "o (h w) c -> o c h w", h=g0, w=g0)
    img = F.interpolate(img.float(), size=(grid, grid), mode="bicubic", align_corners=False)
    return rearrange(img, "o c h w -> o (h w) c").to(pos.dtype)


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], encoder: FormerDFEREncoder, *,
                         pos_embed_resize: str = "interpolate", file: str = FORMER_DFER_FILE
                         ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Map an original Former-DFER ``state_dict`` onto :class:`FormerDFEREncoder` keys.

    Steps, as QAFE-Net ``main_PFED5.py`` does: strip ``module.`` (nn.DataParallel),
    rename ``t_former.spatial_transformer`` -> ``t_former.temporal_transformer``,
    drop the 7-class DFEW head ``fc.weight`` / ``fc.bias``. Then position-embedding
    sizes are reconciled explicitly (QAFE-Net loads strictly and has no such step):

    * ``s_former.pos_embedding``: a 112-px Former-DFER checkpoint has
      ``(1, 49, 256)`` (7x7 grid) where a 224-px model needs ``(1, 196, 256)``.
      ``"interpolate"``: bicubic resize of the token grid (``align_corners=False``);
      ``"strict"``: :class:`CheckpointError`.
    * ``t_former.pos_embedding`` ``(1, 17, 512)`` vs a model with fewer frames:
      ``"interpolate"`` keeps the class row and the first ``L`` frame rows (what
      the original ``pos_embedding[:, :n+1]`` slicing does for shorter inputs);
      a model with more frames than the file, or ``"strict"``: CheckpointError.

    Returns:
        ``(state_dict, info)``; ``info`` lists every adaptation.

    Raises:
        CheckpointError: a mismatch under ``"strict"`` (names the file, both
            shapes and the fix), a non-square spatial grid, or too few frames.
    """
    if pos_embed_resize not in POS_EMBED_RESIZE:
        raise ValueError(f"pos_embed_resize must be one of {POS_EMBED_RESIZE}, got {pos_embed_resize!r}")
    info: dict[str, Any] = {"stripped_module_prefix": False, "renamed": 0, "dropped": [], "adapted": {}}
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
            info["stripped_module_prefix"] = True
        if key.startswith("t_former.spatial_transformer"):
            key = "t_former.temporal_transformer" + key[len("t_former.spatial_transformer"):]
            info["renamed"] += 1
        if key in ("fc.weight", "fc.bias"):
            info["dropped"].append(f"{key} {list(value.shape)}")
            continue
        out[key] = value

    own = encoder.state_dict()
    key = "s_former.pos_embedding"
    if key in out and key in own and out[key].shape != own[key].shape:
        have, want = tuple(out[key].shape), tuple(own[key].shape)
        g0 = math.isqrt(have[1])
        if pos_embed_resize == "strict":
            raise CheckpointError(
                f"{file!r}: {key} has shape {have} ({g0}x{g0} tokens, as a {16 * g0}-px Former-DFER model) but this "
                f"model needs {want} ({encoder.s_former.grid}x{encoder.s_former.grid} tokens at "
                f"{encoder.image_size} px). Fix: set pos_embed_resize='interpolate' (bicubic resize of the token "
                f"grid, recorded), or use a checkpoint trained at {encoder.image_size} px."
            )
        if g0 * g0 != have[1] or have[0] != 1 or have[2] != want[2]:
            raise CheckpointError(f"{file!r}: {key} shape {have} is not a square token grid of width {want[2]}")
        out[key] = _resize_spatial_pos(out[key], encoder.s_former.grid)
        info["adapted"][key] = {"from": list(have), "to": list(want), "method": "bicubic interpolation of the "
                                f"{g0}x{g0} token grid to {encoder.s_former.grid}x{encoder.s_former.grid}"}

    key = "t_former.pos_embedding"
    if key in out and key in own and out[key].shape != own[key].shape:
        have, want = tuple(out[key].shape), tuple(own[key].shape)
        if len(have) != 3 or have[0] != 1 or have[2] != want[2]:  # not a frame-count question: no fix by frames
            raise CheckpointError(
                f"{file!r}: {key} has shape {have}, not a (1, frames + 1, {want[2]}) temporal table as this model's "
                f"{want}; the file is not a Former-DFER checkpoint of this width (its T-Former dim differs)"
            )
        if pos_embed_resize == "strict" or have[1] < want[1]:
            raise CheckpointError(
                f"{file!r}: {key} has shape {have} ({have[1] - 1} frames) but this model needs {want} "
                f"({want[1] - 1} frames per sub-clip). Fix: build the model with {have[1] - 1}-frame sub-clips"
                + (", or set pos_embed_resize='interpolate' (keeps the class row and the first frame rows)."
                   if have[1] > want[1] and pos_embed_resize == "strict" else ".")
            )
        out[key] = out[key][:, : want[1]].clone()
        info["adapted"][key] = {"from": list(have), "to": list(want),
                                "method": f"kept the class row and the first {want[1] - 1} frame rows"}
    return out, info


def load_former_dfer_checkpoint(encoder: FormerDFEREncoder, path: str | Path, *,
                                pos_embed_resize: str = "interpolate",
                                expected_name: str = FORMER_DFER_FILE) -> dict[str, Any]:
    """Load ``FormerDFER-DFEWset1-model_best.pth`` (original layout; TraMP-Former ships the same
    layout as ``FormerDFER_DFEW.pth``, ``expected_name``) into ``encoder``.

    Reads the file safely (:func:`methods.checkpoints.read_checkpoint`), takes
    ``ckpt["state_dict"]``, applies :func:`checkpoint_filter_fn` and loads
    strictly, as QAFE-Net ``main_PFED5.py`` does.

    Returns:
        JSON-able info: file, epoch, best_acc (DFEW top-1 %), the adaptations.

    Raises:
        CheckpointError: missing / unsafe / malformed file, or keys and shapes that
            do not fit after filtering (all listed).
    """
    ckpt = read_checkpoint(path, expected_name=expected_name)
    sd = state_dict_of(ckpt, "state_dict", path)
    sd, info = checkpoint_filter_fn(sd, encoder, pos_embed_resize=pos_embed_resize, file=str(path))
    load_strict(encoder, sd, path, "Former-DFER encoder (s_former / t_former)")
    meta = {}
    for k in ("epoch", "best_acc"):
        v = ckpt.get(k)
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, (int, float)):
            meta[k] = v
    return {"file": str(path), "original_name": expected_name, "loaded_tensors": len(sd),
            "strict": True, **meta, **info}
