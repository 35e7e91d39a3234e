"""3D ResNet-18 / -34 (Hara, Kataoka, Satoh; kenshohara/3D-ResNets-PyTorch) as a 512-d clip encoder.

Re-implementation of ``models/resnet.py`` ``ResNet`` built by
``generate_model(18 | 34)`` with the defaults the released ``r3d*_200ep``
models were trained with (``opts.py``: ``conv1_t_size`` 7, ``conv1_t_stride`` 1,
``no_max_pool`` False, ``resnet_shortcut`` 'B', ``resnet_widen_factor`` 1):

===========  ===========================================================
stem         conv1 Conv3d(3, 64, (7,7,7), stride (1,2,2), pad (3,3,3), no bias)
             -> bn1 BatchNorm3d -> ReLU -> maxpool MaxPool3d(3, stride 2, pad 1)
layer1..4    BasicBlock x (2,2,2,2) (18) or (3,4,6,3) (34), widths 64/128/256/512;
             stride 2 (T, H, W) on conv1 of the first block of layers 2-4
BasicBlock   conv1 3x3x3 (stride s) -> bn1 -> ReLU -> conv2 3x3x3 -> bn2,
             + shortcut, ReLU; shortcut 'B': downsample = Sequential(Conv3d
             1x1x1 stride s no bias, BatchNorm3d) where stride or width change
head         AdaptiveAvgPool3d(1) -> 512 (the original's ``fc`` classifier is
             dropped: ``n_classes`` 1039 (KM) / 700 (K) in the released files)
===========  ===========================================================

Keys as the original (``conv1.weight``, ``bn1.*``, ``layer{1-4}.{i}.conv1.weight``,
``.bn1.*``, ``.conv2.weight``, ``.bn2.*``, ``layer{2-4}.0.downsample.{0,1}.*``),
without ``fc.*``. The global average pool is the original's own
(``AdaptiveAvgPool3d((1, 1, 1))``), so any clip size runs: 16 x 112 x 112 gives a
512 x 1 x 4 x 4 map before pooling, the ``tiny`` 8 x 40 x 40 a 512 x 1 x 2 x 2 map.
Init as the original: kaiming-normal (fan_out, ReLU) convolutions, BN weight 1 bias 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import CheckpointError, ConfigError
from methods.checkpoints import load_strict, read_checkpoint, strip_prefix

#: Blocks per stage (``generate_model``).
R3D_LAYERS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
#: Stage widths (``get_inplanes``).
R3D_WIDTHS = (64, 128, 256, 512)
R3D_FEAT_DIM = 512

#: Released checkpoints (README "Pre-trained models", Google Drive): (depth, variant) -> file name.
#: KM = Kinetics-700 + Moments in Time (1039 classes), K = Kinetics-700 (700 classes).
R3D_FILES: dict[tuple[int, str], str] = {
    (18, "KM"): "r3d18_KM_200ep.pth", (18, "K"): "r3d18_K_200ep.pth",
    (34, "KM"): "r3d34_KM_200ep.pth", (34, "K"): "r3d34_K_200ep.pth",
}
#: ``--n_pretrain_classes`` of each variant (README).
R3D_PRETRAIN_CLASSES = {"KM": 1039, "K": 700}
#: Where the files come from (for ``methods.checkpoints.ORIGINAL_SOURCES``).
R3D_SOURCES: dict[str, str] = {
    name: (f"3D ResNet-{depth} trained 200 epochs on "
           f"{'Kinetics-700 + Moments in Time (1039 classes)' if v == 'KM' else 'Kinetics-700 (700 classes)'}; "
           "kenshohara/3D-ResNets-PyTorch README 'Pre-trained models' (Google Drive "
           "1xbYbZ7rpyjftI_KCk6YuL-XrfQDz7Yd4)")
    for (depth, v), name in R3D_FILES.items()
}


class BasicBlock3d(nn.Module):
    """3D-ResNets ``BasicBlock`` (expansion 1).

    ``out = ReLU(bn2(conv2(ReLU(bn1(conv1(x))))) + shortcut(x))``; ``conv1`` carries
    the stride; ``downsample`` (shortcut 'B') is ``Sequential(conv 1x1x1, BN)`` or None.
    Shapes ``(B, Cin, T, H, W) -> (B, planes, ceil(T/s), ceil(H/s), ceil(W/s))``.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv3d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class R3DEncoder(nn.Module):
    """3D ResNet-18 / -34 (shortcut B, 7x7x7 stem, max-pool) -> 512 per clip.

    Args:
        depth: 18 or 34.
        n_classes: None (default, the encoder: no ``fc``) or the width of an
            ``fc`` classifier ``Linear(512, n_classes)`` kept for :meth:`logits`
            (e.g. 1039 to compare with the released network as a whole).

    Shapes: ``forward`` ``(B, 3, T, H, W) -> (B, 512)``; :meth:`features`
    ``-> (B, 512, T', H', W')`` (16 x 112 x 112 -> 1 x 4 x 4).
    Input: pixels in [0, 1] normalised with the Kinetics mean / std
    (``mean.py`` ``get_mean_std(1, 'kinetics')``).
    Source: kenshohara/3D-ResNets-PyTorch ``models/resnet.py`` ``ResNet`` / ``generate_model``.

    Raises:
        ConfigError: a depth other than 18 / 34.
    """

    def __init__(self, depth: int = 18, n_classes: int | None = None) -> None:
        super().__init__()
        if depth not in R3D_LAYERS:
            raise ConfigError(f"R3D depth must be one of {sorted(R3D_LAYERS)}, got {depth!r}")
        self.depth = depth
        self.conv1 = nn.Conv3d(3, R3D_WIDTHS[0], (7, 7, 7), (1, 2, 2), (3, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(R3D_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        inplanes = R3D_WIDTHS[0]
        for i, (blocks, planes) in enumerate(zip(R3D_LAYERS[depth], R3D_WIDTHS)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or inplanes != planes:
                downsample = nn.Sequential(nn.Conv3d(inplanes, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))
            layer = [BasicBlock3d(inplanes, planes, stride, downsample)]
            inplanes = planes
            layer += [BasicBlock3d(planes, planes) for _ in range(1, blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(R3D_FEAT_DIM, n_classes) if n_classes else None
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``layer4`` output ``(B, 512, T', H', W')``."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"R3D takes (B, 3, T, H, W) clips, got {tuple(x.shape)}")
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.avgpool(self.features(x)).flatten(1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """``fc`` applied to :meth:`forward` ``(B, n_classes)`` (only with ``n_classes``)."""
        if self.fc is None:
            raise RuntimeError("this R3DEncoder was built without an fc classifier (n_classes=None)")
        return self.fc(self.forward(x))


def load_r3d_checkpoint(encoder: R3DEncoder, path: str | Path, expected_name: str | None = None) -> dict[str, Any]:
    """Load a released 3D-ResNets checkpoint (``r3d18_KM_200ep.pth`` ...) into ``encoder``.

    The file (``main.py`` ``save_checkpoint``) is a dict ``{'epoch', 'arch'
    ('resnet-18'), 'state_dict', 'optimizer', 'scheduler'}``; ``state_dict`` is saved
    from ``model.module`` so it has no ``module.`` prefix, but older files do
    (``util_scripts/remove_dataparallel.py``): a leading ``module.`` is stripped.
    A plain state dict (no container) is accepted too. The classifier ``fc.*``
    (``(n_pretrain_classes, 512)``) is dropped and recorded (the original
    fine-tuning, ``model.py`` ``load_pretrained_model``, loads strictly and then
    replaces ``fc``); everything else is loaded strictly.

    Args:
        encoder: an :class:`R3DEncoder` (with or without ``fc``; with ``fc`` of
            the file's width, ``fc`` is loaded too).
        path: the file.
        expected_name: the original file name (for the "missing file" message).

    Returns:
        JSON-able info: file, ``arch`` and ``epoch`` of the file, ``n_pretrain_classes``
        (1039 KM / 700 K), ``dropped`` (key -> shape), prefix stripped.

    Raises:
        CheckpointError: missing / unsafe / unreadable file, no state dict, an
            ``arch`` other than ``resnet-<depth>``, or keys / shapes that do not fit
            (e.g. an R3D-34 file for R3D-18: listed, with the file name).
    """
    ckpt = read_checkpoint(path, expected_name=expected_name)
    if isinstance(ckpt, dict) and "state_dict" in ckpt:
        sd, container = ckpt["state_dict"], "dict['state_dict']"
    else:
        sd, container = ckpt, "plain state dict"
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(path)!r}: expected a 3D-ResNets checkpoint (dict with 'state_dict', "
                              f"main.py save_checkpoint) or a state dict of tensors; got {type(ckpt).__name__}"
                              + (f" with keys {', '.join(map(str, list(ckpt)[:8]))}" if isinstance(ckpt, dict) else ""))
    arch = ckpt.get("arch") if container != "plain state dict" else None
    if arch is not None and str(arch) != f"resnet-{encoder.depth}":
        raise CheckpointError(f"{str(path)!r} holds arch {arch!r}, the model is 'resnet-{encoder.depth}': use the "
                              f"r3d{encoder.depth}_*_200ep.pth file")
    sd, stripped = strip_prefix(sd, "module.")
    dropped: dict[str, list[int]] = {}
    fc_shape = list(sd["fc.weight"].shape) if "fc.weight" in sd else None
    if encoder.fc is None:
        dropped = {k: list(sd[k].shape) for k in ("fc.weight", "fc.bias") if k in sd}
        sd = {k: v for k, v in sd.items() if k not in dropped}
    load_strict(encoder, sd, path, f"R3D-{encoder.depth} encoder (3D-ResNets resnet-{encoder.depth}, shortcut B)")
    epoch = ckpt.get("epoch") if container != "plain state dict" else None
    return {"file": str(path), "original_name": expected_name, "container": container,
            "arch": None if arch is None else str(arch),
            "epoch": epoch if isinstance(epoch, int) else None, "loaded_tensors": len(sd),
            "stripped_module_prefix": stripped, "dropped": dropped,
            "n_pretrain_classes": fc_shape[0] if fc_shape else None, "strict": True}
