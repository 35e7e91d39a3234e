"""The whole paper from one command, end to end at the smallest scale that still exercises every table:
``qafe-bench reproduce all`` on a small PFED5-like and a small UNBC-like synthetic dataset (one pass over
the training videos: plumbing, not learning). Marked ``paper``: `.ci/run` runs it after the test
suite (`tox -e test -- -m paper`), about 6 minutes on 2 cores."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.data.synthetic import generate_synthetic
from benchmark.data.synthetic_unbc import generate_synthetic_unbc

pytestmark = pytest.mark.paper

EXPRESSIONS = ["sit_at_rest", "smile", "frown", "squeeze_eyes", "clench_teeth"]


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    root = tmp_path_factory.mktemp("paper")
    pfed5, unbc = root / "pfed5", root / "unbc"
    generate_synthetic(pfed5, scale="tiny", seed=11, subjects=6, train_subjects=3, videos_per_expression=1)
    generate_synthetic_unbc(unbc, scale="tiny", seed=5, sequences_per_subject=1, max_length=60, mean_length=52.0)
    argv = ["reproduce", "all", "--dataset", str(pfed5), str(unbc), "--scale", "tiny", "--runs-dir",
            str(root / "runs"), "--output-root", str(root), "--quiet", "--train", "epochs=1"]
    rc = main(argv)
    return {"rc": rc, "root": root, "argv": argv}


def _report(root: Path, card: str) -> Path:
    [folder] = list((root / "reports" / "output").glob(f"{card}-*-tiny"))
    return folder


def test_every_table_is_rendered_with_every_runnable_cell(paper):
    assert paper["rc"] == 0
    out = _report(paper["root"], "synthetic")
    for k in (1, 2, 4, 5, 6, 7, 8, 9, 10):
        assert (out / f"table{k}.html").is_file() and (out / f"table{k}.csv").is_file(), k
    sota = pd.read_csv(out / "sota_pfed5.csv").set_index("row")
    assert sota.loc["TraMP-Former", EXPRESSIONS].notna().all() and sota.loc["TraMP-Former", "avg_corr_paper"] == 71.86
    assert sota.loc["S2D", "avg_corr_paper"] == 48.39 and pd.isna(sota.loc["S2D", "smile"])
    lb = pd.read_csv(out / "leaderboard.csv")
    assert set(lb.loc[lb["kind"] == "run here", "row"]) >= {"QAFE-Net", "TraMP-Former", "IAL-GCA"}
    for k in (4, 5, 6, 7, 8, 9, 10):
        long = pd.read_csv(out / f"table{k}_long.csv")
        cells = long[long["column"].isin(EXPRESSIONS) & (long["selection"] == "final")]
        assert set(cells["status"]) == {"ok"}, (k, set(cells["status"]))
        # a cell has a number unless its predictions are constant (rho undefined): the classification rows
        # may predict one class after one epoch, and the dummy always predicts the training mean
        defined = cells[~cells["row"].isin(["Cross Entropy", "Focal", "Dummy (training mean)"])]
        assert defined["reproduced"].notna().mean() > 0.8, k
    unbc = _report(paper["root"], "synthetic_unbc")
    t3 = pd.read_csv(unbc / "table3.csv").set_index("row")
    assert t3.loc["QAFE-Net, summation", ["mae", "rmse"]].notna().all()


def test_each_distinct_configuration_ran_once(paper):
    runs = [p.parent.name for p in (paper["root"] / "runs").glob("*/result.json")]
    # PFED5: 140 distinct configurations x expressions (Table 2's 35: C3D-LSTM is refused without c3d.pickle,
    # 100 ablation runs, 5 TraMP-Former runs of the state-of-the-art table); UNBC: 7 configurations at the tiny
    # scale (the 80- and 144-frame rows share their clip) x 5 folds
    assert len(runs) == 140 + 35
    assert len(set(runs)) == len(runs)


def test_table1_counts_the_synthetic_data(paper):
    t1 = pd.read_csv(_report(paper["root"], "synthetic") / "table1.csv")
    total = t1[t1["split"] == "total"].iloc[0]
    assert total["clips"] == 6 * 5 and total["clips_paper"] == 2811


def test_reproducing_again_trains_nothing_and_renders_the_same_numbers(paper, capsys):
    root = paper["root"]
    before = {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/result.json")}
    tables = {p.name: p.read_text() for p in _report(root, "synthetic").glob("table*.csv")}
    capsys.readouterr()
    assert main(paper["argv"]) == 0
    out = capsys.readouterr().out
    assert "plan: 175 distinct run(s), 175 finished, 0 to train" in out
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").glob("*/result.json")} == before
    assert {p.name: p.read_text() for p in _report(root, "synthetic").glob("table*.csv")} == tables
