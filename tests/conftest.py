"""Shared fixtures: the real face videos, tiny prepared datasets, the tiny synthetic dataset."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import tqdm

from benchmark.data.prepared import LandmarkScheme, PreparedDataset, PreparedWriter

from _media import REAL_FACES, skip_or_fail_without

# No tqdm monitor thread in tests. The mutation tester (mutmut) forks a test process per
# mutant; a fork taken while the monitor thread holds tqdm's write lock leaves the child
# waiting on that lock for ever (seen with mutants that switch a progress bar on), and a
# child killed while holding the lock's inter-process semaphore then blocks every later one.
tqdm.tqdm.monitor_interval = 0
# And a plain thread lock instead of tqdm's default write lock, whose multiprocessing semaphore is
# shared by every forked child: a mutant's test process killed for its time-out while holding it
# blocked every later mutant's progress bar (seen as a run of time-outs in write_heatmap_cache).
tqdm.tqdm.set_lock(threading.RLock())


@pytest.fixture(scope="session")
def real_faces_dir() -> Path:
    """``../shared/real_faces`` (three real face videos, no labels); skipped if absent, failed if absent
    where ``$QAFE_BENCH_REQUIRE_SHARED`` is set (CI)."""
    skip_or_fail_without(REAL_FACES / "interview_man.mp4", "real face videos")
    return REAL_FACES


def make_prepared(root: Path, *, videos: int = 8, expressions=("smile",), size: int = 16, frames: int = 12,
                  seed: int = 0, card: str = "synthetic") -> PreparedDataset:
    """A small prepared dataset of random frames: subjects s0..s{videos-1}, the first
    half in train, labels cycling 0..4, one landmark per frame at the centre."""
    rng = np.random.default_rng(seed)
    w = PreparedWriter(root, card=card, crop_size=size, landmark_scheme=LandmarkScheme("test_1", 1, {}),
                       backend={"name": "test"})
    for e in expressions:
        for v in range(videos):
            n = frames + v
            fr = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
            lm = np.full((n, 1, 2), size / 2, np.float32)
            w.add_video(f"{e}_v{v}", fr, lm, np.ones(n, bool), subject=f"s{v}", expression=e, label=v % 5,
                        split="train" if v < videos // 2 else "test", fps=25)
    w.finalize()
    return PreparedDataset(root)


@pytest.fixture
def small_prepared(tmp_path) -> PreparedDataset:
    return make_prepared(tmp_path / "small")


@pytest.fixture(scope="session")
def synthetic_tiny(tmp_path_factory) -> Path:
    """The ``tiny`` synthetic dataset (seed 0), generated once per test session."""
    from benchmark.data.synthetic import generate_synthetic

    out = tmp_path_factory.mktemp("synthetic") / "tiny"
    generate_synthetic(out, scale="tiny", seed=0)
    return out
