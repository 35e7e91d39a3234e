"""Face crops and crop-space landmarks; filling frames without a face.

Official crop (default, ``mode="bbox"``), after QAFE-Net
``dataset/PAIN2landmarks_insightface.py`` (shuchaoduan/QAFE-Net):

1. the detector box ``(x1, y1, x2, y2)`` is rounded to whole pixels
   (``np.round``, half to even) and negative starts are set to 0; ends past the
   frame are cut at the frame border (the official numpy slice does this);
2. the crop is ``frame[y1:y2, x1:x2]`` (NOT made square), resized to ``S x S``
   with ``cv2.resize`` bilinear interpolation (the aspect ratio is distorted when
   the box is not square);
3. landmarks: minus ``(x1, y1)``, clamped into the un-resized crop
   (``0..w-1``, ``0..h-1``), then scaled by ``(S / w, S / h)`` (the
   albumentations ``Resize`` keypoint rule, no half-pixel shift).
   The official script also rounds the points to whole pixels before and after
   scaling; here that is ``round_points=True``, off by default (stored points
   keep sub-pixel precision; round them when rendering if you need the exact
   official integers).

``mode="square"`` (no distortion, an option beyond the paper): a square of side
``round(max(w, h) * (1 + margin))`` pixels centred on the box centre; parts
outside the frame are filled with black; landmarks are mapped and clamped the
same way.

Frames without a face (backend returned None, or a box with no pixel inside the
frame) are flagged ``face_found=False``; their box and landmarks are
interpolated linearly in time between the nearest earlier and later frames with
a face, and copied from the nearest frame with a face before the first / after
the last detection (:func:`fill_missing`). A video with no face in any frame
raises :class:`~benchmark.errors.NoFaceError`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from ...errors import ConfigError, NoFaceError
from .base import Detection

CROP_MODES = ("bbox", "square")
_INTERPOLATIONS = {"linear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA, "cubic": cv2.INTER_CUBIC}


@dataclass(frozen=True)
class CropSpec:
    """How a face crop is made.

    Attributes:
        size: S, the output crop side in pixels (256 in the paper).
        mode: ``bbox`` (official: the detector box, stretched to S x S) or
            ``square`` (square box around the box centre, no distortion).
        margin: ``square`` only: the square side is ``max(w, h) * (1 + margin)``.
        round_points: round landmarks to whole pixels before and after scaling,
            as the official script does.
        interpolation: image resize filter: ``linear`` (official, cv2 default),
            ``area`` or ``cubic``.
    """

    size: int = 256
    mode: str = "bbox"
    margin: float = 0.0
    round_points: bool = False
    interpolation: str = "linear"

    def __post_init__(self) -> None:
        if self.mode not in CROP_MODES:
            raise ConfigError(f"crop mode must be one of {', '.join(CROP_MODES)}, got {self.mode!r}")
        if int(self.size) < 8:
            raise ConfigError(f"crop size must be at least 8 pixels, got {self.size!r}")
        if self.margin < 0:
            raise ConfigError(f"crop margin must be >= 0, got {self.margin!r}")
        if self.interpolation not in _INTERPOLATIONS:
            raise ConfigError(f"crop interpolation must be one of {', '.join(_INTERPOLATIONS)}, got {self.interpolation!r}")

    def to_json(self) -> dict:
        return asdict(self)


def crop_box(bbox, frame_shape: tuple[int, ...], spec: CropSpec) -> tuple[int, int, int, int] | None:
    """The integer pixel rectangle cut out of the frame.

    Args:
        bbox: ``(x1, y1, x2, y2)`` face box in frame pixels (floats).
        frame_shape: ``(H, W, ...)`` of the frame.
        spec: crop settings.

    Returns:
        ``(x0, y0, x1, y1)`` ints, half-open (``frame[y0:y1, x0:x1]``).
        ``bbox`` mode: inside the frame. ``square`` mode: may extend past the
        frame (padded with black by :func:`crop_image`). None when the rectangle
        holds no frame pixel (treated as "no face").
    """
    h, w = int(frame_shape[0]), int(frame_shape[1])
    b = np.asarray(bbox, dtype=np.float64)[:4]
    if not np.isfinite(b).all():
        return None
    if spec.mode == "bbox":
        r = np.round(b).astype(np.int64)
        x0, y0 = max(int(r[0]), 0), max(int(r[1]), 0)
        x1, y1 = min(int(r[2]), w), min(int(r[3]), h)
        if x1 - x0 < 1 or y1 - y0 < 1:
            return None
        return x0, y0, x1, y1
    side = max(int(round(max(b[2] - b[0], b[3] - b[1]) * (1.0 + spec.margin))), 1)
    cx, cy = (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0
    x0, y0 = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    x1, y1 = x0 + side, y0 + side
    if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
        return None
    return x0, y0, x1, y1


def crop_image(frame: np.ndarray, box: tuple[int, int, int, int], size: int, interpolation: str = "linear") -> np.ndarray:
    """Cut ``box`` out of ``frame`` (black outside the frame) and resize it to ``size x size``.

    Args:
        frame: ``(H, W, 3)`` uint8.
        box: ``(x0, y0, x1, y1)`` from :func:`crop_box`.
        size: S in pixels.
        interpolation: ``linear`` (official), ``area`` or ``cubic``.

    Returns:
        ``(S, S, 3)`` uint8.
    """
    x0, y0, x1, y1 = box
    h, w = frame.shape[:2]
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        region = frame[y0:y1, x0:x1]
    else:
        region = np.zeros((y1 - y0, x1 - x0) + frame.shape[2:], dtype=frame.dtype)
        sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        region[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = frame[sy0:sy1, sx0:sx1]
    return cv2.resize(np.ascontiguousarray(region), (int(size), int(size)), interpolation=_INTERPOLATIONS[interpolation])


def points_to_crop(points: np.ndarray, box: tuple[int, int, int, int], size: int, round_points: bool = False) -> np.ndarray:
    """Map landmarks from frame pixels into ``size x size`` crop pixels.

    ``p' = clip(p - (x0, y0), 0, (w - 1, h - 1)) * (S / w, S / h)`` with
    ``w = x1 - x0`` and ``h = y1 - y0`` (module docstring, step 3).

    Args:
        points: ``(K, 2)`` (x, y) in frame pixels.
        box: ``(x0, y0, x1, y1)`` from :func:`crop_box`.
        size: S in pixels.
        round_points: round before and after scaling (official script).

    Returns:
        ``(K, 2)`` float32 (x, y) in crop pixels, inside ``[0, S)``.
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if round_points:
        p = np.round(p)
    p = p - (x0, y0)
    p = np.clip(p, 0.0, (w - 1, h - 1))
    p = p * (size / w, size / h)
    if round_points:
        p = np.round(p)
    return p.astype(np.float32)


def crop_face(frame: np.ndarray, bbox, points: np.ndarray, spec: CropSpec) -> tuple[np.ndarray, np.ndarray] | None:
    """Crop one frame around its face.

    Args:
        frame: ``(H, W, 3)`` uint8 RGB.
        bbox: ``(x1, y1, x2, y2)`` frame pixels.
        points: ``(K, 2)`` frame pixels.
        spec: crop settings.

    Returns:
        ``(crop (S, S, 3) uint8, points (K, 2) float32 crop pixels)``, or None
        when the box holds no frame pixel.
    """
    box = crop_box(bbox, frame.shape, spec)
    if box is None:
        return None
    return crop_image(frame, box, spec.size, spec.interpolation), points_to_crop(points, box, spec.size, spec.round_points)


def fill_missing(values: np.ndarray, found: np.ndarray, *, video: str = "") -> np.ndarray:
    """Fill the frames without a face by linear interpolation in time.

    Each missing frame t between found frames a < t < b gets
    ``v[a] + (v[b] - v[a]) * (t - a) / (b - a)``; before the first / after the
    last found frame the nearest found value is repeated (``np.interp``).

    Args:
        values: ``(T, ...)`` float array (boxes ``(T, 4)``, landmarks ``(T, K, 2)``);
            rows of missing frames are ignored (may be NaN).
        found: ``(T,)`` bool, True where the backend found a face.
        video: names the video in the error.

    Returns:
        ``(T, ...)`` float64 with every row finite where the found rows are.

    Raises:
        NoFaceError: no frame has a face.
    """
    found = np.asarray(found, dtype=bool)
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] != found.shape[0]:
        raise ValueError(f"values have {values.shape[0]} frames but found has {found.shape[0]}")
    if not found.any():
        raise NoFaceError(
            f"no face was found in any of the {found.size} frames of video {video or '(unnamed)'}: "
            "check that the video shows a face (or try another landmark backend / static_image_mode), "
            "or remove it from the labels"
        )
    if found.all():
        return values.copy()
    t = np.arange(found.size, dtype=np.float64)
    flat = values.reshape(found.size, -1)
    known_t = t[found]
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, known_t, flat[found, j])
    return out.reshape(values.shape)


def crop_sequence(
    frames: np.ndarray,
    detections: list[Detection | None],
    spec: CropSpec,
    *,
    num_points: int,
    video: str = "",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop an in-memory video given one detection (or None) per frame.

    Args:
        frames: ``(T, H, W, 3)`` uint8 RGB.
        detections: T entries from a backend's ``detect``.
        spec: crop settings.
        num_points: K, the backend scheme's point count.
        video: names the video in errors.

    Returns:
        ``(crops (T, S, S, 3) uint8, points (T, K, 2) float32 crop pixels,
        face_found (T,) bool)``; frames without a face are filled (:func:`fill_missing`).

    Raises:
        NoFaceError: no frame has a face.
    """
    t = len(frames)
    if len(detections) != t:
        raise ValueError(f"{len(detections)} detections for {t} frames")
    boxes = np.full((t, 4), np.nan)
    pts = np.full((t, num_points, 2), np.nan)
    found = np.zeros(t, dtype=bool)
    for i, det in enumerate(detections):
        if det is not None and crop_box(det.bbox, frames[i].shape, spec) is not None:
            boxes[i], pts[i], found[i] = det.bbox[:4], det.points, True
    boxes = fill_missing(boxes, found, video=video)
    pts = fill_missing(pts, found, video=video)
    crops = np.empty((t, spec.size, spec.size, 3), np.uint8)
    out_pts = np.empty((t, num_points, 2), np.float32)
    for i in range(t):
        box = crop_box(boxes[i], frames[i].shape, spec)
        if box is None:  # an interpolated box outside the frame: use the whole frame
            box = (0, 0, frames[i].shape[1], frames[i].shape[0])
        crops[i] = crop_image(frames[i], box, spec.size, spec.interpolation)
        out_pts[i] = points_to_crop(pts[i], box, spec.size, spec.round_points)
    return crops, out_pts, found
