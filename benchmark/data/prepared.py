"""The prepared-dataset format: what ``prepare`` and the synthetic generator write
and what every dataset adapter reads.

Layout of a prepared dataset folder::

    manifest.json            format version, card, backend, landmark scheme,
                             counts, per-video checksums and face-found counts,
                             failed sources with their errors
    videos.csv               one row per video: video_id, subject, expression,
                             label, split, num_frames, fps, faces_found, source
    frames/<video_id>.npy    (T, S, S, 3) uint8 RGB face crops (memory-mappable);
                             or frames/<video_id>/00001.jpg ... (frame_format "jpg")
    landmarks/<video_id>.npz points (T, K, 2) float32, (x, y) in crop pixels;
                             face_found (T,) bool (False: landmarks interpolated)
    landmarks_<source>/<video_id>.npy   optional further landmark sources (e.g.
                             ``aam_66``, UNBC's AAM points): (T, K', 2) float32
                             (x, y) crop pixels, NaN where a frame has none;
                             listed in the manifest's ``landmark_sources``
    heatmaps/<key>/<video_id>.npy   optional cache of landmark heatmap frames

Every file is written to a temporary name and renamed, so an interrupted
``prepare`` leaves only complete videos, and a re-run skips them.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import cv2
import numpy as np
import pandas as pd

from ..errors import ManifestError

FORMAT_NAME = "qafe-bench-prepared"
FORMAT_VERSION = 1
FRAME_FORMATS = ("npy", "jpg")
VIDEO_COLUMNS = [
    "video_id", "subject", "expression", "label", "split",
    "num_frames", "fps", "faces_found", "source",
]
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
#: (dataset root, video id) pairs whose files this process has checked against the manifest.
_VERIFIED: set[tuple[str, str]] = set()
_SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9_]*$")
#: Name of the landmark source every prepared dataset has (the backend's points in ``landmarks/``).
DETECTED_SOURCE = "detected"


def check_video_id(video_id: str) -> str:
    """Return ``video_id`` if it is a safe file name (letters, digits, ``_ . -``).

    Raises:
        ManifestError: for an empty id, a path separator, or other characters.
    """
    if not isinstance(video_id, str) or not _ID_RE.match(video_id):
        raise ManifestError(
            f"video id {video_id!r} is not usable as a file name: use letters, digits, '_', '.', '-'"
        )
    return video_id


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Text variant of :func:`atomic_write_bytes` (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(T, H, W, C)`` uint8 frames -> ``(T, size[1], size[0], C)`` for ``size = (W, H)`` in pixels,
    with ``cv2.INTER_AREA`` (anti-aliased) frame by frame (``cv2.resize`` takes at most 4 channels,
    so a stack cannot go in one call). Frames already that size are returned as they are (no copy).
    The one resize of the protocols' RGB and heatmap frames and of the heatmap renderer's inputs."""
    w, h = size
    if frames.shape[1] == h and frames.shape[2] == w:
        return frames
    return np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@dataclass(frozen=True)
class LandmarkScheme:
    """Which landmark points a prepared dataset stores.

    Attributes:
        name: e.g. ``insightface_73`` (2d106det indices 33..105, the paper's),
            ``facemesh_inner_116`` (MediaPipe FaceMesh inner-face subset),
            ``synthetic_73`` (the generator's 2d106-like layout).
        num_points: K.
        groups: region name -> list of indices into the K points (eyes, brows,
            mouth, nose), for analyses and documentation.
    """

    name: str
    num_points: int
    groups: dict

    def to_json(self) -> dict:
        return {"name": self.name, "num_points": self.num_points, "groups": self.groups}


class PreparedWriter:
    """Write a prepared dataset, one video at a time, atomically and resumably.

    Args:
        root: output folder (created).
        card: dataset card name (``pfed5``, ``synthetic``, ...).
        crop_size: S, the square face-crop size in pixels (256 in the paper).
        landmark_scheme: the stored landmark points.
        backend: provenance of frames and landmarks, e.g.
            ``{"name": "mediapipe", "version": "0.10.21", "settings": {...}}``.
        frame_format: ``npy`` (raw uint8, memory-mapped gathers) or ``jpg``
            (a folder of JPEG files per video, quality 95; about 10x smaller).
        extra: additional manifest fields (e.g. ``{"demo_labels": true}``,
            the generator's parameters).
        landmark_sources: further landmark sources stored beside the detected
            ones, ``name -> description`` with at least ``num_points`` (e.g.
            ``{"aam_66": {"num_points": 66, "origin": ...}}``); each video then
            passes its points in :meth:`add_video` (``extra_landmarks``). The
            manifest gets ``landmark_sources``: ``detected`` (the backend scheme)
            and each name with its folder and the videos without points.

    Videos already present from an interrupted earlier run (same folder) are kept
    and reported by :meth:`has_video`; call :meth:`finalize` at the end.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        card: str,
        crop_size: int,
        landmark_scheme: LandmarkScheme,
        backend: dict,
        frame_format: str = "npy",
        extra: dict | None = None,
        landmark_sources: dict[str, dict] | None = None,
    ) -> None:
        if frame_format not in FRAME_FORMATS:
            raise ManifestError(f"frame_format must be one of {FRAME_FORMATS}, got {frame_format!r}")
        self.sources: dict[str, dict] = {}
        for name, desc in (landmark_sources or {}).items():
            if not _SOURCE_RE.match(str(name)) or name == DETECTED_SOURCE:
                raise ManifestError(f"landmark source name {name!r} must be lower-case letters, digits and '_', "
                                    f"and not {DETECTED_SOURCE!r}")
            if int(desc.get("num_points", 0)) < 1:
                raise ManifestError(f"landmark source {name!r} needs num_points >= 1, got {desc.get('num_points')!r}")
            self.sources[str(name)] = dict(desc)
        self.root = Path(root)
        self.card = card
        self.crop_size = int(crop_size)
        self.scheme = landmark_scheme
        self.backend = dict(backend)
        self.frame_format = frame_format
        self.extra = dict(extra or {})
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "frames").mkdir(exist_ok=True)
        (self.root / "landmarks").mkdir(exist_ok=True)
        for name in self.sources:
            (self.root / f"landmarks_{name}").mkdir(exist_ok=True)
        self._rows: dict[str, dict] = {}
        self._entries: dict[str, dict] = {}
        self._failures: list[dict] = []
        self._partial = self.root / ".partial.jsonl"
        self._load_existing()

    # ------------------------------------------------------------- resuming
    def _load_existing(self) -> None:
        """Adopt the videos of an interrupted run (``.partial.jsonl``) or of a finished
        one (``manifest.json`` + ``videos.csv``) whose files are still present."""
        records = []
        if self._partial.exists():
            records = [json.loads(line) for line in self._partial.read_text().splitlines() if line.strip()]
        elif (self.root / "manifest.json").is_file() and (self.root / "videos.csv").is_file():
            manifest = json.loads((self.root / "manifest.json").read_text())
            if manifest.get("frame_format") != self.frame_format or manifest.get("crop_size") != self.crop_size:
                raise ManifestError(
                    f"{self.root} holds a dataset with frame_format {manifest.get('frame_format')!r} and crop size "
                    f"{manifest.get('crop_size')}; write into a new folder or delete this one"
                )
            df = pd.read_csv(self.root / "videos.csv", dtype={"video_id": str, "subject": str, "expression": str,
                                                              "split": str, "source": str}, keep_default_na=False)
            for row in df.to_dict("records"):
                entry = manifest.get("videos", {}).get(row["video_id"])
                if entry is not None:
                    row = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
                    records.append({"row": row, "entry": entry})
        for rec in records:
            vid = rec["row"]["video_id"]
            frames = self.root / "frames" / (f"{vid}.npy" if self.frame_format == "npy" else vid)
            extra = rec["entry"].get("landmark_sources") or {}
            if set(extra) != set(self.sources):
                continue  # written with other landmark sources: prepare it again
            if not all(e is None or (self.root / f"landmarks_{n}" / f"{vid}.npy").is_file() for n, e in extra.items()):
                continue
            if frames.exists() and (self.root / "landmarks" / f"{vid}.npz").is_file():
                self._rows[vid] = rec["row"]
                self._entries[vid] = rec["entry"]
        if records:
            self._rewrite_partial()

    def _rewrite_partial(self) -> None:
        atomic_write_text(self._partial, "".join(
            json.dumps({"row": self._rows[v], "entry": self._entries[v]}) + "\n" for v in sorted(self._rows)))

    def existing_rows(self) -> dict[str, dict]:
        """``video_id -> videos.csv row`` of every video already written (this or an earlier run)."""
        return {k: dict(v) for k, v in self._rows.items()}

    def drop_video(self, video_id: str) -> None:
        """Forget a written video (it is then prepared again; its files are overwritten)."""
        if self._rows.pop(video_id, None) is not None:
            self._entries.pop(video_id, None)
            self._rewrite_partial()

    def has_video(self, video_id: str) -> bool:
        """True when ``video_id`` was completely written (also by an earlier, interrupted run)."""
        return video_id in self._rows

    def add_video(
        self,
        video_id: str,
        frames: np.ndarray,
        landmarks: np.ndarray,
        face_found: np.ndarray,
        *,
        subject: str,
        expression: str,
        label: float,
        split: str,
        fps: float,
        source: str = "",
        extra_landmarks: dict[str, np.ndarray | None] | None = None,
    ) -> None:
        """Write one video's face crops and landmarks.

        Args:
            video_id: file-name-safe id (:func:`check_video_id`).
            frames: ``(T, S, S, 3)`` uint8 RGB crops, S = ``crop_size``.
            landmarks: ``(T, K, 2)`` float (x, y) in crop pixels, K = scheme size;
                finite everywhere (interpolate frames without a face first).
            face_found: ``(T,)`` bool, False where landmarks were interpolated.
            subject, expression, label, split: index columns (label already range-checked).
            fps: frames per second of the source (0 when unknown).
            source: where the frames came from (path), for error messages.
            extra_landmarks: one entry per declared ``landmark_sources`` name:
                ``(T, K', 2)`` float (x, y) crop pixels, NaN where a frame has no
                points, or None when this video has none of that source.

        Raises:
            ManifestError: shape, dtype or finiteness violations, a bad id, or
                ``extra_landmarks`` naming other sources than the declared ones.
        """
        check_video_id(video_id)
        frames = np.asarray(frames)
        landmarks = np.asarray(landmarks, dtype=np.float32)
        face_found = np.asarray(face_found, dtype=bool)
        t = frames.shape[0]
        s = self.crop_size
        if frames.dtype != np.uint8 or frames.shape[1:] != (s, s, 3) or t == 0:
            raise ManifestError(
                f"video {video_id}: frames must be (T>0, {s}, {s}, 3) uint8, got {frames.shape} {frames.dtype}"
            )
        if landmarks.shape != (t, self.scheme.num_points, 2):
            raise ManifestError(
                f"video {video_id}: landmarks must be ({t}, {self.scheme.num_points}, 2), got {landmarks.shape}"
            )
        if not np.isfinite(landmarks).all():
            raise ManifestError(f"video {video_id}: landmarks contain NaN/inf (interpolate missing frames first)")
        if face_found.shape != (t,):
            raise ManifestError(f"video {video_id}: face_found must be ({t},), got {face_found.shape}")
        extra_landmarks = dict(extra_landmarks or {})
        if set(extra_landmarks) != set(self.sources):
            raise ManifestError(
                f"video {video_id}: extra_landmarks must give exactly the declared landmark sources "
                f"({', '.join(sorted(self.sources)) or 'none'}), got {', '.join(sorted(extra_landmarks)) or 'none'}"
            )
        extra_arrays: dict[str, np.ndarray | None] = {}
        for name, arr in sorted(extra_landmarks.items()):
            if arr is None:
                extra_arrays[name] = None
                continue
            arr = np.asarray(arr, dtype=np.float32)
            k = int(self.sources[name]["num_points"])
            if arr.shape != (t, k, 2):
                raise ManifestError(
                    f"video {video_id}: landmark source {name!r} must be ({t}, {k}, 2), got {arr.shape}")
            if np.isinf(arr).any():
                raise ManifestError(f"video {video_id}: landmark source {name!r} contains inf (use NaN for no point)")
            extra_arrays[name] = arr

        lm_path = self.root / "landmarks" / f"{video_id}.npz"
        atomic_write_bytes(lm_path, _npz_bytes(points=landmarks, face_found=face_found))
        extra_entries: dict[str, dict | None] = {}
        for name, arr in extra_arrays.items():
            path = self.root / f"landmarks_{name}" / f"{video_id}.npy"
            if arr is None:
                path.unlink(missing_ok=True)
                extra_entries[name] = None
                continue
            atomic_write_bytes(path, _npy_bytes(np.ascontiguousarray(arr)))
            extra_entries[name] = {"sha256": sha256_file(path),
                                   "frames_with_points": int(np.isfinite(arr).all(axis=(1, 2)).sum())}
        if self.frame_format == "npy":
            fr_path = self.root / "frames" / f"{video_id}.npy"
            atomic_write_bytes(fr_path, _npy_bytes(np.ascontiguousarray(frames)))
            frames_sha = sha256_file(fr_path)
        else:
            folder = self.root / "frames" / video_id
            folder.mkdir(parents=True, exist_ok=True)
            h = hashlib.sha256()
            for i, frame in enumerate(frames):
                ok, enc = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                                       [cv2.IMWRITE_JPEG_QUALITY, 95])
                if not ok:
                    raise ManifestError(f"video {video_id}: JPEG encoding of frame {i} failed")
                data = enc.tobytes()
                atomic_write_bytes(folder / f"{i + 1:05d}.jpg", data)
                h.update(data)
            frames_sha = h.hexdigest()
        row = {
            "video_id": video_id, "subject": str(subject), "expression": str(expression),
            "label": float(label), "split": str(split), "num_frames": int(t), "fps": float(fps),
            "faces_found": int(face_found.sum()), "source": str(source),
        }
        entry = {
            "num_frames": int(t),
            "faces_found": int(face_found.sum()),
            "frames_sha256": frames_sha,
            "landmarks_sha256": sha256_file(lm_path),
        }
        if self.sources:
            entry["landmark_sources"] = extra_entries
        self._rows[video_id] = row
        self._entries[video_id] = entry
        with open(self._partial, "a") as f:
            f.write(json.dumps({"row": row, "entry": entry}) + "\n")

    def _sources_summary(self) -> dict:
        out = {DETECTED_SOURCE: {"path": "landmarks", "scheme": self.scheme.name,
                                 "num_points": self.scheme.num_points, "backend": self.backend.get("name"),
                                 "units": "(x, y) crop pixels"}}
        for name, desc in self.sources.items():
            entries = {v: (e.get("landmark_sources") or {}).get(name) for v, e in self._entries.items()}
            without = sorted(v for v, e in entries.items() if e is None)
            frames_without = sum(self._entries[v]["num_frames"] - (e["frames_with_points"] if e else 0)
                                 for v, e in entries.items())
            out[name] = {**desc, "path": f"landmarks_{name}", "units": "(x, y) crop pixels, NaN: no point",
                         "videos": len(entries) - len(without), "videos_without": without,
                         "frames_without": int(frames_without)}
        return out

    def add_failure(self, source: str, error: str) -> None:
        """Record a source that could not be prepared (kept in ``manifest.json``)."""
        self._failures.append({"source": str(source), "error": str(error)})

    def finalize(self) -> dict:
        """Write ``videos.csv`` and ``manifest.json``; return the manifest.

        Raises:
            ManifestError: when no video at all was written.
        """
        if not self._rows:
            details = "; ".join(f"{f['source']}: {f['error']}" for f in self._failures[:5])
            raise ManifestError(f"no video could be prepared into {self.root}" + (f" ({details})" if details else ""))
        df = pd.DataFrame([self._rows[k] for k in sorted(self._rows)], columns=VIDEO_COLUMNS)
        csv_text = df.to_csv(index=False)
        atomic_write_text(self.root / "videos.csv", csv_text)
        content = hashlib.sha256(csv_text.encode())
        for vid in sorted(self._entries):
            e = self._entries[vid]
            content.update(f"{vid}:{e['frames_sha256']}:{e['landmarks_sha256']}".encode())
            for name, src in sorted((e.get("landmark_sources") or {}).items()):
                content.update(f":{name}:{src['sha256'] if src else '-'}".encode())
        manifest = {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "card": self.card,
            "crop_size": self.crop_size,
            "frame_format": self.frame_format,
            "landmark_scheme": self.scheme.to_json(),
            "backend": self.backend,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "content_hash": content.hexdigest(),
            "counts": {
                "videos": len(self._rows),
                "frames": int(df["num_frames"].sum()),
                "frames_without_face": int((df["num_frames"] - df["faces_found"]).sum()),
                "failed_videos": len(self._failures),
            },
            "videos": {k: self._entries[k] for k in sorted(self._entries)},
            "failed": self._failures,
            **self.extra,
        }
        if self.sources:
            manifest["landmark_sources"] = self._sources_summary()
        atomic_write_text(self.root / "manifest.json", json.dumps(manifest, indent=2))
        self._partial.unlink(missing_ok=True)
        return manifest


class PreparedDataset:
    """Read a prepared dataset folder.

    Args:
        root: the folder written by :class:`PreparedWriter`.

    Attributes:
        manifest: the parsed ``manifest.json``.
        videos: ``videos.csv`` as a DataFrame indexed by ``video_id``.
        content_hash: SHA-256 over the index and every file checksum; recorded in
            run provenance (moving the folder does not change it).

    Raises:
        ManifestError: missing ``manifest.json``/``videos.csv``, another format
            or version, or a video file listed but absent.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        mpath = self.root / "manifest.json"
        if not mpath.is_file():
            hint = " (an interrupted prepare: run it again to finish)" if (self.root / ".partial.jsonl").exists() else ""
            raise ManifestError(
                f"{self.root} is not a prepared dataset: {mpath} is missing{hint}. "
                "Create one with `qafe-bench prepare` or `qafe-bench synth`."
            )
        try:
            self.manifest = json.loads(mpath.read_text())
        except json.JSONDecodeError as exc:
            raise ManifestError(f"{mpath} is not valid JSON ({exc}); prepare the dataset again") from None
        if self.manifest.get("format") != FORMAT_NAME or self.manifest.get("version") != FORMAT_VERSION:
            raise ManifestError(
                f"{mpath}: format {self.manifest.get('format')!r} version {self.manifest.get('version')!r}; "
                f"this qafe-bench reads {FORMAT_NAME!r} version {FORMAT_VERSION}. Prepare the dataset again."
            )
        vpath = self.root / "videos.csv"
        if not vpath.is_file():
            raise ManifestError(f"{vpath} is missing; prepare the dataset again")
        df = pd.read_csv(vpath, dtype={"video_id": str, "subject": str, "expression": str, "split": str, "source": str},
                         keep_default_na=False)
        self.videos = df.set_index("video_id", drop=False)
        self.content_hash: str = self.manifest["content_hash"]
        self.crop_size: int = int(self.manifest["crop_size"])
        self.frame_format: str = self.manifest["frame_format"]
        self.card_name: str = self.manifest["card"]

    def crop_spec(self) -> dict:
        """The face-crop settings the frames were made with (``manifest["prepare"]["crop"]``:
        size, mode, margin, ...), or ``{"size": crop_size}`` for data drawn directly at
        that size (synthetic). ``qafe-bench score`` crops a new video the same way."""
        crop = (self.manifest.get("prepare") or {}).get("crop")
        return dict(crop) if crop else {"size": self.crop_size}

    @property
    def num_points(self) -> int:
        """K, the number of stored landmark points."""
        return int(self.manifest["landmark_scheme"]["num_points"])

    def _frames_path(self, video_id: str) -> Path:
        if self.frame_format == "npy":
            p = self.root / "frames" / f"{video_id}.npy"
        else:
            p = self.root / "frames" / video_id
        if not p.exists():
            raise ManifestError(f"{p} is missing (listed in {self.root / 'videos.csv'}); prepare the dataset again")
        return p

    def frames(self, video_id: str, indices: Iterable[int] | np.ndarray | None = None) -> np.ndarray:
        """Face crops of one video.

        Args:
            video_id: a ``videos.csv`` id.
            indices: 0-based frame indices (any order, repeats allowed); all frames if None.

        Returns:
            ``(len(indices), S, S, 3)`` uint8 RGB.
        """
        path = self._frames_path(video_id)
        n = int(self.videos.at[video_id, "num_frames"])
        idx = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise IndexError(f"video {video_id}: frame index out of range 0..{n - 1}")
        if self.frame_format == "npy":
            arr = np.load(path, mmap_mode="r")
            return np.ascontiguousarray(arr[idx])
        out = np.empty((idx.size, self.crop_size, self.crop_size, 3), np.uint8)
        cache: dict[int, np.ndarray] = {}
        for j, i in enumerate(idx.tolist()):
            if i not in cache:
                img = cv2.imread(str(path / f"{i + 1:05d}.jpg"), cv2.IMREAD_COLOR)
                if img is None:
                    raise ManifestError(f"{path / f'{i + 1:05d}.jpg'} is missing or unreadable; prepare again")
                cache[i] = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            out[j] = cache[i]
        return out

    @property
    def landmark_sources(self) -> tuple[str, ...]:
        """Names of the stored landmark sources: ``detected`` (the backend's, always) and
        any further ones of the manifest's ``landmark_sources`` (e.g. ``aam_66``)."""
        more = [n for n in (self.manifest.get("landmark_sources") or {}) if n != DETECTED_SOURCE]
        return (DETECTED_SOURCE, *more)

    def has_landmarks(self, video_id: str, source: str = DETECTED_SOURCE) -> bool:
        """True when ``video_id`` has points of ``source`` (always, for ``detected``)."""
        if source == DETECTED_SOURCE:
            return video_id in self.videos.index
        if source not in self.landmark_sources:
            return False
        entry = self.manifest.get("videos", {}).get(video_id) or {}
        return (entry.get("landmark_sources") or {}).get(source) is not None

    def landmarks(self, video_id: str, source: str = DETECTED_SOURCE) -> tuple[np.ndarray, np.ndarray]:
        """Landmarks of one video from one landmark source.

        Args:
            video_id: a ``videos.csv`` id.
            source: ``detected`` (the backend's points, ``landmarks/``) or another
                name of :attr:`landmark_sources` (e.g. ``aam_66``).

        Returns:
            ``detected``: ``points (T, K, 2)`` float32 (x, y) crop pixels, finite,
            and ``face_found (T,)`` bool (False: interpolated). Another source:
            ``points (T, K', 2)`` float32 (x, y) crop pixels, NaN in frames without
            points, and ``present (T,)`` bool (the frame has points).

        Raises:
            ManifestError: the dataset has no such source, this video has none of
                its points (its raw data had none), or the file is missing.
        """
        if source == DETECTED_SOURCE:
            p = self.root / "landmarks" / f"{video_id}.npz"
            if not p.is_file():
                raise ManifestError(f"{p} is missing (listed in {self.root / 'videos.csv'}); prepare the dataset again")
            with np.load(p, allow_pickle=False) as z:
                return z["points"].astype(np.float32), z["face_found"].astype(bool)
        if source not in self.landmark_sources:
            raise ManifestError(
                f"{self.root} has no landmark source {source!r}: it has {', '.join(self.landmark_sources)} "
                "(see its manifest's landmark_sources); use one of those"
            )
        if video_id not in self.videos.index:
            raise ManifestError(f"video {video_id!r} is not listed in {self.root / 'videos.csv'}")
        if not self.has_landmarks(video_id, source):
            raise ManifestError(
                f"video {video_id!r} of {self.root} has no {source!r} landmarks (its raw data had none; listed "
                f"under landmark_sources.{source}.videos_without in the manifest): use source "
                f"{DETECTED_SOURCE!r}, or leave the video out"
            )
        p = self.root / f"landmarks_{source}" / f"{video_id}.npy"
        if not p.is_file():
            raise ManifestError(f"{p} is missing (listed in {self.root / 'manifest.json'}); prepare the dataset again")
        points = np.load(p, allow_pickle=False).astype(np.float32)
        return points, np.isfinite(points).all(axis=(1, 2))

    def check_files(self, video_ids: Iterable[str]) -> None:
        """Recompute the checksums of ``video_ids`` (once per process per video) and refuse files
        that changed since ``prepare`` (the engine checks every video a run reads before training).

        Raises:
            ManifestError: naming the changed videos, ``manifest.json`` and the fix.
        """
        root = str(self.root.resolve())
        todo = [v for v in dict.fromkeys(map(str, video_ids)) if (root, v) not in _VERIFIED]
        bad = self.verify(todo)
        if bad:
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise ManifestError(
                f"{self.root}: the files of video(s) {', '.join(bad[:5])}{more} do not match the checksums in "
                f"{self.root / 'manifest.json'} (changed or damaged since prepare); run the same prepare command "
                "again, which prepares changed videos anew, or restore the files")
        _VERIFIED.update((root, v) for v in todo)

    def verify(self, video_ids: Iterable[str] | None = None) -> list[str]:
        """Recompute the checksums (of every video, or of ``video_ids``); return the ids whose files
        changed (or vanished) since ``prepare``."""
        bad = []
        videos = self.manifest["videos"]
        wanted = videos.items() if video_ids is None else [(v, videos.get(v)) for v in video_ids]
        for vid, entry in wanted:
            if entry is None or not (self.root / "landmarks" / f"{vid}.npz").is_file():
                bad.append(vid)
                continue
            if sha256_file(self.root / "landmarks" / f"{vid}.npz") != entry["landmarks_sha256"]:
                bad.append(vid)
                continue
            extra = {self.root / f"landmarks_{n}" / f"{vid}.npy": e["sha256"]
                     for n, e in (entry.get("landmark_sources") or {}).items() if e is not None}
            if any(not path.is_file() or sha256_file(path) != sha for path, sha in extra.items()):
                bad.append(vid)
                continue
            if self.frame_format == "npy":
                fp = self.root / "frames" / f"{vid}.npy"
                if not fp.is_file():
                    bad.append(vid)
                    continue
                sha = sha256_file(fp)
            else:
                h = hashlib.sha256()
                for f in sorted((self.root / "frames" / vid).glob("*.jpg")):
                    h.update(f.read_bytes())
                sha = h.hexdigest()
            if sha != entry["frames_sha256"]:
                bad.append(vid)
        return bad
