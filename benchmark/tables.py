"""Table specifications and the table builder.

A table spec (``reports/specs/<id>.yaml``) names the paper table, its rows
(method or variant + option overrides), columns (expressions), metric,
the published CSV (``reports/published/``) and a tolerance. :func:`expand`
turns a spec into runs; :func:`build_table` recomputes every cell from the runs'
``predictions.csv`` / ``eval_history.csv`` (never from cached metrics), with
mean +- std over seeds; failed runs are counted and shown, never averaged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .errors import ConfigError
from .metrics import avg_corr, fisher_z_avg_corr, spearman_rho_x100
from .paths import reports_dir
from .registry import is_registered
from .runs import ResolvedRun, RunSpec, find_recorded_run, read_result, resolve

SELECTIONS = {
    "test_selected": "best test epoch (the official code's rule; optimistic)",
    "final": "final epoch (honest: no test-set model selection)",
}


@dataclass
class TableRow:
    """One row of a table spec: a label, a method and option overrides."""

    label: str
    method: str
    options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    in_paper: bool = True


@dataclass
class TableSpec:
    """A parsed ``reports/specs/<id>.yaml``."""

    id: str
    title: str
    paper_table: int
    protocol: str
    metric: str
    columns: list[str]
    rows: list[TableRow]
    published: pd.DataFrame
    published_key: str
    tolerance: float
    path: Path


def spec_path(table_id: str) -> Path:
    return reports_dir() / "specs" / f"{table_id}.yaml"


def available_tables() -> list[str]:
    """Ids of every table spec in ``reports/specs``."""
    return sorted(p.stem for p in (reports_dir() / "specs").glob("*.yaml"))


def load_spec(table_id: str) -> TableSpec:
    """Load and validate a table spec.

    Raises:
        ConfigError: unknown table, or a spec missing a field or naming a
            published row that the CSV does not have.
    """
    path = spec_path(table_id)
    if not path.is_file():
        raise ConfigError(f"no table spec {path}; available: {', '.join(available_tables())}")
    raw = yaml.safe_load(path.read_text())
    try:
        published = pd.read_csv(reports_dir() / "published" / raw["published"])
        rows = [TableRow(r["label"], r["method"], dict(r.get("options", {})), dict(r.get("training", {})))
                for r in raw["rows"]]
        rows += [TableRow(r["label"], r["method"], dict(r.get("options", {})), dict(r.get("training", {})),
                          in_paper=False) for r in raw.get("extra_rows", [])]
        spec = TableSpec(
            id=raw["id"], title=raw["title"], paper_table=int(raw["paper_table"]),
            protocol=raw["dataset_protocol"], metric=raw["metric"], columns=list(raw["columns"]),
            rows=rows, published=published, published_key=raw["published_key"],
            tolerance=float(raw.get("tolerance", 5.0)), path=path,
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing field {exc}") from None
    keys = set(published[spec.published_key])
    for row in spec.rows:
        if row.in_paper and row.label not in keys:
            raise ConfigError(f"{path}: row {row.label!r} is not in {raw['published']} ({', '.join(sorted(keys))})")
    return spec


def published_value(spec: TableSpec, row: TableRow, column: str) -> float:
    """The paper's number for a cell (NaN for rows not in the paper)."""
    if not row.in_paper:
        return float("nan")
    sel = spec.published[spec.published[spec.published_key] == row.label]
    if sel.empty or column not in sel:
        return float("nan")
    v = sel.iloc[0][column]
    return float(v) if pd.notna(v) else float("nan")


@dataclass
class CellRuns:
    """The runs behind one table cell (one per seed), resolved but maybe not executed.

    ``runs`` is empty when the dataset has no train or no test video for the
    column's expression (``no_data`` says why); such a cell is shown as "no data".
    """

    row: TableRow
    column: str
    runs: list[ResolvedRun]
    no_data: str = ""


def expand(spec: TableSpec, dataset: str | Path, *, scale: str, seeds: list[int], runs_dir: str | Path,
           weights: dict[str, dict[str, Path]] | None = None,
           training: dict | None = None, find_recorded: bool = False) -> tuple[list[CellRuns], list[TableRow]]:
    """Resolve every run a table needs.

    Args:
        weights: method name -> role -> checkpoint path (from ``--weights``).
        training: training-setting overrides applied to every run (after the row's own).
        find_recorded: for a run not recorded under its own id, use a finished run in
            ``runs_dir`` that differs only in its pretrained files
            (:func:`benchmark.runs.find_recorded_run`): ``report`` without ``--weights``
            then shows the runs ``reproduce --weights`` made.

    Returns:
        ``(cells, not_run)``: the cells of registered methods, and rows whose method
        is not implemented yet (shown with their published numbers and "not run").
    """
    from .data.prepared import PreparedDataset

    videos = PreparedDataset(dataset).videos
    cells, not_run = [], []
    for row in spec.rows:
        if not is_registered(row.method):
            not_run.append(row)
            continue
        for column in spec.columns:
            counts = videos[videos["expression"] == column]["split"].value_counts()
            if counts.get("train", 0) == 0 or counts.get("test", 0) == 0:
                cells.append(CellRuns(row, column, [], no_data=f"{counts.get('train', 0)} train / "
                                                              f"{counts.get('test', 0)} test videos"))
                continue
            runs = [resolve(RunSpec(method=row.method, dataset=dataset, expression=column, seed=s, scale=scale,
                                    options=row.options, training={**row.training, **(training or {})},
                                    weights=(weights or {}).get(row.method, {})), runs_dir)
                    for s in seeds]
            if find_recorded:
                runs = [r if read_result(r.folder) else (find_recorded_run(r, runs_dir) or r) for r in runs]
            cells.append(CellRuns(row, column, runs))
    return cells, not_run


def _cell_value(folder: Path, selection: str, metric: str) -> float:
    """Recompute a run's metric from its prediction files."""
    if selection == "final":
        df = pd.read_csv(folder / "predictions.csv")
        return _metric(df["label"], df["prediction"], metric)
    ev = pd.read_csv(folder / "eval_history.csv")
    best = -math.inf
    for _, grp in ev.groupby("epoch"):
        v = _metric(grp["label"], grp["prediction"], metric)
        if not math.isnan(v):
            best = max(best, v)
    return best if best != -math.inf else float("nan")


def _metric(labels, preds, metric: str) -> float:
    if metric == "rho_x100":
        return spearman_rho_x100(labels, preds)
    raise ConfigError(f"unknown table metric {metric!r}")


def build_table(spec: TableSpec, cells: list[CellRuns], not_run: list[TableRow], selection: str) -> pd.DataFrame:
    """One long-format DataFrame: a row per (table row, column), plus the summary
    columns ``avg_corr`` (arithmetic, as the paper) and ``avg_corr_fisher_z``.

    Columns: ``row, method, in_paper, column, reproduced, std, n_ok, n_failed,
    n_missing, published, diff, within_tolerance, status, runs, note`` (``note``: why a
    cell has no number, e.g. "the dataset has 0 train / 1 test videos for this expression").
    Rows follow the spec's row order and, within a row, its column order, whatever the
    order of ``cells``; the summary lines (two per row, same row order) follow all cells.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"unknown model selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    records = []
    for cell in cells:
        values, failed, missing, ids = [], 0, 0, []
        for run in cell.runs:
            ids.append(run.folder.name)
            res = read_result(run.folder)
            if res is None or res.get("status") not in ("ok", "failed"):
                missing += 1
            elif res["status"] == "failed":
                failed += 1
            else:
                values.append(_cell_value(run.folder, selection, spec.metric))
        if not cell.runs:
            records.append(_record(spec, cell.row, cell.column, float("nan"), float("nan"), 0, 0, 0, "no data", [],
                                   note=f"the dataset has {cell.no_data} for this expression"))
            continue
        finite = [v for v in values if not math.isnan(v)]
        mean = float(np.mean(finite)) if finite else float("nan")
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
        status = "ok" if values and not failed and not missing else (
            "failed" if failed and not values else ("not run" if not values and not failed else "partial"))
        records.append(_record(spec, cell.row, cell.column, mean, std, len(values), failed, missing, status, ids))
    for row in not_run:
        for column in spec.columns:
            records.append(_record(spec, row, column, float("nan"), float("nan"), 0, 0, 0, "not implemented", []))
    # the paper's row order (implemented or not), each row's cells in the spec's column order
    row_order = {r.label: i for i, r in enumerate(spec.rows)}
    column_order = {c: i for i, c in enumerate(spec.columns)}
    df = pd.DataFrame.from_records(records)
    df = df.iloc[np.lexsort((df["column"].map(column_order).to_numpy(), df["row"].map(row_order).to_numpy()))]
    df = df.reset_index(drop=True)
    summary = []
    for label, grp in df.groupby("row", sort=False):
        row = next(r for r in spec.rows if r.label == label)
        vals = [grp.loc[grp["column"] == c, "reproduced"].iloc[0] if (grp["column"] == c).any() else float("nan")
                for c in spec.columns]
        complete = all(grp["status"] == "ok") and set(spec.columns) <= set(grp["column"])
        a = avg_corr(vals) if complete else float("nan")
        fz = fisher_z_avg_corr(vals) if complete else float("nan")
        statuses = set(grp["status"])
        status = "ok" if complete else (statuses.pop() if statuses in ({"not implemented"}, {"no data"})
                                        else "incomplete")
        summary.append(_record(spec, row, "avg_corr", a, float("nan"), int(grp["n_ok"].min()),
                               int(grp["n_failed"].sum()), int(grp["n_missing"].sum()), status, []))
        summary.append(_record(spec, row, "avg_corr_fisher_z", fz, float("nan"), int(grp["n_ok"].min()),
                               int(grp["n_failed"].sum()), int(grp["n_missing"].sum()), status, [],
                               published=float("nan")))
    return pd.concat([df, pd.DataFrame.from_records(summary)], ignore_index=True)


def _record(spec, row, column, value, std, n_ok, n_failed, n_missing, status, runs, published=None,
            note: str = "") -> dict:
    pub = published_value(spec, row, column) if published is None else published
    diff = value - pub if not (math.isnan(value) or math.isnan(pub)) else float("nan")
    return {
        "row": row.label, "method": row.method, "in_paper": row.in_paper, "column": column,
        "reproduced": value, "std": std, "n_ok": n_ok, "n_failed": n_failed, "n_missing": n_missing,
        "published": pub, "diff": diff,
        "within_tolerance": (abs(diff) <= spec.tolerance) if not math.isnan(diff) else None,
        "status": status, "runs": ";".join(runs), "note": note,
    }


def wide(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The paper's layout: one row per table row, ``<column>`` (reproduced) and
    ``<column>_paper`` side by side, then ``avg_corr`` and ``avg_corr_paper``."""
    out = []
    for label, grp in df.groupby("row", sort=False):
        rec = {"row": label}
        for c in [*spec.columns, "avg_corr", "avg_corr_fisher_z"]:
            r = grp[grp["column"] == c].iloc[0]
            rec[c] = r["reproduced"]
            if c != "avg_corr_fisher_z":
                rec[f"{c}_paper"] = r["published"]
        out.append(rec)
    return pd.DataFrame(out)
