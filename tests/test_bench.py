"""pytest-benchmark speed measurements of each stage (marker ``benchmark``: ``tox -e bench``).

Excluded from the default test run (``-m "not ... and not benchmark"``); ``tox -e bench`` runs them
with ``--benchmark-enable`` and then ``qafe-bench perf``, which prints the ratios against the
baselines measured in the same process. Each benchmark also checks its output (equal arrays, shapes,
finite loss), so a fast wrong path fails here too. The cases are :mod:`benchmark.perf`'s.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from benchmark.perf import LoadingCase, heatmap_case, train_step_case

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module", params=["official", "paper"])
def heatmaps(request):
    ours, base = heatmap_case(request.param)
    return request.param, ours, base, base()


def test_bench_heatmaps_vectorised(benchmark, heatmaps):
    benchmark.group = f"heatmaps-{heatmaps[0]}-80x73x256"
    out = benchmark(heatmaps[1])
    np.testing.assert_array_equal(out, heatmaps[3])


def test_bench_heatmaps_per_landmark_reference(benchmark, heatmaps):
    benchmark.group = f"heatmaps-{heatmaps[0]}-80x73x256"
    out = benchmark.pedantic(heatmaps[2], rounds=3, iterations=1)
    np.testing.assert_array_equal(out, heatmaps[3])


@pytest.fixture(scope="module")
def loading(tmp_path_factory):
    return LoadingCase(tmp_path_factory.mktemp("loading"))


@pytest.mark.parametrize("fmt", ["npy", "jpg"])
def test_bench_loading_prepared(benchmark, loading, fmt):
    benchmark.group = "loading-one-pfed5-training-sample"
    item = benchmark(loading.ours[fmt])
    assert item["rgb"].shape == (3, 80, 224, 224) and item["heatmap"].shape == (3, 80, 56, 56)
    assert item["rgb"].dtype == torch.float32 and 0 <= float(item["heatmap"].min()) <= float(item["heatmap"].max()) <= 1


def test_bench_loading_original_pil_per_frame(benchmark, loading):
    benchmark.group = "loading-one-pfed5-training-sample"
    rgb, heat = benchmark(loading.baseline)
    assert rgb.shape == (3, 80, 224, 224) and heat.shape == (3, 80, 56, 56)


@pytest.mark.parametrize("precision", ["float32", "bf16"])
def test_bench_train_step_qafe_net(benchmark, precision):
    benchmark.group = "train-step-qafe-net-paper-size-batch1-cpu"
    step, gflop = train_step_case(precision)
    assert 340 < gflop < 370  # the official modules' ~356.7 GFLOP forward per sample
    loss = benchmark.pedantic(step, rounds=3, iterations=1, warmup_rounds=1)
    assert math.isfinite(float(loss))


def test_bench_prepare_mediapipe(benchmark, tmp_path):
    from benchmark.perf import prepare_stage

    benchmark.group = "prepare-real-faces"
    rows = benchmark.pedantic(prepare_stage, kwargs={"max_frames": 60}, rounds=1, iterations=1)
    # every real video prepared up to the frame cap (3 videos x 60 frames), and a finite rate of them
    assert rows[0]["check"].startswith("180 frames of 3 videos in "), rows[0]["check"]
    assert math.isfinite(rows[0]["ours"]) and rows[0]["ours"] > 0, rows[0]
