"""Straightforward landmark heatmap renderers: the per-frame, per-landmark loops of the released
``dataset/generate_landmark_heatmap.py`` (shuchaoduan/QAFE-Net) written out literally, and the paper
recipe in the same style. :mod:`benchmark.data.heatmaps` must equal them byte for byte
(``tests/test_heatmaps.py``), and ``qafe-bench perf`` times it against them (they are the baseline
of its ratios, :mod:`benchmark.perf`). Slow on purpose: do not use them for work.
"""

from __future__ import annotations

import cv2
import numpy as np


def _round_clamp(points: np.ndarray, h: int, w: int) -> np.ndarray:
    """np.rint then clamp into the image, as the module documents (the official code would give NaN outside)."""
    pts = np.rint(np.asarray(points, dtype=np.float64))
    pts[..., 0] = np.clip(pts[..., 0], 0, w - 1)
    pts[..., 1] = np.clip(pts[..., 1], 0, h - 1)
    return pts


def _one_landmark_map(h: int, w: int, center, sigma, radius: int = 5) -> np.ndarray:
    """generate_a_heatmap: a float32 Gaussian patch on a zero map, divided by the map's max."""
    heatmap = np.zeros((h, w), dtype=np.float32)
    mu_x, mu_y = np.float32(center[0]), np.float32(center[1])
    st_x, ed_x = max(int(mu_x - radius), 0), min(int(mu_x + radius) + 1, w)
    st_y, ed_y = max(int(mu_y - radius), 0), min(int(mu_y + radius) + 1, h)
    x = np.arange(st_x, ed_x, 1, np.float32)
    y = np.arange(st_y, ed_y, 1, np.float32)[:, None]
    patch = np.exp(-((x - mu_x) ** 2 + (y - mu_y) ** 2) / 2 / sigma ** 2) * np.float32(1.0)
    heatmap[st_y:ed_y, st_x:ed_x] = np.maximum(heatmap[st_y:ed_y, st_x:ed_x], patch)
    return heatmap / np.max(heatmap)


def reference_official(points, size, sigma=1, skip_first_landmark=True, radius=5) -> np.ndarray:
    """Official recipe, per frame and per landmark; returns RGB (the JET BGR image reversed)."""
    h, w = size
    pts = _round_clamp(points, h, w)
    out = []
    for kps in pts:
        start = 1 if skip_first_landmark else 0
        maps = [_one_landmark_map(h, w, kps[i], sigma, radius) for i in range(start, kps.shape[0])]
        combined = np.sum(np.stack(maps, axis=0), axis=0)
        smoothed = cv2.GaussianBlur(combined, (7, 7), sigmaX=0)
        smoothed /= np.max(smoothed)
        bgr = cv2.applyColorMap(np.uint8(255 * smoothed), cv2.COLORMAP_JET)
        out.append(bgr[:, :, ::-1])
    return np.stack(out)


def reference_paper(points, frames, size, sigma=1.0, radius=5) -> np.ndarray:
    """Paper recipe, per frame and per landmark: accumulate G, blur 7x7, /max, rint(w * RGB)."""
    h, w = size
    pts = _round_clamp(points, h, w)
    out = []
    for kps, rgb in zip(pts, frames):
        acc = np.zeros((h, w), np.float32)
        for i in range(kps.shape[0]):
            acc += _one_landmark_map(h, w, kps[i], sigma, radius)
        acc = cv2.GaussianBlur(acc, (7, 7), sigmaX=0)
        acc /= np.max(acc)
        out.append(np.rint(acc[:, :, None] * rgb.astype(np.float32)).astype(np.uint8))
    return np.stack(out)


def random_points(rng, t, k, h, w, margin=12):
    """Landmarks clustered like a face, plus some near and beyond every border."""
    pts = np.empty((t, k, 2))
    pts[..., 0] = rng.uniform(0.25 * w, 0.75 * w, (t, k))
    pts[..., 1] = rng.uniform(0.25 * h, 0.75 * h, (t, k))
    n_edge = max(k // 4, 1)
    pts[:, :n_edge, 0] = rng.uniform(-margin, w - 1 + margin, (t, n_edge))
    pts[:, :n_edge, 1] = rng.uniform(-margin, h - 1 + margin, (t, n_edge))
    pts[:, 1, :] = [-30.0, h + 40.0]  # entirely outside: its official window would be empty (0/0)
    pts[:, 2, :] = [w - 1.5, 0.49]  # at the border, rounding half to even
    return pts.astype(np.float32)


__all__ = ["random_points", "reference_official", "reference_paper"]
