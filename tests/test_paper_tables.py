"""The whole paper as table specs: Table 1 from the data, Tables 4-10 as QAFE-Net overrides that share
runs where their configurations are equal, the published-table audit, and ``reproduce all``'s plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cards import load_card
from benchmark.cli import main
from benchmark.data.prepared import PreparedDataset
from benchmark.errors import ConfigError, DataError
from benchmark.statistics import compare_statistics, dataset_statistics
from benchmark.tables import audit_published, available_tables, expand, load_spec, published_value
from methods.qafe_net import QAFENetMethod

ABLATIONS = ["table4", "table5", "table6", "table7", "table8", "table9", "table10"]


# ------------------------------------------------------------------------------------------ Table 1
def test_table1_equals_an_independent_count_of_labels_and_lengths(synthetic_tiny):
    """Counts per (split, expression, severity) and lengths read from the frame files themselves,
    not from videos.csv's num_frames."""
    ds = PreparedDataset(synthetic_tiny)
    stats = dataset_statistics(ds, load_card(ds.card_name)).set_index(["split", "expression"])
    v = ds.videos.reset_index(drop=True)
    lengths = {vid: np.load(Path(synthetic_tiny) / "frames" / f"{vid}.npy", mmap_mode="r").shape[0]
               for vid in v["video_id"]}
    for (split, expr), grp in v.groupby(["split", "expression"]):
        row = stats.loc[(split, expr)]
        for k in range(5):
            assert row[f"severity_{k}"] == int((grp["label"] == k).sum())
        n = [lengths[x] for x in grp["video_id"]]
        assert (row["min_len"], row["max_len"], row["clips"]) == (min(n), max(n), len(grp))
        assert row["avg_len"] == pytest.approx(sum(n) / len(n))
    total = stats.loc[("total", "all")]
    assert total["clips"] == len(v) == sum(stats.loc[stats.index != ("total", "all"), "clips"])
    assert total["max_len"] == max(lengths.values()) and total["min_len"] == min(lengths.values())
    # rows in the paper's order: train expressions, test expressions, total
    assert list(stats.index)[:2] == [("train", "sit_at_rest"), ("train", "smile")]
    assert list(stats.index)[-1] == ("total", "all")


def test_table1_compared_with_the_published_table_cell_by_cell():
    spec = load_spec("table1")
    pub = spec.published
    # the published table compared with itself: every cell equal; avg_len compared after rounding
    ours = pub.assign(avg_len=pub["avg_len"] + 0.4)
    cmp = compare_statistics(ours, pub)
    assert cmp["equal"].all() and len(cmp) == len(pub) * 9
    off = compare_statistics(pub.assign(clips=pub["clips"] + 1), pub)
    assert set(off.loc[off["column"] == "clips", "diff"]) == {1.0}
    assert not off.loc[off["column"] == "clips", "equal"].any()


def test_table1_refuses_a_label_outside_the_cards_integers(small_prepared):
    card = load_card("synthetic")
    videos = small_prepared.videos.copy()
    videos.loc[videos.index[0], "label"] = 2.5
    small_prepared.videos = videos
    with pytest.raises(DataError, match=r"has label 2\.5, not one of \[0, 1, 2, 3, 4\]"):
        dataset_statistics(small_prepared, card)


# ------------------------------------------------------------------------------------ Tables 4-10
def test_every_paper_table_has_a_spec_in_paper_order():
    assert available_tables() == [f"table{k}" for k in range(1, 11)] + ["sota_pfed5"]
    assert load_spec("table1").kind == "statistics"


@pytest.mark.parametrize("table_id", ABLATIONS)
def test_ablation_rows_are_qafe_net_overrides_with_their_published_numbers(table_id):
    """Every paper row of Tables 4-10 is QAFE-Net with valid option overrides (never model code), and
    its five published values and printed average are found in the published CSV."""
    spec = load_spec(table_id)
    assert spec.protocol == "pfed5" and spec.metric == "rho_x100"
    paper_rows = [r for r in spec.rows if r.in_paper]
    assert len(paper_rows) == len(spec.published)
    for row in paper_rows:
        assert row.method == "qafe_net"
        QAFENetMethod(row.options)  # valid options and values
        vals = [published_value(spec, row, c) for c in spec.columns]
        assert all(np.isfinite(vals)) and np.isfinite(published_value(spec, row, "avg_corr"))
    # the paper's model (65.35 average) is exactly one row, with default options, in every table but 9
    best = [r for r in paper_rows if published_value(spec, r, "avg_corr") == pytest.approx(65.35)]
    if table_id == "table9":
        assert not best
    else:
        assert len(best) == 1 and QAFENetMethod(best[0].options).options == QAFENetMethod().options
        assert not best[0].pretrained


def test_published_audit_finds_the_three_misprinted_averages():
    found = {t: [(a["row"], a["printed"]) for a in audit_published(load_spec(t))]
             for t in ["table2", *ABLATIONS]}
    assert found.pop("table7") == [("2 blocks", 63.72), ("4 blocks", 64.11)]
    assert found.pop("table8") == [("Heatmap Stream", 63.38)]
    assert not any(found.values())


def test_sigma_NA_is_read_as_text_not_missing():
    spec = load_spec("table10")
    row = spec.rows[0]
    assert row.options == {"heatmap_mode": "points"}
    assert published_value(spec, row, "sit_at_rest") == pytest.approx(49.81)
    # Table 4's positions-only row has the same published numbers: the same configuration
    t4 = load_spec("table4")
    assert [published_value(t4, t4.rows[0], c) for c in t4.columns] == \
        [published_value(spec, row, c) for c in spec.columns]


def test_a_row_can_only_drop_a_pretrained_role(tmp_path, monkeypatch):
    import benchmark.tables as tables

    (tmp_path / "specs").mkdir()
    (tmp_path / "published").mkdir()
    (tmp_path / "published" / "t.csv").write_text("input,smile\nA,1.0\n")
    (tmp_path / "specs" / "tx.yaml").write_text(
        "id: tx\npaper_table: 4\ntitle: t\ndataset_protocol: pfed5\npublished: t.csv\npublished_key: input\n"
        "metric: rho_x100\ncolumns: [smile]\nrows:\n  - {label: A, method: qafe_net, pretrained: {heatmap: x.pth}}\n")
    monkeypatch.setattr(tables, "specs_dir", lambda: tmp_path / "specs")
    monkeypatch.setattr(tables, "published_dir", lambda: tmp_path / "published")
    with pytest.raises(ConfigError, match="a row can only drop a role"):
        tables.load_spec("tx")


# ----------------------------------------------------------------------------- shared runs, sigma
def _folders(spec_id, data, runs, weights=None):
    cells, _ = expand(load_spec(spec_id), data, scale="tiny", seeds=[0], runs_dir=runs, weights=weights)
    return {(c.row.label, c.column): c.runs[0].folder for c in cells if c.runs}


def test_tables_share_one_run_per_distinct_configuration(synthetic_tiny, tmp_path):
    """The paper's QAFE-Net is one run per expression whichever table asks for it (Table 2, the BMC row
    of Table 6, the 3-block row of Table 7, ...); Table 10's N/A row is Table 4's positions-only row."""
    f = {t: _folders(t, synthetic_tiny, tmp_path) for t in ["table2", *ABLATIONS]}
    for expr in ("smile", "clench_teeth"):
        paper = f["table2"][("QAFE-Net", expr)]
        for table, row in [("table4", "Heatmaps (SlowOnly pretrained NTU60-XSub)"), ("table5", "Cross-Fusion"),
                           ("table6", "BMC"), ("table7", "3 blocks"), ("table8", "Concat Stream + CONV1D"),
                           ("table9", "Regression (BMC, the paper's model)"), ("table10", "sigma 1")]:
            assert f[table][(row, expr)] == paper, (table, row)
        assert f["table10"][("N/A (positions only)", expr)] == f["table4"][("Landmarks (positions only; no Gaussian)", expr)]
        assert f["table2"][("Dummy (training mean)", expr)] == f["table6"][("Dummy (training mean)", expr)]
    # every other row is a configuration of its own
    distinct = {folder for table in f.values() for folder in table.values()}
    # Table 2 (C3D-LSTM refused without c3d.pickle: 7 rows) + positions + 19 ablation rows + concat_channels
    assert len(distinct) == 5 * (7 + 1 + 2 + 4 + 4 + 3 + 2 + 3 + 1)
    cells, _ = expand(load_spec("table2"), synthetic_tiny, scale="tiny", seeds=[0], runs_dir=tmp_path)
    assert {c.row.label for c in cells if c.refused} == {"C3D-LSTM"}
    assert all("c3d.pickle" in c.refused and not c.runs for c in cells if c.refused)


def test_sigma_changes_the_run_id_and_the_heatmap_volumes(synthetic_tiny, tmp_path):
    from benchmark.data.heatmaps import cached_heatmap_frames

    f = _folders("table10", synthetic_tiny, tmp_path)
    ids = {f[(f"sigma {s}", "smile")].name.rsplit("-", 1)[1] for s in (1, 3, 5, 7)}
    assert len(ids) == 4
    ds = PreparedDataset(synthetic_tiny)
    vid = ds.videos.index[0] if ds.videos.index.name == "video_id" else ds.videos["video_id"].iloc[0]
    idx = np.arange(4)
    vols = {s: cached_heatmap_frames(ds, vid, idx, size=48, mode="paper", sigma=s) for s in (1.0, 3.0)}
    assert vols[1.0].shape == vols[3.0].shape and not np.array_equal(vols[1.0], vols[3.0])


def test_scratch_row_drops_only_the_heatmap_file_when_weights_are_given(synthetic_tiny, tmp_path):
    """Table 4: with both released files given, 'SlowOnly trained from scratch' loads the RGB file
    only; without --weights it is the same configuration as the pretrained row."""
    rgb, hm = tmp_path / "FormerDFER-DFEWset1-model_best.pth", tmp_path / "pose_only.pth"
    rgb.write_bytes(b"rgb weights")
    hm.write_bytes(b"heatmap weights")
    cells, _ = expand(load_spec("table4"), synthetic_tiny, scale="tiny", seeds=[0], runs_dir=tmp_path / "r",
                      weights={"qafe_net": {"rgb": rgb, "heatmap": hm}})
    by_row = {c.row.label: c.runs[0] for c in cells if c.column == "smile" and c.runs}
    scratch = by_row["Heatmaps (SlowOnly trained from scratch)"].config["pretrained"]
    pretrained = by_row["Heatmaps (SlowOnly pretrained NTU60-XSub)"].config["pretrained"]
    assert set(scratch) == {"rgb"} and set(pretrained) == {"rgb", "heatmap"}
    assert scratch["rgb"] == pretrained["rgb"]
    plain = _folders("table4", synthetic_tiny, tmp_path / "r")
    assert plain[("Heatmaps (SlowOnly trained from scratch)", "smile")] == \
        plain[("Heatmaps (SlowOnly pretrained NTU60-XSub)", "smile")]


# -------------------------------------------------------------------------------- reproduce all
def test_reproduce_all_prints_the_plan_and_names_what_it_skips(synthetic_tiny, tmp_path, capsys):
    """``report all`` on a PFED5-like dataset alone: the plan counts each distinct run once, Table 3 is
    skipped with the reason, Table 1 is rendered (no runs needed) and nothing trains."""
    rc = main(["report", "all", "--dataset", str(synthetic_tiny), "--scale", "tiny", "--runs-dir",
               str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    # 135 for Tables 2, 4-10 (C3D-LSTM refused without c3d.pickle); 5 TraMP-Former (sota_pfed5)
    assert "plan: 140 distinct run(s), 0 finished" in out
    assert "sota_pfed5: 40 run(s) on" in out and "(0 finished, 5 not in an earlier table)" in out
    assert "table2: row 'C3D-LSTM' refused, no number made: method 'c3d_lstm' assumes the released c3d.pickle" in out
    assert "table6: 30 run(s) on" in out and "(0 finished, 20 not in an earlier table)" in out
    assert "skipped: table3 runs under protocol 'unbc_5fold'" in out and "add synthetic-unbc" in out
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").glob("*/result.json"))
    t1 = pd.read_csv(tmp_path / "out" / "table1.csv")
    assert t1.iloc[-1]["split"] == "total" and t1.iloc[-1]["clips_paper"] == 2811
    html = (tmp_path / "out" / "table7.html").read_text()
    assert "Audit of the published table" in html and "63.72" in html
    index = (tmp_path / "out" / "index.html").read_text()
    assert all(f'href="table{k}.html"' in index for k in (1, 2, 4, 5, 6, 7, 8, 9, 10))
    assert 'href="sota_pfed5.html"' in index and 'href="leaderboard.html"' in index


def test_reproduce_refuses_a_table_without_a_dataset_of_its_protocol(synthetic_tiny, tmp_path, capsys):
    argv = ["report", "table3", "--dataset", str(synthetic_tiny), "--runs-dir", str(tmp_path)]
    assert main(argv) == 2
    assert "table3 runs under protocol 'unbc_5fold'" in capsys.readouterr().err
    assert main(["report", "all", "--rows", "BMC", "--dataset", str(synthetic_tiny), "--runs-dir", str(tmp_path)]) == 2
    assert "--rows selects rows of one table" in capsys.readouterr().err
