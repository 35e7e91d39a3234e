"""IAL-GCA network (Li, Niu, Zhu, Zhao: "Intensity-Aware Loss for Dynamic Facial
Expression Recognition in the Wild", AAAI 2023; muse1998/IAL-for-Facial-Expression-Recognition).

Re-implementation of the original ``modules.py`` (``GCA_IAL()`` = ``ResNet(BasicBlock,
[1, 1, 1, 3])``) and ``final_model.py`` (``GenerateModel``), read at commit
:data:`IAL_GCA_COMMIT`. Module and parameter names are the original's, so a state dict
saved by the original ``main.py`` (``torch.save(model.state_dict(), './pretrain_DFEW.pth')``
of an ``nn.DataParallel(GenerateModel())``) loads strictly::

    s_former.conv1.{0 (conv 3->64 3x3/2), 1 (BN), 3 (conv 64->64 3x3)}.*, s_former.bn1.*, s_former.bias,
    s_former.layer{1,2,3}.0.{conv1,bn1,conv2,bn2,bias1,bias2,glb,gc.0,fc1.0,fc2.0,AUX_fc.{0,1}}.*,
    s_former.layer{2,3}.0.downsample.{0,1}.*, s_former.layer4.{0,1,2}.{conv1,bn1,conv2,bn2}.*,
    s_former.layer4.0.downsample.{0,1}.*, s_former.patch_embedding.{0,1}.*,
    s_former.pos_transformer.layers.{0,1}.<pre-norm block>, s_former.pos_embedding_pos (1, 16, 256),
    s_former.temporal_transformer.layers.{0,1}.<pre-norm block>, s_former.pos_embedding (1, 16, 4096),
    fc_f.{weight (7, 4096), bias (7,)}        (7-way DFEW expression head)

Parameters the original creates but never uses in ``forward`` are kept so a strict
load succeeds: ``s_former.bias``, every block's ``bias1``, ``bias2`` and ``glb``, and
layer1's ``gc`` / ``fc1`` / ``fc2`` / ``AUX_fc`` (the GCA branch runs only when a block
has more than 64 channels). 19,083,527 parameters with ``fc_f`` (counted on the
original ``GenerateModel`` built from the repository at :data:`IAL_GCA_COMMIT`).

Sizes the architecture accepts:

* Frame side ``S``: the GCA global convolutions have kernels tied to the map size
  (``(256 // C) * 7``: 14 on layer2's 14x14 map, 7 on layer3's 7x7 map) and must give a
  1x1 descriptor, the static branch reshapes layer3 to 7x7 and the temporal tokens are
  ``256 * 4 * 4 = 4096`` wide. Each of the three stride-2 stages before layer2's output
  maps ``s -> ceil(s / 2)``, so layer2 is 14x14 exactly for ``105 <= S <= 112``
  (:data:`FRAME_SIZES`); the original hard-codes ``view(-1, 3, 112, 112)``, i.e. 112.
  No smaller size is possible without changing parameter shapes.
* Frames per clip ``T``: the original hard-codes 16 (``view(b // 16, 16, ...)``; the
  temporal positional embedding has 16 rows of which the ``T - 1 = 15`` frame
  differences use the first 15). The re-implementation takes ``T`` as a parameter,
  ``2 <= T <= 17`` (:data:`MIN_FRAMES`, :data:`MAX_FRAMES`): the GCA temporal means run
  over the clip's ``T`` frames and the first ``T - 1`` rows of ``pos_embedding`` are
  used, which for ``T = 16`` is exactly the original.

No trained IAL-GCA weights are released (the README links none); a DFEW model must be
trained with the original ``main.py``, which writes :data:`IAL_GCA_FILE`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from benchmark.errors import CheckpointError
from methods.backbones.former_dfer import Transformer
from methods.checkpoints import load_strict, read_checkpoint, strip_prefix

#: Original file name: ``main.py`` saves ``model.state_dict()`` (DataParallel -> ``module.`` keys)
#: to ``./pretrain_DFEW.pth`` whenever the DFEW validation accuracy improves.
IAL_GCA_FILE = "pretrain_DFEW.pth"
#: Where it comes from (for ``methods.checkpoints.ORIGINAL_SOURCES``).
IAL_GCA_SOURCE = ("IAL-GCA trained on DFEW with github.com/muse1998/IAL-for-Facial-Expression-Recognition "
                  "main.py (torch.save(model.state_dict(), './pretrain_DFEW.pth')); no trained weights are "
                  "released, train them yourself")
#: Commit of the original repository the re-implementation and the golden fixture were checked against.
IAL_GCA_COMMIT = "39a24b67f5de016fb6a82770e0c6082bd9077d21"

#: Frame sides the architecture accepts (layer2 map 14x14, layer3 7x7); the original uses 112.
FRAME_SIZES = range(105, 113)
#: Frames per clip: the original's 16; the temporal positional embedding has 16 rows for T - 1 tokens.
ORIGINAL_FRAMES = 16
MIN_FRAMES = 2
MAX_FRAMES = 17
#: Width of the per-clip feature x_FER (256 channels x 4 x 4).
FEAT_DIM = 4096
#: DFEW classes of the expression head ``fc_f`` and of the auxiliary classifiers ``AUX_fc``.
N_CLASSES = 7


def _conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


class GCABlock(nn.Module):
    """ResNet basic block with the global convolution-attention (GCA) rescaling.

    ``out = BN(conv3x3(ReLU(BN(conv3x3(x)))))``; when ``planes > 64`` (layer2, layer3)
    the residual branch is rescaled per channel before the skip addition:

    * ``d = gc(out)``: depthwise Conv2d(C, C, k = (256 // C) * 7, groups C, no bias) -> ``(N*T, C, 1, 1)``;
    * auxiliary logits ``AUX_fc(mean_t d)``: Linear(C, 2C) -> Linear(2C, 7), no biases, ``(N, 7)``;
    * ``w = 2 * fc2(fc1(d))`` (``fc1`` 1x1 conv C -> C/16 + ReLU, ``fc2`` C/16 -> C + Sigmoid);
    * ``w = sqrt(w * mean_t(w) + 1e-5)`` (temporal globalisation over the clip's T frames);
    * ``out = ReLU(out * w + identity)``.

    With ``planes == 64`` (layer1) it is a plain basic block; its GCA parameters exist
    (gc kernel 28) but are unused, as in the original, and the second output is None
    (the original returns the block output there). ``bias1``, ``bias2`` (``(1, C, 1, 1)``,
    standard normal) and ``glb`` (1x1 conv) are never used by the original either.

    Shapes: ``forward(x (N*T, Cin, H, W), frames=T) -> (out (N*T, C, H', W'), aux (N, 7) | None)``,
    rows frame-major per clip (row ``n * T + t``).
    Source: muse1998/IAL-for-Facial-Expression-Recognition ``modules.py`` ``BasicBlock``.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride)
        self.stride = stride
        self.bias1 = nn.Parameter(torch.randn(1, planes, 1, 1))  # unused (original)
        self.bias2 = nn.Parameter(torch.randn(1, planes, 1, 1))  # unused (original)
        self.AUX_fc = nn.Sequential(nn.Linear(planes, planes * 2, bias=False),
                                    nn.Linear(planes * 2, N_CLASSES, bias=False))
        self.glb = nn.Conv2d(planes, planes, 1, bias=False)  # unused (original)
        self.gc = nn.Sequential(nn.Conv2d(planes, planes, 256 // planes * 7, groups=planes, bias=False))
        self.fc1 = nn.Sequential(nn.Conv2d(planes, planes // 16, 1, bias=False), nn.ReLU())
        self.fc2 = nn.Sequential(nn.Conv2d(planes // 16, planes, 1, bias=False), nn.Sigmoid())
        self.gca = planes > 64

    def forward(self, x: torch.Tensor, frames: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        aux = None
        if self.gca:
            rows, c, h, w = out.shape
            d = self.gc(out)
            if d.shape[-2:] != (1, 1):
                raise ValueError(f"GCA global conv (kernel {self.gc[0].kernel_size}) needs a "
                                 f"{self.gc[0].kernel_size[0]}x{self.gc[0].kernel_size[0]} map, got {h}x{w}")
            aux = self.AUX_fc(d.reshape(rows // frames, frames, c).mean(dim=1))
            weight = 2 * self.fc2(self.fc1(d))
            clip_mean = weight.reshape(rows // frames, frames, c, 1, 1).mean(dim=1, keepdim=True)
            weight = torch.sqrt((weight.reshape(rows // frames, frames, c, 1, 1) * clip_mean).reshape(rows, c, 1, 1)
                                + 1e-5)
            out = out * weight
        return self.relu(out + identity), aux


class ActBlock(nn.Module):
    """Plain ResNet basic block of the dynamic branch (``layer4``).

    Keys ``conv1, bn1, conv2, bn2, downsample.{0,1}``. Shapes ``(F, Cin, H, W) -> (F, C, H', W')``.
    Source: ``modules.py`` ``BasicBlock_act``.
    """

    def __init__(self, inplanes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(inplanes, planes, stride)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


def stage_sizes(frame_size: int) -> dict[str, int]:
    """Map sides per stage for a square frame of ``frame_size`` pixels (each stride-2
    stage maps ``s -> floor((s - 1) / 2) + 1``): 112 -> stem 56, layer1 28, layer2 14,
    layer3 7, layer4 / patches 4."""
    s = int(frame_size)
    out = {}
    for name in ("stem", "layer1", "layer2", "layer3", "layer4"):
        s = (s - 1) // 2 + 1
        out[name] = s
    return out


class GCAIAL(nn.Module):
    """The IAL-GCA spatio-temporal backbone (original ``GCA_IAL()``, attribute ``s_former``).

    Per frame: stem ``conv1`` = Sequential(conv 3->64 3x3/2, BN, ReLU, conv 64->64 3x3),
    ``bn1``, ReLU, max-pool 3/2 -> ``layer1`` (64, 28x28) -> ``layer2`` (GCA, 128, 14x14)
    -> ``layer3`` (GCA, 256, 7x7). Dynamic-static fusion per clip of T frames:

    * dynamic: the ``T - 1`` frame differences ``x[t+1] - x[t]`` -> ``layer4`` (3 x
      :class:`ActBlock`, 256, first stride 2) -> ``(256, 4, 4)``;
    * static: the first ``T - 1`` frames -> ``patch_embedding`` (conv 3x3/2, BN, ReLU) ->
      16 tokens of 256 (row-major) + ``pos_embedding_pos`` ``(1, 16, 256)`` ->
      ``pos_transformer`` (dim 256, depth 2, heads 4, dim_head 32, mlp 256) -> ``(256, 4, 4)``;
    * sum, flattened channel-major to ``T - 1`` tokens of 4096, + ``pos_embedding[:, :T-1]``
      -> ``temporal_transformer`` (dim 4096, depth 2, heads 4, dim_head 32, mlp 512).

    The transformers are pre-norm blocks with tanh-GELU feed-forwards
    (:class:`methods.backbones.former_dfer.Transformer`: same keys; the original's
    ``FeedForward`` lacks the trailing Dropout and its ``Residual`` evaluates ``fn``
    twice, both without effect at dropout 0, the original's setting).

    Args:
        frame_size: frame side in pixels, one of :data:`FRAME_SIZES` (112 in the original).
        frames: frames per clip T, ``MIN_FRAMES <= T <= MAX_FRAMES`` (16 in the original).

    Shapes: ``forward(x)`` with ``x (N, T, 3, S, S)`` (or ``(N*T, 3, S, S)``, frame-major) ->
    ``(tokens (N, T-1, 4096), aux2 (N, 7), aux3 (N, 7))``; ``aux2`` / ``aux3`` are the
    layer2 / layer3 auxiliary logits (the original's ``logits2`` / ``logits3``).
    Init as the original: kaiming-normal fan-out convolutions, BN 1/0, embeddings and
    ``bias*`` standard normal, Linear layers PyTorch default.

    Raises:
        ValueError: an unsupported frame size or frame count (at construction or in forward).
    Source: ``modules.py`` class ``ResNet`` / ``GCA_IAL``.
    """

    def __init__(self, frame_size: int = 112, frames: int = ORIGINAL_FRAMES) -> None:
        super().__init__()
        if int(frame_size) not in FRAME_SIZES:
            raise ValueError(f"IAL-GCA takes {FRAME_SIZES.start}..{FRAME_SIZES.stop - 1} px frames (its global "
                             f"convolutions need 14x14 / 7x7 maps; the original uses 112), got {frame_size}")
        if not MIN_FRAMES <= int(frames) <= MAX_FRAMES:
            raise ValueError(f"IAL-GCA takes {MIN_FRAMES}..{MAX_FRAMES} frames per clip (16 in the original), "
                             f"got {frames}")
        self.frame_size = int(frame_size)
        self.frames = int(frames)
        self.conv1 = nn.Sequential(nn.Conv2d(3, 64, 3, 2, 1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                                   nn.Conv2d(64, 64, 3, 1, 1, bias=False))
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.bias = nn.Parameter(torch.randn(1, 64, 1, 1))  # unused (original)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(GCABlock(64, 64))
        self.layer2 = nn.Sequential(GCABlock(64, 128, 2))
        self.layer3 = nn.Sequential(GCABlock(128, 256, 2))
        self.layer4 = nn.Sequential(ActBlock(256, 256, 2), ActBlock(256, 256), ActBlock(256, 256))
        self.patch_embedding = nn.Sequential(nn.Conv2d(256, 256, 3, 2, 1, bias=False), nn.BatchNorm2d(256), nn.ReLU())
        self.pos_transformer = Transformer(dim=256, depth=2, heads=4, dim_head=32, mlp_dim=256)
        self.pos_embedding_pos = nn.Parameter(torch.randn(1, 16, 256))
        self.temporal_transformer = Transformer(dim=FEAT_DIM, depth=2, heads=4, dim_head=32, mlp_dim=512)
        self.pos_embedding = nn.Parameter(torch.randn(1, 16, FEAT_DIM))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        t, s = self.frames, self.frame_size
        if x.shape[-3:] != (3, s, s) or (x.dim() == 5 and x.shape[1] != t) or x.dim() not in (4, 5) \
                or x.reshape(-1, 3, s, s).shape[0] % t:
            raise ValueError(f"IAL-GCA built for clips of {t} frames of (3, {s}, {s}): expected (N, {t}, 3, {s}, {s}), "
                             f"got {tuple(x.shape)}")
        x = x.reshape(-1, 3, s, s)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x, _ = self.layer1[0](x, t)
        x, aux2 = self.layer2[0](x, t)
        x, aux3 = self.layer3[0](x, t)
        rows, c, h, w = x.shape
        clips = x.reshape(rows // t, t, c, h, w)
        act = (clips[:, 1:] - clips[:, :-1]).reshape(-1, c, h, w)
        pos = self.patch_embedding(clips[:, :-1].reshape(-1, c, h, w))
        ph, pw = pos.shape[-2:]
        pos = pos.flatten(2).transpose(1, 2) + self.pos_embedding_pos[:, : ph * pw]
        pos = self.pos_transformer(pos).transpose(1, 2).reshape(-1, c, ph, pw)
        fused = pos + self.layer4(act)
        tokens = fused.reshape(rows // t, t - 1, -1) + self.pos_embedding[:, : t - 1]
        return self.temporal_transformer(tokens), aux2, aux3


class IALGCANet(nn.Module):
    """The original ``GenerateModel``: :class:`GCAIAL` (``s_former``), temporal mean, optional ``fc_f``.

    Args:
        frame_size, frames: see :class:`GCAIAL`.
        expression_head: keep the 7-way DFEW head ``fc_f`` Linear(4096, 7) (the original
            model; True for checkpoint round trips and the golden test). The regression
            adapter builds it without (its 7-way heads are replaced).

    ``forward(x (N, T, 3, S, S))`` -> dict: ``features`` x_FER ``(N, 4096)`` (the mean of the
    ``T - 1`` temporal tokens), ``aux2`` / ``aux3`` ``(N, 7)`` and, with ``fc_f``, ``logits``
    ``(N, 7)`` (the original returns ``(x_f, x_FER, logits1, logits2, logits3)``).
    Source: ``final_model.py`` ``GenerateModel``.
    """

    def __init__(self, frame_size: int = 112, frames: int = ORIGINAL_FRAMES, expression_head: bool = True) -> None:
        super().__init__()
        self.s_former = GCAIAL(frame_size, frames)
        self.fc_f = nn.Linear(FEAT_DIM, N_CLASSES) if expression_head else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        tokens, aux2, aux3 = self.s_former(x)
        out = {"features": tokens.mean(dim=1), "aux2": aux2, "aux3": aux3}
        if self.fc_f is not None:
            out["logits"] = self.fc_f(out["features"])
        return out


# --------------------------------------------------------------------------- checkpoint
def load_ial_gca_checkpoint(net: IALGCANet, path: str | Path) -> dict[str, Any]:
    """Load an original-layout IAL-GCA checkpoint (``pretrain_DFEW.pth``) into ``net``.

    Accepted layouts: the plain ``GenerateModel`` state dict ``main.py`` saves (keys
    ``module.s_former.*``, ``module.fc_f.*``; without ``module.`` when saved unwrapped), or a
    dict holding it under ``"state_dict"`` (the layout ``main.py``'s resume branch reads).
    ``s_former.*`` is loaded strictly (aux heads and the unused parameters included);
    ``fc_f.*`` is loaded when ``net`` has ``fc_f`` and otherwise dropped (recorded).

    Returns:
        JSON-able info: file, original name, layout, whether ``module.`` was stripped, the
        loaded tensor count, the dropped keys with their shapes, ``epoch`` / ``best_acc`` if present.

    Raises:
        CheckpointError: unreadable / unsafe file, not a state dict, or keys / shapes that do
            not fit (listed, naming the file).
    """
    ckpt = read_checkpoint(path, expected_name=IAL_GCA_FILE)
    layout = "state_dict"
    if isinstance(ckpt, Mapping) and "state_dict" in ckpt and isinstance(ckpt["state_dict"], Mapping):
        sd, layout = ckpt["state_dict"], "container['state_dict']"
    else:
        sd = ckpt
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(path)!r} is not an IAL-GCA state dict (expected the tensors of GenerateModel, "
                              f"keys 'module.s_former.*' and 'module.fc_f.*', as main.py saves {IAL_GCA_FILE})")
    sd, had_module = strip_prefix(sd, "module.")
    dropped = []
    if net.fc_f is None:
        for key in [k for k in sd if k.startswith("fc_f.")]:
            dropped.append(f"{key} {list(sd[key].shape)}")
            del sd[key]
    load_strict(net, sd, path, "IAL-GCA GenerateModel (s_former" + (", fc_f)" if net.fc_f is not None else ")"))
    info: dict[str, Any] = {"file": str(path), "original_name": IAL_GCA_FILE, "layout": layout,
                            "stripped_module_prefix": had_module, "loaded_tensors": len(sd), "strict": True,
                            "dropped": dropped}
    if layout != "state_dict":
        for k in ("epoch", "best_acc"):
            v = ckpt.get(k)
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            if isinstance(v, (int, float)) and math.isfinite(float(v)):
                info[k] = v
    return info
