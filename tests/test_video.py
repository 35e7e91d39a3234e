"""Video and frame-folder decoding (benchmark/data/video.py): frames, fps, corrupt inputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.data import video as video_mod
from benchmark.data.video import (
    VideoReader,
    frame_count_tolerance,
    list_frame_files,
    open_video,
    read_video,
)
from benchmark.errors import CorruptVideoError, DataError

from _media import write_avi


def noise_frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


def cut(src: Path, dst: Path, fraction: float) -> Path:
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst


# ----------------------------------------------------------------- real videos
def test_read_real_video_frames_and_fps(real_faces_dir):
    frames, fps = read_video(real_faces_dir / "interview_man.mp4")
    assert frames.shape == (300, 256, 256, 3) and frames.dtype == np.uint8
    assert fps == pytest.approx(30.0)
    frames, fps = read_video(real_faces_dir / "talking_woman_long.mp4", max_frames=7)
    assert frames.shape == (7, 256, 256, 3)
    assert fps == pytest.approx(25.0)


def test_real_video_is_rgb_not_bgr(real_faces_dir):
    # Independent decode with OpenCV (BGR): our frame must be its channel reversal.
    cap = cv2.VideoCapture(str(real_faces_dir / "head_turn_woman.mp4"))
    ok, bgr = cap.read()
    cap.release()
    assert ok
    frames, _ = read_video(real_faces_dir / "head_turn_woman.mp4", max_frames=1)
    assert np.array_equal(frames[0], bgr[:, :, ::-1])
    assert not np.array_equal(frames[0], bgr)


def test_pyav_fallback_when_opencv_cannot_open(real_faces_dir, monkeypatch):
    reference, _ = read_video(real_faces_dir / "interview_man.mp4", max_frames=5)

    class ClosedCapture:
        def __init__(self, *a, **k):
            pass

        def isOpened(self):
            return False

        def release(self):
            pass

    monkeypatch.setattr(video_mod.cv2, "VideoCapture", ClosedCapture)
    with open_video(real_faces_dir / "interview_man.mp4", max_frames=5) as reader:
        frames = np.stack(list(reader))
        assert reader.info.decoder == "pyav"
        assert reader.info.fps == pytest.approx(30.0)
        assert reader.info.declared_frames == 300
    assert frames.shape == reference.shape
    # Same H.264 decode, different YUV->RGB conversion code: nearly equal pixels.
    assert np.abs(frames.astype(int) - reference.astype(int)).mean() < 3.0


# ----------------------------------------------------------------- truncated / corrupt
def test_truncated_mp4_written_by_opencv_is_corrupt(tmp_path):
    # cv2.VideoWriter's MP4 keeps its index (moov) at the end: half a file cannot be opened.
    path = tmp_path / "small.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 48))
    assert writer.isOpened()
    for f in noise_frames(30):
        writer.write(f)
    writer.release()
    assert read_video(path)[0].shape[0] == 30  # the whole file is fine
    broken = cut(path, tmp_path / "small_cut.mp4", 0.5)
    with pytest.raises(CorruptVideoError) as info:
        read_video(broken)
    msg = str(info.value)
    assert "small_cut.mp4" in msg and "truncated" in msg and "ffmpeg" in msg


def test_truncated_faststart_mp4_is_corrupt(real_faces_dir, tmp_path):
    # The real videos keep their index at the front: half a file opens, then decoding
    # stops after about half the frames; the declared count (300) exposes it.
    broken = cut(real_faces_dir / "interview_man.mp4", tmp_path / "interview_half.mp4", 0.5)
    with pytest.raises(CorruptVideoError) as info:
        read_video(broken)
    msg = str(info.value)
    assert "interview_half.mp4" in msg and "of the 300 frames" in msg


def test_truncated_video_prefix_is_readable_with_max_frames(real_faces_dir, tmp_path):
    # Documented: stopping early on purpose skips the frame-count check.
    broken = cut(real_faces_dir / "interview_man.mp4", tmp_path / "interview_half.mp4", 0.5)
    frames, _ = read_video(broken, max_frames=10)
    full, _ = read_video(real_faces_dir / "interview_man.mp4", max_frames=10)
    assert np.array_equal(frames, full)


def test_truncated_avi_is_corrupt(tmp_path):
    path = write_avi(tmp_path / "clip.avi", noise_frames(30))
    assert read_video(path)[0].shape == (30, 48, 64, 3)
    broken = cut(path, tmp_path / "clip_cut.avi", 0.5)
    with pytest.raises(CorruptVideoError, match=r"clip_cut\.avi.*of the 30 frames"):
        read_video(broken)


def test_garbage_file_is_corrupt(tmp_path):
    path = tmp_path / "not_a_video.mp4"
    path.write_bytes(b"this is not a video" * 100)
    with pytest.raises(CorruptVideoError, match="not_a_video.mp4"):
        read_video(path)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nothing_here.mp4"):
        read_video(tmp_path / "nothing_here.mp4")


@pytest.mark.parametrize("declared,expected", [(0, 2), (30, 2), (100, 2), (101, 3), (300, 6), (1203, 25)])
def test_frame_count_tolerance_values(declared, expected):
    # max(2, ceil(2 % of declared)), computed by hand
    assert frame_count_tolerance(declared) == expected


# ----------------------------------------------------------------- frame folders
def test_frame_folder_sorted_by_name_and_rgb(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    # Written out of order; value v in the red channel of frame named v.
    for v in (3, 1, 10, 2):
        bgr = np.zeros((6, 8, 3), np.uint8)
        bgr[..., 2] = v * 20  # red in BGR order
        cv2.imwrite(str(folder / f"img_{v:05d}.png"), bgr)
    (folder / "notes.txt").write_text("ignored")
    frames, fps = read_video(folder, fps=12.5)
    assert frames.shape == (4, 6, 8, 3)
    assert fps == 12.5
    assert frames[:, 0, 0, 0].tolist() == [20, 40, 60, 200]  # red channel first (RGB), sorted names
    assert frames[..., 1:].max() == 0
    assert [p.name for p in list_frame_files(folder)] == [
        "img_00001.png", "img_00002.png", "img_00003.png", "img_00010.png"]
    assert read_video(folder)[1] == 0.0  # unknown fps for a folder


def test_empty_frame_folder_is_corrupt(tmp_path):
    folder = tmp_path / "P01" / "empty_video"
    folder.mkdir(parents=True)
    with pytest.raises(CorruptVideoError, match="empty_video.*holds no"):
        read_video(folder)


def test_unreadable_frame_is_corrupt(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    cv2.imwrite(str(folder / "00001.jpg"), np.zeros((8, 8, 3), np.uint8))
    (folder / "00002.jpg").write_bytes(b"\xff\xd8 broken jpeg")
    with pytest.raises(CorruptVideoError, match="00002.jpg"):
        read_video(folder)


def test_frame_folder_with_mixed_sizes_is_corrupt(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    cv2.imwrite(str(folder / "00001.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(folder / "00002.png"), np.zeros((8, 9, 3), np.uint8))
    with pytest.raises(CorruptVideoError, match=r"00002.png is 9x8 px"):
        read_video(folder)


def test_reader_counts_frames_and_stops_at_max_frames(tmp_path):
    path = write_avi(tmp_path / "clip.avi", noise_frames(12), fps=8.0)
    reader = VideoReader(path, max_frames=5)
    assert reader.info.declared_frames == 12 and reader.info.fps == pytest.approx(8.0)
    assert (reader.info.width, reader.info.height) == (64, 48)
    assert len(list(reader)) == 5 and reader.frames_read == 5
    reader.close()
    with pytest.raises(ValueError):
        VideoReader(path, max_frames=0)

