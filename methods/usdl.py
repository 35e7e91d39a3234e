"""USDL: uncertainty-aware score distribution learning (Tang et al., CVPR 2020; nzl-thu/MUSDL).

Re-implementation of the USDL variant of nzl-thu/MUSDL (``MTL-AQA/main.py``,
``MTL-AQA/dataset.py``, ``models/evaluator.py``; commit 205868a826e4) on an I3D
backbone, as compared in QAFE-Net's Table 2:

* every 16-frame sub-clip goes through I3D (piergiaj layout, ``rgb_i3d_pretrained.pt``,
  Mixed_5c + average pool -> 1024); the sub-clip features are AVERAGED (``main.py``:
  ``clip_feats.mean(1)``), one I3D call per sub-clip as the original loop does (so the
  BatchNorm batch statistics in training are per sub-clip, as there);
* the evaluator ``MLP_block``: Linear 1024->256, ReLU, 256->128, ReLU, 128->K, Softmax
  (keys ``evaluator.layer{1,2,3}`` inside ``Evaluator``);
* the target is a Gaussian "soft label" over the K score bins, the loss
  ``nn.KLDivLoss()`` between ``log(probs)`` and the soft label, and the prediction the
  ARGMAX bin mapped back to label units (``compute_score``).

Adaptation to PFED5 (severity 0-4) / UNBC-McMaster (VAS 0-10), which the QAFE-Net paper
does not describe: the original maps MTL-AQA scores ``[0, 104.5]`` linearly onto the
bins ``0..K-1`` (K = 101, ``mu = score * (K-1) / label_max``) with ``sigma = 5`` bins
(``--std``). Here the dataset card's ``label_range = (lo, hi)`` is mapped the same way,
``mu = (score - lo) * (K-1) / (hi - lo)``, ``sigma`` in bin units (options ``bins``,
``soft_label_sigma``). The defaults keep the original's numbers (101 bins, sigma 5 =
5 % of the range: 0.2 severity points on PFED5, 0.5 VAS points on UNBC). The JIGSAWS
configuration of the same repository (integer grid ``label_min..label_max``, sigma 1)
corresponds to ``bins = hi - lo + 1`` (5 on PFED5, 11 on UNBC), ``soft_label_sigma = 1``.
Decoding: ``decode = "argmax"`` (original) or ``"expectation"`` (sum of bin values
weighted by the predicted distribution; the original's comment says "expectation" but
its code takes the argmax).

KLDivLoss reduction: the original calls ``nn.KLDivLoss()`` (PyTorch >= 0.4: README).
In PyTorch 0.4.0 that meant ``size_average=True, reduce=True``, i.e. the pointwise
``target * (log target - input)`` averaged over ALL ``B x K`` elements (zero where the
target is 0); PyTorch 1.x/2.x's default ``reduction='mean'`` is the same element mean
(PyTorch 2.x warns that a future major release will make ``'mean'`` behave as
``'batchmean'``, the mathematical KL per sample). :class:`USDLLoss` writes the element
mean out (``reduction='sum'`` / ``B*K``): the original's value, K times smaller than the
per-sample KL, whatever the installed PyTorch's default.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig, WeightsAssumption
from benchmark.errors import ConfigError
from methods.checkpoints import load_strict, read_checkpoint, state_dict_of, strip_prefix

FEAT_DIM = 1024
#: Original I3D file MUSDL loads (piergiaj layout, 157-way logits head).
USDL_I3D_FILE = "rgb_i3d_pretrained.pt"
#: Where it comes from (for ``methods.checkpoints.ORIGINAL_SOURCES``).
USDL_SOURCES = {
    USDL_I3D_FILE: ("MUSDL README (nzl-thu/MUSDL): Google Drive 'I3D pretrained on Kinetics', taken from "
                    "yaohungt/Gated-Spatio-Temporal-Energy-Graph; piergiaj pytorch-i3d layout, logits 157"),
}
#: Label range used when the harness has not set ``label_range`` (PFED5 severity).
DEFAULT_LABEL_RANGE = (0.0, 4.0)


def label_range_of(method: Method) -> tuple[float, float]:
    """``method.label_range`` (set from the dataset card; the base class defaults to PFED5's (0, 4))."""
    lo, hi = getattr(method, "label_range", None) or DEFAULT_LABEL_RANGE
    return float(lo), float(hi)


def load_i3d_backbone(encoder: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load an I3D checkpoint into ``encoder`` through :func:`methods.backbones.i3d.load_i3d_checkpoint`
    (imported here so this module imports without the backbone).

    Raises:
        CheckpointError: see the backbone loader.
    """
    from methods.backbones.i3d import load_i3d_checkpoint

    return load_i3d_checkpoint(encoder, path, layout="auto")


def build_i3d(variant: str) -> nn.Module:
    """``methods.backbones.i3d.I3DEncoder(variant)``: ``(B, 3, T, H, W) -> (B, 1024)``."""
    from methods.backbones.i3d import I3DEncoder

    return I3DEncoder(variant=variant)


def pack_subclips(x: torch.Tensor, geometry: ClipGeometry, what: str = "rgb") -> torch.Tensor:
    """``(B, 3, n*L, S, S) -> (n, B, 3, L, S, S)``: the n consecutive L-frame sub-clips.

    Raises:
        ValueError: ``x`` is not ``(B, 3, n*L, H, W)``.
    """
    g = geometry
    if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != g.clip_len:
        raise ValueError(f"{what}: expected (B, 3, {g.clip_len}, H, W) = {g.n_subclips} sub-clips of "
                         f"{g.subclip_len} frames, got {tuple(x.shape)}")
    return rearrange(x, "b c (n t) h w -> n b c t h w", n=g.n_subclips)


# --------------------------------------------------------------------------- soft labels
def bin_values(bins: int, label_range: tuple[float, float]) -> torch.Tensor:
    """Label value of each bin ``k = 0..K-1``: ``lo + k * (hi - lo) / (K - 1)``, ``(K,)`` float64.

    Source: MUSDL ``compute_score``: ``argmax * label_max / (output_dim - 1)`` (label_min 0).
    """
    lo, hi = label_range
    return lo + torch.arange(bins, dtype=torch.float64) * ((hi - lo) / (bins - 1))


def soft_label(scores: torch.Tensor, bins: int, label_range: tuple[float, float], sigma: float) -> torch.Tensor:
    """USDL Gaussian soft label: ``p(k) ~ N(k; mu, sigma)`` over bins ``k = 0..K-1``, renormalised.

    ``mu = (score - lo) * (K - 1) / (hi - lo)``, ``sigma`` in bin units (MUSDL
    ``MTL-AQA/dataset.py`` ``proc_label``: ``stats.norm.pdf(np.arange(K), loc=score *
    (K-1) / label_max, scale=std)`` then ``/ sum``; JIGSAWS ``main.py`` the same on the
    grid ``label_min..label_max``). Computed in float64, returned float32.

    Args:
        scores: ``(B,)`` scores in label units.
        bins: K >= 2.
        label_range: ``(lo, hi)`` label units mapped onto bins 0 and K-1.
        sigma: Gaussian standard deviation in bins (> 0).

    Returns:
        ``(B, K)`` float32, rows summing to 1.
    """
    lo, hi = label_range
    mu = (scores.detach().to(torch.float64).reshape(-1, 1) - lo) * ((bins - 1) / (hi - lo))
    k = torch.arange(bins, dtype=torch.float64, device=mu.device)
    pdf = torch.exp(-0.5 * ((k - mu) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    return (pdf / pdf.sum(dim=1, keepdim=True)).to(torch.float32)


# --------------------------------------------------------------------------- model
class MLPBlock(nn.Module):
    """``layer1`` Linear(1024, 256), ReLU, ``layer2`` Linear(256, 128), ReLU, ``layer3``
    Linear(128, K), Softmax(dim=-1).

    Source: MUSDL ``models/evaluator.py`` ``MLP_block`` (feature_dim 1024). Shapes
    ``(..., 1024) -> (..., K)`` probabilities.
    """

    def __init__(self, output_dim: int, dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.activation = nn.ReLU()
        self.softmax = nn.Softmax(dim=-1)
        self.layer1 = nn.Linear(dim, 256)
        self.layer2 = nn.Linear(256, 128)
        self.layer3 = nn.Linear(128, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.layer1(x))
        x = self.activation(self.layer2(x))
        return self.softmax(self.layer3(x))


class USDLEvaluator(nn.Module):
    """MUSDL ``Evaluator(output_dim, model_type='USDL')``: keys ``evaluator.layer{1,2,3}``.

    Shapes ``(B, 1024) -> (B, K)`` probabilities. Source: MUSDL ``models/evaluator.py``.
    """

    def __init__(self, output_dim: int = 101) -> None:
        super().__init__()
        self.evaluator = MLPBlock(output_dim)

    def forward(self, feats_avg: torch.Tensor) -> torch.Tensor:
        return self.evaluator(feats_avg)


class USDLModel(nn.Module):
    """I3D per sub-clip, mean over sub-clips, USDL evaluator.

    Args:
        geometry: clip geometry (``n`` sub-clips of ``L`` frames).
        bins: K, the evaluator's output size.
        backbone: an encoder ``(B, 3, L, H, W) -> (B, 1024)``; default
            ``I3DEncoder("piergiaj")`` (MUSDL ``models/i3d.py`` ``InceptionI3d``).

    ``forward(rgb)``: ``(B, 3, n*L, S, S)`` -> probabilities ``(B, K)``.
    """

    def __init__(self, geometry: ClipGeometry | None = None, bins: int = 101,
                 backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.geometry = geometry or ClipGeometry()
        self.backbone = backbone if backbone is not None else build_i3d("piergiaj")
        self.evaluator = USDLEvaluator(bins)

    def head(self, clip_feats: torch.Tensor) -> torch.Tensor:
        """``(B, n, 1024)`` sub-clip features -> mean over n -> evaluator -> ``(B, K)``."""
        return self.evaluator(clip_feats.mean(1))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        clips = pack_subclips(rgb, self.geometry)
        feats = torch.stack([self.backbone(c) for c in clips], dim=1)  # (B, n, 1024), one call per clip
        return self.head(feats)


class USDLLoss(nn.Module):
    """MUSDL ``compute_loss``: ``nn.KLDivLoss()(log(probs), soft_label)``, the element mean.

    ``forward(probs (B, K), target (B, K)) -> scalar``: ``sum target * (log target - log probs)``
    (0 where the target is 0) divided by ``B x K``, i.e. the original's legacy default
    reduction, written out so that a future change of PyTorch's default cannot alter it
    (see the module docstring).
    """

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # the element mean written out: PyTorch warns that a future default 'mean' will mean 'batchmean'
        return F.kl_div(torch.log(probs), target, reduction="sum") / target.numel()


def decode_distribution(probs: torch.Tensor, label_range: tuple[float, float], how: str = "argmax") -> torch.Tensor:
    """Scores ``(B,)`` in label units from bin probabilities ``(B, K)``.

    ``"argmax"``: ``lo + argmax * (hi - lo) / (K - 1)`` (MUSDL ``compute_score``);
    ``"expectation"``: ``sum_k p_k * value_k``.

    Raises:
        ConfigError: unknown ``how``.
    """
    values = bin_values(probs.shape[-1], label_range).to(probs.device)
    if how == "argmax":
        return values[probs.argmax(dim=-1)].to(torch.float32)
    if how == "expectation":
        return (probs.to(torch.float64) * values).sum(-1).to(torch.float32)
    raise ConfigError(f"USDL decode must be 'argmax' or 'expectation', got {how!r}")


def load_usdl_training_checkpoint(model: USDLModel, path: str | Path) -> dict[str, Any]:
    """Load the evaluator of a MUSDL training checkpoint (``main.py``: ``torch.save({'epoch',
    'i3d', 'evaluator', 'optimizer', 'rho_best'}, 'ckpts/USDL.pt')``; ``module.`` prefixes
    under DataParallel are stripped) strictly into ``model.evaluator``. The ``i3d`` entry
    is not loaded here (use the backbone's loader on an I3D file).

    Returns:
        ``{"file", "evaluator_keys", "stripped_module_prefix", "bins"}``.

    Raises:
        CheckpointError: not a dict with ``evaluator``, or keys / shapes that do not fit
            (e.g. a different number of bins), naming the file.
    """
    ckpt = read_checkpoint(path)
    state = state_dict_of(ckpt, "evaluator", path)
    state, stripped = strip_prefix(state, "module.")
    load_strict(model.evaluator, state, path, "USDL evaluator (MUSDL models/evaluator.py Evaluator)")
    return {"file": str(path), "evaluator_keys": len(state), "stripped_module_prefix": stripped,
            "bins": int(model.evaluator.evaluator.layer3.out_features)}


# --------------------------------------------------------------------------- method
class USDLMethod(Method):
    """The USDL baseline adapter (I3D backbone, RGB only).

    From scratch (no ``rgb_i3d_pretrained.pt``): adapts with precise BatchNorm before evaluation:
    nothing is frozen, only the running statistics (momentum 0.01) assume Kinetics' start.

    Options: ``bins`` (K, default 101 as MTL-AQA), ``soft_label_sigma`` (bins, default
    5 = ``--std``), ``decode`` (``argmax`` as the original, or ``expectation``).
    Pretrained file: ``backbone`` = ``rgb_i3d_pretrained.pt`` (piergiaj layout).
    Optimiser: Adam lr 1e-4, weight decay 0 (``MTL-AQA/run.sh`` for USDL; ``opts``
    default 1e-5 is MUSDL's), batch 4, 100 epochs, no schedule, every video once per epoch.
    """

    name = "usdl"
    display_name = "USDL"
    repository = "github.com/nzl-thu/MUSDL"
    licence = "none stated"
    backbone = "I3D"
    pretraining = "K-400"
    reference = ("Tang, Ni, Zhou, Zhang, Lu, Wu, Zhou: Uncertainty-aware Score Distribution Learning for Action "
                 "Quality Assessment, CVPR 2020 (github.com/nzl-thu/MUSDL)")
    options_spec = {
        "bins": Option(
            101, "Number K of score bins spanning the dataset's label range (MUSDL MTL-AQA/opts.py output_dim "
                 "USDL 101 over the normalised [0, 100]; the JIGSAWS config uses the integer grid, here "
                 "hi - lo + 1). The paper does not say how QAFE-Net adapted USDL to PFED5/UNBC."),
        "soft_label_sigma": Option(
            5.0, "Standard deviation of the Gaussian soft label in BIN units (MUSDL --std, 5 for MTL-AQA, "
                 "1 for JIGSAWS); 5 of 100 bins = 0.2 severity points on PFED5."),
        "decode": Option(
            "argmax", "Score from the predicted distribution: 'argmax' bin (MUSDL main.py compute_score) or "
                      "'expectation' (probability-weighted bin values).",
            choices=("argmax", "expectation")),
    }
    pretrained_files = {"backbone": USDL_I3D_FILE}
    exemplars = None
    weights_assumptions = (WeightsAssumption(
        role="backbone",
        assumes="the I3D BatchNorm running statistics start from Kinetics' and follow training with momentum "
                "0.01 (piergiaj I3D), so the evaluation's running averages are near the trained weights' statistics",
        policy="adapt",
        adaptation="BatchNorm statistics re-estimated on training clips before each evaluation (precise "
                   "BatchNorm, 8 batches)",
        training={"precise_bn": 8},
        why="from random initialisation, running averages at momentum 0.01 lag the weights by hundreds of steps: "
            "every eval-mode prediction came out equal (1.94) where train mode ranked the clips (rho 98)"),)
    learning_recipe = {
        "overfit_steps": 40,
        "options": {"bins": 21, "soft_label_sigma": 1.0, "decode": "expectation"},
        "training": {},
        "data": "tiny",
        "asserted": False,
        "why": ("measured 2026-12-07 (2 CPU cores, 119 s + 142 s) with precise BatchNorm (its from-scratch "
                "adaptation): true -5.4 vs shuffled 9.7, margin -15.1 < 30. It memorises 8 clips in eval mode (the "
                "overfit check), but from random init (no Kinetics weights offline) does not generalise the "
                "synthetic motion cue in 6 epochs (loss 0.0809 -> 0.0755); 21 bins (0.2 severity apart) with sigma "
                "1 bin and expectation decoding, so that the score is graded rather than a few argmax bins"),
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = DEFAULT_LABEL_RANGE) -> None:
        super().__init__(options, geometry, label_range)
        if int(self.options["bins"]) < 2:
            raise ConfigError(f"option bins={self.options['bins']!r} of method 'usdl' must be >= 2")
        if float(self.options["soft_label_sigma"]) <= 0:
            raise ConfigError(f"option soft_label_sigma={self.options['soft_label_sigma']!r} of method 'usdl' "
                              "must be > 0")

    def input_spec(self) -> InputSpec:
        """RGB only, ImageNet mean/std (MUSDL dataset.py), 16-frame sub-clips at 224 px."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="imagenet", subclip_len=16, rgb_size=224,
                         rgb_resize=None)

    def build_model(self) -> USDLModel:
        return USDLModel(self.geometry, bins=int(self.options["bins"]))

    def build_loss(self) -> nn.Module:
        return USDLLoss()

    def training_defaults(self) -> TrainingConfig:
        """MUSDL MTL-AQA run.sh (USDL): Adam 1e-4, wd 0, batch 4, 100 epochs, no schedule."""
        return TrainingConfig(epochs=100, batch_size=4, optimizer="adam", lr=1e-4, momentum=0.9,
                              weight_decay=0.0, lr_step=0, lr_gamma=1.0, reps_per_epoch=1)

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        """One group: I3D + evaluator at ``cfg.lr`` (MUSDL main.py ``Adam([*i3d, *evaluator])``)."""
        return [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Role ``backbone``: ``rgb_i3d_pretrained.pt`` (or any I3D file the backbone loader
        recognises) into ``model.backbone``; the evaluator keeps its random init.

        Raises:
            ConfigError: unknown role. CheckpointError: see the backbone loader.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {"random_init": ["evaluator"]}
        if "backbone" in files:
            info["backbone"] = load_i3d_backbone(model.backbone, files["backbone"])
        else:
            info["random_init"].append("backbone")
        return info

    # ---- new contract hooks
    def forward(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        """Bin probabilities ``(B, K)``."""
        return model(rgb=batch["rgb"])

    def soft_target(self, labels: torch.Tensor) -> torch.Tensor:
        """``(B,)`` labels -> ``(B, K)`` soft labels for this method's options and label range."""
        return soft_label(labels, int(self.options["bins"]), label_range_of(self),
                          float(self.options["soft_label_sigma"])).to(labels.device)

    def loss(self, loss_fn: nn.Module, output: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return loss_fn(output, self.soft_target(batch["label"]))

    def decode(self, output: torch.Tensor, batch: Mapping[str, Any]) -> torch.Tensor:
        return decode_distribution(output, label_range_of(self), self.options["decode"])


from methods.checkpoints import register_sources as _register_sources  # noqa: E402

_register_sources(USDL_SOURCES)
