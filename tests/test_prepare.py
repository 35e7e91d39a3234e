"""``prepare``: real face videos end to end, official PFED5 layout, validation, failures, resume."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

import benchmark.data.prepare as prepare_mod
from benchmark.data.landmarks.base import Detection, LandmarkBackend
from benchmark.data.landmarks.crop import CropSpec
from benchmark.data.prepare import prepare_dataset, prepare_video, safe_video_id
from benchmark.data.prepared import LandmarkScheme, PreparedDataset, check_video_id
from benchmark.errors import DataError, LabelError, SubjectLeakError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_insightface import default_landmark_bias, make_pack  # noqa: E402
from _media import write_avi  # noqa: E402

COLUMNS = ["video", "subject", "expression", "label", "split"]


@pytest.fixture(scope="module")
def need_mediapipe():
    pytest.importorskip("mediapipe", reason="the mediapipe extra is not installed")


def write_labels(path: Path, rows: list[tuple]) -> Path:
    """A labels CSV (folder layout). Labels here are DEMO labels, not clinical."""
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return path


def gray_frames(n: int, size: int = 64) -> list[np.ndarray]:
    return [np.full((size, size, 3), 90 + 5 * i, np.uint8) for i in range(n)]


class ScriptedBackend(LandmarkBackend):
    """A backend whose answer depends only on the frame's index in the video.

    Frame t has the box (10+t, 8+t, 42+t, 40+t) and points (20+t, 20+t), (30+t, 25+t),
    except for the indices in ``missing`` (no face). Counts calls.
    """

    name = "scripted"
    scheme = LandmarkScheme("scripted_2", 2, {"a": [0], "b": [1]})

    def __init__(self, missing=(), no_face_at_all=False):
        self.missing = set(missing)
        self.no_face_at_all = no_face_at_all
        self.calls = 0
        self.t = 0

    def reset(self):
        self.t = 0

    def detect(self, frame):
        t = self.t
        self.t += 1
        self.calls += 1
        if self.no_face_at_all or t in self.missing:
            return None
        return Detection(np.array([10.0 + t, 8.0 + t, 42.0 + t, 40.0 + t]),
                         np.array([[20.0 + t, 20.0 + t], [30.0 + t, 25.0 + t]], np.float32), 0.9)

    def provenance(self):
        return {"name": self.name, "version": "test", "scheme": self.scheme.name,
                "model_files": [], "settings": {"missing": sorted(self.missing)}}


# ================================================================= real faces, mediapipe
@pytest.fixture(scope="module")
def real_prepared(real_faces_dir, need_mediapipe, tmp_path_factory):
    """The three real videos, whole, prepared with mediapipe (tracking mode) at 64x64."""
    tmp = tmp_path_factory.mktemp("real")
    labels = write_labels(tmp / "demo_labels.csv", [
        ("interview_man.mp4", "man_a", "smile", 2, "train"),
        ("talking_woman_long.mp4", "woman_b", "sit_at_rest", 1, "train"),
        ("head_turn_woman.mp4", "woman_c", "frown", 3, "test"),
    ])
    out = tmp / "prepared"
    manifest = prepare_dataset(real_faces_dir, out, layout="folder", card="real_faces_demo", backend="mediapipe",
                               labels_csv=labels, crop_size=64, progress=False)
    return out, manifest


def test_real_faces_manifest_lists_backend_and_counts(real_prepared):
    out, manifest = real_prepared
    assert manifest == json.loads((out / "manifest.json").read_text())
    assert manifest["card"] == "real_faces_demo" and manifest["demo_labels"] is True
    assert manifest["backend"]["name"] == "mediapipe" and manifest["backend"]["version"] == "0.10.21"
    assert manifest["landmark_scheme"]["name"] == "facemesh_inner_116"
    assert manifest["landmark_scheme"]["num_points"] == 116
    assert manifest["prepare"]["crop"]["mode"] == "bbox" and manifest["crop_size"] == 64
    assert manifest["counts"]["videos"] == 3 and manifest["counts"]["failed_videos"] == 0
    assert manifest["counts"]["frames"] == 300 + 300 + 1203  # whole videos, end to end


def test_real_faces_every_interview_frame_has_a_face(real_prepared):
    out, manifest = real_prepared
    assert manifest["videos"]["interview_man"]["faces_found"] == 300
    ds = PreparedDataset(out)
    points, found = ds.landmarks("interview_man")
    assert found.shape == (300,) and found.all()
    assert points.shape == (300, 116, 2)
    assert ds.frames("interview_man").shape == (300, 64, 64, 3)


def test_real_faces_frames_without_face_are_counted(real_prepared):
    out, manifest = real_prepared
    ds = PreparedDataset(out)
    missing = {vid: int((~ds.landmarks(vid)[1]).sum()) for vid in ds.videos.index}
    for vid, n in missing.items():  # per video: manifest, videos.csv and landmark flags agree
        assert manifest["videos"][vid]["num_frames"] - manifest["videos"][vid]["faces_found"] == n
        assert ds.videos.at[vid, "num_frames"] - ds.videos.at[vid, "faces_found"] == n
    assert manifest["counts"]["frames_without_face"] == sum(missing.values())
    # head_turn_woman: not fatal whatever the count (tracking keeps the face: measured 0 missing)
    assert manifest["videos"]["head_turn_woman"]["num_frames"] == 300
    # talking_woman_long has two corrupted transition frames (552, 553) with no face
    assert 1 <= missing["talking_woman_long"] <= 10
    assert not ds.landmarks("talking_woman_long")[1][552:554].any()


def test_real_faces_landmarks_inside_crop_and_anatomical(real_prepared):
    out, manifest = real_prepared
    ds = PreparedDataset(out)
    groups = manifest["landmark_scheme"]["groups"]
    for vid in ds.videos.index:
        points, _ = ds.landmarks(vid)
        assert np.isfinite(points).all() and points.min() >= 0 and points.max() < 64
    points, _ = ds.landmarks("interview_man")
    y = {g: points[:, idx, 1].mean() for g, idx in groups.items()}
    assert y["left_eyebrow"] < y["left_eye"] < y["nose"] < y["mouth"]
    # The crop is the face: the inner points spread over a good part of it.
    spread = points.max(axis=1) - points.min(axis=1)
    assert (spread > 20).all()


def test_real_faces_index_splits_and_checksums(real_prepared):
    out, _ = real_prepared
    ds = PreparedDataset(out)
    v = ds.videos
    assert sorted(v.index) == ["head_turn_woman", "interview_man", "talking_woman_long"]
    assert v.at["interview_man", "split"] == "train" and v.at["head_turn_woman", "split"] == "test"
    assert v.at["talking_woman_long", "expression"] == "sit_at_rest"
    assert v.at["head_turn_woman", "label"] == 3.0 and v.at["head_turn_woman", "subject"] == "woman_c"
    assert v.at["interview_man", "fps"] == pytest.approx(30.0)
    assert v.at["talking_woman_long", "fps"] == pytest.approx(25.0)
    assert v.at["interview_man", "source"] == "interview_man.mp4"
    assert ds.verify() == []


def test_head_turn_static_mode_missing_frames_counted_not_fatal(real_faces_dir, need_mediapipe, tmp_path):
    labels = write_labels(tmp_path / "labels.csv", [("head_turn_woman.mp4", "woman_c", "frown", 3, "test")])
    manifest = prepare_dataset(real_faces_dir, tmp_path / "out", layout="folder", card="real_faces_demo",
                               backend="mediapipe", backend_options={"static_image_mode": True},
                               labels_csv=labels, crop_size=64, progress=False)
    entry = manifest["videos"]["head_turn_woman"]
    assert manifest["counts"]["failed_videos"] == 0 and entry["num_frames"] == 300
    # per-frame detection loses the near-profile frames (measured: 86-88)
    assert 1 <= manifest["counts"]["frames_without_face"] <= 20
    assert manifest["counts"]["frames_without_face"] == 300 - entry["faces_found"]
    assert manifest["backend"]["settings"]["static_image_mode"] is True


def test_real_missing_frames_interpolated_between_neighbours(real_faces_dir, need_mediapipe):
    from benchmark.data.landmarks import get_backend

    with get_backend("mediapipe", static_image_mode=True) as backend:
        pv = prepare_video(real_faces_dir / "head_turn_woman.mp4", backend, CropSpec(size=64))
    missing = np.flatnonzero(~pv.face_found)
    assert missing.size >= 1
    found = np.flatnonzero(pv.face_found)
    for m in missing:
        a, b = found[found < m].max(), found[found > m].min()
        w = (m - a) / (b - a)
        np.testing.assert_allclose(pv.boxes[m], pv.boxes[a] + w * (pv.boxes[b] - pv.boxes[a]), atol=1e-9)
        np.testing.assert_allclose(pv.source_points[m],
                                   pv.source_points[a] + w * (pv.source_points[b] - pv.source_points[a]),
                                   atol=1e-4)
        # crop coordinates by hand: official box rounding/clamping, then shift and scale
        x1, y1, x2, y2 = np.round(pv.boxes[m])
        x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, 256), min(y2, 256)
        p = pv.source_points[m] - (x1, y1)
        p = np.clip(p, 0, (x2 - x1 - 1, y2 - y1 - 1)) * (64 / (x2 - x1), 64 / (y2 - y1))
        np.testing.assert_allclose(pv.points[m], p, atol=1e-3)


def test_prepare_with_insightface_stand_in_models(tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    pack = make_pack(tmp_path / "pack")
    monkeypatch.setenv("QAFE_BENCH_INSIGHTFACE_DIR", str(pack))  # the backend's default lookup
    raw = tmp_path / "raw"
    raw.mkdir()
    frames = []
    for _ in range(3):
        f = np.zeros((320, 320, 3), np.uint8)
        f[160:176, 160:176] = 255  # the stand-in detector fires on this cell only
        frames.append(f)
    write_avi(raw / "square.avi", frames)
    write_labels(raw / "labels.csv", [("square.avi", "s1", "smile", 2, "train")])
    manifest = prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo",
                               backend="insightface", crop_size=64, progress=False)
    assert manifest["backend"]["name"] == "insightface" and manifest["backend"]["model_dir"] == str(pack.resolve())
    assert manifest["landmark_scheme"]["name"] == "insightface_73"
    points, found = PreparedDataset(tmp_path / "out").landmarks("square")
    assert found.all() and points.shape == (3, 73, 2)
    # box (144, 144, 176, 176) (see test_landmarks); points 160 + 24 v -> crop:
    # clip(16 + 24 v, 0, 31) * 64 / 32
    expected = np.clip(16.0 + 24.0 * default_landmark_bias()[33:106], 0, 31) * 2.0
    np.testing.assert_allclose(points[0], expected, atol=1e-3)


# ================================================================= failures during processing
def test_corrupt_and_faceless_videos_recorded_others_prepared(real_faces_dir, need_mediapipe, tmp_path, caplog):
    raw = tmp_path / "raw"
    raw.mkdir()
    os.symlink(real_faces_dir / "interview_man.mp4", raw / "interview_man.mp4")
    os.symlink(real_faces_dir / "head_turn_woman.mp4", raw / "head_turn_woman.mp4")
    mp4 = raw / "broken_full.mp4"
    writer = cv2.VideoWriter(str(mp4), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    for f in gray_frames(20):
        writer.write(f)
    writer.release()
    data = mp4.read_bytes()
    (raw / "broken.mp4").write_bytes(data[: len(data) // 2])
    mp4.unlink()
    write_avi(raw / "no_face.avi", gray_frames(12))
    write_labels(raw / "labels.csv", [
        ("interview_man.mp4", "s1", "smile", 2, "train"),
        ("broken.mp4", "s2", "smile", 1, "train"),
        ("no_face.avi", "s3", "frown", 0, "train"),
        ("head_turn_woman.mp4", "s4", "frown", 3, "test"),
    ])
    with caplog.at_level(logging.WARNING, logger="benchmark.data.prepare"):
        manifest = prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo",
                                   backend="mediapipe", crop_size=64, max_frames=20, progress=False)
    assert manifest["counts"]["videos"] == 2 and manifest["counts"]["failed_videos"] == 2
    assert sorted(manifest["videos"]) == ["head_turn_woman", "interview_man"]
    failed = {Path(f["source"].split(" ")[0]).name: f["error"] for f in manifest["failed"]}
    assert set(failed) == {"broken.mp4", "no_face.avi"}
    assert failed["broken.mp4"].startswith("CorruptVideoError") and "broken.mp4" in failed["broken.mp4"]
    assert failed["no_face.avi"].startswith("NoFaceError") and "no face" in failed["no_face.avi"]
    assert "2 of 4 video(s) could not be prepared" in caplog.text and "broken.mp4" in caplog.text
    assert len(PreparedDataset(tmp_path / "out").videos) == 2


def test_truncated_faststart_video_is_a_recorded_failure(real_faces_dir, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    data = (real_faces_dir / "interview_man.mp4").read_bytes()
    (raw / "half.mp4").write_bytes(data[: len(data) // 2])  # opens, decodes ~147 of 300 frames
    write_avi(raw / "good.avi", gray_frames(6))
    write_labels(raw / "labels.csv", [("half.mp4", "s1", "smile", 1, "train"),
                                      ("good.avi", "s2", "smile", 2, "test")])
    manifest = prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo",
                               backend=ScriptedBackend(), crop_size=32, progress=False)
    assert list(manifest["videos"]) == ["good"]
    assert manifest["counts"]["failed_videos"] == 1
    assert "half.mp4" in manifest["failed"][0]["error"] and "of the 300 frames" in manifest["failed"][0]["error"]


# ================================================================= interpolation through prepare
def test_missing_frame_stored_as_mean_of_neighbours(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "clip.avi", gray_frames(5))
    write_labels(raw / "labels.csv", [("clip.avi", "s1", "smile", 2, "train")])
    manifest = prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo",
                               backend=ScriptedBackend(missing={2}), crop_size=32, progress=False)
    assert manifest["counts"]["frames_without_face"] == 1
    points, found = PreparedDataset(tmp_path / "out").landmarks("clip")
    assert found.tolist() == [True, True, False, True, True]
    # Frame t: box (10+t, 8+t, 42+t, 40+t) -> 32x32 crop at scale 1; points (20+t, 20+t) and
    # (30+t, 25+t) -> crop (10, 12) and (20, 17) for every t, found or interpolated.
    np.testing.assert_allclose(points, np.tile([[10.0, 12.0], [20.0, 17.0]], (5, 1, 1)), atol=1e-5)


def test_second_decode_pass_equals_stashed_frames(tmp_path):
    frames = [np.random.default_rng(i).integers(0, 256, (64, 64, 3), dtype=np.uint8) for i in range(6)]
    path = write_avi(tmp_path / "clip.avi", frames)
    spec = CropSpec(size=32)
    a = prepare_video(path, ScriptedBackend(missing={0, 3}), spec)
    b = prepare_video(path, ScriptedBackend(missing={0, 3}), spec, stash_limit_bytes=0)  # re-decodes
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.points, b.points)
    assert a.face_found.tolist() == [False, True, True, False, True, True]
    # frame 0 before the first face: nearest (frame 1) box (11, 9, 43, 41)
    np.testing.assert_allclose(a.boxes[0], [11, 9, 43, 41])


def test_video_without_any_face_is_the_only_video_fails_clearly(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "empty_scene.avi", gray_frames(4))
    write_labels(raw / "labels.csv", [("empty_scene.avi", "s1", "smile", 2, "train")])
    with pytest.raises(DataError, match=r"no video could be prepared.*empty_scene.*no face"):
        prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo",
                        backend=ScriptedBackend(no_face_at_all=True), crop_size=32, progress=False)


# ================================================================= resume
def test_rerun_skips_prepared_videos_and_refuses_other_settings(tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "a.avi", gray_frames(4))
    write_avi(raw / "b.avi", gray_frames(5))
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 2, "train"), ("b.avi", "s2", "frown", 1, "test")])
    out = tmp_path / "out"
    backend = ScriptedBackend()
    first = prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=backend,
                            crop_size=32, frame_format="jpg", progress=False)
    assert backend.calls == 9
    mtime = (out / "landmarks" / "a.npz").stat().st_mtime_ns

    def must_not_run(*a, **k):
        raise AssertionError("an already prepared video was processed again")

    monkeypatch.setattr(prepare_mod, "prepare_video", must_not_run)
    again = prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=backend,
                            crop_size=32, frame_format="jpg", progress=False)
    assert again["content_hash"] == first["content_hash"] and again["counts"] == first["counts"]
    assert (out / "landmarks" / "a.npz").stat().st_mtime_ns == mtime
    assert PreparedDataset(out).frames("b").shape == (5, 32, 32, 3)
    with pytest.raises(DataError, match=r"other settings \(differing: crop;"):
        prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=backend,
                        crop_size=48, frame_format="jpg", progress=False)


def test_changed_label_is_prepared_again(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "a.avi", gray_frames(3))
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 2, "train")])
    out = tmp_path / "out"
    backend = ScriptedBackend()
    prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=backend, crop_size=32, progress=False)
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 4, "train")])
    prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=backend, crop_size=32, progress=False)
    assert backend.calls == 6
    assert PreparedDataset(out).videos.at["a", "label"] == 4.0


# ================================================================= validation before any work
@pytest.fixture()
def two_videos(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "a.avi", gray_frames(3))
    write_avi(raw / "b.avi", gray_frames(3))
    return raw


def _run_invalid(raw, tmp_path, rows, **kw):
    backend = ScriptedBackend()
    write_labels(raw / "labels.csv", rows)
    try:
        prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo", backend=backend,
                        crop_size=32, progress=False, **kw)
    finally:
        assert backend.calls == 0, "validation must come before any decoding"
        assert not (tmp_path / "out" / "frames").exists()


def test_csv_naming_a_missing_video(two_videos, tmp_path):
    with pytest.raises(DataError) as info:
        _run_invalid(two_videos, tmp_path, [("a.avi", "s1", "smile", 1, "train"),
                                            ("lost.mp4", "s2", "smile", 1, "test")])
    msg = str(info.value)
    assert "lost.mp4" in msg and "labels.csv line 3" in msg and "does not exist" in msg


def test_label_outside_card_range(two_videos, tmp_path):
    with pytest.raises(LabelError) as info:
        _run_invalid(two_videos, tmp_path, [("a.avi", "s1", "smile", 7, "train"),
                                            ("b.avi", "s2", "smile", 1, "test")])
    msg = str(info.value)
    assert "labels.csv line 2" in msg and "'a.avi'" in msg and "'7'" in msg and "0..4" in msg


def test_subject_in_both_splits(two_videos, tmp_path):
    with pytest.raises(SubjectLeakError) as info:
        _run_invalid(two_videos, tmp_path, [("a.avi", "pat_9", "smile", 1, "train"),
                                            ("b.avi", "pat_9", "frown", 2, "test")])
    msg = str(info.value)
    assert "'pat_9'" in msg and "train video 'a.avi'" in msg and "test video 'b.avi'" in msg


def test_unknown_expression_and_split(two_videos, tmp_path):
    with pytest.raises(DataError, match=r"line 3.*unknown expression 'grin'.*smile"):
        _run_invalid(two_videos, tmp_path, [("a.avi", "s1", "smile", 1, "train"),
                                            ("b.avi", "s2", "grin", 1, "test")])
    with pytest.raises(DataError, match=r"line 2.*split 'validation'"):
        _run_invalid(two_videos, tmp_path, [("a.avi", "s1", "1", 1, "validation")])


def test_duplicated_video_ids(two_videos, tmp_path):
    (two_videos / "a b.avi").write_bytes((two_videos / "a.avi").read_bytes())
    (two_videos / "a_b.avi").write_bytes((two_videos / "a.avi").read_bytes())
    with pytest.raises(DataError, match=r"duplicated video id.*'a_b'.*line 2.*line 3"):
        _run_invalid(two_videos, tmp_path, [("a b.avi", "s1", "smile", 1, "train"),
                                            ("a_b.avi", "s2", "smile", 1, "test")])


def test_missing_labels_column(two_videos, tmp_path):
    pd.DataFrame({"video": ["a.avi"], "subject": ["s"], "label": [1], "split": ["train"]}).to_csv(
        two_videos / "labels.csv", index=False)
    with pytest.raises(DataError, match="lacks column.*expression"):
        prepare_dataset(two_videos, tmp_path / "out", layout="folder", card="real_faces_demo",
                        backend=ScriptedBackend(), progress=False)


def test_safe_video_id():
    assert safe_video_id("P01 smile/take#2") == "P01_smile_take_2"
    assert safe_video_id(".hidden") == "v.hidden"
    assert check_video_id(safe_video_id("ü-é")) == "v_-_"


# ================================================================= official PFED5 layout
@pytest.fixture(scope="module")
def real_jpgs(real_faces_dir):
    cap = cv2.VideoCapture(str(real_faces_dir / "interview_man.mp4"))
    frames = []
    for _ in range(8):
        ok, bgr = cap.read()
        assert ok
        frames.append(bgr)
    cap.release()
    return frames


def make_pfed5(root: Path, jpgs, train_rows, test_rows, frames_on_disk=None):
    """Official layout: <root>/<patient>/<first 11 chars of id>/img_00001.jpg ... plus the two CSVs."""
    root.mkdir(parents=True, exist_ok=True)
    for vid, _, n, _ in train_rows + test_rows:
        folder = root / vid.rsplit("_", 1)[-1] / vid[:11]
        folder.mkdir(parents=True, exist_ok=True)
        for i in range((frames_on_disk or {}).get(vid, n)):
            cv2.imwrite(str(folder / f"img_{i + 1:05d}.jpg"), jpgs[i % len(jpgs)])
    header = ["video_id", "score", "frames", "class"]  # names are not used: columns by position
    pd.DataFrame(train_rows, columns=header).to_csv(root / "PFED5_train.csv", index=False)
    pd.DataFrame(test_rows, columns=header).to_csv(root / "PFED5_test.csv", index=False)
    return root


def test_pfed5_layout_prepared_with_mediapipe(real_jpgs, need_mediapipe, tmp_path):
    raw = make_pfed5(tmp_path / "PFED5", real_jpgs,
                     [("vid00000001_smile_P01", 2, 8, 1), ("vid00000002_frown_P02", 0, 6, 2)],
                     [("vid00000003_rest_P03", 4, 5, 0)])
    manifest = prepare_dataset(raw, tmp_path / "out", layout="pfed5", card="pfed5", backend="mediapipe",
                               crop_size=64, progress=False)
    assert manifest["counts"] == {"videos": 3, "frames": 19, "frames_without_face": 0, "failed_videos": 0}
    v = PreparedDataset(tmp_path / "out").videos
    row = v.loc["vid00000001_smile_P01"]
    assert (row.subject, row.expression, row.label, row.split, row.num_frames) == ("P01", "smile", 2.0, "train", 8)
    assert v.at["vid00000003_rest_P03", "expression"] == "sit_at_rest"  # index 0 of the card
    assert v.at["vid00000003_rest_P03", "split"] == "test"
    assert v.at["vid00000002_frown_P02", "fps"] == 0.0  # frame folders: unknown
    assert manifest["prepare"]["layout"] == "pfed5"


def test_pfed5_frame_count_mismatch(real_jpgs, tmp_path):
    raw = make_pfed5(tmp_path / "PFED5", real_jpgs, [("vid00000001_smile_P01", 2, 8, 1)],
                     [("vid00000003_rest_P03", 4, 5, 0)], frames_on_disk={"vid00000001_smile_P01": 6})
    with pytest.raises(DataError, match=r"PFED5_train\.csv line 2.*P01/vid00000001 holds 6 frame images but the CSV says 8"):
        prepare_dataset(raw, tmp_path / "out", layout="pfed5", card="pfed5", backend=ScriptedBackend(), progress=False)


def test_pfed5_missing_folder_label_7_leak_and_bad_expression(real_jpgs, tmp_path):
    raw = make_pfed5(tmp_path / "PFED5", real_jpgs, [("vid00000001_smile_P01", 2, 3, 1)],
                     [("vid00000003_rest_P03", 4, 3, 0)])
    run = lambda: prepare_dataset(raw, tmp_path / "out", layout="pfed5", card="pfed5",  # noqa: E731
                                  backend=ScriptedBackend(), progress=False)
    header = ["video_id", "score", "frames", "class"]
    pd.DataFrame([("vid00000009_smile_P09", 1, 3, 1)], columns=header).to_csv(raw / "PFED5_test.csv", index=False)
    with pytest.raises(DataError, match=r"PFED5_test\.csv line 2.*P09/vid00000009 does not exist"):
        run()
    pd.DataFrame([("vid00000003_rest_P03", 7, 3, 0)], columns=header).to_csv(raw / "PFED5_test.csv", index=False)
    with pytest.raises(LabelError, match=r"PFED5_test\.csv line 2 \(video 'vid00000003_rest_P03'\).*'7'.*0\.\.4"):
        run()
    pd.DataFrame([("vid00000003_rest_P03", 1, 3, 5)], columns=header).to_csv(raw / "PFED5_test.csv", index=False)
    with pytest.raises(DataError, match=r"expression index \(column 4\) '5'"):
        run()
    make_pfed5(raw, real_jpgs, [("vid00000001_smile_P01", 2, 3, 1)], [("vid00000004_frown_P01", 3, 3, 2)])
    with pytest.raises(SubjectLeakError, match=r"'P01'.*vid00000001_smile_P01.*vid00000004_frown_P01"):
        run()
