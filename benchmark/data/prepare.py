"""``prepare``: raw videos or frame folders -> a prepared dataset on disk.

Pipeline per video: decode (:mod:`benchmark.data.video`) -> face box and
landmarks per frame (a backend from :mod:`benchmark.data.landmarks`) -> face
crop ``S x S`` and landmarks in crop pixels (:mod:`benchmark.data.landmarks.crop`,
the official QAFE-Net crop by default) -> frames without a face filled by linear
interpolation in time and flagged -> :class:`~benchmark.data.prepared.PreparedWriter`.

Layouts of the raw data:

``pfed5`` (the official layout, QAFE-Net ``dataloader/Parkinson_landmarkheatmap.py``):
    ``<raw>/PFED5_train.csv`` and ``<raw>/PFED5_test.csv`` (pandas, first line a
    header; columns taken BY POSITION: 0 video id string, 1 label, 2 number of
    frames, 3 expression index 0..4); patient id = the text after the last
    ``_`` of the id; video folder = the first 11 characters of the id; frames
    at ``<raw>/<patient>/<video folder>/*.jpg`` sorted by name; the number of
    frames must equal column 2. The split is the CSV's (train/test); the
    expression name is the card's ``expressions[index]``.
``unbc`` (the UNBC-McMaster Shoulder Pain Expression Archive as distributed, :mod:`benchmark.data.unbc`):
    ``<raw>/Images/<subject>/<sequence>/<sequence><NNN>.png``,
    ``<raw>/Sequence_Labels/VAS/<subject>/<sequence>.txt`` (one number, VAS 0..10),
    optional ``<raw>/AAM_landmarks/<subject>/<sequence>/<sequence><NNN>_aam.txt``
    (66 rows x y); the Kaggle copy's doubled folders are accepted. Sequences are
    matched by name, subject = the ``Images`` subject folder, expression ``pain``,
    split ``all`` (no official split: the protocol's fold file partitions it). The
    faces are cropped and landmarks detected as for PFED5; the AAM points are kept
    as a second landmark source ``aam_66`` (``landmarks_aam_66/<video_id>.npy``,
    mapped into crop pixels with each frame's crop transform).
``folder``:
    video files (``<raw>/*.mp4`` etc.) or frame folders, listed in a labels CSV
    (default ``<raw>/labels.csv``) with columns ``video`` (file or folder, relative
    to ``raw`` or absolute), ``subject``, ``expression`` (card name or index),
    ``label``, ``split`` (``train``/``test``).

Everything in the index is validated before any frame is decoded, and the first
problem of each kind raises one error naming the item and the fix: a missing
file or folder or a frame-count mismatch (:class:`~benchmark.errors.DataError`),
a label outside the card's range (:class:`~benchmark.errors.LabelError`), an
unknown expression or split, a duplicated video id (``DataError``), a subject in
both train and test (:class:`~benchmark.errors.SubjectLeakError`). A dataset
without an official split (``unbc``) has every video in split ``all``; it may not
be mixed with ``train``/``test`` videos.

A video that fails while being processed (corrupt or truncated file, no face in
any frame) is recorded in the manifest's ``failed`` list and the rest of the
dataset is prepared; a warning lists the failures at the end. Videos already
written by an earlier (interrupted or finished) run into the same ``out`` folder
with the same settings are skipped.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..cards import DatasetCard, load_card
from ..errors import ConfigError, CorruptVideoError, DataError, ManifestError, SubjectLeakError
from .landmarks import LandmarkBackend, get_backend
from .landmarks.crop import CropSpec, crop_box, crop_image, fill_missing, points_to_crop
from .prepared import FRAME_FORMATS, PreparedWriter, atomic_write_text, check_video_id
from .video import is_video_file, list_frame_files, open_video

log = logging.getLogger(__name__)

LAYOUTS = ("pfed5", "unbc", "folder")
SPLITS = ("train", "test")
#: Split of every video of a dataset without an official split (``unbc``): the
#: protocol's fold file partitions its subjects.
NO_SPLIT = "all"
#: Official PFED5 index files, by split.
PFED5_CSVS = {"train": "PFED5_train.csv", "test": "PFED5_test.csv"}
#: Required columns of a ``folder`` layout labels CSV.
FOLDER_COLUMNS = ("video", "subject", "expression", "label", "split")
#: File in the output folder that pins the settings of a (resumable) prepare run.
SETTINGS_FILE = "prepare_settings.json"
_MAX_LISTED = 5


@dataclass(frozen=True)
class VideoItem:
    """One video of the raw dataset's index, validated.

    Attributes:
        video_id: file-name-safe id (:func:`safe_video_id` of ``original``).
        source: the video file or frame folder (absolute path).
        original: the id as written in the index (PFED5 id string, or the
            ``video`` column); stored in the prepared ``source`` column.
        subject, expression, label, split: index columns (label range-checked,
            expression = the card's name).
        where: names the index row in errors, e.g. ``"labels.csv line 3"``.
        expected_frames: frame count the index declares (PFED5) or counted (UNBC), else None.
        aam_dir: UNBC only: the sequence's ``AAM_landmarks`` folder, None when absent.
    """

    video_id: str
    source: Path
    original: str
    subject: str
    expression: str
    label: float
    split: str
    where: str
    expected_frames: int | None = None
    aam_dir: Path | None = None


class PreparedVideo(NamedTuple):
    """One video after decoding, landmarks and cropping (:func:`prepare_video`).

    Attributes:
        frames: ``(T, S, S, 3)`` uint8 RGB face crops.
        points: ``(T, K, 2)`` float32 (x, y) landmarks in crop pixels.
        face_found: ``(T,)`` bool, False where box and landmarks were interpolated.
        fps: source frame rate (0.0 when unknown).
        boxes: ``(T, 4)`` float64 face boxes ``(x1, y1, x2, y2)`` in source-frame
            pixels (interpolated where no face was found).
        source_points: ``(T, K, 2)`` float64 landmarks in source-frame pixels
            (interpolated where no face was found).
        crop_boxes: ``(T, 4)`` int64 ``(x0, y0, x1, y1)``: the rectangle cut out of
            each source frame (:func:`~benchmark.data.landmarks.crop.crop_box` of
            ``boxes``, or the whole frame where the interpolated box lies outside
            it). Source-frame points ``p`` map to crop pixels as
            ``points_to_crop(p, crop_boxes[t], S, round_points)``; None when built
            by hand without it.
    """

    frames: np.ndarray
    points: np.ndarray
    face_found: np.ndarray
    fps: float
    boxes: np.ndarray
    source_points: np.ndarray
    crop_boxes: np.ndarray | None = None


# --------------------------------------------------------------------------- ids
def safe_video_id(text: str) -> str:
    """A file-name-safe video id: characters other than letters, digits, ``_ . -`` become ``_``.

    A leading non-alphanumeric character gets a ``v`` prefix. The result passes
    :func:`benchmark.data.prepared.check_video_id`.
    """
    out = re.sub(r"[^A-Za-z0-9_.\-]", "_", str(text).strip())
    if not out:
        out = "video"
    if not out[0].isalnum():
        out = "v" + out
    return check_video_id(out)


def _listing(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return "; ".join(items[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _resolve_card(card: str | DatasetCard) -> DatasetCard:
    return card if isinstance(card, DatasetCard) else load_card(str(card))


# ------------------------------------------------------------------ index readers
def read_pfed5_index(raw: str | Path, card: str | DatasetCard = "pfed5") -> list[VideoItem]:
    """Read and check ``<raw>/PFED5_train.csv`` and ``<raw>/PFED5_test.csv`` (official layout).

    Columns are taken by position (0 id, 1 label, 2 frame count, 3 expression
    index), as the official loader does. Every frame folder must exist and hold
    exactly the declared number of frames. Nothing is decoded.

    Args:
        raw: the PFED5 root (``--data_root`` of the official code).
        card: dataset card (name or object) giving the label range and expressions.

    Returns:
        The videos of both CSVs, train first, in file order.

    Raises:
        DataError: a CSV is missing or has fewer than 4 columns, a frame count or
            expression index is not an integer / out of range, a frame folder is
            missing or holds another number of frames than declared.
        LabelError: a label outside the card's range.
    """
    raw = Path(raw)
    card = _resolve_card(card)
    items: list[VideoItem] = []
    for split, name in PFED5_CSVS.items():
        path = raw / name
        if not path.is_file():
            raise DataError(
                f"{path} does not exist: the pfed5 layout needs {PFED5_CSVS['train']} and {PFED5_CSVS['test']} "
                f"in {raw} (or use layout 'folder' with a labels.csv)"
            )
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
        if df.shape[1] < 4:
            raise DataError(
                f"{path} has {df.shape[1]} column(s); the pfed5 layout needs 4 by position: "
                "video id, label, number of frames, expression index"
            )
        missing, mismatched = [], []
        for i, row in enumerate(df.itertuples(index=False, name=None)):
            vid, label, nframes, expr = (str(v).strip() for v in row[:4])
            where = f"{path.name} line {i + 2} (video {vid!r})"
            if not vid:
                raise DataError(f"{where}: the video id (column 1) is empty")
            lab = card.check_label(label, where)
            try:
                n = int(float(nframes))
                if n != float(nframes) or n < 1:
                    raise ValueError
            except ValueError:
                raise DataError(f"{where}: number of frames (column 3) {nframes!r} is not a positive integer") from None
            try:
                if not re.fullmatch(r"\d+(\.0*)?", expr):
                    raise ConfigError(expr)
                expression = card.expressions[card.expression_index(int(float(expr)))]
            except ConfigError:
                raise DataError(
                    f"{where}: expression index (column 4) {expr!r} is not one of 0..{len(card.expressions) - 1} "
                    f"({', '.join(f'{k} {e}' for k, e in enumerate(card.expressions))})"
                ) from None
            patient = vid.rsplit("_", 1)[-1]
            folder = raw / patient / vid[:11]
            item = VideoItem(safe_video_id(vid), check_inside(raw, Path(patient) / vid[:11], where), vid, patient,
                             expression, lab, split, where, n)
            items.append(item)
            if not folder.is_dir():
                missing.append(f"{where}: frame folder {folder} does not exist")
                continue
            try:
                have = len(list_frame_files(folder))
            except CorruptVideoError:
                have = 0
            if have != n:
                mismatched.append(f"{where}: {folder} holds {have} frame images but the CSV says {n}")
        if missing:
            raise DataError(
                f"{len(missing)} video(s) of {path} have no frame folder: {_listing(missing)}. "
                f"Frames must be at <raw>/<patient = text after the last '_'>/<first 11 characters of the id>/*.jpg; "
                "fix the path or remove the row"
            )
        if mismatched:
            raise DataError(
                f"{len(mismatched)} video(s) of {path} have another number of frames than declared: "
                f"{_listing(mismatched)}. Re-extract the frames or correct column 3"
            )
    return items


def check_inside(raw: Path, path: Path, where: str) -> Path:
    """``path`` (resolved, symlinks followed) after checking that, as written, it lies inside the
    raw dataset folder ``raw`` (``..`` collapsed lexically; a symlink placed inside the dataset
    folder may point anywhere: linking data in is how large datasets are assembled).

    Raises:
        DataError: naming ``where``, the path and the fix (a ``../`` or absolute path leaving the
            dataset folder: an index must describe its dataset, nothing else on disk).
    """
    root = os.path.abspath(raw)
    lexical = os.path.normpath(os.path.join(root, os.fspath(path)))
    if lexical != root and not lexical.startswith(root + os.sep):
        raise DataError(f"{where}: {path} lies outside the dataset folder {root}; list videos by paths relative "
                        "to it (no '..', no absolute paths elsewhere): move or link the video into the dataset folder")
    return Path(lexical).resolve()


def read_folder_index(raw: str | Path, card: str | DatasetCard, labels_csv: str | Path | None = None) -> list[VideoItem]:
    """Read and check a ``folder`` layout labels CSV.

    Args:
        raw: folder with the video files / frame folders.
        card: dataset card (name or object).
        labels_csv: the CSV (default ``<raw>/labels.csv``); columns ``video``,
            ``subject``, ``expression`` (name or index), ``label``, ``split``.

    Returns:
        The listed videos in file order.

    Raises:
        DataError: CSV missing or without a required column; empty video or
            subject; unknown expression or split; listed file/folder missing.
        LabelError: a label outside the card's range.
    """
    raw = Path(raw)
    card = _resolve_card(card)
    path = Path(labels_csv) if labels_csv is not None else raw / "labels.csv"
    if not path.is_file():
        raise DataError(
            f"labels CSV {path} does not exist: write one with columns {', '.join(FOLDER_COLUMNS)} "
            "(one row per video) or pass its path"
        )
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    df.columns = [str(c).strip() for c in df.columns]
    absent = [c for c in FOLDER_COLUMNS if c not in df.columns]
    if absent:
        raise DataError(
            f"{path} lacks column(s) {', '.join(absent)}: it has {', '.join(df.columns)}; "
            f"required: {', '.join(FOLDER_COLUMNS)}"
        )
    items, missing = [], []
    for i, row in enumerate(df[list(FOLDER_COLUMNS)].itertuples(index=False, name=None)):
        video, subject, expression, label, split = (str(v).strip() for v in row)
        where = f"{path.name} line {i + 2} (video {video!r})"
        if not video:
            raise DataError(f"{where}: the video column is empty")
        if not subject:
            raise DataError(f"{where}: the subject column is empty (subject-wise splits need it)")
        try:
            expr = card.expressions[card.expression_index(expression)]
        except ConfigError:
            raise DataError(
                f"{where}: unknown expression {expression!r} for dataset card {card.name!r}; "
                f"use one of {', '.join(card.expressions)} or an index 0..{len(card.expressions) - 1}"
            ) from None
        lab = card.check_label(label, where)
        if split.lower() not in SPLITS:
            raise DataError(f"{where}: split {split!r} must be one of {', '.join(SPLITS)}")
        resolved = check_inside(raw, Path(video), where)  # an absolute path must lie inside raw too
        src = raw / video
        # id: the path relative to raw, as written, without a video extension
        stem = os.path.relpath(os.path.normpath(os.path.join(os.path.abspath(raw), video)), os.path.abspath(raw))
        if is_video_file(stem):
            stem = stem[: -len(Path(stem).suffix)]
        items.append(VideoItem(safe_video_id(stem.strip("/\\")), resolved, video, subject, expr, lab,
                               split.lower(), where))
        if not src.exists():
            missing.append(f"{where}: {src} does not exist")
    if missing:
        raise DataError(
            f"{len(missing)} video(s) listed in {path} are missing: {_listing(missing)}. "
            f"Paths are relative to {raw}; fix the path or remove the row"
        )
    return items


def check_items(items: list[VideoItem]) -> None:
    """Cross-row checks: unique video ids and sources, known splits, no subject in both splits.

    Splits are ``train``/``test`` (an official split, checked subject-disjoint
    here), or ``all`` for every video (no official split: the protocol's fold
    file partitions the subjects and checks them then).

    Raises:
        DataError: two rows give the same video id (after :func:`safe_video_id`)
            or the same file/folder; a split other than ``train``/``test``/``all``;
            ``all`` mixed with ``train``/``test``.
        SubjectLeakError: a subject has videos in train and in test (names the
            subject and one video of each split).
    """
    if not items:
        raise DataError("the index lists no video")
    for key, what in ((lambda it: it.video_id, "video id"), (lambda it: str(it.source), "file/folder")):
        seen: dict[str, VideoItem] = {}
        dups = []
        for it in items:
            k = key(it)
            if k in seen:
                dups.append(f"{what} {k!r} in {seen[k].where} and {it.where}")
            else:
                seen[k] = it
        if dups:
            raise DataError(f"duplicated {what}(s): {_listing(dups)}; every video must be listed once with a unique id")
    splits = {it.split for it in items}
    unknown = sorted(splits - set(SPLITS) - {NO_SPLIT})
    if unknown:
        it = next(it for it in items if it.split == unknown[0])
        raise DataError(f"{it.where}: split {it.split!r} must be one of {', '.join(SPLITS)} (or {NO_SPLIT!r} "
                        "for every video of a dataset without an official split)")
    if NO_SPLIT in splits and len(splits) > 1:
        a = next(it for it in items if it.split == NO_SPLIT)
        b = next(it for it in items if it.split != NO_SPLIT)
        raise DataError(
            f"the index mixes split {NO_SPLIT!r} ({a.where}) with split {b.split!r} ({b.where}): either every "
            f"video has an official train/test split or none has (split {NO_SPLIT!r}, folds from the protocol)"
        )
    by_split: dict[str, dict[str, VideoItem]] = {s: {} for s in SPLITS}
    for it in items:
        if it.split == NO_SPLIT:
            continue
        by_split[it.split].setdefault(it.subject, it)
    leak = sorted(set(by_split["train"]) & set(by_split["test"]))
    if leak:
        s = leak[0]
        tr, te = by_split["train"][s], by_split["test"][s]
        others = f" ({len(leak) - 1} more subject(s) too: {', '.join(leak[1:6])})" if len(leak) > 1 else ""
        raise SubjectLeakError(
            f"subject {s!r} is in both splits: train video {tr.original!r} ({tr.where}) and test video "
            f"{te.original!r} ({te.where}){others}. Splits must be subject-disjoint: move all of the "
            "subject's videos to one split"
        )


def collect_items(raw: str | Path, *, layout: str, card: str | DatasetCard,
                  labels_csv: str | Path | None = None) -> list[VideoItem]:
    """Read and fully validate a raw dataset's index (no decoding).

    Args:
        raw: raw dataset folder.
        layout: ``pfed5``, ``unbc`` or ``folder``.
        card: dataset card (name or object).
        labels_csv: ``folder`` layout only (default ``<raw>/labels.csv``).

    Returns:
        The validated :class:`VideoItem` list.

    Raises:
        ConfigError: unknown layout, or a labels CSV given for ``pfed5``/``unbc``.
        DataError, LabelError, SubjectLeakError: see :func:`read_pfed5_index`,
            :func:`benchmark.data.unbc.read_unbc_index`, :func:`read_folder_index`,
            :func:`check_items`.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"raw dataset folder {raw} does not exist")
    if layout == "pfed5":
        if labels_csv is not None:
            raise ConfigError("layout 'pfed5' reads PFED5_train.csv and PFED5_test.csv; labels_csv is for layout 'folder'")
        items = read_pfed5_index(raw, card)
    elif layout == "unbc":
        from .unbc import read_unbc_index

        if labels_csv is not None:
            raise ConfigError("layout 'unbc' reads the labels from Sequence_Labels/VAS; "
                              "labels_csv is for layout 'folder'")
        items = read_unbc_index(raw, card)
    elif layout == "folder":
        items = read_folder_index(raw, card, labels_csv)
    else:
        raise ConfigError(f"unknown layout {layout!r}: use one of {', '.join(LAYOUTS)}")
    check_items(items)
    return items


# ------------------------------------------------------------------ one video
def prepare_video(
    source: str | Path,
    backend: LandmarkBackend,
    spec: CropSpec,
    *,
    max_frames: int | None = None,
    fps: float | None = None,
    video_name: str | None = None,
    stash_limit_bytes: int = 1 << 30,
) -> PreparedVideo:
    """Decode one video, find the face in every frame, crop, fill frames without a face.

    Frames are streamed: a frame with a face is cropped at once; a frame without
    one is kept (up to ``stash_limit_bytes``, beyond that the video is decoded a
    second time) until the interpolated box is known.

    Args:
        source: video file or frame folder.
        backend: landmark backend (its :meth:`~LandmarkBackend.reset` is called first).
        spec: crop settings (:class:`CropSpec`).
        max_frames: use only the first ``max_frames`` frames.
        fps: frame rate to report for a frame folder.
        video_name: names the video in errors (default: the path).
        stash_limit_bytes: memory for frames waiting for an interpolated box.

    Returns:
        :class:`PreparedVideo`.

    Raises:
        DataError: the source does not exist.
        CorruptVideoError: it cannot be decoded (see :mod:`benchmark.data.video`).
        NoFaceError: no frame has a face.
    """
    name = video_name or str(source)
    backend.reset()
    k = backend.scheme.num_points
    crops: list[np.ndarray | None] = []
    pts_crop: list[np.ndarray | None] = []
    boxes, pts_src, found, rects = [], [], [], []
    stash: dict[int, np.ndarray] = {}
    stash_bytes, overflow = 0, False
    nan_box, nan_pts = np.full(4, np.nan), np.full((k, 2), np.nan)
    with open_video(source, max_frames=max_frames, fps=fps) as reader:
        for i, frame in enumerate(reader):
            det = backend.detect(frame)
            box = crop_box(det.bbox, frame.shape, spec) if det is not None else None
            if box is not None:
                crops.append(crop_image(frame, box, spec.size, spec.interpolation))
                pts_crop.append(points_to_crop(det.points, box, spec.size, spec.round_points))
                boxes.append(np.asarray(det.bbox, dtype=np.float64)[:4])
                pts_src.append(np.asarray(det.points, dtype=np.float64))
                found.append(True)
                rects.append(box)
                continue
            crops.append(None)
            pts_crop.append(None)
            boxes.append(nan_box)
            pts_src.append(nan_pts)
            found.append(False)
            rects.append((0, 0, 0, 0))
            if not overflow:
                if stash_bytes + frame.nbytes > stash_limit_bytes:
                    overflow = True
                    stash.clear()
                else:
                    stash[i] = frame
                    stash_bytes += frame.nbytes
        rate = reader.info.fps
    found_arr = np.array(found, dtype=bool)
    boxes_arr = fill_missing(np.stack(boxes), found_arr, video=name)
    pts_arr = fill_missing(np.stack(pts_src), found_arr, video=name)
    if not found_arr.all():
        missing = set(np.flatnonzero(~found_arr).tolist())
        if overflow:
            with open_video(source, max_frames=max_frames, fps=fps) as again:
                stash = {i: f for i, f in enumerate(again) if i in missing}
        for i in sorted(missing):
            frame = stash[i]
            box = crop_box(boxes_arr[i], frame.shape, spec) or (0, 0, frame.shape[1], frame.shape[0])
            crops[i] = crop_image(frame, box, spec.size, spec.interpolation)
            pts_crop[i] = points_to_crop(pts_arr[i], box, spec.size, spec.round_points)
            rects[i] = box
    return PreparedVideo(np.stack(crops), np.stack(pts_crop).astype(np.float32), found_arr, float(rate),
                         boxes_arr, pts_arr, np.array(rects, dtype=np.int64).reshape(-1, 4))


def map_points_to_crop(points: np.ndarray, crop_boxes: np.ndarray, spec: CropSpec) -> np.ndarray:
    """Map per-frame source-frame points into crop pixels with each frame's crop transform.

    The same transform as the detected landmarks get (:func:`points_to_crop`):
    ``clip(p - (x0, y0), 0, (w - 1, h - 1)) * (S / w, S / h)`` (rounded before
    and after when ``spec.round_points``); NaN points stay NaN.

    Args:
        points: ``(T, K, 2)`` (x, y) in source-frame pixels (NaN allowed).
        crop_boxes: ``(T, 4)`` int ``(x0, y0, x1, y1)`` (:attr:`PreparedVideo.crop_boxes`).
        spec: the crop settings the frames were cut with (S = ``spec.size``).

    Returns:
        ``(T, K, 2)`` float32 (x, y) in crop pixels.

    Raises:
        ValueError: ``points`` and ``crop_boxes`` disagree on T.
    """
    points = np.asarray(points, dtype=np.float64)
    crop_boxes = np.asarray(crop_boxes)
    if points.ndim != 3 or points.shape[0] != crop_boxes.shape[0]:
        raise ValueError(f"points {points.shape} and crop_boxes {crop_boxes.shape} must both have T frames")
    out = np.empty(points.shape, dtype=np.float32)
    for t in range(points.shape[0]):
        out[t] = points_to_crop(points[t], tuple(int(v) for v in crop_boxes[t]), spec.size, spec.round_points)
    return out


def _aam_in_crop(item: VideoItem, pv: PreparedVideo, spec: CropSpec) -> np.ndarray | None:
    """The sequence's AAM points in crop pixels ``(T, 66, 2)`` (NaN rows: no AAM file), or None without any."""
    from .unbc import read_aam_landmarks

    if item.aam_dir is None:
        return None
    n = len(pv.frames)
    pts = read_aam_landmarks(item.aam_dir, item.original, max(int(item.expected_frames or 0), n))[:n]
    if not np.isfinite(pts).any():
        return None
    return map_points_to_crop(pts, pv.crop_boxes, spec)


# ------------------------------------------------------------------ resume state
def _row_matches(row: dict, item: VideoItem) -> bool:
    return (row.get("subject") == item.subject and row.get("expression") == item.expression
            and float(row.get("label", "nan")) == item.label and row.get("split") == item.split
            and row.get("source") == item.original)


def _check_settings(out: Path, settings: dict) -> None:
    """Refuse to mix videos prepared with other settings in one folder (``prepare_settings.json``).

    Raises:
        DataError: naming the differing settings and the fix.
    """
    out.mkdir(parents=True, exist_ok=True)
    spath = out / SETTINGS_FILE
    if spath.is_file():
        old = json.loads(spath.read_text())
        if old != settings:
            diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
            raise DataError(
                f"{out} already holds videos prepared with other settings (differing: {', '.join(diff)}; "
                f"see {spath}): prepare into a new output folder, or delete {out} to start over"
            )
    atomic_write_text(spath, json.dumps(settings, indent=2, sort_keys=True))


# ------------------------------------------------------------------ the dataset
def prepare_dataset(
    raw: str | Path,
    out: str | Path,
    *,
    layout: str,
    card: str | DatasetCard,
    backend: str | LandmarkBackend = "mediapipe",
    backend_options: dict | None = None,
    labels_csv: str | Path | None = None,
    crop_size: int = 256,
    frame_format: str = "jpg",
    crop_mode: str = "bbox",
    crop_margin: float = 0.0,
    round_points: bool = False,
    max_frames: int | None = None,
    progress: bool = True,
) -> dict:
    """Prepare a raw dataset (videos or frame folders + labels) into ``out``.

    Args:
        raw: raw dataset folder.
        out: output folder (created; a re-run resumes and skips finished videos).
        layout: ``pfed5`` (official CSVs and frame folders), ``unbc`` (the
            UNBC-McMaster archive; also stores the AAM points as landmark source
            ``aam_66``) or ``folder`` (videos + labels CSV); see the module docstring.
        card: dataset card name (``pfed5``, ``unbc_mcmaster``, ``real_faces_demo``, ...) or object.
        backend: ``mediapipe`` / ``insightface`` or a ready :class:`LandmarkBackend`.
        backend_options: constructor options when ``backend`` is a name, e.g.
            ``{"model_dir": ...}`` or ``{"static_image_mode": True}``.
        labels_csv: ``folder`` layout: the labels CSV (default ``<raw>/labels.csv``).
        crop_size: S, crop side in pixels (256 as in the paper).
        frame_format: ``jpg`` (default: quality-95 JPEG per frame, PFED5 about 7 GB) or ``npy`` (raw uint8,
            about 50 GB, faster to load) (:class:`~benchmark.data.prepared.PreparedWriter`; README Performance).
        crop_mode: ``bbox`` (official, stretched detector box) or ``square``.
        crop_margin: ``square`` mode margin (side = max(w, h) * (1 + margin)).
        round_points: round landmarks to whole pixels as the official script does.
        max_frames: use only the first ``max_frames`` frames of every video (quick runs).
        progress: show tqdm progress bars.

    Returns:
        The manifest dict (also written to ``out/manifest.json``): counts of
        videos, frames, ``frames_without_face`` and ``failed_videos``; the
        backend provenance; crop settings under ``prepare``; for ``unbc`` also
        ``landmark_sources`` (``detected`` and ``aam_66`` with the videos and
        frames without AAM points).

    Raises:
        ConfigError: unknown layout, backend, option or frame format.
        DataError, LabelError, SubjectLeakError: the index is invalid (raised
            before any decoding), or ``out`` holds a run with other settings.
        BackendUnavailableError: the backend's package or models are missing.
        ManifestError: no video at all could be prepared.
    """
    raw, out = Path(raw), Path(out)
    card = _resolve_card(card)
    if frame_format not in FRAME_FORMATS:
        raise ConfigError(f"frame_format must be one of {', '.join(FRAME_FORMATS)}, got {frame_format!r}")
    if max_frames is not None and int(max_frames) < 1:
        raise ConfigError(f"max_frames must be >= 1, got {max_frames!r}")
    spec = CropSpec(size=int(crop_size), mode=crop_mode, margin=float(crop_margin), round_points=bool(round_points))
    items = collect_items(raw, layout=layout, card=card, labels_csv=labels_csv)

    own_backend = not isinstance(backend, LandmarkBackend)
    bk = get_backend(str(backend), **(backend_options or {})) if own_backend else backend
    try:
        provenance = bk.provenance()
        settings = {
            "card": card.name,
            "layout": layout,
            "crop": spec.to_json(),
            "frame_format": frame_format,
            "max_frames": max_frames,
            "backend": provenance,
        }
        settings = json.loads(json.dumps(settings))  # the form it has once read back from disk
        _check_settings(out, settings)
        extra = {
            "demo_labels": bool(card.demo_labels),
            "prepare": {
                "layout": layout,
                "raw": str(raw.resolve()),
                "labels_csv": str(Path(labels_csv).resolve()) if labels_csv is not None else None,
                "crop": spec.to_json(),
                "max_frames": max_frames,
                "landmarks": "(x, y) in crop pixels; frames without a face: box and landmarks "
                             "interpolated linearly in time, nearest frame at the ends (face_found False)",
            },
        }
        sources = None
        if layout == "unbc":
            from .unbc import AAM_POINTS, AAM_SOURCE

            sources = {AAM_SOURCE: {
                "num_points": AAM_POINTS,
                "origin": "AAM_landmarks/<subject>/<sequence>/<sequence><NNN>_aam.txt of the archive "
                          "(66 rows x y, source-frame pixels)",
                "transform": "each frame's crop transform, the same as the detected landmarks get "
                             "(crop box of the detected face, interpolated where no face was found)",
                "missing": "NaN rows where a frame had no AAM file; a video without any is listed "
                           "under videos_without",
            }}
        writer = PreparedWriter(out, card=card.name, crop_size=spec.size, landmark_scheme=bk.scheme,
                                backend=provenance, frame_format=frame_format, extra=extra,
                                landmark_sources=sources)
        by_id = {it.video_id: it for it in items}
        for vid, row in writer.existing_rows().items():  # videos no longer listed, or relabelled
            if vid not in by_id or not _row_matches(row, by_id[vid]):
                writer.drop_video(vid)
        skipped = 0
        bar = tqdm(items, desc=f"prepare {card.name}", unit="video", disable=not progress)
        for item in bar:
            if writer.has_video(item.video_id):
                skipped += 1
                continue
            bar.set_postfix_str(item.video_id[:30])
            try:
                pv = prepare_video(item.source, bk, spec, max_frames=max_frames,
                                   video_name=f"{item.original} ({item.source})")
                more = None
                if sources is not None:
                    more = {AAM_SOURCE: _aam_in_crop(item, pv, spec)}
            except DataError as exc:
                if isinstance(exc, ManifestError):
                    raise
                writer.add_failure(f"{item.original} ({item.source})", f"{type(exc).__name__}: {exc}")
                log.warning("video %s not prepared: %s", item.original, exc)
                continue
            writer.add_video(item.video_id, pv.frames, pv.points, pv.face_found, subject=item.subject,
                             expression=item.expression, label=item.label, split=item.split, fps=pv.fps,
                             source=item.original, extra_landmarks=more)
        bar.close()
        manifest = writer.finalize()
    finally:
        if own_backend:
            bk.close()
    counts = manifest["counts"]
    if skipped:
        log.info("%d video(s) were already prepared in %s and were skipped", skipped, out)
    if counts["failed_videos"]:
        log.warning(
            "%d of %d video(s) could not be prepared (listed under 'failed' in %s): %s",
            counts["failed_videos"], len(items), out / "manifest.json",
            _listing([f"{f['source']}: {f['error']}" for f in manifest["failed"]]),
        )
    if counts["frames_without_face"]:
        log.info("%d of %d frame(s) had no face; their landmarks were interpolated",
                 counts["frames_without_face"], counts["frames"])
    return manifest
