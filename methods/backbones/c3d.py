"""C3D (Tran et al., ICCV 2015; Sports-1M weights) up to ``fc6`` + ReLU, as C3D-LSTM uses it.

Re-implementation of the clip encoder of the C3D-LSTM PyTorch port
(ParitoshParmar/C3D-LSTM--PyTorch ``models/C3D.py`` class ``C3D``, itself the
network of DavideA/c3d-pytorch ``C3D_model.py`` cut after ``fc6``):

=========  ===========================================================
conv1      Conv3d(3, 64, 3x3x3, pad 1) + ReLU -> pool1 MaxPool (1,2,2)/(1,2,2)
conv2      Conv3d(64, 128) + ReLU -> pool2 MaxPool (2,2,2)/(2,2,2)
conv3a/b   Conv3d(128, 256), Conv3d(256, 256), each + ReLU -> pool3 (2,2,2)
conv4a/b   Conv3d(256, 512), Conv3d(512, 512), each + ReLU -> pool4 (2,2,2)
conv5a/b   Conv3d(512, 512) x 2, each + ReLU -> pool5 (2,2,2)/(2,2,2) pad (0,1,1)
fc6        flatten 8192 = 512 x 1 x 4 x 4 -> Linear(8192, 4096) + ReLU
=========  ===========================================================

All convolutions are 3x3x3, stride 1, padding 1, with bias. No dropout (the
port removed fc7, fc8, dropout and softmax). Keys: ``conv1``, ``conv2``,
``conv3a``, ``conv3b``, ``conv4a``, ``conv4b``, ``conv5a``, ``conv5b``, ``fc6``
(``.weight`` / ``.bias``), those of ``c3d.pickle`` without ``fc7`` / ``fc8``.

Input size is fixed by ``fc6``: 8192 inputs = 512 x 1 x 4 x 4 are produced by a
16 x 112 x 112 clip (the original data: 171 x 128 frames, 112 centre crop). The
module refuses other sizes instead of silently reshaping (the original's
``view(-1, 8192)`` would fold a larger map into extra "batch" rows). There is
no smaller variant that keeps the weights: the ``tiny`` scale runs C3D at 16 x
112 x 112 too (one 16-frame clip costs about 38.5 GFLOP).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.errors import CheckpointError
from methods.checkpoints import load_strict, read_checkpoint, strip_prefix

#: Original file name of the Sports-1M C3D weights (DavideA/c3d-pytorch).
C3D_FILE = "c3d.pickle"
#: Where it comes from (for ``methods.checkpoints.ORIGINAL_SOURCES``).
C3D_SOURCE = ("C3D trained on Sports-1M (487 classes), converted from Caffe by DavideA/c3d-pytorch "
              "(README: http://imagelab.ing.unimore.it/files/c3d_pytorch/c3d.pickle); the weights "
              "ParitoshParmar/C3D-LSTM--PyTorch loads")

#: Frames and crop side C3D's fc6 fixes (8192 = 512 x 1 x 4 x 4 for 16 x 112 x 112).
C3D_CLIP_LEN = 16
C3D_CROP = 112
#: Width of the fc6 feature.
C3D_FEAT_DIM = 4096

_CONVS = (("conv1", 3, 64), ("conv2", 64, 128), ("conv3a", 128, 256), ("conv3b", 256, 256),
          ("conv4a", 256, 512), ("conv4b", 512, 512), ("conv5a", 512, 512), ("conv5b", 512, 512))
#: Keys of the Sports-1M classifier part of ``c3d.pickle`` that C3D-LSTM drops.
C3D_DROPPED_PREFIXES = ("fc7.", "fc8.")


class C3D(nn.Module):
    """C3D convolutions + ``fc6`` + ReLU: one 4096-d feature per 16 x 112 x 112 clip.

    Shapes: ``(B, 3, 16, 112, 112)`` -> ``(B, 4096)`` (non-negative: after ReLU).
    Pixel scale: whatever the caller feeds (the C3D-LSTM port feeds ImageNet-
    normalised frames, DavideA's reference 0..255 RGB; see ``methods.c3d_lstm``).
    Source: ParitoshParmar/C3D-LSTM--PyTorch ``models/C3D.py`` ``C3D``.

    Raises (forward):
        ValueError: input not ``(B, 3, 16, 112, 112)``.
    """

    def __init__(self) -> None:
        super().__init__()
        for name, cin, cout in _CONVS:
            self.add_module(name, nn.Conv3d(cin, cout, kernel_size=3, padding=1))
        self.pool1 = nn.MaxPool3d(kernel_size=(1, 2, 2), stride=(1, 2, 2))
        self.pool2 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.pool3 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.pool4 = nn.MaxPool3d(kernel_size=2, stride=2)
        self.pool5 = nn.MaxPool3d(kernel_size=2, stride=2, padding=(0, 1, 1))
        self.fc6 = nn.Linear(8192, C3D_FEAT_DIM)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5 or tuple(x.shape[1:]) != (3, C3D_CLIP_LEN, C3D_CROP, C3D_CROP):
            raise ValueError(f"C3D takes (B, 3, {C3D_CLIP_LEN}, {C3D_CROP}, {C3D_CROP}) clips (its fc6 fixes "
                             f"the size), got {tuple(x.shape)}")
        r = self.relu
        h = self.pool1(r(self.conv1(x)))
        h = self.pool2(r(self.conv2(h)))
        h = self.pool3(r(self.conv3b(r(self.conv3a(h)))))
        h = self.pool4(r(self.conv4b(r(self.conv4a(h)))))
        h = self.pool5(r(self.conv5b(r(self.conv5a(h)))))
        return r(self.fc6(h.flatten(1)))


def load_c3d_checkpoint(c3d: C3D, path: str | Path) -> dict[str, Any]:
    """Load ``c3d.pickle`` (Sports-1M C3D) into ``c3d``.

    The file (DavideA/c3d-pytorch) is a plain state dict of the full C3D:
    ``conv1.weight`` ``(64, 3, 3, 3, 3)`` ... ``fc6.weight`` ``(4096, 8192)``,
    ``fc7.*``, ``fc8.weight`` ``(487, 4096)``. The C3D-LSTM port keeps the keys its
    truncated C3D has (``train_c3d_lstm.py``: intersect, update, load), i.e. drops
    ``fc7`` / ``fc8``. Here the remaining keys must fit exactly (strict): a key of
    the model absent from the file, or a foreign key, is an error instead of the
    port's silent random init. A leading ``module.`` is stripped; a dict with a
    ``state_dict`` entry is accepted too (re-saved copies).

    Returns:
        JSON-able info: file, tensors loaded, ``dropped`` (key -> shape),
        ``n_classes`` of the dropped Sports-1M head (487), prefix stripped.

    Raises:
        CheckpointError: missing / unsafe / unreadable file, not a state dict of
            tensors, or keys / shapes that do not fit (listed, with the file name).
    """
    ckpt = read_checkpoint(path, expected_name=C3D_FILE)
    if isinstance(ckpt, dict) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], dict):
        ckpt, container = ckpt["state_dict"], "dict['state_dict']"
    else:
        container = "plain state dict"
    if not isinstance(ckpt, dict) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        raise CheckpointError(f"{str(path)!r} is not a C3D state dict of tensors (expected the plain state dict "
                              f"{C3D_FILE!r} of DavideA/c3d-pytorch); got {type(ckpt).__name__}")
    sd, stripped = strip_prefix(ckpt, "module.")
    dropped = {k: list(v.shape) for k, v in sd.items() if k.startswith(C3D_DROPPED_PREFIXES)}
    sd = {k: v for k, v in sd.items() if k not in dropped}
    load_strict(c3d, sd, path, "C3D up to fc6 (conv1..conv5b, fc6)")
    fc8 = dropped.get("fc8.weight")
    return {"file": str(path), "original_name": C3D_FILE, "container": container, "loaded_tensors": len(sd),
            "stripped_module_prefix": stripped, "dropped": dropped,
            "n_classes": fc8[0] if fc8 else None, "strict": True}
