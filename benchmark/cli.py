"""The ``qafe-bench`` command line (argparse).

    qafe-bench synth      --out DIR [--preset tiny|paper] [--seed N]
    qafe-bench prepare    pfed5|unbc|folder --raw DIR --out DIR [--backend mediapipe|insightface] ...
    qafe-bench heatmaps   --dataset DIR [--method qafe_net] [--scale tiny|paper]   (heatmap cache)
    qafe-bench run        --method M --dataset DIR|synthetic --expression E [--split fold1] [--set k=v] [--train k=v]
    qafe-bench reproduce  table1..table10|all [--dataset synthetic [synthetic-unbc]|DIR ...] [--scale tiny|paper] [--seeds 0 1 2]
    qafe-bench report     table1..table10|all [--dataset ...]      (re-render from run records, no training)
    qafe-bench score      VIDEO --checkpoint RUN/model.pt --expression smile
    qafe-bench methods | tables | env | perf

Errors that qafe-bench raises on purpose (bad data, unknown names) are printed
as one line without a traceback and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from .errors import QafeBenchError



def _kv(items: list[str] | None, flag: str) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise QafeBenchError(f"{flag} expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


#: ``--dataset`` names of the generated datasets -> their generator (``module:function``).
SYNTHETIC_DATASETS = {
    "synthetic": "benchmark.data.synthetic:generate_synthetic",            # PFED5-like (pfed5 protocol)
    "synthetic-unbc": "benchmark.data.synthetic_unbc:generate_synthetic_unbc",  # UNBC-like (unbc_5fold)
}


def _dataset_path(args, name: str | None = None) -> Path:
    """Resolve ``--dataset`` (or ``name``): a prepared folder, or a generated dataset of
    :data:`SYNTHETIC_DATASETS` (generated once under ``<runs-dir>/data``, then reused)."""
    name = args.dataset if name is None else name
    if name not in SYNTHETIC_DATASETS:
        return Path(name)
    import importlib

    from .scales import get_scale

    module, _, func = SYNTHETIC_DATASETS[name].partition(":")
    preset = get_scale(args.scale).synthetic_preset
    out = Path(args.runs_dir) / "data" / f"{name}-{preset}-seed{args.data_seed}"
    if not (out / "manifest.json").is_file():
        print(f"generating {name} data ({preset}, seed {args.data_seed}) into {out}")
        getattr(importlib.import_module(module), func)(out, scale=preset, seed=args.data_seed)
    return out


def _weights(args) -> dict:
    from .registry import available, get_method
    from .runs import find_weights

    return {name: find_weights(get_method(name), getattr(args, "weights", None)) for name in available()}


# ------------------------------------------------------------------- commands
def cmd_methods(args) -> int:
    from .registry import available, get_method

    for name, origin in available().items():
        try:
            cls = get_method(name)
            print(f"{name:14s} {cls.display_name:28s} {origin:10s} {cls.reference}")
        except QafeBenchError as exc:
            print(f"{name:14s} (cannot load: {exc})")
    return 0


def cmd_tables(args) -> int:
    from .tables import available_tables, load_spec

    for t in available_tables():
        print(f"{t:10s} {load_spec(t).title}")
    return 0


def cmd_env(args) -> int:
    """Print the provenance a run record stores (package versions, git commit, device, threads)."""
    import json

    import torch

    from .engine import default_device, provenance

    device = torch.device(args.device or default_device())
    info = provenance(device)
    info["cuda_available"] = torch.cuda.is_available()
    info["cpu_count"] = __import__("os").cpu_count()
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_perf(args) -> int:
    """Print one line per performance stage: ours, the baseline measured in the same run, the ratio."""
    from .perf import STAGES, format_line

    print(f"median of {args.repeats} repeats; ratios are baseline time / our time (this machine is shared: "
          "compare ratios, not absolute numbers)")
    kwargs = {"heatmaps": {"repeats": args.repeats}, "loading": {"repeats": args.repeats},
              "prepare": {}, "train_step": {"repeats": max(1, args.repeats // 2), "peak_gflops": args.peak_gflops}}
    for name in args.stages:
        for row in STAGES[name](**kwargs[name]):
            print(format_line(row), flush=True)
    return 0


def cmd_synth(args) -> int:
    from .data.synthetic import generate_synthetic

    manifest = generate_synthetic(args.out, scale=args.preset, seed=args.seed)
    c = manifest["counts"]
    print(f"wrote {c['videos']} videos ({c['frames']} frames) to {args.out}")
    return 0


def cmd_prepare(args) -> int:
    from .data.prepare import prepare_dataset

    manifest = prepare_dataset(
        args.raw, args.out, layout=args.layout,
        card=args.card or ("unbc_mcmaster" if args.layout == "unbc" else "pfed5"),
        backend=args.backend, labels_csv=args.labels, crop_size=args.crop_size, frame_format=args.frame_format,
        crop_mode=args.crop_mode, progress=not args.quiet,
        **({"backend_options": {"model_dir": args.insightface_dir}} if args.insightface_dir else {}),
    )
    c = manifest["counts"]
    print(f"prepared {c['videos']} videos ({c['frames']} frames, {c['frames_without_face']} without a face, "
          f"{c['failed_videos']} failed) into {args.out}")
    for name, info in (manifest.get("landmark_sources") or {}).items():
        if "videos_without" in info:
            print(f"  landmark source {name}: {info['videos']} video(s) with points, "
                  f"{len(info['videos_without'])} without, {info['frames_without']} frame(s) without")
    for f in manifest.get("failed", []):
        print(f"  FAILED {f['source']}: {f['error']}", file=sys.stderr)
    return 1 if c["failed_videos"] else 0


def cmd_heatmaps(args) -> int:
    """Precompute the landmark heatmap volumes a method reads (``benchmark.data.heatmaps`` cache).

    The mode, sigma, render size and resize are the ones a run of ``--method`` at ``--scale`` asks
    the protocol for, so the cache is the one its runs then read (identical arrays, no rendering),
    stored at the size the protocol crops from (64 px for QAFE-Net: about 3 GB for PFED5).
    """
    from .cards import load_card
    from .data.heatmaps import write_heatmap_cache
    from .data.prepared import PreparedDataset
    from .errors import ConfigError
    from .registry import get_method
    from .runs import build_method
    from .protocols import get_protocol
    from .scales import get_scale

    dataset = PreparedDataset(_dataset_path(args))
    card = load_card(dataset.card_name)
    cls = get_method(args.method)
    method, clip, _ = build_method(cls, get_scale(args.scale), _kv(args.set, "--set"), {}, card.label_range,
                                   args.clip_len or get_protocol(card.protocol).clip_len)
    spec = method.input_spec()
    if not spec.heatmap:
        raise ConfigError(f"method {cls.name!r} reads no landmark heatmaps; nothing to precompute")
    folder = write_heatmap_cache(dataset, mode=spec.heatmap_mode, sigma=spec.heatmap_sigma, size=clip.heatmap_render,
                                 resize=clip.heatmap_resize, overwrite=args.overwrite, progress=not args.quiet)
    print(f"heatmap volumes ({spec.heatmap_mode}, sigma {spec.heatmap_sigma:g}, drawn at {clip.heatmap_render} px, "
          f"stored at {clip.heatmap_resize} px) in {folder}")
    return 0


def _execute_runs(args, runs: list) -> list[dict]:
    """Train ``runs`` (resolved) through the executor chosen by ``--executor`` (tasks carry only
    their RunSpec; see :mod:`benchmark.executors`); returns each task's outcome."""
    from .executors import make_executor, slurm_parameters, task_for

    slurm = None
    if args.executor == "slurm":
        slurm = slurm_parameters(args.executor_config, partition=args.slurm_partition, gpus=args.slurm_gpus,
                                 cpus=args.slurm_cpus, mem_gb=args.slurm_mem_gb, time_min=args.slurm_time,
                                 account=args.slurm_account, qos=args.slurm_qos,
                                 array_parallelism=args.slurm_array_parallelism)
    executor = make_executor(args.executor, jobs=args.jobs, runs_dir=args.runs_dir, progress=not args.quiet,
                             slurm=slurm, cluster=args.slurm_cluster, wait=args.wait)
    tasks = [task_for(r, args.runs_dir, device=args.device, retry_failed=args.retry_failed) for r in runs]
    return executor.run(tasks)


def cmd_run(args) -> int:
    from .registry import get_method
    from .runs import RunSpec, find_weights, read_result, resolve

    dataset = _dataset_path(args)
    weights = find_weights(get_method(args.method), args.weights)
    run = resolve(RunSpec(method=args.method, dataset=dataset, expression=args.expression, seed=args.seed,
                          scale=args.scale, options=_kv(args.set, "--set"), training=_kv(args.train, "--train"),
                          weights=weights, control=args.control, split=args.split, clip_len=args.clip_len),
                  args.runs_dir)
    print(f"run {run.folder}")
    for rec in run.config.get("from_scratch", []):
        print(f"from scratch (no {rec['file']}): {rec['adaptation']} "
              f"[{', '.join(f'{k}={v}' for k, v in {**rec['options'], **rec['training']}.items()) or 'asked for'}; "
              "recorded in result.json and shown as a deviation]")
    outcome = _execute_runs(args, [run])[0]
    if outcome["status"] in ("submitted", "running"):
        print(f"run {outcome['status']}" + (f" (job {outcome['job_id']})" if outcome.get("job_id") else ""))
        return 0
    res = read_result(run.folder) or outcome
    if res["status"] != "ok":
        print(f"run failed: {res.get('error', {}).get('message', res['status'])}", file=sys.stderr)
        return 1
    m = res["metrics"]
    headline = run.protocol.headline.name
    others = ", ".join(f"{k} {m['final'][k]:.3f}" for k in ("rho_x100", "mae", "rmse") if k != headline)
    print(f"{headline} final {m['final'][headline]:.3f}, test-selected "
          f"{m['test_selected'].get(headline, float('nan')):.3f} (epoch {m['test_selected'].get('epoch')}); "
          f"final {others}")
    return 0


def _select_rows(spec, labels: list[str] | None):
    """The spec with only the rows named in ``labels`` (``--rows``), in the spec's order.

    Raises:
        ConfigError: a label the table does not have (listing its rows).
    """
    if not labels:
        return spec
    import dataclasses

    from .errors import ConfigError

    known = [r.label for r in spec.rows]
    unknown = [lab for lab in labels if lab not in known]
    if unknown:
        raise ConfigError(f"{spec.id} has no row {unknown[0]!r}; its rows: {'; '.join(known)}")
    return dataclasses.replace(spec, rows=[r for r in spec.rows if r.label in labels])


@dataclass
class _Dataset:
    """One ``--dataset`` of ``reproduce`` / ``report``: its folder, card and report facts."""

    name: str
    path: Path
    card: object
    info: dict
    out_dir: Path


def _open_datasets(args) -> list[_Dataset]:
    from .cards import load_card
    from .data.prepared import PreparedDataset
    from .errors import ConfigError
    from .report import output_dir_for

    names = args.dataset if isinstance(args.dataset, list) else [args.dataset]
    if args.out and len(names) > 1:
        raise ConfigError("--out names one report folder; with several --dataset values leave it out "
                          "(each dataset's report goes to its own folder)")
    out = []
    for name in dict.fromkeys(names):
        path = _dataset_path(args, name)
        ds = PreparedDataset(path)
        card = load_card(ds.card_name)
        if any(d.card.protocol == card.protocol for d in out):
            other = next(d for d in out if d.card.protocol == card.protocol)
            raise ConfigError(f"--dataset {name} and {other.name} both use protocol {card.protocol!r}; give one "
                              "dataset per protocol")
        info = {"card": card.name, "content_hash": ds.content_hash, "demo_labels": card.demo_labels,
                "label_name": card.label_name, "landmark_scheme": ds.manifest["landmark_scheme"]["name"],
                "backend": ds.manifest.get("backend", {}).get("name"), "path": str(path)}
        out_dir = Path(args.out) if args.out else output_dir_for(card.name, ds.content_hash, args.scale)
        out.append(_Dataset(name, path, card, info, out_dir))
    return out


def _plan_tables(args, datasets: list[_Dataset]) -> tuple[list[tuple[object, _Dataset]], list[str]]:
    """(spec, dataset) pairs to build, and a line per table that is skipped (``all`` only).

    Raises:
        ConfigError: a named table whose protocol no given dataset uses; ``--rows`` with ``all``.
    """
    from .errors import ConfigError
    from .tables import available_tables, load_spec

    if args.table == "all" and args.rows:
        raise ConfigError("--rows selects rows of one table; name the table instead of 'all'")
    ids = available_tables() if args.table == "all" else [args.table]
    plan, skipped = [], []
    for table_id in ids:
        spec = load_spec(table_id)
        match = [d for d in datasets if d.card.protocol == spec.protocol]
        if not match:
            have = ", ".join(f"{d.name} ({d.card.protocol})" for d in datasets)
            hint = {"unbc_5fold": "synthetic-unbc or a prepared UNBC-McMaster folder",
                    "pfed5": "synthetic or a prepared PFED5 folder"}.get(spec.protocol, "a dataset of that protocol")
            why = f"{table_id} runs under protocol {spec.protocol!r}; no --dataset uses it (given: {have}); add {hint}"
            if args.table != "all":
                raise ConfigError(why)
            skipped.append(why)
            continue
        if hasattr(spec, "rows"):
            spec = _select_rows(spec, args.rows)
        plan.append((spec, match[0]))
    return plan, skipped


def _report(args, *, train: bool) -> int:
    import pandas as pd

    from .data.prepared import PreparedDataset
    from .report import render_statistics, render_table
    from .site import render_dataset_site, render_site_index
    from .runs import read_result
    from .statistics import compare_statistics, dataset_statistics
    from .tables import expand

    datasets = _open_datasets(args)
    plan, skipped = _plan_tables(args, datasets)
    weights = _weights(args) if train or getattr(args, "weights", None) else {}
    expanded = []
    for spec, d in plan:
        if not hasattr(spec, "rows"):
            expanded.append((spec, d, None))
            continue
        cells, not_run = expand(spec, d.path, scale=args.scale, seeds=args.seeds, runs_dir=args.runs_dir,
                                weights=weights, training=_kv(args.train, "--train"),
                                find_recorded=not train and not getattr(args, "weights", None),
                                validation=args.validation_fraction if args.selection == "validation" else 0.0)
        expanded.append((spec, d, (cells, not_run)))

    # the plan: every distinct run once, whichever tables share it
    todo: dict = {}
    for spec, d, built in expanded:
        if built is None:
            print(f"{spec.id}: statistics of {d.name} (no training)")
            continue
        runs = {r.folder: r for c in built[0] for r in c.runs}
        new = [f for f in runs if f not in todo]
        done = sum((read_result(f) or {}).get("status") == "ok" for f in runs)
        print(f"{spec.id}: {len(runs)} run(s) on {d.name} ({done} finished, {len(new)} not in an earlier table)")
        for label, why in {c.row.label: c.refused for c in built[0] if c.refused}.items():
            print(f"  {spec.id}: row {label!r} refused, no number made: {why}")
        todo.update(runs)
    for line in skipped:
        print(f"skipped: {line}")
    finished = sum((read_result(f) or {}).get("status") == "ok" for f in todo)
    print(f"plan: {len(todo)} distinct run(s), {finished} finished, {len(todo) - finished} to "
          f"{'train' if train else 'leave missing (report trains nothing)'}")

    failed = 0
    if train:
        outcomes = _execute_runs(args, list(todo.values()))
        failed = sum(o["status"] == "failed" for o in outcomes)
        interrupted = sum(o["status"] == "interrupted" for o in outcomes)
        submitted = sum(o["status"] == "submitted" for o in outcomes)
        if interrupted:
            print(f"{interrupted} run(s) interrupted (worker killed); the same command resumes them", file=sys.stderr)
        if submitted:
            print(f"{submitted} job(s) submitted; `qafe-bench report ...` with the same arguments collects what has "
                  "finished (re-run it while the jobs run)")

    rendered: dict = {}
    site: dict = {}
    for spec, d, built in expanded:
        if built is None:
            stats = dataset_statistics(PreparedDataset(d.path), d.card)
            paths = render_statistics(spec, stats, compare_statistics(stats, spec.published), d.out_dir,
                                      scale=args.scale, dataset_info=d.info)
        else:
            paths = render_table(spec, *built, d.out_dir, scale=args.scale, seeds=args.seeds, dataset_info=d.info,
                                 selection=args.selection)
            _collect_site(site.setdefault(d.name, {"cells": [], "methods": {}, "runs": {}, "leaderboard": None}),
                          spec, built, d, args)
        rendered.setdefault(d.name, []).append({"id": spec.id, "title": spec.title, "html": paths["html"].name,
                                                "csv": paths["csv"].name})
        print(f"{spec.id}: {paths['html']}  {paths['csv']}")
    for d in datasets:
        if d.name not in rendered:
            continue
        s = site.get(d.name, {"cells": [], "methods": {}, "runs": {}, "leaderboard": None})
        if s["cells"]:
            from .data.prepared import atomic_write_text

            atomic_write_text(d.out_dir / "cells.csv", pd.concat(s["cells"], ignore_index=True).to_csv(index=False))
        render_dataset_site(d.out_dir, rendered[d.name], s["leaderboard"], s["methods"], list(s["runs"].values()),
                            d.info, args.scale, costs=not args.no_costs)
        print(f"report: {d.out_dir / 'index.html'}")
    root = datasets[0].out_dir.parent if datasets else None
    if root is not None and not args.out:
        print(f"site: {render_site_index(root)}")
    if failed:
        print(f"{failed} run(s) failed; they are listed in the report and not averaged", file=sys.stderr)
    return 1 if failed else 0


def _collect_site(acc: dict, spec, built, d, args) -> None:
    """Gather what the dataset's site pages need from one table: its tidy cells (both selections),
    the runs and methods it used, and its leaderboard when the spec defines one."""
    from .site import render_leaderboard, tidy_cells
    from .tables import build_table

    cells, not_run = built
    for sel in dict.fromkeys([args.selection, "test_selected"]):
        acc["cells"].append(tidy_cells(spec, cells, sel, d.info))
    for c in cells:
        for r in c.runs:
            acc["runs"][r.folder.name] = r.folder
            acc["methods"].setdefault(type(r.method).name, {})[r.folder.name] = r.folder
    if spec.leaderboard is not None and (acc["leaderboard"] is None or spec.leaderboard.get("primary")):
        table = build_table(spec, cells, not_run, args.selection)
        paths = render_leaderboard(d.out_dir, spec, table, cells, dataset_info=d.info, selection=args.selection)
        acc["leaderboard"] = {"html": paths["html"].name, "csv": paths["csv"].name, "table": spec.id}


def cmd_reproduce(args) -> int:
    return _report(args, train=True)


def cmd_report(args) -> int:
    return _report(args, train=False)


def cmd_score(args) -> int:
    from .score import score_video

    result = score_video(args.video, args.checkpoint, expression=args.expression, backend=args.backend,
                         backend_options={"model_dir": args.insightface_dir} if args.insightface_dir else {},
                         device=args.device)
    for w in result["warnings"]:
        print(f"warning: {w}", file=sys.stderr)
    print(f"{args.video}: predicted {result['label_name']} {result['prediction']:.3f} "
          f"({result['expression']}, {result['method']}, {result['faces_found']}/{result['num_frames']} "
          "frames with a face)")
    return 0


# --------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qafe-bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common_run(sp, dataset_default="synthetic", trains=True, several=False):
        """Dataset and scale flags; ``trains``: also the flags only training uses (--weights, --device);
        ``several``: ``--dataset`` takes one dataset per protocol (reproduce / report)."""
        if several:
            sp.add_argument("--dataset", "--data", dest="dataset", nargs="+", default=[dataset_default],
                            help="prepared dataset folder(s), or 'synthetic' (PFED5-like) / 'synthetic-unbc' "
                                 "(UNBC-McMaster-like), generated on first use; one per protocol: each table "
                                 "runs on the dataset of its protocol (default: synthetic)")
        else:
            sp.add_argument("--dataset", "--data", dest="dataset", default=dataset_default,
                            help="prepared dataset folder, or 'synthetic' (PFED5-like) / 'synthetic-unbc' "
                                 "(UNBC-McMaster-like), generated on first use (default: synthetic)")
        sp.add_argument("--scale", default="tiny", choices=["tiny", "paper"], help="default: tiny")
        sp.add_argument("--output-root", metavar="DIR",
                        help="where runs/ and reports/output/ go (default: $QAFE_BENCH_OUTPUT, else the current "
                             "directory)")
        sp.add_argument("--runs-dir", default=None,
                        help="run records, and the generated synthetic data under data/ (default: <output root>/runs)")
        sp.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic dataset")
        if trains:
            sp.add_argument("--weights",
                            help="folder holding the authors' released checkpoints by original file name")
            sp.add_argument("--device", help="cpu or cuda (default: cuda if available)")
            ex = sp.add_argument_group("executor (where runs train; see benchmark/executors.py)")
            ex.add_argument("--executor", default="local", choices=["local", "processes", "slurm"],
                            help="local: in this process, one after the other (default); processes: --jobs at "
                                 "once on this machine; slurm: an array job through submitit")
            ex.add_argument("--jobs", type=int, default=2, help="runs at once with --executor processes (default 2)")
            ex.add_argument("--retry-failed", action="store_true",
                            help="train again runs recorded as failed (by default they are skipped and shown as failed)")
            ex.add_argument("--executor-config", metavar="YAML",
                            help="SLURM settings file (partition, gpus, cpus, mem_gb, time_min, account, qos, "
                                 "array_parallelism); the --slurm-* options override it")
            ex.add_argument("--slurm-partition")
            ex.add_argument("--slurm-gpus", type=int, help="GPUs per run (gpus_per_node)")
            ex.add_argument("--slurm-cpus", type=int, help="CPUs per run (cpus_per_task)")
            ex.add_argument("--slurm-mem-gb", type=float)
            ex.add_argument("--slurm-time", type=int, metavar="MINUTES", help="time limit per job")
            ex.add_argument("--slurm-account")
            ex.add_argument("--slurm-qos")
            ex.add_argument("--slurm-array-parallelism", type=int, help="jobs of the array running at once")
            ex.add_argument("--slurm-cluster", default="slurm", choices=["slurm", "local", "debug"],
                            help=argparse.SUPPRESS)
            ex.add_argument("--wait", action="store_true", help="with slurm: wait for the jobs to end")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = sub.add_parser("methods", help="list registered methods")
    sp.set_defaults(func=cmd_methods)
    sp = sub.add_parser("tables", help="list table specs")
    sp.set_defaults(func=cmd_tables)

    sp = sub.add_parser("env", help="print the provenance a run record stores (versions, commit, device, threads)")
    sp.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    sp.set_defaults(func=cmd_env)

    sp = sub.add_parser("perf", help="measure each stage against a baseline run in the same process (ratios)")
    sp.add_argument("--stages", nargs="+", default=["heatmaps", "loading", "prepare", "train_step"],
                    choices=["heatmaps", "loading", "prepare", "train_step"])
    sp.add_argument("--repeats", type=int, default=5)
    sp.add_argument("--peak-gflops", type=float, default=None,
                    help="the device's peak GFLOP/s, to print the achieved share of it")
    sp.set_defaults(func=cmd_perf)

    sp = sub.add_parser("synth", help="generate the synthetic dataset")
    sp.add_argument("--out", required=True)
    sp.add_argument("--preset", default="tiny", choices=["tiny", "paper"])
    sp.add_argument("--seed", type=int, default=0)
    sp.set_defaults(func=cmd_synth)

    sp = sub.add_parser("prepare", help="raw videos/frames -> prepared dataset (faces, landmarks, crops)")
    sp.add_argument("layout", choices=["pfed5", "unbc", "folder"],
                    help="pfed5: official PFED5_train/test.csv + <patient>/<video>/*.jpg; unbc: UNBC-McMaster "
                         "Images/, Sequence_Labels/VAS/, AAM_landmarks/; folder: videos + labels.csv")
    sp.add_argument("--raw", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--labels", help="labels CSV for the folder layout (default <raw>/labels.csv)")
    sp.add_argument("--card", help="dataset card (default unbc_mcmaster for layout unbc, else pfed5)")
    sp.add_argument("--backend", default="mediapipe", choices=["mediapipe", "insightface"])
    sp.add_argument("--insightface-dir", help="insightface model folder (det_10g.onnx, 2d106det.onnx)")
    sp.add_argument("--crop-size", type=int, default=256)
    sp.add_argument("--crop-mode", default="bbox", choices=["bbox", "square"])
    sp.add_argument("--frame-format", default="jpg", choices=["npy", "jpg"],
                    help="jpg (default, quality 95: PFED5 about 7 GB, samples load 4-5x faster than the original's "
                         "PIL loader) or npy (raw uint8: about 50 GB, about twice as fast again); see README Performance")
    sp.add_argument("--quiet", action="store_true")
    sp.set_defaults(func=cmd_prepare)

    sp = sub.add_parser("heatmaps", help="precompute the landmark heatmap volumes a method's runs read")
    sp.add_argument("--method", default="qafe_net", help="whose heatmap settings (default qafe_net)")
    sp.add_argument("--set", action="append", metavar="OPTION=VALUE", help="method option override")
    sp.add_argument("--overwrite", action="store_true", help="re-render videos already cached")
    sp.add_argument("--clip-len", type=int, help="frames per clip instead of the protocol's (as the runs use)")
    common_run(sp, trains=False)
    sp.set_defaults(func=cmd_heatmaps)

    sp = sub.add_parser("run", help="train and evaluate one method on one expression")
    sp.add_argument("--method", required=True)
    sp.add_argument("--expression", required=True)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--set", action="append", metavar="OPTION=VALUE", help="method option override")
    sp.add_argument("--train", action="append", metavar="SETTING=VALUE", help="training setting override")
    sp.add_argument("--control", default="none", choices=["none", "shuffled_labels"])
    sp.add_argument("--split", "--fold", dest="split",
                    help="the protocol's partition: official (PFED5, the default) or fold1..fold5 (UNBC-McMaster)")
    sp.add_argument("--clip-len", type=int,
                    help="frames per clip at the paper scale instead of the protocol's (PFED5 80, UNBC 144)")
    common_run(sp)
    sp.set_defaults(func=cmd_run)

    for name, func, helptext in (("reproduce", cmd_reproduce, "run what a table needs, then write the report"),
                                 ("report", cmd_report, "re-render tables from existing run records")):
        sp = sub.add_parser(name, help=helptext)
        sp.add_argument("table", nargs="?", default="table2",
                        help="table id (table1 .. table10) or 'all' (every table whose protocol a --dataset uses; "
                             "the others are listed as skipped)")
        sp.add_argument("--seeds", type=int, nargs="+", default=[0])
        sp.add_argument("--selection", default="final", choices=["final", "validation"],
                        help="the honest model selection of the headline CSV and the leaderboard: the final epoch "
                             "(default), or the best epoch on a validation split of the training subjects (runs "
                             "with one held out; see --validation-fraction). The official rule, best test epoch, is "
                             "always shown beside it, labelled 'selected on the test set'")
        sp.add_argument("--no-costs", action="store_true",
                        help="leave parameters and GFLOPs out of the method pages (they cost a few seconds per "
                             "method whose forward cannot run on PyTorch's meta device)")
        sp.add_argument("--validation-fraction", type=float, default=0.2,
                        help="share of the training subjects held out with --selection validation (default 0.2)")
        sp.add_argument("--rows", nargs="+", metavar="LABEL",
                        help="only these rows of the table (their labels, e.g. 'QAFE-Net, summation')")
        sp.add_argument("--out", help="report folder (default <output root>/reports/output/<dataset>-<hash>-<scale>)")
        sp.add_argument("--train", action="append", metavar="SETTING=VALUE",
                        help="training setting override for every run of the table (e.g. epochs=2)")
        common_run(sp, several=True)
        sp.set_defaults(func=func)

    sp = sub.add_parser("score", help="predict the severity of one real video with a trained model")
    sp.add_argument("video")
    sp.add_argument("--checkpoint", required=True, help="a run's model.pt")
    sp.add_argument("--expression", required=True)
    sp.add_argument("--backend", default=None, choices=["mediapipe", "insightface"],
                    help="landmark backend (default: the one the training data was prepared with)")
    sp.add_argument("--insightface-dir")
    sp.add_argument("--device", default="cpu")
    sp.set_defaults(func=cmd_score)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``qafe-bench`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "output_root", None):
        from .paths import ENV_OUTPUT

        os.environ[ENV_OUTPUT] = str(args.output_root)  # also seen by executor workers
    if hasattr(args, "runs_dir") and args.runs_dir is None:
        from .paths import runs_dir

        args.runs_dir = str(runs_dir())
    try:
        return args.func(args)
    except QafeBenchError as exc:
        print(f"qafe-bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
