"""Landmark heatmap volumes: the second input stream of QAFE-Net.

Three named modes render a stack of frames at once, from landmark points
``(T, K, 2)`` (x, y) in pixels, to ``(T, H, W, 3)`` uint8 images, so that heatmap
frames go through the same resize / crop / to-tensor path as RGB frames and can
be cached byte-identically:

``paper`` (default; paper section 4, eq. 2)
    "pre-compute a Gaussian distribution of weights G in an 11x11 kernel with a
    standard deviation of sigma, add the Gaussian at each landmark position while
    accumulating the weights into an accumulator frame, apply a simple smoothing
    filter, normalise the weights to lie in the range (0, 1); these normalised
    weights weight the RGB values".  Decisions taken here (the paper leaves them
    open):

    - G(dx, dy) = exp(-(dx^2 + dy^2) / (2 sigma^2)) for integer offsets
      |dx|, |dy| <= kernel_size // 2, peak 1 (not normalised to sum 1: the
      per-frame normalisation below removes any constant factor), computed in
      float32; the window is cut at the image border (zero padding, no reflection).
    - all K landmarks are drawn (no landmark is skipped); contributions are summed.
    - the "simple smoothing filter" is the same one the released code uses:
      ``cv2.GaussianBlur(ksize=(7, 7), sigmaX=0)``, i.e. OpenCV's fixed separable
      7-tap kernel [2, 7, 14, 18, 14, 7, 2] / 64 with BORDER_REFLECT_101.
    - normalisation: divide each frame by its own maximum (so the peak is 1).
    - output = rint(weights * RGB) (round half to even) as uint8; hence
      output <= RGB everywhere and pixels farther than
      ``kernel_size // 2 + 3`` px (Chebyshev) from every landmark are 0.

``official`` (the released code, ``dataset/generate_landmark_heatmap.py`` of
shuchaoduan/QAFE-Net), reproduced bit-exactly per frame:

    - landmark index 0 is skipped (the code loops ``for i in range(1, K)``: 72 of
      73 used); ``skip_first_landmark=False`` disables this.
    - per landmark, a float32 map with exp(-((x-mu_x)^2 + (y-mu_y)^2) / 2 / sigma^2)
      on the window int(mu-5) .. int(mu+5) (radius ``kernel_size // 2``) clipped to
      the image, divided by its own maximum; the maps are summed over landmarks
      in index order (float32, sequentially, as ``np.sum(maps, axis=0)`` does);
    - ``cv2.GaussianBlur((7, 7), sigmaX=0)`` (fixed 7-tap kernel, reflect-101);
    - divided by the frame's maximum, ``np.uint8(255 * x)`` (truncation);
    - ``cv2.applyColorMap(..., COLORMAP_JET)``.  OpenCV returns BGR and the
      authors' files were written by cv2 (BGR in memory -> a correctly coloured
      image file) and read back by the loader with ``PIL.Image.open(...).convert
      ('RGB')``, so the model saw the true JET colours in R, G, B order.  This
      module returns exactly that RGB order: background (value 0) is
      RGB (0, 0, 128) (dark blue), the peak (255) is RGB (128, 0, 0) (dark red).
      The official files were JPEGs; JPEG loss (quality unknown) is NOT simulated.
    - no multiplication with RGB.
    - officially a landmark whose window lies entirely outside the image gives
      0/0 = NaN and a broken frame; here every landmark is clamped into the image
      first, so that cannot happen.

``points`` (Table 4 row 1 / Table 10 "sigma N/A": "landmark positions only")
    Our reading: no Gaussian and no smoothing, a binary mask with 255 at each
    landmark pixel and 0 elsewhere, replicated to 3 channels.  ``sigma``,
    ``kernel_size`` and ``smoothing`` are ignored.

Common to all modes: landmark coordinates are rounded to the nearest pixel with
``np.rint`` (round half to even, as ``np.round`` in the official landmark script
``dataset/PAIN2landmarks_insightface.py``, which stores int32 points) and then
clamped into ``[0, W-1] x [0, H-1]``.  With integer centres inside the image the
official per-landmark normalisation is a division by exactly 1.

No Python loop runs over landmarks, and frames go in blocks of 8 (one block's accumulator stays
in the CPU cache; blocks run on ``threads`` threads, OpenCV's count by default): the Gaussian
table is scattered with one ``np.add.at`` over the block's taps laid out (landmark, frame, tap)
into a float32 accumulator with a margin of the window's radius, so each pixel receives its
landmarks in landmark order and the float32 sums equal the official per-landmark ``np.sum`` bit
for bit, and taps outside the image fall into the margin (the official clipping); then, per
frame, ``cv2.GaussianBlur`` of the image part alone, the division by the peak, and one
``cv2.applyColorMap`` (official) or ``cv2.multiply`` (paper). The tests check byte equality
with literal per-landmark, per-frame implementations of both recipes
(:mod:`benchmark.data.heatmap_reference`) for every thread count.

The cache (:func:`write_heatmap_cache`, :func:`cached_heatmap_frames`) stores
``root/heatmaps/<key>/<video_id>.npy`` with all frames of a video; cached and
on-the-fly frames are identical arrays.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import cv2
import numpy as np

from ..errors import ManifestError
from .prepared import PreparedDataset, atomic_write_bytes, atomic_write_text, check_video_id, resize_frames

__all__ = [
    "MODES",
    "SMOOTHINGS",
    "HEATMAP_CACHE_VERSION",
    "render_heatmap_frames",
    "heatmap_cache_key",
    "cached_heatmap_frames",
    "write_heatmap_cache",
    "jet_rgb_lut",
    "gaussian_table",
]

MODES = ("paper", "official", "points")
#: ``gauss7``: cv2.GaussianBlur 7x7 with sigmaX=0 (fixed 7-tap kernel [2,7,14,18,14,7,2]/64,
#: reflect-101); ``none``: no smoothing.
SMOOTHINGS = ("gauss7", "none")
#: bump when the rendering changes, so that old cache folders are not reused.
HEATMAP_CACHE_VERSION = 1
_DEFAULT_CHUNK = 128  # frames rendered at once by the cache helpers (bounds memory)

_JET_RGB: np.ndarray | None = None


def jet_rgb_lut() -> np.ndarray:
    """OpenCV's COLORMAP_JET as a ``(256, 3)`` uint8 lookup table in RGB order.

    Taken from ``cv2.applyColorMap`` itself (then BGR -> RGB), so ``lut[v]`` equals
    ``cv2.applyColorMap(v, COLORMAP_JET)[..., ::-1]`` for every uint8 value v.
    """
    global _JET_RGB
    if _JET_RGB is None:
        bgr = cv2.applyColorMap(np.arange(256, dtype=np.uint8).reshape(256, 1), cv2.COLORMAP_JET)
        lut = np.ascontiguousarray(bgr.reshape(256, 3)[:, ::-1])
        lut.setflags(write=False)
        _JET_RGB = lut
    return _JET_RGB


def gaussian_table(sigma: float, kernel_size: int = 11) -> np.ndarray:
    """The ``(kernel_size, kernel_size)`` float32 Gaussian window G, peak exactly 1.

    ``G[r + dy, r + dx] = exp(-(dx^2 + dy^2) / 2 / sigma^2)`` with r = kernel_size // 2,
    evaluated in float32 with the same operations as ``generate_a_heatmap`` of the
    official ``dataset/generate_landmark_heatmap.py`` for an integer centre, then
    divided by its centre value (the official per-landmark ``/ np.max``).

    Raises:
        ValueError: sigma <= 0 or not finite; kernel_size not a positive odd integer.
    """
    sigma = _check_sigma(sigma)
    k = _check_kernel_size(kernel_size)
    r = k // 2
    d = np.arange(-r, r + 1, dtype=np.float32)
    table = np.exp(-(d[None, :] ** 2 + d[:, None] ** 2) / 2 / sigma ** 2)
    table = table.astype(np.float32, copy=False)
    return table / table[r, r]


def _check_sigma(sigma: float) -> float:
    try:
        s = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}") from None
    if not np.isfinite(s) or s <= 0:
        raise ValueError(f"sigma must be a positive finite number, got {sigma!r}")
    # keep an int sigma an int (the official code passes sigma=1): same float32 result either way
    return int(s) if s == int(s) else s


def _check_kernel_size(kernel_size: int) -> int:
    if isinstance(kernel_size, bool) or int(kernel_size) != kernel_size or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
    return int(kernel_size)


def _check_size(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)):
        h = w = int(size)
    else:
        try:
            h, w = (int(v) for v in size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be an int or (H, W), got {size!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return h, w


def _check_resize(resize: int | None, size: tuple[int, int]) -> int | None:
    """None when ``resize`` keeps the drawing size, else the side in pixels (a positive int)."""
    if resize is None:
        return None
    side = int(resize)
    if side < 1 or side != resize:
        raise ValueError(f"resize must be a positive int (pixels) or None, got {resize!r}")
    return None if (side, side) == tuple(size) else side


def _resolve(mode: str, smoothing: str | None, skip_first_landmark: bool | None) -> tuple[str, bool]:
    if mode not in MODES:
        raise ValueError(f"unknown heatmap mode {mode!r}; choose one of {MODES}")
    if smoothing is None:
        smoothing = "gauss7"  # the paper's 7x7 blur; ``points`` is never smoothed (below)
    if smoothing not in SMOOTHINGS:
        raise ValueError(f"unknown smoothing {smoothing!r}; choose one of {SMOOTHINGS}")
    if mode == "points":
        smoothing = "none"
    if skip_first_landmark is None:
        skip_first_landmark = mode == "official"
    return smoothing, bool(skip_first_landmark)


def _pixel_points(points: np.ndarray, h: int, w: int, skip_first: bool) -> tuple[np.ndarray, np.ndarray]:
    """Round (np.rint) and clamp landmarks; return int64 ``xs, ys`` of shape (T, K')."""
    pts = np.asarray(points)
    if pts.ndim != 3 or pts.shape[2] != 2:
        raise ValueError(f"points must be (T, K, 2) (x, y) pixels, got shape {pts.shape}")
    if skip_first:
        pts = pts[:, 1:]
    if pts.shape[1] == 0:
        raise ValueError("no landmark left to draw (K == 0, or K == 1 with skip_first_landmark)")
    pts = pts.astype(np.float64, copy=False)
    if not np.isfinite(pts).all():
        raise ValueError("points contain NaN or inf; interpolate frames without a face first")
    xs = np.clip(np.rint(pts[..., 0]), 0, w - 1).astype(np.int64)
    ys = np.clip(np.rint(pts[..., 1]), 0, h - 1).astype(np.int64)
    return xs, ys


#: Frames rendered together: one block's accumulator (about 2 MB at 256 px) stays in the CPU cache
#: from the scatter to the colour lookup. Blocks are independent, so they run on threads.
_BLOCK = 8
#: The 7x7 blur's border: reflect-101 at the image edge; the accumulator's margin is never read.
_BLUR_BORDER = cv2.BORDER_REFLECT_101 | cv2.BORDER_ISOLATED


def _accumulate(xs: np.ndarray, ys: np.ndarray, h: int, w: int, table: np.ndarray) -> np.ndarray:
    """Sum the Gaussian table centred at every landmark: ``(T, H + 2r, W + 2r)`` float32 with
    ``r = kernel_size // 2``; the image is ``[r:r + H, r:r + W]`` of each frame.

    One ``np.add.at`` over the taps laid out ``(K, T, k * k)``: it adds sequentially in array order,
    so each pixel receives its landmarks' contributions in landmark order and the float32 sum equals
    ``np.sum(per_landmark_maps, axis=0)`` of the official code bit for bit. A landmark's window
    starts at its own (clamped) pixel in padded coordinates; taps outside the image land in the
    r-wide margin, which is never read (the official window clipping).
    """
    t, n_points = xs.shape
    k = table.shape[0]
    hp, wp = h + k - 1, w + k - 1
    acc = np.zeros((t, hp, wp), dtype=np.float32)
    d = np.arange(k, dtype=np.int64)
    taps = (d[:, None] * wp + d[None, :]).reshape(-1)  # a window's taps from its top-left corner
    corner = (np.arange(t, dtype=np.int64)[None, :] * hp + ys.T) * wp + xs.T  # (K, T)
    values = np.broadcast_to(table.reshape(-1), (n_points, t, k * k))
    np.add.at(acc.reshape(-1), (corner[:, :, None] + taps).reshape(-1), values.reshape(-1))
    return acc


def _frame_weights(padded: np.ndarray, r: int, h: int, w: int, smooth: bool) -> np.ndarray:
    """One frame's weights ``(H, W)`` float32 from its ``(H + 2r, W + 2r)`` accumulator
    (:func:`_accumulate`), in place where it can: ``cv2.GaussianBlur((7, 7), sigmaX=0)`` of the
    image part alone (reflect-101 at the image border, as the official per-frame blur) when
    ``smooth``, then division by the frame's own maximum (a frame without landmarks stays 0).
    """
    img = padded[r:r + h, r:r + w]
    if smooth:
        img = cv2.GaussianBlur(img, (7, 7), sigmaX=0, sigmaY=0, borderType=_BLUR_BORDER).reshape(h, w)
    peak = img.max()
    if peak > 0:
        img /= peak
    return img


def _render_block(xs: np.ndarray, ys: np.ndarray, table: np.ndarray, mode: str, smooth: bool,
                  rgb: np.ndarray | None, out: np.ndarray) -> None:
    """Render one block of frames into ``out`` ``(t, H, W, 3)`` uint8 (``official`` or ``paper``).

    ``official``: ``np.uint8(255 * weights)`` (float32 product, truncation), then the JET table
    (:func:`jet_rgb_lut`) through ``cv2.applyColorMap``. ``paper``: ``rint(weights * RGB)``, the
    float32 product rounded half to even and saturated: ``cv2.multiply`` of the frame with its
    weights merged to 3 channels computes exactly that (checked by the tests against
    ``np.rint(np.float32(w) * rgb)``).
    """
    t, h, w = out.shape[:3]
    r = table.shape[0] // 2
    acc = _accumulate(xs, ys, h, w, table)
    lut = jet_rgb_lut().reshape(256, 1, 3) if mode == "official" else None  # contiguous (256, 1, 3) view
    for i in range(t):
        weights = _frame_weights(acc[i], r, h, w, smooth)
        if mode == "official":
            weights *= np.float32(255)
            cv2.applyColorMap(weights.astype(np.uint8), lut, dst=out[i])
        else:
            cv2.multiply(rgb[i], cv2.merge([weights, weights, weights]), dst=out[i], dtype=cv2.CV_8U)


def _thread_count(threads: int | None, blocks: int) -> int:
    if threads is None:
        threads = cv2.getNumThreads()
    elif isinstance(threads, bool) or int(threads) != threads or threads < 1:
        raise ValueError(f"threads must be a positive int or None (OpenCV's thread count), got {threads!r}")
    return max(1, min(int(threads), blocks))


def render_heatmap_frames(
    points: np.ndarray,
    *,
    size: int | Sequence[int],
    mode: str = "paper",
    sigma: float = 1.0,
    frames: np.ndarray | None = None,
    kernel_size: int = 11,
    smoothing: str | None = None,
    skip_first_landmark: bool | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Render landmark heatmap frames for a stack of T frames at once.

    Args:
        points: ``(T, K, 2)`` float (x, y) landmark positions in pixels of the
            ``size`` image (pixel centres at integers).  Rounded to the nearest
            pixel (``np.rint``) and clamped into the image.
        size: ``(H, W)`` of the output frames (an int means square).
        mode: ``paper`` (Gaussian weights x RGB; paper section 4, eq. 2),
            ``official`` (JET pseudo-colour, released
            ``dataset/generate_landmark_heatmap.py``), or ``points`` (binary
            landmark mask).  See the module docstring for the exact recipes.
        sigma: standard deviation of the Gaussian in pixels (Table 10: 1, 3, 5, 7).
            Ignored by ``points``.
        frames: ``(T, H, W, 3)`` uint8 RGB frames; required for ``paper`` (the
            weights multiply them), ignored otherwise.
        kernel_size: side of the square Gaussian window (odd; 11 = radius 5, as
            both the paper and the code).  Ignored by ``points``.
        smoothing: ``gauss7`` (cv2.GaussianBlur 7x7, sigmaX=0: the fixed 7-tap
            kernel [2,7,14,18,14,7,2]/64, reflect-101) or ``none``; None picks the
            mode's default (``gauss7``; ``points`` never smooths).
        skip_first_landmark: drop landmark 0 before drawing; None picks the mode's
            default (True for ``official``, as the released code; False otherwise).
        threads: frames are rendered in blocks of 8 on up to this many threads; None uses
            OpenCV's thread count (``cv2.getNumThreads()``, set by ``cv2.setNumThreads``).
            The output does not depend on it.

    Returns:
        ``(T, H, W, 3)`` uint8 RGB.  ``paper``: rint(w * RGB) with per-frame
        max-normalised weights w in [0, 1].  ``official``: JET colours in RGB order
        (background (0, 0, 128)).  ``points``: 255 at landmark pixels, else 0.

    Raises:
        ValueError: unknown mode or smoothing, bad shapes, non-finite points,
            sigma <= 0, even kernel_size, missing or mis-shaped ``frames`` for
            ``paper``, no landmark left to draw, or ``threads`` not a positive int.
    """
    h, w = _check_size(size)
    smoothing, skip = _resolve(mode, smoothing, skip_first_landmark)
    xs, ys = _pixel_points(points, h, w, skip)
    t = xs.shape[0]
    starts = range(0, t, _BLOCK)
    n_threads = _thread_count(threads, len(starts))
    if mode == "paper":
        if frames is None:
            raise ValueError("mode 'paper' weights the RGB frames: pass frames (T, H, W, 3) uint8")
        frames = np.asarray(frames)
        if frames.shape != (t, h, w, 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be ({t}, {h}, {w}, 3) uint8 RGB, got {frames.shape} {frames.dtype}")
        frames = np.ascontiguousarray(frames)
    if t == 0:
        return np.zeros((0, h, w, 3), np.uint8)

    if mode == "points":
        mask = np.zeros((t, h, w), dtype=np.uint8)
        mask[np.arange(t)[:, None], ys, xs] = 255
        return np.repeat(mask[..., None], 3, axis=3)

    table = gaussian_table(sigma, kernel_size)
    out = np.empty((t, h, w, 3), dtype=np.uint8)

    def block(s: int) -> None:
        e = min(s + _BLOCK, t)
        _render_block(xs[s:e], ys[s:e], table, mode, smoothing == "gauss7",
                      frames[s:e] if mode == "paper" else None, out[s:e])

    if n_threads == 1:
        for s in starts:
            block(s)
    else:
        with ThreadPoolExecutor(n_threads) as pool:
            list(pool.map(block, starts))  # list(): re-raises a block's exception here
    return out


# ---------------------------------------------------------------------------------------------
# cache


def heatmap_cache_key(
    mode: str = "paper",
    sigma: float = 1.0,
    size: int | Sequence[int] = 256,
    *,
    kernel_size: int = 11,
    smoothing: str | None = None,
    skip_first_landmark: bool | None = None,
    resize: int | None = None,
) -> str:
    """File-name-safe key of a heatmap rendering, e.g. ``v1_official_sigma1_k11_gauss7_skip1_256x256``
    (``..._256x256_to64x64`` when the frames are stored resized to ``resize``, as runs read them).

    Parameters that do not affect the output (sigma, kernel_size, smoothing for
    ``points``) are left out, so equal renderings share a key; None defaults are
    resolved first (``official`` -> skip1, others skip0).

    Raises:
        ValueError: as :func:`render_heatmap_frames` for invalid parameters.
    """
    h, w = _check_size(size)
    smoothing, skip = _resolve(mode, smoothing, skip_first_landmark)
    if mode == "points":
        body = f"points_skip{int(skip)}"
    else:
        s = _check_sigma(sigma)
        k = _check_kernel_size(kernel_size)
        body = f"{mode}_sigma{s:g}_k{k}_{smoothing}_skip{int(skip)}"
    side = _check_resize(resize, (h, w))
    tail = "" if side is None else f"_to{side}x{side}"
    return f"v{HEATMAP_CACHE_VERSION}_{body}_{h}x{w}{tail}"


def _video_inputs(
    dataset: PreparedDataset, video_id: str, idx: np.ndarray, h: int, w: int, need_frames: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """Landmarks (scaled to (H, W)) and, if needed, RGB frames (resized with INTER_AREA) of frames ``idx``."""
    pts, _ = dataset.landmarks(video_id)
    pts = pts[idx]
    s = dataset.crop_size
    if (h, w) != (s, s):
        pts = pts * np.array([w / s, h / s], dtype=np.float32)
    frames = None
    if need_frames:
        # ``idx`` is never empty (:func:`_render_video` skips an empty clip), as resize_frames needs
        frames = resize_frames(dataset.frames(video_id, idx), (w, h))
    return pts, frames


def _render_video(
    dataset: PreparedDataset, video_id: str, idx: np.ndarray, *, mode: str, sigma: float,
    size: tuple[int, int], kernel_size: int, smoothing: str | None, skip_first_landmark: bool | None,
    chunk_frames: int = _DEFAULT_CHUNK, resize: int | None = None,
) -> np.ndarray:
    h, w = size
    oh, ow = (h, w) if resize is None else (int(resize), int(resize))
    out = np.empty((idx.size, oh, ow, 3), dtype=np.uint8)
    for s in range(0, idx.size, chunk_frames):  # chunks only bound memory: frames are independent
        sub = idx[s:s + chunk_frames]
        pts, frames = _video_inputs(dataset, video_id, sub, h, w, mode == "paper")
        out[s:s + sub.size] = resize_frames(render_heatmap_frames(
            pts, size=(h, w), mode=mode, sigma=sigma, frames=frames, kernel_size=kernel_size,
            smoothing=smoothing, skip_first_landmark=skip_first_landmark,
        ), (ow, oh))  # as the protocol resizes heatmaps
    return out


def cached_heatmap_frames(
    dataset: PreparedDataset,
    video_id: str,
    indices: Iterable[int] | np.ndarray | None = None,
    *,
    mode: str = "paper",
    sigma: float = 1.0,
    size: int | Sequence[int] | None = None,
    kernel_size: int = 11,
    smoothing: str | None = None,
    skip_first_landmark: bool | None = None,
    resize: int | None = None,
) -> np.ndarray:
    """Heatmap frames of one video, from the cache when present, else rendered now.

    Reads ``dataset.root/heatmaps/<key>/<video_id>.npy`` (key from
    :func:`heatmap_cache_key`) memory-mapped when it exists; otherwise renders the
    requested frames from ``dataset.landmarks(video_id)`` (and ``dataset.frames``
    for ``paper``).  Both give identical arrays.

    When ``size`` differs from the dataset's crop size S, landmark coordinates are
    multiplied by ``(W / S, H / S)`` (the albumentations ``Resize`` keypoint rule
    the official landmark script uses) before rounding, and RGB frames are resized
    with ``cv2.INTER_AREA``.

    Args:
        dataset: a prepared dataset.
        video_id: a ``videos.csv`` id.
        indices: 0-based frame indices (any order, repeats allowed); all frames if None.
        mode, sigma, kernel_size, smoothing, skip_first_landmark: as
            :func:`render_heatmap_frames`.
        size: ``(H, W)`` or int; None = the dataset's crop size.
        resize: the frames are then resized to ``resize x resize`` (``cv2.INTER_AREA`` per frame,
            as the protocol resizes heatmaps before its crop), and the cache holding them at that
            size is read (16 times smaller than 256-px frames at QAFE-Net's 64).

    Returns:
        ``(len(indices), H, W, 3)`` uint8 RGB (``resize x resize`` with ``resize``).

    Raises:
        KeyError: ``video_id`` is not in ``videos.csv``.
        IndexError: an index outside ``0..num_frames-1``.
        ManifestError: a missing landmark/frame file, or a cache file whose shape
            does not match the video (delete the cache folder and rebuild it).
        ValueError: invalid rendering parameters.
    """
    h, w = _check_size(dataset.crop_size if size is None else size)
    resize = _check_resize(resize, (h, w))
    key = heatmap_cache_key(mode, sigma, (h, w), kernel_size=kernel_size, smoothing=smoothing,
                            skip_first_landmark=skip_first_landmark, resize=resize)
    oh, ow = (h, w) if resize is None else (int(resize), int(resize))
    check_video_id(video_id)
    n = int(dataset.videos.at[video_id, "num_frames"])
    idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise IndexError(f"video {video_id}: frame index out of range 0..{n - 1}")
    path = dataset.root / "heatmaps" / key / f"{video_id}.npy"
    if path.is_file():
        arr = np.load(path, mmap_mode="r")
        if arr.shape != (n, oh, ow, 3) or arr.dtype != np.uint8:
            raise ManifestError(
                f"{path}: shape {arr.shape} {arr.dtype}, expected ({n}, {oh}, {ow}, 3) uint8; "
                f"delete {path.parent} and rebuild the heatmap cache"
            )
        return np.ascontiguousarray(arr[idx])
    return _render_video(dataset, video_id, idx, mode=mode, sigma=sigma, size=(h, w), kernel_size=kernel_size,
                         smoothing=smoothing, skip_first_landmark=skip_first_landmark, resize=resize)


def write_heatmap_cache(
    dataset: PreparedDataset,
    *,
    mode: str = "paper",
    sigma: float = 1.0,
    size: int | Sequence[int] | None = None,
    kernel_size: int = 11,
    smoothing: str | None = None,
    skip_first_landmark: bool | None = None,
    video_ids: Iterable[str] | None = None,
    overwrite: bool = False,
    chunk_frames: int = _DEFAULT_CHUNK,
    progress: bool = False,
    resize: int | None = None,
) -> Path:
    """Precompute heatmap frames of every video into ``dataset.root/heatmaps/<key>/``.

    Each video becomes ``<video_id>.npy``, ``(num_frames, H, W, 3)`` uint8, written
    atomically (temporary file + rename), so an interrupted run leaves only
    complete files and a re-run skips them (unless ``overwrite``).  A
    ``params.json`` beside them records the parameters.

    Args:
        dataset: a prepared dataset.
        mode, sigma, size, kernel_size, smoothing, skip_first_landmark, resize: as
            :func:`cached_heatmap_frames` (``resize``: store the frames at the size the protocol
            crops from, as ``qafe-bench heatmaps`` does).
        video_ids: which videos (default: all of ``videos.csv``).
        overwrite: re-render files that already exist.
        chunk_frames: frames rendered at once (bounds memory; the result does not depend on it).
        progress: show a tqdm bar over the videos.

    Returns:
        The cache folder.

    Raises:
        KeyError: a ``video_ids`` entry not in ``videos.csv``.
        ManifestError: a missing landmark/frame file.
        ValueError: invalid rendering parameters.
    """
    h, w = _check_size(dataset.crop_size if size is None else size)
    resize = _check_resize(resize, (h, w))
    key = heatmap_cache_key(mode, sigma, (h, w), kernel_size=kernel_size, smoothing=smoothing,
                            skip_first_landmark=skip_first_landmark, resize=resize)
    if int(chunk_frames) < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames!r}")
    folder = dataset.root / "heatmaps" / key
    folder.mkdir(parents=True, exist_ok=True)
    smoothing_r, skip_r = _resolve(mode, smoothing, skip_first_landmark)
    params = {
        "key": key, "version": HEATMAP_CACHE_VERSION, "mode": mode, "sigma": float(sigma),
        "size": [h, w], "kernel_size": int(kernel_size), "smoothing": smoothing_r,
        "skip_first_landmark": skip_r, "crop_size": dataset.crop_size, "resize": resize,
        "dataset_content_hash": dataset.content_hash,
    }
    atomic_write_text(folder / "params.json", json.dumps(params, indent=2))
    ids = list(dataset.videos.index) if video_ids is None else [check_video_id(v) for v in video_ids]
    from tqdm.auto import tqdm

    for vid in tqdm(ids, desc=f"heatmaps {key}", unit="video", disable=not progress):
        path = folder / f"{vid}.npy"
        if path.is_file() and not overwrite:
            continue
        n = int(dataset.videos.at[vid, "num_frames"])
        arr = _render_video(dataset, vid, np.arange(n), mode=mode, sigma=sigma, size=(h, w),
                            kernel_size=kernel_size, smoothing=smoothing, skip_first_landmark=skip_first_landmark,
                            chunk_frames=int(chunk_frames), resize=resize)
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        atomic_write_bytes(path, buf.getvalue())
    return folder
