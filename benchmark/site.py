"""The static report site: leaderboards, method cards, run pages and the index across datasets.

Everything is rendered from run records (never from cached metrics) into one output root
(``<output root>/reports/output/``, :mod:`benchmark.paths`), opens from disk without a
server, and is re-rendered by ``qafe-bench report`` whenever runs finish::

    index.html                         every dataset folder (card, content hash, scale) and its pages
    <card>-<hash>-<scale>/
        index.html                     its tables, leaderboard, methods
        table<k>.html / .csv ...       (benchmark.report)
        leaderboard.html / .csv        methods ranked by the protocol's headline metric with its CI
        cells.csv                      every cell per seed: the tidy file for making one's own figures
        methods/<name>.html            method cards (paper, repository and licence, backbone, pretraining,
                                       parameters, GFLOPs per sample at paper size, options where paper and
                                       code differ, weights loaded)
        runs/<run folder>.html         configuration, provenance, learning curves, predictions
        site.json                      what the root index lists

All text goes through jinja2 with autoescaping (a method or option name holding HTML shows
as text); figures are matplotlib SVG with text drawn as paths (:mod:`benchmark.plots`).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data.prepared import atomic_write_text
from .runs import read_result

#: Cache of :func:`method_costs` results, keyed by method name and resolved options.
_COSTS: dict[str, dict] = {}


def method_costs(method_cls, options: dict | None = None) -> dict:
    """Parameters and forward GFLOPs per sample of a method at the paper's geometry (PFED5: one
    80-frame clip; batch 1), counted with ``torch.utils.flop_counter.FlopCounterMode``.

    The model is built and run on PyTorch's ``meta`` device (shapes only, no arithmetic, a
    fraction of a second even for 356 GFLOP); a method whose forward needs real values
    (``.item()``, autograd checks) is measured on the CPU instead.

    Returns:
        ``{"params": int, "trainable": int, "gflops": float, "device": "meta" | "cpu"}``, or
        ``{"error": str}`` when neither works.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .api import random_batch

    key = f"{method_cls.name}:{json.dumps(options or {}, sort_keys=True, default=str)}"
    if key in _COSTS:
        return _COSTS[key]
    m = method_cls(options or {})
    out: dict[str, Any] = {}
    for device in ("meta", "cpu"):
        try:
            with torch.device(device):
                torch.manual_seed(0)
                model = m.build_model()
                batch = random_batch(m, 1)
            model.eval()
            try:
                m.on_train_start(model, np.array([0.0, 1.0, 2.0, 3.0, 4.0], np.float32))
            except Exception:  # noqa: BLE001 - e.g. group building on meta tensors; irrelevant to cost
                pass
            counter = FlopCounterMode(display=False)
            with counter, torch.no_grad():
                m.predict(model, batch)
            out = {"params": int(sum(p.numel() for p in model.parameters())),
                   "trainable": int(sum(p.numel() for p in model.parameters() if p.requires_grad)),
                   "gflops": counter.get_total_flops() / 1e9, "device": device}
            break
        except Exception as exc:  # noqa: BLE001 - fall back to the CPU, then give up with the reason
            out = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    _COSTS[key] = out
    return out


def method_card(method_cls, *, costs: bool = True) -> dict:
    """What a method page shows: identity, paper and code, backbone, pretraining, costs, and every
    option with its paper value and (where they differ) the released code's value."""
    options = []
    for name, opt in method_cls.options_spec.items():
        options.append({"name": name, "paper": opt.default, "code": opt.code_value,
                        "differs": opt.code_value is not None and opt.code_value != opt.default,
                        "choices": list(opt.choices) if opt.choices else None, "help": opt.help})
    return {
        "name": method_cls.name, "display_name": method_cls.display_name or method_cls.name,
        "reference": method_cls.reference, "repository": method_cls.repository, "licence": method_cls.licence,
        "backbone": method_cls.backbone, "pretraining": method_cls.pretraining,
        "pretrained_files": dict(method_cls.pretrained_files), "options": options,
        "costs": method_costs(method_cls) if costs else {},
        "exemplars": method_cls.exemplars is not None,
        "weights_assumptions": [{"role": a.role, "file": method_cls.pretrained_files.get(a.role, a.role),
                                 "assumes": a.assumes, "policy": a.policy, "adaptation": a.adaptation,
                                 "why": a.why} for a in method_cls.weights_assumptions],
    }


def _env():
    from .report import _env as env

    return env


def _run_rows(folder: Path) -> dict:
    res = read_result(folder) or {}
    cfg = {}
    if (folder / "config.json").is_file():
        try:
            cfg = json.loads((folder / "config.json").read_text())
        except json.JSONDecodeError:
            cfg = {}
    return {"folder": folder, "name": folder.name, "result": res, "config": cfg}


def render_run_page(out_dir: Path, folder: Path, *, label_name: str = "label") -> Path:
    """``out_dir/runs/<run folder>.html``: status, configuration, provenance, per-epoch history
    with its learning curves, and the test predictions (table and predicted-vs-true plot)."""
    from .plots import learning_curves, scatter_predicted_vs_true

    info = _run_rows(folder)
    res = info["result"]
    preds = pd.read_csv(folder / "predictions.csv") if (folder / "predictions.csv").is_file() else None
    history = res.get("epochs") or []
    curves = learning_curves(history) if history else ""
    scatter = ""
    if preds is not None and len(preds):
        scatter = scatter_predicted_vs_true({str(preds["expression"].iloc[0]): (preds["label"], preds["prediction"])},
                                            label=label_name)
    html = _env().get_template("run.html.j2").render(
        run=info, result=res, config_json=json.dumps(info["config"], indent=2, default=str),
        provenance=res.get("provenance") or {}, history=history, curves=curves, scatter=scatter,
        predictions=preds.to_dict("records") if preds is not None else [],
        generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = out_dir / "runs" / f"{folder.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path


def render_method_page(out_dir: Path, method_cls, runs: list[Path], *, costs: bool = True) -> Path:
    """``out_dir/methods/<name>.html``: the method card and the runs of this report that used it,
    with the pretrained files each loaded."""
    card = method_card(method_cls, costs=costs)
    run_rows = []
    for folder in runs:
        info = _run_rows(folder)
        run_rows.append({"name": folder.name, "status": info["result"].get("status", "not run"),
                         "pretrained": info["result"].get("pretrained"),
                         "options": info["config"].get("options")})
    html = _env().get_template("method.html.j2").render(card=card, runs=run_rows,
                                                         generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = out_dir / "methods" / f"{method_cls.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, html)
    return path


def leaderboard_frame(spec, table: pd.DataFrame, cells) -> pd.DataFrame:
    """The leaderboard of a table built with an honest selection: one line per table row with the
    protocol's headline (PFED5 tables: Avg. Corr. of rho x 100 with its CI; UNBC: pooled MAE with
    its CI), the pooled metric where the table has one, the published value, the runs and seeds
    behind it; then the spec's ``leaderboard_published`` rows (later work on the same protocol,
    ``published, not run here``). Sorted by the headline, best first, rows without a number last."""
    protocol = spec.protocol_obj
    headline = protocol.headline
    column = "avg_corr" if "avg_corr" in spec.summary else headline.name
    runs_by_row: dict[str, list] = {}
    for c in cells:
        runs_by_row.setdefault(c.row.label, []).extend(c.runs)
    rows = []
    for label, grp in table.groupby("row", sort=False):
        line = grp[grp["column"] == column]
        if line.empty:
            continue
        r = line.iloc[0]
        runs = list(dict.fromkeys(x.folder.name for x in runs_by_row.get(label, [])))
        pooled = grp[grp["column"] == "pooled"]
        rows.append({
            "row": label, "method": r["method"] if isinstance(r["method"], str) else None,
            "kind": "published, not run here" if r["status"] == "published only" else (
                "not run" if r["status"] == "not implemented" else (
                    "refused without its released file" if (grp["status"] == "refused").any() else "run here")),
            "value": r["reproduced"], "ci_low": r["ci_low"], "ci_high": r["ci_high"],
            "pooled": pooled.iloc[0]["reproduced"] if len(pooled) else float("nan"),
            "pooled_ci_low": pooled.iloc[0]["ci_low"] if len(pooled) else float("nan"),
            "pooled_ci_high": pooled.iloc[0]["ci_high"] if len(pooled) else float("nan"),
            "published": r["published"], "n_runs": len(runs), "n_seeds": int(r["n_ok"]),
            "status": r["status"], "runs": runs,
            "source": (spec.source.split(" (")[0] if spec.source else "QAFE-Net paper") if r["in_paper"] else "this project",
        })
    known = {x["row"] for x in rows}
    for extra in spec_leaderboard_published(spec):
        if extra["row"] in known:
            continue
        rows.append({**extra, "method": None, "kind": "published, not run here", "value": float("nan"),
                     "ci_low": float("nan"), "ci_high": float("nan"), "pooled": float("nan"),
                     "pooled_ci_low": float("nan"), "pooled_ci_high": float("nan"), "n_runs": 0, "n_seeds": 0,
                     "status": "published only", "runs": []})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    sign = -1.0 if headline.higher_is_better or column == "avg_corr" else 1.0
    df["_key"] = [sign * v if isinstance(v, float) and math.isfinite(v) else math.inf for v in df["value"]]
    df = df.sort_values(["_key"], kind="stable").drop(columns="_key").reset_index(drop=True)
    df.insert(0, "rank", [i + 1 if math.isfinite(v) else None for i, v in enumerate(df["value"])])
    return df


def spec_leaderboard_published(spec) -> list[dict]:
    """The spec's ``leaderboard_published`` rows: ``{"row", "published", "source"}`` read from the
    named published CSV (``file``, ``key`` column, ``value`` column, rows in ``skip`` left out)."""
    raw = getattr(spec, "leaderboard", None) or {}
    if not raw.get("published"):
        return []
    from .tables import read_published
    from .paths import published_dir

    df = read_published(published_dir() / raw["published"])
    skip = set(raw.get("skip", []))
    out = []
    for rec in df.to_dict("records"):
        name = str(rec[raw.get("key", "method")])
        if name in skip:
            continue
        out.append({"row": name, "published": float(rec[raw.get("value", "avg_corr")]),
                    "source": str(rec.get("source", raw["published"]))})
    return out


def render_leaderboard(out_dir: Path, spec, table: pd.DataFrame, cells, *, dataset_info: dict,
                       selection: str) -> dict[str, Path]:
    """``leaderboard.html`` (sortable by any column in the browser, no server) and ``leaderboard.csv``."""
    from .plots import bars_with_ci

    df = leaderboard_frame(spec, table, cells)
    protocol = spec.protocol_obj
    column = "avg_corr" if "avg_corr" in spec.summary else protocol.headline.name
    label = "Avg. Corr. (rho x 100)" if column == "avg_corr" else protocol.headline.label
    paths = {"csv": out_dir / "leaderboard.csv", "html": out_dir / "leaderboard.html"}
    atomic_write_text(paths["csv"], df.assign(runs=df["runs"].map(";".join) if len(df) else []).to_csv(index=False))
    ran = df[df["kind"] == "run here"] if len(df) else df
    chart = bars_with_ci(list(ran["row"]), list(ran["value"]), list(ran["ci_low"]), list(ran["ci_high"]),
                         ylabel=label, published=list(ran["published"])) if len(ran) else ""
    html = _env().get_template("leaderboard.html.j2").render(
        spec=spec, rows=df.to_dict("records"), label=label, selection=selection, dataset=dataset_info,
        higher_is_better=(column == "avg_corr" or protocol.headline.higher_is_better), chart=chart,
        has_pooled="pooled" in spec.summary, generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    atomic_write_text(paths["html"], html)
    return paths


def tidy_cells(spec, cells, selection: str, dataset_info: dict) -> pd.DataFrame:
    """Every cell per seed, one row each: ``table, row, method, variant (options), dataset,
    content_hash, protocol, column (expression or metric), partition (the folds pooled), seed,
    selection, metric, value, ci_low, ci_high (of the cell over seeds), published, runs``."""
    from .tables import _metric, cell_values, published_value, seed_ci, selected_predictions

    headline = spec.protocol_obj.headline
    out = []
    for cell in cells:
        if not cell.runs:
            continue
        metric = spec.column_metric(cell.column).name
        by_seed: dict = {}
        for run in cell.runs:
            by_seed.setdefault(run.config["seed"], []).append(run)
        first = len(out)
        for seed, runs in sorted(by_seed.items()):
            if any((read_result(r.folder) or {}).get("status") != "ok" for r in runs):
                out.append({"seed": seed, "value": float("nan"), "runs": ";".join(r.folder.name for r in runs),
                            "status": "not finished or failed", "_cell": cell, "_metric": metric})
                continue
            frames = [selected_predictions(r.folder, selection, headline) for r in runs]
            pool = pd.concat(frames, ignore_index=True)
            out.append({"seed": seed, "value": _metric(pool["label"], pool["prediction"], metric),
                        "runs": ";".join(r.folder.name for r in runs), "status": "ok", "_cell": cell,
                        "_metric": metric})
        # the cell's 95% bootstrap CI over its finished seeds, computed as the table computes it
        low, high = seed_ci(cell_values(cell, selection, metric, headline)[-1], metric)
        for rec in out[first:]:
            rec.update(ci_low=low, ci_high=high)
    rows = []
    for rec in out:
        cell = rec.pop("_cell")
        metric = rec.pop("_metric")
        rows.append({"table": spec.id, "row": cell.row.label, "method": cell.row.method,
                     "variant": json.dumps(cell.row.options, sort_keys=True), "dataset": dataset_info.get("card"),
                     "content_hash": dataset_info.get("content_hash"), "protocol": spec.protocol,
                     "column": cell.column, "partitions": len({r.config.get("split") for r in cell.runs}),
                     "selection": selection, "metric": metric,
                     "published": published_value(spec, cell.row, cell.column), **rec})
    df = pd.DataFrame(rows)
    return df


def render_dataset_site(out_dir: Path, rendered: list[dict], leaderboard: dict | None, methods: dict,
                        runs: list[Path], dataset_info: dict, scale: str, *, costs: bool = True) -> dict[str, Path]:
    """The dataset folder's method and run pages, its ``index.html`` and ``site.json``."""
    from .registry import get_method

    method_pages = {}
    for name, folders in sorted(methods.items()):
        folders = list(folders.values()) if isinstance(folders, dict) else list(folders)
        method_pages[name] = render_method_page(out_dir, get_method(name), folders, costs=costs).name
    for folder in runs:
        if (folder / "result.json").is_file():
            render_run_page(out_dir, folder, label_name=str(dataset_info.get("label_name", "label")))
    # merge with what earlier commands rendered into this folder (re-rendering one table keeps the others)
    old = {}
    if (out_dir / "site.json").is_file():
        try:
            old = json.loads((out_dir / "site.json").read_text())
        except json.JSONDecodeError:
            old = {}
    ids = {t["id"] for t in rendered}
    kept = [t for t in old.get("tables", []) if t["id"] not in ids and (out_dir / t["html"]).is_file()]
    from .tables import available_tables

    order = {t: i for i, t in enumerate(available_tables())}
    tables = sorted(kept + list(rendered), key=lambda t: (order.get(t["id"], len(order)), t["id"]))
    if leaderboard is None and old.get("leaderboard") and (out_dir / old["leaderboard"]["html"]).is_file():
        leaderboard = old["leaderboard"]
    method_pages = {**{k: v for k, v in (old.get("methods") or {}).items() if (out_dir / "methods" / v).is_file()},
                    **method_pages}
    rendered = tables
    meta = {"card": dataset_info.get("card"), "content_hash": dataset_info.get("content_hash"), "scale": scale,
            "tables": rendered, "leaderboard": leaderboard, "methods": dict(sorted(method_pages.items())),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    atomic_write_text(out_dir / "site.json", json.dumps(meta, indent=2, default=str))
    html = _env().get_template("index.html.j2").render(tables=rendered, dataset=dataset_info, scale=scale,
                                                        leaderboard=leaderboard, methods=meta["methods"],
                                                        generated=meta["generated"])
    atomic_write_text(out_dir / "index.html", html)
    return {"index": out_dir / "index.html", "site": out_dir / "site.json"}


def render_site_index(root: Path) -> Path:
    """``root/index.html``: every dataset folder below ``root`` that holds a ``site.json``."""
    entries = []
    for meta_path in sorted(Path(root).glob("*/site.json")):
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        entries.append({**meta, "folder": meta_path.parent.name})
    html = _env().get_template("site_index.html.j2").render(entries=entries,
                                                             generated=time.strftime("%Y-%m-%d %H:%M:%S"))
    path = Path(root) / "index.html"
    atomic_write_text(path, html)
    return path


__all__ = ["leaderboard_frame", "method_card", "method_costs", "render_dataset_site", "render_leaderboard",
           "render_method_page", "render_run_page", "render_site_index", "tidy_cells"]
