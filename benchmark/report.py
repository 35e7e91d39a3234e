"""Report rendering: CSV files and a static HTML page per table (jinja2, autoescaped).

Output folder ``<output root>/reports/output/<card>-<content hash[:8]>-<scale>/`` (or ``--out``;
the output root is the current directory unless ``$QAFE_BENCH_OUTPUT`` or ``--output-root`` says
otherwise, :mod:`benchmark.paths`):

    index.html                    links to every rendered table
    <table>.html                  reproduced beside published, difference, tolerance marks,
                                  both model-selection rules, method options that follow
                                  the released code instead of the paper, provenance
    <table>.csv                   the paper's layout with the honest model selection (final epoch, or
                                  best validation epoch with --selection validation)
    <table>_test_selected.csv     the same with the official rule (best test epoch), as published
    <table>_long.csv              every cell with std, seed counts, status and run folders
    table1.html / .csv            dataset statistics beside the published Table 1 (no runs)
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import jinja2
import pandas as pd

from .api import Method
from .data.prepared import atomic_write_text
from .runs import read_result
from .tables import SELECTIONS, CellRuns, TableSpec, audit_published, build_table, wide

_env = jinja2.Environment(
    loader=jinja2.PackageLoader("benchmark", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
    undefined=jinja2.StrictUndefined,
)


def _fmt(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


_env.filters["fmt"] = _fmt


def output_dir_for(card: str, content_hash: str, scale: str, base: Path | None = None) -> Path:
    """Default report folder for a dataset and scale."""
    from .paths import reports_output_dir

    return (base or reports_output_dir()) / f"{card}-{content_hash[:8]}-{scale}"


def _row_details(spec: TableSpec, cells: list[CellRuns]) -> list[dict]:
    """Per table row: the method's resolved options, those that follow the released code and
    those a scale set (:attr:`benchmark.api.Method.scale_options`)."""
    out = []
    seen = set()
    for cell in cells:
        if cell.row.label in seen or not cell.runs:
            continue
        seen.add(cell.row.label)
        run = cell.runs[0]
        cls: type[Method] = type(run.method)
        deviations = []
        scale_set = cls.scale_options.get(run.scale.name, {})
        for k, v in run.method.options.items():
            opt = cls.options_spec[k]
            if k in scale_set and v == scale_set[k] and v != opt.default:
                deviations.append({
                    "option": k, "value": v, "paper": opt.default,
                    "code": opt.code_value if opt.code_value is not None else opt.default,
                    "follows": f"{run.scale.name} scale", "help": opt.help,
                })
            elif opt.code_value is not None and opt.code_value != opt.default:
                deviations.append({
                    "option": k, "value": v, "paper": opt.default, "code": opt.code_value,
                    "follows": "released code" if v == opt.code_value else ("paper" if v == opt.default else "neither"),
                    "help": opt.help,
                })
        for rec in run.config.get("from_scratch") or []:
            changed = {**rec.get("options", {}), **rec.get("training", {})}
            deviations.append({
                "option": ", ".join(changed) or rec["role"],
                "value": ", ".join(f"{k}={v}" for k, v in changed.items()),
                "paper": "; ".join(f"{k}={v}" for k, v in rec.get("options_before", {}).items()) or "-",
                "code": f"assumes {rec['file']}",
                "follows": f"from-scratch adaptation: {rec['adaptation']} (no {rec['file']}: {rec['assumes']})",
                "help": rec["assumes"],
            })
        res_pretrained = None
        for r in cell.runs:
            if (r.folder / "result.json").is_file():
                res_pretrained = (read_result(r.folder) or {}).get("pretrained")
                break
        out.append({"row": cell.row.label, "method": cls.name, "display": cls.display_name,
                    "reference": cls.reference, "options": run.method.options, "deviations": deviations,
                    "pretrained": res_pretrained, "from_scratch": run.config.get("from_scratch") or []})
    return out


def render_table(spec: TableSpec, cells: list[CellRuns], not_run, out_dir: Path, *, scale: str,
                 seeds: list[int], dataset_info: dict, selection: str = "final") -> dict[str, Path]:
    """Write the CSV files and the HTML page of one table; return their paths.

    ``selection`` is the honest model selection the headline uses (``final``, or ``validation``
    when the runs held out a validation split): ``<id>.csv`` carries it; ``<id>_test_selected.csv``
    the official rule (best test epoch), labelled as such; the page shows both side by side.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    shown = [selection, "test_selected"] + (["final"] if selection != "final" else [])
    tables = {sel: build_table(spec, cells, not_run, sel) for sel in shown}
    paths = {}
    long = pd.concat([t.assign(selection=sel) for sel, t in tables.items()], ignore_index=True)
    paths["long_csv"] = out_dir / f"{spec.id}_long.csv"
    atomic_write_text(paths["long_csv"], long.to_csv(index=False))
    paths["csv"] = out_dir / f"{spec.id}.csv"
    atomic_write_text(paths["csv"], wide(tables[selection], spec).to_csv(index=False))
    paths["test_selected_csv"] = out_dir / f"{spec.id}_test_selected.csv"
    atomic_write_text(paths["test_selected_csv"], wide(tables["test_selected"], spec).to_csv(index=False))
    if selection != "final":
        paths["final_csv"] = out_dir / f"{spec.id}_final.csv"
        atomic_write_text(paths["final_csv"], wide(tables["final"], spec).to_csv(index=False))

    views = []
    for sel, df in tables.items():
        rows = []
        for label, grp in df.groupby("row", sort=False):
            cells_by_col = {r["column"]: r for r in grp.to_dict("records")}
            rows.append({"label": label, "in_paper": bool(grp["in_paper"].iloc[0]), "cells": cells_by_col})
        views.append({"selection": sel, "description": SELECTIONS[sel], "rows": rows})
    failures = []
    for cell in cells:
        for run in cell.runs:
            res = read_result(run.folder)
            if res is not None and res.get("status") == "failed":
                failures.append({"run": run.folder.name, "type": res["error"]["type"],
                                 "message": res["error"]["message"]})
    protocol = spec.protocol_obj
    labels = {m.name: m.label + (" \u2191" if m.higher_is_better else " \u2193") for m in protocol.metrics}
    plots = _table_plots(spec, tables[selection], cells, selection)
    html = _env.get_template("table.html.j2").render(
        spec=spec, views=views, columns=spec.columns, details=_row_details(spec, cells),
        failures=failures, scale=scale, seeds=seeds, dataset=dataset_info,
        generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        comparable=(scale == "paper" and dataset_info.get("card") == spec.comparable_card),
        not_run=[r.label for r in not_run if not r.published_only],
        protocol=protocol, pooled=protocol.pooled, has_avg="avg_corr" in spec.summary,
        has_pooled="pooled" in spec.summary,
        metric_labels=labels,
        column_labels={c: (labels[c] if spec.column_kind == "metric" else c.replace("_", " ")) for c in spec.columns},
        tolerance_unit=("rho \u00d7 100 points" if spec.columns and spec.column_metric(spec.columns[0]).name
                        == "rho_x100" else f"label units ({dataset_info.get('label_name', 'label')})"),
        audit=audit_published(spec), plots=plots,
    )
    paths["html"] = out_dir / f"{spec.id}.html"
    atomic_write_text(paths["html"], html)
    return paths


def _table_plots(spec: TableSpec, table: pd.DataFrame, cells: list[CellRuns], selection: str) -> list[dict]:
    """The table page's figures: the summary per row with its 95% CI and the published value
    (Avg. Corr. for expression tables, the headline metric for metric tables), published vs
    reproduced per cell, and predicted vs true per column for the paper's main method row."""
    from .plots import bars_with_ci, published_vs_reproduced, scatter_predicted_vs_true

    out = []
    summary = "avg_corr" if "avg_corr" in spec.summary else spec.protocol_obj.headline.name
    lines = table[(table["column"] == summary) & table["status"].isin(["ok", "partial"])]
    if len(lines):
        out.append({"svg": bars_with_ci(list(lines["row"]), list(lines["reproduced"]), list(lines["ci_low"]),
                                        list(lines["ci_high"]), ylabel=summary.replace("_", " "),
                                        published=list(lines["published"])),
                    "caption": f"{summary.replace('_', ' ')} per row ({selection}) with its 95% bootstrap CI; "
                               "diamonds: the paper's value"})
    cols = table[table["column"].isin(spec.columns) & table["reproduced"].notna() & table["published"].notna()]
    if len(cols):
        unit = "rho x 100" if spec.column_kind == "expression" else "label units"
        out.append({"svg": published_vs_reproduced(list(zip(cols["row"], cols["published"], cols["reproduced"])),
                                                   unit=unit),
                    "caption": "every cell: published (x) vs reproduced (y); the dashed line is perfect reproduction"})
    main = next((c.row.label for c in cells if c.row.in_paper and c.runs and c.row.method == "qafe_net"), None)
    if main is not None and spec.column_kind == "expression":
        from .tables import selected_predictions

        panels = {}
        for c in cells:
            if c.row.label != main or not c.runs or (read_result(c.runs[0].folder) or {}).get("status") != "ok":
                continue
            df = selected_predictions(c.runs[0].folder, selection, spec.protocol_obj.headline)
            panels[c.column] = (df["label"], df["prediction"])
        if panels:
            out.append({"svg": scatter_predicted_vs_true(panels),
                        "caption": f"{main}: predicted vs true per expression ({selection}; first seed; true labels "
                                   "jittered)"})
    return out


def render_statistics(spec, stats: pd.DataFrame, comparison: pd.DataFrame, out_dir: Path, *, scale: str,
                      dataset_info: dict) -> dict[str, Path]:
    """Write a statistics table (paper Table 1): ``<id>.csv`` (ours in the published layout, with a
    ``<column>_paper`` beside each column), ``<id>_long.csv`` (:func:`benchmark.statistics.compare_statistics`)
    and ``<id>.html``; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    columns = [c for c in stats.columns if c not in ("split", "expression")]
    pub = spec.published.set_index(["split", "expression"])
    wide_rows = []
    for rec in stats.to_dict("records"):
        key = (rec["split"], rec["expression"])
        row = {"split": key[0], "expression": key[1]}
        for c in columns:
            row[c] = rec[c]
            row[f"{c}_paper"] = pub.loc[key, c] if key in pub.index and c in pub.columns else float("nan")
        wide_rows.append(row)
    paths = {"csv": out_dir / f"{spec.id}.csv", "long_csv": out_dir / f"{spec.id}_long.csv",
             "html": out_dir / f"{spec.id}.html"}
    atomic_write_text(paths["csv"], pd.DataFrame(wide_rows).to_csv(index=False))
    atomic_write_text(paths["long_csv"], comparison.to_csv(index=False))
    rows = []
    for (split, expression), grp in comparison.groupby(["split", "expression"], sort=False):
        cells = {}
        for r in grp.to_dict("records"):
            v = r["reproduced"]
            shown = "" if v != v else (f"{v:.1f}" if r["column"] == "avg_len" else f"{v:.0f}")
            cells[r["column"]] = {"shown": shown, "published": r["published"], "equal": r["equal"]}
        rows.append({"split": split, "expression": expression, "cells": cells})
    html = _env.get_template("statistics.html.j2").render(
        spec=spec, rows=rows, columns=columns, dataset=dataset_info, generated=time.strftime("%Y-%m-%d %H:%M:%S"),
        comparable=dataset_info.get("card") == spec.comparable_card)
    atomic_write_text(paths["html"], html)
    return paths


def render_index(out_dir: Path, tables: list[dict], dataset_info: dict, scale: str) -> Path:
    """Write ``index.html`` linking every rendered table (``tables``: id, title, html name)."""
    html = _env.get_template("index.html.j2").render(tables=tables, dataset=dataset_info, scale=scale,
                                                      generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = out_dir / "index.html"
    atomic_write_text(path, html)
    return path
