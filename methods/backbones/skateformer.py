"""SkateFormer trajectory encoder as TraMP-Former uses it (shuchaoduan/TraMP-Former
``models/encoders/SkateFormer_DFEW_rgb1x1.py``, after Do & Kim, "SkateFormer: Skeletal-Temporal
Transformer for Human Action Recognition", ECCV 2024, KAIST-VICLab/SkateFormer, MIT).

Input: landmark trajectories ``(B, V, T, C)`` (V = 63 points: 7 facial parts x 9 points, C = 5:
x, y and the RGB value of a 1x1 patch at the point) and their normalised frame positions
``index_t (B, T)``; output one feature per trajectory sample ``(B, channels[-1])`` (256).

Structure (state-dict keys in brackets, identical to the original so its checkpoint
``SkateFormer_256_rgb1x1.pth`` loads):

* stem [``stem.0/2/4``]: 1x1 convolutions C -> 2C -> 3C -> E with GELU between;
* a sinusoidal embedding of ``index_t`` (E channels) times a learned joint embedding
  [``joint_person_embedding`` (E, V)] added to every (frame, point);
* 4 stages [``stages.i.blocks.j``] of 2 SkateFormer blocks (channels 128, 256, 256, 256); the
  first block of stages 2-4 halves T with a (7, 1) stride-2 convolution + BatchNorm
  [``downsample.reduction`` / ``downsample.bn``];
* each block [``transformer.*``]: LayerNorm, Linear C -> 2C, then C/2 channels of convolutions
  (a learned V x V graph convolution per head group [``gconv`` (h/4, V, V)] and a grouped (7, 1)
  temporal convolution [``tconv``]) and 3C/2 channels of "Skate-MSA": four partition attentions
  (type 1: N consecutive frames x L points of a part; type 2: N frames x the K-th point of each
  part; type 3: M frames strided over T x L points; type 4: M strided frames x K points), each
  with its own relative temporal position bias table [``attention.k.relative_position_bias_table``
  and the ``relative_position_index`` buffer]; Linear projection and residual; then a pre-norm
  MLP (ratio 2) and residual;
* the mean over (T, V).

Three quirks of the original are kept because its weights depend on them: the attention scale is
``num_heads ** -0.5`` (not the head size's); each partition attention maps its ``3c`` input
channels to ``c`` (q, k and v are cut out of the input itself; there are no q/k/v weights); and
the type 1/3 temporal bias is tiled so that token ``a`` of a frame-major window reads the row of
frame ``a mod P0`` (:class:`PartitionAttention`).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

SKATEFORMER_FILE = "SkateFormer_256_rgb1x1.pth"


# ----------------------------------------------------------------- partitions of (T, V)
# (B, C, T, V) -> (B * #partitions, P0, P1, C) and back. T = frames, V = points; a partition size
# (P0, P1) names frames x points per window. Types 1/2 take P0 consecutive frames, types 3/4 P0
# frames strided by T / P0; types 1/3 take P1 consecutive points (one facial part of L points),
# types 2/4 P1 points strided by V / P1 (the same point of every part).
def _partition(x: torch.Tensor, size: Sequence[int], kind: int) -> torch.Tensor:
    b, c, t, v = x.shape
    p0, p1 = int(size[0]), int(size[1])
    t_split = (t // p0, p0) if kind in (1, 2) else (p0, t // p0)
    v_split = (v // p1, p1) if kind in (1, 3) else (p1, v // p1)
    x = x.view(b, c, *t_split, *v_split)
    # axes: 0 b, 1 c, 2-3 t pieces, 4-5 v pieces; window dims are the p0 / p1 ones
    t_win, t_grid = (3, 2) if kind in (1, 2) else (2, 3)
    v_win, v_grid = (5, 4) if kind in (1, 3) else (4, 5)
    return x.permute(0, t_grid, v_grid, t_win, v_win, 1).contiguous().view(-1, p0, p1, c)


def _reverse(windows: torch.Tensor, t: int, v: int, size: Sequence[int], kind: int) -> torch.Tensor:
    p0, p1 = int(size[0]), int(size[1])
    b = int(windows.shape[0] / (t * v / p0 / p1))
    x = windows.view(b, t // p0, v // p1, p0, p1, -1)  # b, t grid, v grid, t window, v window, c
    # back to (b, c, t, v) with t = (grid, window) for types 1/2 and (window, grid) for 3/4, same for v
    t_axes = (1, 3) if kind in (1, 2) else (3, 1)
    v_axes = (2, 4) if kind in (1, 3) else (4, 2)
    return x.permute(0, 5, *t_axes, *v_axes).contiguous().view(b, -1, t, v)


def relative_position_index_1d(n: int) -> torch.Tensor:
    """``(n, n)`` int64 ``i - j + n - 1``: the row of the bias table for query frame i, key frame j."""
    coords = torch.arange(n)
    return coords[:, None] - coords[None, :] + (n - 1)


class PartitionAttention(nn.Module):
    """Self-attention inside the windows of one partition type, with a relative temporal bias.

    Args:
        kind: 1-4 (see the module docstring).
        num_heads: heads h.
        partition_size: ``(P0, P1)`` frames x points of a window.
        max_partition_size: the bias table's size (types 3/4 size their table for the longest clip:
            ``(max_frames // N, P1)``; their bias is the table's first ``2 P0 - 1`` rows).
        attn_drop: attention dropout (0.5 in TraMP-Former).

    ``forward(x, size)``: ``(W, P0 * P1, 3c)`` -> ``(W, P0 * P1, c)`` for windows of ``size`` (the
    partition size of this call: types 3/4 take ``M = T / 8`` frames, set per input length); q, k, v are
    the three thirds of each head's slice of the input; scores scaled by ``num_heads ** -0.5`` (original).
    """

    def __init__(self, kind: int, num_heads: int, partition_size: Sequence[int], max_partition_size: Sequence[int],
                 attn_drop: float = 0.0) -> None:
        super().__init__()
        self.kind, self.num_heads = int(kind), int(num_heads)
        self.scale = num_heads ** -0.5
        self.attn_drop = nn.Dropout(attn_drop)
        p0, p1 = int(partition_size[0]), int(partition_size[1])
        m0, m1 = int(max_partition_size[0]), int(max_partition_size[1])
        rows = 2 * (p0 if kind in (1, 2) else m0) - 1
        if kind in (1, 3):
            table = torch.zeros(rows, num_heads)
        else:
            k = p1 if kind == 2 else m1
            table = torch.zeros(rows, k, k, num_heads)
        self.relative_position_bias_table = nn.Parameter(nn.init.trunc_normal_(table, std=0.02))
        self.register_buffer("relative_position_index",
                             relative_position_index_1d(p0 if kind in (1, 2) else m0))

    def _bias(self, size: Sequence[int]) -> torch.Tensor:
        p0, p1 = int(size[0]), int(size[1])
        n = p0 * p1
        if self.kind in (1, 2):
            table, index = self.relative_position_bias_table, self.relative_position_index.reshape(-1)
        else:  # the first 2 P0 - 1 rows; the index block of the last P0 columns equals the P0 x P0 index
            table = self.relative_position_bias_table[: 2 * p0 - 1]
            index = self.relative_position_index[:p0, -p0:].reshape(-1)
        if self.kind in (1, 3):
            # one bias per frame pair, tiled P1 x P1 times as the original's repeat() does: token a of the
            # (frame-major) window gets the row of frame a % P0, not of its own frame a // P1 (kept: the
            # released weights were trained with it)
            bias = table[index].view(p0, p0, -1).repeat(p1, p1, 1)
        else:  # one bias per frame pair and point pair
            bias = table[index].view(p0, p0, p1, p1, -1).permute(0, 2, 1, 3, 4).reshape(n, n, -1)
        return bias.permute(2, 0, 1).unsqueeze(0)

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        w, n, c3 = x.shape
        q, k, v = x.reshape(w, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        # dropout(softmax(q k^T * scale + bias)) v, fused (scaled_dot_product_attention; the original's
        # (q * scale) @ k^T rounds differently only: golden test equal within 1e-5)
        p = self.attn_drop.p if self.training else 0.0
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=self._bias(size).to(q.dtype),
                                                               dropout_p=p, scale=self.scale)
        return out.transpose(1, 2).reshape(w, n, -1)


class DropPath(nn.Module):
    """Stochastic depth (per sample), identity in eval mode or with ``p = 0``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep


class Mlp(nn.Module):
    """``fc1`` -> GELU -> dropout -> ``fc2`` -> dropout (timm ``Mlp`` without a norm)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class SkateFormerBlock(nn.Module):
    """One SkateFormer block on ``(B, C, T, V)`` (see the module docstring); keys of the original."""

    def __init__(self, channels: int, num_points: int, max_frames: int, partition_sizes: Sequence[Sequence[int]],
                 kernel_size: int = 7, num_heads: int = 32, attn_drop: float = 0.0, drop: float = 0.0,
                 drop_path: float = 0.0, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        sizes = [tuple(int(v) for v in s) for s in partition_sizes]
        n = sizes[0][0]
        max_sizes = [sizes[0], sizes[1], (max_frames // n, sizes[2][1]), (max_frames // n, sizes[3][1])]
        self.norm_1 = nn.LayerNorm(channels)
        self.mapping = nn.Linear(channels, 2 * channels)
        self.gconv = nn.Parameter(nn.init.trunc_normal_(torch.zeros(num_heads // 4, num_points, num_points), std=0.02))
        self.tconv = nn.Conv2d(channels // 4, channels // 4, kernel_size=(kernel_size, 1),
                               padding=((kernel_size - 1) // 2, 0), groups=num_heads // 4)
        self.attention = nn.ModuleList(
            PartitionAttention(k + 1, num_heads // 8, sizes[k], max_sizes[k], attn_drop) for k in range(4))
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(drop)
        self.drop_path = DropPath(drop_path)
        self.norm_2 = nn.LayerNorm(channels)
        self.mlp = Mlp(channels, int(mlp_ratio * channels), drop)

    def forward(self, x: torch.Tensor, sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        b, c, t, v = x.shape
        skip = x.permute(0, 2, 3, 1)  # B T V C
        f = self.mapping(self.norm_1(skip)).permute(0, 3, 1, 2)  # B 2C T V
        f_conv, f_attn = torch.split(f, [c // 2, 3 * c // 2], dim=1)
        g_in, t_in = torch.chunk(f_conv, 2, dim=1)
        groups = torch.chunk(g_in, self.gconv.shape[0], dim=1)
        out = [torch.cat([torch.einsum("nctu,vu->nctv", g, self.gconv[i]) for i, g in enumerate(groups)], dim=1),
               self.tconv(t_in)]
        for k, part in enumerate(torch.chunk(f_attn, 4, dim=1)):
            size = sizes[k]
            windows = _partition(part.contiguous(), size, k + 1)
            windows = windows.view(-1, size[0] * size[1], part.shape[1])
            out.append(_reverse(self.attention[k](windows, size), t, v, size, k + 1))
        y = self.proj_drop(self.proj(torch.cat(out, dim=1).permute(0, 2, 3, 1)))
        y = skip + self.drop_path(y)
        y = y + self.drop_path(self.mlp(self.norm_2(y)))
        return y.permute(0, 3, 1, 2).contiguous()


class TemporalDownsample(nn.Module):
    """(7, 1) convolution with stride 2 over T and BatchNorm (original ``PatchMergingTconv``)."""

    def __init__(self, dim_in: int, dim_out: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.reduction = nn.Conv2d(dim_in, dim_out, kernel_size=(kernel_size, 1), padding=((kernel_size - 1) // 2, 0),
                                   stride=(2, 1))
        self.bn = nn.BatchNorm2d(dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.reduction(x))


class _BlockDS(nn.Module):
    def __init__(self, dim_in: int, dim_out: int, downscale: bool, **block) -> None:
        super().__init__()
        self.downsample = TemporalDownsample(dim_in, dim_out, block.get("kernel_size", 7)) if downscale else None
        self.transformer = SkateFormerBlock(dim_out, **block)

    def forward(self, x: torch.Tensor, sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        return self.transformer(self.downsample(x) if self.downsample is not None else x, sizes)


class _Stage(nn.Module):
    def __init__(self, depth: int, dim_in: int, dim_out: int, first: bool, drop_paths: Sequence[float], **block) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            _BlockDS(dim_in if i == 0 else dim_out, dim_out, downscale=(i == 0 and not first), drop_path=drop_paths[i],
                     **block) for i in range(depth))

    def forward(self, x: torch.Tensor, sizes: Sequence[Sequence[int]]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, sizes)
        return x


class SkateFormerEncoder(nn.Module):
    """The trajectory encoder (original ``SkateFormer_DFEW_rgb1x1``, ``index_t=True``).

    Args:
        in_channels: values per point and frame (5: x, y, r, g, b).
        depths, channels: blocks and channels per stage ((2, 2, 2, 2), (128, 256, 256, 256)).
        num_points: V (63).
        max_frames: sizes the type 3/4 bias tables (256, the original default).
        t_partition: ``(N, M)`` frames of the four partition types (M None: ``T / 8`` of each input,
            :meth:`sizes`); TraMP-Former ``utils.get_max_len_128``: N = 8, M = 8 (sit at rest, 64
            frames) or 16 (others, 128).
        p_partition: ``(K, L)``: 7 parts of 9 points. Type sizes: 1 (N, L), 2 (N, K), 3 (M, L), 4 (M, K).
        num_heads, kernel_size, attn_drop, drop, drop_path, mlp_ratio: as the original (TraMP-Former:
            32, 7, 0.5, 0.0, 0.2 (linearly increasing over the 8 blocks), 2.0).

    ``forward(x, index_t)``: ``x (B, V, T, C)``, ``index_t (B, T)`` -> ``(B, channels[-1])``.

    Raises:
        ValueError: a T or V that the partitions do not divide at some stage (T halves at each of
            stages 2-4).
    """

    def __init__(self, in_channels: int = 5, depths: Sequence[int] = (2, 2, 2, 2),
                 channels: Sequence[int] = (128, 256, 256, 256), num_points: int = 63, max_frames: int = 256,
                 t_partition: Sequence[int] = (8, 16), p_partition: Sequence[int] = (7, 9), num_heads: int = 32,
                 kernel_size: int = 7, attn_drop: float = 0.5, drop: float = 0.0, drop_path: float = 0.2,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if len(depths) != len(channels):
            raise ValueError(f"depths {tuple(depths)} and channels {tuple(channels)} differ in length")
        self.embed_dim = int(channels[0])
        self.num_points = int(num_points)
        n = int(t_partition[0])
        m = None if t_partition[1] is None else int(t_partition[1])
        k, l = (int(v) for v in p_partition)
        self.t_partition, self.p_partition = (n, m), (k, l)
        build_m = m if m is not None else 16  # types 3/4 tables do not depend on M (sized by max_frames // N)
        c = int(in_channels)
        self.stem = nn.ModuleList([nn.Conv2d(c, 2 * c, 1), nn.GELU(), nn.Conv2d(2 * c, 3 * c, 1), nn.GELU(),
                                   nn.Conv2d(3 * c, self.embed_dim, 1)])
        self.joint_person_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.zeros(self.embed_dim, num_points), std=0.02))
        rates = torch.linspace(0.0, drop_path, sum(depths)).tolist()
        block = dict(num_points=num_points, max_frames=max_frames, partition_sizes=self.sizes(build_m * 8),
                     kernel_size=kernel_size, num_heads=num_heads, attn_drop=attn_drop, drop=drop, mlp_ratio=mlp_ratio)
        self.stages = nn.ModuleList(
            _Stage(d, self.embed_dim if i == 0 else channels[i - 1], channels[i], i == 0,
                   rates[sum(depths[:i]):sum(depths[:i + 1])], **block) for i, d in enumerate(depths))
        self.out_dim = int(channels[-1])

    def sizes(self, frames: int) -> list[tuple[int, int]]:
        """The four partition sizes for an input of ``frames`` frames: type 1 (N, L), 2 (N, K), 3 (M, L),
        4 (M, K), with M the constructor's, or ``frames // 8`` when it was None (the released code's
        ``get_max_len_128``: M = 8 for 64 frames, 16 for 128)."""
        n, m = self.t_partition
        m = m if m is not None else max(1, int(frames) // 8)
        k, l = self.p_partition
        return [(n, l), (n, k), (m, l), (m, k)]

    def check_shape(self, frames: int, points: int) -> None:
        """Refuse a (T, V) that some stage's partitions do not divide (raises ValueError)."""
        if points != self.num_points or points % self.p_partition[0] or points % self.p_partition[1]:
            raise ValueError(f"SkateFormer takes {self.num_points} points in parts of {self.p_partition}, got {points}")
        t = frames
        parts = {s[0] for s in self.sizes(frames)}
        for i in range(len(self.stages)):
            if i > 0:
                t = (t - 1) // 2 + 1
            if any(t % s for s in parts):
                raise ValueError(f"SkateFormer: {frames} frames give {t} at stage {i + 1}, which the frame partitions "
                                 f"{sorted(parts)} do not divide; use a multiple of "
                                 f"{max(parts) * 2 ** (len(self.stages) - 1)}")

    def time_embedding(self, index_t: torch.Tensor) -> torch.Tensor:
        """Sinusoidal embedding of the frame positions: ``(B, T)`` -> ``(B, T, E)`` (sin on even, cos on odd)."""
        b, t = index_t.shape
        div = torch.exp(torch.arange(0, self.embed_dim, 2, dtype=torch.float32, device=index_t.device)
                        * -(math.log(10000.0) / self.embed_dim))
        angle = index_t.float().unsqueeze(-1) * div
        te = torch.zeros(b, t, self.embed_dim, device=index_t.device)
        te[:, :, 0::2] = torch.sin(angle)
        te[:, :, 1::2] = torch.cos(angle)
        return te

    def forward(self, x: torch.Tensor, index_t: torch.Tensor) -> torch.Tensor:
        b, v, t, c = x.shape
        self.check_shape(t, v)
        out = x.permute(0, 3, 2, 1).contiguous()  # B C T V
        for layer in self.stem:
            out = layer(out)
        out = out + torch.einsum("btc,cv->bctv", self.time_embedding(index_t), self.joint_person_embedding)
        sizes = self.sizes(t)
        for stage in self.stages:
            out = stage(out, sizes)
        return out.mean(dim=(2, 3))


__all__ = ["SKATEFORMER_FILE", "PartitionAttention", "SkateFormerBlock", "SkateFormerEncoder",
           "relative_position_index_1d"]
