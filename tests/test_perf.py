"""``qafe-bench perf``'s plumbing on a small clip (the timings themselves: ``tox -e bench``)."""

from __future__ import annotations

import math

import pytest

from benchmark.perf import format_line, heatmap_case, heatmap_stage, median_seconds


def test_heatmap_stage_checks_identity_and_divides_the_medians():
    rows = heatmap_stage(repeats=1, frames=3, landmarks=9, size=40)
    assert [r["stage"] for r in rows] == ["heatmaps (official)", "heatmaps (paper)"]
    for r in rows:
        assert r["check"] == "identical output: True; 1 thread(s)"  # 3 frames: one block of 8
        assert math.isclose(r["ratio"], r["ours"] / r["baseline"], rel_tol=1e-12)  # throughputs: 1 / time
        line = format_line(r)
        assert f"ratio {r['ratio']:.1f}x (target >= 20x)" in line and "clips/s" in line


def test_heatmap_case_rejects_an_unknown_mode_and_median_is_the_middle_time(monkeypatch):
    import benchmark.perf as perf

    with pytest.raises(ValueError, match="mode must be 'official' or 'paper'"):
        heatmap_case("points")
    durations = iter([5.0, 1.0, 3.0, 2.0])  # a warm-up call, then three timed ones
    now = [100.0]
    monkeypatch.setattr(perf.time, "perf_counter", lambda: now[0])  # a fake clock each call advances
    calls = []

    def fn():
        calls.append(1)
        now[0] += next(durations)

    # the warm-up's 5 s is not timed; the median of 1, 3, 2 is 2 (their mean would be 2, too, with the
    # warm-up 2.75; the first timed value 1, the last 2: the second case below tells them apart)
    assert median_seconds(fn, repeats=3, warmup=1) == 2.0 and len(calls) == 4
    durations = iter([9.0, 4.0, 1.0])
    assert median_seconds(fn, repeats=2, warmup=1) == 2.5  # even count: the mean of the middle two


def test_format_line_without_baseline_prints_dashes_and_no_ratio():
    r = {"stage": "prepare (mediapipe)", "unit": "frames/s", "ours": 201.4, "baseline": float("nan"),
         "ratio": float("nan"), "target": 100.0, "check": "450 frames"}
    line = format_line(r)
    assert "201.40 frames/s" in line and "baseline        -" in line and "ratio" not in line
    assert "(target >= 100 frames/s)" in line
