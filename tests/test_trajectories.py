"""The landmark-trajectory stream (TraMP-Former) against hand-built examples: which points, which frames,
which origin, which colours, and how it reaches a batch through the protocol's clip dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.api import ClipGeometry, InputSpec
from benchmark.data.prepared import LandmarkScheme, PreparedDataset, PreparedWriter
from benchmark.data.trajectories import (TRAMP_FRAMES, TRAMP_POINTS, TRAMP_REFERENCE, trajectory_indices,
                                         trajectory_sample)
from benchmark.errors import DataError
from benchmark.protocols.pfed5 import ClipDataset
from benchmark.scales import ClipSettings


def test_the_63_points_are_seven_parts_of_nine_from_the_73_point_scheme():
    """The code deletes the two eye centres (73-point indices 1 and 55) and takes 7 x 9 points; the two lip
    parts share their corner points (code indices 18 and 27 after the deletion = 19 and 28)."""
    assert len(TRAMP_POINTS) == 63 and 1 not in TRAMP_POINTS and 55 not in TRAMP_POINTS
    parts = [TRAMP_POINTS[9 * k:9 * k + 9] for k in range(7)]
    assert parts[0] == (0, 2, 3, 4, 5, 6, 7, 8, 9)  # left eye without its centre (1)
    assert parts[1] == tuple(range(10, 19))  # left brow
    assert parts[2] == (54, 56, 57, 58, 59, 60, 61, 62, 63)  # right eye without its centre (55)
    assert parts[3] == tuple(range(64, 73))  # right brow
    assert parts[4] == (39, 41, 42, 43, 45, 47, 51, 49, 48)  # nose
    assert parts[5][0] == parts[6][0] == 19 and 28 in parts[5] and 28 in parts[6]
    assert TRAMP_REFERENCE == 53 and TRAMP_FRAMES == {"sit_at_rest": 64}


def test_frame_indices_loop_short_videos_and_take_the_last_frames_of_long_ones():
    # 3 frames, 8 wanted: looped 0 1 2 0 1 2 0 1; index_t = 2 idx / 8 - 1
    idx, t = trajectory_indices(3, 8)
    assert idx.tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert t.tolist() == pytest.approx([-1.0, -0.75, -0.5, -1.0, -0.75, -0.5, -1.0, -0.75])
    # 10 frames, 4 wanted: the last four (6..9), index_t = 2 * (6..9) / 4 - 1 = 2, 2.5, 3, 3.5 (as the code)
    idx, t = trajectory_indices(10, 4)
    assert idx.tolist() == [6, 7, 8, 9] and t.tolist() == pytest.approx([2.0, 2.5, 3.0, 3.5])
    # exactly L frames: all of them, index_t from -1
    idx, t = trajectory_indices(4, 4)
    assert idx.tolist() == [0, 1, 2, 3] and t.tolist() == pytest.approx([-1.0, -0.5, 0.0, 0.5])
    with pytest.raises(DataError, match="a trajectory needs frames"):
        trajectory_indices(0, 4)


def _example(frames: int = 3, size: int = 20):
    """73 points: point k of frame t at (k % 10 + t, k // 10 + 2 t) (in-image), the reference 53 at
    (3 + t, 5 + 2 t); frame t is black except pixel (y, x) = (k // 10 + 2 t, k % 10 + t), which holds
    (k, 2 k, t) for the points of the 63."""
    pts = np.zeros((frames, 73, 2), np.float32)
    img = np.zeros((frames, size, size, 3), np.uint8)
    for t in range(frames):
        for k in range(73):
            pts[t, k] = (k % 10 + t, k // 10 + 2 * t)
        for k in TRAMP_POINTS:
            img[t, k // 10 + 2 * t, k % 10 + t] = (k, 2 * k, t)
    return pts, img


def test_positions_are_relative_to_the_first_frames_reference_and_colours_are_read_under_the_points():
    pts, img = _example()
    idx = np.array([1, 2])
    sample = trajectory_sample(pts, img[idx], idx, point_ids=TRAMP_POINTS, reference=TRAMP_REFERENCE)
    assert sample.shape == (63, 2, 5) and sample.dtype == np.float32
    ref = pts[0, 53]  # (3, 5): frame 0, not the sampled frames
    for v, k in enumerate(TRAMP_POINTS):
        for j, t in enumerate(idx):
            x, y = k % 10 + t - ref[0], k // 10 + 2 * t - ref[1]
            assert sample[v, j, :2].tolist() == pytest.approx([x, y])
            assert sample[v, j, 2:].tolist() == pytest.approx([k / 255, 2 * k / 255, t / 255])
    rev = trajectory_sample(pts, img[idx], idx, point_ids=TRAMP_POINTS, reference=TRAMP_REFERENCE, reverse=True)
    assert np.array_equal(rev, sample[:, ::-1])
    bad = pts.copy()
    bad[1, 0, 0] = np.nan
    with pytest.raises(DataError, match="non-finite"):
        trajectory_sample(bad, img[idx], idx, point_ids=TRAMP_POINTS, reference=TRAMP_REFERENCE)


def _prepared(root, points: int = 73, frames: int = 5, size: int = 20):
    w = PreparedWriter(root, card="synthetic", crop_size=size, landmark_scheme=LandmarkScheme(f"t{points}", points, {}),
                       backend={"name": "test"})
    pts, img = _example(frames, size)
    for i, expr in enumerate(("sit_at_rest", "smile")):
        w.add_video(f"v{i}", img, pts[:, :points], np.ones(frames, bool), subject=f"s{i}", expression=expr, label=i,
                    split="train", fps=25)
    w.finalize()
    return PreparedDataset(root)


def _dataset(ds, train: bool, seed: int = 0):
    spec = InputSpec(rgb=False, trajectory=True, trajectory_frames=8, trajectory_frames_by_expression=(("sit_at_rest", 4),),
                     trajectory_points=TRAMP_POINTS, trajectory_reference=TRAMP_REFERENCE, trajectory_reverse_p=0.5)
    settings = ClipSettings(ClipGeometry(1, 4, 8, 8), (20, 20), 20, 8, spec)
    return ClipDataset(ds, pd.DataFrame(ds.videos), settings, train=train, seed=seed)


def test_the_clip_dataset_delivers_trajectories_per_expression_length(tmp_path):
    ds = _prepared(tmp_path / "d")
    test = _dataset(ds, train=False)
    sit, smile = test[0], test[1]
    assert sit["trajectory"].shape == (63, 4, 5) and sit["index_t"].shape == (4,)
    assert smile["trajectory"].shape == (63, 8, 5)  # 5 frames looped to 8
    pts, img = _example(5)
    idx, index_t = trajectory_indices(5, 8)
    expected = trajectory_sample(pts, img[idx], idx, point_ids=TRAMP_POINTS, reference=TRAMP_REFERENCE)
    assert torch.equal(smile["trajectory"], torch.from_numpy(expected))
    assert torch.equal(smile["index_t"], torch.from_numpy(index_t))
    # training reverses with p = 0.5, reproducibly per (seed, epoch, item); test never does
    train = _dataset(ds, train=True)
    flips = []
    for epoch in range(12):
        train.set_epoch(epoch)
        got = train[1]["trajectory"]
        assert torch.equal(got, smile["trajectory"]) or torch.equal(got, smile["trajectory"].flip(1))
        flips.append(not torch.equal(got, smile["trajectory"]))
        assert torch.equal(train[1]["trajectory"], got)  # same draw again
    assert 0 < sum(flips) < 12


def test_a_dataset_with_another_landmark_scheme_is_refused(tmp_path):
    ds = _prepared(tmp_path / "d", points=68)
    with pytest.raises(DataError, match="has 68 landmarks per frame; the trajectory stream takes the 73-point"):
        _dataset(ds, train=False)[0]
