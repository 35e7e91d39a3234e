"""Small media helpers shared by the video and prepare tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmark.paths import shared_dir

REAL_FACES = shared_dir() / "real_faces"
"""``../shared/real_faces``: three real face videos with no labels."""

#: Set by .ci/run (and passed through tox): a missing shared folder FAILS the tests that need it.
REQUIRE_SHARED = "QAFE_BENCH_REQUIRE_SHARED"


def skip_or_fail_without(path: Path, what: str) -> None:
    """Skip a test whose shared input ``path`` is absent (a checkout without ``../shared``), or fail
    it loudly where ``$QAFE_BENCH_REQUIRE_SHARED`` is set (CI: such a test must run, not skip)."""
    import os

    import pytest

    if path.exists():
        return
    msg = f"{what} not found at {path}"
    if os.environ.get(REQUIRE_SHARED):
        pytest.fail(f"{msg}, and {REQUIRE_SHARED} is set: CI needs ../shared beside the checkout")
    pytest.skip(msg)


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB frames ``(H, W, 3)`` uint8 as an MJPG AVI with cv2.VideoWriter; returns ``path``."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
