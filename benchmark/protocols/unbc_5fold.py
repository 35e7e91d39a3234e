"""UNBC-McMaster sequence-level pain (VAS) estimation with 5-fold subject-wise
cross-validation (paper section 5 and Table 3).

* Partitions ``fold1`` .. ``fold5`` from the dataset card's committed fold file
  (``folds:`` in ``card.yaml``, e.g. ``datasets/unbc_mcmaster/folds_sorted_round_robin.json``):
  fold ``k``'s test set is its subjects' sequences, its training set every other
  sequence. No fold assignment has been published for the compared papers, so
  comparisons with published numbers are "protocol not identical"; the fold file's
  SHA-256 is hashed into every run's id and recorded in its config.
* Clips of 144 frames (9 sub-clips of 16) at the paper scale, training clips as
  for PFED5 (random start, short sequences looped from their first frame); Table 3's
  R3D and Former-DFER rows also run 80-frame clips (a run-level ``clip_len``).
* At test time every sequence is sampled 10 times at random (seeded by run seed,
  sampling and row only) and the 10 predictions are averaged (paper section 5).
* Metrics: MAE (headline) and RMSE on the VAS scale, pooled over all sequences from
  out-of-fold predictions, and mean +- std over the folds (both in the tables).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ..cards import DatasetCard
from ..data.prepared import PreparedDataset
from ..errors import ConfigError, DataError
from . import MAE, RHO, RMSE, Partition, Protocol
from .pfed5 import check_labels, check_subject_disjoint

#: Frames per clip at the paper scale (paper section 5: 144 frames in 9 sub-clips of 16).
CLIP_LEN = 144
#: Random test clips averaged per sequence (paper section 5).
TEST_SAMPLINGS = 10


def fold_file(card: DatasetCard) -> Path:
    """The fold file a card names (``folds:``, relative to the card's folder).

    Raises:
        ConfigError: the card names no fold file, or it does not exist.
    """
    name = card.raw.get("folds")
    if not name:
        raise ConfigError(f"{card.path / 'card.yaml'}: protocol {card.protocol!r} needs a 'folds:' file "
                          "(a JSON of subject ids per fold)")
    path = card.path / name
    if not path.is_file():
        raise ConfigError(f"{path}: the fold file named by {card.path / 'card.yaml'} does not exist")
    return path


def load_folds(path: str | Path) -> dict[str, list[str]]:
    """Read and check a fold file ``{"folds": {"fold1": [subject, ...], ...}}``.

    Returns:
        fold name -> subject ids, in the file's order.

    Raises:
        DataError: unreadable JSON, no folds, an empty fold, a fold name that is not
            ``fold<k>``, or a subject listed twice (in one fold or in two), naming it.
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text())
        folds = raw["folds"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a fold file ({exc}); expected {{\"folds\": {{\"fold1\": [...], ...}}}}") from None
    if not isinstance(folds, dict) or not folds:
        raise DataError(f"{path}: 'folds' must map fold names to subject lists")
    seen: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for name, subjects in folds.items():
        if not (isinstance(name, str) and name.startswith("fold") and name[4:].isdigit()):
            raise DataError(f"{path}: fold name {name!r} must be fold<k> (fold1, fold2, ...)")
        if not isinstance(subjects, list) or not subjects:
            raise DataError(f"{path}: fold {name!r} lists no subject")
        for s in subjects:
            s = str(s)
            if s in seen:
                where = f"twice in {name!r}" if seen[s] == name else f"in both {seen[s]!r} and {name!r}"
                raise DataError(f"{path}: subject {s!r} is {where}; every subject must be in exactly one fold")
            seen[s] = name
        out[name] = [str(s) for s in subjects]
    return out


def folds_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of the fold file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


class UNBC5FoldProtocol(Protocol):
    """UNBC-McMaster, 5-fold subject-wise cross-validation (see the module docstring)."""

    name = "unbc_5fold"
    title = "UNBC-McMaster, 5-fold subject-wise cross-validation, sequence-level VAS"
    clip_len = CLIP_LEN
    test_clips = "random"
    test_samplings = TEST_SAMPLINGS
    metrics = (MAE, RMSE, RHO)
    pooled = True

    def partition_names(self, card: DatasetCard) -> list[str]:
        return sorted(load_folds(fold_file(card)), key=lambda f: int(f[4:]))

    def config_info(self, card: DatasetCard) -> dict:
        path = fold_file(card)
        return {"folds_file": path.name, "folds_sha256": folds_sha256(path)}

    def _fold_of(self, dataset: PreparedDataset, card: DatasetCard) -> dict[str, str]:
        """subject -> fold, checked against the data (see :meth:`partition`)."""
        path = fold_file(card)
        folds = load_folds(path)
        videos = dataset.videos
        where = str(dataset.root / "videos.csv")
        fold_of = {s: f for f, subs in folds.items() for s in subs}
        data_subjects = set(videos["subject"])
        missing = sorted(data_subjects - set(fold_of))
        if missing:
            s = missing[0]
            vid = videos.loc[videos["subject"] == s, "video_id"].iloc[0]
            more = f" (and {len(missing) - 1} more: {', '.join(missing[1:4])})" if len(missing) > 1 else ""
            raise DataError(f"{path}: subject {s!r} of {where} (e.g. video {vid}) is in no fold{more}; "
                            "add it to exactly one fold")
        absent = sorted(set(fold_of) - data_subjects)
        if absent:
            raise DataError(f"{path}: subject {absent[0]!r} ({fold_of[absent[0]]}) has no sequence in {where}"
                            f"{f' (and {len(absent) - 1} more)' if len(absent) > 1 else ''}; the fold file "
                            "does not belong to this dataset")
        return fold_of

    def partition_sizes(self, dataset: PreparedDataset, card: DatasetCard, expression: str
                        ) -> dict[str, tuple[int, int]]:
        fold_of = self._fold_of(dataset, card)
        v = dataset.videos
        folds = v.loc[v["expression"] == expression, "subject"].map(fold_of)
        return {name: (int((folds != name).sum()), int((folds == name).sum())) for name in self.partition_names(card)}

    def partition(self, dataset: PreparedDataset, card: DatasetCard, expression: str, name: str) -> Partition:
        """Fold ``name``: test = its subjects' sequences of ``expression``, train = the others.

        Raises:
            DataError: a bad fold file (see :func:`load_folds`), a subject of the data in no
                fold (naming it and a video), a fold subject with no sequence in the data, or
                an empty partition.
            LabelError: a label outside the card's range.
            SubjectLeakError: never for a valid fold file (checked anyway).
        """
        path = fold_file(card)
        name = self.check_partition(card, name)
        videos = dataset.videos
        where = str(dataset.root / "videos.csv")
        check_labels(dataset, card)
        fold_of = self._fold_of(dataset, card)
        sel = videos[videos["expression"] == expression]
        is_test = sel["subject"].map(fold_of) == name
        train, test = sel[~is_test].reset_index(drop=True), sel[is_test].reset_index(drop=True)
        check_subject_disjoint(train, test, f"{path} ({name})")
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"{path}: {name} of {where} has {len(train)} train and {len(test)} test sequences "
                            f"of {expression!r}; both partitions need at least one")
        return Partition(name, train, test, info=self.config_info(card))
