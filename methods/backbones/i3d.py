"""I3D (Inception-v1 inflated to 3D, Carreira & Zisserman, CVPR 2017) as used by USDL, CoRe and AQA-TPT.

Re-implementation of the RGB I3D backbone of three compared methods, able to
reproduce each of the three PyTorch ports they run, which are NOT numerically
the same network:

==============  ===========================  ===========================  ===========================
variant         ``"piergiaj"``               ``"hassony2"``               ``"core"``
==============  ===========================  ===========================  ===========================
original        piergiaj/pytorch-i3d         hassony2/kinetics_i3d_       yuxumin/CoRe
                ``pytorch_i3d.py``           pytorch ``src/i3dpt.py``     ``models/i3d.py`` and
                ``InceptionI3d``; the same   ``I3D`` (master, 2019-04)    baiyang4/aqa_tpt
                network in nzl-thu/MUSDL                                  ``models_cluster_...ffn/
                ``models/i3d.py`` (USDL)                                  i3d.py`` ``I3D`` (a copy of
                                                                          hassony2 @ eea2b91, 2019-01)
SAME padding    TF rule per input size,      TF rule in time, fixed       fixed ``k - s`` split
                every dimension              ``k - s`` split in space     ``(lo, hi)`` everywhere
max-pool        zero pad + floor mode        zero pad + ``ceil_mode``     zero pad + ``ceil_mode``
BatchNorm3d     eps 1e-3, momentum 0.01      eps 1e-3, momentum 0.1       eps 1e-5, momentum 0.1
==============  ===========================  ===========================  ===========================

The TF rule pads ``max(k - s, 0)`` when the size is a multiple of the stride
and ``max(k - size % s, 0)`` otherwise, the smaller half in front. The three
agree whenever every stride-2 layer sees even sizes (16 x 224 x 224, 16 x 64
x 64, 8 x 112 x 112 ...), except for the BN eps of ``"core"``; they differ
(a) at odd spatial sizes before a stride-2 layer (``"piergiaj"`` vs the other
two; the tiny scale's 40 x 40 crops reach ``MaxPool3d_4a_3x3`` at 5 x 5),
(b) at odd temporal sizes (``"core"`` vs the other two), (c) by BN eps
(``"core"`` vs the other two, at every size) and (d) in training by the BN
momentum. CoRe and AQA-TPT run the ``"core"`` network with hassony2's released
``model_rgb.pth`` (trained/converted for the eps-1e-3 network).

Layers (module names = piergiaj endpoint names = the project's state-dict
keys): ``Conv3d_1a_7x7`` (64, k7 s2), ``MaxPool3d_2a_3x3`` (k(1,3,3)
s(1,2,2)), ``Conv3d_2b_1x1`` (64), ``Conv3d_2c_3x3`` (192, k3),
``MaxPool3d_3a_3x3`` (k(1,3,3) s(1,2,2)), ``Mixed_3b``, ``Mixed_3c``,
``MaxPool3d_4a_3x3`` (k3 s2), ``Mixed_4b`` .. ``Mixed_4f``, ``MaxPool3d_5a_2x2``
(k2 s2), ``Mixed_5b``, ``Mixed_5c`` (384 + 384 + 128 + 128 = 1024 channels).
Each unit: ``conv3d`` (no bias) -> ``bn`` -> ReLU; each Inception block has
branches ``b0`` (1x1), ``b1a``/``b1b`` (1x1, 3x3), ``b2a``/``b2b`` (1x1, 3x3),
``b3a`` (3x3x3 max-pool, stride 1) / ``b3b`` (1x1). The optional ``logits``
unit (1x1x1 conv with bias, no BN) is piergiaj's classifier.

The originals pool Mixed_5c with a fixed ``AvgPool3d((2, 7, 7), stride 1)``
(piergiaj / MUSDL / CoRe at 16 x 224 x 224: map ``1024 x 2 x 7 x 7``) or
``AvgPool3d((1, 7, 7))`` (AQA-TPT, 8-frame snippets: ``1024 x 1 x 7 x 7``),
which at those sizes is the mean over ``(T', H', W')``; :meth:`I3DEncoder.forward`
takes that mean, so the same network runs at the tiny scale.

Pixel normalisation is the caller's business (see the method adapters):
piergiaj's own scripts feed ``[-1, 1]``; MUSDL, CoRe and AQA-TPT feed ImageNet
mean/std normalised ``[0, 1]`` frames.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import CheckpointError, ConfigError
from methods.checkpoints import load_strict, read_checkpoint, strip_prefix

#: piergiaj-layout files: DeepMind RGB I3D (ImageNet-inflated, Kinetics-400,
#: 400 classes) and MUSDL's Kinetics-pretrained file (157-class head).
I3D_PIERGIAJ_FILES = ("rgb_imagenet.pt", "rgb_i3d_pretrained.pt")
#: hassony2-layout file (DeepMind RGB I3D converted from TF, 400 classes), loaded by CoRe and AQA-TPT.
I3D_HASSONY2_FILE = "model_rgb.pth"
#: Where each file comes from (for "file missing" messages; merged into methods.checkpoints.ORIGINAL_SOURCES).
I3D_SOURCES: dict[str, str] = {
    "rgb_imagenet.pt": "github.com/piergiaj/pytorch-i3d models/rgb_imagenet.pt (Kinetics-400 RGB I3D, 400 classes)",
    "rgb_charades.pt": "github.com/piergiaj/pytorch-i3d models/rgb_charades.pt (Charades fine-tuned, 157 classes)",
    "rgb_i3d_pretrained.pt": ("nzl-thu/MUSDL README (Dropbox link of the GSTEG code), piergiaj layout with a "
                              "157-class head, loaded strictly by MUSDL models/i3d.py InceptionI3d(num_classes=157)"),
    "model_rgb.pth": ("github.com/hassony2/kinetics_i3d_pytorch model/model_rgb.pth (Kinetics-400 RGB I3D "
                      "converted from DeepMind's TF checkpoint, 400 classes); CoRe / AQA-TPT README"),
}

#: Per-variant numerics: BN eps / momentum, padding rule per dim (True = TF rule
#: from the input size, False = fixed ``k - s``), max-pool ceil mode.
VARIANTS: dict[str, dict[str, Any]] = {
    "piergiaj": {"bn_eps": 1e-3, "bn_momentum": 0.01, "dynamic": (True, True, True), "ceil_mode": False},
    "hassony2": {"bn_eps": 1e-3, "bn_momentum": 0.1, "dynamic": (True, False, False), "ceil_mode": True},
    "core": {"bn_eps": 1e-5, "bn_momentum": 0.1, "dynamic": (False, False, False), "ceil_mode": True},
}

#: The checkpoint layout each variant's original module reads (for the loader's note).
LAYOUT_OF_VARIANT = {"piergiaj": "piergiaj", "hassony2": "hassony2", "core": "hassony2"}

# Inception block widths: (b0, b1a, b1b, b2a, b2b, b3b), as in both originals.
_MIXED = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)


def same_padding(size: int, kernel: int, stride: int, dynamic: bool) -> tuple[int, int]:
    """``(front, back)`` zero padding of one dimension for TF-style SAME.

    ``dynamic``: TF's rule, ``max(k - s, 0)`` if ``size % s == 0`` else
    ``max(k - size % s, 0)`` (piergiaj ``compute_pad``; hassony2
    ``get_padding_shape(..., mod)`` in time). Otherwise the fixed ``max(k - s, 0)``
    (hassony2 in space, CoRe's copy everywhere). The front gets the smaller half.
    """
    rem = size % stride
    total = max(kernel - (rem if dynamic and rem else stride), 0)
    return total // 2, total - total // 2


def _pad_for(x: torch.Tensor, kernel, stride, dynamic) -> torch.Tensor:
    pads: list[int] = []
    for dim in (2, 1, 0):  # F.pad order: W, H, T
        pads += same_padding(x.shape[2 + dim], kernel[dim], stride[dim], dynamic[dim])
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (SAME padding per variant) -> BatchNorm3d -> ReLU, or a biased conv without BN (``logits``).

    Keys ``conv3d.weight`` (+ ``conv3d.bias`` without BN), ``bn.{weight, bias,
    running_mean, running_var, num_batches_tracked}`` (piergiaj ``Unit3D``;
    hassony2 ``Unit3Dpy`` names them ``conv3d`` / ``batch3d``).
    Shapes ``(B, Cin, T, H, W) -> (B, Cout, ceil(T/st), ceil(H/sh), ceil(W/sw))``
    for the TF rule; a fixed ``k - s`` pad gives ``floor(size/s)`` at odd sizes
    (``"hassony2"`` in space, ``"core"`` everywhere: 33 -> 16 for k7 s2, TF 17).
    """

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, variant: str = "piergiaj",
                 bn: bool = True, relu: bool = True) -> None:
        super().__init__()
        cfg = VARIANTS[variant]
        self.kernel, self.stride, self.dynamic = tuple(kernel), tuple(stride), cfg["dynamic"]
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=cfg["bn_eps"], momentum=cfg["bn_momentum"]) if bn else None
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_for(x, self.kernel, self.stride, self.dynamic))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class SamePool3d(nn.Module):
    """Max-pool with zero SAME padding per variant (piergiaj ``MaxPool3dSamePadding``, floor mode;
    hassony2 ``MaxPool3dTFPadding``, ``ceil_mode=True``). No parameters. Inputs are post-ReLU (>= 0)."""

    def __init__(self, kernel, stride, *, variant: str = "piergiaj") -> None:
        super().__init__()
        cfg = VARIANTS[variant]
        self.kernel, self.stride, self.dynamic = tuple(kernel), tuple(stride), cfg["dynamic"]
        self.pool = nn.MaxPool3d(self.kernel, self.stride, ceil_mode=cfg["ceil_mode"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(_pad_for(x, self.kernel, self.stride, self.dynamic))


class InceptionBlock(nn.Module):
    """Inception-v1 block: concat of ``b0`` 1x1, ``b1a``->``b1b`` 1x1->3x3, ``b2a``->``b2b`` 1x1->3x3,
    ``b3a`` 3x3x3 max-pool (stride 1) -> ``b3b`` 1x1. ``(B, Cin, T, H, W) -> (B, sum of widths, T, H, W)``."""

    def __init__(self, cin: int, widths, *, variant: str = "piergiaj") -> None:
        super().__init__()
        c0, c1a, c1b, c2a, c2b, c3 = widths
        self.b0 = Unit3D(cin, c0, variant=variant)
        self.b1a = Unit3D(cin, c1a, variant=variant)
        self.b1b = Unit3D(c1a, c1b, (3, 3, 3), variant=variant)
        self.b2a = Unit3D(cin, c2a, variant=variant)
        self.b2b = Unit3D(c2a, c2b, (3, 3, 3), variant=variant)
        self.b3a = SamePool3d((3, 3, 3), (1, 1, 1), variant=variant)
        self.b3b = Unit3D(cin, c3, variant=variant)
        self.out_channels = c0 + c1b + c2b + c3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class I3DEncoder(nn.Module):
    """RGB I3D up to Mixed_5c + global average pooling -> 1024 per clip.

    Args:
        variant: ``"piergiaj"`` (piergiaj/pytorch-i3d ``InceptionI3d`` = MUSDL's
            copy; USDL), ``"hassony2"`` (hassony2/kinetics_i3d_pytorch
            ``src/i3dpt.py`` ``I3D`` at master) or ``"core"`` (the older hassony2
            copy vendored by CoRe ``models/i3d.py`` and AQA-TPT; CoRe, AQA-TPT).
            See the module docstring for what differs.
        num_classes: ``None`` (default): no classifier; the loader drops a file's
            head. An int keeps piergiaj's ``logits`` unit (1x1x1 conv 1024 ->
            ``num_classes`` with bias) so a file's head is loaded strictly into it
            (unused by :meth:`forward`).

    Shapes: :meth:`forward` ``(B, 3, T, H, W) -> (B, 1024)``; :meth:`features`
    ``-> (B, 1024, T', H', W')`` with ``T' = ceil(T/8)``, ``H' = ceil(H/32)``
    (``16 x 224 x 224 -> 2 x 7 x 7``; ``8 x 224 x 224 -> 1 x 7 x 7``; ``8 x 40 x 40
    -> 1 x 2 x 2``) for ``"piergiaj"``; the other variants give the same sizes
    when every stride-2 layer sees an even size (and ``"hassony2"`` at any T),
    smaller ones otherwise (``9 x 33 x 33``: piergiaj ``2 x 2 x 2``, hassony2
    ``2 x 1 x 1``, core ``1 x 1 x 1``). Any input of at least 1 x 1 x 1 runs
    for ``"piergiaj"``; the fixed-pad variants need ``H, W >= 2`` (``"core"`` also
    ``T >= 2``), as their originals do (tiny scale:
    8 x 40 x 40).
    Keys: piergiaj's ``InceptionI3d`` state dict (``Conv3d_1a_7x7.conv3d.weight``,
    ``Mixed_3b.b1b.bn.running_var``, ..., ``logits.conv3d.{weight,bias}`` when
    ``num_classes`` is set).
    Source: piergiaj/pytorch-i3d ``pytorch_i3d.py``; hassony2/kinetics_i3d_pytorch
    ``src/i3dpt.py``; yuxumin/CoRe ``models/i3d.py``.

    Raises:
        ConfigError: unknown ``variant``.
    """

    feat_dim = 1024

    def __init__(self, variant: str = "piergiaj", num_classes: int | None = None) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ConfigError(f"unknown I3D variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant
        self.num_classes = num_classes
        v = {"variant": variant}
        self.Conv3d_1a_7x7 = Unit3D(3, 64, (7, 7, 7), (2, 2, 2), **v)
        self.MaxPool3d_2a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2), **v)
        self.Conv3d_2b_1x1 = Unit3D(64, 64, **v)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3), **v)
        self.MaxPool3d_3a_3x3 = SamePool3d((1, 3, 3), (1, 2, 2), **v)
        self.endpoints = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3"]
        for name, a, b in _MIXED:
            if name.startswith("MaxPool"):
                self.add_module(name, SamePool3d(a, b, **v))
            else:
                self.add_module(name, InceptionBlock(a, b, **v))
            self.endpoints.append(name)
        self.logits = None
        if num_classes is not None:
            self.logits = Unit3D(1024, int(num_classes), bn=False, relu=False, **v)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The Mixed_5c map ``(B, 1024, T', H', W')`` of ``(B, 3, T, H, W)`` clips."""
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, T, H, W) RGB clips, got {tuple(x.shape)}")
        for name in self.endpoints:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W) -> (B, 1024)``: Mixed_5c averaged over ``(T', H', W')``."""
        return self.features(x).mean(dim=(2, 3, 4))


# hassony2 key pieces -> project (piergiaj) pieces.
_HASSONY2_TOP = {"conv3d_1a_7x7": "Conv3d_1a_7x7", "conv3d_2b_1x1": "Conv3d_2b_1x1",
                 "conv3d_2c_3x3": "Conv3d_2c_3x3", "conv3d_0c_1x1": "logits"}
_HASSONY2_BRANCH = {"branch_0": "b0", "branch_1.0": "b1a", "branch_1.1": "b1b", "branch_2.0": "b2a",
                    "branch_2.1": "b2b", "branch_3.1": "b3b"}


def hassony2_to_project_key(key: str) -> str | None:
    """Project key of a hassony2 ``I3D`` key, or ``None`` if it is not one.

    ``conv3d_1a_7x7.batch3d.running_mean -> Conv3d_1a_7x7.bn.running_mean``;
    ``mixed_4b.branch_1.1.conv3d.weight -> Mixed_4b.b1b.conv3d.weight``;
    ``conv3d_0c_1x1.conv3d.bias -> logits.conv3d.bias``.
    """
    for old, new in _HASSONY2_TOP.items():
        if key.startswith(old + "."):
            rest = key[len(old) + 1:]
            break
    else:
        if not key.startswith("mixed_") or key.count(".") < 2:
            return None
        block, rest = key.split(".", 1)
        for old_b, new_b in _HASSONY2_BRANCH.items():
            if rest.startswith(old_b + "."):
                new = f"M{block[1:]}.{new_b}"
                rest = rest[len(old_b) + 1:]
                break
        else:
            return None
    unit, _, param = rest.partition(".")
    if unit == "batch3d":
        unit = "bn"
    elif unit != "conv3d":
        return None
    return f"{new}.{unit}.{param}"


def project_to_hassony2_key(key: str) -> str:
    """Inverse of :func:`hassony2_to_project_key` (used by tests to write hassony2-layout files)."""
    inv_top = {v: k for k, v in _HASSONY2_TOP.items()}
    inv_branch = {v: k for k, v in _HASSONY2_BRANCH.items()}
    head, rest = key.split(".", 1)
    if head in inv_top:
        out = inv_top[head]
    else:
        branch, rest = rest.split(".", 1)
        out = f"m{head[1:]}.{inv_branch[branch]}"
    unit, _, param = rest.partition(".")
    return f"{out}.{'batch3d' if unit == 'bn' else unit}.{param}"


def detect_layout(state: Mapping[str, torch.Tensor]) -> str | None:
    """``"piergiaj"`` (``Conv3d_1a_7x7.conv3d.weight``), ``"hassony2"`` (``conv3d_1a_7x7.conv3d.weight``) or None."""
    if "Conv3d_1a_7x7.conv3d.weight" in state:
        return "piergiaj"
    if "conv3d_1a_7x7.conv3d.weight" in state:
        return "hassony2"
    return None


def map_hassony2_state(state: Mapping[str, torch.Tensor], path: str | Path, where: str = "") -> dict[str, torch.Tensor]:
    """A hassony2-layout I3D state dict (``model_rgb.pth``) under the project's key names
    (:func:`hassony2_to_project_key`), tensors unchanged.

    Args:
        where: names the part of the file in the error (e.g. ``" 'backbone' entry"``).

    Raises:
        CheckpointError: keys outside the hassony2 layout (listed, with the file).
    """
    mapped, bad = {}, []
    for k, v in state.items():
        nk = hassony2_to_project_key(k)
        if nk is None:
            bad.append(k)
        else:
            mapped[nk] = v
    if bad:
        raise CheckpointError(f"{str(path)!r}{where}: keys outside the hassony2 I3D layout ({len(bad)}): "
                              f"{', '.join(sorted(bad)[:12])}")
    return mapped


def load_i3d_checkpoint(encoder: I3DEncoder, path: str | Path, *, layout: str = "auto") -> dict[str, Any]:
    """Load a released I3D state dict (either PyTorch key layout) into ``encoder``.

    Reads (with :func:`methods.checkpoints.read_checkpoint`) a plain state dict:

    * piergiaj layout (``rgb_imagenet.pt``, ``rgb_charades.pt``, MUSDL's
      ``rgb_i3d_pretrained.pt``): keys as the project's; may lack
      ``num_batches_tracked`` or carry a ``module.`` prefix.
    * hassony2 layout (``model_rgb.pth``, what CoRe and AQA-TPT load): renamed
      with :func:`hassony2_to_project_key` (``batch3d`` -> ``bn``,
      ``mixed_*.branch_k.i`` -> ``Mixed_*.b..``, ``conv3d_0c_1x1`` -> ``logits``).

    The classifier (``logits.*`` / ``conv3d_0c_1x1.*``) is dropped and recorded
    when ``encoder.num_classes`` is None, otherwise loaded (its class count must
    match). Everything else is loaded strictly.

    Args:
        encoder: the :class:`I3DEncoder` to fill (any variant; a layout whose
            original module is another variant is noted in the result).
        path: the file.
        layout: ``"auto"`` (from the key names), ``"piergiaj"`` or ``"hassony2"``.

    Returns:
        JSON-able info: ``file``, ``layout``, ``variant``, ``stripped_module_prefix``,
        ``dropped_head`` (``{"keys", "classes"}`` or None), ``head_classes``,
        ``loaded_tensors``, ``notes``.

    Raises:
        CheckpointError: missing / unsafe / unreadable file, not a state dict of
            tensors, layout not recognised (or not the one asked for), keys that
            do not map, or a strict-load mismatch (missing / unexpected keys,
            shapes), each naming the file.
    """
    if layout not in ("auto", "piergiaj", "hassony2"):
        raise ConfigError(f"unknown I3D checkpoint layout {layout!r}; use 'auto', 'piergiaj' or 'hassony2'")
    path = Path(path)
    if not path.is_file():
        known = [path.name] if path.name in I3D_SOURCES else [*I3D_PIERGIAJ_FILES, I3D_HASSONY2_FILE]
        raise CheckpointError(f"I3D checkpoint file {str(path)!r} does not exist; expected "
                              + "; or ".join(f"{n!r} ({I3D_SOURCES[n]})" for n in known))
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, Mapping) or not ckpt or not all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        top = ", ".join(map(str, list(ckpt)[:8])) if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{str(path)!r} is not a plain I3D state dict of tensors (found: {top}); expected "
                              f"{', '.join(I3D_PIERGIAJ_FILES)} (piergiaj layout) or {I3D_HASSONY2_FILE} (hassony2)")
    sd, had_module = strip_prefix(ckpt, "module.")
    found = detect_layout(sd)
    if found is None or (layout != "auto" and found != layout):
        raise CheckpointError(
            f"{str(path)!r} is not an I3D state dict in the {'piergiaj or hassony2' if layout == 'auto' else layout} "
            f"layout (first keys: {', '.join(list(sd)[:4])}); expected 'Conv3d_1a_7x7.conv3d.weight' (piergiaj "
            f"pytorch_i3d.py: {', '.join(I3D_PIERGIAJ_FILES)}) or 'conv3d_1a_7x7.conv3d.weight' (hassony2 i3dpt.py: "
            f"{I3D_HASSONY2_FILE})")
    if found == "hassony2":
        sd = map_hassony2_state(sd, path)
    head = {k: sd[k] for k in list(sd) if k.startswith("logits.")}
    head_classes = int(head["logits.conv3d.weight"].shape[0]) if "logits.conv3d.weight" in head else None
    dropped = None
    if encoder.logits is None and head:
        for k in head:
            del sd[k]
        dropped = {"keys": sorted(head), "classes": head_classes}
    load_strict(encoder, sd, path, f"I3D encoder ({encoder.variant} variant, {found} layout)")
    notes = []
    if LAYOUT_OF_VARIANT[encoder.variant] != found:
        notes.append(f"{found}-layout file loaded into the {encoder.variant!r} variant (the original module "
                     f"reading this layout is {'piergiaj' if found == 'piergiaj' else 'hassony2 / core'})")
    return {"file": str(path), "layout": found, "variant": encoder.variant, "stripped_module_prefix": had_module,
            "dropped_head": dropped, "head_classes": head_classes, "loaded_tensors": len(sd), "notes": notes}


from methods.checkpoints import register_sources as _register_sources  # noqa: E402

_register_sources(I3D_SOURCES)
