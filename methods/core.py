"""CoRe: group-aware contrastive regression (Yu, Rao, Zhao, Lu, Zhou, ICCV 2021; yuxumin/CoRe).

Re-implementation of yuxumin/CoRe (commit f7881a9ff6d8; ``models/Backbone.py``,
``models/RegressTree.py``, ``utils/Group_helper.py``, ``tools/helper.py``,
``tools/builder.py``) on an I3D backbone, as compared in QAFE-Net's Table 2:

* I3D (CoRe's vendored hassony2 copy = :class:`~methods.backbones.i3d.I3DEncoder` variant
  ``"core"``, weights ``model_rgb.pth`` in the hassony2 layout) per 16-frame sub-clip -> 1024, averaged over
  sub-clips (``I3D_backbone.forward``: all sub-clips of query and exemplar packed on the
  batch axis, ``reshape(n, 2N, -1).transpose(0, 1).mean(1)``);
* pair feature ``[f_exemplar (1024), f_query (1024), s_exemplar / score_range]`` -> 2049;
  the target is ``delta = s_query - s_exemplar``; in training both orderings of a pair
  are used (each video once as exemplar);
* group-aware regression tree (:class:`RegressTree`, depth 5 -> 16 leaves, original key
  names) giving leaf log-probabilities and one delta per leaf;
* groups (:class:`GroupIntervals` = ``Group_helper(deltas, depth, Symmetrical=True,
  Max=score_range, Min=0)``): the sorted |differences| of all training pairs, 8
  equal-count intervals on [0, score_range], mirrored to 16;
* loss: NLL of the true leaf (both orderings) + MSE of the true leaf's in-interval
  position (masked per leaf, both orderings), summed (``network_forward_train``);
* decoding: argmax leaf, ``delta = left + (right - left) * delta_leaf``, score =
  exemplar label + delta for ONE exemplar; the harness averages the 10 voters
  (``voter_number``) as ``network_forward_test`` does.

Adaptation to PFED5 / UNBC (the paper does not describe it):

* ``score_range`` (theta; 30 for MTL-AQA completeness, 100 for AQA-7 normalised scores,
  i.e. the full label span there) = ``hi - lo`` of the dataset card's label range (4 on
  PFED5, 10 on UNBC); the exemplar score enters the pair feature as
  ``(s_exemplar - lo) / score_range`` (= the original ``s / theta`` since ``lo = 0``).
* Pairs for the groups: all ``i < j`` pairs of the training labels handed to
  ``on_train_start`` (the original pairs videos of the same class / difficulty; the harness
  trains one expression at a time).
* Outer edges: the original membership test is ``left <= d < right`` for ``d >= 0`` and
  ``left < d <= right`` for ``d < 0``, so ``d = +-score_range`` (e.g. severity 0 vs 4,
  common on PFED5, never on MTL-AQA) falls in no leaf and the all-zero one-hot's argmax
  sends it to leaf 0 (the most negative interval) with no regression term. Option
  ``outer_edges = "closed"`` (default) puts ``+-score_range`` in the outermost leaves;
  ``"original"`` keeps the released behaviour.
* Integer labels make many pair differences equal, so several quantile edges coincide and
  some intervals are degenerate (``left == right``): they are built, and treated, as the
  original does (never a target under the membership rule; in-interval target and decoding
  ``d - left`` / ``left + delta_leaf``).

Optimiser (``configs/*.yaml``, ``tools/builder.py``): Adam, regressor lr 1e-3, backbone lr x0.1,
weight decay 0, no scheduler, 200 epochs; the backbone's BatchNorm layers are kept in eval
mode (``fix_bn``, default True). The original runs batch 2 (AQA-7; MTL-AQA 1) with gradient
accumulation over 2 steps (``step_per_update``); the harness has no accumulation, so batch 4 is the
default (4 pairs, 8 orderings per Adam step, as AQA-7). With the BatchNorm frozen the batch does not
change the features; the NLL becomes a mean over 4 pairs instead of the sum of two 2-pair means (a
common factor, which Adam's update ignores), while the per-leaf MSE means weight leaves differently
when a leaf's pairs are split unevenly between the original's two half-batches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.api import ClipGeometry, ExemplarSpec, InputSpec, Method, Option, TrainingConfig, WeightsAssumption
from benchmark.errors import ConfigError
from methods.checkpoints import load_strict, read_checkpoint, state_dict_of, strip_prefix
from methods.usdl import DEFAULT_LABEL_RANGE, FEAT_DIM, build_i3d, label_range_of, load_i3d_backbone, pack_subclips

#: Original I3D file CoRe loads (hassony2/kinetics_i3d_pytorch layout, 400 classes).
CORE_I3D_FILE = "model_rgb.pth"
CORE_SOURCES = {
    CORE_I3D_FILE: ("hassony2/kinetics_i3d_pytorch model/model_rgb.pth (DeepMind Kinetics-400 RGB I3D converted); "
                    "CoRe README / configs pretrained_i3d_weight './MTL-AQA/model_rgb.pth'"),
}
RT_DEPTH = 5
HIDDEN = 256


# --------------------------------------------------------------------------- regression tree
class RegressTree(nn.Module):
    """CoRe's group-aware regression tree.

    ``first_layer`` = Sequential(Linear(in, hidden), ReLU); for each level ``d = 0..depth-2``
    ``clf_layers[d]`` = Conv1d(2^d*hidden, 2^(d+1), 1, groups=2^d) (two logits per node)
    and ``feature_layers[d]`` = Sequential(Conv1d(2^d*hidden, 2^(d+1)*hidden, 1,
    groups=2^d), ReLU); ``reg_layer`` = Conv1d(L*hidden, L, 1, groups=L), L = 2^(depth-1).
    Node log-probabilities: log-softmax over each node's two logits plus the parent's
    log-probability; leaf ``2*node + branch``.

    ``forward(x (B, in))`` -> ``(leaf_log_probs (B, L), delta (B, L))``.
    :meth:`level_log_probs` gives every level as the original's ``out_prob`` list
    (``(B, 2^d, 2)`` each). Source: CoRe ``models/RegressTree.py`` ``RegressTree``.
    """

    def __init__(self, in_channel: int = 2 * FEAT_DIM + 1, hidden_channel: int = HIDDEN, depth: int = RT_DEPTH) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError(f"RegressTree depth must be >= 2, got {depth}")
        self.depth = depth
        self.num_leaf = 2 ** (depth - 1)
        self.first_layer = nn.Sequential(nn.Linear(in_channel, hidden_channel), nn.ReLU(inplace=True))
        self.feature_layers = nn.ModuleList(
            nn.Sequential(nn.Conv1d(2 ** d * hidden_channel, 2 ** (d + 1) * hidden_channel, 1, groups=2 ** d),
                          nn.ReLU(inplace=True))
            for d in range(depth - 1))
        self.clf_layers = nn.ModuleList(
            nn.Conv1d(2 ** d * hidden_channel, 2 ** (d + 1), 1, groups=2 ** d) for d in range(depth - 1))
        self.reg_layer = nn.Conv1d(self.num_leaf * hidden_channel, self.num_leaf, 1, groups=self.num_leaf)

    def level_log_probs(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """``([(B, 2^d, 2) for d], delta (B, L))``: cumulative log-probabilities per level."""
        b = x.shape[0]
        h = self.first_layer(x).unsqueeze(-1)
        levels: list[torch.Tensor] = []
        for clf, feat in zip(self.clf_layers, self.feature_layers):
            logp = F.log_softmax(clf(h).squeeze(-1).view(b, -1, 2), dim=-1)
            if levels:
                logp = logp + levels[-1].reshape(b, -1, 1)
            levels.append(logp)
            h = feat(h)
        return levels, self.reg_layer(h).squeeze(-1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        levels, delta = self.level_log_probs(x)
        return levels[-1].reshape(x.shape[0], -1), delta


# --------------------------------------------------------------------------- groups
def pair_abs_differences(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values of ``|l_i - l_j|`` over all pairs ``i < j`` and their multiplicities.

    Computed from the distinct labels and their counts (exact; O(U^2) memory for U distinct
    labels instead of O(N^2)). Source of the pair set: CoRe ``datasets/SevenPair.py`` ``delta()``.

    Raises:
        ConfigError: fewer than 2 labels.
    """
    lab = np.asarray(labels, dtype=np.float64).reshape(-1)
    if lab.size < 2:
        raise ConfigError(f"CoRe groups need at least 2 training labels, got {lab.size}")
    values, counts = np.unique(lab, return_counts=True)
    counts = counts.astype(np.int64)
    diffs = [np.zeros(1)]
    mult = [np.array([int((counts * (counts - 1) // 2).sum())])]
    iu, ju = np.triu_indices(len(values), 1)
    diffs.append(np.abs(values[ju] - values[iu]))
    mult.append(counts[iu] * counts[ju])
    d, m = np.concatenate(diffs), np.concatenate(mult)
    keep = m > 0
    d, m = d[keep], m[keep]
    order = np.argsort(d, kind="stable")
    d, m = d[order], m[order]
    uniq, inv = np.unique(d, return_inverse=True)
    return uniq, np.bincount(inv, weights=m).astype(np.int64)


def group_intervals(labels: np.ndarray, score_range: float, depth: int = RT_DEPTH) -> np.ndarray:
    """CoRe's symmetric groups ``(L, 2)`` = ``[[left, right], ...]`` (L = 2^(depth-1)), float64.

    With D the sorted ``|l_i - l_j|`` (i < j, length P) and half = L/2: positive leaf
    ``half + i`` spans ``[D[int(i/half * (P-1))], D[int((i+1)/half * (P-1))]]``, the first left
    edge replaced by 0 (``Min``) and the last right edge by ``score_range`` (``Max``); leaf
    ``i < half`` is the mirror ``[-right, -left]`` of leaf ``L-1-i``.
    Source: CoRe ``utils/Group_helper.py`` ``Group_helper.build`` (Symmetrical=True).
    """
    uniq, mult = pair_abs_differences(labels)
    cum = np.cumsum(mult)
    length = int(cum[-1])

    def sorted_at(index: int) -> float:  # D[index] of the expanded sorted list
        return float(uniq[int(np.searchsorted(cum, index, side="right"))])

    leaves = 2 ** (depth - 1)
    half = leaves // 2
    groups = np.zeros((leaves, 2), dtype=np.float64)
    for i in range(half):
        left = 0.0 if i == 0 else sorted_at(int((i / half) * (length - 1)))
        right = float(score_range) if i == half - 1 else sorted_at(int(((i + 1) / half) * (length - 1)))
        groups[half + i] = (left, right)
    for i in range(half):
        groups[i] = sorted((-groups[leaves - 1 - i][0], -groups[leaves - 1 - i][1]))
    return groups


def group_targets(delta: torch.Tensor, groups: torch.Tensor, outer_edges: str = "closed"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaf class and in-interval target of each pair difference.

    Membership: ``d >= 0``: ``left <= d < right``; ``d < 0``: ``left < d <= right``; with
    ``outer_edges="closed"`` also ``d == right`` of the last leaf and ``d == left`` of leaf 0.
    Target ``(d - left) / (right - left)`` (``d - left`` for a degenerate interval).
    A difference in no leaf gets class 0 (the original's ``argmax`` of an all-zero one-hot) and
    no target. Source: CoRe ``Group_helper.produce_label`` + ``helper.network_forward_train``.

    Args:
        delta: ``(B,)`` query - exemplar, label units.
        groups: ``(L, 2)`` intervals.

    Returns:
        ``(cls (B,) int64, target (B, L))``: target = -1 outside the pair's leaf (as ``rlabel``).
    """
    d = delta.reshape(-1, 1).to(groups.dtype)
    left, right = groups[:, 0].unsqueeze(0), groups[:, 1].unsqueeze(0)
    member = torch.where(d >= 0, (d >= left) & (d < right), (d > left) & (d <= right))
    if outer_edges == "closed":
        member[:, -1] |= d[:, 0] == groups[-1, 1]
        member[:, 0] |= d[:, 0] == groups[0, 0]
        # one leaf per pair at most (a degenerate outer interval could double up)
        member &= torch.cumsum(member.int(), dim=1) == 1
    elif outer_edges != "original":
        raise ConfigError(f"CoRe outer_edges must be 'closed' or 'original', got {outer_edges!r}")
    width = right - left
    pos = torch.where(width == 0, d - left, (d - left) / torch.where(width == 0, torch.ones_like(width), width))
    target = torch.where(member, pos, torch.full_like(pos, -1.0))
    cls = member.to(torch.float32).argmax(dim=1)  # first member leaf; 0 when none (original quirk)
    return cls, target


def decode_delta(leaf_log_probs: torch.Tensor, delta: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Predicted difference ``(B,)``: argmax leaf, ``left + (right - left) * delta_leaf``
    (``left + delta_leaf`` for a degenerate interval). Source: ``Group_helper.inference``."""
    leaf = leaf_log_probs.argmax(dim=1)
    g = groups.to(delta.device)[leaf].to(torch.float64)
    dl = delta.gather(1, leaf.reshape(-1, 1)).reshape(-1).to(torch.float64)
    width = g[:, 1] - g[:, 0]
    return torch.where(width == 0, g[:, 0] + dl, g[:, 0] + width * dl).to(torch.float32)


class CoReLoss(nn.Module):
    """NLL of the true leaf + per-leaf masked MSE of the in-interval target, both orderings, summed.

    ``forward(output, delta_fwd (B,))`` with ``output`` the model's dict: ``leaf_log_probs`` /
    ``delta`` (exemplar -> query, target ``delta_fwd``) and, in training, ``leaf_log_probs_rev`` /
    ``delta_rev`` (query -> exemplar, target ``-delta_fwd``), and ``groups (L, 2)``.
    Per ordering: ``NLLLoss()(leaf_log_probs, cls)`` (mean over pairs) + for every leaf
    holding pairs ``MSELoss()(delta[:, leaf][in], target[in])``. Source: CoRe
    ``tools/helper.py`` ``network_forward_train``.
    """

    def __init__(self, outer_edges: str = "closed") -> None:
        super().__init__()
        self.outer_edges = outer_edges
        self.nll = nn.NLLLoss()
        self.mse = nn.MSELoss()

    def one_order(self, leaf_log_probs: torch.Tensor, delta: torch.Tensor, target_delta: torch.Tensor,
                  groups: torch.Tensor) -> torch.Tensor:
        cls, target = group_targets(target_delta, groups.to(target_delta.device), self.outer_edges)
        loss = self.nll(leaf_log_probs, cls.to(leaf_log_probs.device))
        target = target.to(delta.device)
        for i in range(delta.shape[1]):
            mask = target[:, i] >= 0
            if bool(mask.any()):
                loss = loss + self.mse(delta[:, i][mask].float(), target[:, i][mask].float())
        return loss

    def forward(self, output: Mapping[str, torch.Tensor], delta_fwd: torch.Tensor) -> torch.Tensor:
        groups = output["groups"]
        loss = self.one_order(output["leaf_log_probs"], output["delta"], delta_fwd, groups)
        if "leaf_log_probs_rev" in output:
            loss = loss + self.one_order(output["leaf_log_probs_rev"], output["delta_rev"], -delta_fwd, groups)
        return loss


# --------------------------------------------------------------------------- model
class CoReModel(nn.Module):
    """I3D features of query and exemplar, pair feature, regression tree.

    Args:
        geometry: clip geometry (``n`` sub-clips of ``L`` frames).
        label_range: ``(lo, hi)``; ``score_range`` defaults to ``hi - lo``.
        score_range: theta of the pair feature and the outer group edge.
        freeze_bn: keep the backbone's BatchNorm layers in eval mode in training (``fix_bn``).
        backbone: encoder ``(B, 3, L, H, W) -> (B, 1024)``; default ``I3DEncoder("core")``, the
            hassony2 I3D copy vendored in CoRe ``models/i3d.py`` (BN eps 1e-5, fixed padding split;
            see :mod:`methods.backbones.i3d`), which reads hassony2's ``model_rgb.pth``.

    Buffer ``groups (L, 2)`` float64 (set by :meth:`set_groups`; saved with the model).
    ``forward(rgb, exemplar_rgb, exemplar_label, label=None)``: ``(B, 3, n*L, S, S)`` twice,
    ``(B,)`` labels -> dict ``leaf_log_probs (B, 16)``, ``delta (B, 16)`` for the pair
    (exemplar -> query), ``groups``, and with ``label`` given also ``leaf_log_probs_rev`` /
    ``delta_rev`` for (query -> exemplar) (training: both orderings).
    """

    def __init__(self, geometry: ClipGeometry | None = None, label_range: tuple[float, float] = (0.0, 4.0),
                 score_range: float | None = None, freeze_bn: bool = True, backbone: nn.Module | None = None,
                 depth: int = RT_DEPTH) -> None:
        super().__init__()
        self.geometry = geometry or ClipGeometry()
        self.label_min = float(label_range[0])
        self.score_range = float(score_range if score_range is not None else label_range[1] - label_range[0])
        if self.score_range <= 0:
            raise ConfigError(f"CoRe score_range must be > 0, got {self.score_range}")
        self.freeze_bn = freeze_bn
        self.backbone = backbone if backbone is not None else build_i3d("core")
        self.regressor = RegressTree(2 * FEAT_DIM + 1, HIDDEN, depth)
        self.register_buffer("groups", torch.full((2 ** (depth - 1), 2), float("nan"), dtype=torch.float64))

    def set_groups(self, groups: np.ndarray | torch.Tensor) -> None:
        """Store the ``(L, 2)`` intervals (from :func:`group_intervals`)."""
        self.groups.copy_(torch.as_tensor(np.asarray(groups), dtype=torch.float64))

    def train(self, mode: bool = True) -> "CoReModel":
        super().train(mode)
        if mode and self.freeze_bn:
            for m in self.backbone.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    def video_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """``(B, 3, n*L, S, S) -> (B, 1024)``: all sub-clips packed clip-major on the batch
        axis, one backbone call, mean over sub-clips (CoRe ``I3D_backbone.forward``)."""
        clips = pack_subclips(rgb, self.geometry)
        n, b = clips.shape[:2]
        feats = self.backbone(clips.reshape(n * b, *clips.shape[2:]))
        return feats.reshape(n, b, -1).transpose(0, 1).mean(1)

    def pair_feature(self, f_exemplar: torch.Tensor, f_query: torch.Tensor, s_exemplar: torch.Tensor) -> torch.Tensor:
        """``[f_exemplar, f_query, (s_exemplar - lo) / score_range]`` -> ``(B, 2049)``."""
        s = (s_exemplar.reshape(-1, 1).to(f_query.dtype) - self.label_min) / self.score_range
        return torch.cat((f_exemplar, f_query, s), dim=1)

    def forward(self, rgb: torch.Tensor, exemplar_rgb: torch.Tensor, exemplar_label: torch.Tensor,
                label: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        b = rgb.shape[0]
        if exemplar_rgb.shape != rgb.shape:
            raise ValueError(f"exemplar rgb {tuple(exemplar_rgb.shape)} differs from query rgb {tuple(rgb.shape)}")
        feats = self.video_features(torch.cat((rgb, exemplar_rgb), 0))
        f_q, f_e = feats[:b], feats[b:]
        pairs = [self.pair_feature(f_e, f_q, exemplar_label)]
        if label is not None:
            pairs.append(self.pair_feature(f_q, f_e, label))
        logp, delta = self.regressor(torch.cat(pairs, 0))
        out = {"leaf_log_probs": logp[:b], "delta": delta[:b], "groups": self.groups}
        if label is not None:
            out["leaf_log_probs_rev"], out["delta_rev"] = logp[b:], delta[b:]
        return out


def load_core_training_checkpoint(model: CoReModel, path: str | Path) -> dict[str, Any]:
    """Load the regressor of a CoRe training checkpoint (``tools/helper.py`` ``save_checkpoint``:
    ``{'base_model', 'regressor', 'optimizer', 'epoch', 'epoch_best', 'rho_best', 'L2_min',
    'RL2_min'}``; ``module.`` prefixes stripped as ``builder.resume_train``) strictly into
    ``model.regressor``. ``base_model`` (``backbone.*`` hassony2 keys) is not loaded here.

    Returns:
        ``{"file", "regressor_keys", "stripped_module_prefix"}``.

    Raises:
        CheckpointError: not a dict with ``regressor``, or keys / shapes that do not fit.
    """
    ckpt = read_checkpoint(path)
    state = state_dict_of(ckpt, "regressor", path)
    state, stripped = strip_prefix(state, "module.")
    load_strict(model.regressor, state, path, "CoRe regressor (models/RegressTree.py RegressTree, depth 5)")
    return {"file": str(path), "regressor_keys": len(state), "stripped_module_prefix": stripped}


# --------------------------------------------------------------------------- method
class CoReMethod(Method):
    """The CoRe baseline adapter (I3D backbone, RGB, exemplar-based).

    From scratch (no ``model_rgb.pth``): adapts (:attr:`weights_assumptions`): the I3D BatchNorm
    trains, the backbone learns at the full rate, precise BatchNorm before evaluation. Not refused,
    because an I3D trained from its initialisation with BatchNorm is a learnable model (the
    overfit check passes), while frozen BatchNorm statistics of an untrained I3D silence the query.

    Options: ``score_range`` (0 = ``hi - lo`` of the label range), ``outer_edges``
    (``closed`` / ``original``), ``freeze_bn`` (``fix_bn``). Pretrained file:
    ``backbone`` = ``model_rgb.pth`` (hassony2 layout). Exemplars: one per training sample,
    10 voters at test (``voter_number``).
    """

    name = "core"
    display_name = "CoRe"
    repository = "github.com/yuxumin/CoRe"
    licence = "none stated"
    backbone = "I3D"
    pretraining = "K-400"
    reference = ("Yu, Rao, Zhao, Lu, Zhou: Group-aware Contrastive Regression for Action Quality Assessment, "
                 "ICCV 2021 (github.com/yuxumin/CoRe)")
    options_spec = {
        "score_range": Option(
            0.0, "theta: exemplar-score normaliser in the pair feature and right edge of the outermost group "
                 "(CoRe configs score_range 30 MTL-AQA / 100 AQA-7 = the label span there). 0 = the dataset's "
                 "label span hi - lo (4 PFED5, 10 UNBC)."),
        "outer_edges": Option(
            "closed", "Whether a pair difference of exactly +-score_range belongs to the outermost leaf "
                      "('closed') or to none, ending up as leaf 0 without regression target ('original': "
                      "Group_helper.produce_label's half-open test + argmax of an all-zero one-hot).",
            choices=("closed", "original"), code_value="original"),
        "freeze_bn": Option(True, "Keep the I3D BatchNorm layers in eval mode while training (CoRe --fix_bn, "
                                  "default True)."),
        "backbone_lr_factor": Option(0.1, "Learning rate of the I3D backbone as a factor of the regressor's "
                                          "(CoRe builder.build_opti_sche lr_factor 0.1: fine-tuning pretrained "
                                          "weights)."),
    }
    pretrained_files = {"backbone": CORE_I3D_FILE}
    weights_assumptions = (WeightsAssumption(
        role="backbone",
        assumes="the I3D BatchNorm layers stay in eval mode with Kinetics statistics (--fix_bn) and the backbone "
                "learns at 0.1 x the regressor's rate (lr_factor)",
        policy="adapt",
        adaptation="the I3D BatchNorm layers train, their statistics are re-estimated on training clips before "
                   "each evaluation (precise BatchNorm, 8 batches), and the backbone learns at the full rate",
        options={"freeze_bn": False, "backbone_lr_factor": 1.0},
        training={"precise_bn": 8},
        why="an untrained I3D with frozen BatchNorm (mean 0, variance 1) shrinks activations layer by layer: "
            "its features come out near 1e-6 and the query clip is ignored; trained BatchNorm makes the "
            "contrastive regressor learnable, and a refusal would leave CoRe's Table 2 row empty on every "
            "machine without the Kinetics file"),)
    exemplars = ExemplarSpec(test_voters=10)
    learning_recipe = {
        "overfit_steps": 60,
        "options": {},
        "training": {"batch_size": 4},
        "data": "tiny",
        "asserted": False,
        "why": ("measured 2026-12-07 (2 CPU cores, true-label run 5 min) with its from-scratch adaptation (I3D "
                "BatchNorm trained, backbone at the full rate, precise BatchNorm): true -12.9 after 6 epochs (loss "
                "-> 4.20), so the shuffled run was not needed to fail the margin. It memorises 8 clips in eval mode "
                "(the overfit check); from random init it does not generalise the synthetic motion cue in 6 "
                "epochs. Before the adaptation (frozen BatchNorm of an untrained I3D) the query was ignored"),
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = DEFAULT_LABEL_RANGE) -> None:
        super().__init__(options, geometry, label_range)
        if float(self.options["score_range"]) < 0:
            raise ConfigError(f"option score_range={self.options['score_range']!r} of method 'core' must be >= 0 "
                              "(0 = the label span)")

    def score_range(self) -> float:
        """theta in label units (option, or the label span)."""
        lo, hi = label_range_of(self)
        return float(self.options["score_range"]) or (hi - lo)

    def input_spec(self) -> InputSpec:
        """RGB only, ImageNet mean/std (CoRe transforms), 16-frame sub-clips at 224 px."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="imagenet", subclip_len=16, rgb_size=224,
                         rgb_resize=None)

    def build_model(self) -> CoReModel:
        return CoReModel(self.geometry, label_range_of(self), self.score_range(),
                         freeze_bn=bool(self.options["freeze_bn"]))

    def build_loss(self) -> nn.Module:
        return CoReLoss(self.options["outer_edges"])

    def training_defaults(self) -> TrainingConfig:
        """CoRe configs: Adam 1e-3 (backbone x0.1 in :meth:`param_groups`), wd 0, no schedule,
        200 epochs; batch 4 = AQA-7's batch 2 x step_per_update 2 (see module docstring)."""
        return TrainingConfig(epochs=200, batch_size=4, optimizer="adam", lr=1e-3, momentum=0.9,
                              weight_decay=0.0, lr_step=0, lr_gamma=1.0, reps_per_epoch=1)

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        """Backbone at ``cfg.lr * backbone_lr_factor`` (0.1, ``lr_factor``), regressor at ``cfg.lr``
        (builder.build_opti_sche)."""
        return [{"params": [p for p in model.backbone.parameters() if p.requires_grad],
                 "lr": cfg.lr * float(self.options["backbone_lr_factor"])},
                {"params": [p for p in model.regressor.parameters() if p.requires_grad], "lr": cfg.lr}]

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Role ``backbone``: ``model_rgb.pth`` into ``model.backbone``; the tree keeps its random init.

        Raises:
            ConfigError: unknown role. CheckpointError: see the backbone loader.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {"random_init": ["regressor"]}
        if "backbone" in files:
            info["backbone"] = load_i3d_backbone(model.backbone, files["backbone"])
        else:
            info["random_init"].append("backbone")
        return info

    def on_train_start(self, model: nn.Module, train_labels: np.ndarray) -> None:
        """Build the 16 groups from all training-pair |differences| (training labels only)."""
        model.set_groups(group_intervals(train_labels, model.score_range, model.regressor.depth))

    # ---- new contract hooks
    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Tree outputs for (exemplar -> query); in training mode also (query -> exemplar)."""
        ex = batch["exemplar"]
        return model(rgb=batch["rgb"], exemplar_rgb=ex["rgb"], exemplar_label=ex["label"],
                     label=batch["label"] if model.training else None)

    @staticmethod
    def _check_groups(output: Mapping[str, torch.Tensor]) -> None:
        if bool(torch.isnan(output["groups"]).any()):
            raise ConfigError("CoRe groups are not built: call on_train_start(model, train_labels) (or load a "
                              "trained model state, which stores them) before training or decoding")

    def loss(self, loss_fn: nn.Module, output: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        self._check_groups(output)
        return loss_fn(output, batch["label"] - batch["exemplar"]["label"])

    def decode(self, output: Mapping[str, torch.Tensor], batch: Mapping[str, Any]) -> torch.Tensor:
        """``exemplar label + predicted difference`` ``(B,)`` for this one voter."""
        self._check_groups(output)
        d = decode_delta(output["leaf_log_probs"], output["delta"], output["groups"])
        return batch["exemplar"]["label"].reshape(-1).to(d.dtype) + d


from methods.checkpoints import register_sources as _register_sources  # noqa: E402

_register_sources(CORE_SOURCES)
