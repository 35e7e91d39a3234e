"""pytest-benchmark: vectorised heatmap rendering vs the literal per-landmark reference.

80 frames x 73 landmarks at 256x256 (one QAFE-Net clip).  The suite runs with
``--benchmark-disable`` by default, so each benchmark executes once as a plain
test (and checks equality); ``pytest tests/test_bench_heatmaps.py
--benchmark-enable`` measures.  ``scripts/bench_heatmaps.py`` prints the ratio.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from benchmark.data.heatmaps import render_heatmap_frames


def _load_reference():
    # the references live in test_heatmaps.py; load it by path (works whether or not tests/ is a package)
    path = Path(__file__).with_name("test_heatmaps.py")
    spec = importlib.util.spec_from_file_location("_qafe_heatmap_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


REF = _load_reference()
T, K, S = 80, 73, 256


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(2023)
    pts = REF.random_points(rng, T, K, S, S)
    frames = rng.integers(0, 256, (T, S, S, 3), dtype=np.uint8)
    return pts, frames


@pytest.fixture(scope="module")
def official_reference(clip):
    return REF.reference_official(clip[0], (S, S))


@pytest.mark.benchmark(group="heatmaps-official-80x73x256")
def test_bench_official_vectorised(benchmark, clip, official_reference):
    out = benchmark(render_heatmap_frames, clip[0], size=S, mode="official")
    np.testing.assert_array_equal(out, official_reference)


@pytest.mark.benchmark(group="heatmaps-official-80x73x256")
def test_bench_official_reference(benchmark, clip, official_reference):
    out = benchmark(REF.reference_official, clip[0], (S, S))
    np.testing.assert_array_equal(out, official_reference)


@pytest.mark.benchmark(group="heatmaps-paper-80x73x256")
def test_bench_paper_vectorised(benchmark, clip):
    out = benchmark(render_heatmap_frames, clip[0], size=S, mode="paper", frames=clip[1])
    assert out.shape == (T, S, S, 3) and (out <= clip[1]).all()


@pytest.mark.benchmark(group="heatmaps-paper-80x73x256")
def test_bench_paper_reference(benchmark, clip):
    out = benchmark(REF.reference_paper, clip[0], clip[1], (S, S))
    np.testing.assert_array_equal(out, render_heatmap_frames(clip[0], size=S, mode="paper", frames=clip[1]))
