"""PFED5 protocol: clip sampling against the official loader's rules, splits, augmentation."""

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.api import ClipGeometry, InputSpec
from benchmark.cards import load_card
from benchmark.data.prepared import LandmarkScheme, PreparedDataset, PreparedWriter
from benchmark.errors import SubjectLeakError
from benchmark.protocols.pfed5 import (
    ClipDataset, ClipSettings, centre_offset, check_subject_disjoint, expression_split, loop_clip_indices,
    train_clip_indices, to_tensor,
)
from benchmark.protocols.pfed5 import test_clip_indices as eval_clip_indices  # not a test


def test_loop_indices_restart_from_first_frame():
    # official load_short_clips: 1-based frames 1..n repeated -> 0-based 0..n-1 repeated
    assert loop_clip_indices(3, 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    assert loop_clip_indices(80, 80).tolist() == list(range(80))


def test_train_start_range_matches_official_randint():
    # random.randint(1, n - 80) (inclusive, 1-based) -> 0-based starts 0..n-81
    n, L = 90, 80
    rng = np.random.default_rng(0)
    starts = {int(train_clip_indices(n, L, rng)[0]) for _ in range(2000)}
    assert starts == set(range(0, n - L))  # 0..9 reached, 10 (would include the last frame) never
    clip = train_clip_indices(n, L, np.random.default_rng(1))
    assert np.array_equal(np.diff(clip), np.ones(L - 1))  # contiguous


def test_test_indices_equal_official_linspace_floor():
    n, L = 131, 80
    expected = [int(x) for x in np.linspace(0, n - 1, num=L)]  # int() floors positive numbers
    assert eval_clip_indices(n, L).tolist() == expected
    assert eval_clip_indices(50, 80).tolist() == loop_clip_indices(50, 80).tolist()


def test_centre_offsets_match_paper_sizes():
    assert centre_offset(256, 224) == 16 and centre_offset(64, 56) == 4


def test_to_tensor_imagenet_normalisation_by_hand():
    frames = np.zeros((2, 1, 1, 3), np.uint8)
    frames[..., 0] = 255
    x = to_tensor(frames, "imagenet")
    assert x.shape == (3, 2, 1, 1)
    assert x[0, 0, 0, 0].item() == pytest.approx((1 - 0.485) / 0.229)
    assert x[1, 0, 0, 0].item() == pytest.approx((0 - 0.456) / 0.224)


def test_subject_leak_is_an_error_naming_the_subject():
    train = pd.DataFrame({"subject": ["p1", "p2"], "video_id": ["a", "b"]})
    test = pd.DataFrame({"subject": ["p2"], "video_id": ["c"]})
    with pytest.raises(SubjectLeakError, match=r"'p2'.*video b.*video c"):
        check_subject_disjoint(train, test, "x.csv")


def _tiny_prepared(tmp_path, n_frames=(12, 30, 7, 20), size=16):
    """A prepared dataset whose frame t of video v has every pixel = 10*v + t (red),
    and whose left half is brighter in green (to detect flips)."""
    scheme = LandmarkScheme("test_1", 1, {})
    w = PreparedWriter(tmp_path / "ds", card="synthetic", crop_size=size, landmark_scheme=scheme,
                       backend={"name": "test"})
    for v, n in enumerate(n_frames):
        fr = np.zeros((n, size, size, 3), np.uint8)
        fr[..., 0] = (10 * v + np.arange(n))[:, None, None]
        fr[:, :, : size // 2, 1] = 200
        lm = np.full((n, 1, 2), size / 2, np.float32)
        w.add_video(f"v{v}", fr, lm, np.ones(n, bool), subject=f"s{v}", expression="smile", label=v % 5,
                    split="train" if v < 2 else "test", fps=25)
    w.finalize()
    return PreparedDataset(tmp_path / "ds")


def test_clip_dataset_samples_the_frames_the_protocol_says(tmp_path):
    ds = _tiny_prepared(tmp_path)
    card = load_card("synthetic")
    train, test = expression_split(ds, card, "smile")
    settings = ClipSettings(ClipGeometry(2, 4, 12, 4), frame_size=16, heatmap_resize=6,
                            inputs=InputSpec(rgb=True, heatmap=False, rgb_normalisation="unit"))
    te = ClipDataset(ds, test, settings, train=False)
    item = te[1]  # video v3 (20 frames): 8 evenly spaced frames
    red = (item["rgb"][0, :, 0, 0] * 255).round().int().tolist()
    assert red == [30 + i for i in eval_clip_indices(20, 8)]
    tr = ClipDataset(ds, train, settings, train=True, reps=3, seed=5)
    assert len(tr) == 6
    a, b = tr[4], tr[4]
    assert torch.equal(a["rgb"], b["rgb"])  # deterministic per (seed, epoch, index)
    tr.set_epoch(1)
    reds = [tuple((tr[i]["rgb"][0, :, 0, 0] * 255).round().int().tolist()) for i in range(6)]
    assert len(set(reds[1::2])) > 1  # video v1 (30 frames): different random windows


def test_flip_is_shared_between_streams_when_synchronised(tmp_path, monkeypatch):
    ds = _tiny_prepared(tmp_path)
    card = load_card("synthetic")
    train, _ = expression_split(ds, card, "smile")
    import benchmark.data.heatmaps as hmod

    # stand-in heatmap renderer: returns the RGB frames themselves, so flips are visible
    monkeypatch.setattr(hmod, "cached_heatmap_frames",
                        lambda dataset, vid, idx, **kw: dataset.frames(vid, idx), raising=False)
    for sync, expect_equal in (("flip", True), ("none", False)):
        settings = ClipSettings(ClipGeometry(1, 4, 16, 16), frame_size=16, heatmap_resize=16,
                                inputs=InputSpec(rgb=True, heatmap=True, rgb_normalisation="unit",
                                                 stream_sync=sync))
        tr = ClipDataset(ds, train, settings, train=True, reps=20, seed=3)
        same = []
        for i in range(len(tr)):
            it = tr[i]
            rgb_left_bright = it["rgb"][1, 0, 0, 0] > 0.5
            hm_left_bright = it["heatmap"][1, 0, 0, 0] > 0.5
            same.append(bool(rgb_left_bright == hm_left_bright))
        assert all(same) == expect_equal
