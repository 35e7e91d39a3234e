"""The input validation matrix: each bad input gets one clear error that names the item and the fix,
and every other item's output stays intact (a failed video does not stop the others; an invalid index
is refused before any work, leaving an earlier prepared dataset untouched; a run over damaged files is
recorded as failed while the other runs of the grid finish).

| case | where it is caught | test |
|---|---|---|
| corrupt or truncated video | prepare, per video (recorded failure) | test_bad_videos_are_recorded_failures_and_the_others_prepared |
| empty frame folder | prepare, per video | same |
| no face in any frame | prepare, per video | same |
| frame count in the CSV != frames in the folder | PFED5 index, before decoding | test_pfed5_index_errors |
| label outside the scale, NaN label | index, before decoding | test_folder_index_errors |
| unknown expression (name or index) | index | test_folder_index_errors / test_pfed5_index_errors |
| duplicate video id | index | test_folder_index_errors |
| subject in two splits | index | test_folder_index_errors |
| subject in two folds | fold file | tests/test_unbc_protocol.py |
| path escaping the data root (``../``, absolute) | index | test_folder_index_errors / test_pfed5_index_errors |
| files that do not match the manifest's checksums | every run, before training | test_damaged_files_fail_their_run_only |
| run folder of another run id | every run | tests/test_executors.py |
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.data.prepare import prepare_dataset
from benchmark.data.prepared import PreparedDataset
from benchmark.engine import execute
from benchmark.errors import DataError, LabelError, SubjectLeakError
from benchmark.runs import RunSpec, read_result, resolve

from _media import write_avi
from conftest import make_prepared
from test_prepare import ScriptedBackend, gray_frames, write_labels


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture()
def raw(tmp_path):
    """A folder-layout dataset of two good videos, already prepared once into ``out``."""
    raw = tmp_path / "raw"
    raw.mkdir()
    write_avi(raw / "a.avi", gray_frames(4))
    write_avi(raw / "b.avi", gray_frames(4))
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 1, "train"), ("b.avi", "s2", "smile", 3, "test")])
    prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo", backend=ScriptedBackend(),
                    crop_size=32, progress=False)
    return raw


def _prepare(raw, out):
    return prepare_dataset(raw, out, layout="folder", card="real_faces_demo", backend=ScriptedBackend(),
                           crop_size=32, progress=False)


@pytest.mark.parametrize("rows, error, message", [
    ([("a.avi", "s1", "smile", 7, "train")], LabelError, r"labels.csv line 2 \(video 'a.avi'\).*outside the range"),
    ([("a.avi", "s1", "smile", "nan", "train")], LabelError, r"labels.csv line 2 \(video 'a.avi'\): label is missing"),
    ([("a.avi", "s1", "7", 1, "train")], DataError, r"line 2.*unknown expression '7'.*or an index 0\.\.4"),
    ([("a.avi", "s1", "grin", 1, "train")], DataError, r"line 2.*unknown expression 'grin'.*use one of sit_at_rest, smile"),
    ([("a.avi", "s1", "smile", 1, "train"), ("a.avi", "s2", "smile", 1, "test")], DataError,
     r"duplicated video id\(s\): video id 'a' in labels.csv line 2 .* line 3 .*listed once with a unique id"),
    ([("a.avi", "p9", "smile", 1, "train"), ("b.avi", "p9", "frown", 2, "test")], SubjectLeakError,
     r"'p9'.*train video 'a.avi'.*test video 'b.avi'"),
    ([("../outside.avi", "s1", "smile", 1, "train")], DataError,
     r"line 2.*\.\./outside.avi lies outside the dataset folder .*move or link the video into the dataset folder"),
    ([("/etc/passwd", "s1", "smile", 1, "train")], DataError, r"line 2.*/etc/passwd lies outside the dataset folder"),
    ([("sub/../../outside.avi", "s1", "smile", 1, "train")], DataError, r"lies outside the dataset folder"),
])
def test_folder_index_errors(raw, tmp_path, rows, error, message):
    """Each invalid labels.csv is refused before any decoding with one error naming the line, the video
    and the fix; the dataset prepared earlier from the good index is untouched."""
    (tmp_path / "outside.avi").write_bytes((raw / "a.avi").read_bytes())
    before = _digest(tmp_path / "out")
    write_labels(raw / "labels.csv", rows)
    backend = ScriptedBackend()
    with pytest.raises(error, match=message):
        prepare_dataset(raw, tmp_path / "out", layout="folder", card="real_faces_demo", backend=backend,
                        crop_size=32, progress=False)
    assert backend.calls == 0
    assert _digest(tmp_path / "out") == before


def test_a_path_through_a_link_inside_the_dataset_is_allowed(raw, tmp_path):
    """Only the path as written must stay inside: a symlink placed in the dataset may point elsewhere."""
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    write_avi(elsewhere / "c.avi", gray_frames(4))
    os.symlink(elsewhere / "c.avi", raw / "c.avi")
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 1, "train"), ("c.avi", "s2", "smile", 3, "test")])
    assert sorted(_prepare(raw, tmp_path / "out2")["videos"]) == ["a", "c"]


def _pfed5(root: Path, rows: list[tuple], frames: dict[str, int]) -> Path:
    """A minimal official PFED5 layout: CSVs by position and <patient>/<id[:11]>/*.jpg folders."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        sel = [r for r in rows if r[-1] == split]
        pd.DataFrame([r[:4] for r in sel], columns=["id", "label", "num_frames", "class"]).to_csv(
            root / f"PFED5_{split}.csv", index=False)
    for vid, n in frames.items():
        folder = root / vid.rsplit("_", 1)[-1] / vid[:11]
        folder.mkdir(parents=True, exist_ok=True)
        for t in range(n):
            cv2.imwrite(str(folder / f"{t + 1:05d}.jpg"), np.full((32, 32, 3), 100, np.uint8))
    return root


@pytest.mark.parametrize("rows, frames, message", [
    ([("00000000001_p1", 1, 5, 1, "train"), ("00000000002_p2", 2, 4, 1, "test")],
     {"00000000001_p1": 3, "00000000002_p2": 4},
     r"1 video\(s\) of .*PFED5_train.csv have another number of frames than declared: PFED5_train.csv line 2 "
     r"\(video '00000000001_p1'\): .* holds 3 frame images but the CSV says 5.*correct column 3"),
    ([("00000000001_p1", 1, 3, 9, "train"), ("00000000002_p2", 2, 4, 1, "test")],
     {"00000000001_p1": 3, "00000000002_p2": 4},
     r"line 2 \(video '00000000001_p1'\): expression index \(column 4\) '9' is not one of 0\.\.4"),
    ([("..", 1, 3, 1, "train"), ("00000000002_p2", 2, 4, 1, "test")], {"00000000002_p2": 4},
     r"line 2 \(video '\.\.'\): \.\./\.\. lies outside the dataset folder"),
])
def test_pfed5_index_errors(tmp_path, rows, frames, message):
    root = _pfed5(tmp_path / "pfed5", rows, frames)
    backend = ScriptedBackend()
    with pytest.raises(DataError, match=message):
        prepare_dataset(root, tmp_path / "out", layout="pfed5", card="pfed5", backend=backend, crop_size=32,
                        progress=False)
    assert backend.calls == 0 and not (tmp_path / "out").exists()


def test_bad_videos_are_recorded_failures_and_the_others_prepared(raw, tmp_path):
    """A corrupt file, a truncated one, an empty frame folder and a video without any face: each is
    recorded in the manifest with an error naming it; the good videos are prepared."""
    (raw / "garbage.avi").write_bytes(b"this is not a video" * 100)
    good = (raw / "a.avi").read_bytes()
    (raw / "cut.avi").write_bytes(good[: len(good) // 3])
    (raw / "empty_frames").mkdir()
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 1, "train"), ("garbage.avi", "s2", "smile", 1, "train"),
                                      ("cut.avi", "s3", "smile", 2, "train"), ("empty_frames", "s4", "smile", 0, "test"),
                                      ("b.avi", "s5", "smile", 3, "test")])
    manifest = _prepare(raw, tmp_path / "out3")
    assert sorted(manifest["videos"]) == ["a", "b"]
    failed = {f["source"].split(" ")[0].rsplit("/", 1)[-1]: f["error"] for f in manifest["failed"]}
    assert set(failed) == {"garbage.avi", "cut.avi", "empty_frames"}, failed
    for name, err in failed.items():
        assert name in err, (name, err)
    assert failed["garbage.avi"].startswith("CorruptVideoError")
    assert "empty_frames holds no *.jpg" in failed["empty_frames"] and "put the video's frames there" in \
        failed["empty_frames"]
    # no face in any frame of one video (a dark one): that video fails, the others are prepared
    write_avi(raw / "dark.avi", [np.zeros((64, 64, 3), np.uint8)] * 4)
    write_labels(raw / "labels.csv", [("a.avi", "s1", "smile", 1, "train"), ("dark.avi", "s2", "smile", 2, "train"),
                                      ("b.avi", "s5", "smile", 3, "test")])

    class NoFaceInTheDark(ScriptedBackend):
        def detect(self, frame):
            return None if frame.mean() < 10 else super().detect(frame)

    m = prepare_dataset(raw, tmp_path / "out4", layout="folder", card="real_faces_demo", backend=NoFaceInTheDark(),
                        crop_size=32, progress=False)
    assert sorted(m["videos"]) == ["a", "b"]
    [f] = m["failed"]
    assert "dark.avi" in f["source"] and f["error"].startswith("NoFaceError") and "no face" in f["error"]


def test_damaged_files_fail_their_run_only(tmp_path):
    """A prepared file changed after prepare: the runs that read it fail with an error naming the
    video, manifest.json and the fix; a run on another expression's (intact) videos finishes."""
    ds = make_prepared(tmp_path / "data", videos=6, expressions=("smile", "frown"))
    frames = ds.root / "frames" / "smile_v1.npy"
    arr = np.load(frames)
    arr[0, 0, 0, 0] ^= 1
    np.save(frames, arr)
    assert PreparedDataset(ds.root).verify() == ["smile_v1"]
    bad = resolve(RunSpec("dummy", ds.root, "smile"), tmp_path / "runs")
    good = resolve(RunSpec("dummy", ds.root, "frown"), tmp_path / "runs")
    res = execute(bad, progress=False, log=lambda s: None)
    assert res["status"] == "failed" and res["error"]["type"] == "ManifestError"
    msg = res["error"]["message"]
    assert "smile_v1" in msg and "manifest.json" in msg and "run the same prepare command again" in msg
    assert execute(good, progress=False, log=lambda s: None)["status"] == "ok"
    assert read_result(bad.folder)["status"] == "failed"
