"""Runs: ids, records, skip/resume, locks, failure records, registry errors."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import registry
from benchmark.api import InputSpec, Method, Option, TrainingConfig
from benchmark.engine import execute
from benchmark.errors import ConfigError, UnknownMethodError
from benchmark.runs import RunLock, RunSpec, config_hash, load_model_file, resolve
from benchmark.tables import CellRuns, TableRow, build_table, load_spec


class _MeanRGB(nn.Module):
    def __init__(self, explode: bool):
        super().__init__()
        self.lin = nn.Linear(3, 1)
        self.explode = explode

    def forward(self, rgb):
        y = self.lin(rgb.mean(dim=(2, 3, 4))).reshape(-1)
        return y * float("inf") if self.explode and self.training else y


class TinyLinear(Method):
    """A linear model on the mean colour; ``explode`` makes the training loss inf."""

    name = "tiny_linear"
    display_name = "Tiny linear"
    options_spec = {"explode": Option(False, "make training diverge")}

    def input_spec(self):
        return InputSpec(rgb=True, rgb_normalisation="unit")

    def build_model(self):
        return _MeanRGB(self.options["explode"])

    def training_defaults(self):
        return TrainingConfig(epochs=3, batch_size=2, lr=0.1, reps_per_epoch=1, lr_step=0, eval_every=1)


@pytest.fixture(autouse=True)
def _register():
    registry.register("tiny_linear", TinyLinear)
    yield
    registry.unregister("tiny_linear")


def test_config_hash_is_stable_and_sensitive(small_prepared, tmp_path):
    a = resolve(RunSpec("dummy", small_prepared.root, "smile"), tmp_path)
    b = resolve(RunSpec("dummy", small_prepared.root, "smile"), tmp_path)
    c = resolve(RunSpec("dummy", small_prepared.root, "smile", seed=1), tmp_path)
    assert a.run_id == b.run_id != c.run_id
    cfg = dict(a.config, paths={"dataset": "/elsewhere"})
    assert config_hash(cfg) == a.run_id  # moving the data does not change the id


def test_unknown_names_get_suggestions(small_prepared, tmp_path):
    with pytest.raises(UnknownMethodError, match="did you mean 'qafe_net'"):
        registry.get_method("qafe_nett")
    assert registry.get_method("QAFE-Net").name == "qafe_net"
    with pytest.raises(ConfigError, match="did you mean 'explode'"):
        resolve(RunSpec("tiny_linear", small_prepared.root, "smile", options={"explod": True}), tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        resolve(RunSpec("tiny_linear", small_prepared.root, "smile", training={"epoch": 3}), tmp_path)
    with pytest.raises(ConfigError, match="unknown expression 'smiling'"):
        resolve(RunSpec("dummy", small_prepared.root, "smiling"), tmp_path)


def test_dummy_run_writes_records_and_predicts_training_mean(small_prepared, tmp_path):
    run = resolve(RunSpec("dummy", small_prepared.root, "smile"), tmp_path)
    res = execute(run, progress=False, log=lambda s: None)
    assert res["status"] == "ok"
    pred = pd.read_csv(run.folder / "predictions.csv")
    train_labels = small_prepared.videos.query("split == 'train'")["label"]
    assert np.allclose(pred["prediction"], train_labels.mean())
    assert list(pred.columns) == ["video_id", "subject", "expression", "label", "prediction"]
    assert set(pred["video_id"]) == set(small_prepared.videos.query("split == 'test'")["video_id"])
    cfg = json.loads((run.folder / "config.json").read_text())
    assert cfg["method"] == "dummy" and cfg["dataset"]["content_hash"] == small_prepared.content_hash
    prov = json.loads((run.folder / "result.json").read_text())["provenance"]
    assert prov["torch"] == torch.__version__ and prov["dataset_content_hash"] == small_prepared.content_hash
    model = load_model_file(run.folder / "model.pt")
    assert model["config"]["method"] == "dummy"
    # a finished run is skipped: result.json is not rewritten
    mtime = (run.folder / "result.json").stat().st_mtime_ns
    assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
    assert (run.folder / "result.json").stat().st_mtime_ns == mtime


def test_diverged_run_is_recorded_as_failed_and_not_averaged(small_prepared, tmp_path):
    ok = resolve(RunSpec("tiny_linear", small_prepared.root, "smile", seed=0), tmp_path)
    bad = resolve(RunSpec("tiny_linear", small_prepared.root, "smile", seed=1, options={"explode": True}), tmp_path)
    assert execute(ok, progress=False, log=lambda s: None)["status"] == "ok"
    res = execute(bad, progress=False, log=lambda s: None)
    assert res["status"] == "failed" and res["error"]["type"] == "DivergedError"
    assert json.loads((bad.folder / "result.json").read_text())["status"] == "failed"
    spec = load_spec("table2")
    row = TableRow("QAFE-Net", "tiny_linear")
    df = build_table(spec, [CellRuns(row, "smile", [ok, bad])], [], "final")
    cell = df[(df["column"] == "smile")].iloc[0]
    expected = pd.read_csv(ok.folder / "predictions.csv")
    from scipy.stats import spearmanr

    assert cell["n_ok"] == 1 and cell["n_failed"] == 1 and cell["status"] == "partial"
    assert cell["reproduced"] == pytest.approx(100 * spearmanr(expected["label"], expected["prediction"]).statistic)


def test_locked_run_is_not_started_twice(small_prepared, tmp_path):
    run = resolve(RunSpec("dummy", small_prepared.root, "smile"), tmp_path)
    with RunLock(run.folder) as held:
        assert held.acquired
        assert execute(run, progress=False, log=lambda s: None)["status"] == "running"
    assert not (run.folder / "result.json").exists() or json.loads((run.folder / "result.json").read_text())["status"] != "ok"


def test_interrupted_run_resumes_from_its_checkpoint(small_prepared, tmp_path, monkeypatch):
    run = resolve(RunSpec("tiny_linear", small_prepared.root, "smile", training={"epochs": 3, "eval_every": 1}), tmp_path)
    import benchmark.engine as eng

    calls = {"n": 0}
    real = eng._save_checkpoint

    def save_then_crash(*a, **k):
        real(*a, **k)
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt  # simulate a kill after epoch 1's checkpoint

    monkeypatch.setattr(eng, "_save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        execute(run, progress=False, log=lambda s: None)
    assert (run.folder / "checkpoint_last.pt").is_file()
    logs = []
    res = execute(run, progress=False, log=logs.append)
    assert res["status"] == "ok" and any("resume" in s for s in logs)
    assert [e["epoch"] for e in res["epochs"]] == [1, 2, 3]
    ev = pd.read_csv(run.folder / "eval_history.csv")
    assert sorted(ev["epoch"].unique()) == [1, 2, 3]
    # the resumed run ends where an uninterrupted one does
    fresh = resolve(RunSpec("tiny_linear", small_prepared.root, "smile", training={"epochs": 3, "eval_every": 1}), tmp_path / "b")
    monkeypatch.setattr(eng, "_save_checkpoint", real)
    res2 = execute(fresh, progress=False, log=lambda s: None)
    a = pd.read_csv(run.folder / "predictions.csv")["prediction"]
    b = pd.read_csv(fresh.folder / "predictions.csv")["prediction"]
    assert np.allclose(a, b, atol=1e-5)
    assert res2["metrics"]["final"]["mae"] == pytest.approx(res["metrics"]["final"]["mae"], abs=1e-5)
