"""The table builder against hand-worked tables: run folders written by the test, every
cell's number, status and counts worked out by hand (Spearman's rho of 4 videos is
``1 - 6 sum d^2 / (n (n^2 - 1))``), the summary columns by their formulas."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from benchmark.errors import ConfigError
from benchmark.tables import CellRuns, TableRow, build_table, expand, load_spec, published_value, wide

from test_run_records import _record

LABELS = [0, 1, 2, 3]
# predictions with sum d^2 = 0, 2, 4, 6 against LABELS: rho x 100 = 100, 80, 60, 40
RHO_100 = [0.1, 0.2, 0.3, 0.4]
RHO_80 = [0.1, 0.3, 0.2, 0.4]
RHO_60 = [0.2, 0.1, 0.4, 0.3]
RHO_40 = [0.2, 0.3, 0.1, 0.4]
CONSTANT = [0.5, 0.5, 0.5, 0.5]  # rho undefined (NaN)

# a table never takes the mean or std of nothing (numpy would warn and return NaN)
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")
COLUMNS = ["row", "method", "in_paper", "column", "reproduced", "std", "n_ok", "n_failed", "n_missing",
           "published", "diff", "within_tolerance", "status", "runs", "note", "partition_mean", "partition_std",
           "n_partitions", "ci_low", "ci_high"]


def _run(root: Path, name: str, status: str | None, final=None, history=()):
    """A run folder as the engine leaves it: ``result.json`` (or none: never run),
    ``predictions.csv`` of the final model, ``eval_history.csv`` of each epoch."""
    folder = root / name
    folder.mkdir(parents=True)
    if status is not None:
        (folder / "result.json").write_text(json.dumps({"status": status}))
    if final is not None:
        pd.DataFrame({"video_id": [f"v{i}" for i in range(4)], "label": LABELS, "prediction": final}).to_csv(
            folder / "predictions.csv", index=False)
    rows = [{"epoch": e, "video_id": f"v{i}", "label": LABELS[i], "prediction": p[i]}
            for e, p in enumerate(history, start=1) for i in range(4)]
    if rows:
        pd.DataFrame(rows).to_csv(folder / "eval_history.csv", index=False)
    return SimpleNamespace(folder=folder)


@pytest.fixture
def spec():
    return replace(load_spec("table2"), columns=["smile", "frown"],
                   rows=[TableRow("QAFE-Net", "qafe_net"), TableRow("USDL", "usdl"),
                         TableRow("Mine", "mine", in_paper=False)])


def _cell(df, row, column):
    sel = df[(df["row"] == row) & (df["column"] == column)]
    assert len(sel) == 1
    return sel.iloc[0]


def test_seed_mean_std_published_diff_and_tolerance(spec, tmp_path):
    q = TableRow("QAFE-Net", "qafe_net")
    cells = [CellRuns(q, "smile", [_run(tmp_path, "a", "ok", RHO_80), _run(tmp_path, "b", "ok", RHO_100)]),
             CellRuns(q, "frown", [_run(tmp_path, "c", "ok", RHO_60), _run(tmp_path, "d", "ok", RHO_60)])]
    df = build_table(spec, cells, [], "final")
    assert list(df.columns) == COLUMNS and list(df.index) == list(range(len(df)))
    smile = _cell(df, "QAFE-Net", "smile")
    assert smile["reproduced"] == pytest.approx(90.0)
    assert (smile["method"], smile["in_paper"], smile["note"]) == ("qafe_net", True, "")
    assert smile["std"] == pytest.approx(math.sqrt(200.0))  # ddof=1 over the seeds: (10^2 + 10^2) / 1
    assert (smile["n_ok"], smile["n_failed"], smile["n_missing"], smile["status"]) == (2, 0, 0, "ok")
    assert smile["runs"] == "a;b"
    assert smile["published"] == 68.29  # Table 2, QAFE-Net, smile
    assert smile["diff"] == pytest.approx(90.0 - 68.29)
    assert smile["within_tolerance"] is not None and not smile["within_tolerance"]  # |90 - 68.29| > 5
    frown = _cell(df, "QAFE-Net", "frown")
    assert frown["reproduced"] == pytest.approx(60.0) and frown["std"] == pytest.approx(0.0)
    assert frown["published"] == 63.26 and bool(frown["within_tolerance"])  # |60 - 63.26| <= 5
    avg = _cell(df, "QAFE-Net", "avg_corr")
    assert avg["reproduced"] == pytest.approx(75.0)  # arithmetic mean of 90 and 60, as the paper averages
    assert avg["published"] == 65.35 and avg["status"] == "ok" and avg["n_ok"] == 2
    assert math.isnan(avg["std"]) and avg["n_failed"] == 0 and avg["n_missing"] == 0 and avg["runs"] == ""
    fz = _cell(df, "QAFE-Net", "avg_corr_fisher_z")
    assert fz["status"] == "ok" and fz["n_ok"] == 2 and fz["n_failed"] == 0 and fz["n_missing"] == 0
    assert math.isnan(fz["std"])
    assert fz["reproduced"] == pytest.approx(100 * math.tanh((math.atanh(0.9) + math.atanh(0.6)) / 2))
    assert math.isnan(fz["published"])


def test_one_seed_has_no_std_and_tolerance_edge_counts(spec, tmp_path):
    spec = replace(spec, tolerance=8.29)  # |60 - 68.29| = 8.29 sits on the edge: within
    q = TableRow("QAFE-Net", "qafe_net")
    df = build_table(spec, [CellRuns(q, "smile", [_run(tmp_path, "a", "ok", RHO_60)])], [], "final")
    cell = _cell(df, "QAFE-Net", "smile")
    assert cell["reproduced"] == pytest.approx(60.0) and math.isnan(cell["std"])
    assert bool(cell["within_tolerance"])
    assert _cell(df, "QAFE-Net", "avg_corr")["status"] == "incomplete"  # frown has no cell at all
    assert math.isnan(_cell(df, "QAFE-Net", "avg_corr")["reproduced"])


def test_failed_and_missing_runs_are_counted_never_averaged(spec, tmp_path):
    q, u = TableRow("QAFE-Net", "qafe_net"), TableRow("USDL", "usdl")
    cells = [
        CellRuns(q, "smile", [_run(tmp_path, "ok", "ok", RHO_40), _run(tmp_path, "bad", "failed", RHO_100)]),
        CellRuns(q, "frown", [_run(tmp_path, "never", None), _run(tmp_path, "running", "running", RHO_100)]),
        CellRuns(u, "smile", [_run(tmp_path, "f1", "failed"), _run(tmp_path, "f2", "failed")]),
        CellRuns(u, "frown", [_run(tmp_path, "f3", "failed"), _run(tmp_path, "m", None)]),
    ]
    cells.append(CellRuns(TableRow("Mine", "mine", in_paper=False), "smile",
                          [_run(tmp_path, "m_ok", "ok", RHO_80), _run(tmp_path, "m_missing", None)]))
    cells.append(CellRuns(TableRow("Mine", "mine", in_paper=False), "frown", [_run(tmp_path, "m2", "ok", RHO_60)]))
    df = build_table(spec, cells, [], "final")
    ok_and_missing = _cell(df, "Mine", "smile")
    assert (ok_and_missing["n_ok"], ok_and_missing["n_missing"], ok_and_missing["status"]) == (1, 1, "partial")
    assert ok_and_missing["reproduced"] == pytest.approx(80.0)
    for col in ("avg_corr", "avg_corr_fisher_z"):  # both cells have a number, one is only partial: no average
        assert math.isnan(_cell(df, "Mine", col)["reproduced"]) and _cell(df, "Mine", col)["status"] == "incomplete"
    partial = _cell(df, "QAFE-Net", "smile")
    assert partial["reproduced"] == pytest.approx(40.0)  # the failed run's 100 is not averaged in
    assert (partial["n_ok"], partial["n_failed"], partial["n_missing"], partial["status"]) == (1, 1, 0, "partial")
    missing = _cell(df, "QAFE-Net", "frown")
    assert (missing["n_ok"], missing["n_failed"], missing["n_missing"], missing["status"]) == (0, 0, 2, "not run")
    assert math.isnan(missing["reproduced"]) and math.isnan(missing["diff"])
    assert missing["within_tolerance"] is None
    failed = _cell(df, "USDL", "smile")
    assert (failed["n_ok"], failed["n_failed"], failed["status"]) == (0, 2, "failed")
    mixed = _cell(df, "USDL", "frown")  # failed + missing, nothing ok
    assert (mixed["n_failed"], mixed["n_missing"], mixed["status"]) == (1, 1, "failed")
    for row in ("QAFE-Net", "USDL"):
        avg = _cell(df, row, "avg_corr")
        assert avg["status"] == "incomplete" and math.isnan(avg["reproduced"])
    assert _cell(df, "QAFE-Net", "avg_corr")["n_failed"] == 1
    assert _cell(df, "QAFE-Net", "avg_corr")["n_missing"] == 2
    assert _cell(df, "USDL", "avg_corr")["n_failed"] == 3
    assert _cell(df, "QAFE-Net", "avg_corr")["n_ok"] == 0  # the fewest seeds of any column


def test_test_selected_takes_the_best_defined_epoch(spec, tmp_path):
    q = TableRow("QAFE-Net", "qafe_net")
    cells = [CellRuns(q, "smile", [_run(tmp_path, "a", "ok", RHO_40, history=[CONSTANT, RHO_80, RHO_60])]),
             CellRuns(q, "frown", [_run(tmp_path, "b", "ok", RHO_40, history=[CONSTANT, CONSTANT])])]
    sel = build_table(spec, cells, [], "test_selected")
    assert _cell(sel, "QAFE-Net", "smile")["reproduced"] == pytest.approx(80.0)  # max, the NaN epoch skipped
    assert math.isnan(_cell(sel, "QAFE-Net", "frown")["reproduced"])  # no epoch with a defined rho
    final = build_table(spec, cells, [], "final")
    assert _cell(final, "QAFE-Net", "smile")["reproduced"] == pytest.approx(40.0)
    with pytest.raises(ConfigError, match="^unknown model selection .best.; choose one of test_selected, final, validation$"):
        build_table(spec, cells, [], "best")
    with pytest.raises(ConfigError, match="^protocol 'pfed5' reports no metric 'kendall'; it reports rho_x100, mae, rmse$"):
        build_table(replace(spec, metric="kendall"), cells, [], "final")


def test_not_implemented_and_no_data_rows_keep_the_paper_order(spec, tmp_path):
    m, q = TableRow("Mine", "mine", in_paper=False), TableRow("QAFE-Net", "qafe_net")
    cells = [CellRuns(m, "frown", [], no_data="0 train / 2 test videos"),  # a no-data cell first
             CellRuns(m, "smile", [_run(tmp_path, "a", "ok", RHO_80)]),
             CellRuns(q, "smile", [], no_data="1 train / 0 test videos"),
             CellRuns(q, "frown", [], no_data="1 train / 0 test videos")]
    usdl = TableRow("USDL", "usdl")
    df = build_table(spec, cells, [usdl], "final")
    assert list(dict.fromkeys(df["row"])) == ["QAFE-Net", "USDL", "Mine"]  # spec order, not call order
    assert list(df["column"][-9:]) == ["avg_corr", "avg_corr_fisher_z", "pooled"] * 3
    assert list(df["row"][-9:]) == ["QAFE-Net"] * 3 + ["USDL"] * 3 + ["Mine"] * 3
    assert list(df.index) == list(range(len(df)))
    for c in ("smile", "frown"):
        cell = _cell(df, "USDL", c)
        assert cell["status"] == "not implemented" and math.isnan(cell["reproduced"]) and math.isnan(cell["std"])
        assert (cell["n_ok"], cell["n_failed"], cell["n_missing"]) == (0, 0, 0)
        assert cell["published"] == {"smile": 55.90, "frown": 46.36}[c]
    assert _cell(df, "USDL", "avg_corr")["status"] == "not implemented"
    assert _cell(df, "USDL", "avg_corr")["published"] == 47.79
    nodata = _cell(df, "Mine", "frown")
    assert nodata["status"] == "no data" and nodata["runs"] == "" and math.isnan(nodata["std"])
    assert (nodata["n_ok"], nodata["n_failed"], nodata["n_missing"]) == (0, 0, 0)
    assert nodata["note"] == "the dataset has 0 train / 2 test videos for this expression"
    paper_nodata = _cell(df, "QAFE-Net", "smile")
    assert paper_nodata["status"] == "no data" and paper_nodata["published"] == 68.29
    assert _cell(df, "QAFE-Net", "avg_corr")["status"] == "no data"  # every cell without data
    mine = _cell(df, "Mine", "smile")
    assert mine["reproduced"] == pytest.approx(80.0) and math.isnan(mine["published"])  # not a paper row
    assert math.isnan(mine["diff"]) and mine["within_tolerance"] is None
    assert _cell(df, "Mine", "avg_corr")["status"] == "incomplete"


def test_wide_puts_reproduced_and_paper_side_by_side(spec, tmp_path):
    q = TableRow("QAFE-Net", "qafe_net")
    cells = [CellRuns(q, "smile", [_run(tmp_path, "a", "ok", RHO_80)]),
             CellRuns(q, "frown", [_run(tmp_path, "b", "ok", RHO_40)])]
    cells.append(CellRuns(TableRow("Mine", "mine", in_paper=False), "smile", [_run(tmp_path, "c", "ok", RHO_60)]))
    cells.append(CellRuns(TableRow("Mine", "mine", in_paper=False), "frown", [_run(tmp_path, "d", "ok", RHO_60)]))
    w = wide(build_table(spec, cells, [], "final"), spec)
    assert list(w["row"]) == ["QAFE-Net", "Mine"]  # spec order (not alphabetical)
    assert list(w.columns) == ["row", "smile", "smile_paper", "smile_ci_low", "smile_ci_high", "frown",
                               "frown_paper", "frown_ci_low", "frown_ci_high", "avg_corr", "avg_corr_paper",
                               "avg_corr_ci_low", "avg_corr_ci_high", "avg_corr_fisher_z", "pooled",
                               "pooled_ci_low", "pooled_ci_high"]
    r = w.iloc[0]
    assert (r["row"], r["smile"], r["smile_paper"], r["frown"], r["frown_paper"]) == ("QAFE-Net", 80.0, 68.29,
                                                                                      40.0, 63.26)
    assert r["avg_corr"] == pytest.approx(60.0) and r["avg_corr_paper"] == 65.35
    assert r["avg_corr_fisher_z"] == pytest.approx(100 * math.tanh((math.atanh(0.8) + math.atanh(0.4)) / 2))
    # pooled: rho over the 8 test videos of both columns together, by scipy; its CI brackets it
    from scipy.stats import spearmanr

    expected = 100 * spearmanr(LABELS + LABELS, RHO_80 + RHO_40).statistic
    assert r["pooled"] == pytest.approx(expected)
    assert r["pooled_ci_low"] <= r["pooled"] <= r["pooled_ci_high"]
    assert r["smile_ci_low"] <= r["smile"] <= r["smile_ci_high"] and math.isnan(w.iloc[0].get("pooled_paper", math.nan))


def test_published_value_of_rows_and_columns(spec):
    q = TableRow("QAFE-Net", "qafe_net")
    assert published_value(spec, q, "sit_at_rest") == 75.57
    assert math.isnan(published_value(spec, q, "no_such_column"))
    assert math.isnan(published_value(spec, TableRow("QAFE-Net", "qafe_net", in_paper=False), "smile"))
    assert math.isnan(published_value(spec, TableRow("Unknown", "x"), "smile"))


def test_load_spec_errors_name_the_file(tmp_path, monkeypatch):
    import benchmark.tables as tables

    (tmp_path / "specs").mkdir()
    (tmp_path / "published").mkdir()
    pd.DataFrame({"method": ["A"], "smile": [1.0]}).to_csv(tmp_path / "published" / "p.csv", index=False)
    base = ("id: t\ntitle: T\npaper_table: 2\ndataset_protocol: pfed5\npublished: p.csv\npublished_key: method\n"
            "metric: rho_x100\ncolumns: [smile]\n")
    monkeypatch.setattr(tables, "specs_dir", lambda: tmp_path / "specs")
    monkeypatch.setattr(tables, "published_dir", lambda: tmp_path / "published")
    (tmp_path / "specs" / "ok.yaml").write_text(
        base + "rows:\n  - {label: A, method: a, options: {o: 2}, training: {epochs: 3}}\n"
        "extra_rows:\n  - {label: B, method: b, options: {k: 1}, training: {lr: 0.5}}\n  - {label: C, method: c}\n")
    spec = load_spec("ok")
    assert [(r.label, r.method, r.in_paper, r.options, r.training) for r in spec.rows] == [
        ("A", "a", True, {"o": 2}, {"epochs": 3}), ("B", "b", False, {"k": 1}, {"lr": 0.5}), ("C", "c", False, {}, {})]
    assert (spec.id, spec.title, spec.protocol, spec.metric, spec.published_key) == ("t", "T", "pfed5", "rho_x100",
                                                                                     "method")
    assert spec.tolerance == 5.0 and spec.paper_table == 2 and spec.columns == ["smile"]
    assert spec.path == tmp_path / "specs" / "ok.yaml" and list(spec.published["method"]) == ["A"]
    (tmp_path / "specs" / "tol.yaml").write_text(base + "tolerance: 2.5\nrows: []\n")
    assert load_spec("tol").tolerance == 2.5
    pd.DataFrame({"method": ["A", "B"], "smile": [1.0, None]}).to_csv(tmp_path / "published" / "p2.csv", index=False)
    (tmp_path / "specs" / "two.yaml").write_text(base.replace("p.csv", "p2.csv") + "rows:\n  - {label: B, method: b}\n")
    two = load_spec("two")
    assert math.isnan(published_value(two, two.rows[0], "smile"))  # an empty published cell
    (tmp_path / "specs" / "badrow.yaml").write_text(base.replace("p.csv", "p2.csv")
                                                    + "rows:\n  - {label: Z, method: z}\n")
    with pytest.raises(ConfigError, match=r"badrow.yaml: row 'Z' is not in p2.csv \(A, B\)"):
        load_spec("badrow")
    (tmp_path / "specs" / "nofield.yaml").write_text(base.replace("metric: rho_x100\n", "") + "rows: []\n")
    with pytest.raises(ConfigError, match="nofield.yaml: missing field 'metric'"):
        load_spec("nofield")
    with pytest.raises(ConfigError, match="no table spec .*nope.yaml; available: badrow, nofield, ok, tol, two"):
        load_spec("nope")


def _dataset(root: Path) -> Path:
    """smile: 2 train + 2 test videos; frown: 2 train, no test; squeeze_eyes: 1 test, no train."""
    import numpy as np

    from benchmark.data.prepared import LandmarkScheme, PreparedWriter

    w = PreparedWriter(root, card="synthetic", crop_size=8, landmark_scheme=LandmarkScheme("test_1", 1, {}),
                       backend={"name": "test"})
    layout = [("smile", "train"), ("smile", "train"), ("smile", "test"), ("smile", "test"),
              ("frown", "train"), ("frown", "train"), ("squeeze_eyes", "test")]
    for i, (e, split) in enumerate(layout):
        w.add_video(f"{e}_{i}", np.zeros((4, 8, 8, 3), np.uint8), np.full((4, 1, 2), 4.0, np.float32),
                    np.ones(4, bool), subject=f"s{i}", expression=e, label=i % 5, split=split, fps=25)
    w.finalize()
    return root


def test_expand_resolves_seeds_and_marks_missing_data(tmp_path):
    data = _dataset(tmp_path / "d")
    spec = replace(load_spec("table2"), columns=["smile", "frown", "squeeze_eyes", "clench_teeth"],
                   rows=[TableRow("USDL", "not_a_registered_method"),
                         TableRow("Dummy", "dummy", training={"epochs": 2}, in_paper=False)])
    cells, not_run = expand(spec, data, scale="tiny", seeds=[0, 3], runs_dir=tmp_path / "runs",
                            training={"batch_size": 1})
    assert [r.label for r in not_run] == ["USDL"]
    by_col = {c.column: c for c in cells}
    assert list(by_col) == ["smile", "frown", "squeeze_eyes", "clench_teeth"]
    assert all(c.row is spec.rows[1] for c in cells)
    smile = by_col["smile"]
    assert [r.config["seed"] for r in smile.runs] == [0, 3] and smile.no_data == ""
    assert {r.config["expression"] for r in smile.runs} == {"smile"}
    assert all(r.training.epochs == 2 and r.training.batch_size == 1 for r in smile.runs)
    assert len({r.run_id for r in smile.runs}) == 2
    assert all(r.folder.parent == tmp_path / "runs" for r in smile.runs)
    assert by_col["frown"].runs == [] and by_col["frown"].no_data == "2 train / 0 test videos"
    assert by_col["squeeze_eyes"].runs == [] and by_col["squeeze_eyes"].no_data == "0 train / 1 test videos"
    assert by_col["clench_teeth"].no_data == "0 train / 0 test videos"
    row_training = expand(spec, data, scale="tiny", seeds=[0], runs_dir=tmp_path / "runs",
                          training={"epochs": 5})[0][0].runs[0].training
    assert row_training.epochs == 5  # the command line's settings override the row's


def test_expand_passes_the_scale_and_the_rows_options_to_every_run(tmp_path):
    data = _dataset(tmp_path / "d")
    spec = replace(load_spec("table2"), columns=["smile"],
                   rows=[TableRow("USDL (sigma 2)", "usdl", options={"soft_label_sigma": 2.0})])
    for scale in ("tiny", "paper"):
        (cell,), _ = expand(spec, data, scale=scale, seeds=[0], runs_dir=tmp_path / "runs")
        (run,) = cell.runs
        assert run.config["scale"] == scale
        assert run.config["options"]["soft_label_sigma"] == 2.0 and run.method.options["soft_label_sigma"] == 2.0


def test_expand_find_recorded_substitutes_only_runs_without_their_own_result(tmp_path):
    data = _dataset(tmp_path / "d")
    spec = replace(load_spec("table2"), columns=["smile"], rows=[TableRow("Dummy", "dummy", in_paper=False)])
    runs_dir = tmp_path / "runs"
    own = expand(spec, data, scale="tiny", seeds=[0], runs_dir=runs_dir)[0][0].runs[0]
    recorded = _record(own, runs_dir, roles={"rgb": "ab"})  # as `reproduce --weights` leaves it
    found = expand(spec, data, scale="tiny", seeds=[0], runs_dir=runs_dir, find_recorded=True)[0][0].runs[0]
    assert found.folder == recorded  # its own folder has no result: the recorded run stands in
    assert expand(spec, data, scale="tiny", seeds=[0], runs_dir=runs_dir)[0][0].runs[0].folder == own.folder
    own.folder.mkdir(parents=True)
    (own.folder / "config.json").write_text(json.dumps(own.config))
    (own.folder / "result.json").write_text(json.dumps({"status": "ok"}))
    kept = expand(spec, data, scale="tiny", seeds=[0], runs_dir=runs_dir, find_recorded=True)[0][0].runs[0]
    assert kept.folder == own.folder  # a run with its own result is never replaced


def test_rows_keep_the_specs_column_order_in_a_large_table(tmp_path):
    # more than 16 records, where numpy's default (unstable) sort would reorder a row's cells
    cols = ["smile", "frown", "squeeze_eyes", "clench_teeth", "sit_at_rest"]
    rows = [TableRow(f"M{i}", f"m{i}", in_paper=False) for i in range(6)]
    spec = replace(load_spec("table2"), columns=cols, rows=rows)
    cells = [CellRuns(r, c, [_run(tmp_path, f"{r.label}-{c}", "ok", RHO_80)])
             for c in reversed(cols) for r in reversed(rows)]  # given in the opposite order
    df = build_table(spec, cells, [], "final")
    for r in rows:
        assert list(df[df["row"] == r.label]["column"]) == [*cols, "avg_corr", "avg_corr_fisher_z", "pooled"]


def test_a_table_of_rows_that_never_ran_has_numeric_nan_columns(tmp_path):
    spec = replace(load_spec("table2"), columns=["smile", "frown"],
                   rows=[TableRow("USDL", "usdl"), TableRow("Mine", "mine", in_paper=False)])
    mine = spec.rows[1]
    cells = [CellRuns(mine, c, [], no_data="0 train / 0 test videos") for c in spec.columns]
    for args, statuses in (((cells, [spec.rows[0]]), {"not implemented", "no data"}),
                           (([], [spec.rows[0]]), {"not implemented"}),  # nothing registered
                           ((cells, []), {"no data"})):
        df = build_table(spec, *args, "final")
        assert set(df["status"]) == statuses
        for name in ("reproduced", "std", "diff"):
            assert df[name].dtype == "float64" and df[name].isna().all(), (statuses, name)
