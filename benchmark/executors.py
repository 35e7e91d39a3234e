"""Executors: where a grid of runs is trained.

Every executor receives only plain, picklable task descriptions (:class:`RunTask`: the
:class:`~benchmark.runs.RunSpec` and the runs folder); the worker rebuilds everything from it
with :func:`~benchmark.runs.resolve` (and checks that it resolves to the same run id) and trains
with :func:`~benchmark.engine.execute`, which skips finished runs, resumes interrupted ones
from their last epoch checkpoint and records failures. So any executor can be killed, and the
same command started again finishes the grid.

* ``local`` (:class:`LocalExecutor`): in this process, one run after the other (the default).
* ``processes`` (:class:`ProcessExecutor`): up to ``jobs`` runs at once on this machine, each
  in a fresh process (``spawn``) taken from a queue; a worker killed from outside (SIGKILL, the
  OOM killer) costs only its own run, which is recorded as ``interrupted`` and resumes from its
  checkpoint next time.
* ``slurm`` (:class:`SlurmExecutor`): one SLURM array job per grid through submitit, with
  partition, GPUs, CPUs, memory, time limit, account, QoS and array parallelism from options
  or a YAML file; on timeout or preemption submitit requeues the job
  (:class:`CheckpointableRun`) and the run resumes from its last epoch checkpoint.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .errors import ConfigError

EXECUTORS = ("local", "processes", "slurm")


@dataclass(frozen=True)
class RunTask:
    """A run as an executor ships it: plain data only.

    Attributes:
        spec: the run's :class:`~benchmark.runs.RunSpec` (method, dataset path, expression,
            seed, scale, options, training, weights, split, control, clip length).
        runs_dir: the runs folder.
        run_id: the id the submitting process resolved (the worker checks it gets the same).
        device: ``cpu``, ``cuda`` or None (the worker's default).
        retry_failed: train again a run recorded as failed.
        lock_wait: seconds to wait for another holder's run lock before skipping the run.
    """

    spec: Any
    runs_dir: str
    run_id: str
    device: str | None = None
    retry_failed: bool = False
    lock_wait: float = 2.0


def task_for(run, runs_dir: str | Path, *, device: str | None = None, retry_failed: bool = False) -> RunTask:
    """The :class:`RunTask` of a resolved run (it must have been resolved from a spec)."""
    if run.spec is None:
        raise ConfigError(f"run {run.run_id} carries no RunSpec; resolve it with benchmark.runs.resolve")
    spec = dataclasses.replace(run.spec, dataset=str(run.spec.dataset),
                               weights={k: str(v) for k, v in run.spec.weights.items()})
    return RunTask(spec, str(runs_dir), run.run_id, device, retry_failed)


def run_task(task: RunTask, *, progress: bool = False, log: Callable[[str], None] = print) -> dict:
    """Rebuild the run from its task and execute it (what every executor's worker calls).

    Returns:
        ``{"run_id", "folder", "status"}`` plus ``"error"`` for a failed run.

    Raises:
        ConfigError: the task resolves to another run id than the submitter's (the code, the
            data or a pretrained file changed between submission and execution).
    """
    from .engine import default_device, execute
    from .runs import resolve

    run = resolve(task.spec, task.runs_dir)
    if run.run_id != task.run_id:
        raise ConfigError(f"task for run {task.run_id} resolves to run {run.run_id} here: the code, the dataset "
                          "or a pretrained file differs from the submitting machine's")
    res = execute(run, device=task.device or default_device(), progress=progress, log=log,
                  retry_failed=task.retry_failed, lock_wait=task.lock_wait)
    out = {"run_id": run.run_id, "folder": str(run.folder), "status": res.get("status")}
    if res.get("status") == "failed":
        out["error"] = res.get("error", {}).get("message")
    return out


class LocalExecutor:
    """Runs the tasks in this process, one after the other."""

    name = "local"

    def __init__(self, progress: bool = True, log: Callable[[str], None] = print) -> None:
        self.progress, self.log = progress, log

    def run(self, tasks: list[RunTask]) -> list[dict]:
        out = []
        for i, task in enumerate(tasks, 1):
            self.log(f"[{i}/{len(tasks)}] {Path(task.runs_dir).name}/{task.spec.method} {task.spec.expression} "
                     f"{task.spec.split or ''} seed {task.spec.seed} ({task.run_id})")
            out.append(run_task(task, progress=self.progress, log=self.log))
        return out


def _worker(task: RunTask, threads: int, conn) -> None:  # pragma: no cover - runs in a child process
    import cv2
    import torch

    torch.set_num_threads(max(1, threads))
    cv2.setNumThreads(max(1, threads))  # OpenCV's pool too (heatmaps rendered on the fly use it)
    try:
        res = run_task(task, progress=False, log=lambda s: None)
    except Exception as exc:  # noqa: BLE001 - reported to the parent
        res = {"run_id": task.run_id, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    conn.send(res)
    conn.close()


def _record_interrupted(task: RunTask, exitcode: int) -> dict:
    """Write an ``interrupted`` record for a run whose worker died without one (SIGKILL, OOM killer):
    not ``failed`` (the next command resumes it from its checkpoint), never averaged."""
    from .runs import read_result, resolve, write_json

    run = resolve(task.spec, task.runs_dir)
    res = read_result(run.folder)
    if res is not None and res.get("status") in ("ok", "failed"):
        return {"run_id": run.run_id, "folder": str(run.folder), "status": res["status"]}
    how = f"signal {-exitcode}" if exitcode < 0 else f"exit code {exitcode}"
    write_json(run.folder / "result.json", {
        "status": "interrupted", "run_id": run.run_id,
        "error": {"type": "WorkerDied", "message": f"the worker process ended with {how} before the run finished; "
                  "starting the same command again resumes it from its last epoch checkpoint"},
        "time": time.strftime("%Y-%m-%d %H:%M:%S")})
    return {"run_id": run.run_id, "folder": str(run.folder), "status": "interrupted", "error": how}


class ProcessExecutor:
    """Up to ``jobs`` runs at once, each in a fresh ``spawn``-ed process, from a queue.

    Each worker gets ``threads`` torch threads (default: CPU count // jobs). A worker that dies
    without reporting (killed) gets an ``interrupted`` record; the others go on.
    """

    name = "processes"

    def __init__(self, jobs: int = 2, threads: int | None = None, log: Callable[[str], None] = print,
                 poll_s: float = 0.2) -> None:
        if int(jobs) < 1:
            raise ConfigError(f"--jobs must be >= 1, got {jobs}")
        self.jobs = int(jobs)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        self.log, self.poll_s = log, poll_s

    def run(self, tasks: list[RunTask]) -> list[dict]:
        import multiprocessing as mp

        ctx = mp.get_context("spawn")
        queue = list(enumerate(tasks))
        running: dict = {}
        results: dict[int, dict] = {}
        while queue or running:
            while queue and len(running) < self.jobs:
                i, task = queue.pop(0)
                recv, send = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_worker, args=(task, self.threads, send), daemon=False)
                proc.start()
                send.close()
                running[i] = (proc, recv, task)
                self.log(f"[start {i + 1}/{len(tasks)}] {task.spec.method} {task.spec.expression} "
                         f"{task.spec.split or ''} seed {task.spec.seed} ({task.run_id}, pid {proc.pid})")
            time.sleep(self.poll_s)
            for i, (proc, recv, task) in list(running.items()):
                if recv.poll():
                    try:
                        results[i] = recv.recv()
                    except EOFError:
                        pass
                if proc.is_alive():
                    continue
                proc.join()
                if i not in results:
                    if recv.poll():
                        try:
                            results[i] = recv.recv()
                        except EOFError:
                            pass
                if i not in results:
                    results[i] = _record_interrupted(task, proc.exitcode)
                recv.close()
                del running[i]
                self.log(f"[done {i + 1}/{len(tasks)}] {task.run_id}: {results[i]['status']}")
        return [results[i] for i in range(len(tasks))]


class CheckpointableRun:
    """The SLURM job's callable: run one task; on timeout or preemption submitit calls
    :meth:`checkpoint`, which requeues the same task (the run then resumes from its last epoch
    checkpoint, :func:`benchmark.engine.execute`). The submitit ``Checkpointable`` pattern."""

    def __call__(self, task: RunTask) -> dict:
        return run_task(task, progress=False)

    def checkpoint(self, task: RunTask):
        import submitit

        return submitit.helpers.DelayedSubmission(self, task)


#: ``--slurm-*`` option -> submitit parameter.
SLURM_PARAMETERS = {
    "partition": "slurm_partition", "gpus": "gpus_per_node", "cpus": "cpus_per_task", "mem_gb": "mem_gb",
    "time_min": "timeout_min", "account": "slurm_account", "qos": "slurm_qos",
    "array_parallelism": "slurm_array_parallelism",
}


def slurm_parameters(config_file: str | Path | None = None, **options: Any) -> dict:
    """submitit parameters from a YAML file (keys of :data:`SLURM_PARAMETERS`, or an ``slurm:``
    mapping of them) and then the given options (None values ignored).

    Raises:
        ConfigError: an unknown key (naming the file), or an unreadable file.
    """
    import yaml

    merged: dict = {}
    if config_file:
        p = Path(config_file)
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{p}: cannot read the executor config ({exc})") from None
        raw = raw.get("slurm", raw) if isinstance(raw, dict) else raw
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of {', '.join(SLURM_PARAMETERS)}")
        for k, v in raw.items():
            if k not in SLURM_PARAMETERS:
                raise ConfigError(f"{p}: unknown SLURM setting {k!r}; known: {', '.join(SLURM_PARAMETERS)}")
            merged[k] = v
    merged.update({k: v for k, v in options.items() if v is not None})
    unknown = sorted(set(merged) - set(SLURM_PARAMETERS))
    if unknown:
        raise ConfigError(f"unknown SLURM setting(s) {unknown}; known: {', '.join(SLURM_PARAMETERS)}")
    return {SLURM_PARAMETERS[k]: v for k, v in merged.items()}


@dataclass
class SlurmExecutor:
    """One array job per grid through submitit (``cluster="slurm"``; ``"local"`` runs the same
    jobs as local processes, ``"debug"`` in this process: both for tests).

    Attributes:
        folder: submitit's log folder (``<runs-dir>/slurm`` by default).
        parameters: submitit parameters (:func:`slurm_parameters`).
        cluster: ``slurm``, ``local`` or ``debug``.
        wait: block until every job ended (default: submit and return; collect results later
            with ``qafe-bench report``, which reads whatever records exist).
    """

    folder: Path
    parameters: dict = field(default_factory=dict)
    cluster: str = "slurm"
    wait: bool = False
    log: Callable[[str], None] = print
    name: str = "slurm"

    def submit(self, tasks: list[RunTask]) -> list:
        import submitit

        from .runs import LOCK_LIFETIME_S

        # a requeued job may start on another node while its predecessor's lock is still alive:
        # wait out one lock lifetime (plus flufl's clock slop) instead of skipping the run
        tasks = [dataclasses.replace(t, lock_wait=max(t.lock_wait, LOCK_LIFETIME_S + 15)) for t in tasks]

        executor = submitit.AutoExecutor(folder=str(self.folder), cluster=self.cluster)
        params = {"name": "qafe-bench", **self.parameters}
        if self.cluster != "slurm":
            params = {k: v for k, v in params.items() if not k.startswith("slurm_") and k != "gpus_per_node"}
        executor.update_parameters(**params)
        jobs = executor.map_array(CheckpointableRun(), tasks) if tasks else []
        for job, task in zip(jobs, tasks):
            self.log(f"[submitted] job {job.job_id}: {task.spec.method} {task.spec.expression} "
                     f"{task.spec.split or ''} seed {task.spec.seed} ({task.run_id})")
        return jobs

    def run(self, tasks: list[RunTask]) -> list[dict]:
        jobs = self.submit(tasks)
        if not self.wait:
            return [{"run_id": t.run_id, "status": "submitted", "job_id": j.job_id} for j, t in zip(jobs, tasks)]
        out = []
        for job, task in zip(jobs, tasks):
            try:
                out.append(job.result())
            except Exception as exc:  # noqa: BLE001 - a job that died is reported, its run resumes later
                out.append({"run_id": task.run_id, "status": "interrupted", "error": str(exc)[:500]})
        return out


def make_executor(name: str, *, jobs: int = 2, runs_dir: str | Path = "runs", progress: bool = True,
                  slurm: dict | None = None, cluster: str = "slurm", wait: bool = False,
                  log: Callable[[str], None] = print):
    """The executor called ``name`` (:data:`EXECUTORS`).

    Raises:
        ConfigError: an unknown name (listing the known ones).
    """
    if name == "local":
        return LocalExecutor(progress=progress, log=log)
    if name == "processes":
        return ProcessExecutor(jobs=jobs, log=log)
    if name == "slurm":
        return SlurmExecutor(Path(runs_dir) / "slurm", slurm or {}, cluster=cluster, wait=wait, log=log)
    raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


__all__ = ["EXECUTORS", "CheckpointableRun", "LocalExecutor", "ProcessExecutor", "RunTask", "SLURM_PARAMETERS",
           "SlurmExecutor", "make_executor", "run_task", "slurm_parameters", "task_for"]
