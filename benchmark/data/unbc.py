"""Dataset adapter for the UNBC-McMaster Shoulder Pain Expression Archive as distributed.

Layout read (Lucey et al., FG 2011; the Cohn-lab distribution)::

    <raw>/Images/<subject>/<sequence>/<sequence><NNN>.png          frames, NNN 1-based, zero-padded
    <raw>/Sequence_Labels/VAS/<subject>/<sequence>.txt              one number: the VAS, 0..10
    <raw>/AAM_landmarks/<subject>/<sequence>/<sequence><NNN>_aam.txt 66 rows "x y" (optional)

The Kaggle re-upload's doubled folders (``Images/Images``,
``Sequence_Labels/Sequence_Labels/VAS``, ``AAM_landmarks/AAM_landmarks``) are
accepted too, and top-level folder names are matched case-insensitively.

Matching rule: sequences are matched across the three trees by SEQUENCE NAME
(the folder name ``ll042t1aaaff``, the VAS file's stem), never by the subject
folder string, which differs between copies (a label tree may, e.g., lack the
first characters of the subject folder). The subject id of a sequence is its
``Images`` subject folder (``042-ll042``). Every sequence becomes one video:
video id = the sequence name, expression = the card's only expression
(``pain``), label = the VAS, split ``all`` (UNBC has no official split; the
protocol's fold file partitions the subjects later).

AAM landmarks are a second, optional landmark source (``aam_66``): a missing
``AAM_landmarks`` tree, a sequence without an AAM folder, or frames without an
``_aam.txt`` file are allowed (NaN points; recorded in the prepared manifest);
a file that is not 66 rows of two numbers is an error.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..cards import DatasetCard
from ..errors import ConfigError, DataError, LabelError
from .video import FRAME_EXTENSIONS

if TYPE_CHECKING:
    from .prepare import VideoItem

log = logging.getLogger(__name__)

#: Number of AAM points per frame in the archive.
AAM_POINTS = 66
#: Name of the AAM landmark source in a prepared dataset.
AAM_SOURCE = "aam_66"
#: The split every UNBC video gets (no official split; folds come from the protocol).
UNBC_SPLIT = "all"
IMAGES_DIR = "Images"
LABELS_DIR = ("Sequence_Labels", "VAS")
AAM_DIR = "AAM_landmarks"
_MAX_LISTED = 5


def _listing(items: list[str]) -> str:
    more = len(items) - _MAX_LISTED
    return "; ".join(items[:_MAX_LISTED]) + (f"; and {more} more" if more > 0 else "")


def _child_exact(folder: Path, name: str) -> Path | None:
    """``folder/name`` if it is a folder, else its case-insensitive match, else None."""
    if (folder / name).is_dir():
        return folder / name
    low = name.lower()
    return next((p for p in sorted(folder.iterdir()) if p.is_dir() and p.name.lower() == low), None)


def _child(folder: Path, name: str) -> Path | None:
    """``folder/name`` (case-insensitive), or the Kaggle copy's doubled ``name/name`` inside it."""
    hit = _child_exact(folder, name)
    if hit is None:
        return None
    return _child_exact(hit, name) or hit


def find_unbc_folders(raw: str | Path) -> tuple[Path, Path, Path | None]:
    """Locate the ``Images``, ``Sequence_Labels/VAS`` and ``AAM_landmarks`` trees of a UNBC copy.

    Args:
        raw: the archive root (holding ``Images`` etc., or the Kaggle copy's doubled folders).

    Returns:
        ``(images, vas, aam)`` folders; ``aam`` is None when the copy has no AAM tree.

    Raises:
        DataError: ``raw`` is not a folder, or ``Images`` or ``Sequence_Labels/VAS`` is missing.
    """
    raw = Path(raw)
    if not raw.is_dir():
        raise DataError(f"raw dataset folder {raw} does not exist")
    images = _child(raw, IMAGES_DIR)
    if images is None:
        raise DataError(
            f"{raw} has no {IMAGES_DIR} folder: the unbc layout reads frames from "
            f"<raw>/{IMAGES_DIR}/<subject>/<sequence>/<sequence><NNN>.png (or the Kaggle copy's "
            f"{IMAGES_DIR}/{IMAGES_DIR}); pass the archive root as --raw"
        )
    labels = _child(raw, LABELS_DIR[0])
    vas = _child(labels, LABELS_DIR[1]) if labels is not None else None
    if vas is None:
        raise DataError(
            f"{raw} has no {'/'.join(LABELS_DIR)} folder: the unbc layout reads one VAS per sequence from "
            f"<raw>/{'/'.join(LABELS_DIR)}/<subject>/<sequence>.txt; copy the archive's Sequence_Labels folder there"
        )
    return images, vas, _child(raw, AAM_DIR)


def _sequence_folders(tree: Path, what: str) -> dict[str, tuple[str, Path]]:
    """``sequence -> (subject folder, path)`` for every ``<tree>/<subject>/<sequence>/`` folder.

    Raises:
        DataError: a sequence name found under two subject folders.
    """
    found: dict[str, tuple[str, Path]] = {}
    dups = []
    for subject in sorted(p for p in tree.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for seq in sorted(p for p in subject.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if seq.name in found:
                dups.append(f"{seq.name!r} in {found[seq.name][1]} and {seq}")
            else:
                found[seq.name] = (subject.name, seq)
    if dups:
        raise DataError(
            f"sequence name(s) found twice in the {what} tree {tree}: {_listing(dups)}. Sequences are matched "
            "by name, so each must appear once: remove the duplicated copy"
        )
    return found


def _vas_files(vas: Path) -> dict[str, Path]:
    """``sequence -> VAS file`` for every ``*.txt`` under ``vas`` (any depth).

    Raises:
        DataError: a sequence name with two VAS files.
    """
    found: dict[str, Path] = {}
    dups = []
    for f in sorted(vas.rglob("*.txt")):
        if not f.is_file() or f.name.startswith("."):
            continue
        if f.stem in found:
            dups.append(f"{f.stem!r}: {found[f.stem]} and {f}")
        else:
            found[f.stem] = f
    if dups:
        raise DataError(
            f"sequence name(s) with two VAS files under {vas}: {_listing(dups)}. Sequences are matched by name: "
            "keep one file per sequence"
        )
    return found


def sequence_frames(folder: Path, sequence: str) -> list[Path]:
    """The frame files of one sequence folder, checked and in time order.

    Every image file (``.png``/``.jpg``/``.jpeg``/``.bmp``) must be named
    ``<sequence><NNN>`` with the same zero-padded width, and the numbers must be
    exactly ``1..N`` (no gap, no repeat): the decoder then reads them in time order.

    Args:
        folder: ``Images/<subject>/<sequence>``.
        sequence: the sequence name.

    Returns:
        The N frame paths, frame 1 first.

    Raises:
        DataError: no frame image; a file named otherwise; mixed widths; a
            repeated number; missing numbers (gaps) or numbering not starting at 1.
    """
    files = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in FRAME_EXTENSIONS),
                   key=lambda p: p.name)
    if not files:
        raise DataError(
            f"sequence folder {folder} holds no frame image: put the sequence's "
            f"{sequence}<NNN>.png frames there, or remove the folder (and its VAS file)"
        )
    pattern = re.compile(re.escape(sequence) + r"(\d+)")
    numbers: dict[int, Path] = {}
    widths = set()
    for p in files:
        m = pattern.fullmatch(p.stem)
        if m is None:
            raise DataError(
                f"{p}: frame files of sequence {sequence!r} must be named {sequence}<NNN>{p.suffix} "
                f"(NNN = 1-based frame number); rename or remove this file"
            )
        n = int(m.group(1))
        if n in numbers:
            raise DataError(f"{p} and {numbers[n]} are both frame {n} of sequence {sequence!r}: remove one")
        numbers[n] = p
        widths.add(len(m.group(1)))
    if len(widths) > 1:
        raise DataError(
            f"frame numbers in {folder} have different widths ({', '.join(str(w) for w in sorted(widths))} digits): "
            "zero-pad them to one width (e.g. 001) so that name order is time order"
        )
    n = len(numbers)
    absent = sorted(set(range(1, n + 1)) - set(numbers))
    if absent:
        raise DataError(
            f"frames of sequence {sequence!r} in {folder} have gaps: {n} file(s) numbered "
            f"{min(numbers)}..{max(numbers)}, missing frame(s) {', '.join(map(str, absent[:10]))}"
            f"{' ...' if len(absent) > 10 else ''}. Frames must be numbered 1..N without gaps: "
            "restore the missing frames from the archive"
        )
    return [numbers[k] for k in range(1, n + 1)]


def read_vas(path: Path, card: DatasetCard) -> float:
    """Read one ``Sequence_Labels/VAS`` file: exactly one number in the card's range.

    Raises:
        LabelError: empty, more than one value, not a number, or out of range (names the file).
    """
    text = path.read_text(errors="replace")
    tokens = text.split()
    if len(tokens) != 1:
        raise LabelError(
            f"{path}: a VAS file must hold exactly one number (the sequence's self-reported pain, "
            f"{card.label_min:g}..{card.label_max:g}); it holds {text.strip()[:60]!r}. Restore it from the archive"
        )
    try:
        float(tokens[0])
    except ValueError:
        raise LabelError(
            f"{path}: VAS {tokens[0]!r} is not a number; restore the file from the archive "
            f"(one number {card.label_min:g}..{card.label_max:g})"
        ) from None
    return card.check_label(tokens[0], str(path))


def _parse_aam(path: Path) -> np.ndarray:
    text = path.read_text(errors="replace").replace(",", " ")
    rows = [line.split() for line in text.splitlines() if line.strip()]
    ok = len(rows) == AAM_POINTS and all(len(r) == 2 for r in rows)
    if ok:
        try:
            arr = np.array(rows, dtype=np.float64)
        except ValueError:
            ok = False
    if not ok or not np.isfinite(arr).all():
        shape = f"{len(rows)} row(s) of {sorted({len(r) for r in rows})} value(s)" if rows else "no rows"
        raise DataError(
            f"{path}: an AAM landmark file must hold {AAM_POINTS} rows of two finite numbers (x y, "
            f"source-frame pixels); it has {shape}{'' if ok else ' or non-numbers'}. Restore it from the "
            "archive, or delete it (the frame then has no AAM points)"
        )
    return arr


def read_aam_landmarks(folder: str | Path | None, sequence: str, num_frames: int) -> np.ndarray:
    """Read the AAM landmarks of one sequence.

    File ``<folder>/<sequence><NNN>_aam.txt`` holds frame NNN (1-based): 66 rows
    ``x y`` in source-frame pixels. Other files in the folder are ignored.

    Args:
        folder: ``AAM_landmarks/<subject>/<sequence>`` or None (no AAM for this sequence).
        sequence: the sequence name.
        num_frames: T, the sequence's frame count.

    Returns:
        ``(T, 66, 2)`` float32 (x, y) in source-frame pixels; rows of frames
        without an AAM file (or all rows, when ``folder`` is None or absent) are NaN.

    Raises:
        DataError: a file that is not 66 rows of two finite numbers; an
            ``*_aam.txt`` file named for another sequence, for a frame outside
            ``1..T``, or twice for one frame.
    """
    out = np.full((int(num_frames), AAM_POINTS, 2), np.nan, dtype=np.float32)
    if folder is None or not Path(folder).is_dir():
        return out
    folder = Path(folder)
    pattern = re.compile(re.escape(sequence) + r"(\d+)_aam\.txt", re.IGNORECASE)
    seen: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if not p.is_file() or not p.name.lower().endswith("_aam.txt"):
            continue
        m = pattern.fullmatch(p.name)
        if m is None:
            raise DataError(
                f"{p}: AAM files of sequence {sequence!r} must be named {sequence}<NNN>_aam.txt; "
                "move it to its own sequence folder or remove it"
            )
        n = int(m.group(1))
        if not 1 <= n <= num_frames:
            raise DataError(
                f"{p}: AAM file for frame {n} but sequence {sequence!r} has {num_frames} frame(s) (1..{num_frames}); "
                "the AAM and Images trees are from different copies: restore the matching files"
            )
        if n in seen:
            raise DataError(f"{p} and {seen[n]} are both AAM files of frame {n} of sequence {sequence!r}: remove one")
        seen[n] = p
        out[n - 1] = _parse_aam(p)
    return out


def read_unbc_index(raw: str | Path, card: str | DatasetCard = "unbc_mcmaster", *,
                    check_aam: bool = True) -> list[VideoItem]:
    """Read and check a UNBC-McMaster copy (layout in the module docstring); nothing is decoded.

    Args:
        raw: the archive root (or the Kaggle copy's root with doubled folders).
        card: dataset card (name or object): label range (VAS 0..10) and its one expression.
        check_aam: parse every AAM file now (shape errors are raised before any decoding).

    Returns:
        One :class:`~benchmark.data.prepare.VideoItem` per sequence, sorted by
        (subject, sequence): ``video_id`` = ``original`` = the sequence name,
        ``subject`` = the ``Images`` subject folder, ``expression`` = the card's
        expression, ``label`` = the VAS, ``split`` = ``"all"``,
        ``expected_frames`` = N, ``aam_dir`` = the sequence's AAM folder or None.

    Raises:
        ConfigError: the card does not list exactly one expression.
        DataError: ``Images`` or ``Sequence_Labels/VAS`` missing; a sequence name
            found twice; a sequence with frames but no VAS file; a VAS file with no
            frames; frame files misnamed, missing (gaps) or absent; an AAM file of
            the wrong shape (see :func:`read_aam_landmarks`).
        LabelError: a VAS file that is not one number in the card's range.
    """
    from .prepare import VideoItem, _resolve_card, safe_video_id

    raw = Path(raw)
    card = _resolve_card(card)
    if len(card.expressions) != 1:
        raise ConfigError(
            f"layout 'unbc' gives every sequence one expression, but card {card.name!r} lists "
            f"{len(card.expressions)} ({', '.join(card.expressions)}); use card unbc_mcmaster"
        )
    expression = card.expressions[0]
    images, vas, aam = find_unbc_folders(raw)
    seqs = _sequence_folders(images, "Images")
    if not seqs:
        raise DataError(
            f"{images} holds no <subject>/<sequence>/ folder: the unbc layout reads frames from "
            f"{images}/<subject>/<sequence>/<sequence><NNN>.png"
        )
    labels = _vas_files(vas)
    aam_seqs = _sequence_folders(aam, "AAM_landmarks") if aam is not None else {}

    no_label = [f"{seqs[s][1]}" for s in seqs if s not in labels]
    if no_label:
        raise DataError(
            f"{len(no_label)} sequence(s) have frames but no VAS file under {vas}: {_listing(no_label)}. "
            f"Add {vas}/<subject>/<sequence>.txt holding the sequence's VAS "
            f"({card.label_min:g}..{card.label_max:g}), or remove the sequence folder"
        )
    no_frames = [f"{labels[s]}" for s in labels if s not in seqs]
    if no_frames:
        raise DataError(
            f"{len(no_frames)} VAS file(s) name a sequence with no frame folder under {images}: "
            f"{_listing(no_frames)}. Sequences are matched by name: restore "
            f"{images}/<subject>/<sequence>/ from the archive, or remove the VAS file"
        )
    stray = sorted(s for s in aam_seqs if s not in seqs)
    if stray:
        log.warning("%d AAM sequence folder(s) under %s have no frames and are ignored: %s",
                    len(stray), aam, _listing(stray))

    items = []
    for seq in sorted(seqs, key=lambda s: (seqs[s][0], s)):
        subject, folder = seqs[seq]
        frames = sequence_frames(folder, seq)
        label = read_vas(labels[seq], card)
        aam_dir = aam_seqs[seq][1].resolve() if seq in aam_seqs else None
        if check_aam and aam_dir is not None:
            read_aam_landmarks(aam_dir, seq, len(frames))
        where = f"sequence {seq!r} ({labels[seq]})"
        items.append(VideoItem(safe_video_id(seq), folder.resolve(), seq, subject, expression, label,
                               UNBC_SPLIT, where, len(frames), aam_dir))
    missing_aam = sum(it.aam_dir is None for it in items)
    if missing_aam:
        log.info("%d of %d UNBC sequence(s) have no AAM landmark folder%s", missing_aam, len(items),
                 "" if aam is not None else f" ({raw} has no {AAM_DIR} tree)")
    return items
