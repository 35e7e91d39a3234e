"""Tests of the synthetic PFED5-like generator (benchmark/data/synthetic.py).

Statistical bounds: severities are assigned to videos by a random permutation
within each (split, expression), independently of every static property of a
video. Under that null, the permutation distribution of a rank correlation
between severity and any fixed per-video quantity has mean 0 and variance
1 / (n - 1) (exact for Pearson on ranks, whatever the other variable's
clustering by subject). We allow |rho| < 4 / sqrt(n - 1) (0.26 for the 240
videos used): a false alarm per cue has probability ~6e-5, while a real
severity cue (e.g. a size or colour shift by severity) gives |rho| near 1.
The data are deterministic, so the test cannot flake; the bound documents how
far from "independent" a value may be.
"""

from __future__ import annotations

import hashlib
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from benchmark.cards import PFED5_EXPRESSIONS
from benchmark.data import synthetic as syn
from benchmark.data.prepared import PreparedDataset
from benchmark.errors import ConfigError, ManifestError

NOSE = syn.SYNTHETIC_SCHEME.groups["nose"]
MOVING = [i for i in range(73) if i not in NOSE]
SMALL = dict(subjects=4, train_subjects=2, videos_per_expression=1, crop_size=32)


def _file_digests(root: Path) -> dict:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "manifest.json":
            out[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "tiny"
    t0 = time.perf_counter()
    manifest = syn.generate_synthetic(root, scale="tiny", seed=0)
    return root, manifest, time.perf_counter() - t0


def _similarity_to(src: np.ndarray, dst: np.ndarray):
    """Least-squares similarity transform (Umeyama) mapping points src (n, 2) onto dst."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(a.T @ b)
    d = np.sign(np.linalg.det(u @ vt))
    r = u @ np.diag([1.0, d]) @ vt
    scale = (s * [1.0, d]).sum() / (a ** 2).sum()
    return lambda x: (x - ms) @ r * scale + md


def _motion(points: np.ndarray) -> np.ndarray:
    """Per frame: mean displacement of the non-nose landmarks from frame 0, after removing
    the head pose (similarity fitted on the rigid nose points), in inter-ocular distances."""
    iod = np.linalg.norm(points[0, syn.EYE_CENTRES[0]] - points[0, syn.EYE_CENTRES[1]])
    out = []
    for frame in points:
        f = _similarity_to(frame[NOSE], points[0, NOSE])
        out.append(np.linalg.norm(f(frame[MOVING]) - points[0, MOVING], axis=-1).mean() / iod)
    return np.array(out)


def _geometry(p: np.ndarray) -> dict:
    """Expression geometry of one frame's 73 landmarks, in inter-ocular distances of that frame."""
    iod = np.linalg.norm(p[1] - p[55])
    return {"mouth_width": np.linalg.norm(p[19] - p[25]) / iod,
            "brow_height": (p[1, 1] - p[10:19, 1].mean()) / iod,
            "eye_open": (p[7:10, 1].mean() - p[2:6, 1].mean()) / iod,
            "mouth_curve": (p[[19, 25], 1].mean() - p[[22, 28], 1].mean()) / iod}


IDENTITY_CUES = ("frame_colour", "frame_red", "background_corner", "nose_x", "nose_y", "nose_size", "interocular")
"""Per-frame cues of identity, colour, size and position (the nose is rigid: it only follows the head)."""
GEOMETRY_CUES = ("mouth_width", "brow_height", "eye_open", "mouth_curve")
"""Per-frame expression geometry: how far the face is from neutral on that frame."""
OWN_CUE = {"smile": "mouth_curve", "frown": "brow_height", "squeeze_eyes": "eye_open", "clench_teeth": "mouth_width"}


@pytest.fixture(scope="module")
def cue_dataset(tmp_path_factory):
    """A 240-video tiny-preset dataset (24 subjects, 32-px crops) for the cue statistics."""
    root = tmp_path_factory.mktemp("syn") / "stats"
    syn.generate_synthetic(root, scale="tiny", seed=1, subjects=24, train_subjects=16,
                           videos_per_expression=2, crop_size=32)
    return PreparedDataset(root)


@pytest.fixture(scope="module")
def cue_table(cue_dataset):
    """Per-video cues: length, frame-0 geometry and motion statistics."""
    rows = []
    for vid, r in cue_dataset.videos.iterrows():
        pts, _ = cue_dataset.landmarks(vid)
        motion = _motion(pts)
        rows.append({"severity": r.label, "expression": r.expression, "length": len(pts),
                     **{f"{k}_0": v for k, v in _geometry(pts[0]).items()},
                     "max_displacement": motion.max(), "displacement_std": motion.std()})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def frame_cue_table(cue_dataset):
    """Per-frame cues of every video: frame index ``t``, relative time bin ``rel`` (0..10 over
    the video), identity cues and expression geometry of that frame."""
    rows = []
    for vid, r in cue_dataset.videos.iterrows():
        frames = cue_dataset.frames(vid).astype(np.float64)
        pts, _ = cue_dataset.landmarks(vid)
        last = len(pts) - 1
        for t, p in enumerate(pts):
            nose = p[NOSE]
            rows.append({"video": vid, "severity": r.label, "expression": r.expression, "t": t,
                         "rel": round(10 * t / last), "frame_colour": frames[t].mean(),
                         "frame_red": frames[t, ..., 0].mean(), "background_corner": frames[t, :3, :3].mean(),
                         "nose_x": nose[:, 0].mean(), "nose_y": nose[:, 1].mean(),
                         "nose_size": nose.std(axis=0).mean(), "interocular": np.linalg.norm(p[1] - p[55]),
                         **_geometry(p)})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------

def test_tiny_preset_format(tiny, capsys):
    root, manifest, seconds = tiny
    with capsys.disabled():
        print(f"\n[synthetic] tiny preset: {manifest['counts']['videos']} videos, "
              f"{manifest['counts']['frames']} frames generated in {seconds:.2f} s")
    spec = syn.synthetic_spec("tiny")
    ds = PreparedDataset(root)
    assert ds.card_name == "synthetic" and ds.crop_size == spec.crop_size
    assert manifest["landmark_scheme"]["name"] == "synthetic_73"
    assert manifest["landmark_scheme"]["groups"] == syn.SYNTHETIC_SCHEME.groups
    assert manifest["backend"]["name"] == "synthetic"
    assert manifest["backend"]["version"] == syn.GENERATOR_VERSION
    assert manifest["backend"]["settings"] == manifest["synthetic_spec"] == spec.to_json()
    v = ds.videos
    assert len(v) == spec.subjects * len(spec.expressions) * spec.videos_per_expression
    assert ds.verify() == []
    s = spec.crop_size
    for vid, r in v.iterrows():
        frames = ds.frames(vid)
        pts, found = ds.landmarks(vid)
        t = r.num_frames
        assert frames.shape == (t, s, s, 3) and frames.dtype == np.uint8
        assert pts.shape == (t, 73, 2) and pts.dtype == np.float32
        assert found.all() and r.faces_found == t
        assert (pts >= 0).all() and (pts <= s - 1).all(), f"{vid}: landmark outside the crop"
        assert spec.min_length[r.expression] <= t <= spec.max_length[r.expression]
    # every expression and every severity in both splits; subject-disjoint split
    for split in ("train", "test"):
        part = v[v.split == split]
        assert set(part.expression) == set(PFED5_EXPRESSIONS)
        assert set(part.label.astype(int)) == {0, 1, 2, 3, 4}
        for _, g in part.groupby("expression"):
            counts = g.label.value_counts()
            assert set(counts.index.astype(int)) == {0, 1, 2, 3, 4}
            assert counts.max() - counts.min() <= 1  # uniform weights: balanced
    train, test = set(v[v.split == "train"].subject), set(v[v.split == "test"].subject)
    assert not train & test
    assert len(train) == spec.train_subjects and len(train | test) == spec.subjects


def test_determinism(tiny, tmp_path):
    root, manifest, _ = tiny
    again = syn.generate_synthetic(tmp_path / "again", scale="tiny", seed=0)
    assert again["content_hash"] == manifest["content_hash"]
    assert _file_digests(tmp_path / "again") == _file_digests(root)  # byte-identical files
    strip = lambda m: {k: x for k, x in m.items() if k != "created"}  # noqa: E731
    assert strip(again) == strip(manifest)
    a = syn.generate_synthetic(tmp_path / "s0", scale="tiny", seed=0, **SMALL)
    b = syn.generate_synthetic(tmp_path / "s1", scale="tiny", seed=1, **SMALL)
    assert a["content_hash"] != b["content_hash"]


def test_resume_after_interruption(tmp_path, monkeypatch):
    full = syn.generate_synthetic(tmp_path / "full", scale="tiny", seed=3, **SMALL)
    real = syn.render_video
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(syn, "render_video", flaky)
    with pytest.raises(KeyboardInterrupt):
        syn.generate_synthetic(tmp_path / "part", scale="tiny", seed=3, **SMALL)
    assert not (tmp_path / "part" / "manifest.json").exists()
    calls["n"] = -1000
    resumed = syn.generate_synthetic(tmp_path / "part", scale="tiny", seed=3, **SMALL)
    assert calls["n"] == -1000 + full["counts"]["videos"] - 6  # the 6 finished videos were skipped
    assert resumed["content_hash"] == full["content_hash"]
    # a finished folder is returned as is; another spec in the same folder is refused
    assert syn.generate_synthetic(tmp_path / "full", scale="tiny", seed=3, **SMALL)["created"] == full["created"]
    with pytest.raises(ManifestError, match="another prepared dataset"):
        syn.generate_synthetic(tmp_path / "full", scale="tiny", seed=4, **SMALL)


def test_spec_overrides_and_errors():
    spec = syn.synthetic_spec("tiny", expressions="smile", min_length=20, max_length=30, crop_size=64)
    assert spec.expressions == ("smile",) and spec.min_length["smile"] == 20 and spec.crop_size == 64
    assert 20 <= spec.mean_length["smile"] <= 30
    with pytest.raises(ConfigError, match="did you mean 'subjects'"):
        syn.synthetic_spec("tiny", subject=3)
    with pytest.raises(ConfigError, match="did you mean 'smile'"):
        syn.synthetic_spec("tiny", expressions=["smiles"])
    with pytest.raises(ConfigError, match="train_subjects"):
        syn.synthetic_spec("tiny", train_subjects=30)
    with pytest.raises(ConfigError, match="unknown synthetic preset"):
        syn.synthetic_spec("huge")
    with pytest.raises(ConfigError, match="severity"):
        syn.render_video(syn.synthetic_spec("tiny"), 0, "smile", 0, 5)


def test_paper_preset_follows_table1():
    spec = syn.synthetic_spec("paper")
    table = pd.read_csv(Path(__file__).resolve().parents[1] / "datasets" / "pfed5" / "table1_pfed5_stats.csv")
    table = table[table.split != "total"]
    for e, g in table.groupby("expression"):
        assert spec.min_length[e] == g.min_len.min() and spec.max_length[e] == g.max_len.max()
        mean = (g.avg_len * g.clips).sum() / g.clips.sum()
        assert abs(spec.mean_length[e] - mean) <= 1
    assert (spec.subjects, spec.train_subjects, spec.crop_size) == (41, 30, 256)
    plan = pd.DataFrame(syn.plan_synthetic(spec))
    assert plan.subject.nunique() == 41
    assert plan[plan.split == "train"].subject.nunique() == 30
    for (split, e), g in plan.groupby(["split", "expression"]):
        assert set(g.severity) == {0, 1, 2, 3, 4}, (split, e)


def _rho_by(df: pd.DataFrame, key: str, cue: str, min_videos: int) -> dict:
    """Spearman's rho of severity with ``cue`` within each value of ``key`` held by >= ``min_videos`` videos."""
    return {k: spearmanr(g.severity, g[cue])[0] for k, g in df.groupby(key) if len(g) >= min_videos}


def test_identity_colour_size_position_length_and_frame0_carry_no_severity(cue_table, frame_cue_table, capsys):
    """What does NOT carry severity (the card's claim): identity, colour, size and position on every
    frame (each frame index held by every video, and each tenth of the video), the clip length,
    and the neutral frame 0's expression geometry. 4-sigma bound on |rho| for n videos."""
    n = len(cue_table)
    bound = 4 / math.sqrt(n - 1)
    worst = {}
    for cue in IDENTITY_CUES:
        per_frame = {**{f"t={k}": v for k, v in _rho_by(frame_cue_table, "t", cue, n).items()},
                     **{f"rel={k}": v for k, v in _rho_by(frame_cue_table, "rel", cue, n).items()}}
        assert len(per_frame) >= 11 + 16, (cue, len(per_frame))  # 11 tenths + every frame of the shortest video
        worst[cue] = max(per_frame.items(), key=lambda kv: abs(kv[1]))
    static = {"length": spearmanr(cue_table.severity, cue_table.length)[0],
              **{f"{c}_0": spearmanr(cue_table.severity, cue_table[f"{c}_0"])[0] for c in GEOMETRY_CUES}}
    with capsys.disabled():
        print(f"\n[synthetic] n={n} videos, no-severity bound |rho| < {bound:.3f}")
        print("[synthetic] worst frame per identity cue: "
              + ", ".join(f"{c} {v:+.3f} ({where})" for c, (where, v) in worst.items()))
        print("[synthetic] length and frame-0 geometry: " + ", ".join(f"{k} {v:+.3f}" for k, v in static.items()))
    for cue, (where, r) in worst.items():
        assert abs(r) < bound, f"{cue} at {where} correlates with severity: rho={r:+.3f}"
    for cue, r in static.items():
        assert abs(r) < bound, f"{cue} correlates with severity: rho={r:+.3f}"


def test_severity_is_in_the_movement_peak_amplitude_and_timing(cue_table, frame_cue_table, capsys):
    """What DOES carry severity: how far the face moves from its neutral frame 0 (peak amplitude)
    and when (onset timing), as hypomimia does. A single frame after onset therefore carries it
    too: on its tenth of the video nearest the peak, each expression's own geometry cue ranks
    severity (the module docstring says so; one frame cannot tell only at frame 0)."""
    motion = {c: spearmanr(cue_table.severity, cue_table[c])[0] for c in ("max_displacement", "displacement_std")}
    per_expr = {e: spearmanr(g.severity, g.max_displacement)[0] for e, g in cue_table.groupby("expression")}
    single_frame = {}
    for e, cue in OWN_CUE.items():
        g = frame_cue_table[frame_cue_table.expression == e]
        by_rel = _rho_by(g, "rel", cue, g.video.nunique())
        single_frame[e] = (cue, max(by_rel.items(), key=lambda kv: abs(kv[1])), by_rel[0])
    with capsys.disabled():
        print("[synthetic] motion rho: " + ", ".join(f"{k} {v:+.3f}" for k, v in motion.items()))
        print("[synthetic] max_displacement rho per expression: "
              + ", ".join(f"{k} {v:+.3f}" for k, v in per_expr.items()))
        print("[synthetic] one frame's own cue, best tenth (frame 0): " + ", ".join(
            f"{e} {c} {r:+.2f} at rel={k} ({r0:+.2f})" for e, (c, (k, r), r0) in single_frame.items()))
    assert motion["max_displacement"] < -0.7
    assert motion["displacement_std"] < -0.7
    for e, r in per_expr.items():
        assert r < -0.7, f"{e}: severity not visible in the motion (rho={r:+.3f})"
    bound = 4 / math.sqrt(len(cue_table) / 5 - 1)
    for e, (cue, (k, r), r0) in single_frame.items():
        assert abs(r) > 0.5 and k > 0, f"{e}: {cue} on one frame does not rank severity ({r:+.3f} at rel={k})"
        assert abs(r0) < bound, f"{e}: {cue} on frame 0 ranks severity ({r0:+.3f})"


@pytest.mark.parametrize("expression", PFED5_EXPRESSIONS)
def test_same_video_other_severity_differs_only_in_motion(expression):
    spec = syn.synthetic_spec("tiny", crop_size=32, min_length=40, max_length=40)
    runs = [syn.render_video(spec, 2, expression, 1, s) for s in range(5)]
    f0, p0 = runs[0]
    peaks, half_times = [], []
    for frames, pts in runs:
        assert frames.shape == f0.shape
        assert np.array_equal(frames[0], f0[0]) and np.array_equal(pts[0], p0[0])
        m = _motion(pts)
        peaks.append(m.max())
        half_times.append(int(np.argmax(m >= 0.5 * m.max())))
    assert all(a > b for a, b in zip(peaks, peaks[1:])), peaks  # amplitude falls with severity
    # severity 4 still moves: at least half the spec's amplitude ratio (the slowdown costs the rest)
    assert peaks[-1] > 0.5 * spec.severity_amplitude[-1] / spec.severity_amplitude[0] * peaks[0], peaks
    if expression != "sit_at_rest":  # onset slows with severity
        assert all(a <= b for a, b in zip(half_times, half_times[1:])), half_times
        assert half_times[-1] > half_times[0], half_times


def test_landmarks_lie_on_the_drawing():
    """Lid, brow and lip landmarks sit on dark/coloured strokes; the same points moved by
    a fifth of the inter-ocular distance land on skin. Would fail for offset landmarks."""
    spec = syn.synthetic_spec("tiny", crop_size=128, noise_sigma=(0.0, 0.0), min_length=24, max_length=24)
    groups = syn.SYNTHETIC_SCHEME.groups
    idx = [i for i in groups["left_eye"] + groups["right_eye"] + groups["left_brow"] + groups["right_brow"]
           + groups["mouth"]]
    on, off = [], []
    for subject in range(4):
        for e in ("sit_at_rest", "smile", "clench_teeth"):
            frames, pts = syn.render_video(spec, subject, e, 0, 0)
            for t in (0, len(frames) // 2):
                img = frames[t].astype(float)
                p = pts[t]
                iod = np.linalg.norm(p[1] - p[55])
                # skin: cheeks, between the outer eye corner and the mouth corner
                cheeks = [0.5 * (p[0] + p[19]), 0.5 * (p[54] + p[25])]
                skin = np.median([img[int(round(c[1])), int(round(c[0]))] for c in cheeks], axis=0)

                def dist(q):
                    x = np.clip(np.rint(q[:, 0]).astype(int), 0, 127)
                    y = np.clip(np.rint(q[:, 1]).astype(int), 0, 127)
                    return np.linalg.norm(img[y, x] - skin, axis=-1).mean()

                on.append(dist(p[idx]))
                for dy in (-0.2, 0.2):
                    off.append(dist(p[idx] + [0.0, dy * iod]))
    on_m, off_m = float(np.mean(on)), float(np.mean(off))
    assert on_m > 30, on_m
    assert on_m > 2.5 * off_m, (on_m, off_m)


def test_landmark_subpixel_convention():
    """Landmarks use pixel centres at integer coordinates of the S x S crop: the dark
    centre line of the vertical nose-bridge stroke (x) and the middle of each brow (y)
    match them to a fraction of a pixel (a half-pixel or supersampling error gives >= 0.375)."""
    spec = syn.synthetic_spec("tiny", crop_size=256, supersample=4, noise_sigma=(0.0, 0.0),
                              illumination=(1.0, 1.0, 0.0), head_motion=(0.025, 0.0, 0.03),
                              min_length=2, max_length=2)

    def centroid(profile, coords):
        w = np.clip(profile.max() - profile, 0, None)
        return w @ coords / w.sum()

    errors = []
    for subject in range(6):
        frames, pts = syn.render_video(spec, subject, "sit_at_rest", 0, 0)
        img, p = frames[0].astype(float).mean(-1), pts[0]
        for j in (40, 41):  # nose bridge points: the stroke is vertical (no head rotation here)
            x0, y0 = p[j]
            xs = np.arange(int(x0) - 4, int(x0) + 6)
            errors.append(centroid(img[int(round(y0)), xs], xs) - x0)
        for lo, u1, u2 in ((12, 16, 17), (66, 70, 71)):  # brow: lower edge u=.5, upper edge u=.4/.6
            up = 0.5 * (p[u1, 1] + p[u2, 1])
            y0, half = 0.5 * (p[lo, 1] + up), (p[lo, 1] - up) / 2 + 2
            ys = np.arange(int(np.floor(y0 - half)), int(np.ceil(y0 + half)) + 1)
            errors.append(centroid(img[ys, int(round(p[lo, 0]))], ys) - y0)
    assert np.abs(errors).max() < 0.25, np.round(errors, 3)
