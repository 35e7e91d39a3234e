"""End to end through the command line on synthetic UNBC-like data: Table 3 reproduced over
5 subject-wise folds, its cells recomputed from the fold runs' predictions (pooled and per
fold), published-only rows, and a re-render that trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.data.synthetic_unbc import generate_synthetic_unbc

pytestmark = pytest.mark.slow

# the fast suite runs a subset of Table 3's rows (every row at the tiny scale's training: `tox -e demo-unbc`):
# the two clip lengths of one baseline, Table 3's best QAFE-Net, the floor, and rows quoted from other papers
RUN_ROWS = ["R3D-18 (80 frames)", "R3D-18 (144 frames)", "QAFE-Net, summation", "Dummy (training mean)"]
QUOTED_ROWS = ["Ting et al. (R3D, 66 landmarks)", "Szczapa et al. TAFFC'22 (RGB)", "Szczapa et al. TAFFC'22 (landmarks)"]


@pytest.fixture(scope="module")
def table3_synthetic(tmp_path_factory):
    """Table 3 on a small synthetic UNBC-like dataset (25 subjects, one short sequence each, one pass
    over the training sequences: the plumbing of every fold run; learning is the learning check's)."""
    root = tmp_path_factory.mktemp("e2e-unbc")
    data = root / "data"
    generate_synthetic_unbc(data, scale="tiny", seed=5, sequences_per_subject=1, max_length=60, mean_length=52.0)
    out = root / "report"
    argv = ["reproduce", "table3", "--dataset", str(data), "--scale", "tiny", "--runs-dir", str(root / "runs"),
            "--out", str(out), "--quiet", "--no-costs", "--train", "epochs=1", "--train", "reps_per_epoch=1",
            "--rows", *reversed(RUN_ROWS), *QUOTED_ROWS]
    rc = main(argv)
    return {"rc": rc, "root": root, "data": data, "out": out, "argv": argv}


def test_reproduce_table3_fills_every_runnable_row_and_quotes_the_others(table3_synthetic):
    assert table3_synthetic["rc"] == 0
    wide = pd.read_csv(table3_synthetic["out"] / "table3.csv").set_index("row")
    for row in RUN_ROWS:
        assert np.isfinite(wide.loc[row, ["mae", "rmse", "mae_folds_mean", "rmse_folds_mean"]]).all(), row
        assert wide.loc[row, "rmse"] >= wide.loc[row, "mae"]  # RMSE >= MAE for any errors
    quoted = wide.loc["Ting et al. (R3D, 66 landmarks)"]
    assert np.isnan(quoted["mae"]) and (quoted["mae_paper"], quoted["rmse_paper"]) == (2.44, 3.15)
    assert wide.loc["QAFE-Net, summation", "mae_paper"] == pytest.approx(1.57)
    long = pd.read_csv(table3_synthetic["out"] / "table3_long.csv")
    assert set(long.loc[long["row"].str.startswith("Szczapa"), "status"]) == {"published only"}
    ran = long[long["row"].isin(RUN_ROWS)]
    assert set(ran["status"]) == {"ok"} and set(ran["n_partitions"]) == {5}


def test_rows_names_the_rows_and_refuses_unknown_ones(table3_synthetic, capsys):
    wide = pd.read_csv(table3_synthetic["out"] / "table3.csv")
    assert wide["row"].tolist() == [*QUOTED_ROWS, *RUN_ROWS]  # the spec's order, not the command line's
    argv = [a if a != "QAFE-Net, summation" else "QAFE-Net, sum" for a in table3_synthetic["argv"]]
    assert main(["report" if a == "reproduce" else a for a in argv]) == 2
    assert "table3 has no row 'QAFE-Net, sum'; its rows: " in capsys.readouterr().err


def test_table3_cells_equal_numpy_on_the_fold_runs_predictions(table3_synthetic):
    long = pd.read_csv(table3_synthetic["out"] / "table3_long.csv")
    cell = long[(long["row"] == "QAFE-Net, summation") & (long["column"] == "rmse")
                & (long["selection"] == "final")].iloc[0]
    runs = [Path(table3_synthetic["root"]) / "runs" / name for name in cell["runs"].split(";")]
    preds = [pd.read_csv(r / "predictions.csv") for r in runs]
    assert sorted(p["split"].iloc[0] for p in preds) == [f"fold{k}" for k in range(1, 6)]
    assert all("-pain-fold" in r.name for r in runs)
    pool = pd.concat(preds)
    assert sorted(pool["video_id"]) == sorted(pd.read_csv(table3_synthetic["data"] / "videos.csv")["video_id"])
    err = pool["prediction"].to_numpy() - pool["label"].to_numpy()
    assert cell["reproduced"] == pytest.approx(np.sqrt(np.mean(err ** 2)))
    per_fold = [np.sqrt(np.mean((p["prediction"] - p["label"]) ** 2)) for p in preds]
    assert cell["partition_mean"] == pytest.approx(np.mean(per_fold))
    assert cell["partition_std"] == pytest.approx(np.std(per_fold, ddof=1))
    # every fold run records the fold file it was split by
    cfg = json.loads((runs[0] / "config.json").read_text())
    assert cfg["protocol"] == "unbc_5fold" and len(cfg["protocol_info"]["folds_sha256"]) == 64


def test_table3_html_says_protocol_not_identical_and_rerenders_without_training(table3_synthetic):
    html = (table3_synthetic["out"] / "table3.html").read_text()
    assert "protocol not identical" in html and "published only" in html and "MAE \u2193" in html
    assert "Avg. Corr." not in html
    root = Path(table3_synthetic["root"])
    before = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/result.json")}
    # 80- and 144-frame rows share their runs at the tiny scale (same clip after shrinking): 3 configs x 5 folds
    assert len(before) == 3 * 5
    assert main(["report" if a == "reproduce" else a for a in table3_synthetic["argv"]]) == 0
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/result.json")} == before
