"""Training-step goldens: the project's loss, optimiser, parameter groups, frozen parts and
BatchNorm mode against the ORIGINAL training code, a few optimiser steps from seeded weights.

Each fixture ``tests/golden/<name>_train.*`` was produced by a reference script outside the
repository that ran the ORIGINAL training step (loss, optimiser construction with its parameter
groups, ``zero_grad`` / ``backward`` / ``step``, the original's train / eval module modes) on
seeded weights and seeded inputs, and stored the loss of every step and, after the steps,
statistics of every tensor of the trained module: ``[sum, abs-sum, first 5 values]`` of the
tensor (``param/<key>``) and of its change over the steps (``update/<key>``), keys in the
ORIGINAL layout (see ``tests/golden/<name>_train.md``). Here the same weights go through the
project's loader (or ``load_state_dict`` with the loader's key mapping), the project's method
builds the loss (``build_loss`` / ``loss``), the parameter groups (``param_groups``) and the
optimiser (``benchmark.engine.make_optimizer`` with a ``TrainingConfig`` carrying the
original's settings), and the same steps run in the engine's order (``zero_grad``,
``backward``, ``step``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _golden import load_golden, seeded_input, seeded_state_dict, one_thread  # noqa: E402

from benchmark.api import ClipGeometry  # noqa: E402
from benchmark.engine import make_optimizer  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()


#: Adam hyper-parameters compared with the original optimiser's groups (betas, eps, amsgrad: torch defaults).
OPTIM_KEYS = ("lr", "betas", "eps", "weight_decay", "amsgrad")


def stats(t: torch.Tensor) -> np.ndarray:
    """``[sum, abs-sum, first 5 values]`` of a tensor in float64 (the reference scripts' definition)."""
    f = t.detach().to(torch.float64).reshape(-1)
    head = torch.zeros(5, dtype=torch.float64)
    head[: min(5, f.numel())] = f[:5]
    return np.concatenate([[float(f.sum()), float(f.abs().sum())], head.numpy()])


def stats_diff(actual: np.ndarray, golden: np.ndarray, slack: np.ndarray | float = 0.0) -> float:
    """Largest difference of two stats vectors relative to their scale: the sums against the
    abs-sum, the first values against the largest of them (plus 1e-12: all-zero tensors).
    ``slack`` (per entry) is subtracted from the differences first."""
    g = np.asarray(golden, dtype=np.float64)
    d = np.maximum(np.abs(np.asarray(actual, dtype=np.float64) - g) - slack, 0.0)
    return float(max(d[:2].max() / (abs(g[1]) + 1e-12), d[2:].max() / (np.abs(g[2:]).max() + 1e-12)))


#: float32 epsilon: an update (after - before) carries the rounding of the float32 parameter after it,
#: ~1 ulp <= eps x |parameter| per value, up to ~1e-5 of a 1e-3 Adam step on a 0.1-sized weight; the
#: update statistics get a slack of 2 such roundings (per value; the abs-sum of the parameter for the sums).
EPS32 = float(np.finfo(np.float32).eps)


def compare_training(meta_case, golden, losses, tensors_after, tensors_before, what, rtol=None):
    """Assert per-step losses and the ``param/`` / ``update/`` stats within ``rtol`` (relative);
    returns the largest relative differences ``{"loss", "param", "update"}``."""
    rtol = meta_case["rtol"] if rtol is None else rtol
    exp_loss = golden["loss"].astype(np.float64)
    got = np.asarray(losses, dtype=np.float64)
    assert got.shape == exp_loss.shape, f"{what}: {got.shape} steps vs golden {exp_loss.shape}"
    worst = {"loss": float((np.abs(got - exp_loss) / np.abs(exp_loss)).max()), "param": 0.0, "update": 0.0}
    assert worst["loss"] <= rtol, f"{what}: losses {got.tolist()} vs golden {exp_loss.tolist()}"
    keys = sorted(k.split("/", 1)[1] for k in golden if k.startswith("param/"))
    assert sorted(tensors_after) == keys, f"{what}: trained tensors {sorted(tensors_after)} vs golden {keys}"
    bad = []
    for k in keys:
        after = tensors_after[k].to(torch.float64)
        update = after - tensors_before[k].to(torch.float64)
        # an update may differ by 2 float32 roundings of the parameter (see EPS32)
        sa = stats(after)
        slack = 2 * EPS32 * np.concatenate([[sa[1], sa[1]], np.abs(sa[2:])])
        for kind, value, sl in (("param", after, 0.0), ("update", update, slack)):
            d = stats_diff(stats(value), golden[f"{kind}/{k}"], sl)
            worst[kind] = max(worst[kind], d)
            worst[kind + "_raw"] = max(worst.get(kind + "_raw", 0.0), stats_diff(stats(value), golden[f"{kind}/{k}"]))
            if d > rtol:
                bad.append(f"{kind} of {k}: {stats(value).tolist()} vs golden {golden[f'{kind}/{k}'].tolist()} "
                           f"(relative difference {d:.2e})")
    assert not bad, f"{what}: " + "; ".join(bad)
    return worst


def check_optimizer_groups(optimizer, meta_case, what):
    """The project's optimiser has the original's class and, group by group, its hyper-parameters."""
    ref = meta_case["optimizer"]
    assert type(optimizer).__name__ == ref["class"], what
    assert len(optimizer.param_groups) == len(ref["groups"]), f"{what}: {len(optimizer.param_groups)} groups"
    for i, (g, r) in enumerate(zip(optimizer.param_groups, ref["groups"])):
        for key in OPTIM_KEYS:
            got = list(g[key]) if isinstance(g[key], tuple) else g[key]
            assert got == pytest.approx(r[key], rel=1e-12), f"{what}: group {i} {key} {got} vs original {r[key]}"


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# =========================================================================== USDL
class NoParamStub(nn.Module):
    """Backbone stand-in without parameters (the steps start from given sub-clip features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2).flatten(1)[:, :1024]


@pytest.mark.parametrize("case", ["mtl101", "pfed5_21_wd"])
def test_usdl_training_steps_match_original(tmp_path, case):
    from methods.usdl import USDLMethod, USDLModel, load_usdl_training_checkpoint

    meta, outs = load_golden("usdl_train")
    c, exp = meta["cases"][case], outs[case]
    method = USDLMethod({"bins": c["bins"], "soft_label_sigma": c["sigma"]}, label_range=tuple(c["label_range"]))
    model = USDLModel(ClipGeometry(n_subclips=10, subclip_len=16, rgb_size=8), bins=c["bins"], backbone=NoParamStub())
    # the seeded Evaluator in the original layout, through the project's MUSDL checkpoint loader
    state = seeded_state_dict(model.evaluator.state_dict(), c["weight_seed"])
    path = tmp_path / "USDL.pt"
    torch.save({"epoch": 0, "i3d": {}, "evaluator": {f"module.{k}": v for k, v in state.items()},
                "optimizer": {}, "rho_best": 0.0}, path)
    load_usdl_training_checkpoint(model, path)
    before = snapshot(model.evaluator)
    # the original's optimiser settings (run.sh / opts.py) in a TrainingConfig, the method's groups
    ref = c["optimizer"]["groups"][0]
    cfg = method.training_defaults().updated({"lr": ref["lr"], "weight_decay": ref["weight_decay"]}, "test")
    loss_fn = method.build_loss()
    groups = method.param_groups(model, loss_fn, cfg)
    optimizer = make_optimizer(groups, cfg)
    check_optimizer_groups(optimizer, c, f"USDL {case}")
    in_groups = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) in in_groups for p in model.evaluator.parameters())
    model.train()
    losses = []
    for step in range(c["steps"]):
        feats = seeded_input(**c["inputs"][f"clip_feats_{step}"])
        batch = {"label": torch.tensor(c["scores"][step])}
        probs = model.head(feats)  # = USDLModel.forward after the backbone (mean over sub-clips, evaluator)
        loss = method.loss(loss_fn, probs, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    worst = compare_training(c, exp, losses, snapshot(model.evaluator), before, f"USDL {case}")
    print(f"USDL {case}: max relative difference {worst}")


# =========================================================================== CoRe
class BNStub(nn.Module):
    """I3D stand-in WITH parameters and a BatchNorm (the reference script's, see ``core_train.md``):
    ``(M, 3, 16, S, S)`` -> bias-free 1x1x1 conv 3->16 -> BatchNorm3d -> ReLU -> mean over T, H, W ->
    Linear 16->1024."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 16, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm3d(16)
        self.fc = nn.Linear(16, 1024)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3, 4)))


def _core_model_state(model) -> dict[str, torch.Tensor]:
    """The project model's trained tensors under the ORIGINAL checkpoint names
    (``base_model.backbone.*`` = ``I3D_backbone.backbone``, ``regressor.*`` = ``RegressTree``)."""
    return {**{f"base_model.backbone.{k}": v.detach().clone() for k, v in model.backbone.state_dict().items()},
            **{f"regressor.{k}": v.detach().clone() for k, v in model.regressor.state_dict().items()}}


@pytest.mark.parametrize("case", ["seven_accum", "batch4", "batch4_train_bn"])
def test_core_training_steps_match_original(tmp_path, case):
    from methods.core import CoReMethod, CoReModel, load_core_training_checkpoint

    meta, outs = load_golden("core_train")
    c, exp = meta["cases"][case], outs[case]
    geometry = ClipGeometry(n_subclips=10, subclip_len=16, rgb_size=8)
    label_range = (0.0, c["score_range"])
    method = CoReMethod({"outer_edges": "original", "freeze_bn": c["fix_bn"], "backbone_lr_factor": 0.1},
                        geometry=geometry, label_range=label_range)
    model = CoReModel(geometry, label_range, method.score_range(), freeze_bn=bool(method.options["freeze_bn"]),
                      backbone=BNStub())
    # seeded weights under the original names: the regressor through the project's CoRe checkpoint loader,
    # the stand-in backbone by its own keys (the loader's 'base_model.backbone.' -> 'backbone.' mapping)
    base = seeded_state_dict({f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}, c["weight_seed"])
    reg = seeded_state_dict(model.regressor.state_dict(), c["weight_seed"])
    path = tmp_path / "last.pth"
    torch.save({"base_model": {f"module.{k}": v for k, v in base.items()},
                "regressor": {f"module.{k}": v for k, v in reg.items()}, "optimizer": {}, "epoch": 0,
                "epoch_best": 0, "rho_best": 0.0, "L2_min": 1000.0, "RL2_min": 1000.0}, path)
    load_core_training_checkpoint(model, path)
    model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in base.items()})
    method.on_train_start(model, np.array(c["train_labels"], dtype=np.float32))
    assert np.allclose(model.groups.numpy(), np.array(c["groups"]), atol=1e-6)
    before = _core_model_state(model)
    # configs/Seven_CoRe.yaml: Adam base_lr 1e-3, weight_decay 0; the backbone's group at x lr_factor 0.1
    cfg = method.training_defaults().updated({"lr": c["optimizer"]["groups"][1]["lr"],
                                              "weight_decay": c["optimizer"]["groups"][1]["weight_decay"]}, "test")
    loss_fn = method.build_loss()
    groups = method.param_groups(model, loss_fn, cfg)
    optimizer = make_optimizer(groups, cfg)
    check_optimizer_groups(optimizer, c, f"CoRe {case}")
    numel = [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups]
    assert numel == [g["numel"] for g in c["optimizer"]["groups"]]  # backbone group, regressor group

    def subclips(video):  # the original's 10 overlapping windows laid end to end (the harness's sub-clips)
        return torch.cat([video[:, :, s:s + 16] for s in c["clip_starts"]], dim=2)

    model.train()
    assert all(m.training != c["fix_bn"] for m in model.backbone.modules() if isinstance(m, nn.BatchNorm3d))
    losses = []
    optimizer.zero_grad(set_to_none=True)
    for it in range(c["iterations"]):
        ins = c["inputs"]
        l1, l2 = (torch.tensor(v, dtype=torch.float64).float() for v in c["labels"][it])
        batch = {"rgb": subclips(seeded_input(**ins[f"video_1_{it}"])), "label": l1,
                 "exemplar": {"rgb": subclips(seeded_input(**ins[f"video_2_{it}"])), "label": l2}}
        loss = method.loss(loss_fn, method.forward(model, batch), batch)
        loss.backward()  # accumulated over step_per_update iterations as the original (1: the engine's step)
        losses.append(float(loss.detach()))
        if (it + 1) % c["step_per_update"] == 0:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    worst = compare_training(c, exp, losses, _core_model_state(model), before, f"CoRe {case}")
    print(f"CoRe {case}: max relative difference {worst}")


# =========================================================================== C3D-LSTM
def test_c3d_lstm_training_steps_match_original(tmp_path):
    from methods.c3d_lstm import C3DLSTMMethod, load_lstm_head_checkpoint

    meta, outs = load_golden("c3d_lstm_train")
    c, exp = meta["cases"]["lstm"], outs["lstm"]
    method = C3DLSTMMethod(geometry=ClipGeometry(n_subclips=5, subclip_len=16, rgb_size=112))
    with torch.device("meta"):  # shapes only: the frozen C3D is not run here (given fc6 features)
        model = method.build_model()
    model = model.to_empty(device="cpu")
    with torch.no_grad():  # defined values for the unused C3D (checked unchanged below)
        for p in model.c3d.parameters():
            p.zero_()
    head = {k: v for k, v in model.state_dict().items() if not k.startswith("c3d.")}
    path = tmp_path / "model_my_lstm_0.pth"  # the port's save_model file: the plain LSTM_anno state dict
    torch.save(seeded_state_dict(head, c["weight_seed"]), path)
    load_lstm_head_checkpoint(model, path)
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("c3d.")}
    ref = c["optimizer"]["groups"][0]
    cfg = method.training_defaults().updated({"lr": ref["lr"], "weight_decay": ref["weight_decay"]}, "test")
    loss_fn = method.build_loss()
    groups = method.param_groups(model, loss_fn, cfg)
    optimizer = make_optimizer(groups, cfg)
    check_optimizer_groups(optimizer, c, "C3D-LSTM")
    assert [sum(p.numel() for p in g["params"]) for g in optimizer.param_groups] == [ref["numel"]]  # C3D frozen
    model.train()
    assert not model.c3d.training  # model_CNN.eval() in train_phase
    losses = []
    for step in range(c["steps"]):
        feats = seeded_input(**c["inputs"][f"clip_feats_{step}"])
        batch = {"label": torch.tensor(c["labels"][step], dtype=torch.float64).float()}
        out = model.score(feats).squeeze(-1)  # = C3DLSTM.forward after the C3D features
        loss = method.loss(loss_fn, out, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    after = {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("c3d.")}
    assert all(not p.requires_grad and p.grad is None and not p.any() for p in model.c3d.parameters())
    worst = compare_training(c, exp, losses, after, before, "C3D-LSTM")
    print(f"C3D-LSTM: max relative difference {worst}")
