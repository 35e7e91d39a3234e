"""Small media helpers shared by the video and prepare tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from benchmark.paths import shared_dir

REAL_FACES = shared_dir() / "real_faces"
"""``../shared/real_faces``: three real face videos with no labels."""


def write_avi(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> Path:
    """Write RGB frames ``(H, W, 3)`` uint8 as an MJPG AVI with cv2.VideoWriter; returns ``path``."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path
