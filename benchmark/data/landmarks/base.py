"""The face + landmark backend interface.

A backend turns one RGB frame into the face's bounding box and landmark points
in that frame's pixel coordinates, or ``None`` when it finds no face. What
happens next (cropping, filling frames without a face, storing) is the same for
every backend (:mod:`benchmark.data.landmarks.crop`, :mod:`benchmark.data.prepare`).

Coordinates: pixels, x to the right and y down, origin at the top-left corner of
the top-left pixel's centre (the OpenCV / numpy index convention: pixel ``(r, c)``
has centre ``(x=c, y=r)``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np

from ..prepared import LandmarkScheme


class Detection(NamedTuple):
    """One face found in one frame.

    Attributes:
        bbox: ``(4,)`` float64 ``(x1, y1, x2, y2)`` in frame pixels (may extend
            past the frame border).
        points: ``(K, 2)`` float32 ``(x, y)`` in frame pixels, K = the backend's
            ``scheme.num_points``.
        score: detector confidence in ``[0, 1]``, or None when the backend has none.
    """

    bbox: np.ndarray
    points: np.ndarray
    score: float | None = None


class LandmarkBackend(ABC):
    """Base class of face + landmark backends.

    Subclasses set :attr:`name` and :attr:`scheme` and implement :meth:`detect`.
    A backend may keep state between the frames of one video (MediaPipe's
    tracking mode); :meth:`reset` is called at the start of every video.

    Attributes:
        name: registry name (``mediapipe``, ``insightface``).
        scheme: the landmark points it returns (:class:`~benchmark.data.prepared.LandmarkScheme`).
    """

    name: str = "base"
    scheme: LandmarkScheme

    @abstractmethod
    def detect(self, frame: np.ndarray) -> Detection | None:
        """Find the face in one frame.

        Args:
            frame: ``(H, W, 3)`` uint8 RGB.

        Returns:
            A :class:`Detection` (bbox and ``(K, 2)`` points in pixels) or None
            when no face is found.
        """

    def reset(self) -> None:
        """Forget state carried between frames (called at the start of each video)."""

    def close(self) -> None:
        """Release models and sessions."""

    def provenance(self) -> dict:
        """What produced the landmarks, for the prepared dataset's manifest.

        Returns:
            ``{"name", "version", "scheme", "model_files": [{"file", "sha256"}], "settings": {...}}``
            plus backend-specific fields.
        """
        return {"name": self.name, "version": None, "scheme": self.scheme.name, "model_files": [], "settings": {}}

    def __enter__(self) -> "LandmarkBackend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @staticmethod
    def _check_frame(frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"a frame must be (H, W, 3) uint8 RGB, got {frame.shape} {frame.dtype}")
        return frame

