"""Landmark heatmap volumes (benchmark.data.heatmaps).

The per-landmark reference implementations (:mod:`benchmark.data.heatmap_reference`) follow the
released ``dataset/generate_landmark_heatmap.py`` (shuchaoduan/QAFE-Net) literally, one landmark
and one frame at a time, with ``cv2.GaussianBlur`` and ``cv2.applyColorMap``; the vectorised
renderer must match them byte for byte. ``tests/test_bench.py`` and ``qafe-bench perf`` time them.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from benchmark.data.heatmaps import (
    cached_heatmap_frames,
    gaussian_table,
    heatmap_cache_key,
    jet_rgb_lut,
    render_heatmap_frames,
    write_heatmap_cache,
)
from benchmark.data.prepared import LandmarkScheme, PreparedDataset, PreparedWriter
from benchmark.errors import ManifestError

# --------------------------------------------------------------------------------------------
# literal per-landmark references (loops on purpose): benchmark/data/heatmap_reference.py


from benchmark.data.heatmap_reference import (  # noqa: E402  the literal per-landmark references
    _one_landmark_map,
    _round_clamp,
    random_points,
    reference_official,
    reference_paper,
)


# --------------------------------------------------------------------------------------------
# hand-worked single-landmark examples


def _blurred_1d(d: int) -> float:
    """(k * g)(d): the 7-tap kernel [2,7,14,18,14,7,2]/64 applied to g(d) = exp(-d^2/2), |d| <= 5."""
    kern = [2, 7, 14, 18, 14, 7, 2]
    g = lambda e: math.exp(-e * e / 2) if abs(e) <= 5 else 0.0  # noqa: E731
    return sum(kern[m + 3] * g(d - m) for m in range(-3, 4)) / 64


def _hand_value(dx: int, dy: int) -> float:
    """Normalised blurred Gaussian at offset (dx, dy): separable, peak 1 at the landmark."""
    c0 = _blurred_1d(0)
    return _blurred_1d(dx) * _blurred_1d(dy) / (c0 * c0)


HAND_OFFSETS = [(0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (2, 1), (3, 2), (0, 4), (5, 0), (8, 0)]
# floor(255 * value): worked out from the formulas above (e.g. (1, 0): 255 * 0.850633 = 216.91 -> 216)
HAND_LEVELS = {(0, 0): 255, (1, 0): 216, (0, 1): 216, (1, 1): 184, (2, 0): 133, (2, 1): 113,
               (3, 2): 30, (0, 4): 16, (5, 0): 2, (8, 0): 0}


def test_hand_levels_follow_from_the_formula():
    for (dx, dy), level in HAND_LEVELS.items():
        v = 255 * _hand_value(dx, dy)
        assert math.floor(v) == level
        # far from a truncation boundary, relative to float32 precision: float32 agrees
        assert v == level or (v - level > 1e-4 * v and level + 1 - v > 1e-3)


def _jet_rgb(level: int) -> tuple[int, int, int]:
    bgr = cv2.applyColorMap(np.array([[level]], np.uint8), cv2.COLORMAP_JET)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def test_official_single_landmark_by_hand():
    x0, y0 = 10, 12
    pts = np.array([[[x0, y0]]], np.float32)
    out = render_heatmap_frames(pts, size=(32, 32), mode="official", skip_first_landmark=False)
    assert out.shape == (1, 32, 32, 3) and out.dtype == np.uint8
    # a dummy landmark 0 is skipped by default and gives the same image
    dummy = np.array([[[30.0, 2.0], [x0, y0]]], np.float32)
    np.testing.assert_array_equal(render_heatmap_frames(dummy, size=(32, 32), mode="official"), out)
    assert tuple(out[0, y0, x0]) == (128, 0, 0)  # JET(255), peak: dark red in RGB order
    assert tuple(out[0, 0, 31]) == (0, 0, 128)  # JET(0), background: dark blue in RGB order
    assert tuple(out[0, y0, x0 + 8]) == (0, 0, 128)  # blurred value > 0 but truncates to level 0
    for (dx, dy), level in HAND_LEVELS.items():
        for sx, sy in [(1, 1), (-1, 1), (1, -1), (-1, -1)]:
            assert tuple(out[0, y0 + sy * dy, x0 + sx * dx]) == _jet_rgb(level), (dx, dy, sx, sy)
    assert _jet_rgb(216) != _jet_rgb(217)  # the check above can tell one level apart


def test_official_rgb_order_matches_pil_reading_of_a_cv2_written_file(tmp_path):
    pts = np.array([[[5.0, 5.0], [10, 12], [20, 9]]], np.float32)
    out = render_heatmap_frames(pts, size=(24, 32), mode="official")
    bgr = out[0, :, :, ::-1]
    path = tmp_path / "hm.png"
    assert cv2.imwrite(str(path), np.ascontiguousarray(bgr))  # what the authors' cv2 saving produced
    PIL = pytest.importorskip("PIL.Image")
    seen = np.asarray(PIL.open(path).convert("RGB"))  # what their loader read
    np.testing.assert_array_equal(seen, out[0])
    np.testing.assert_array_equal(jet_rgb_lut()[0], [0, 0, 128])
    np.testing.assert_array_equal(jet_rgb_lut()[255], [128, 0, 0])


def test_paper_single_landmark_by_hand():
    x0, y0 = 10, 12
    pts = np.array([[[x0, y0]]], np.float32)
    frames = np.full((1, 32, 32, 3), 200, np.uint8)
    out = render_heatmap_frames(pts, size=(32, 32), mode="paper", frames=frames)
    for (dx, dy) in HAND_OFFSETS:
        expected = round(200 * _hand_value(dx, dy))  # e.g. (1, 1): 144.715 -> 145
        assert abs(200 * _hand_value(dx, dy) - expected) != 0.5
        for sx, sy in [(1, 1), (-1, -1)]:
            assert (out[0, y0 + sy * dy, x0 + sx * dx] == expected).all(), (dx, dy)
    assert (out[0, y0, x0] == 200).all() and (out[0, y0 + 1, x0 + 1] == 145).all()
    # support: 5 (Gaussian window) + 3 (blur) = 8 px in each axis
    mask = np.zeros((32, 32), bool)
    mask[y0 - 8:y0 + 9, x0 - 8:x0 + 9] = True
    assert (out[0][~mask] == 0).all()
    assert (out[0][mask].sum(axis=-1) > 0).sum() < mask.sum()  # corners of the support round to 0


def test_gaussian_table_values():
    g = gaussian_table(1.0)
    assert g.shape == (11, 11) and g.dtype == np.float32
    assert g[5, 5] == 1.0
    np.testing.assert_allclose(g[5, 6], math.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(g[0, 0], math.exp(-25.0), rtol=1e-5)
    g3 = gaussian_table(3, kernel_size=7)
    assert g3.shape == (7, 7)
    np.testing.assert_allclose(g3[3, 6], math.exp(-9 / 18), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# vectorised == literal reference


@pytest.mark.parametrize("sigma", [1, 3, 7])
@pytest.mark.parametrize("size", [(64, 64), (41, 57)])
def test_official_equals_reference(sigma, size):
    rng = np.random.default_rng(sigma * 1000 + size[1])
    pts = random_points(rng, 6, 73, *size)
    out = render_heatmap_frames(pts, size=size, mode="official", sigma=sigma)
    ref = reference_official(pts, size, sigma=sigma)
    np.testing.assert_array_equal(out, ref)  # exact uint8 equality, no LSB tolerance


def test_official_equals_reference_at_paper_size():
    rng = np.random.default_rng(7)
    pts = random_points(rng, 4, 73, 256, 256)
    np.testing.assert_array_equal(render_heatmap_frames(pts, size=256, mode="official"),
                                  reference_official(pts, (256, 256)))


def test_official_without_skip_equals_reference():
    rng = np.random.default_rng(3)
    pts = random_points(rng, 3, 10, 48, 48)
    out = render_heatmap_frames(pts, size=48, mode="official", skip_first_landmark=False)
    np.testing.assert_array_equal(out, reference_official(pts, (48, 48), skip_first_landmark=False))


def test_official_skips_landmark_zero_by_default():
    pts = np.array([[[5.0, 5.0], [30.0, 30.0]]], np.float32)
    out = render_heatmap_frames(pts, size=40, mode="official")
    assert tuple(out[0, 5, 5]) == (0, 0, 128)  # landmark 0 not drawn
    assert tuple(out[0, 30, 30]) == (128, 0, 0)
    out_all = render_heatmap_frames(pts, size=40, mode="official", skip_first_landmark=False)
    assert tuple(out_all[0, 5, 5]) == (128, 0, 0)


@pytest.mark.parametrize("sigma", [1.0, 3.0])
def test_paper_equals_reference(sigma):
    rng = np.random.default_rng(11)
    size = (50, 62)
    pts = random_points(rng, 5, 73, *size)
    frames = rng.integers(0, 256, (5, *size, 3), dtype=np.uint8)
    out = render_heatmap_frames(pts, size=size, mode="paper", sigma=sigma, frames=frames)
    np.testing.assert_array_equal(out, reference_paper(pts, frames, size, sigma=sigma))


def test_outside_landmarks_are_clamped_not_nan():
    pts = np.array([[[-100.0, -100.0], [-100.0, -100.0], [500.0, 3.0]]], np.float32)
    out = render_heatmap_frames(pts, size=32, mode="official")
    assert tuple(out[0, 0, 0]) == (128, 0, 0)  # clamped to (0, 0)
    assert tuple(out[0, 3, 31]) == (128, 0, 0)  # clamped to (31, 3)
    assert tuple(out[0, 16, 16]) == (0, 0, 128)


# --------------------------------------------------------------------------------------------
# properties of paper and points modes


def test_paper_zero_far_from_landmarks_and_below_rgb():
    rng = np.random.default_rng(5)
    size = (64, 80)
    pts = random_points(rng, 4, 20, *size)
    frames = rng.integers(0, 256, (4, *size, 3), dtype=np.uint8)
    out = render_heatmap_frames(pts, size=size, mode="paper", frames=frames, sigma=3)
    assert out.shape == frames.shape and out.dtype == np.uint8
    assert (out <= frames).all()
    xs = np.clip(np.rint(pts[..., 0]), 0, size[1] - 1)
    ys = np.clip(np.rint(pts[..., 1]), 0, size[0] - 1)
    yy, xx = np.mgrid[:size[0], :size[1]]
    for t in range(4):
        cheb = np.min(np.maximum(np.abs(xx[None] - xs[t][:, None, None]), np.abs(yy[None] - ys[t][:, None, None])),
                      axis=0)
        assert (out[t][cheb > 8] == 0).all()  # beyond window radius 5 + blur radius 3
        assert out[t][cheb == 0].any()


def test_paper_requires_frames():
    pts = np.zeros((2, 3, 2), np.float32)
    with pytest.raises(ValueError, match="frames"):
        render_heatmap_frames(pts, size=16, mode="paper")
    with pytest.raises(ValueError, match="frames"):
        render_heatmap_frames(pts, size=16, mode="paper", frames=np.zeros((2, 16, 15, 3), np.uint8))


def test_points_mode_marks_exactly_the_landmarks():
    rng = np.random.default_rng(2)
    t, k, size = 5, 30, (40, 50)
    flat = np.stack([rng.choice(size[0] * size[1], k, replace=False) for _ in range(t)])
    pts = np.stack([flat % size[1], flat // size[1]], axis=-1).astype(np.float32)
    pts += rng.uniform(-0.45, 0.45, pts.shape).astype(np.float32)  # still rounds to the same pixel
    out = render_heatmap_frames(pts, size=size, mode="points", sigma=7)
    assert out.shape == (t, *size, 3)
    assert ((out == 0) | (out == 255)).all()
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    for i in range(t):
        assert np.count_nonzero(out[i, ..., 0]) == k
        assert (out[i, flat[i] // size[1], flat[i] % size[1], 0] == 255).all()
    dup = pts.copy()
    dup[:, 1] = dup[:, 0]
    assert np.count_nonzero(render_heatmap_frames(dup, size=size, mode="points")[0, ..., 0]) == k - 1


def test_sigma_widens_the_spread():
    pts = np.array([[[32.0, 32.0]]], np.float32)
    frames = np.full((1, 64, 64, 3), 255, np.uint8)
    masses, half_areas = [], []
    for sigma in (1, 3, 5, 7):
        out = render_heatmap_frames(pts, size=64, mode="paper", sigma=sigma, frames=frames)[0, ..., 0]
        masses.append(int(out.astype(np.int64).sum()))
        half_areas.append(int((out >= 128).sum()))
    assert masses == sorted(masses) and len(set(masses)) == 4
    assert half_areas[1] > half_areas[0]
    off1 = render_heatmap_frames(pts, size=64, mode="official", sigma=1, skip_first_landmark=False)[0]
    off3 = render_heatmap_frames(pts, size=64, mode="official", sigma=3, skip_first_landmark=False)[0]
    bg = np.array([0, 0, 128], np.uint8)
    assert (off3 != bg).any(-1).sum() > (off1 != bg).any(-1).sum()


def test_invalid_arguments():
    pts = np.zeros((1, 3, 2), np.float32)
    with pytest.raises(ValueError, match="mode"):
        render_heatmap_frames(pts, size=8, mode="nope")
    with pytest.raises(ValueError, match="sigma"):
        render_heatmap_frames(pts, size=8, mode="official", sigma=0)
    with pytest.raises(ValueError, match="kernel_size"):
        render_heatmap_frames(pts, size=8, mode="official", kernel_size=10)
    with pytest.raises(ValueError, match="smoothing"):
        render_heatmap_frames(pts, size=8, mode="official", smoothing="box")
    with pytest.raises(ValueError, match="NaN"):
        render_heatmap_frames(np.full((1, 3, 2), np.nan, np.float32), size=8, mode="official")
    with pytest.raises(ValueError, match=r"\(T, K, 2\)"):
        render_heatmap_frames(np.zeros((3, 2), np.float32), size=8, mode="official")
    with pytest.raises(ValueError, match="no landmark"):
        render_heatmap_frames(np.zeros((1, 1, 2), np.float32), size=8, mode="official")


def test_paper_rounds_half_to_even():
    # kernel 1, no smoothing: a doubled landmark gets weight 2 -> 1.0, a single one 1 -> exactly 0.5
    pts = np.array([[[2.0, 2.0], [2.0, 2.0], [5.0, 2.0], [7.0, 2.0]]], np.float32)
    frames = np.zeros((1, 8, 10, 3), np.uint8)
    frames[0, 2, 5] = [201, 203, 1]
    frames[0, 2, 7] = [255, 0, 3]
    frames[0, 2, 2] = [9, 99, 255]
    out = render_heatmap_frames(pts, size=(8, 10), mode="paper", frames=frames, kernel_size=1, smoothing="none")
    assert out[0, 2, 5].tolist() == [100, 102, 0]  # 100.5 -> 100, 101.5 -> 102, 0.5 -> 0
    assert out[0, 2, 7].tolist() == [128, 0, 2]  # 127.5 -> 128, 1.5 -> 2
    assert out[0, 2, 2].tolist() == [9, 99, 255]
    assert np.count_nonzero(out) == 7


def test_smoothing_none_and_kernel_size():
    pts = np.array([[[10.0, 10.0]]], np.float32)
    frames = np.full((1, 24, 24, 3), 100, np.uint8)
    raw = render_heatmap_frames(pts, size=24, mode="paper", frames=frames, smoothing="none", kernel_size=3)
    nz = np.argwhere(raw[0, ..., 0] > 0)
    assert nz.min(0).tolist() == [9, 9] and nz.max(0).tolist() == [11, 11]
    assert raw[0, 10, 11, 0] == round(100 * math.exp(-0.5))


# --------------------------------------------------------------------------------------------
# cache


def _tiny_dataset(tmp_path, crop=32, k=6, frame_format="npy") -> PreparedDataset:
    rng = np.random.default_rng(0)
    scheme = LandmarkScheme("synthetic_6", k, {})
    writer = PreparedWriter(tmp_path / "prep", card="synthetic", crop_size=crop, landmark_scheme=scheme,
                            backend={"name": "test"}, frame_format=frame_format)
    for vid, t in [("vid_a", 5), ("vid_b", 9)]:
        frames = rng.integers(0, 256, (t, crop, crop, 3), dtype=np.uint8)
        lm = random_points(rng, t, k, crop, crop, margin=3)
        writer.add_video(vid, frames, lm, np.ones(t, bool), subject="s1", expression="smile",
                         label=1.0, split="train", fps=25.0)
    writer.finalize()
    return PreparedDataset(tmp_path / "prep")


CACHE_CASES = [
    dict(mode="paper", sigma=1.0, size=None),
    dict(mode="official", sigma=3, size=None),
    dict(mode="points", sigma=1.0, size=None),
    dict(mode="paper", sigma=1.0, size=24),
    dict(mode="official", sigma=1, size=(40, 48)),
]


@pytest.mark.parametrize("case", CACHE_CASES, ids=lambda c: f"{c['mode']}-{c['size']}")
def test_cache_identical_to_on_the_fly(tmp_path, case):
    ds = _tiny_dataset(tmp_path)
    idx = np.array([8, 0, 3, 3, 1])
    fly_full = cached_heatmap_frames(ds, "vid_b", **case)
    fly = cached_heatmap_frames(ds, "vid_b", idx, **case)
    np.testing.assert_array_equal(fly, fly_full[idx])
    folder = write_heatmap_cache(ds, **case, chunk_frames=4)
    h, w = (32, 32) if case["size"] is None else ((case["size"],) * 2 if isinstance(case["size"], int)
                                                    else case["size"])
    assert folder.name == heatmap_cache_key(case["mode"], case["sigma"], (h, w))
    path = folder / "vid_b.npy"
    assert path.is_file() and (folder / "vid_a.npy").is_file() and (folder / "params.json").is_file()
    stored = np.load(path)
    assert stored.shape == (9, h, w, 3) and stored.dtype == np.uint8
    np.testing.assert_array_equal(stored, fly_full)
    cached = cached_heatmap_frames(ds, "vid_b", idx, **case)
    np.testing.assert_array_equal(cached, fly)
    # the cached path really is read: change the file and see it
    np.save(path, np.zeros_like(stored))
    assert not cached_heatmap_frames(ds, "vid_b", idx, **case).any()


def test_cache_paper_with_frame_resize_matches_direct_render(tmp_path):
    ds = _tiny_dataset(tmp_path)
    pts, _ = ds.landmarks("vid_a")
    frames = ds.frames("vid_a")
    small = np.stack([cv2.resize(f, (16, 24), interpolation=cv2.INTER_AREA) for f in frames])
    direct = render_heatmap_frames(pts * np.float32([16 / 32, 24 / 32]), size=(24, 16), mode="paper",
                                   frames=small)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_a", mode="paper", size=(24, 16)), direct)


def test_cache_points_scales_landmarks(tmp_path):
    ds = _tiny_dataset(tmp_path)
    pts, _ = ds.landmarks("vid_a")
    out = cached_heatmap_frames(ds, "vid_a", [2], mode="points", size=64)[0, ..., 0]
    exp = np.clip(np.rint(pts[2] * 2), 0, 63).astype(int)
    assert set(map(tuple, np.argwhere(out))) == {(y, x) for x, y in exp}


def test_cache_jpg_frames_and_skip_existing(tmp_path):
    ds = _tiny_dataset(tmp_path, frame_format="jpg")
    folder = write_heatmap_cache(ds, mode="paper", video_ids=["vid_a"])
    assert (folder / "vid_a.npy").is_file() and not (folder / "vid_b.npy").exists()
    direct = render_heatmap_frames(ds.landmarks("vid_a")[0], size=32, mode="paper", frames=ds.frames("vid_a"))
    np.testing.assert_array_equal(np.load(folder / "vid_a.npy"), direct)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", [4, 2], mode="paper"),
                                  render_heatmap_frames(ds.landmarks("vid_b")[0][[4, 2]], size=32, mode="paper",
                                                        frames=ds.frames("vid_b", [4, 2])))
    np.save(folder / "vid_a.npy", np.zeros((5, 32, 32, 3), np.uint8))
    write_heatmap_cache(ds, mode="paper")  # existing file kept
    assert not np.load(folder / "vid_a.npy").any()
    write_heatmap_cache(ds, mode="paper", overwrite=True)
    assert np.load(folder / "vid_a.npy").any()
    assert not list(folder.glob("*.tmp"))


def test_cache_stale_shape_and_bad_index(tmp_path):
    ds = _tiny_dataset(tmp_path)
    folder = write_heatmap_cache(ds, mode="official")
    np.save(folder / "vid_a.npy", np.zeros((4, 32, 32, 3), np.uint8))
    with pytest.raises(ManifestError, match="rebuild"):
        cached_heatmap_frames(ds, "vid_a", mode="official")
    with pytest.raises(IndexError):
        cached_heatmap_frames(ds, "vid_b", [9], mode="official")


def test_cache_keys():
    assert heatmap_cache_key("official", 1, 256) == "v1_official_sigma1_k11_gauss7_skip1_256x256"
    assert heatmap_cache_key("paper", 1.0, (256, 256)) == "v1_paper_sigma1_k11_gauss7_skip0_256x256"
    assert heatmap_cache_key("paper", 3.0, 256) != heatmap_cache_key("paper", 1.0, 256)
    assert heatmap_cache_key("paper", 1.0, 224) != heatmap_cache_key("paper", 1.0, 256)
    assert heatmap_cache_key("points", 1.0, 64) == heatmap_cache_key("points", 7.0, 64, kernel_size=3)
    assert heatmap_cache_key("paper", 1.5, 64, smoothing="none").endswith("sigma1.5_k11_none_skip0_64x64")
    with pytest.raises(ValueError):
        heatmap_cache_key("bad", 1.0, 64)


def test_cli_heatmaps_writes_the_cache_the_runs_then_read(tmp_path, capsys):
    """``qafe-bench heatmaps`` renders at the mode, sigma and size a QAFE-Net run at that scale asks
    the protocol for and stores the frames resized to the size the protocol crops from; the protocol
    then reads those files (a planted cache value reaches the clip)."""
    from conftest import make_prepared

    from benchmark.cli import main
    from benchmark.protocols.pfed5 import ClipDataset, expression_split
    from benchmark.runs import RunSpec, resolve

    ds = make_prepared(tmp_path / "ds", videos=4, size=16, frames=12)
    assert main(["heatmaps", "--dataset", str(ds.root), "--scale", "tiny", "--quiet"]) == 0
    run = resolve(RunSpec("qafe_net", ds.root, "smile", scale="tiny"), tmp_path / "runs")
    spec, render, side = run.clip.inputs, run.clip.heatmap_render, run.clip.heatmap_resize
    assert (render, side) == (128, 32)  # the tiny scale draws at 128 px and crops from 32 px
    key = heatmap_cache_key(spec.heatmap_mode, spec.heatmap_sigma, render, resize=side)
    assert key.endswith("_128x128_to32x32")
    folder = ds.root / "heatmaps" / key
    assert str(folder) in capsys.readouterr().out
    for vid in ds.videos.index:
        cached = np.load(folder / f"{vid}.npy")
        (folder / f"{vid}.npy").rename(folder / f"{vid}.npy.bak")
        drawn = cached_heatmap_frames(ds, vid, mode=spec.heatmap_mode, sigma=spec.heatmap_sigma, size=render)
        (folder / f"{vid}.npy.bak").rename(folder / f"{vid}.npy")
        n = int(ds.videos.at[vid, "num_frames"])
        assert drawn.shape == (n, render, render, 3)
        # independent resize of the full-size drawing, frame by frame
        expected = np.stack([cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA) for f in drawn])
        assert cached.shape == (n, side, side, 3) and np.array_equal(cached, expected)
    # plant a constant volume: the protocol's clip must come from the cache file
    _, test = expression_split(ds, run.card, "smile")
    vid = test["video_id"].iloc[0]
    np.save(folder / f"{vid}.npy", np.full((int(ds.videos.at[vid, "num_frames"]), side, side, 3), 51, np.uint8))
    item = ClipDataset(ds, test.iloc[:1], run.clip, train=False)[0]
    assert torch.allclose(item["heatmap"], torch.full_like(item["heatmap"], 51 / 255))
    # a cache at the wrong size is refused with the fix, never silently resized
    np.save(folder / f"{vid}.npy", np.zeros((int(ds.videos.at[vid, "num_frames"]), render, render, 3), np.uint8))
    with pytest.raises(ManifestError, match="rebuild the heatmap cache"):
        ClipDataset(ds, test.iloc[:1], run.clip, train=False)[0]
    # a method without heatmap inputs: one clear error, exit status 2
    assert main(["heatmaps", "--dataset", str(ds.root), "--method", "former_dfer", "--quiet"]) == 2
    assert "reads no landmark heatmaps" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# edges: empty clips, one-pixel images, argument checks, more frames than OpenCV has channels,
# every rendering parameter passed through the cache helpers (found by mutation testing)


def test_jet_lut_built_fresh_equals_opencv_value_by_value(monkeypatch):
    import benchmark.data.heatmaps as hm

    monkeypatch.setattr(hm, "_JET_RGB", None)  # not the table an earlier test built
    lut = jet_rgb_lut()
    assert lut.shape == (256, 3) and lut.dtype == np.uint8 and not lut.flags.writeable
    for v in range(256):
        assert tuple(lut[v]) == _jet_rgb(v), v
    assert jet_rgb_lut() is lut  # built once


@pytest.mark.parametrize("height, width", [(9, 7), (4, 7), (3, 5), (1, 7), (6, 1)])  # shorter than the blur's reach
def test_frame_weights_blur_the_image_part_alone_and_divide_by_its_peak(height, width):
    """A frame's weights from its padded accumulator: OpenCV's 7x7 blur of the image part as if it
    were alone (reflect-101 at the image border; whatever the margin holds is never read), bit for
    bit, then divided by the blurred frame's maximum."""
    from benchmark.data.heatmaps import _frame_weights

    rng = np.random.default_rng(3)
    r = 5
    for _ in range(20):
        padded = rng.random((height + 2 * r, width + 2 * r), dtype=np.float32) * 50  # margin: noise
        image = padded[r:r + height, r:r + width].copy()
        ref = cv2.GaussianBlur(image, (7, 7), 0, borderType=cv2.BORDER_REFLECT_101).reshape(height, width)
        ref = ref / ref.max()
        out = _frame_weights(padded, r, height, width, smooth=True)
        assert out.shape == (height, width) and out.dtype == np.float32
        np.testing.assert_array_equal(out, ref)


def test_frame_weights_without_smoothing_divide_by_the_peak_and_keep_an_empty_frame_zero():
    from benchmark.data.heatmaps import _frame_weights

    padded = np.full((2 + 2, 2 + 2), 99.0, np.float32)  # r = 1: the margin holds 99, never read
    padded[1:3, 1:3] = [[4.0, 0.0], [0.0, 1.0]]
    np.testing.assert_array_equal(_frame_weights(padded, 1, 2, 2, smooth=False), [[1.0, 0.0], [0.0, 0.25]])
    empty = np.full((4, 4), 7.0, np.float32)
    empty[1:3, 1:3] = 0
    out = _frame_weights(empty, 1, 2, 2, smooth=False)
    assert np.isfinite(out).all() and not out.any()  # no landmark: stays 0, not 0 / 0


@pytest.mark.parametrize("mode", ["paper", "official"])
@pytest.mark.parametrize("frames", [1, 7, 8, 9, 17])  # around the 8-frame blocks
def test_blocks_and_threads_do_not_change_the_volume(mode, frames):
    """Frames are rendered in blocks of 8 on threads: every thread count gives the per-landmark,
    per-frame reference's bytes, also for clips that end inside a block."""
    rng = np.random.default_rng(frames)
    pts = random_points(rng, frames, 9, 20, 24)
    rgb = rng.integers(0, 256, (frames, 20, 24, 3), dtype=np.uint8)
    want = (reference_paper(pts, rgb, (20, 24)) if mode == "paper"
            else reference_official(pts, (20, 24)))
    for threads in (1, 2, 3, None):
        got = render_heatmap_frames(pts, size=(20, 24), mode=mode, frames=rgb, threads=threads)
        np.testing.assert_array_equal(got, want, err_msg=f"threads={threads}")


@pytest.mark.parametrize("threads, pool", [(1, None), (2, 2), (3, 3), (8, 3)])
def test_frames_go_in_blocks_of_8_on_at_most_one_thread_per_block(monkeypatch, threads, pool):
    """17 frames: blocks of 8, 8 and 1 frames; one thread renders on the caller's thread (no pool),
    more threads get a pool of at most one thread per block."""
    import benchmark.data.heatmaps as hm

    blocks, pools = [], []
    real_block, real_pool = hm._render_block, hm.ThreadPoolExecutor

    def recording_block(xs, ys, table, mode, smooth, rgb, out):
        blocks.append((xs.shape[0], out.shape[0]))
        real_block(xs, ys, table, mode, smooth, rgb, out)

    def recording_pool(workers):
        pools.append(workers)
        return real_pool(workers)

    monkeypatch.setattr(hm, "_render_block", recording_block)
    monkeypatch.setattr(hm, "ThreadPoolExecutor", recording_pool)
    pts = random_points(np.random.default_rng(0), 17, 5, 12, 12)
    got = render_heatmap_frames(pts, size=12, mode="official", threads=threads)
    np.testing.assert_array_equal(got, reference_official(pts, (12, 12)))
    assert sorted(blocks) == [(1, 1), (8, 8), (8, 8)]
    assert pools == ([] if pool is None else [pool])


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "2"])
def test_a_thread_count_that_is_not_a_positive_int_is_refused(threads):
    with pytest.raises(ValueError, match=r"threads must be a positive int or None"):
        render_heatmap_frames(np.zeros((0, 3, 2), np.float32), size=8, mode="official", threads=threads)


def test_an_error_in_a_block_on_a_thread_reaches_the_caller(monkeypatch):
    import benchmark.data.heatmaps as hm

    def broken(*args):
        raise MemoryError("block failed")

    monkeypatch.setattr(hm, "_render_block", broken)
    pts = np.full((20, 3, 2), 4.0, np.float32)
    with pytest.raises(MemoryError, match="block failed"):
        render_heatmap_frames(pts, size=8, mode="official", threads=2)


@pytest.mark.parametrize("mode", ["paper", "official", "points"])
def test_an_empty_clip_renders_an_empty_volume(mode):
    frames = np.zeros((0, 8, 6, 3), np.uint8) if mode == "paper" else None
    out = render_heatmap_frames(np.zeros((0, 3, 2), np.float32), size=(8, 6), mode=mode, frames=frames)
    assert out.shape == (0, 8, 6, 3) and out.dtype == np.uint8


@pytest.mark.parametrize("mode", ["paper", "official", "points"])
def test_one_pixel_image(mode):
    rgb = np.full((1, 1, 1, 3), 200, np.uint8)
    out = render_heatmap_frames(np.zeros((1, 1, 2), np.float32), size=1, mode=mode, frames=rgb,
                                skip_first_landmark=False)
    assert out.shape == (1, 1, 1, 3) and out.dtype == np.uint8
    expected = {"paper": (200, 200, 200), "official": (128, 0, 0), "points": (255, 255, 255)}[mode]
    assert tuple(out[0, 0, 0]) == expected  # the landmark's own pixel: weight 1, JET(255), mask 255


def test_points_mode_is_uint8_and_never_smoothed():
    pts = np.array([[[2.0, 3.0]]], np.float32)
    out = render_heatmap_frames(pts, size=(6, 5), mode="points", smoothing="gauss7")
    assert out.dtype == np.uint8 and out.shape == (1, 6, 5, 3)
    assert set(map(tuple, np.argwhere(out[0, ..., 0]))) == {(3, 2)}


def test_size_kernel_and_sigma_checks_name_the_bad_value():
    pts = np.zeros((1, 1, 2), np.float32)
    for ok in [(1, 5), (5, 1), 1]:
        assert render_heatmap_frames(pts, size=ok, mode="points").shape[1:3] == ((ok,) * 2 if isinstance(ok, int)
                                                                                 else ok)
    for bad in [(0, 4), (4, 0), 0, (-1, -1)]:
        with pytest.raises(ValueError, match=rf"size must be positive, got {re_escape(bad)}"):
            render_heatmap_frames(pts, size=bad, mode="points")
    for bad in ["ab", (1, 2, 3), None]:
        with pytest.raises(ValueError, match=rf"size must be an int or \(H, W\), got {re_escape(bad)}"):
            render_heatmap_frames(pts, size=bad, mode="points")
    assert render_heatmap_frames(pts, size=4, mode="official", kernel_size=1, skip_first_landmark=False).any()
    for bad in [-1, True, 2.5, 0, 4]:
        with pytest.raises(ValueError, match=rf"kernel_size must be a positive odd integer, got {re_escape(bad)}"):
            render_heatmap_frames(pts, size=4, mode="official", kernel_size=bad, skip_first_landmark=False)
    with pytest.raises(ValueError, match=r"sigma must be a positive number, got 'wide'"):
        render_heatmap_frames(pts, size=4, mode="official", sigma="wide", skip_first_landmark=False)
    with pytest.raises(ValueError, match=r"sigma must be a positive finite number, got inf"):
        render_heatmap_frames(pts, size=4, mode="official", sigma=float("inf"), skip_first_landmark=False)


def re_escape(v) -> str:
    import re

    return re.escape(repr(v))


def test_error_messages_say_how_to_fix_the_input():
    with pytest.raises(ValueError) as e:
        render_heatmap_frames(np.zeros((1, 1, 2), np.float32), size=8, mode="official")
    assert str(e.value) == "no landmark left to draw (K == 0, or K == 1 with skip_first_landmark)"
    with pytest.raises(ValueError) as e:
        render_heatmap_frames(np.full((1, 2, 2), np.inf, np.float32), size=8, mode="points")
    assert str(e.value) == "points contain NaN or inf; interpolate frames without a face first"
    with pytest.raises(ValueError) as e:
        render_heatmap_frames(np.zeros((1, 2, 2), np.float32), size=8)  # mode defaults to the paper's
    assert str(e.value) == "mode 'paper' weights the RGB frames: pass frames (T, H, W, 3) uint8"


def test_rendering_does_not_modify_the_callers_points():
    pts = np.array([[[1.4, 2.6], [-3.0, 9.0]]], np.float64)
    before = pts.copy()
    render_heatmap_frames(pts, size=8, mode="official", skip_first_landmark=False)
    np.testing.assert_array_equal(pts, before)


def test_gaussian_table_equals_the_official_float32_patch_bit_for_bit():
    for sigma in [1, 3, 5, 7, 1.5]:
        patch = _one_landmark_map(21, 21, (10, 10), sigma)[5:16, 5:16]
        np.testing.assert_array_equal(gaussian_table(sigma), patch, err_msg=f"sigma {sigma}")


def test_cache_key_defaults_and_resolved_fields():
    assert heatmap_cache_key() == "v1_paper_sigma1_k11_gauss7_skip0_256x256"  # the paper's rendering
    assert heatmap_cache_key("points", 3.0, 64) == "v1_points_skip0_64x64"
    assert heatmap_cache_key("points", 1.0, 64, skip_first_landmark=True) == "v1_points_skip1_64x64"
    assert heatmap_cache_key("official", 1, 64, skip_first_landmark=False).endswith("_skip0_64x64")
    assert heatmap_cache_key("official", 2.5, (8, 4), kernel_size=5, smoothing="none") == \
        "v1_official_sigma2.5_k5_none_skip1_8x4"


RENDER_CASES = [
    dict(mode="paper", sigma=3, kernel_size=5, smoothing="none", skip_first_landmark=True),
    dict(mode="official", sigma=1.5, kernel_size=7, smoothing="none", skip_first_landmark=False),
    dict(mode="points", sigma=1.0, kernel_size=11, smoothing="gauss7", skip_first_landmark=True),
]


@pytest.mark.parametrize("case", RENDER_CASES, ids=lambda c: c["mode"])
def test_cache_helpers_pass_every_rendering_parameter(tmp_path, case):
    ds = _tiny_dataset(tmp_path)
    pts, _ = ds.landmarks("vid_b")
    direct = render_heatmap_frames(pts, size=32, frames=ds.frames("vid_b"), **case)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", **case), direct)
    folder = write_heatmap_cache(ds, **case, chunk_frames=1)
    assert folder.name == heatmap_cache_key(case["mode"], case["sigma"], 32, kernel_size=case["kernel_size"],
                                            smoothing=case["smoothing"],
                                            skip_first_landmark=case["skip_first_landmark"])
    np.testing.assert_array_equal(np.load(folder / "vid_b.npy"), direct)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", [[3, 1]], **case), direct[[3, 1]])
    import json

    params = {"key": folder.name, "version": 1, "mode": case["mode"], "sigma": float(case["sigma"]),
              "size": [32, 32], "kernel_size": case["kernel_size"],
              "smoothing": "none", "skip_first_landmark": case["skip_first_landmark"], "crop_size": 32,
              "resize": None, "dataset_content_hash": ds.content_hash}
    assert (folder / "params.json").read_text() == json.dumps(params, indent=2)
    # stored resized (as ``qafe-bench heatmaps`` stores them for runs): a second folder, each frame
    # area-resized after drawing at full size, read back at that size
    small = np.stack([cv2.resize(f, (16, 16), interpolation=cv2.INTER_AREA) for f in direct])
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", **case, resize=16), small)
    resized = write_heatmap_cache(ds, **case, chunk_frames=2, resize=16)
    assert resized.name == folder.name + "_to16x16" and resized != folder
    np.testing.assert_array_equal(np.load(resized / "vid_b.npy"), small)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", [3, 1], **case, resize=16), small[[3, 1]])
    assert json.loads((resized / "params.json").read_text())["resize"] == 16
    assert write_heatmap_cache(ds, **case, resize=32) == folder  # the drawing size: no resize, same key
    assert json.loads((folder / "params.json").read_text())["resize"] is None
    for bad in (0, -4, 2.5):
        with pytest.raises(ValueError, match="resize must be a positive int"):
            cached_heatmap_frames(ds, "vid_b", **case, resize=bad)
    one = np.stack([cv2.resize(f, (1, 1), interpolation=cv2.INTER_AREA) for f in direct])  # 1 px is positive
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", **case, resize=1), one)


@pytest.mark.parametrize("case", RENDER_CASES[:2], ids=lambda c: c["mode"])
def test_cached_read_looks_up_the_file_written_under_the_same_parameters(tmp_path, case):
    # A marker written into the cache file must come back: the reader found the file (an
    # on-the-fly render, e.g. after looking under another key, would give the real heatmaps).
    ds = _tiny_dataset(tmp_path)
    path = write_heatmap_cache(ds, **case) / "vid_b.npy"
    marker = np.full(np.load(path).shape, 7, dtype=np.uint8)
    np.save(path, marker)
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_b", **case), marker)
    other = dict(case, kernel_size=3)
    assert not np.array_equal(cached_heatmap_frames(ds, "vid_b", **other), marker)


def test_video_inputs_scale_landmarks_in_float32_and_read_frames_only_when_needed(tmp_path):
    from benchmark.data.heatmaps import _video_inputs

    ds = _tiny_dataset(tmp_path)  # 32 px crops
    idx = np.array([3, 1])
    pts, frames = _video_inputs(ds, "vid_b", idx, 16, 24, need_frames=False)
    assert frames is None and pts.dtype == np.float32
    np.testing.assert_array_equal(pts, ds.landmarks("vid_b")[0][idx] * np.float32([24 / 32, 16 / 32]))
    pts, frames = _video_inputs(ds, "vid_b", idx, 16, 24, need_frames=True)
    assert pts.dtype == np.float32 and frames.shape == (2, 16, 24, 3) and frames.dtype == np.uint8
    raw = ds.frames("vid_b", idx)
    np.testing.assert_array_equal(frames[1], cv2.resize(raw[1], (24, 16), interpolation=cv2.INTER_AREA))
    pts, frames = _video_inputs(ds, "vid_b", idx, 32, 32, need_frames=True)  # crop size: no resize
    np.testing.assert_array_equal(frames, raw)
    np.testing.assert_array_equal(pts, ds.landmarks("vid_b")[0][idx])


def test_cache_defaults_to_the_papers_rendering(tmp_path):
    ds = _tiny_dataset(tmp_path)
    paper = render_heatmap_frames(ds.landmarks("vid_a")[0], size=32, mode="paper", frames=ds.frames("vid_a"))
    np.testing.assert_array_equal(cached_heatmap_frames(ds, "vid_a"), paper)
    assert write_heatmap_cache(ds).name == heatmap_cache_key("paper", 1.0, 32)


def test_cache_of_no_frames_and_frame_index_errors(tmp_path):
    ds = _tiny_dataset(tmp_path)
    for mode in ("paper", "official"):
        for size in (None, 24):
            out = cached_heatmap_frames(ds, "vid_b", [], mode=mode, size=size)
            assert out.shape == (0, size or 32, size or 32, 3) and out.dtype == np.uint8
    assert cached_heatmap_frames(ds, "vid_b", [8], mode="points").shape == (1, 32, 32, 3)
    for bad in ([9], [-1], [0, 9]):
        with pytest.raises(IndexError, match=r"^video vid_b: frame index out of range 0\.\.8$"):
            cached_heatmap_frames(ds, "vid_b", bad, mode="points")
    write_heatmap_cache(ds, mode="points")
    with pytest.raises(IndexError, match=r"^video vid_b: frame index out of range 0\.\.8$"):
        cached_heatmap_frames(ds, "vid_b", [9], mode="points")  # the cached path checks first, too


def test_cache_writer_skips_existing_files_but_renders_the_rest(tmp_path, capsys):
    ds = _tiny_dataset(tmp_path)
    folder = write_heatmap_cache(ds, mode="points", video_ids=["vid_a"])
    assert not (folder / "vid_b.npy").exists()
    assert capsys.readouterr().err == ""  # no progress bar unless asked
    write_heatmap_cache(ds, mode="points", progress=True)
    assert (folder / "vid_b.npy").is_file()  # vid_a (first) was skipped, vid_b still rendered
    err = capsys.readouterr().err
    assert f"heatmaps {folder.name}" in err and "video" in err
    with pytest.raises(ValueError, match=r"chunk_frames must be >= 1, got 0"):
        write_heatmap_cache(ds, mode="points", chunk_frames=0)
