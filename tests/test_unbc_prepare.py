"""``prepare unbc``: the UNBC-McMaster archive layout, matching by sequence name, input
errors, the AAM landmark source, end to end (scripted backend and real frames + mediapipe)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main
from benchmark.data.landmarks.base import Detection, LandmarkBackend
from benchmark.data.prepare import VideoItem, check_items, collect_items, prepare_dataset
from benchmark.data.prepared import LandmarkScheme, PreparedDataset
from benchmark.data.unbc import read_aam_landmarks, read_unbc_index
from benchmark.errors import ConfigError, DataError, LabelError, ManifestError

# (Images subject folder, sequence, frames, VAS); label folders deliberately differ
SEQUENCES = [
    ("042-ll042", "ll042t1aaaff", 3, 2.5),
    ("042-ll042", "ll042t2aaunaff", 2, 0.0),
    ("043-jh043", "jh043t1aeaff", 4, 10.0),
]


def aam_points(t: int) -> np.ndarray:
    """(66, 2) (x, y) AAM points of frame t (0-based) of every fake sequence."""
    i = np.arange(66)
    return np.stack([14.0 + (i % 11) * 2.5 + t, 10.0 + (i // 11) * 2.0 + 0.5 * t], axis=1)


def write_aam(path: Path, pts: np.ndarray) -> None:
    path.write_text("".join(f"{x:.4f} {y:.4f}\n" for x, y in pts))


def gray(t: int, size: int = 64) -> np.ndarray:
    return np.full((size, size, 3), 60 + 10 * t, np.uint8)


def make_archive(root: Path, sequences=SEQUENCES, *, frame=gray, doubled: bool = False, aam: bool = True,
                 label_subject=lambda s: s[4:]) -> Path:
    """A tiny fake UNBC copy. Label subject folders are the Images ones minus their first
    4 characters (``042-ll042`` -> ``ll042``) unless ``label_subject`` says otherwise."""
    d = (lambda name: Path(name) / name) if doubled else Path
    for subject, seq, n, vas in sequences:
        img = root / d("Images") / subject / seq
        img.mkdir(parents=True, exist_ok=True)
        for t in range(n):
            cv2.imwrite(str(img / f"{seq}{t + 1:03d}.png"), cv2.cvtColor(frame(t), cv2.COLOR_RGB2BGR))
        lab = root / d("Sequence_Labels") / "VAS" / label_subject(subject)
        lab.mkdir(parents=True, exist_ok=True)
        (lab / f"{seq}.txt").write_text(f"   {vas:.7e}\n")
        if aam:
            a = root / d("AAM_landmarks") / subject / seq
            a.mkdir(parents=True, exist_ok=True)
            for t in range(n):
                write_aam(a / f"{seq}{t + 1:03d}_aam.txt", aam_points(t))
    return root


# ================================================================= the index
def test_index_matches_labels_by_sequence_name(tmp_path):
    raw = make_archive(tmp_path / "unbc")
    assert not (raw / "Sequence_Labels" / "VAS" / "042-ll042").exists()  # label folders are named otherwise
    items = read_unbc_index(raw)
    assert [it.video_id for it in items] == ["ll042t1aaaff", "ll042t2aaunaff", "jh043t1aeaff"]
    assert [it.subject for it in items] == ["042-ll042", "042-ll042", "043-jh043"]
    assert [it.label for it in items] == [2.5, 0.0, 10.0]
    assert [it.expected_frames for it in items] == [3, 2, 4]
    assert {it.expression for it in items} == {"pain"} and {it.split for it in items} == {"all"}
    assert items[0].source == (raw / "Images" / "042-ll042" / "ll042t1aaaff").resolve()
    assert items[0].aam_dir == (raw / "AAM_landmarks" / "042-ll042" / "ll042t1aaaff").resolve()
    assert items[0].original == "ll042t1aaaff"


def test_index_label_folders_in_any_arrangement(tmp_path):
    # every label in one differently named folder: still matched by sequence name
    raw = make_archive(tmp_path / "unbc", label_subject=lambda s: "all_subjects_here")
    assert [it.label for it in read_unbc_index(raw)] == [2.5, 0.0, 10.0]


def test_kaggle_doubled_folders(tmp_path):
    plain = read_unbc_index(make_archive(tmp_path / "plain"))
    kaggle = read_unbc_index(make_archive(tmp_path / "kaggle", doubled=True))
    def key(items):
        return [(it.video_id, it.subject, it.label, it.expected_frames) for it in items]
    assert key(kaggle) == key(plain)
    assert "AAM_landmarks/AAM_landmarks" in str(kaggle[0].aam_dir)


def test_missing_aam_allowed(tmp_path):
    raw = make_archive(tmp_path / "unbc")
    shutil.rmtree(raw / "AAM_landmarks" / "043-jh043" / "jh043t1aeaff")
    (raw / "AAM_landmarks" / "042-ll042" / "ll042t1aaaff" / "ll042t1aaaff002_aam.txt").unlink()
    items = {it.video_id: it for it in read_unbc_index(raw)}
    assert items["jh043t1aeaff"].aam_dir is None
    pts = read_aam_landmarks(items["ll042t1aaaff"].aam_dir, "ll042t1aaaff", 3)
    assert pts.shape == (3, 66, 2) and pts.dtype == np.float32
    assert np.isnan(pts[1]).all() and np.isfinite(pts[[0, 2]]).all()
    np.testing.assert_allclose(pts[2], aam_points(2), atol=1e-4)
    assert np.isnan(read_aam_landmarks(None, "x", 2)).all()
    shutil.rmtree(raw / "AAM_landmarks")  # no AAM tree at all
    assert all(it.aam_dir is None for it in read_unbc_index(raw))


def _drop_vas(raw):
    (raw / "Sequence_Labels" / "VAS" / "ll042" / "ll042t2aaunaff.txt").unlink()
    return DataError, "ll042t2aaunaff", "no VAS file"


def _vas_without_frames(raw):
    p = raw / "Sequence_Labels" / "VAS" / "ll042" / "ll042t9zzaff.txt"
    p.write_text("3\n")
    return DataError, str(p), "no frame folder"


def _label(text):
    def case(raw):
        p = raw / "Sequence_Labels" / "VAS" / "jh043" / "jh043t1aeaff.txt"
        p.write_text(text)
        return LabelError, str(p), ""
    case.__name__ = "label_" + (re.sub(r"\W", "_", text) or "empty")
    return case


def _sequence_twice(raw):
    shutil.copytree(raw / "Images" / "042-ll042" / "ll042t1aaaff", raw / "Images" / "043-jh043" / "ll042t1aaaff")
    return DataError, "ll042t1aaaff", "found twice"


def _vas_twice(raw):
    other = raw / "Sequence_Labels" / "VAS" / "042-ll042"
    other.mkdir()
    (other / "ll042t1aaaff.txt").write_text("1\n")
    return DataError, "ll042t1aaaff", "two VAS files"


def _gap(raw):
    (raw / "Images" / "043-jh043" / "jh043t1aeaff" / "jh043t1aeaff002.png").unlink()
    return DataError, str(raw / "Images" / "043-jh043" / "jh043t1aeaff"), "gaps"


def _misnamed_frame(raw):
    p = raw / "Images" / "043-jh043" / "jh043t1aeaff" / "frame5.png"
    shutil.copy(raw / "Images" / "043-jh043" / "jh043t1aeaff" / "jh043t1aeaff001.png", p)
    return DataError, str(p), "must be named"


def _empty_sequence(raw):
    for p in (raw / "Images" / "042-ll042" / "ll042t2aaunaff").iterdir():
        p.unlink()
    return DataError, "ll042t2aaunaff", "holds no frame image"


def _aam_rows(raw):
    p = raw / "AAM_landmarks" / "042-ll042" / "ll042t1aaaff" / "ll042t1aaaff002_aam.txt"
    write_aam(p, aam_points(1)[:65])
    return DataError, str(p), "66 rows"


def _aam_columns(raw):
    p = raw / "AAM_landmarks" / "043-jh043" / "jh043t1aeaff" / "jh043t1aeaff001_aam.txt"
    p.write_text("".join(f"{x} {y} 1.0\n" for x, y in aam_points(0)))
    return DataError, str(p), "66 rows"


def _aam_beyond_frames(raw):
    p = raw / "AAM_landmarks" / "042-ll042" / "ll042t2aaunaff" / "ll042t2aaunaff003_aam.txt"
    write_aam(p, aam_points(2))
    return DataError, str(p), "frame 3"


def _no_images(raw):
    shutil.rmtree(raw / "Images")
    return DataError, "Images", "no Images folder"


@pytest.mark.parametrize("case", [
    _drop_vas, _vas_without_frames, _label("abc\n"), _label("11\n"), _label("-0.5"), _label(""), _label("3 4\n"),
    _sequence_twice, _vas_twice, _gap, _misnamed_frame, _empty_sequence, _aam_rows, _aam_columns,
    _aam_beyond_frames, _no_images,
], ids=lambda c: c.__name__.strip("_"))
def test_bad_input_raises_named_error(tmp_path, case):
    raw = make_archive(tmp_path / "unbc")
    cls, names, says = case(raw)
    with pytest.raises(cls, match=re.escape(names)) as info:
        read_unbc_index(raw)
    assert says in str(info.value)
    if cls is DataError:
        assert not isinstance(info.value, LabelError)


def test_label_error_names_range_and_file(tmp_path):
    raw = make_archive(tmp_path / "unbc")
    p = raw / "Sequence_Labels" / "VAS" / "jh043" / "jh043t1aeaff.txt"
    p.write_text("12.5")
    with pytest.raises(LabelError, match=r"outside the range 0\.\.10") as info:
        collect_items(raw, layout="unbc", card="unbc_mcmaster")
    assert str(p) in str(info.value)


def test_layout_needs_one_expression_and_no_labels_csv(tmp_path):
    raw = make_archive(tmp_path / "unbc")
    with pytest.raises(ConfigError, match="one expression"):
        read_unbc_index(raw, card="pfed5")
    with pytest.raises(ConfigError, match="labels_csv"):
        collect_items(raw, layout="unbc", card="unbc_mcmaster", labels_csv=raw / "x.csv")


def test_split_all_may_not_mix_with_train_test(tmp_path):
    def item(vid, split):
        return VideoItem(vid, tmp_path / vid, vid, "s1", "pain", 1.0, split, f"row {vid}")
    check_items([item("a", "all"), item("b", "all")])  # one subject, many videos: folds decide later
    with pytest.raises(DataError, match="mixes split 'all'"):
        check_items([item("a", "all"), item("b", "train")])
    with pytest.raises(DataError, match="split 'val'"):
        check_items([item("a", "val")])


# ================================================================= end to end, scripted backend
class BoxBackend(LandmarkBackend):
    """Frame t (index in the video): face box (10+t, 8+t, 50+t, 28+t) (40 x 20 px, so the crop
    scales x and y differently) and two points; no face at the indices in ``missing``."""

    name = "box"
    scheme = LandmarkScheme("box_2", 2, {"a": [0], "b": [1]})

    def __init__(self, missing=()):
        self.missing = set(missing)
        self.t = 0
        self.calls = 0

    def reset(self):
        self.t = 0

    def detect(self, frame):
        t, self.t = self.t, self.t + 1
        self.calls += 1
        if t in self.missing:
            return None
        return Detection(np.array([10.0 + t, 8.0 + t, 50.0 + t, 28.0 + t]),
                         np.array([[20.0 + t, 15.0 + t], [40.0 + t, 20.0 + t]], np.float32), 0.9)

    def provenance(self):
        return {"name": self.name, "version": "test", "scheme": self.scheme.name, "model_files": [],
                "settings": {"missing": sorted(self.missing)}}


def expected_aam_in_crop(t: int, size: int) -> np.ndarray:
    """Independent crop transform of frame t: box (10+t, 8+t, 50+t, 28+t) (whole pixels, inside
    the 64 x 64 frame), shift, clamp into the 40 x 20 box, scale by (S/40, S/20)."""
    x0, y0 = 10 + t, 8 + t
    p = np.clip(aam_points(t) - (x0, y0), 0, (39, 19))
    return p * (size / 40, size / 20)


@pytest.fixture
def prepared_unbc(tmp_path):
    raw = make_archive(tmp_path / "unbc")
    (raw / "AAM_landmarks" / "042-ll042" / "ll042t1aaaff" / "ll042t1aaaff003_aam.txt").unlink()
    shutil.rmtree(raw / "AAM_landmarks" / "042-ll042" / "ll042t2aaunaff")
    out = tmp_path / "prepared"
    backend = BoxBackend(missing={1})  # frame 2 of every sequence: box and crop interpolated
    manifest = prepare_dataset(raw, out, layout="unbc", card="unbc_mcmaster", backend=backend,
                               crop_size=16, progress=False)
    return raw, out, manifest, backend


def test_prepare_unbc_writes_labels_subjects_split_all(prepared_unbc):
    raw, out, manifest, _ = prepared_unbc
    assert manifest["card"] == "unbc_mcmaster" and manifest["prepare"]["layout"] == "unbc"
    assert manifest["counts"]["videos"] == 3 and manifest["counts"]["failed_videos"] == 0
    df = pd.read_csv(out / "videos.csv", dtype={"subject": str}).set_index("video_id")
    for subject, seq, n, vas in SEQUENCES:
        row = df.loc[seq]
        label_file = next((raw / "Sequence_Labels" / "VAS").rglob(f"{seq}.txt"))
        assert row["label"] == float(label_file.read_text()) == vas
        assert (row["subject"], row["expression"], row["split"], row["num_frames"]) == (subject, "pain", "all", n)
        assert row["source"] == seq
    assert set(df["split"]) == {"all"} and set(df["expression"]) == {"pain"}


def test_prepare_unbc_aam_source_in_crop_pixels(prepared_unbc):
    _, out, manifest, _ = prepared_unbc
    ds = PreparedDataset(out)
    assert ds.landmark_sources == ("detected", "aam_66")
    src = manifest["landmark_sources"]
    assert src["detected"]["scheme"] == "box_2" and src["detected"]["path"] == "landmarks"
    assert src["aam_66"]["num_points"] == 66 and src["aam_66"]["path"] == "landmarks_aam_66"
    assert src["aam_66"]["videos"] == 2 and src["aam_66"]["videos_without"] == ["ll042t2aaunaff"]
    assert src["aam_66"]["frames_without"] == 1 + 2  # frame 3 of ll042t1aaaff, all of ll042t2aaunaff

    aam, present = ds.landmarks("ll042t1aaaff", source="aam_66")
    assert aam.shape == (3, 66, 2) and aam.dtype == np.float32
    assert present.tolist() == [True, True, False] and np.isnan(aam[2]).all()
    assert (out / "landmarks_aam_66" / "ll042t1aaaff.npy").is_file()
    for t in (0, 1):  # frame 1 (t=1) had no face: its interpolated box is the same linear one
        np.testing.assert_allclose(aam[t], expected_aam_in_crop(t, 16), atol=1e-4)
    aam, present = ds.landmarks("jh043t1aeaff", source="aam_66")
    assert present.all()
    # one point by hand: frame 3, point 40 = (14 + 7*2.5 + 3, 10 + 3*2 + 1.5) = (34.5, 17.5);
    # box (13, 11, 53, 31): (21.5, 6.5) * (16/40, 16/20) = (8.6, 5.2)
    np.testing.assert_allclose(aam[3, 40], [8.6, 5.2], atol=1e-4)

    points, found = ds.landmarks("jh043t1aeaff")  # the detected source, unchanged
    assert points.shape == (4, 2, 2) and found.tolist() == [True, False, True, True]
    np.testing.assert_allclose(points[:, 0], np.tile([10 * 16 / 40, 7 * 16 / 20], (4, 1)), atol=1e-4)
    assert ds.verify() == []


def test_absent_landmark_source_errors(prepared_unbc):
    _, out, _, _ = prepared_unbc
    ds = PreparedDataset(out)
    assert not ds.has_landmarks("ll042t2aaunaff", "aam_66") and ds.has_landmarks("ll042t1aaaff", "aam_66")
    assert not (out / "landmarks_aam_66" / "ll042t2aaunaff.npy").exists()
    with pytest.raises(ManifestError, match="ll042t2aaunaff.*no 'aam_66' landmarks"):
        ds.landmarks("ll042t2aaunaff", source="aam_66")
    with pytest.raises(ManifestError, match="no landmark source 'pspi'.*detected, aam_66"):
        ds.landmarks("ll042t1aaaff", source="pspi")


def test_prepare_unbc_resumes_and_changed_aam_is_detected(prepared_unbc):
    raw, out, manifest, _ = prepared_unbc
    again = BoxBackend(missing={1})
    m2 = prepare_dataset(raw, out, layout="unbc", card="unbc_mcmaster", backend=again, crop_size=16, progress=False)
    assert again.calls == 0 and m2["content_hash"] == manifest["content_hash"]
    np.save(out / "landmarks_aam_66" / "jh043t1aeaff.npy", np.zeros((4, 66, 2), np.float32))
    assert PreparedDataset(out).verify() == ["jh043t1aeaff"]


def test_dataset_without_extra_sources_has_only_detected(small_prepared):
    assert small_prepared.landmark_sources == ("detected",)
    assert "landmark_sources" not in small_prepared.manifest
    with pytest.raises(ManifestError, match="no landmark source 'aam_66'"):
        small_prepared.landmarks("smile_v0", source="aam_66")


# ================================================================= end to end, real frames, mediapipe, CLI
def test_cli_prepare_unbc_real_frames_mediapipe(real_faces_dir, tmp_path, capsys):
    pytest.importorskip("mediapipe", reason="the mediapipe extra is not installed")
    cap = cv2.VideoCapture(str(real_faces_dir / "interview_man.mp4"))
    real = []
    for _ in range(3):
        ok, bgr = cap.read()
        assert ok
        real.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    seqs = [("042-ll042", "ll042t1aaaff", 3, 4.0), ("043-jh043", "jh043t2aeunaff", 2, 7.25)]
    raw = make_archive(tmp_path / "unbc", seqs, frame=lambda t: real[t], doubled=True)
    face = np.stack([np.full(66, 110.0) + np.arange(66) % 11 * 4, np.full(66, 100.0) + np.arange(66) // 11 * 8], 1)
    for subject, seq, n, _ in seqs:
        for t in range(n):
            write_aam(raw / "AAM_landmarks" / "AAM_landmarks" / subject / seq / f"{seq}{t + 1:03d}_aam.txt", face)
    out = tmp_path / "prepared"
    assert main(["prepare", "unbc", "--raw", str(raw), "--out", str(out), "--crop-size", "32", "--quiet"]) == 0
    assert "landmark source aam_66: 2 video(s) with points" in capsys.readouterr().out

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["card"] == "unbc_mcmaster" and manifest["backend"]["name"] == "mediapipe"
    assert manifest["landmark_sources"]["detected"]["scheme"] == "facemesh_inner_116"
    df = pd.read_csv(out / "videos.csv").set_index("video_id")
    assert df.loc["ll042t1aaaff", "label"] == 4.0 and df.loc["jh043t2aeunaff", "label"] == 7.25
    assert set(df["split"]) == {"all"} and set(df["expression"]) == {"pain"}
    ds = PreparedDataset(out)
    aam, present = ds.landmarks("ll042t1aaaff", source="aam_66")
    assert aam.shape == (3, 66, 2) and present.all() and ds.landmarks("ll042t1aaaff")[1].all()

    # independent crop transform of frame 0: a fresh detector on the same frame, the
    # official box rounding, shift, clamp and scale
    from benchmark.data.landmarks import get_backend

    frame0 = cv2.cvtColor(cv2.imread(str(raw / "Images" / "Images" / "042-ll042" / "ll042t1aaaff"
                                         / "ll042t1aaaff001.png")), cv2.COLOR_BGR2RGB)
    with get_backend("mediapipe") as bk:
        det = bk.detect(frame0)
    x0, y0, x1, y1 = np.round(det.bbox[:4])
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, 256), min(y1, 256)
    j = 27  # (130, 116): inside the face box
    assert x0 < face[j, 0] < x1 and y0 < face[j, 1] < y1
    want = (face[j] - (x0, y0)) * (32 / (x1 - x0), 32 / (y1 - y0))
    np.testing.assert_allclose(aam[0, j], want, atol=1e-3)
