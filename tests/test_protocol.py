"""PFED5 protocol: clip sampling against the official loader's rules, splits, augmentation."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.api import ClipGeometry, ExemplarSpec, InputSpec
from benchmark.cards import load_card
from benchmark.data.prepared import LandmarkScheme, PreparedDataset, PreparedWriter
from benchmark.errors import DataError, LabelError, SubjectLeakError
from benchmark.protocols.pfed5 import (
    ClipDataset, centre_offset, check_subject_disjoint, eval_clip_indices, expression_split, loop_clip_indices,
    train_clip_indices, to_tensor,
)
from benchmark.scales import ClipSettings, get_scale


def _settings(geometry, frame=16, heatmap_resize=6, **inputs) -> ClipSettings:
    return ClipSettings(geometry, rgb_resize=(frame, frame), heatmap_render=frame, heatmap_resize=heatmap_resize,
                        inputs=InputSpec(**{"rgb": True, "heatmap": False, "rgb_normalisation": "unit", **inputs}))


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
    settings = _settings(ClipGeometry(2, 4, 12, 4))
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
        settings = _settings(ClipGeometry(1, 4, 16, 16), heatmap_resize=16, heatmap=True, stream_sync=sync)
        tr = ClipDataset(ds, train, settings, train=True, reps=20, seed=3)
        same = []
        for i in range(len(tr)):
            it = tr[i]
            rgb_left_bright = it["rgb"][1, 0, 0, 0] > 0.5
            hm_left_bright = it["heatmap"][1, 0, 0, 0] > 0.5
            same.append(bool(rgb_left_bright == hm_left_bright))
        assert all(same) == expect_equal


def _positional_prepared(tmp_path, size=16, n_frames=(12, 12, 12, 12), labels=(0, 1, 2, 3), subjects=None,
                         splits=("train", "train", "test", "test")):
    """Frames whose red channel is the column x and green channel the row y (times 10):
    every crop window and flip can be read back from the pixels."""
    scheme = LandmarkScheme("test_1", 1, {})
    w = PreparedWriter(tmp_path / "pos", card="synthetic", crop_size=size, landmark_scheme=scheme,
                       backend={"name": "test"})
    yy, xx = np.mgrid[0:size, 0:size]
    for v, n in enumerate(n_frames):
        fr = np.zeros((n, size, size, 3), np.uint8)
        fr[..., 0] = 10 * xx
        fr[..., 1] = 10 * yy
        fr[..., 2] = v
        w.add_video(f"v{v}", fr, np.full((n, 1, 2), size / 2, np.float32), np.ones(n, bool),
                    subject=(subjects or [f"s{i}" for i in range(len(n_frames))])[v], expression="smile",
                    label=labels[v], split=splits[v], fps=25)
    w.finalize()
    return PreparedDataset(tmp_path / "pos")


def _window(t: torch.Tensor) -> tuple[int, int, bool]:
    """(y offset, x offset, flipped) of a crop of the positional frames ``(3, T, h, w)`` in [0, 1]."""
    red = (t[0, 0] * 255 / 10).round().int()
    green = (t[1, 0] * 255 / 10).round().int()
    flipped = bool(red[0, 0] > red[0, -1])
    return int(green[0, 0]), int(red[0, -1] if flipped else red[0, 0]), flipped


def test_test_clips_are_centre_crops_and_never_flipped(tmp_path):
    ds = _positional_prepared(tmp_path)
    _, test = expression_split(ds, load_card("synthetic"), "smile")
    settings = _settings(ClipGeometry(1, 4, 10, 4), heatmap_resize=6)
    te = ClipDataset(ds, test, settings, train=False, seed=3)
    for i in range(len(te)):
        for epoch in (0, 5):
            te.set_epoch(epoch)
            assert _window(te[i]["rgb"]) == (3, 3, False)  # round((16 - 10) / 2) = 3 on both axes


def test_train_crops_cover_every_offset_and_both_flips(tmp_path):
    ds = _positional_prepared(tmp_path)
    train, _ = expression_split(ds, load_card("synthetic"), "smile")
    tr = ClipDataset(ds, train, _settings(ClipGeometry(1, 4, 14, 4)), train=True, reps=40, seed=1)
    seen = {_window(tr[i]["rgb"]) for i in range(len(tr))}
    assert {(y, x) for y, x, _ in seen} == {(y, x) for y in range(3) for x in range(3)}
    assert {f for _, _, f in seen} == {True, False}


def test_flip_crop_shares_the_crop_window_and_flip_shares_only_the_flip(tmp_path, monkeypatch):
    ds = _positional_prepared(tmp_path)
    train, _ = expression_split(ds, load_card("synthetic"), "smile")
    import benchmark.data.heatmaps as hmod

    monkeypatch.setattr(hmod, "cached_heatmap_frames",
                        lambda dataset, vid, idx, **kw: dataset.frames(vid, idx), raising=False)
    results = {}
    for sync in ("flip_crop", "flip", "none"):
        settings = _settings(ClipGeometry(1, 4, 12, 12), heatmap_resize=16, heatmap=True, stream_sync=sync)
        tr = ClipDataset(ds, train, settings, train=True, reps=30, seed=2)
        pairs = [(_window(it["rgb"]), _window(it["heatmap"])) for it in (tr[i] for i in range(len(tr)))]
        results[sync] = pairs
    assert all(a == b for a, b in results["flip_crop"])  # same window, same flip: identical streams
    assert all(a[2] == b[2] for a, b in results["flip"]) and not all(a == b for a, b in results["flip"])
    assert not all(a[2] == b[2] for a, b in results["none"])


def test_expression_split_checks_subjects_of_all_expressions_and_labels(tmp_path):
    card = load_card("synthetic")
    ds = _positional_prepared(tmp_path / "leak", subjects=["p1", "p2", "p2", "p3"])
    with pytest.raises(SubjectLeakError, match=r"'p2'.*train.*v1.*test.*v2"):
        expression_split(ds, card, "smile")
    bad = _positional_prepared(tmp_path / "label", labels=(0, 1, 9, 3))
    with pytest.raises(LabelError, match=r"video v2"):
        expression_split(bad, card, "smile")
    ok = _positional_prepared(tmp_path / "ok")
    train, test = expression_split(ok, card, "smile")
    assert list(train["video_id"]) == ["v0", "v1"] and list(test["video_id"]) == ["v2", "v3"]
    with pytest.raises(DataError, match="0 train and 0 test"):
        expression_split(ok, card, "frown")


def test_exemplars_come_from_the_training_partition_never_the_query(tmp_path):
    """Training pairs never pair a video with itself; test voters are training videos, seeded."""
    ds = _positional_prepared(tmp_path, n_frames=(12,) * 6, labels=(0, 1, 2, 3, 4, 0),
                              splits=("train", "train", "train", "test", "test", "test"))
    train, test = expression_split(ds, load_card("synthetic"), "smile")
    settings = _settings(ClipGeometry(1, 4, 12, 4))
    spec = ExemplarSpec(test_voters=4)
    tr = ClipDataset(ds, train, settings, train=True, reps=30, seed=0, exemplar_pool=train, exemplars=spec)
    drawn = set()
    for i in range(len(tr)):
        it = tr[i]
        j = it["exemplar"]["index"]
        assert train.iloc[j]["video_id"] != train.iloc[it["index"]]["video_id"]
        assert it["exemplar"]["label"].item() == train.iloc[j]["label"]
        # the exemplar's pixels are its own video's (blue channel = video number)
        assert round(it["exemplar"]["rgb"][2, 0, 0, 0].item() * 255) == int(train.iloc[j]["video_id"][1:])
        drawn.add((it["index"], j))
    assert drawn == {(q, e) for q in range(3) for e in range(3) if q != e}  # every other training video
    te = ClipDataset(ds, test, settings, train=False, seed=0, exemplar_pool=train, exemplars=spec)
    again = ClipDataset(ds, test, settings, train=False, seed=0, exemplar_pool=train, exemplars=spec)
    other = ClipDataset(ds, test, settings, train=False, seed=1, exemplar_pool=train, exemplars=spec)
    test_ids = set(test["video_id"])
    for row in range(len(te)):
        assert np.array_equal(te.voters(row), again.voters(row))  # reproducible
        for k in range(spec.test_voters):
            te.set_voter(k)
            ex = te[row]["exemplar"]
            assert train.iloc[ex["index"]]["video_id"] not in test_ids
    assert any(not np.array_equal(te.voters(r), other.voters(r)) for r in range(len(te)))  # the seed matters
    with pytest.raises(DataError, match="at least 2 training videos"):
        ClipDataset(ds, train.iloc[:1], settings, train=True, exemplar_pool=train.iloc[:1], exemplars=spec)


def test_tiny_scale_shrinks_every_method_input_the_same_way():
    tiny, paper = get_scale("tiny"), get_scale("paper")
    qafe = InputSpec(heatmap=True)
    assert paper.resolve(qafe, 80).to_json() == {"geometry": {"n_subclips": 5, "subclip_len": 16, "rgb_size": 224,
                                                             "heatmap_size": 56}, "rgb_resize": [256, 256],
                                                "heatmap_render": 256, "heatmap_resize": 64}
    assert tiny.resolve(qafe, 80).to_json() == {"geometry": {"n_subclips": 2, "subclip_len": 8, "rgb_size": 40,
                                                            "heatmap_size": 28}, "rgb_resize": [48, 48],
                                               "heatmap_render": 128, "heatmap_resize": 32}
    # heatmap_render: the scale's own size when set, else its frame size
    assert dataclasses.replace(tiny, heatmap_render=None).resolve(qafe, 80).heatmap_render == 48
    c3d = InputSpec(rgb_size=112, rgb_resize=(171, 128), min_rgb_size=112, min_subclip_len=16)
    assert paper.resolve(c3d, 80).rgb_resize == (171, 128)
    t = tiny.resolve(c3d, 80)
    assert (t.geometry.rgb_size, t.geometry.subclip_len, t.rgb_resize) == (112, 16, (112, 112))
    assert paper.resolve(InputSpec(subclip_len=16), 144).geometry.n_subclips == 9  # UNBC: 144 frames
    assert paper.resolve(InputSpec(subclip_len=16, clip_len=16), 80).geometry.n_subclips == 1


# ------------------------------------------------ helpers the mutation run found untested (tests/mutation.cfg)
def test_resize_frames_is_per_frame_area_resize_to_w_h():
    import cv2

    from benchmark.data.prepared import resize_frames

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (3, 12, 20, 3), dtype=np.uint8)  # T=3, H=12, W=20
    out = resize_frames(frames, (7, 5))  # (W, H), a non-integer ratio (area != bilinear)
    assert out.shape == (3, 5, 7, 3) and out.dtype == np.uint8
    for f, o in zip(frames, out):
        assert np.array_equal(o, cv2.resize(f, (7, 5), interpolation=cv2.INTER_AREA))
    assert not np.array_equal(out[0], cv2.resize(frames[0], (7, 5), interpolation=cv2.INTER_LINEAR))
    assert resize_frames(frames, (20, 12)) is frames  # already that size: no copy, no resampling
    # one side equal is not "already that size"
    assert resize_frames(frames, (20, 6)).shape == (3, 6, 20, 3)
    assert resize_frames(frames, (10, 12)).shape == (3, 12, 10, 3)


def test_subject_leak_message_names_the_file_subjects_and_fix():
    train = pd.DataFrame({"subject": ["a", "b", "c", "d", "e", "f"], "video_id": ["a1", "b1", "c1", "d1", "e1", "f1"]})
    test = pd.DataFrame({"subject": ["a", "c", "d", "e", "f", "z"], "video_id": ["a2", "c2", "d2", "e2", "f2", "z2"]})
    with pytest.raises(SubjectLeakError) as exc:
        check_subject_disjoint(train, test, "/data/videos.csv")
    assert str(exc.value) == ("/data/videos.csv: subject 'a' is in both train (e.g. video a1) and test (e.g. video a2)"
                              " (and 4 more: c, d, e); fix the split so that every subject is in one partition only")
    with pytest.raises(SubjectLeakError, match=r"\(e\.g\. video a2\) \(and 1 more: c\); fix"):
        check_subject_disjoint(train.iloc[:3], test.iloc[:2], "x.csv")
    with pytest.raises(SubjectLeakError) as exc:
        check_subject_disjoint(train.iloc[:1], test.iloc[:1], "x.csv")
    assert str(exc.value).endswith("(e.g. video a2); fix the split so that every subject is in one partition only")


def test_expression_split_errors_name_videos_csv_and_one_video_per_side_is_enough(tmp_path):
    card = load_card("synthetic")
    ds = _positional_prepared(tmp_path, n_frames=(12, 12), labels=(0, 1), splits=("train", "test"))
    train, test = expression_split(ds, card, "smile")  # one train and one test video: valid
    assert (len(train), len(test)) == (1, 1)
    where = str(ds.root / "videos.csv")
    with pytest.raises(DataError) as exc:
        expression_split(ds, card, "frown")
    assert str(exc.value).startswith(f"{where}: expression 'frown' has 0 train and 0 test videos")
    assert str(exc.value).endswith("both partitions need at least one")
    only_train = _positional_prepared(tmp_path / "t", n_frames=(12, 12), labels=(0, 1), splits=("train", "train"))
    with pytest.raises(DataError, match="has 2 train and 0 test videos"):
        expression_split(only_train, card, "smile")
    leak = _positional_prepared(tmp_path / "l", n_frames=(12, 12), labels=(0, 1), subjects=["s0", "s0"],
                                splits=("train", "test"))
    with pytest.raises(SubjectLeakError, match=f"^{leak.root / 'videos.csv'}: subject 's0'"):
        expression_split(leak, card, "smile")


def test_loop_indices_of_a_one_frame_video_and_their_dtype():
    assert loop_clip_indices(1, 4).tolist() == [0, 0, 0, 0]
    assert loop_clip_indices(5, 3).dtype == np.int64
    with pytest.raises(DataError, match="^a video needs at least one frame$"):
        loop_clip_indices(0, 4)


def test_to_tensor_stays_float32_after_normalisation():
    frames = np.full((2, 4, 4, 3), 128, np.uint8)
    for norm in ("imagenet", "kinetics", "minus_one_one", "unit", None):
        t = to_tensor(frames, norm)
        assert t.dtype == torch.float32 and t.shape == (3, 2, 4, 4), norm
    # imagenet: (128/255 - 0.485) / 0.229 on the red channel
    assert to_tensor(frames, "imagenet")[0, 0, 0, 0].item() == pytest.approx((128 / 255 - 0.485) / 0.229, abs=1e-6)


def test_to_tensor_equals_the_straightforward_numpy_chain_bit_for_bit():
    """The fast path (uint8 transpose, in-place float ops) against x / 255, (x - mean) / std in numpy
    float32 then a transpose: every value of every normalisation identical, also on a non-contiguous
    (flipped, cropped) view as the protocol passes."""
    from benchmark.protocols.pfed5 import NORMALISATIONS

    rng = np.random.default_rng(5)
    frames = rng.integers(0, 256, (3, 9, 11, 3), dtype=np.uint8)
    frames[0, 0, 0] = [0, 255, 128]
    for view in (frames, frames[:, 1:8, ::-1]):
        for norm in (*NORMALISATIONS, None):
            x = view.astype(np.float32) / 255.0
            ms = NORMALISATIONS.get(norm) if norm else None
            if ms is not None:
                x = (x - np.asarray(ms[0], np.float32)) / np.asarray(ms[1], np.float32)
            expected = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2)))
            got = to_tensor(view, norm)
            assert got.is_contiguous() and torch.equal(got, expected), norm


def test_heatmap_stream_is_the_rendered_volume_resized_and_centre_cropped(tmp_path):
    """Test clips: the heatmap input is cached_heatmap_frames at the method's mode, sigma and render
    size, for the eval frame indices, area-resized to heatmap_resize and centre-cropped; RGB uses the
    method's normalisation."""
    import cv2

    from benchmark.data.heatmaps import cached_heatmap_frames

    ds = _positional_prepared(tmp_path, n_frames=(12, 12, 20, 12))
    _, test = expression_split(ds, load_card("synthetic"), "smile")
    idx = eval_clip_indices(20, 8)  # v2: 20 frames -> 8 evenly spaced

    def expected(**kw):
        hm = cached_heatmap_frames(ds, "v2", idx, **kw)
        return to_tensor(np.stack([cv2.resize(f, (7, 7), interpolation=cv2.INTER_AREA) for f in hm])[:, 1:6, 1:6],
                         None)

    for mode, sigma in (("paper", 2.0), ("points", 1.0)):  # "paper" is the default mode: try another too
        base = _settings(ClipGeometry(1, 8, 12, 5), frame=16, heatmap_resize=7, heatmap=True, heatmap_mode=mode,
                         heatmap_sigma=sigma, rgb_normalisation="imagenet")
        settings = ClipSettings(base.geometry, base.rgb_resize, 24, 7, base.inputs)  # rendered at 24 px
        it = ClipDataset(ds, test, settings, train=False)[0]
        assert torch.equal(it["heatmap"], expected(mode=mode, sigma=sigma, size=24)), mode
        other_mode = "points" if mode == "paper" else "paper"
        for kw in ({"mode": other_mode, "sigma": sigma, "size": 24}, {"mode": mode, "sigma": sigma, "size": 16}):
            assert not torch.equal(it["heatmap"], expected(**kw)), (mode, kw)
        if mode == "paper":
            assert not torch.equal(it["heatmap"], expected(mode=mode, sigma=1.0, size=24))
    rgb = ds.frames("v2", idx)[:, 2:14, 2:14]
    assert torch.allclose(it["rgb"], to_tensor(rgb, "imagenet"))
    assert not torch.allclose(it["rgb"], to_tensor(rgb, None))


def test_train_heatmap_crops_cover_every_offset_when_not_synced(tmp_path, monkeypatch):
    ds = _positional_prepared(tmp_path)
    train, _ = expression_split(ds, load_card("synthetic"), "smile")
    import benchmark.data.heatmaps as hmod

    monkeypatch.setattr(hmod, "cached_heatmap_frames", lambda dataset, vid, idx, **kw: dataset.frames(vid, idx))
    settings = _settings(ClipGeometry(1, 4, 12, 12), heatmap_resize=16, heatmap=True, stream_sync="none")
    tr = ClipDataset(ds, train, settings, train=True, reps=60, seed=4)
    windows = [_window(tr[i]["heatmap"]) for i in range(len(tr))]
    assert {w[:2] for w in windows} == {(y, x) for y in range(5) for x in range(5)}  # 0..16-12, each reached
    assert {w[2] for w in windows} == {True, False}  # its own coin: both flips
    for seed in range(6):  # test clips: centred on both axes, never flipped, whatever the seed
        te = ClipDataset(ds, train, settings, train=False, seed=seed)
        assert all(_window(te[i]["heatmap"]) == (2, 2, False) for i in range(len(te)))


def test_clip_dataset_lengths_voter_default_and_errors(tmp_path):
    ds = _positional_prepared(tmp_path, n_frames=(3, 12, 12, 12), labels=(0, 1, 2, 3),
                              splits=("train", "train", "test", "test"))
    train, test = expression_split(ds, load_card("synthetic"), "smile")
    s = _settings(ClipGeometry(1, 4, 12, 4))
    assert len(ClipDataset(ds, train, s, train=True, reps=3)) == 6
    assert len(ClipDataset(ds, test, s, train=False, reps=3)) == 2  # test clips are not repeated
    assert len(ClipDataset(ds, train, s, train=True)) == 2
    # defaults: seed 0 and epoch 0 until set_epoch
    a, b = ClipDataset(ds, train, s, train=True, reps=4), ClipDataset(ds, train, s, train=True, reps=4, seed=0)
    first = [_window(a[i]["rgb"]) for i in range(len(a))]
    assert first == [_window(b[i]["rgb"]) for i in range(len(b))]
    a.set_epoch(0)
    assert first == [_window(a[i]["rgb"]) for i in range(len(a))]
    with pytest.raises(ValueError, match="^unknown normalisation 'zscore'; choose one of "
                                         + ", ".join(__import__("benchmark.api").api.NORMALISATIONS) + "$"):
        to_tensor(np.zeros((1, 2, 2, 3), np.uint8), "zscore")
    # a 3-frame training video loops to the clip length (official load_short_clips)
    tr = ClipDataset(ds, train, s, train=True)
    assert [round(v * 255) for v in tr[0]["rgb"][2, :, 0, 0].tolist()] == [0] * 4
    assert train_clip_indices(3, 4, np.random.default_rng(0)).tolist() == [0, 1, 2, 0]
    assert train_clip_indices(4, 4, np.random.default_rng(0)).tolist() == [0, 1, 2, 3]  # exactly clip_len frames
    # test-time exemplars are the voters, voter 0 by default
    spec = ExemplarSpec(test_voters=3)
    big = _positional_prepared(tmp_path / "b", n_frames=(12,) * 6, labels=(0, 1, 2, 3, 4, 0),
                               splits=("train", "train", "train", "train", "test", "test"))
    btrain, btest = expression_split(big, load_card("synthetic"), "smile")
    four = ClipDataset(big, btest, s, train=False, seed=3, exemplar_pool=btrain, exemplars=ExemplarSpec(4))
    assert all(sorted(four.voters(r).tolist()) == [0, 1, 2, 3] for r in range(len(four)))  # k = pool: no repeat
    te = ClipDataset(big, btest, s, train=False, seed=3, exemplar_pool=btrain, exemplars=spec)
    for row in range(len(te)):
        assert te[row]["exemplar"]["index"] == te.voters(row)[0]
        te.set_voter(2)
        assert te[row]["exemplar"]["index"] == te.voters(row)[2]
        te.set_voter(0)
    with pytest.raises(DataError, match="^an exemplar pool needs the method's ExemplarSpec$"):
        ClipDataset(big, btest, s, train=False, exemplar_pool=btrain)
    with pytest.raises(DataError, match="^no training video to draw exemplars from$"):
        ClipDataset(big, btest, s, train=False, exemplar_pool=btrain.iloc[:0], exemplars=spec)
    two = ClipDataset(big, btrain.iloc[:2], s, train=True, exemplar_pool=btrain.iloc[:2], exemplars=spec)
    assert {two[i]["exemplar"]["index"] for i in range(2)} == {1, 0}  # two videos: each pairs with the other
    with pytest.raises(DataError, match=r"^1 training video\(s\): an exemplar other than the query itself needs "
                                        r"at least 2 training videos$"):
        ClipDataset(big, btrain.iloc[:1], s, train=True, exemplar_pool=btrain.iloc[:1], exemplars=spec)
    with pytest.raises(DataError, match="^RGB crop 17 larger than the resized frames 16x16$"):
        ClipDataset(ds, test, _settings(ClipGeometry(1, 4, 17, 4)), train=False)
    wide = ClipSettings(ClipGeometry(1, 4, 17, 4), (20, 16), 16, 6, s.inputs)
    with pytest.raises(DataError, match="^RGB crop 17 larger than the resized frames 20x16$"):
        ClipDataset(ds, test, wide, train=False)
    with pytest.raises(DataError, match="^heatmap crop 7 larger than the resized heatmaps 6$"):
        ClipDataset(ds, test, _settings(ClipGeometry(1, 4, 12, 7), heatmap=True), train=False)
