"""The UNBC-McMaster protocol plug-in: fold file checks, subject-wise folds, seeded 10-clip
test averaging, MAE-selected epochs, pooled and per-fold MAE / RMSE, run ids and folders."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from torch import nn

from benchmark import registry
from benchmark.api import InputSpec, Method, TrainingConfig
from benchmark.cards import load_card
from benchmark.data.prepared import PreparedDataset
from benchmark.data.synthetic_unbc import generate_synthetic_unbc
from benchmark.engine import _test_selected, evaluate, execute
from benchmark.errors import ConfigError, DataError
from benchmark.protocols import MAE, RHO, available_protocols, get_protocol
from benchmark.protocols.pfed5 import ClipDataset
from benchmark.protocols.unbc_5fold import load_folds
from benchmark.runs import RunSpec, resolve
from benchmark.tables import CellRuns, build_table, expand, load_spec, selected_predictions, wide

pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")


@pytest.fixture(scope="module")
def unbc(tmp_path_factory) -> PreparedDataset:
    out = tmp_path_factory.mktemp("unbc") / "data"
    generate_synthetic_unbc(out, scale="tiny", seed=0)
    return PreparedDataset(out)


class _MeanFrame(nn.Module):
    """Predicts the mean pixel value of the clip: a deterministic function of the sampled frames."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(nn.init.constant_(nn.Linear(1, 1).weight, 1.0))

    def forward(self, rgb):
        return rgb.mean(dim=(1, 2, 3, 4)) * self.w.reshape(())


class MeanFrame(Method):
    name = "mean_frame"
    display_name = "Mean frame"

    def input_spec(self):
        return InputSpec(rgb=True, rgb_normalisation="unit")

    def build_model(self):
        return _MeanFrame()

    def training_defaults(self):
        return TrainingConfig(epochs=2, batch_size=4, lr=1e-3, reps_per_epoch=1, lr_step=0, eval_every=1)


@pytest.fixture(autouse=True)
def _register():
    registry.register("mean_frame", MeanFrame)
    yield
    registry.unregister("mean_frame")


def _card_with_folds(tmp_path, folds: dict, name="folds.json"):
    base = load_card("synthetic_unbc")
    (tmp_path / name).write_text(json.dumps({"folds": folds}))
    return dataclasses.replace(base, path=tmp_path, raw={**base.raw, "folds": name})


def test_registry_knows_both_protocols_and_refuses_unknown_ones():
    assert {"pfed5", "unbc_5fold"} <= set(available_protocols())
    p = get_protocol("unbc_5fold")
    assert (p.clip_len, p.test_clips, p.test_samplings, p.headline.name, p.pooled) == (144, "random", 10, "mae", True)
    assert get_protocol("pfed5").headline.name == "rho_x100" and get_protocol("pfed5").clip_len == 80
    assert MAE.better(1.0, 2.0) and not MAE.better(2.0, 1.0) and RHO.better(2.0, 1.0)
    assert MAE.better(3.0, float("nan")) and not MAE.better(float("nan"), 3.0)
    with pytest.raises(ConfigError, match="no protocol named 'unbc_5folds'; did you mean 'unbc_5fold'"):
        get_protocol("unbc_5folds")


def test_folds_partition_every_subject_once_and_no_training_clip_comes_from_a_test_subject(unbc):
    card = load_card("synthetic_unbc")
    p = get_protocol(card.protocol)
    folds = load_folds(card.path / card.raw["folds"])
    assert p.partition_names(card) == [f"fold{k}" for k in range(1, 6)]
    seen = []
    for name in p.partition_names(card):
        part = p.partition(unbc, card, "pain", name)
        assert set(part.test["subject"]) == set(folds[name])
        assert not set(part.train["subject"]) & set(folds[name])
        assert len(part.train) + len(part.test) == len(unbc.videos)
        seen += list(part.test["video_id"])
        # every training clip the protocol delivers comes from a training subject of this fold
        ds = ClipDataset(unbc, part.train, _settings(unbc, card), train=True, reps=2, seed=3)
        for i in range(len(ds)):
            assert part.train.loc[ds[i]["index"], "subject"] not in folds[name]
    assert sorted(seen) == sorted(unbc.videos["video_id"])  # each sequence is tested exactly once


def _settings(dataset, card, method=MeanFrame):
    from benchmark.runs import build_method
    from benchmark.scales import get_scale

    _, clip, _ = build_method(method, get_scale("tiny"), {}, {}, card.label_range, 144)
    return clip


@pytest.mark.parametrize("folds, message", [
    ({"fold1": ["S001", "S001"]}, "subject 'S001' is twice in 'fold1'"),
    ({"fold1": ["S001"], "fold2": ["S002", "S001"]}, "subject 'S001' is in both 'fold1' and 'fold2'"),
    ({"fold1": []}, "fold 'fold1' lists no subject"),
    ({"first": ["S001"]}, "fold name 'first' must be fold<k>"),
])
def test_bad_fold_files_are_refused_naming_the_subject(tmp_path, unbc, folds, message):
    card = _card_with_folds(tmp_path, folds)
    with pytest.raises(DataError, match=message):
        get_protocol("unbc_5fold").partition(unbc, card, "pain", "fold1")


def test_a_subject_of_the_data_in_no_fold_or_a_fold_subject_without_data_is_refused(tmp_path, unbc):
    subjects = sorted(set(unbc.videos["subject"]))
    card = _card_with_folds(tmp_path, {"fold1": subjects[:-1]})
    with pytest.raises(DataError, match=f"subject '{subjects[-1]}' of .*videos.csv .*is in no fold; add it"):
        get_protocol("unbc_5fold").partition(unbc, card, "pain", "fold1")
    with pytest.raises(DataError, match="is in no fold"):  # refused before any run starts
        get_protocol("unbc_5fold").partition_sizes(unbc, card, "pain")
    card = _card_with_folds(tmp_path, {"fold1": subjects[:12], "fold2": subjects[12:] + ["S999"]}, "f2.json")
    with pytest.raises(DataError, match="subject 'S999' \\(fold2\\) has no sequence in"):
        get_protocol("unbc_5fold").partition(unbc, card, "pain", "fold1")
    with pytest.raises(ConfigError, match="split 'fold3' is not available for protocol 'unbc_5fold'; use one of"):
        get_protocol("unbc_5fold").partition(unbc, _card_with_folds(tmp_path, {"fold1": subjects[:12],
                                                                                 "fold2": subjects[12:]}, "f3.json"),
                                             "pain", "fold3")


def test_run_ids_and_folders_carry_the_fold_and_the_fold_files_hash(unbc, tmp_path):
    with pytest.raises(ConfigError, match="protocol 'unbc_5fold' needs a partition \\(--split\\): one of fold1"):
        resolve(RunSpec("dummy", unbc.root, "pain"), tmp_path)
    a = resolve(RunSpec("dummy", unbc.root, "pain", split="fold1"), tmp_path)
    b = resolve(RunSpec("dummy", unbc.root, "pain", split="fold2"), tmp_path)
    assert a.run_id != b.run_id and a.folder.name.startswith("dummy-pain-fold1-s0-")
    card = load_card("synthetic_unbc")
    sha = hashlib.sha256((card.path / "folds.json").read_bytes()).hexdigest()
    assert a.config["protocol_info"] == {"folds_file": "folds.json", "folds_sha256": sha}
    assert a.config["split"] == "fold1" and a.config["clip"]["geometry"]["n_subclips"] == 2  # tiny: at most 2
    paper = resolve(RunSpec("dummy", unbc.root, "pain", split="fold1", scale="paper"), tmp_path)
    assert paper.config["clip"]["geometry"]["n_subclips"] == 9  # 144 = 9 x 16
    short = resolve(RunSpec("dummy", unbc.root, "pain", split="fold1", scale="paper", clip_len=80), tmp_path)
    assert short.config["clip"]["geometry"]["n_subclips"] == 5 and short.run_id != paper.run_id


def test_random_test_clips_are_seeded_and_averaged_over_ten_samplings(unbc, tmp_path):
    card = load_card("synthetic_unbc")
    part = get_protocol("unbc_5fold").partition(unbc, card, "pain", "fold1")
    settings = _settings(unbc, card)

    def clips(seed):
        ds = ClipDataset(unbc, part.test, settings, train=False, seed=seed, test_clips="random", test_samplings=10)
        out = []
        for k in range(10):
            ds.set_sampling(k)
            out.append(np.stack([ds[i]["rgb"].numpy() for i in range(len(ds))]))
        return np.stack(out)  # (sampling, video, 3, T, H, W)

    a, b = clips(0), clips(0)
    assert np.array_equal(a, b)  # the same command twice: identical test clips
    assert not np.array_equal(a[0], a[1])  # ten different clips per sequence
    assert not np.array_equal(a, clips(1))
    # evaluate() averages the model's predictions over the ten samplings
    method = MeanFrame({}, settings.geometry, label_range=card.label_range)
    model = method.build_model()
    ds = ClipDataset(unbc, part.test, settings, train=False, seed=0, test_clips="random", test_samplings=10)
    import torch

    loader = torch.utils.data.DataLoader(ds, batch_size=3, shuffle=False)
    preds = evaluate(method, model, loader, torch.device("cpu"))
    assert preds == pytest.approx(a.mean(axis=(2, 3, 4, 5)).mean(axis=0), abs=1e-6)


def test_the_same_fold_run_twice_gives_identical_predictions(unbc, tmp_path):
    res = []
    for d in ("a", "b"):
        run = resolve(RunSpec("mean_frame", unbc.root, "pain", split="fold2"), tmp_path / d)
        assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
        res.append(pd.read_csv(run.folder / "predictions.csv"))
    pd.testing.assert_frame_equal(res[0], res[1])
    assert set(res[0]["split"]) == {"fold2"} and len(res[0]) == len(
        get_protocol("unbc_5fold").partition(unbc, load_card("synthetic_unbc"), "pain", "fold2").test)


def test_test_selected_epoch_is_the_lowest_mae_under_unbc():
    labels = [0.0, 2.0, 4.0, 6.0]
    ev = pd.concat([pd.DataFrame({"epoch": e, "video_id": list("abcd"), "label": labels, "prediction": p})
                    for e, p in {1: [1, 3, 5, 7], 2: [0, 2, 4, 7.5], 3: [2, 0, 4, 6]}.items()])
    # MAE: epoch 1 = 1.0, epoch 2 = 0.375, epoch 3 = 1.0; rho is 100 for epochs 1 and 2
    sel = _test_selected(ev, MAE)
    assert sel["epoch"] == 2 and sel["mae"] == pytest.approx(0.375)
    assert _test_selected(ev, RHO)["epoch"] == 1  # the earliest of the best-rho epochs


def _fold_run(root, name, seed, split, labels, preds, status="ok", history=None):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "result.json").write_text(json.dumps({"status": status}))
    pd.DataFrame({"label": labels, "prediction": preds}).to_csv(folder / "predictions.csv", index=False)
    if history is not None:
        pd.concat([pd.DataFrame({"epoch": e, "label": labels, "prediction": p}) for e, p in history.items()]
                  ).to_csv(folder / "eval_history.csv", index=False)
    return dataclasses.make_dataclass("R", ["folder", "config"])(folder, {"seed": seed, "split": split})


def test_pooled_and_per_fold_mae_rmse_equal_numpy_by_hand(tmp_path):
    spec = load_spec("table3")
    row = next(r for r in spec.rows if r.label == "QAFE-Net, summation")
    rng = np.random.default_rng(0)
    folds = {f"fold{k}": (rng.integers(0, 11, size=n).astype(float), rng.uniform(0, 10, size=n))
             for k, n in zip(range(1, 6), (3, 5, 4, 6, 2))}  # unequal fold sizes: pooled != mean of folds
    runs = [_fold_run(tmp_path, f"s{s}-{f}", s, f, y, p + s) for s in (0, 1) for f, (y, p) in folds.items()]
    cells = [CellRuns(row, c, runs) for c in spec.columns]
    df = build_table(spec, cells, [], "final")
    y = np.concatenate([v[0] for v in folds.values()])
    for c, fn in (("mae", lambda e: np.mean(np.abs(e))), ("rmse", lambda e: np.sqrt(np.mean(e ** 2)))):
        cell = df[(df["row"] == row.label) & (df["column"] == c)].iloc[0]
        pooled = [fn(np.concatenate([p + s for _, p in folds.values()]) - y) for s in (0, 1)]
        per_fold = [fn(p + s - yy) for s in (0, 1) for yy, p in folds.values()]
        assert cell["reproduced"] == pytest.approx(np.mean(pooled))
        assert cell["std"] == pytest.approx(np.std(pooled, ddof=1))
        assert cell["partition_mean"] == pytest.approx(np.mean(per_fold))
        assert cell["partition_std"] == pytest.approx(np.std(per_fold, ddof=1))
        assert (cell["n_ok"], cell["n_partitions"], cell["status"]) == (2, 10, "ok")
        assert cell["published"] == {"mae": 1.57, "rmse": 2.11}[c]
        assert not math.isclose(cell["reproduced"], cell["partition_mean"])
    w = wide(df, spec)
    assert {"mae", "mae_paper", "mae_folds_mean", "mae_folds_std", "rmse"} <= set(w.columns)
    assert "avg_corr" not in w.columns


def test_a_failed_fold_fails_its_seed_and_is_never_pooled(tmp_path):
    spec = load_spec("table3")
    row = next(r for r in spec.rows if r.label == "QAFE-Net, summation")
    runs = [_fold_run(tmp_path, f"s{s}-f{k}", s, f"fold{k}", [1.0, 2.0], [1.0, 2.0 + s],
                      status="failed" if (s, k) == (1, 3) else "ok") for s in (0, 1) for k in range(1, 6)]
    cell = build_table(spec, [CellRuns(row, "mae", runs)], [], "final").iloc[0]
    assert (cell["n_ok"], cell["n_failed"], cell["status"], cell["reproduced"]) == (1, 1, "partial", 0.0)


def test_test_selected_pools_each_folds_own_best_mae_epoch(tmp_path):
    spec = load_spec("table3")
    row = next(r for r in spec.rows if r.label == "Dummy (training mean)")
    y = [0.0, 4.0]
    runs = [_fold_run(tmp_path, "a", 0, "fold1", y, [1.0, 4.0], history={1: [3.0, 3.0], 2: [1.0, 4.0]}),
            _fold_run(tmp_path, "b", 0, "fold2", y, [2.0, 2.0], history={1: [0.0, 4.5], 2: [2.0, 2.0]})]
    assert list(selected_predictions(runs[1].folder, "test_selected", MAE)["prediction"]) == [0.0, 4.5]
    cell = build_table(spec, [CellRuns(row, "mae", runs)], [], "test_selected").iloc[0]
    assert cell["reproduced"] == pytest.approx(np.mean([1.0, 0.0, 0.0, 0.5]))  # epoch 2 of a, epoch 1 of b


def test_table3_spec_rows_published_only_and_expand_over_folds(unbc, tmp_path):
    spec = load_spec("table3")
    quoted = [r for r in spec.rows if r.published_only]
    assert len(quoted) == 5 and all(r.in_paper for r in quoted)
    only = dataclasses.replace(spec, rows=[quoted[0], next(r for r in spec.rows if r.label == "R3D-18 (80 frames)"),
                                           next(r for r in spec.rows if r.method == "dummy")])
    cells, not_run = expand(only, unbc.root, scale="tiny", seeds=[0, 1], runs_dir=tmp_path)
    assert [r.label for r in not_run] == [quoted[0].label]
    assert len(cells) == 4 and all(len(c.runs) == 10 for c in cells)  # 2 seeds x 5 folds, shared by mae and rmse
    assert cells[0].runs is cells[1].runs
    assert sorted({r.config["split"] for r in cells[0].runs}) == [f"fold{k}" for k in range(1, 6)]
    df = build_table(only, cells, not_run, "final")
    q = df[df["row"] == quoted[0].label]
    assert list(q["status"]) == ["published only"] * 2 and list(q["published"]) == [1.76, 2.50]
    with pytest.raises(ConfigError, match="runs under protocol 'pfed5'"):
        expand(load_spec("table2"), unbc.root, scale="tiny", seeds=[0], runs_dir=tmp_path)
