"""Tests of the synthetic UNBC-McMaster-like generator (benchmark/data/synthetic_unbc.py).

Statistical bounds: VAS labels are dealt to sequences by a random permutation over
the whole dataset, independently of every static property of a sequence. Under that
null the permutation distribution of a rank correlation between VAS and any fixed
per-sequence quantity has mean 0 and variance 1 / (n - 1). We allow |rho| < 4 / sqrt(n - 1)
(0.28 for the 200 sequences of the cue dataset): a false alarm per cue has probability
~6e-5, while a real static cue gives |rho| near 1. The data are deterministic, so the
tests cannot flake; the bounds document how far from "independent" a value may be.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from benchmark.cards import load_card
from benchmark.data import synthetic as syn
from benchmark.data import synthetic_unbc as su
from benchmark.data.prepared import PreparedDataset
from benchmark.errors import ConfigError, ManifestError

ROOT = Path(__file__).resolve().parents[1]
NOSE = syn.SYNTHETIC_SCHEME.groups["nose"]
SMALL = dict(subjects=5, sequences_per_subject=1, crop_size=32, max_length=60)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("unbc") / "tiny"
    t0 = time.perf_counter()
    manifest = su.generate_synthetic_unbc(root, scale="tiny", seed=0)
    return root, manifest, time.perf_counter() - t0


@pytest.fixture(scope="module")
def cue_dataset(tmp_path_factory):
    """200 tiny-preset sequences (25 subjects x 8, as in the archive) at 32 px, for the cue statistics."""
    root = tmp_path_factory.mktemp("unbc") / "stats"
    su.generate_synthetic_unbc(root, scale="tiny", seed=1, sequences_per_subject=8, crop_size=32)
    return PreparedDataset(root)


def _pain_geometry(p: np.ndarray) -> np.ndarray:
    """Per frame (T, 73, 2) -> (T, 3): brow height above the eye-corner line (AU4), eye aperture
    (AU6/7/43) and nose-base-to-upper-lip distance (AU9/10), in eye-corner distances of that frame.
    Eye corners and nose do not move with the expression (only with the head)."""
    w = np.linalg.norm(p[:, [0, 5]].mean(1) - p[:, [54, 59]].mean(1), axis=-1)
    brow = ((p[:, [0, 5], 1].mean(1) - p[:, 10:19, 1].mean(1))
            + (p[:, [54, 59], 1].mean(1) - p[:, 64:73, 1].mean(1))) / 2
    aperture = ((p[:, 7:10, 1].mean(1) - p[:, 2:6, 1].mean(1)) + (p[:, 61:64, 1].mean(1) - p[:, 56:60, 1].mean(1))) / 2
    lip = p[:, 22, 1] - p[:, 52, 1]
    return np.stack([brow, aperture, lip], -1) / w[:, None]


PAIN_CUES = ("brow_lowering", "eye_narrowing", "lip_raise", "brow_plus_lip")
STATIC_CUES = ("frame_colour", "frame_red", "background_corner", "nose_x", "nose_y", "nose_size", "eye_corner_span")
"""Per-frame cues of identity, colour, size and position (eye corners and nose only follow the head)."""


def _pain_peaks(points: np.ndarray) -> dict:
    """Peak over the sequence of each pain distance's change from frame 0 (positive = more pain-like)."""
    g = _pain_geometry(points)
    d = g[0] - g  # brow lower, eye narrower, lip closer to the nose
    return {"brow_lowering": d[:, 0].max(), "eye_narrowing": d[:, 1].max(), "lip_raise": d[:, 2].max(),
            "brow_plus_lip": (d[:, 0] + d[:, 2]).max()}


def _cue_tables(ds: PreparedDataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, frows = [], []
    for vid, r in ds.videos.iterrows():
        frames = ds.frames(vid).astype(np.float64)
        pts, _ = ds.landmarks(vid)
        g0 = _pain_geometry(pts[:1])[0]
        rows.append({"vas": r.label, "length": len(pts), **_pain_peaks(pts),
                     "brow_0": g0[0], "aperture_0": g0[1], "lip_0": g0[2]})
        last = len(pts) - 1
        nose = pts[:, NOSE]
        span = np.linalg.norm(pts[:, [0, 5]].mean(1) - pts[:, [54, 59]].mean(1), axis=-1)
        tenth = np.full(len(pts), -1)
        tenth[np.rint(np.arange(11) * last / 10).astype(int)] = np.arange(11)  # one frame per tenth
        frows.append(pd.DataFrame({
            "video": vid, "vas": r.label, "t": np.arange(len(pts)), "rel": tenth,
            "frame_colour": frames.mean((1, 2, 3)), "frame_red": frames[..., 0].mean((1, 2)),
            "background_corner": frames[:, :3, :3].mean((1, 2, 3)), "nose_x": nose[..., 0].mean(1),
            "nose_y": nose[..., 1].mean(1), "nose_size": nose.std(1).mean(1), "eye_corner_span": span}))
    return pd.DataFrame(rows), pd.concat(frows, ignore_index=True)


@pytest.fixture(scope="module")
def cue_tables(cue_dataset):
    return _cue_tables(cue_dataset)


# ---------------------------------------------------------------------------------------------

def test_tiny_preset_format_subjects_lengths_and_labels(tiny, capsys):
    root, manifest, seconds = tiny
    size_mb = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
    with capsys.disabled():
        print(f"\n[synthetic_unbc] tiny preset: {manifest['counts']['videos']} sequences, "
              f"{manifest['counts']['frames']} frames, {size_mb:.1f} MB, generated in {seconds:.2f} s")
    spec = su.synthetic_unbc_spec("tiny")
    ds = PreparedDataset(root)
    assert ds.card_name == "synthetic_unbc" and ds.crop_size == 48
    assert manifest["landmark_scheme"]["name"] == "synthetic_73"
    assert manifest["landmark_scheme"]["groups"] == syn.SYNTHETIC_SCHEME.groups
    assert manifest["backend"]["name"] == "synthetic_unbc"
    assert manifest["backend"]["version"] == su.GENERATOR_VERSION
    assert manifest["backend"]["renderer_version"] == syn.GENERATOR_VERSION
    assert manifest["backend"]["settings"] == manifest["synthetic_unbc_spec"] == spec.to_json()
    assert ds.verify() == []
    v = ds.videos
    assert len(v) == 25 * spec.sequences_per_subject == 50
    assert sorted(v.subject.unique()) == [f"S{i:03d}" for i in range(1, 26)]
    assert (v.groupby("subject").size() == spec.sequences_per_subject).all()
    assert set(v.expression) == {"pain"} and set(v.split) == {"all"}
    for vid, r in v.iterrows():
        frames = ds.frames(vid)
        pts, found = ds.landmarks(vid)
        t = r.num_frames
        assert frames.shape == (t, 48, 48, 3) and frames.dtype == np.uint8
        assert pts.shape == (t, 73, 2) and found.all()
        assert (pts >= 0).all() and (pts <= 47).all(), f"{vid}: landmark outside the crop"
        assert t == su.sequence_length(spec, int(r.subject[1:]) - 1, int(vid[-2:]) - 1)
    # lengths: UNBC's 48..683, mostly short in the tiny preset
    assert v.num_frames.min() >= 48 and v.num_frames.max() <= 683
    assert v.num_frames.median() < 80 and v.num_frames.max() > 150
    # labels: whole-number VAS 0..10 skewed towards low pain, a long tail
    card = load_card("synthetic_unbc")
    for vid, r in v.iterrows():
        card.check_label(r.label, vid)
    assert (v.label == v.label.round()).all()
    assert v.label.median() < 3
    assert 0.3 <= (v.label == 0).mean() <= 0.5
    assert (v.label >= 7).sum() >= 3 and v.label.max() == 10


def test_folds_cover_every_subject_once(tiny):
    root, _, _ = tiny
    card = load_card("synthetic_unbc")
    assert (card.name, card.label_name, card.label_range, card.label_integer) == ("synthetic_unbc", "vas",
                                                                                  (0.0, 10.0), False)
    assert card.expressions == ("pain",) and card.protocol == "unbc_5fold" and card.metric == "mae_rmse"
    folds = json.loads((card.path / card.raw["folds"]).read_text())
    reference = json.loads((ROOT / "datasets" / "unbc_mcmaster" / "folds_sorted_round_robin.json").read_text())
    assert set(folds) == set(reference) == {"rule", "folds"}
    assert folds["rule"] == reference["rule"]
    assert list(folds["folds"]) == [f"fold{k}" for k in range(1, 6)]
    assert all(len(ids) == 5 for ids in folds["folds"].values())
    listed = [s for ids in folds["folds"].values() for s in ids]
    subjects = set(PreparedDataset(root).videos.subject)
    assert sorted(listed) == sorted(subjects) and len(listed) == len(set(listed)) == 25
    assert folds == su.fold_assignment(subjects)
    # the same rule reproduces the real archive's fold file
    real_ids = [s for ids in reference["folds"].values() for s in ids]
    assert su.fold_assignment(real_ids) == reference


def test_determinism(tiny, tmp_path):
    root, manifest, _ = tiny
    again = su.generate_synthetic_unbc(tmp_path / "again", scale="tiny", seed=0)
    assert again["content_hash"] == manifest["content_hash"]
    strip = lambda m: {k: x for k, x in m.items() if k != "created"}  # noqa: E731
    assert strip(again) == strip(manifest)
    a = su.generate_synthetic_unbc(tmp_path / "s0", seed=0, **SMALL)
    b = su.generate_synthetic_unbc(tmp_path / "s1", seed=1, **SMALL)
    assert a["content_hash"] != b["content_hash"]


def test_resume_and_refuse_other_datasets(tmp_path, monkeypatch):
    full = su.generate_synthetic_unbc(tmp_path / "full", seed=3, **SMALL)
    real = su.render_sequence
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(su, "render_sequence", flaky)
    with pytest.raises(KeyboardInterrupt):
        su.generate_synthetic_unbc(tmp_path / "part", seed=3, **SMALL)
    assert not (tmp_path / "part" / "manifest.json").exists()
    # an interrupted UNBC-like generation is not resumed by the PFED5-like generator (or another spec)
    with pytest.raises(ManifestError, match="interrupted synthetic generation"):
        syn.generate_synthetic(tmp_path / "part", scale="tiny", seed=3)
    with pytest.raises(ManifestError, match="interrupted synthetic generation"):
        su.generate_synthetic_unbc(tmp_path / "part", seed=4, **SMALL)
    calls["n"] = -1000
    resumed = su.generate_synthetic_unbc(tmp_path / "part", seed=3, **SMALL)
    assert calls["n"] == -1000 + full["counts"]["videos"] - 2  # the 2 finished sequences were skipped
    assert resumed["content_hash"] == full["content_hash"]
    monkeypatch.undo()
    # a finished folder is returned as is; another spec, or the other generator, is refused
    assert su.generate_synthetic_unbc(tmp_path / "full", seed=3, **SMALL)["created"] == full["created"]
    with pytest.raises(ManifestError, match="another prepared dataset"):
        su.generate_synthetic_unbc(tmp_path / "full", seed=4, **SMALL)
    with pytest.raises(ManifestError, match="another prepared dataset"):
        syn.generate_synthetic(tmp_path / "full", scale="tiny", seed=3)
    syn.generate_synthetic(tmp_path / "pfed5", scale="tiny", seed=0, subjects=2, train_subjects=1,
                           videos_per_expression=1, crop_size=32, expressions="smile")
    with pytest.raises(ManifestError, match="another prepared dataset"):
        su.generate_synthetic_unbc(tmp_path / "pfed5", seed=0, **SMALL)


def test_spec_overrides_presets_and_errors():
    spec = su.synthetic_unbc_spec("tiny", min_length=50, max_length=60, crop_size=64)
    assert (spec.min_length, spec.max_length, spec.crop_size) == (50, 60, 64) and 50 <= spec.mean_length <= 60
    with pytest.raises(ConfigError, match="did you mean 'subjects'"):
        su.synthetic_unbc_spec("tiny", subject=3)
    with pytest.raises(ConfigError, match="unknown synthetic_unbc preset"):
        su.synthetic_unbc_spec("huge")
    with pytest.raises(ConfigError, match="vas_weights"):
        su.synthetic_unbc_spec("tiny", vas_weights=(1, 1))
    with pytest.raises(ConfigError, match="pain_amplitude"):
        su.synthetic_unbc_spec("tiny", pain_amplitude=(1.0, 0.5))
    with pytest.raises(ConfigError, match="subjects"):
        su.synthetic_unbc_spec("tiny", subjects=4)
    with pytest.raises(ConfigError, match="vas"):
        su.render_sequence(su.synthetic_unbc_spec("tiny"), 0, 0, 11)
    # fractional labels on request: zeros stay zero, others move by less than half a point
    whole = pd.DataFrame(su.plan_synthetic_unbc(su.synthetic_unbc_spec("tiny")))
    frac = pd.DataFrame(su.plan_synthetic_unbc(su.synthetic_unbc_spec("tiny", vas_integer=False)))
    assert (frac.vas[whole.vas == 0] == 0).all()
    nz = whole.vas > 0
    assert (frac.vas[nz] != frac.vas[nz].round()).any() and ((frac.vas - whole.vas).abs() <= 0.5).all()
    assert frac.vas.between(0, 10).all()


def test_paper_preset_matches_the_archive():
    spec = su.synthetic_unbc_spec("paper")
    assert (spec.subjects, spec.crop_size, spec.frame_format, spec.min_length, spec.max_length) == (
        25, 256, "jpg", 48, 683)
    plan = pd.DataFrame(su.plan_synthetic_unbc(spec))
    assert len(plan) == 200 and (plan.groupby("subject").size() == 8).all()
    lengths = np.array([su.sequence_length(spec, i, q) for i, q in zip(plan.subject_index, plan.sequence)])
    assert lengths.min() >= 48 and lengths.max() <= 683
    assert abs(lengths.mean() - 242) < 20, lengths.mean()  # archive: 48,398 frames / 200 sequences
    assert plan.vas.median() < 3 and (plan.vas == 0).mean() == pytest.approx(0.4, abs=0.01)
    assert (plan.vas >= 7).sum() >= 20
    # labels are not a subject property: most subjects span a range, not one value
    spread = plan.groupby("subject").vas.agg(lambda x: x.max() - x.min())
    assert (spread >= 3).mean() > 0.8


def test_static_cues_length_and_frame0_carry_no_vas(cue_tables, capsys):
    """What does NOT carry VAS (the card's claim): colour, face size and position on every frame
    (each frame index held by every sequence, each tenth of the sequence, and the mean over all
    frames of each sequence), the length, and
    the neutral frame 0's pain geometry. 4-sigma bound on |rho| for n sequences."""
    table, frames = cue_tables
    n = len(table)
    bound = 4 / math.sqrt(n - 1)
    worst = {}
    for cue in STATIC_CUES:
        rho = {}
        for key in ("t", "rel"):
            for k, g in frames[frames[key] >= 0].groupby(key):
                if len(g) == n:
                    rho[f"{key}={k}"] = spearmanr(g.vas, g[cue])[0]
        assert len(rho) >= 11 + 48, (cue, len(rho))  # 11 tenths + every frame of the shortest sequence
        per_video = frames.groupby("video").agg(vas=("vas", "first"), cue=(cue, "mean"))
        rho["mean over all frames"] = spearmanr(per_video.vas, per_video.cue)[0]
        worst[cue] = max(rho.items(), key=lambda kv: abs(kv[1]))
    static = {c: spearmanr(table.vas, table[c])[0] for c in ("length", "brow_0", "aperture_0", "lip_0")}
    with capsys.disabled():
        print(f"\n[synthetic_unbc] n={n} sequences, no-VAS bound |rho| < {bound:.3f}")
        print("[synthetic_unbc] worst frame per static cue: "
              + ", ".join(f"{c} {v:+.3f} ({where})" for c, (where, v) in worst.items()))
        print("[synthetic_unbc] length and frame-0 geometry: " + ", ".join(f"{k} {v:+.3f}" for k, v in static.items()))
    for cue, (where, r) in worst.items():
        assert abs(r) < bound, f"{cue} at {where} correlates with VAS: rho={r:+.3f}"
    for cue, r in static.items():
        assert abs(r) < bound, f"{cue} correlates with VAS: rho={r:+.3f}"


# Measured (rho with VAS of the peak over the sequence; seeds 0..3 of the 50-sequence tiny preset
# and the 200-sequence cue dataset): brow lowering 0.82..0.92, lip raise 0.91..0.95, brow + lip
# 0.94..0.96, eye narrowing 0.52..0.68 (spontaneous blinks, independent of VAS, close the eyes too).
PAIN_BOUNDS = {"brow_lowering": 0.7, "lip_raise": 0.8, "brow_plus_lip": 0.85, "eye_narrowing": 0.3}


@pytest.mark.parametrize("which", ["tiny", "cue_dataset"])
def test_vas_is_in_the_motion_peak(which, request, capsys):
    """What DOES carry VAS: how far the face moves from its neutral frame 0 at the peak."""
    if which == "tiny":
        table, _ = _cue_tables(PreparedDataset(request.getfixturevalue("tiny")[0]))
    else:
        table, _ = request.getfixturevalue("cue_tables")
    rho = {c: spearmanr(table.vas, table[c])[0] for c in PAIN_CUES}
    with capsys.disabled():
        print(f"\n[synthetic_unbc] {which} (n={len(table)}): peak pain distance rho "
              + ", ".join(f"{k} {v:+.3f}" for k, v in rho.items()))
    for cue, bound in PAIN_BOUNDS.items():
        assert rho[cue] > bound, f"{cue}: VAS not visible in the motion peak (rho={rho[cue]:+.3f})"


@pytest.mark.parametrize("subject,sequence", [(0, 0), (3, 1), (20, 0)])
def test_same_sequence_other_vas_differs_only_in_motion(subject, sequence):
    """Frame 0 and the length are identical at every VAS for the same draw; the peak grows and
    the pain is held longer with VAS."""
    spec = su.synthetic_unbc_spec("tiny", crop_size=32, min_length=100, max_length=100)
    runs = [su.render_sequence(spec, subject, sequence, vas) for vas in (0, 2, 4, 6, 8, 10)]
    f0, p0 = runs[0]
    peaks, held = [], []
    for frames, pts in runs:
        assert frames.shape == f0.shape
        assert np.array_equal(frames[0], f0[0]) and np.array_equal(pts[0], p0[0])
        g = _pain_geometry(pts)
        d = (g[0] - g)[:, [0, 2]].sum(1)
        peaks.append(d.max())
        held.append(int((d >= 0.5 * d.max()).sum()))
    assert all(a < b for a, b in zip(peaks, peaks[1:])), peaks
    assert peaks[-1] > 8 * peaks[0], peaks
    assert all(a < b for a, b in zip(held[2:], held[3:])), held  # above micro-movement level (VAS >= 4)
    assert held[-1] > held[1] + 15, held
