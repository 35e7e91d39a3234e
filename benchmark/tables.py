"""Table specifications and the table builder.

A table spec (``reports/specs/<id>.yaml``) names the paper table, the protocol
it runs under, its rows (method or variant + option overrides, or a published-only
row quoted from another paper), its columns and the published CSV
(``reports/published/``) with a tolerance. Columns are either

* ``column_kind: expression``: one column per expression, one ``metric`` (Table 2:
  Spearman's rho x 100 per PFED5 expression, then the paper's "Avg. Corr."), or
* ``column_kind: metric``: one column per metric of one expression (Table 3: MAE
  and RMSE of UNBC-McMaster pain).

:func:`expand` turns a spec into runs: every (row, column) cell holds one run per
seed and protocol partition (PFED5: the ``official`` split; UNBC: ``fold1`` ..
``fold5``). :func:`build_table` recomputes every cell from the runs'
``predictions.csv`` / ``eval_history.csv`` (never from cached metrics): per seed,
the partitions' predictions are pooled (each sequence predicted once, by the model
whose training never saw its subject) and the metric computed on the pool; the
table shows the mean +- std over seeds of that pooled value, and beside it the
mean +- std over partitions. A seed with a failed or missing partition is not
averaged (failed runs are counted and shown).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from .errors import ConfigError, MissingWeightsError
from .metrics import BOOTSTRAP_RESAMPLES, avg_corr, bootstrap_values, fisher_z_avg_corr, percentile_interval, regression_metrics
from .paths import published_dir, specs_dir
from .protocols import RHO, MetricSpec, get_protocol
from .registry import is_registered
from .runs import ResolvedRun, RunSpec, find_recorded_run, read_result, resolve

SELECTIONS = {
    "test_selected": "selected on the test set: best test epoch (the official code's rule; optimistic)",
    "final": "final epoch (honest: no test-set model selection)",
    "validation": "best validation epoch (honest: a held-out split of the training subjects, --selection validation)",
}
#: The selections that never look at the test set; the headline CSV and the leaderboard use one of them.
HONEST_SELECTIONS = ("final", "validation")


COLUMN_KINDS = ("expression", "metric")


@dataclass
class TableRow:
    """One row of a table spec.

    Attributes:
        label: row label (the paper's).
        method: registry name; None for a row quoted from another paper (published only).
        options, training: method option and training-setting overrides.
        in_paper: the row is in the paper's table (else: a row this project adds).
        clip_len: frames per clip at the paper scale instead of the protocol's (Table 3's
            80- and 144-frame rows).
        published: column -> value selecting the row's line in the published CSV (default
            ``{published_key: label}``).
        pretrained: role -> None to drop that pretrained file for this row even when
            ``--weights`` provides it (Table 4's "SlowOnly trained from scratch": ``{heatmap:
            null}``); the other roles keep the method's files.
    """

    label: str
    method: str | None
    options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    in_paper: bool = True
    clip_len: int | None = None
    published: dict | None = None
    pretrained: dict = field(default_factory=dict)

    @property
    def published_only(self) -> bool:
        """A row quoted from another paper: shown with its published numbers, never run."""
        return self.method is None


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
    column_kind: str = "expression"
    expression: str | None = None
    summary: tuple[str, ...] = ("avg_corr", "avg_corr_fisher_z", "pooled")
    comparable_card: str = "pfed5"
    note: str = ""
    leaderboard: dict | None = None
    source: str = ""

    @property
    def protocol_obj(self):
        """The :class:`benchmark.protocols.Protocol` the spec runs under."""
        return get_protocol(self.protocol)

    def column_metric(self, column: str) -> MetricSpec:
        """The metric of a column: the spec's ``metric`` for expression columns, the column
        itself for metric columns (with its direction from the protocol)."""
        return self.protocol_obj.metric(column if self.column_kind == "metric" else self.metric)

    def column_expression(self, column: str) -> str:
        """The expression a column's runs are trained on."""
        return column if self.column_kind == "expression" else str(self.expression)


def spec_path(table_id: str) -> Path:
    return specs_dir() / f"{table_id}.yaml"


def available_tables() -> list[str]:
    """Ids of every table spec in ``reports/specs``, in paper order (table1, table2, ..., table10,
    then any other spec by name)."""
    def key(name: str):
        digits = name[len("table"):]
        return (0, int(digits), "") if name.startswith("table") and digits.isdigit() else (1, 0, name)

    return sorted((p.stem for p in specs_dir().glob("*.yaml")), key=key)


def audit_published(spec: "TableSpec") -> list[dict]:
    """Rows whose printed ``avg_corr`` differs from the mean of their printed columns by more
    than the rounding of two decimals (the paper prints 63.72 for Table 7's 2-block row whose
    values average 63.64).

    Returns:
        ``[{"row": label, "printed": float, "mean": float}]`` for each such row of the spec
        (empty for specs without an ``avg_corr`` column).
    """
    if "avg_corr" not in spec.summary:
        return []
    out = []
    for row in spec.rows:
        if not row.in_paper:
            continue
        vals = [published_value(spec, row, c) for c in spec.columns]
        printed = published_value(spec, row, "avg_corr")
        if any(math.isnan(v) for v in vals) or math.isnan(printed):
            continue
        mean = float(np.mean(vals))
        if abs(round(mean, 2) - printed) > 0.005 + 1e-9:
            out.append({"row": row.label, "printed": printed, "mean": mean})
    return out


def _row(r: dict, in_paper: bool, path: Path) -> TableRow:
    pretrained = dict(r.get("pretrained") or {})
    for role, value in pretrained.items():
        if value is not None:
            raise ConfigError(f"{path}: row {r.get('label')!r}: pretrained {role}: {value!r}; a row can only drop "
                              "a role (null), the files themselves come from --weights")
    return TableRow(r["label"], r.get("method"), dict(r.get("options", {})), dict(r.get("training", {})),
                    in_paper=in_paper, clip_len=r.get("clip_len"),
                    published=dict(r["published"]) if r.get("published") else None, pretrained=pretrained)


def read_published(path: Path) -> pd.DataFrame:
    """A published CSV: empty cells are NaN, every other text is kept (``N/A`` stays the string the
    paper prints, e.g. Table 10's sigma)."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def load_spec(table_id: str):
    """Load and validate a table spec: a :class:`TableSpec` (tables of runs), or a
    :class:`benchmark.statistics.StatisticsSpec` for ``kind: statistics`` (Table 1).

    Raises:
        ConfigError: unknown table, or a spec missing a field, naming an unknown protocol,
            column kind or metric, or naming a published row that the CSV does not have
            (or has twice).
    """
    path = spec_path(table_id)
    if not path.is_file():
        raise ConfigError(f"no table spec {path}; available: {', '.join(available_tables())}")
    raw = yaml.safe_load(path.read_text())
    if raw.get("kind") == "statistics":
        from .statistics import load_statistics_spec

        return load_statistics_spec(raw, path, published_dir())
    try:
        published = read_published(published_dir() / raw["published"])
        rows = [_row(r, True, path) for r in raw["rows"]] + [_row(r, False, path) for r in raw.get("extra_rows", [])]
        kind = raw.get("column_kind", "expression")
        spec = TableSpec(
            id=raw["id"], title=raw["title"], paper_table=int(raw["paper_table"]),
            protocol=raw["dataset_protocol"],
            metric=raw["metric"] if kind == "expression" else raw.get("metric", ""), columns=list(raw["columns"]),
            rows=rows, published=published, published_key=raw["published_key"],
            tolerance=float(raw.get("tolerance", 5.0)), path=path, column_kind=kind,
            expression=raw.get("expression"),
            summary=tuple(raw.get("summary", ["avg_corr", "avg_corr_fisher_z", "pooled"] if kind == "expression"
                                  else [])),
            comparable_card=raw.get("comparable_card", "pfed5"), note=str(raw.get("note", "")).strip(),
            leaderboard=(dict(raw["leaderboard"] or {}) if "leaderboard" in raw else None),
            source=str(raw.get("source", "")).strip(),
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing field {exc}") from None
    if spec.column_kind not in COLUMN_KINDS:
        raise ConfigError(f"{path}: column_kind {spec.column_kind!r} must be one of {', '.join(COLUMN_KINDS)}")
    if spec.column_kind == "metric" and not spec.expression:
        raise ConfigError(f"{path}: a table of metric columns needs 'expression:' (whose runs it shows)")
    for c in spec.columns:
        spec.column_metric(c)  # an unknown metric or protocol is refused here
    for row in spec.rows:
        if row.in_paper:
            n = len(_published_line(spec, row))
            if n == 0 and row.published is None:
                keys = sorted(set(published[spec.published_key].astype(str)))
                raise ConfigError(f"{path}: row {row.label!r} is not in {raw['published']} ({', '.join(keys)})")
            if n != 1:
                raise ConfigError(f"{path}: row {row.label!r} selects {n} lines of {raw['published']} "
                                  f"({_selector(spec, row)}); it must select exactly one")
    return spec


def _selector(spec: TableSpec, row: TableRow) -> dict:
    return row.published or {spec.published_key: row.label}


def _published_line(spec: TableSpec, row: TableRow) -> pd.DataFrame:
    sel = spec.published
    for col, value in _selector(spec, row).items():
        if col not in sel:
            return sel.iloc[0:0]
        sel = sel[sel[col].astype(str) == str(value)]
    return sel


def published_value(spec: TableSpec, row: TableRow, column: str) -> float:
    """The paper's number for a cell (NaN for rows not in the paper)."""
    if not row.in_paper:
        return float("nan")
    sel = _published_line(spec, row)
    if sel.empty or column not in sel:
        return float("nan")
    v = sel.iloc[0][column]
    return float(v) if pd.notna(v) else float("nan")


@dataclass
class CellRuns:
    """The runs behind one table cell (one per seed), resolved but maybe not executed.

    ``runs`` is empty when the dataset has no train or no test video for the
    column's expression (``no_data`` says why; shown as "no data"), or when the method's
    from-scratch policy refuses to train without a released file (``refused`` holds its
    message; shown as "refused", never as a number).
    """

    row: TableRow
    column: str
    runs: list[ResolvedRun]
    no_data: str = ""
    refused: str = ""


def expand(spec: TableSpec, dataset: str | Path, *, scale: str, seeds: list[int], runs_dir: str | Path,
           weights: dict[str, dict[str, Path]] | None = None,
           training: dict | None = None, find_recorded: bool = False,
           validation: float = 0.0) -> tuple[list[CellRuns], list[TableRow]]:
    """Resolve every run a table needs: per (row, column) cell, one run per seed and
    partition of the spec's protocol (cells of metric columns share their runs).

    Args:
        weights: method name -> role -> checkpoint path (from ``--weights``).
        training: training-setting overrides applied to every run (after the row's own).
        find_recorded: for a run not recorded under its own id, use a finished run in
            ``runs_dir`` that differs only in its pretrained files
            (:func:`benchmark.runs.find_recorded_run`): ``report`` without ``--weights``
            then shows the runs ``reproduce --weights`` made.

    Returns:
        ``(cells, not_run)``: the cells of registered methods, and rows that are not run:
        published-only rows and rows whose method is not implemented yet (both shown with
        their published numbers).

    Raises:
        ConfigError: the dataset's card runs another protocol than the spec's.
    """
    from .cards import load_card
    from .data.prepared import PreparedDataset

    ds = PreparedDataset(dataset)
    card = load_card(ds.card_name)
    if card.protocol != spec.protocol:
        raise ConfigError(f"{spec.path}: {spec.id} runs under protocol {spec.protocol!r}; dataset {dataset} "
                          f"(card {card.name!r}) uses {card.protocol!r}")
    protocol = spec.protocol_obj
    partitions = protocol.partition_names(card)
    cells, not_run = [], []
    for row in spec.rows:
        if row.published_only or not is_registered(row.method):
            not_run.append(row)
            continue
        shared: dict[str, list] = {}
        for column in spec.columns:
            expression = spec.column_expression(column)
            sizes = protocol.partition_sizes(ds, card, expression)
            empty = [(f"{name}: " if len(sizes) > 1 else "") + f"{n_train} train / {n_test} test videos"
                     for name, (n_train, n_test) in sizes.items() if n_train == 0 or n_test == 0]
            if empty:
                cells.append(CellRuns(row, column, [], no_data="; ".join(empty)))
                continue
            if expression not in shared:
                row_weights = {role: path for role, path in (weights or {}).get(row.method, {}).items()
                               if role not in row.pretrained}
                try:
                    runs = [resolve(RunSpec(method=row.method, dataset=dataset, expression=expression, seed=s,
                                            scale=scale, options=row.options,
                                            training={**row.training, **(training or {})},
                                            weights=row_weights, split=part,
                                            clip_len=row.clip_len, validation=validation), runs_dir)
                            for s in seeds for part in partitions]
                except MissingWeightsError as exc:
                    cells.append(CellRuns(row, column, [], refused=str(exc)))
                    continue
                if find_recorded:
                    runs = [r if read_result(r.folder) else (find_recorded_run(r, runs_dir) or r) for r in runs]
                shared[expression] = runs
            cells.append(CellRuns(row, column, shared[expression]))
    return cells, not_run


def selected_predictions(folder: Path, selection: str, headline: MetricSpec = RHO) -> pd.DataFrame:
    """A run's test predictions under a model-selection rule, read from its files.

    Args:
        folder: the run folder.
        selection: ``final`` (``predictions.csv``), ``test_selected`` (the evaluated epoch of
            ``eval_history.csv`` with the best ``headline`` metric, the earliest on ties; an
            epoch whose metric is undefined only when every epoch's is) or ``validation`` (the
            test predictions of the epoch with the best headline metric on ``val_history.csv``;
            none when the run held out no validation split).
        headline: the protocol's headline metric (its direction decides "best").

    Returns:
        DataFrame with at least ``label`` and ``prediction``, one row per test video.
    """
    if selection == "final":
        return pd.read_csv(folder / "predictions.csv")
    ev = pd.read_csv(folder / "eval_history.csv")
    if selection == "validation":  # the test predictions of the best validation epoch
        if not (folder / "val_history.csv").is_file():
            return ev.iloc[0:0]
        val = pd.read_csv(folder / "val_history.csv")
        best_epoch, best_value = None, float("nan")
        for epoch, grp in val.groupby("epoch"):
            v = _metric(grp["label"], grp["prediction"], headline.name)
            if best_epoch is None or headline.better(v, best_value):
                best_epoch, best_value = epoch, v
        return ev[ev["epoch"] == best_epoch]
    best, best_value = None, float("nan")
    for _, grp in ev.groupby("epoch"):
        v = _metric(grp["label"], grp["prediction"], headline.name)
        if best is None or headline.better(v, best_value):
            best, best_value = grp, v
    return best if best is not None else ev.iloc[0:0]


def _metric(labels, preds, metric: str) -> float:
    if metric not in ("rho_x100", "mae", "rmse"):
        raise ConfigError(f"unknown table metric {metric!r}")
    if len(labels) == 0:
        return float("nan")
    return regression_metrics(labels, preds)[metric]


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if not math.isnan(v)]
    mean = float(np.mean(finite)) if finite else float("nan")
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan")
    return mean, std


def cell_values(cell: CellRuns, selection: str, metric: str, headline: MetricSpec
                 ) -> tuple[list[float], list[float], int, int, int, list[pd.DataFrame]]:
    """Per seed: the metric on the pooled predictions of the seed's partitions, and per
    partition run the metric on its own predictions.

    Returns:
        ``(pooled per seed, per partition, n_ok seeds, n_failed seeds, n_missing seeds, pooled
        prediction frames per complete seed)``; a seed counts as failed when any of its
        partitions failed, as missing when any is not finished (and none failed), and only
        complete seeds are averaged. Each frame has ``video_id, subject, label, prediction``,
        sorted by ``video_id``.
    """
    seeds: dict = {}
    for i, run in enumerate(cell.runs):
        cfg = getattr(run, "config", None) or {}
        seeds.setdefault(cfg.get("seed", f"run{i}"), []).append(run)
    pooled, per_partition, failed, missing, seed_frames = [], [], 0, 0, []
    for runs in seeds.values():
        statuses = [(read_result(r.folder) or {}).get("status") for r in runs]
        if "failed" in statuses:
            failed += 1
            continue
        if any(st != "ok" for st in statuses):
            missing += 1
            continue
        frames = [selected_predictions(r.folder, selection, headline) for r in runs]
        per_partition += [_metric(f["label"], f["prediction"], metric) for f in frames]
        pool = pd.concat(frames, ignore_index=True)
        pooled.append(_metric(pool["label"], pool["prediction"], metric))
        pool = pool.assign(video_id=pool["video_id"].astype(str) if "video_id" in pool else
                           pd.Series(range(len(pool)), index=pool.index).astype(str))
        if "subject" not in pool:  # test-selected frames come from eval_history.csv, which has no subject
            subjects = pd.concat([pd.read_csv(r.folder / "predictions.csv", dtype={"video_id": str, "subject": str})
                                  for r in runs])
            if {"video_id", "subject"} <= set(subjects.columns):
                pool = pool.merge(subjects[["video_id", "subject"]].drop_duplicates("video_id"), on="video_id",
                                  how="left")
            else:
                pool = pool.assign(subject=None)
        seed_frames.append(pool[["video_id", "subject", "label", "prediction"]].sort_values("video_id",
                                                                                           kind="stable"))
    return pooled, per_partition, len(pooled), failed, missing, seed_frames


def seed_bootstrap(frames: list[pd.DataFrame], metric: str, seed: int = 0) -> np.ndarray:
    """Bootstrap distribution of a cell's metric from its seeds' pooled predictions
    (:func:`benchmark.metrics.bootstrap_values`, test subjects resampled as clusters, the metric
    averaged over seeds in each resample); all NaN when there is nothing to resample or the seeds
    did not predict the same videos."""
    nan = np.full(BOOTSTRAP_RESAMPLES, np.nan)
    if not frames or any(len(f) != len(frames[0]) for f in frames):
        return nan
    ids = frames[0]["video_id"].to_numpy()
    if any(not np.array_equal(f["video_id"].to_numpy(), ids) for f in frames[1:]):
        return nan
    preds = np.stack([f["prediction"].to_numpy(dtype=float) for f in frames])
    subjects = frames[0]["subject"].fillna(frames[0]["video_id"]).astype(str).to_numpy()
    return bootstrap_values(frames[0]["label"].to_numpy(dtype=float), preds, metric, clusters=subjects, seed=seed)


def seed_ci(frames: list[pd.DataFrame], metric: str) -> tuple[float, float]:
    """95% bootstrap CI of a cell's metric (:func:`seed_bootstrap`, seed 0)."""
    return percentile_interval(seed_bootstrap(frames, metric))


def build_table(spec: TableSpec, cells: list[CellRuns], not_run: list[TableRow], selection: str) -> pd.DataFrame:
    """One long-format DataFrame: a row per (table row, column), plus the spec's summary
    columns (Table 2: ``avg_corr``, arithmetic as the paper, ``avg_corr_fisher_z`` and
    ``pooled``: the metric over every column's test videos pooled, not in the paper).

    Columns: ``row, method, in_paper, column, reproduced, std, n_ok, n_failed, n_missing,
    published, diff, within_tolerance, status, runs, note, partition_mean, partition_std,
    n_partitions, ci_low, ci_high``. ``reproduced`` is the mean over seeds of the metric on each seed's pooled
    partition predictions (one partition: the run's own), ``std`` its standard deviation over
    seeds; ``partition_mean`` / ``partition_std`` the mean and std over every partition run
    (UNBC: the per-fold values); ``n_*`` count seeds; ``ci_low`` / ``ci_high`` the 95% bootstrap
    interval over test videos (:func:`seed_ci`; cells and ``pooled`` only). ``note`` says why a cell has no number
    (e.g. "the dataset has 0 train / 1 test videos for this expression"). Rows follow the
    spec's row order and, within a row, its column order, whatever the order of ``cells``;
    the summary lines (same row order) follow all cells.

    Raises:
        ConfigError: an unknown model selection.
    """
    if selection not in SELECTIONS:
        raise ConfigError(f"unknown model selection {selection!r}; choose one of {', '.join(SELECTIONS)}")
    headline = spec.protocol_obj.headline
    records = []
    frames_by_cell: dict = {}
    for cell in cells:
        if not cell.runs and cell.refused:
            records.append(_record(spec, cell.row, cell.column, float("nan"), float("nan"), 0, 0, 0, "refused", [],
                                   note=cell.refused))
            continue
        if not cell.runs:
            records.append(_record(spec, cell.row, cell.column, float("nan"), float("nan"), 0, 0, 0, "no data", [],
                                   note=f"the dataset has {cell.no_data} for this expression"))
            continue
        metric = spec.column_metric(cell.column).name
        pooled, per_part, n_ok, failed, missing, frames = cell_values(cell, selection, metric, headline)
        frames_by_cell[(cell.row.label, cell.column)] = frames
        mean, std = _mean_std(pooled)
        p_mean, p_std = _mean_std(per_part)
        status = "ok" if n_ok and not failed and not missing else (
            "failed" if failed and not n_ok else ("not run" if not n_ok and not failed else "partial"))
        records.append(_record(spec, cell.row, cell.column, mean, std, n_ok, failed, missing, status,
                               [r.folder.name for r in cell.runs], partition_mean=p_mean, partition_std=p_std,
                               n_partitions=len(per_part), ci=seed_ci(frames, metric)))
    for row in not_run:
        status = "published only" if row.published_only else "not implemented"
        note = "quoted from its own paper; not run by this project" if row.published_only else ""
        for column in spec.columns:
            records.append(_record(spec, row, column, float("nan"), float("nan"), 0, 0, 0, status, [], note=note))
    # the paper's row order (implemented or not), each row's cells in the spec's column order
    row_order = {r.label: i for i, r in enumerate(spec.rows)}
    column_order = {c: i for i, c in enumerate(spec.columns)}
    df = pd.DataFrame.from_records(records)
    df = df.iloc[np.lexsort((df["column"].map(column_order).to_numpy(), df["row"].map(row_order).to_numpy()))]
    df = df.reset_index(drop=True)
    if not spec.summary:
        return df
    summary = []
    for label, grp in df.groupby("row", sort=False):
        row = next(r for r in spec.rows if r.label == label)
        vals = [grp.loc[grp["column"] == c, "reproduced"].iloc[0] if (grp["column"] == c).any() else float("nan")
                for c in spec.columns]
        complete = all(grp["status"] == "ok") and set(spec.columns) <= set(grp["column"])
        a = avg_corr(vals) if complete else float("nan")
        fz = fisher_z_avg_corr(vals) if complete else float("nan")
        statuses = set(grp["status"])
        status = "ok" if complete else (statuses.pop() if statuses in ({"not implemented"}, {"no data"},
                                                                       {"published only"}) else "incomplete")
        avg_ci = (float("nan"), float("nan"))
        if complete:  # each column's test videos resampled on their own, the per-resample values averaged
            per_column = [seed_bootstrap(frames_by_cell.get((label, c), []), spec.metric, seed=k)
                          for k, c in enumerate(spec.columns)]
            avg_ci = percentile_interval(np.mean(per_column, axis=0))
        summary.append(_record(spec, row, "avg_corr", a, float("nan"), int(grp["n_ok"].min()),
                               int(grp["n_failed"].sum()), int(grp["n_missing"].sum()), status, [], ci=avg_ci))
        summary.append(_record(spec, row, "avg_corr_fisher_z", fz, float("nan"), int(grp["n_ok"].min()),
                               int(grp["n_failed"].sum()), int(grp["n_missing"].sum()), status, [],
                               published=float("nan")))
        if "pooled" in spec.summary:
            summary.append(_pooled_record(spec, row, grp, frames_by_cell, complete, status))
    return pd.concat([df, pd.DataFrame.from_records(summary)], ignore_index=True)


def _pooled_record(spec: "TableSpec", row: TableRow, grp: pd.DataFrame, frames_by_cell: dict, complete: bool,
                   status: str) -> dict:
    """The row's ``pooled`` summary: the metric over the test videos of every column pooled (Table 2:
    rho x 100 over all five expressions' test videos), per seed, mean over seeds, with its bootstrap
    CI (subjects as clusters). Not in the paper (published NaN)."""
    metric = spec.metric
    per_seed: list[list[pd.DataFrame]] = []
    if complete:
        cols = [frames_by_cell.get((row.label, c), []) for c in spec.columns]
        n_seeds = min((len(f) for f in cols), default=0)
        per_seed = [[f[k].assign(video_id=f[k]["video_id"].astype(str) + "|" + c)
                     for f, c in zip(cols, spec.columns)] for k in range(n_seeds)]
    pooled = [pd.concat(frames, ignore_index=True).sort_values("video_id", kind="stable") for frames in per_seed]
    values = [_metric(f["label"], f["prediction"], metric) for f in pooled]
    mean, std = _mean_std(values)
    return _record(spec, row, "pooled", mean, std, len(pooled), int(grp["n_failed"].sum()),
                   int(grp["n_missing"].sum()), status if complete else status, [], published=float("nan"),
                   ci=seed_ci(pooled, metric) if pooled else (float("nan"), float("nan")))


def _record(spec, row, column, value, std, n_ok, n_failed, n_missing, status, runs, published=None,
            note: str = "", partition_mean: float = float("nan"), partition_std: float = float("nan"),
            n_partitions: int = 0, ci: tuple[float, float] = (float("nan"), float("nan"))) -> dict:
    pub = published_value(spec, row, column) if published is None else published
    diff = value - pub if not (math.isnan(value) or math.isnan(pub)) else float("nan")
    return {
        "row": row.label, "method": row.method, "in_paper": row.in_paper, "column": column,
        "reproduced": value, "std": std, "n_ok": n_ok, "n_failed": n_failed, "n_missing": n_missing,
        "published": pub, "diff": diff,
        "within_tolerance": (abs(diff) <= spec.tolerance) if not math.isnan(diff) else None,
        "status": status, "runs": ";".join(runs), "note": note,
        "partition_mean": partition_mean, "partition_std": partition_std, "n_partitions": n_partitions,
        "ci_low": ci[0], "ci_high": ci[1],
    }


def wide(df: pd.DataFrame, spec: TableSpec) -> pd.DataFrame:
    """The paper's layout: one row per table row, ``<column>`` (reproduced) and
    ``<column>_paper`` side by side, then the summary columns (Table 2: ``avg_corr`` and
    ``avg_corr_paper``, ``avg_corr_fisher_z``). With several partitions per run set
    (cross-validation), ``<column>_folds_mean`` and ``<column>_folds_std`` follow each
    column: the mean and std over the per-partition values."""
    pooled = spec.protocol_obj.pooled
    out = []
    for label, grp in df.groupby("row", sort=False):
        rec = {"row": label}
        for c in [*spec.columns, *spec.summary]:
            r = grp[grp["column"] == c].iloc[0]
            rec[c] = r["reproduced"]
            if c not in ("avg_corr_fisher_z", "pooled"):
                rec[f"{c}_paper"] = r["published"]
            if c in spec.columns or c in ("pooled", "avg_corr"):
                rec[f"{c}_ci_low"], rec[f"{c}_ci_high"] = r["ci_low"], r["ci_high"]
            if pooled and c in spec.columns:
                rec[f"{c}_folds_mean"] = r["partition_mean"]
                rec[f"{c}_folds_std"] = r["partition_std"]
        out.append(rec)
    return pd.DataFrame(out)
