"""SlowOnly-R50 heatmap encoder (PYSKL / mmaction ``ResNet3dSlowOnly``) as used by QAFE-Net.

Re-implementation of the pose pathway QAFE-Net runs on its landmark heatmap
volumes (shuchaoduan/QAFE-Net ``models/slowonly.py`` wrapping
``models/resnet3d.py``, itself PYSKL ``pyskl/models/cnns/resnet3d.py``), with the
arguments QAFE-Net passes:

=====================  =====================================================
depth / block          50 -> Bottleneck3d (expansion 4), inflate_style '3x1x1'
in_channels            3 (JET-coloured heatmaps; PYSKL's pose models use 17)
base_channels          32; stages 3, blocks (4, 6, 3); out = last stage (512)
stem                   conv (1,7,7) stride 1 pad (0,3,3) + BN3d + ReLU,
                       max-pool (1,3,3) stride 1 pad (0,1,1)
inflate                (0, 1, 1): stage 1 conv1 1x1x1; stages 2-3 conv1 (3,1,1)
spatial / temporal     strides (2, 2, 2) / (1, 1, 1), on conv2 (the 1x3x3) of
                       block 0, and on the 1x1x1 downsample conv
=====================  =====================================================

mmcv ``ConvModule`` naming: ``conv1.conv`` / ``conv1.bn`` (stem),
``layer{1,2,3}.{i}.conv{1,2,3}.conv`` / ``.bn``, ``layer{1,2,3}.0.downsample.conv``
/ ``.bn``. Inside a block: ReLU after conv1 and conv2, none after conv3, ReLU
after the residual add (mmaction ``Bottleneck3d``).

The official wrapper pools with a fixed ``AvgPool3d((16, 7, 7))``, which at its
only valid input (16 x 56 x 56 -> 512 x 16 x 7 x 7) is the global mean; this
module takes the global mean over (T, H, W) so other geometries (the tiny scale)
run the same network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import CheckpointError
from methods.checkpoints import read_checkpoint, state_dict_of

#: Original file name of the PYSKL / mmaction2 pose-only SlowOnly checkpoint QAFE-Net loads.
POSE_ONLY_FILE = "pose_only.pth"


class ConvBNReLU3d(nn.Module):
    """mmcv ``ConvModule`` equivalent: Conv3d (no bias) -> BatchNorm3d -> optional ReLU.

    Keys ``conv.weight``, ``bn.{weight,bias,running_mean,running_var,num_batches_tracked}``.
    Init as mmcv 1.x ConvModule on construction: kaiming-normal fan-out (ReLU
    gain) conv, BN weight 1 bias 0. Shapes ``(B, Cin, T, H, W) -> (B, Cout, T', H', W')``.
    """

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv3d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm3d(cout)
        self.activate = nn.ReLU(inplace=True) if relu else None
        nn.init.kaiming_normal_(self.conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x))
        return self.activate(x) if self.activate is not None else x


class Bottleneck3d(nn.Module):
    """mmaction ``Bottleneck3d`` ('3x1x1' style), expansion 4.

    conv1: ``(3,1,1)`` pad ``(1,0,0)`` if inflated else 1x1x1; conv2: ``(1,3,3)``
    pad ``(0,1,1)`` with stride ``(t, s, s)``; conv3: 1x1x1 to ``4 * planes``
    without ReLU; ``out = ReLU(conv3(...) + downsample(x) or x)``.
    """

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: tuple[int, int] = (1, 1), inflate: bool = True,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        t, s = stride
        self.conv1 = ConvBNReLU3d(inplanes, planes, (3, 1, 1) if inflate else 1, 1, (1, 0, 0) if inflate else 0)
        self.conv2 = ConvBNReLU3d(planes, planes, (1, 3, 3), (t, s, s), (0, 1, 1))
        self.conv3 = ConvBNReLU3d(planes, planes * self.expansion, 1, relu=False)
        self.downsample = downsample
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.conv3(self.conv2(self.conv1(x))) + identity)


class SlowOnlyEncoder(nn.Module):
    """SlowOnly-R50 pose backbone + global average pooling -> 512 per sub-clip.

    Args:
        in_channels: heatmap channels (3 in QAFE-Net: JET colour images).
        base_channels, stage_blocks, inflate, spatial_strides, temporal_strides:
            QAFE-Net ``ResNet3dSlowOnly`` defaults (32, (4,6,3), (0,1,1), (2,2,2), (1,1,1)).

    Shapes: ``forward`` ``(B', C, T, h, w) -> (B', 512)``; :meth:`features`
    ``-> (B', 512, T, ceil(h/8), ceil(w/8))`` (``16 x 56 x 56 -> 512 x 16 x 7 x 7``).
    Keys: the inner ``ResNet3d``'s (``conv1.conv.weight`` ...), i.e. QAFE-Net's
    ``ResNet3dSlowOnly`` state dict without its ``restnet3d.`` (sic) prefix.
    Source: QAFE-Net ``models/slowonly.py`` + ``models/resnet3d.py``; PYSKL
    ``pyskl/models/cnns/resnet3d.py``.
    """

    def __init__(self, in_channels: int = 3, base_channels: int = 32, stage_blocks=(4, 6, 3),
                 inflate=(0, 1, 1), spatial_strides=(2, 2, 2), temporal_strides=(1, 1, 1)) -> None:
        super().__init__()
        self.conv1 = ConvBNReLU3d(in_channels, base_channels, (1, 7, 7), 1, (0, 3, 3))
        self.maxpool = nn.MaxPool3d((1, 3, 3), (1, 1, 1), (0, 1, 1))
        inplanes = base_channels
        for i, blocks in enumerate(stage_blocks):
            planes = base_channels * 2 ** i
            stride = (temporal_strides[i], spatial_strides[i])
            downsample = None
            if stride[1] != 1 or inplanes != planes * Bottleneck3d.expansion:
                downsample = ConvBNReLU3d(inplanes, planes * 4, 1, (stride[0], stride[1], stride[1]), relu=False)
            layer = [Bottleneck3d(inplanes, planes, stride, bool(inflate[i]), downsample)]
            inplanes = planes * Bottleneck3d.expansion
            layer += [Bottleneck3d(inplanes, planes, (1, 1), bool(inflate[i])) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.num_stages = len(stage_blocks)
        self.feat_dim = inplanes

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's feature map ``(B', 512, T, h', w')``."""
        x = self.maxpool(self.conv1(x))
        for i in range(self.num_stages):
            x = getattr(self, f"layer{i + 1}")(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"expected (B', C, T, h, w) heatmap sub-clips, got {tuple(x.shape)}")
        return self.features(x).mean(dim=(2, 3, 4))


def load_pose_only_checkpoint(encoder: SlowOnlyEncoder, path: str | Path) -> dict[str, Any]:
    """Load PYSKL's ``pose_only.pth`` into ``encoder`` the way QAFE-Net does.

    QAFE-Net ``ResNet3dSlowOnly.load_weights``: take ``ckpt["state_dict"]``, cut
    the 9-character prefixes ``backbone.`` / ``cls_head.``, drop
    ``conv1.conv.weight`` (the pretrained stem sees 17 keypoint channels,
    ``(32, 17, 1, 7, 7)``, the model 3 colour channels) and ``fc_cls.*`` (the
    60-class NTU head), load with ``strict=False``. Here the non-strict load is
    checked: the only missing key must be ``conv1.conv.weight`` and nothing may
    be left unexpected.

    Returns:
        JSON-able info; ``random_init`` records that the stem conv
        ``conv1.conv.weight`` keeps its random (kaiming) initialisation
        (originals section 13 row 2: "pretrained SlowOnly" is pretrained except
        the stem conv); the stem BN is loaded.

    Raises:
        CheckpointError: missing / unsafe / malformed file, keys without a
            ``backbone.`` / ``cls_head.`` prefix, other missing or unexpected keys,
            or shape mismatches (all listed, with the file name).
    """
    ckpt = read_checkpoint(path, expected_name=POSE_ONLY_FILE)
    sd = state_dict_of(ckpt, "state_dict", path)
    load: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    for key, value in sd.items():
        if key.startswith(("backbone.", "cls_head.")):
            load[key[9:]] = value
        else:
            unexpected.append(key)
    dropped = {}
    for key in ("conv1.conv.weight", "fc_cls.weight", "fc_cls.bias"):
        if key in load:
            dropped[key] = list(load.pop(key).shape)
    own = encoder.state_dict()
    unexpected += sorted(set(load) - set(own))
    # conv1.conv.weight was popped above, so it is always the one key left missing on purpose
    other_missing = sorted(k for k in set(own) - set(load)
                           if k != "conv1.conv.weight" and not k.endswith("num_batches_tracked"))
    shapes = [f"{k}: file {tuple(load[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(load) & set(own)) if load[k].shape != own[k].shape]
    if other_missing or unexpected or shapes:
        parts = []
        if other_missing:
            parts.append(f"missing keys ({len(other_missing)}): {', '.join(other_missing[:12])}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:12])}")
        if shapes:
            parts.append(f"shape mismatches: {'; '.join(shapes[:12])}")
        raise CheckpointError(f"{str(path)!r} does not fit the SlowOnly heatmap encoder: " + " | ".join(parts))
    encoder.load_state_dict(load, strict=False)  # the checks above leave exactly conv1.conv.weight missing
    return {
        "file": str(path), "original_name": POSE_ONLY_FILE, "loaded_tensors": len(load), "strict": False,
        "dropped": dropped,
        "random_init": ["conv1.conv.weight"],
        "note": "stem conv conv1.conv.weight stays randomly initialised (the pretrained stem has "
                f"{dropped.get('conv1.conv.weight', ['?', '?'])[1]} keypoint channels, the model "
                f"{own['conv1.conv.weight'].shape[1]}); stem BN and all stages are loaded",
    }
