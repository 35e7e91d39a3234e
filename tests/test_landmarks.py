"""Face/landmark backends, landmark schemes, the face crop and missing-frame filling.

Numbers are checked against hand computations written out in the comments.
"""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.data.landmarks import available_backends, get_backend
from benchmark.data.landmarks.base import Detection, LandmarkBackend
from benchmark.data.landmarks.crop import (
    CropSpec,
    crop_box,
    crop_face,
    crop_image,
    crop_sequence,
    fill_missing,
    points_to_crop,
)
from benchmark.data.landmarks.insightface_backend import ENV_MODEL_DIR, INSIGHTFACE_73_SCHEME
from benchmark.data.landmarks.mediapipe_backend import FACEMESH_INNER_116, FACEMESH_INNER_116_SCHEME
from benchmark.errors import BackendUnavailableError, ConfigError, NoFaceError

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _fake_insightface import default_landmark_bias, make_pack  # noqa: E402
from _media import REAL_FACES, skip_or_fail_without  # noqa: E402


@pytest.fixture(scope="module")
def real_frame() -> np.ndarray:
    """Frame 0 of interview_man.mp4, (256, 256, 3) uint8 RGB."""
    path = REAL_FACES / "interview_man.mp4"
    skip_or_fail_without(path, "real face videos")
    cap = cv2.VideoCapture(str(path))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def mediapipe_backend():
    pytest.importorskip("mediapipe", reason="the mediapipe extra is not installed")
    backend = get_backend("mediapipe", static_image_mode=True)
    yield backend
    backend.close()


# ----------------------------------------------------------------- schemes
def _is_partition(groups: dict, k: int) -> bool:
    flat = sorted(i for idx in groups.values() for i in idx)
    return flat == list(range(k))


def test_insightface_73_scheme_groups():
    s = INSIGHTFACE_73_SCHEME
    assert s.name == "insightface_73" and s.num_points == 73
    assert _is_partition(s.groups, 73)
    # 2d106 ranges 33-42, 43-51, 52-71, 72-86, 87-96, 97-105 minus 33
    assert s.groups["left_eye"] == list(range(0, 10))
    assert s.groups["left_eyebrow"] == list(range(10, 19))
    assert s.groups["mouth"] == list(range(19, 39))
    assert s.groups["nose"] == list(range(39, 54))
    assert s.groups["right_eye"] == list(range(54, 64))
    assert s.groups["right_eyebrow"] == list(range(64, 73))


def test_facemesh_inner_116_matches_mediapipe_constants():
    fmc = pytest.importorskip("mediapipe.python.solutions.face_mesh_connections")

    def vertices(edges):
        return {i for e in edges for i in e}

    union = set()
    for name in ("FACEMESH_LIPS", "FACEMESH_LEFT_EYE", "FACEMESH_RIGHT_EYE", "FACEMESH_LEFT_EYEBROW",
                 "FACEMESH_RIGHT_EYEBROW", "FACEMESH_NOSE"):
        union |= vertices(getattr(fmc, name))
    assert len(FACEMESH_INNER_116) == 116 == len(set(FACEMESH_INNER_116))
    assert set(FACEMESH_INNER_116) == union
    assert not set(FACEMESH_INNER_116) & vertices(fmc.FACEMESH_FACE_OVAL)  # no contour point
    s = FACEMESH_INNER_116_SCHEME
    assert s.num_points == 116 and _is_partition(s.groups, 116)
    mouth = {FACEMESH_INNER_116[i] for i in s.groups["mouth"]}
    assert mouth == vertices(fmc.FACEMESH_LIPS)
    left_eye = {FACEMESH_INNER_116[i] for i in s.groups["left_eye"]}
    assert left_eye == vertices(fmc.FACEMESH_LEFT_EYE)


# ----------------------------------------------------------------- crop: official bbox mode
def test_bbox_crop_box_rounds_and_clamps():
    spec = CropSpec(size=100)
    # round(10.4)=10, round(-3.6)=-4 -> 0, round(60.2)=60, round(45.5)=46 (half to even)
    assert crop_box((10.4, -3.6, 60.2, 45.5), (80, 100, 3), spec) == (10, 0, 60, 46)
    # end past the right border is cut at W=100
    assert crop_box((70.0, 10.0, 130.0, 50.0), (80, 100, 3), spec) == (70, 10, 100, 50)
    # a box entirely outside the frame holds no pixel -> None (no face)
    assert crop_box((120.0, 10.0, 150.0, 50.0), (80, 100, 3), spec) is None
    assert crop_box((np.nan, 0, 10, 10), (80, 100, 3), spec) is None


def test_bbox_crop_point_transform_by_hand():
    box, s = (10, 0, 60, 46), 100  # w = 50, h = 46
    pts = np.array([[35.0, 23.0], [5.0, 50.0], [70.0, -10.0], [35.4, 22.6]])
    out = points_to_crop(pts, box, s)
    # (35-10)*100/50 = 50, (23-0)*100/46 = 50
    # (5, 50) -> (-5, 50) -> clamp to (0, 45) -> (0, 45*100/46)
    # (70, -10) -> (60, -10) -> clamp to (49, 0) -> (98, 0)
    # (35.4, 22.6) -> (25.4*2, 22.6*100/46)
    expected = np.array([[50.0, 50.0], [0.0, 4500 / 46], [98.0, 0.0], [50.8, 2260 / 46]])
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-4)
    assert out.dtype == np.float32
    # official rounding: round(35.4)=35, round(22.6)=23 -> (50, 50) exactly
    np.testing.assert_array_equal(points_to_crop(pts[3:], box, s, round_points=True), [[50.0, 50.0]])


def test_bbox_crop_image_content_and_orientation():
    frame = np.full((80, 100, 3), 50, np.uint8)
    frame[0:46, 10:60] = 200           # exactly the crop box (10, 0, 60, 46)
    frame[0:23, 10:35] = 255           # its top-left quarter
    crop, pts = crop_face(frame, (10.4, -3.6, 60.2, 45.5), np.array([[35.0, 23.0]]), CropSpec(size=100))
    assert crop.shape == (100, 100, 3) and crop.dtype == np.uint8
    assert crop.min() >= 200           # nothing outside the box is in the crop
    assert (crop[:45, :45] == 255).all() and (crop[55:, 55:] == 200).all()  # stretched, not mirrored
    np.testing.assert_allclose(pts, [[50.0, 50.0]], atol=1e-4)


# ----------------------------------------------------------------- crop: square mode
def test_square_crop_pads_with_black_without_distortion():
    frame = np.random.default_rng(1).integers(1, 256, (100, 100, 3), dtype=np.uint8)
    spec = CropSpec(size=40, mode="square")
    # box (0, 0, 20, 40): side max(20, 40) = 40, centre (10, 20) -> (-10, 0, 30, 40)
    box = crop_box((0, 0, 20, 40), frame.shape, spec)
    assert box == (-10, 0, 30, 40)
    crop = crop_image(frame, box, 40)  # S = side: no resampling
    assert (crop[:, :10] == 0).all()
    np.testing.assert_array_equal(crop[:, 10:], frame[0:40, 0:30])
    np.testing.assert_allclose(points_to_crop(np.array([[10.0, 20.0]]), box, 40), [[20.0, 20.0]])


def test_square_crop_margin_by_hand():
    spec = CropSpec(size=120, mode="square", margin=0.5)
    # box (40, 30, 60, 70): side round(40 * 1.5) = 60 around (50, 50) -> (20, 20, 80, 80)
    box = crop_box((40, 30, 60, 70), (100, 100, 3), spec)
    assert box == (20, 20, 80, 80)
    # point (50, 50) -> (30, 30) * 120/60 = (60, 60); point (45, 65) -> (25, 45) * 2
    np.testing.assert_allclose(points_to_crop(np.array([[50.0, 50.0], [45.0, 65.0]]), box, 120),
                               [[60.0, 60.0], [50.0, 90.0]])


def test_crop_spec_rejects_bad_settings():
    with pytest.raises(ConfigError, match="crop mode"):
        CropSpec(mode="circle")
    with pytest.raises(ConfigError, match="margin"):
        CropSpec(mode="square", margin=-0.1)


# ----------------------------------------------------------------- missing frames
def test_fill_missing_is_mean_of_neighbours_and_nearest_at_ends():
    v = np.array([np.nan, 4.0, np.nan, 10.0, np.nan, np.nan, 1.0, np.nan])
    found = ~np.isnan(v)
    out = fill_missing(v, found)
    # frame 2 = (4 + 10) / 2; frames 4, 5 = 10 + (1 - 10) * 1/3, 2/3; ends = nearest
    np.testing.assert_allclose(out, [4.0, 4.0, 7.0, 10.0, 7.0, 4.0, 1.0, 1.0])


def test_fill_missing_landmark_arrays():
    pts = np.full((3, 2, 2), np.nan)
    pts[0] = [[0, 0], [10, 20]]
    pts[2] = [[4, 8], [30, 40]]
    out = fill_missing(pts, np.array([True, False, True]))
    np.testing.assert_allclose(out[1], [[2, 4], [20, 30]])


def test_fill_missing_without_any_face_names_the_video():
    with pytest.raises(NoFaceError, match="clip_07"):
        fill_missing(np.full((4, 4), np.nan), np.zeros(4, bool), video="clip_07")


def test_crop_sequence_interpolates_box_and_points():
    frames = np.zeros((3, 64, 64, 3), np.uint8)
    k = 1
    det0 = Detection(np.array([10.0, 10.0, 30.0, 30.0]), np.array([[20.0, 20.0]], np.float32))
    det2 = Detection(np.array([20.0, 14.0, 40.0, 34.0]), np.array([[30.0, 28.0]], np.float32))
    crops, pts, found = crop_sequence(frames, [det0, None, det2], CropSpec(size=40), num_points=k)
    assert found.tolist() == [True, False, True]
    assert crops.shape == (3, 40, 40, 3)
    # frame 1: box = mean = (15, 12, 35, 32), point = mean = (25, 24)
    # -> (25-15, 24-12) * 40/20 = (20, 24)
    np.testing.assert_allclose(pts[1], [[20.0, 24.0]])
    # frames with a face: (20-10, 20-10)*2 = (20, 20) and (30-20, 28-14)*2 = (20, 28)
    np.testing.assert_allclose(pts[[0, 2]], [[[20.0, 20.0]], [[20.0, 28.0]]])


# ----------------------------------------------------------------- registry
def test_registry_lists_and_rejects():
    assert available_backends() == ["insightface", "mediapipe"]
    with pytest.raises(ConfigError, match="did you mean mediapipe"):
        get_backend("mediapip")
    with pytest.raises(ConfigError, match="no option det_size"):
        get_backend("mediapipe", det_size=(640, 640))


# ----------------------------------------------------------------- mediapipe
def test_mediapipe_finds_face_with_plausible_landmarks(mediapipe_backend, real_frame):
    det = mediapipe_backend.detect(real_frame)
    assert det is not None
    assert det.points.shape == (116, 2) and det.points.dtype == np.float32
    x1, y1, x2, y2 = det.bbox
    assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
    assert 40 < x2 - x1 < 256 and 40 < y2 - y1 < 256           # a face, not a speck
    g = {name: det.points[idx].mean(axis=0) for name, idx in mediapipe_backend.scheme.groups.items()}
    # Image y grows downwards: brows above eyes above nose above mouth.
    assert g["left_eyebrow"][1] < g["left_eye"][1] < g["nose"][1] < g["mouth"][1]
    assert g["right_eyebrow"][1] < g["right_eye"][1] < g["mouth"][1]
    # MediaPipe LEFT = subject's left = image right on a non-mirrored frontal frame.
    assert g["left_eye"][0] > g["nose"][0] > g["right_eye"][0]


@pytest.mark.parametrize("top,left,bottom,right", [(0, 100, 0, 44), (60, 0, 0, 0)])
def test_mediapipe_pixel_units_on_non_square_frames(mediapipe_backend, real_frame, top, left, bottom, right):
    # Black borders make the frame 256x400 or 316x256; the face must stay where it was,
    # shifted by the border (x scaled by the width, y by the height).
    ref = mediapipe_backend.detect(real_frame)
    padded = cv2.copyMakeBorder(real_frame, top, bottom, left, right, cv2.BORDER_CONSTANT, value=0)
    det = mediapipe_backend.detect(padded)
    assert det is not None
    assert np.abs(det.points - (ref.points + (left, top))).mean() < 2.0
    assert np.abs(det.bbox - (ref.bbox + (left, top, left, top))).max() < 3.0


def test_mediapipe_reports_no_face_on_blank_frame(mediapipe_backend):
    assert mediapipe_backend.detect(np.full((256, 256, 3), 128, np.uint8)) is None


def test_mediapipe_provenance(mediapipe_backend):
    prov = mediapipe_backend.provenance()
    assert prov["name"] == "mediapipe" and prov["version"] == "0.10.21"
    assert prov["scheme"] == "facemesh_inner_116"
    assert prov["settings"]["static_image_mode"] is True
    files = {Path(f["file"]).name: f["sha256"] for f in prov["model_files"]}
    assert set(files) == {"face_detection_short_range.tflite", "face_landmark.tflite"}
    assert all(isinstance(h, str) and len(h) == 64 for h in files.values())


def test_mediapipe_rejects_non_rgb_input(mediapipe_backend):
    with pytest.raises(ValueError, match="uint8 RGB"):
        mediapipe_backend.detect(np.zeros((32, 32), np.uint8))


# ----------------------------------------------------------------- insightface (stand-in ONNX models)
def test_insightface_missing_dir_error_names_path_and_files(tmp_path, monkeypatch):
    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    missing = tmp_path / "no_such_pack"
    with pytest.raises(BackendUnavailableError) as info:
        get_backend("insightface", model_dir=missing)
    msg = str(info.value)
    assert str(missing) in msg and "det_10g.onnx" in msg and "2d106det.onnx" in msg and "does not exist" in msg


def test_insightface_default_dir_never_downloads(tmp_path, monkeypatch):
    pytest.importorskip("insightface")
    import insightface.app.face_analysis as fa

    def no_download(*a, **k):  # pragma: no cover - reached only on failure
        raise AssertionError("insightface tried to download a model pack")

    monkeypatch.setattr(fa, "ensure_available", no_download)
    monkeypatch.delenv(ENV_MODEL_DIR, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(BackendUnavailableError, match=r"\.insightface/models/buffalo_l"):
        get_backend("insightface")
    assert not (tmp_path / ".insightface").exists()  # nothing created either


def test_insightface_empty_dir_from_env(tmp_path, monkeypatch):
    empty = tmp_path / "empty_pack"
    empty.mkdir()
    monkeypatch.setenv(ENV_MODEL_DIR, str(empty))
    with pytest.raises(BackendUnavailableError, match=r"empty_pack.*holds no \*\.onnx.*det_10g\.onnx"):
        get_backend("insightface")


def test_insightface_incomplete_packs(tmp_path):
    pytest.importorskip("insightface")
    only_landmarks = make_pack(tmp_path / "lmk_only", detector=False)
    with pytest.raises(BackendUnavailableError, match="no face detector"):
        get_backend("insightface", model_dir=only_landmarks)
    only_detector = make_pack(tmp_path / "det_only", landmark=False)
    with pytest.raises(BackendUnavailableError, match="no 106-point landmark model.*2d106det.onnx"):
        get_backend("insightface", model_dir=only_detector)


def test_insightface_adapter_runs_and_reports_no_face_on_real_frame(tmp_path, real_frame):
    pytest.importorskip("insightface")
    pack = make_pack(tmp_path / "pack", face_score=False)  # zero-score detector
    backend = get_backend("insightface", model_dir=pack)
    assert isinstance(backend, LandmarkBackend)
    assert backend.detect(real_frame) is None
    prov = backend.provenance()
    assert prov["name"] == "insightface" and prov["version"] == "2.1"
    assert prov["settings"]["det_size"] == [640, 640] and prov["settings"]["ctx_id"] == -1
    assert {f["task"]: f["file"] for f in prov["model_files"]} == {
        "detection": "fake_det.onnx", "landmark_2d_106": "fake_2d106.onnx"}


def test_insightface_adapter_keeps_points_33_to_105(tmp_path):
    """Full InsightFace code path with a stand-in detector that fires on one white cell."""
    pytest.importorskip("insightface")
    backend = get_backend("insightface", model_dir=make_pack(tmp_path / "pack"))
    frame = np.zeros((320, 320, 3), np.uint8)
    frame[160:176, 160:176] = 255
    det = backend.detect(frame)
    assert det is not None
    # The 320x320 frame is scaled x2 into the 640x640 detector input: the white cell
    # is stride-32 cell (10, 10), anchor centre (320, 320), box +-1 stride = (288, 288, 352, 352),
    # back in frame pixels / 2 = (144, 144, 176, 176).
    np.testing.assert_allclose(det.bbox, [144, 144, 176, 176], atol=1e-3)
    assert 0.5 < det.score <= 1.0
    # Landmark crop: centre (160, 160), scale 192 / (1.5 * 32) = 4; a normalised output v
    # lands at centre + v * 96 / 4 = 160 + 24 v. Keep 2d106 indices 33..105.
    expected = 160.0 + 24.0 * default_landmark_bias()[33:106]
    assert det.points.shape == (73, 2)
    np.testing.assert_allclose(det.points, expected, atol=1e-3)
