"""Landmark trajectories: the third input stream (TraMP-Former, Duan et al., FG 2025).

Built by the harness from a prepared dataset's landmarks and frames, the way
shuchaoduan/TraMP-Former's ``dataloader/rgb1x1_traj_dataloader.py`` builds them from its
precomputed files (``detect_73_crop`` points and ``RGB_1x1_fromLK`` colours):

1. **points**: the 73 inner landmarks of a frame (insightface's 106 minus the 33 contour
   points, as QAFE-Net); the code deletes index 1 (left eye centre) and then index 54 of
   what remains (original 55, right eye centre), keeping 71, and selects 63 of them as 7
   facial parts of 9 points (left eye, left brow, right eye, right brow, nose, lower lip,
   upper lip; the two lip parts share two corner points). :data:`TRAMP_POINTS` lists the 63
   as indices into the 73-point scheme, in the model's order.
2. **positions**: the code's ``car2pol`` subtracts, in frame t, the reference point of frame t
   and adds back that point's offset from frame 0; the two cancel, so every position is
   relative to the reference point (original 53 = index 52 after the deletion) of the
   video's FIRST frame, in crop pixels (no normalisation, ``traj_norm: False``).
3. **colour**: the RGB value of the 1x1 patch under each point, appended to (x, y): 5 values.
   The original reads them from precomputed files whose scale the repository does not show;
   here they are the prepared frame's pixel at the rounded point, divided by 255 (an
   unverified reading, recorded in the method card).
4. **sampling** (``_load_tracked_traj``, ``long_pad_traj='latter_truncate'``, ``pad_type='loop'``):
   L frames (64 for sit at rest, 128 otherwise); a video shorter than L is looped
   (``idx = t mod n``); otherwise its LAST L frames are taken, at train and test time alike
   (the random-start branch is unreachable: ``load_video`` always returns frame indices).
   ``index_t = 2 idx / L - 1`` with ``idx = linspace(start, n - 1, L).astype(int32)``
   (values above 1 for long videos, as the code computes them).
5. **augmentation** (training, ``data_augment='1'``): the sample reversed in time with
   probability 0.5 (``index_t`` unchanged).

Output layout as the code's ``rearrange('t n p -> n t p')``: ``(V, L, 5)`` float32.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError

# deletion of the two eye centres, then the 7 parts x 9 points of the code (indices after deletion)
_KEPT_71 = [i for i in range(73) if i != 1]
del _KEPT_71[54]
_PARTS_AFTER_DELETION = (
    (0, 1, 2, 3, 4, 5, 6, 7, 8),            # left eye
    (9, 10, 11, 12, 13, 14, 15, 16, 17),    # left brow
    (53, 54, 55, 56, 57, 58, 59, 60, 61),   # right eye
    (62, 63, 64, 65, 66, 67, 68, 69, 70),   # right brow
    (38, 40, 41, 42, 44, 46, 50, 48, 47),   # nose
    (18, 20, 26, 23, 27, 24, 25, 22, 21),   # bottom lips
    (18, 29, 33, 27, 35, 36, 28, 32, 31),   # upper lips
)
#: The 63 points, as indices into the 73-point inner-landmark scheme, in the model's order.
TRAMP_POINTS: tuple[int, ...] = tuple(_KEPT_71[i] for part in _PARTS_AFTER_DELETION for i in part)
#: The reference point (code: index 52 after the deletion).
TRAMP_REFERENCE: int = _KEPT_71[52]
#: Frames per sample per PFED5 expression (code ``utils.get_max_len_128``); 128 for any other.
TRAMP_FRAMES = {"sit_at_rest": 64}
TRAMP_DEFAULT_FRAMES = 128


def trajectory_indices(num_frames: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """Frame indices and time positions of one trajectory sample (the code's rule, step 4).

    Returns:
        ``(idx (L,) int64, index_t (L,) float32)``.

    Raises:
        DataError: an empty video or a non-positive length.
    """
    n, length = int(num_frames), int(length)
    if n < 1 or length < 1:
        raise DataError(f"a trajectory needs frames: video of {n} frame(s), length {length}")
    if n < length:
        idx = np.arange(length, dtype=np.int64) % n
        index_t = 2 * idx.astype(np.float32) / length - 1
        return idx, index_t.astype(np.float32)
    start = n - length
    idx = np.arange(start, n, dtype=np.int64)
    positions = np.linspace(start, n - 1, length).astype(np.int32)
    return idx, (2 * positions.astype(np.float32) / length - 1).astype(np.float32)


def trajectory_sample(points: np.ndarray, frames: np.ndarray, idx: np.ndarray, *, point_ids: tuple[int, ...],
                      reference: int, reverse: bool = False) -> np.ndarray:
    """One trajectory sample ``(V, L, 5)`` float32 (steps 1-3 and 5).

    Args:
        points: ``(T, K, 2)`` the video's landmarks (x, y) in crop pixels, every frame (the origin
            is the reference point of frame 0).
        frames: ``(L, H, W, 3)`` uint8, the frames ``idx`` (for the colours).
        idx: ``(L,)`` frame indices (:func:`trajectory_indices`).
        point_ids: the V landmark indices in model order (:data:`TRAMP_POINTS`).
        reference: the reference landmark (:data:`TRAMP_REFERENCE`).
        reverse: reverse the sample in time (training augmentation).

    Raises:
        DataError: non-finite landmarks, or frames that do not match ``idx``.
    """
    pts = np.asarray(points, dtype=np.float32)
    if frames.shape[0] != len(idx):
        raise DataError(f"trajectory: {frames.shape[0]} frames for {len(idx)} indices")
    rel = pts[idx][:, list(point_ids)] - pts[0, reference]  # (L, V, 2)
    if not np.isfinite(rel).all():
        raise DataError("trajectory: non-finite landmark coordinates")
    h, w = frames.shape[1:3]
    sel = pts[idx][:, list(point_ids)]
    xs = np.clip(np.rint(sel[..., 0]), 0, w - 1).astype(np.int64)
    ys = np.clip(np.rint(sel[..., 1]), 0, h - 1).astype(np.int64)
    colours = frames[np.arange(len(idx))[:, None], ys, xs].astype(np.float32) / 255.0  # (L, V, 3)
    sample = np.concatenate([rel, colours], axis=-1)
    if reverse:
        sample = sample[::-1]
    return np.ascontiguousarray(sample.transpose(1, 0, 2), dtype=np.float32)


__all__ = ["TRAMP_DEFAULT_FRAMES", "TRAMP_FRAMES", "TRAMP_POINTS", "TRAMP_REFERENCE", "trajectory_indices",
           "trajectory_sample"]
