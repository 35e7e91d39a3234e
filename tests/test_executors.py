"""Executors and exact resume: a grid through the processes executor survives a SIGKILLed worker,
a killed run resumes to the predictions of an uninterrupted one, two processes on one run train it
once, failures are records retried only on request, and the SLURM executor (submitit's local
cluster and its mocked SLURM) receives plain task descriptions and requeues on timeout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from benchmark.api import InputSpec, Method, Option, TrainingConfig
from benchmark.engine import RESULT_FORMAT_VERSION, execute
from benchmark.errors import ConfigError
from benchmark.executors import (LocalExecutor, ProcessExecutor, RunTask, SlurmExecutor, run_task, slurm_parameters,
                                 task_for)
from benchmark.runs import RunSpec, read_result, resolve

from conftest import make_prepared

pytestmark = pytest.mark.slow


class _NoisyNet(nn.Module):
    """Mean colour -> Linear -> Dropout -> Linear: training draws from the global torch RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.drop, self.b = nn.Linear(3, 16), nn.Dropout(0.5), nn.Linear(16, 1)

    def forward(self, rgb):
        return self.b(self.drop(torch.relu(self.a(rgb.mean(dim=(2, 3, 4)))))).reshape(-1)


class SleepyNoisy(Method):
    """A tiny method whose training uses dropout and slows down on request
    (``$QAFE_TEST_STEP_SLEEP`` seconds per step) and can kill its own process at a given
    (epoch, step) (``$QAFE_TEST_KILL_AT=epoch,step``), neither of which changes its run id."""

    name = "sleepy_noisy"
    display_name = "Sleepy noisy"
    options_spec = {"fail": Option(False, "raise in the first step")}

    def input_spec(self):
        return InputSpec(rgb=True, rgb_normalisation="unit")

    def build_model(self):
        return _NoisyNet()

    def training_defaults(self):
        return TrainingConfig(epochs=4, batch_size=2, lr=0.05, reps_per_epoch=2, lr_step=0, eval_every=1)

    def loss(self, loss_fn, output, batch):
        if self.options["fail"]:
            raise RuntimeError("planted failure")
        self._steps = getattr(self, "_steps", 0) + 1
        kill = os.environ.get("QAFE_TEST_KILL_AT")
        if kill and self._steps == int(kill):
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(float(os.environ.get("QAFE_TEST_STEP_SLEEP", "0")))
        return super().loss(loss_fn, output, batch)


TRAIN = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "epochs": 4, "reps_per_epoch": 2, "eval_every": 1}


@pytest.fixture(autouse=True)
def _method_in_every_process(monkeypatch):
    monkeypatch.setenv("QAFE_BENCH_METHODS", "sleepy_noisy=test_executors:SleepyNoisy")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_prepared(tmp_path_factory.mktemp("exec") / "data", videos=8, expressions=("smile", "frown"))


def _spec(data, **kw):
    base = dict(method="sleepy_noisy", dataset=str(data.root), expression="smile", seed=0, training=dict(TRAIN))
    base.update(kw)
    return RunSpec(**base)


def _child(code: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run_code(spec: RunSpec, runs: Path) -> str:
    return ("import json, sys; from benchmark.runs import RunSpec, resolve; from benchmark.engine import execute; "
            f"spec = RunSpec(**json.loads({json.dumps(json.dumps(spec.__dict__))})); "
            f"res = execute(resolve(spec, {str(runs)!r}), progress=False, log=lambda s: print(s, flush=True)); "
            "print('STATUS', res['status'], flush=True)")


def test_a_killed_run_resumes_to_the_uninterrupted_runs_predictions(data, tmp_path):
    """SIGKILL in the middle of epoch 3 (step 11 of 4 per epoch), then the same run again: it resumes
    from epoch 2's checkpoint (model, optimiser, dropout's RNG) and ends with exactly the
    predictions, per-epoch evaluations and losses of a run that was never interrupted."""
    spec = _spec(data)
    straight = resolve(spec, tmp_path / "a")
    assert execute(straight, progress=False, log=lambda s: None)["status"] == "ok"
    proc = _child(_run_code(spec, tmp_path / "b"), {"QAFE_TEST_KILL_AT": "11"})
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err
    killed = resolve(spec, tmp_path / "b")
    assert (killed.folder / "checkpoint_last.pt").is_file() and read_result(killed.folder) is None
    logs = []
    res = execute(killed, progress=False, log=logs.append)
    assert res["status"] == "ok" and any("[resume]" in line and "from epoch 3" in line for line in logs)
    for name in ("predictions.csv", "eval_history.csv"):
        assert pd.read_csv(killed.folder / name).equals(pd.read_csv(straight.folder / name)), name
    a, b = json.loads((straight.folder / "result.json").read_text()), res
    assert [e["train_loss"] for e in a["epochs"]] == [e["train_loss"] for e in b["epochs"]]
    assert a["run_id"] == b["run_id"] and b["format_version"] == RESULT_FORMAT_VERSION


def test_same_seed_same_predictions_and_seeds_differ(data, tmp_path):
    r0 = resolve(_spec(data, training={**TRAIN, "epochs": 2}), tmp_path / "x")
    r1 = resolve(_spec(data, training={**TRAIN, "epochs": 2}), tmp_path / "y")
    r2 = resolve(_spec(data, training={**TRAIN, "epochs": 2}, seed=1), tmp_path / "y")
    for r in (r0, r1, r2):
        execute(r, progress=False, log=lambda s: None)
    p0, p1, p2 = (pd.read_csv(r.folder / "predictions.csv") for r in (r0, r1, r2))
    assert p0.equals(p1) and not p0["prediction"].equals(p2["prediction"])


def test_processes_executor_survives_a_killed_worker_and_the_rerun_completes_the_grid(data, tmp_path):
    """6 runs, 2 at a time, each in its own process; one worker is SIGKILLed mid-run: the others
    finish, the killed run is recorded as interrupted (never averaged), and the same command again
    resumes it to the predictions of an uninterrupted run."""
    specs = [_spec(data, expression=e, seed=s) for e in ("smile", "frown") for s in (0, 1, 2)]
    runs = [resolve(s, tmp_path / "runs") for s in specs]
    tasks = [task_for(r, tmp_path / "runs") for r in runs]
    lines = []
    ex = ProcessExecutor(jobs=2, threads=1, log=lines.append)
    os.environ["QAFE_TEST_STEP_SLEEP"] = "0.05"
    try:
        import threading

        victim = runs[3]

        def kill_victim():
            deadline = time.time() + 240
            while time.time() < deadline:
                started = [ln for ln in lines if victim.run_id in ln and "pid" in ln]
                if started and (victim.folder / "checkpoint_last.pt").is_file():
                    os.kill(int(started[0].rsplit("pid ", 1)[1].rstrip(")")), signal.SIGKILL)
                    return
                time.sleep(0.05)

        killer = threading.Thread(target=kill_victim)
        killer.start()
        outcome = ex.run(tasks)
        killer.join()
    finally:
        os.environ.pop("QAFE_TEST_STEP_SLEEP", None)
    status = {o["run_id"]: o["status"] for o in outcome}
    assert status[victim.run_id] == "interrupted"
    assert sorted(status.values()) == ["interrupted"] + ["ok"] * 5
    rec = read_result(victim.folder)
    assert rec["status"] == "interrupted" and "signal 9" in rec["error"]["message"]
    again = ex.run(tasks)
    assert [o["status"] for o in again] == ["ok"] * 6
    reference = resolve(specs[3], tmp_path / "reference")
    execute(reference, progress=False, log=lambda s: None)
    assert pd.read_csv(victim.folder / "predictions.csv").equals(pd.read_csv(reference.folder / "predictions.csv"))


def test_two_processes_on_one_run_train_it_once(data, tmp_path):
    spec = _spec(data, expression="frown")
    code = _run_code(spec, tmp_path)
    env = {"QAFE_TEST_STEP_SLEEP": "0.2"}
    a = _child(code, env)
    time.sleep(0.5)
    b = _child(code, env)
    out_a, _ = a.communicate(timeout=300)
    out_b, _ = b.communicate(timeout=300)
    statuses = sorted(line.split()[1] for line in (out_a + out_b).splitlines() if line.startswith("STATUS"))
    assert statuses == ["ok", "running"]
    assert "is running in another process" in out_a + out_b
    run = resolve(spec, tmp_path)
    assert read_result(run.folder)["status"] == "ok"
    # and once finished, a third start trains nothing (the record is checked again under the lock)
    mtime = (run.folder / "result.json").stat().st_mtime_ns
    assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
    assert (run.folder / "result.json").stat().st_mtime_ns == mtime


def test_failed_runs_are_records_retried_only_when_asked(data, tmp_path):
    spec = _spec(data, options={"fail": True}, training={**TRAIN, "epochs": 1})
    task = task_for(resolve(spec, tmp_path), tmp_path)
    first = LocalExecutor(log=lambda s: None).run([task])[0]
    assert first["status"] == "failed" and "planted failure" in first["error"]
    run = resolve(spec, tmp_path)
    mtime = (run.folder / "result.json").stat().st_mtime_ns
    logs = []
    assert execute(run, progress=False, log=logs.append)["status"] == "failed"
    assert (run.folder / "result.json").stat().st_mtime_ns == mtime and "--retry-failed" in logs[0]
    time.sleep(0.01)
    retried = run_task(RunTask(task.spec, task.runs_dir, task.run_id, retry_failed=True), log=lambda s: None)
    assert retried["status"] == "failed" and (run.folder / "result.json").stat().st_mtime_ns != mtime


def test_a_task_that_resolves_to_another_run_is_refused(data, tmp_path):
    task = task_for(resolve(_spec(data), tmp_path), tmp_path)
    with pytest.raises(ConfigError, match="resolves to run .* here: the code, the dataset"):
        run_task(RunTask(task.spec, task.runs_dir, "0" * 12), log=lambda s: None)


def test_a_run_folder_of_another_run_id_is_refused_untouched(data, tmp_path):
    run = resolve(_spec(data, training={**TRAIN, "epochs": 1}), tmp_path)
    other = resolve(_spec(data, training={**TRAIN, "epochs": 1}, seed=5), tmp_path)
    execute(other, progress=False, log=lambda s: None)
    other.folder.rename(run.folder)  # a folder copied under another run's name
    before = {p.name: p.stat().st_mtime_ns for p in run.folder.iterdir()}
    res = execute(run, progress=False, log=lambda s: None)
    assert res["status"] == "ok" and res["run_id"] == other.run_id  # its own (other's) finished record
    (run.folder / "result.json").unlink()
    with pytest.raises(ConfigError, match=f"holds the config of run {other.run_id}, not of run {run.run_id}"):
        execute(run, progress=False, log=lambda s: None)
    assert {p.name for p in run.folder.iterdir()} == set(before) - {"result.json"}


# ------------------------------------------------------------------------------------- SLURM
def test_slurm_parameters_from_file_and_options(tmp_path):
    cfg = tmp_path / "slurm.yaml"
    cfg.write_text("slurm:\n  partition: gpu\n  gpus: 1\n  time_min: 240\n  array_parallelism: 16\n")
    assert slurm_parameters(cfg, gpus=2, account="proj") == {
        "slurm_partition": "gpu", "gpus_per_node": 2, "timeout_min": 240, "slurm_array_parallelism": 16,
        "slurm_account": "proj"}
    cfg.write_text("slurm:\n  partitions: gpu\n")
    with pytest.raises(ConfigError, match="slurm.yaml: unknown SLURM setting 'partitions'"):
        slurm_parameters(cfg)


def test_slurm_executor_on_submitits_local_cluster_runs_the_tasks_in_other_processes(data, tmp_path):
    runs = [resolve(_spec(data, seed=s, training={**TRAIN, "epochs": 1}), tmp_path / "runs") for s in (0, 1)]
    ex = SlurmExecutor(tmp_path / "runs" / "slurm", {"timeout_min": 10}, cluster="local", wait=True,
                       log=lambda s: None)
    out = ex.run([task_for(r, tmp_path / "runs") for r in runs])
    assert [o["status"] for o in out] == ["ok", "ok"]
    assert all(read_result(r.folder)["provenance"]["host"] for r in runs)
    assert all(int(json.loads((r.folder / "result.json").read_text())["format_version"]) == RESULT_FORMAT_VERSION
               for r in runs)


def test_slurm_executor_with_mocked_slurm_submits_an_array_of_plain_tasks_and_requeues(data, tmp_path):
    """submitit's mocked SLURM: the sbatch file carries the partition, GPUs, time limit, account and
    array parallelism; each array task's pickle holds a plain RunTask (no live objects); running it
    as the job would trains the run; on timeout the job's checkpoint() requeues the same task."""
    from submitit.core.utils import DelayedSubmission
    from submitit.slurm.test_slurm import mocked_slurm

    from benchmark.executors import CheckpointableRun

    runs = [resolve(_spec(data, seed=s, training={**TRAIN, "epochs": 1}), tmp_path / "runs") for s in (0, 1, 2)]
    tasks = [task_for(r, tmp_path / "runs") for r in runs]
    params = slurm_parameters(partition="gpu", gpus=1, cpus=8, mem_gb=32, time_min=120, account="proj", qos="normal",
                              array_parallelism=2)
    with mocked_slurm():
        jobs = SlurmExecutor(tmp_path / "slurm", params, log=lambda s: None).submit(tasks)
        sbatch = next((tmp_path / "slurm").glob("*submission_file*.sh")).read_text()
        for line in ("#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8",
                     "#SBATCH --time=120", "#SBATCH --account=proj", "#SBATCH --qos=normal", "%2"):
            assert line in sbatch, line
        delayed = DelayedSubmission.load(jobs[1].paths.submitted_pickle)
        assert isinstance(delayed.function, CheckpointableRun)
        task = delayed.args[0]
        assert isinstance(task, RunTask) and task.run_id == runs[1].run_id
        assert task.lock_wait >= 120  # a requeued job waits out its predecessor's lock
        assert isinstance(task.spec, RunSpec) and isinstance(task.spec.dataset, str)
        requeued = delayed.function.checkpoint(task)
        assert requeued.function is delayed.function and requeued.args == (task,)
        assert delayed.function(task)["status"] == "ok"  # what the job runs
    assert read_result(runs[1].folder)["status"] == "ok" and read_result(runs[0].folder) is None


def test_an_evaluation_written_after_the_last_checkpoint_is_not_kept_twice(data, tmp_path, monkeypatch):
    """Killed between writing epoch 3's evaluation and saving epoch 3's checkpoint: the resumed run
    redoes epoch 3 and keeps one evaluation per epoch, equal to the uninterrupted run's."""
    import benchmark.engine as eng

    spec = _spec(data)
    straight = resolve(spec, tmp_path / "a")
    execute(straight, progress=False, log=lambda s: None)
    real = eng._save_checkpoint

    class Killed(BaseException):
        pass

    def save_or_die(path, run, model, loss_fn, optimizer, scheduler, epoch, history, *more):
        if epoch == 2:  # 0-based: epoch 3's evaluation is already in eval_history.csv
            raise Killed()
        real(path, run, model, loss_fn, optimizer, scheduler, epoch, history, *more)

    run = resolve(spec, tmp_path / "b")
    monkeypatch.setattr(eng, "_save_checkpoint", save_or_die)
    with pytest.raises(Killed):
        execute(run, progress=False, log=lambda s: None)
    assert sorted(set(pd.read_csv(run.folder / "eval_history.csv")["epoch"])) == [1, 2, 3]
    monkeypatch.setattr(eng, "_save_checkpoint", real)
    assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
    assert pd.read_csv(run.folder / "eval_history.csv").equals(pd.read_csv(straight.folder / "eval_history.csv"))


def test_env_prints_the_provenance_a_record_stores(capsys):
    from benchmark.cli import main
    from benchmark.engine import provenance

    assert main(["env", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    expected = provenance(torch.device("cpu"))
    for key in ("qafe_bench", "python", "torch", "numpy", "scipy", "device", "torch_threads", "host"):
        assert info[key] == expected[key], key
    assert set(info["git"]) == {"commit", "dirty"} and info["cpu_count"] == os.cpu_count()


def test_a_validation_split_selects_the_epoch_without_looking_at_the_test_set(data, tmp_path):
    """--selection validation: a run holds out training subjects (seeded, subject-disjoint from the rest
    of training and from test); the validation-selected epoch is the best validation epoch, and the table
    takes that epoch's TEST predictions."""
    from benchmark.engine import validation_split
    from benchmark.protocols import RHO
    from benchmark.tables import selected_predictions

    v = data.videos
    train = v[(v["split"] == "train") & (v["expression"] == "smile")].reset_index(drop=True)
    tr, val = validation_split(train, 0.5, seed=0)
    assert set(tr["subject"]).isdisjoint(val["subject"]) and len(tr) + len(val) == len(train)
    assert set(val["subject"]) == set(validation_split(train, 0.5, seed=0)[1]["subject"])
    assert len(validation_split(train, 0.0, seed=0)[1]) == 0
    run = resolve(_spec(data, validation=0.5), tmp_path)
    assert run.config["validation"] == 0.5 and run.run_id != resolve(_spec(data), tmp_path).run_id
    res = execute(run, progress=False, log=lambda s: None)
    assert res["validation_videos"] == len(val) and res["train_videos"] == len(tr)
    vals = pd.read_csv(run.folder / "val_history.csv")
    assert set(vals["video_id"].map(lambda v: v.split("_v")[0])) == {"smile"}
    per_epoch = {e: g for e, g in vals.groupby("epoch")}
    from benchmark.metrics import spearman_rho_x100

    rhos = {e: spearman_rho_x100(g["label"], g["prediction"]) for e, g in per_epoch.items()}
    best = max(rhos, key=lambda e: (rhos[e], -e))  # the highest validation rho, the earliest on ties
    sel = res["metrics"]["validation_selected"]
    assert sel["epoch"] == best
    picked = selected_predictions(run.folder, "validation", RHO)
    ev = pd.read_csv(run.folder / "eval_history.csv")
    assert picked["prediction"].tolist() == ev[ev["epoch"] == best]["prediction"].tolist()
    # a run without a validation split has no validation selection
    plain = resolve(_spec(data, training={**TRAIN, "epochs": 1}), tmp_path)
    execute(plain, progress=False, log=lambda s: None)
    assert selected_predictions(plain.folder, "validation", RHO).empty
    with pytest.raises(ConfigError, match=r"validation fraction must be in \[0, 1\)"):
        resolve(_spec(data, validation=1.0), tmp_path)
