"""Dataset statistics: paper Table 1 recomputed from a prepared dataset.

Table 1 of the QAFE-Net paper describes PFED5: per split (train, test) and
expression, the number of videos ("clips") at each MDS-UPDRS severity, and the
minimum, maximum and mean sequence length in frames; a final "total" row sums the
counts over both splits and all expressions. :func:`dataset_statistics` computes
the same table from ``videos.csv`` (labels, splits, ``num_frames``) of any
prepared dataset with the pfed5 protocol, and :func:`compare_statistics` puts it
beside the published CSV (``reports/published/table1_pfed5_stats.csv``) cell by
cell. No training is involved.

A statistics spec (``reports/specs/table1.yaml``, ``kind: statistics``) names the
published CSV and the protocol; :func:`load_statistics_spec` reads it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .cards import DatasetCard
from .data.prepared import PreparedDataset
from .errors import ConfigError, DataError

#: Splits in the paper's row order.
SPLITS = ("train", "test")
#: Length columns (frames) and the count column, in the paper's order after the severities.
LENGTH_COLUMNS = ("min_len", "max_len", "avg_len")


@dataclass
class StatisticsSpec:
    """A ``kind: statistics`` table spec (paper Table 1).

    Attributes:
        id, title, paper_table: as :class:`benchmark.tables.TableSpec`.
        protocol: the dataset protocol the table describes (``pfed5``).
        published: the published CSV (``split, expression, severity_<k>..., min_len, max_len,
            avg_len, clips``).
        comparable_card: the card whose prepared data the published numbers describe.
        path: the spec file.
    """

    id: str
    title: str
    paper_table: int
    protocol: str
    published: pd.DataFrame
    comparable_card: str
    path: Path
    kind: str = "statistics"


def load_statistics_spec(raw: dict, path: Path, published_dir: Path) -> StatisticsSpec:
    """Build a :class:`StatisticsSpec` from a parsed spec file.

    Raises:
        ConfigError: a missing field, or a published CSV without the ``split`` /
            ``expression`` / ``clips`` columns.
    """
    try:
        published = pd.read_csv(published_dir / raw["published"], dtype={"split": str, "expression": str})
        spec = StatisticsSpec(id=raw["id"], title=raw["title"], paper_table=int(raw["paper_table"]),
                              protocol=raw["dataset_protocol"], published=published,
                              comparable_card=raw.get("comparable_card", "pfed5"), path=path)
    except KeyError as exc:
        raise ConfigError(f"{path}: missing field {exc}") from None
    missing = {"split", "expression", "clips"} - set(published.columns)
    if missing:
        raise ConfigError(f"{path}: {raw['published']} lacks column(s) {', '.join(sorted(missing))}")
    return spec


def severity_values(card: DatasetCard) -> list[int]:
    """The integer label values of a card (PFED5: 0, 1, 2, 3, 4).

    Raises:
        ConfigError: a card whose labels are not integers (a continuous label has no
            per-value columns).
    """
    if not card.label_integer:
        raise ConfigError(f"dataset card {card.name!r}: labels are not integers; Table 1 counts videos per "
                          "integer severity")
    return list(range(int(card.label_min), int(card.label_max) + 1))


def _row(split: str, expression: str, videos: pd.DataFrame, values: list[int]) -> dict:
    labels = videos["label"].to_numpy(dtype=float)
    lengths = videos["num_frames"].to_numpy(dtype=float)
    rec: dict = {"split": split, "expression": expression}
    for v in values:
        rec[f"severity_{v}"] = int(np.sum(labels == v))
    rec["min_len"] = int(lengths.min()) if len(lengths) else np.nan
    rec["max_len"] = int(lengths.max()) if len(lengths) else np.nan
    rec["avg_len"] = float(lengths.mean()) if len(lengths) else np.nan
    rec["clips"] = int(len(videos))
    return rec


def dataset_statistics(dataset: PreparedDataset, card: DatasetCard) -> pd.DataFrame:
    """Paper Table 1 for a prepared dataset.

    Returns:
        One row per (split, expression) in the paper's order (train then test; the card's
        expression order), then ``("total", "all")``. Columns: ``split, expression,
        severity_<k>`` (videos with label k, one column per integer label of the card),
        ``min_len, max_len`` (frames, int), ``avg_len`` (mean frames, float: the paper
        prints it rounded), ``clips`` (videos). Splits other than train/test are reported
        after them in first-seen order.

    Raises:
        ConfigError: a card with non-integer labels.
        DataError: a video whose label is not one of the card's integer values (naming it).
    """
    values = severity_values(card)
    v = dataset.videos.reset_index(drop=True)
    bad = ~v["label"].astype(float).isin([float(x) for x in values])
    if bad.any():
        row = v[bad].iloc[0]
        raise DataError(f"{dataset.root / 'videos.csv'}: video {row['video_id']} has label {row['label']!r}, "
                        f"not one of {values} of card {card.name!r}")
    splits = [s for s in SPLITS if (v["split"] == s).any()] + \
        [s for s in dict.fromkeys(v["split"]) if s not in SPLITS]
    rows = []
    for split in splits:
        for expression in card.expressions:
            sel = v[(v["split"] == split) & (v["expression"] == expression)]
            if len(sel):
                rows.append(_row(split, expression, sel, values))
    rows.append(_row("total", "all", v, values))
    return pd.DataFrame(rows)


def compare_statistics(ours: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Long table of every statistic beside its published value.

    Returns:
        Columns ``split, expression, column, reproduced, published, diff, equal``; one row per
        (row of ``ours``, numeric column); ``published`` is NaN where the published table has no
        such row or column; ``equal`` compares ``avg_len`` after rounding to whole frames (as
        printed) and every other column exactly.
    """
    pub = published.set_index(["split", "expression"])
    out = []
    for rec in ours.to_dict("records"):
        key = (rec["split"], rec["expression"])
        for col, val in rec.items():
            if col in ("split", "expression"):
                continue
            p = float(pub.loc[key, col]) if key in pub.index and col in pub.columns else float("nan")
            val = float(val)
            diff = val - p if not (np.isnan(val) or np.isnan(p)) else float("nan")
            shown = round(val) if col == "avg_len" and not np.isnan(val) else val
            equal = None if np.isnan(diff) else bool(shown == p)
            out.append({"split": key[0], "expression": key[1], "column": col, "reproduced": val,
                        "published": p, "diff": diff, "equal": equal})
    return pd.DataFrame(out)


__all__ = ["LENGTH_COLUMNS", "SPLITS", "StatisticsSpec", "compare_statistics", "dataset_statistics",
           "load_statistics_spec", "severity_values"]
