"""Precise BatchNorm (training setting ``precise_bn``): running statistics re-estimated on training
clips before evaluation, checked against an independent computation, and its contract with the
engine (training unchanged, frozen layers left alone, recorded, hashed only when on)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import registry
from benchmark.api import InputSpec, Method, TrainingConfig
from benchmark.engine import SpeedSettings, execute, recompute_bn_statistics, trainable_batchnorms
from benchmark.runs import RunSpec, load_model_file, resolve


class _BNNet(nn.Module):
    """Per-clip mean colour -> Linear -> BatchNorm1d -> Linear; an optional frozen BatchNorm."""

    def __init__(self, freeze: bool = False) -> None:
        super().__init__()
        self.a = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4, momentum=0.01)
        self.frozen = nn.BatchNorm1d(4)
        self.freeze = freeze
        self.head = nn.Linear(4, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        if mode and self.freeze:
            self.frozen.eval()
        return self

    def features(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.a(rgb.mean(dim=(2, 3, 4)))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.head(self.frozen(self.bn(self.features(rgb)))).reshape(-1)


class BNMethod(Method):
    name = "tiny_bn"
    display_name = "Tiny BN"

    def input_spec(self):
        return InputSpec(rgb=True, rgb_normalisation="unit")

    def build_model(self):
        return _BNNet()

    def training_defaults(self):
        return TrainingConfig(epochs=2, batch_size=2, optimizer="sgd", lr=0.05, reps_per_epoch=1, lr_step=0,
                              eval_every=1)


@pytest.fixture(autouse=True)
def _register():
    registry.register("tiny_bn", BNMethod)
    yield
    registry.unregister("tiny_bn")


def _batches(n: int, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"rgb": torch.rand(3, 3, 2, 4, 4, generator=g) * (i + 1), "label": torch.zeros(3)} for i in range(n)]


def test_running_statistics_become_the_plain_average_of_the_batch_statistics():
    model = _BNNet(freeze=True).eval()
    frozen_before = {k: v.clone() for k, v in model.frozen.state_dict().items()}
    model.bn.running_mean.fill_(5.0)  # stale statistics
    batches = _batches(4)
    info = recompute_bn_statistics(BNMethod(), model, batches, batches=3)
    assert info == {"layers": 1, "batches": 3}  # the frozen layer is not counted
    with torch.no_grad():
        feats = [model.features(b["rgb"]) for b in batches[:3]]
    # independent: mean of the per-batch means and of the per-batch unbiased variances
    mean = torch.stack([f.mean(0) for f in feats]).mean(0)
    var = torch.stack([f.var(0, unbiased=True) for f in feats]).mean(0)
    torch.testing.assert_close(model.bn.running_mean, mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.bn.running_var, var, rtol=1e-5, atol=1e-6)
    assert model.bn.momentum == 0.01 and not model.training and not model.bn.training  # restored
    for k, v in model.frozen.state_dict().items():  # a frozen layer keeps its statistics
        assert torch.equal(v, frozen_before[k]), k


def test_trainable_batchnorms_leave_out_layers_kept_in_eval_mode():
    free, frozen = _BNNet(freeze=False), _BNNet(freeze=True)
    frozen.eval()
    assert trainable_batchnorms(free) == [free.bn, free.frozen]
    assert trainable_batchnorms(frozen) == [frozen.bn] and not frozen.training  # mode restored


def test_random_streams_are_forked_so_training_is_unchanged():
    model = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.5), nn.BatchNorm1d(4))

    class DropMethod(BNMethod):
        def forward(self, model, batch):
            return model(batch["rgb"].mean(dim=(2, 3, 4)))

    torch.manual_seed(3)
    expected = torch.rand(5)
    torch.manual_seed(3)
    recompute_bn_statistics(DropMethod(), model, _batches(2), batches=2, speed=SpeedSettings(torch.device("cpu")))
    assert torch.equal(torch.rand(5), expected)


def test_engine_run_with_precise_bn_trains_the_same_weights_and_records_it(small_prepared, tmp_path):
    def train(**training):
        run = resolve(RunSpec("tiny_bn", small_prepared.root, "smile",
                              training={"epochs": 2, "eval_every": 1, **training}), tmp_path)
        res = execute(run, progress=False, log=lambda s: None)
        assert res["status"] == "ok", res.get("error")
        preds = pd.read_csv(run.folder / "predictions.csv")["prediction"].to_numpy()
        return run, res, preds, load_model_file(run.folder / "model.pt")["state_dict"]

    plain, res0, p0, sd0 = train()
    precise, res1, p1, sd1 = train(precise_bn=2)
    assert "precise_bn" not in plain.config["training"] or plain.config["training"]["precise_bn"] == 0
    assert precise.run_id != plain.run_id  # hashed when on; earlier run ids stand (0 is not hashed)
    assert [e.get("precise_bn") for e in res1["epochs"]] == [{"layers": 2, "batches": 2}] * 2
    assert all("precise_bn" not in e for e in res0["epochs"])
    for key in sd0:  # training is the same: only the statistics used for evaluation differ
        if "running" in key or "num_batches" in key:
            continue
        torch.testing.assert_close(sd1[key], sd0[key], rtol=0, atol=1e-6, msg=key)
    assert not np.allclose(p0, p1)


def test_precise_bn_must_not_be_negative(small_prepared, tmp_path):
    from benchmark.errors import ConfigError

    with pytest.raises(ConfigError, match="precise_bn=-1 must be >= 0"):
        resolve(RunSpec("tiny_bn", small_prepared.root, "smile", training={"precise_bn": -1}), tmp_path)
