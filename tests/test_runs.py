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
    assert list(pred.columns) == ["video_id", "subject", "expression", "split", "label", "prediction"]
    assert set(pred["split"]) == {"official"}
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


# ------------------------------------------------------------- run ids: what changes results, and what does not
def test_run_id_changes_with_every_field_that_changes_results(small_prepared, tmp_path):
    from conftest import make_prepared

    base = dict(method="tiny_linear", dataset=small_prepared.root, expression="smile")
    ref = resolve(RunSpec(**base), tmp_path).run_id
    w1, w2 = tmp_path / "w1.pth", tmp_path / "w2.pth"
    w1.write_bytes(b"one")
    w2.write_bytes(b"two")
    other_data = make_prepared(tmp_path / "other", seed=1)  # same layout, other pixels: other content hash
    variants = {
        "option": RunSpec(**base, options={"explode": True}),
        "training lr": RunSpec(**base, training={"lr": 0.05}),
        "training epochs": RunSpec(**base, training={"epochs": 4}),
        "training lr_step": RunSpec(**base, training={"lr_step": 2}),
        "training reps": RunSpec(**base, training={"reps_per_epoch": 3}),
        "training eval_every": RunSpec(**base, training={"eval_every": 2}),
        "seed": RunSpec(**base, seed=1),
        "scale": RunSpec(**base, scale="paper"),
        "control": RunSpec(**base, control="shuffled_labels"),
        "dataset content": RunSpec(**{**base, "dataset": other_data.root}),
    }
    ids = {name: resolve(spec, tmp_path).run_id for name, spec in variants.items()}
    assert all(v != ref for v in ids.values()), {k: v for k, v in ids.items() if v == ref}
    assert len(set(ids.values())) == len(ids)
    # pretrained files count by content, not by path or name
    registry.register("tiny_weights", type("TinyWeights", (TinyLinear,), {"name": "tiny_weights",
                                                                           "pretrained_files": {"rgb": "w.pth"}}))
    try:
        wb = dict(base, method="tiny_weights")
        a = resolve(RunSpec(**wb, weights={"rgb": w1}), tmp_path)
        b = resolve(RunSpec(**wb, weights={"rgb": w2}), tmp_path)
        none = resolve(RunSpec(**wb), tmp_path)
        assert len({a.run_id, b.run_id, none.run_id}) == 3
        moved = tmp_path / "elsewhere" / "w.pth"
        moved.parent.mkdir()
        moved.write_bytes(b"one")
        assert resolve(RunSpec(**wb, weights={"rgb": moved}), tmp_path).run_id == a.run_id
    finally:
        registry.unregister("tiny_weights")


def test_run_id_ignores_what_cannot_change_results(small_prepared, tmp_path):
    import shutil

    base = dict(method="tiny_linear", dataset=small_prepared.root, expression="smile")
    ref = resolve(RunSpec(**base), tmp_path)
    assert resolve(RunSpec(**base, training={"num_workers": 2}), tmp_path).run_id == ref.run_id
    # the speed options are equal within float32 rounding (tests/test_engine_speed.py): same id
    fast = {"compile": "inductor", "channels_last": "true", "amp": "none"}
    assert resolve(RunSpec(**base, training=fast), tmp_path).run_id == ref.run_id
    # mixed precision changes results beyond rounding: another run
    assert resolve(RunSpec(**base, training={"amp": "bf16"}), tmp_path).run_id != ref.run_id
    copy = shutil.copytree(small_prepared.root, tmp_path / "copy")
    assert resolve(RunSpec(**{**base, "dataset": copy}), tmp_path).run_id == ref.run_id
    assert resolve(RunSpec(**base, options={"explode": False}), tmp_path).run_id == ref.run_id  # = the default
    assert resolve(RunSpec(**base), tmp_path / "other_runs").run_id == ref.run_id


# ------------------------------------------------------------- the data path through the engine
class _Recorder(TinyLinear):
    """TinyLinear that records the (video row, label) pairs of every training batch."""

    name = "recorder"
    seen: list = []

    def loss(self, loss_fn, output, batch):
        _Recorder.seen.extend(zip(batch["index"].tolist(), batch["label"].tolist()))
        return super().loss(loss_fn, output, batch)


def test_shuffled_label_control_permutes_labels_across_training_videos(tmp_path):
    from conftest import make_prepared

    ds = make_prepared(tmp_path / "ds", videos=20)
    train = ds.videos.query("split == 'train' and expression == 'smile'").reset_index(drop=True)
    registry.register("recorder", _Recorder)
    try:
        pairs = {}
        for control in ("none", "shuffled_labels"):
            _Recorder.seen = []
            run = resolve(RunSpec("recorder", ds.root, "smile", control=control, training={"epochs": 1}), tmp_path)
            assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
            pairs[control] = dict(_Recorder.seen)
    finally:
        registry.unregister("recorder")
    true = {i: float(v) for i, v in enumerate(train["label"])}
    assert pairs["none"] == true
    shuffled = pairs["shuffled_labels"]
    assert sorted(shuffled.values()) == sorted(true.values())  # the same labels ...
    assert sum(shuffled[i] != true[i] for i in true) >= len(true) // 2  # ... on other videos


def test_a_subject_leak_or_bad_label_fails_the_run_and_names_it(tmp_path):
    from benchmark.data.prepared import LandmarkScheme, PreparedWriter

    def dataset(name, subjects, labels):
        w = PreparedWriter(tmp_path / name, card="synthetic", crop_size=8,
                           landmark_scheme=LandmarkScheme("test_1", 1, {}), backend={"name": "test"})
        for v, (s, lab) in enumerate(zip(subjects, labels)):
            w.add_video(f"v{v}", np.zeros((6, 8, 8, 3), np.uint8), np.full((6, 1, 2), 4, np.float32),
                        np.ones(6, bool), subject=s, expression="smile", label=lab,
                        split="train" if v < 2 else "test", fps=25)
        w.finalize()
        return tmp_path / name

    leak = resolve(RunSpec("tiny_linear", dataset("leak", ["a", "b", "b", "c"], [0, 1, 2, 3]), "smile"), tmp_path)
    res = execute(leak, progress=False, log=lambda s: None)
    assert res["status"] == "failed" and res["error"]["type"] == "SubjectLeakError" and "'b'" in res["error"]["message"]
    bad = resolve(RunSpec("tiny_linear", dataset("label", ["a", "b", "c", "d"], [0, 1, 7, 3]), "smile"), tmp_path)
    res = execute(bad, progress=False, log=lambda s: None)
    assert res["status"] == "failed" and res["error"]["type"] == "LabelError" and "video v2" in res["error"]["message"]
    assert not (bad.folder / "predictions.csv").exists()


def test_step_schedule_learning_rates_by_epoch(small_prepared, tmp_path):
    run = resolve(RunSpec("tiny_linear", small_prepared.root, "smile",
                          training={"epochs": 5, "lr": 0.1, "lr_step": 2, "lr_gamma": 0.5}), tmp_path)
    res = execute(run, progress=False, log=lambda s: None)
    assert [e["lr"] for e in res["epochs"]] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    flat = resolve(RunSpec("tiny_linear", small_prepared.root, "smile",
                           training={"epochs": 3, "lr": 0.1, "lr_step": 0}), tmp_path)
    assert [e["lr"] for e in execute(flat, progress=False, log=lambda s: None)["epochs"]] == pytest.approx([0.1] * 3)


def test_a_group_marked_no_decay_keeps_its_rate(small_prepared, tmp_path):
    """QAFE-Net's learned BMC sigma group ("decay": False) is never decayed by the step schedule."""
    from methods.qafe_net import param_groups_with_sigma
    from benchmark.engine import make_optimizer, step_schedule
    from benchmark.losses import BMCLoss

    cfg = TrainingConfig(optimizer="sgd", lr=0.1, lr_step=1, lr_gamma=0.5)
    groups = param_groups_with_sigma(nn.Linear(2, 1), BMCLoss(learn_sigma=True), cfg)
    opt = make_optimizer(groups, cfg)
    sched = step_schedule(opt, groups, cfg)
    rates = []
    for _ in range(3):
        rates.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    assert rates == [pytest.approx([0.1, 1e-2]), pytest.approx([0.05, 1e-2]), pytest.approx([0.025, 1e-2])]


def test_both_model_selection_rules(tmp_path):
    """final = the last evaluated epoch; test-selected = the epoch of the HIGHEST test rho."""
    from benchmark.engine import _test_selected
    from benchmark.tables import _metric, selected_predictions

    def _cell_value(folder, selection, metric):
        df = selected_predictions(folder, selection)
        return _metric(df["label"], df["prediction"], metric)

    labels = [0, 1, 2, 3, 4]
    # rho = 1 - 6 sum(d^2) / (n (n^2 - 1)), n = 5
    preds = {1: [4, 3, 2, 1, 0],      # reversed: rho -100 (the minimum)
             2: [0, 1, 2, 4, 3],      # one adjacent swap, sum d^2 = 2: rho 90 (the best, not the last)
             3: [1, 0, 3, 2, 4]}      # two swaps, sum d^2 = 4: rho 80 (the final epoch)
    ev = pd.concat([pd.DataFrame({"epoch": e, "video_id": [f"v{i}" for i in range(5)], "label": labels,
                                  "prediction": p}) for e, p in preds.items()])
    sel = _test_selected(ev)
    assert sel["epoch"] == 2 and sel["rho_x100"] == pytest.approx(90.0)
    folder = tmp_path / "run"
    folder.mkdir()
    ev.to_csv(folder / "eval_history.csv", index=False)
    pd.DataFrame({"label": labels, "prediction": preds[3]}).to_csv(folder / "predictions.csv", index=False)
    assert _cell_value(folder, "test_selected", "rho_x100") == pytest.approx(90.0)
    assert _cell_value(folder, "final", "rho_x100") == pytest.approx(80.0)


def test_report_without_weights_finds_the_runs_reproduce_made_with_weights(small_prepared, tmp_path):
    """`qafe-bench report` as the README writes it (no --weights) must find runs made with --weights."""
    from dataclasses import replace as dc_replace

    from benchmark.tables import expand

    cls = type("TinyWeights", (TinyLinear,), {"name": "tiny_weights", "pretrained_files": {"rgb": "w.pth"},
                                              "load_pretrained": lambda self, model, files: {"rgb": "read"}})
    registry.register("tiny_weights", cls)
    try:
        (tmp_path / "weights").mkdir()
        (tmp_path / "weights" / "w.pth").write_bytes(b"weights")
        spec = dc_replace(load_spec("table2"), rows=[TableRow("QAFE-Net", "tiny_weights")], columns=["smile"])
        runs_dir = tmp_path / "runs"
        with_w, _ = expand(spec, small_prepared.root, scale="tiny", seeds=[0], runs_dir=runs_dir,
                           weights={"tiny_weights": {"rgb": tmp_path / "weights" / "w.pth"}})
        made = with_w[0].runs[0]
        assert execute(made, progress=False, log=lambda s: None)["status"] == "ok"
        plain, _ = expand(spec, small_prepared.root, scale="tiny", seeds=[0], runs_dir=runs_dir)
        assert plain[0].runs[0].folder != made.folder  # the id hashes the weights ...
        found, _ = expand(spec, small_prepared.root, scale="tiny", seeds=[0], runs_dir=runs_dir, find_recorded=True)
        assert found[0].runs[0].folder == made.folder  # ... and report finds the recorded run anyway
        df = build_table(spec, found, [], "final")
        assert df[df["column"] == "smile"].iloc[0]["n_ok"] == 1
        # a run that differs in anything else (here the seed) is never substituted
        other, _ = expand(spec, small_prepared.root, scale="tiny", seeds=[1], runs_dir=runs_dir, find_recorded=True)
        assert other[0].runs[0].folder != made.folder
    finally:
        registry.unregister("tiny_weights")


def test_scale_options_reach_the_run_beneath_the_users(small_prepared, tmp_path):
    """A method's ``scale_options`` are applied at their scale only, recorded in the config (so in the
    run id), and an explicit user option wins."""
    cls = type("TinyScaled", (TinyLinear,), {"name": "tiny_scaled", "scale_options": {"tiny": {"explode": True}}})
    registry.register("tiny_scaled", cls)
    try:
        base = dict(method="tiny_scaled", dataset=small_prepared.root, expression="smile")
        tiny = resolve(RunSpec(**base, scale="tiny"), tmp_path)
        paper = resolve(RunSpec(**base, scale="paper"), tmp_path)
        user = resolve(RunSpec(**base, scale="tiny", options={"explode": False}), tmp_path)
        assert tiny.config["options"] == {"explode": True} and tiny.method.options["explode"] is True
        assert paper.config["options"] == {"explode": False}
        assert user.config["options"] == {"explode": False} and user.run_id != tiny.run_id
    finally:
        registry.unregister("tiny_scaled")
    bad = type("PaperScaled", (TinyLinear,), {"name": "paper_scaled", "scale_options": {"paper": {"explode": True}}})
    registry.register("paper_scaled", bad)
    try:
        with pytest.raises(ConfigError, match="paper scale runs the paper's options"):
            resolve(RunSpec(method="paper_scaled", dataset=small_prepared.root, expression="smile", scale="paper"),
                    tmp_path)
    finally:
        registry.unregister("paper_scaled")


class TinyGAI(TinyLinear):
    """TinyLinear trained with the GAI loss (its GMM fitted by the engine)."""

    name = "tiny_gai"

    def build_loss(self):
        from benchmark.losses import GAILoss

        return GAILoss(2)


def test_gai_gmm_is_fitted_on_the_training_partition_only(small_prepared, tmp_path):
    """The engine hands the loss the training videos' labels, never the test videos': the saved
    GMM equals scikit-learn's fit on the training labels of the expression (0, 1, 2, 3 here) and
    differs from a fit that also saw the test labels (4, 0, 1, 2)."""
    from sklearn.mixture import GaussianMixture

    registry.register("tiny_gai", TinyGAI)
    try:
        run = resolve(RunSpec("tiny_gai", small_prepared.root, "smile", training={"epochs": 1}), tmp_path)
        assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
    finally:
        registry.unregister("tiny_gai")
    state = load_model_file(run.folder / "model.pt")["loss_state_dict"]
    videos = small_prepared.videos
    train = videos.query("split == 'train'")["label"].to_numpy(float)
    every = videos["label"].to_numpy(float)
    assert sorted(train) == [0, 1, 2, 3]
    fit = GaussianMixture(n_components=2, random_state=0).fit(train.reshape(-1, 1))
    both = GaussianMixture(n_components=2, random_state=0).fit(every.reshape(-1, 1))
    assert state["fitted"].item() is True
    assert sorted(state["gmm_means"].tolist()) == pytest.approx(sorted(fit.means_.ravel()), abs=1e-9)
    assert sorted(state["gmm_means"].tolist()) != pytest.approx(sorted(both.means_.ravel()), abs=1e-3)
