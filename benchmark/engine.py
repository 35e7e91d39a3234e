"""The training and evaluation engine: one run, one process, one device.

It follows the official ``main_PFED5.py`` loop (train an epoch, evaluate the test
split, keep per-epoch test predictions) and adds what a benchmark needs: a
per-epoch checkpoint for resume, NaN detection (a diverged run is recorded as
failed, never scored), atomic records, provenance, and both model-selection
rules: the final epoch (honest) and the best test epoch (what the official code
reports, "test-selected").
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .data.prepared import atomic_write_bytes
from .errors import ConfigError, DivergedError, QafeBenchError
from .metrics import regression_metrics
from .protocols import RHO, MetricSpec, get_protocol
from .protocols.pfed5 import ClipDataset
from .runs import ResolvedRun, RunLock, config_hash, read_result, write_csv, write_json

MODEL_FORMAT = "qafe-bench-model"
MODEL_VERSION = 1
#: Version of ``result.json``'s layout; a record of another version is not reused (re-run).
RESULT_FORMAT_VERSION = 3
#: Version of the epoch checkpoint (``checkpoint_last.pt``): 2 adds every RNG state.
CHECKPOINT_VERSION = 2


# ------------------------------------------------------------------ provenance
def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit or None, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance(device: torch.device) -> dict:
    """Package versions, git commit, device and host facts for ``result.json``."""
    import numpy
    import scipy

    import benchmark

    info = {
        "qafe_bench": benchmark.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "git": _git_commit(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_native": cpu_bf16_native(),
        "host": platform.node(),
    }
    try:
        import torchvision

        info["torchvision"] = torchvision.__version__
    except ImportError:
        pass
    return info


def cpu_bf16_native() -> bool:
    """Whether this CPU computes bfloat16 natively (oneDNN's bf16 support: AVX512-BF16 or AMX), as
    PyTorch reports it; without it ``amp=bf16`` on the CPU is emulated and slow."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# --------------------------------------------------------------------- helpers
def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def _to_device(batch: dict, device: torch.device, channels_last: bool = False) -> dict:
    def move(v):
        v = v.to(device, non_blocking=True)
        return v.contiguous(memory_format=torch.channels_last_3d) if channels_last and v.dim() == 5 else v

    return {k: (move(v) if torch.is_tensor(v) else
                _to_device(v, device, channels_last) if isinstance(v, dict) else v) for k, v in batch.items()}


@dataclass(frozen=True)
class SpeedSettings:
    """How a run computes (:class:`~benchmark.api.TrainingConfig` ``amp``, ``compile``,
    ``channels_last``; pinned memory on CUDA), resolved for a device.

    Attributes:
        device: where the model runs.
        amp: ``none``, ``bf16`` or ``fp16``.
        compile: ``none`` or a ``torch.compile`` backend.
        channels_last: channels-last conv weights and 5-D inputs.

    Raises (:meth:`for_run`):
        ConfigError: ``fp16`` without CUDA (float16 autocast on CPU is slow and unscaled: use bf16).
    """

    device: torch.device
    amp: str = "none"
    compile: str = "none"
    channels_last: bool = False

    @classmethod
    def for_run(cls, cfg, device: torch.device) -> "SpeedSettings":
        amp = getattr(cfg, "amp", "none")
        if amp == "fp16" and device.type != "cuda":
            raise ConfigError("training setting amp=fp16 needs a CUDA device; on CPU use amp=bf16 or none")
        if amp == "bf16" and device.type == "cpu" and not cpu_bf16_native():
            import warnings

            warnings.warn(f"training setting amp=bf16 on a CPU without native bfloat16 (PyTorch reports CPU "
                          f"capability {torch.backends.cpu.get_cpu_capability()}, no AVX512-BF16 / AMX): autocast "
                          "emulates it, typically several times SLOWER than float32; use amp=none here",
                          RuntimeWarning, stacklevel=2)
        return cls(device, amp, getattr(cfg, "compile", "none"), bool(getattr(cfg, "channels_last", False)))

    def autocast(self):
        """``torch.autocast`` for the forward pass and loss (disabled with ``amp=none``)."""
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.amp != "none")

    def to_device(self, batch: dict) -> dict:
        """The batch's tensors on the device (non-blocking; 5-D ones channels-last when asked)."""
        return _to_device(batch, self.device, self.channels_last)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Channels-last weights in place when asked; returns the module to call for the forward
        pass (``torch.compile``'d with the backend when asked; the weights stay ``model``'s)."""
        if self.channels_last:
            def conv(t: torch.Tensor) -> torch.Tensor:
                if t.dim() == 5:
                    return t.contiguous(memory_format=torch.channels_last_3d)
                return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t

            model._apply(conv)
        return model if self.compile == "none" else torch.compile(model, backend=self.compile)

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"


def make_optimizer(groups: list[dict], cfg) -> torch.optim.Optimizer | None:
    """The run's optimiser over a method's parameter groups (:meth:`~benchmark.api.Method.param_groups`):
    ``torch.optim.SGD`` (``lr``, ``momentum``, ``weight_decay``) or ``Adam`` (``lr``, ``weight_decay``)
    from a :class:`~benchmark.api.TrainingConfig`; None when there is nothing to train (the dummy).

    Raises:
        QafeBenchError: an unknown optimiser name.
    """
    if not groups:
        return None
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise QafeBenchError(f"unknown optimizer {cfg.optimizer!r} (sgd or adam)")


def step_schedule(optimizer, groups: list[dict], cfg):
    """StepLR (lr x ``lr_gamma`` every ``lr_step`` epochs) for every group except those
    marked ``"decay": False`` (e.g. the BMC noise sigma, whose rate Balanced MSE never decays)."""
    step, gamma = cfg.lr_step, cfg.lr_gamma
    lambdas = [(lambda e: gamma ** (e // step)) if g.get("decay", True) else (lambda e: 1.0) for g in groups]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambdas)


def evaluate(method, model: torch.nn.Module, loader, device: torch.device,
             speed: SpeedSettings | None = None) -> np.ndarray:
    """Predictions ``(N,)`` for every item of a (non-shuffled) test loader, in order.

    For a method with exemplars the loader's dataset is evaluated once per voter
    (:meth:`ClipDataset.set_voter`) and the decoded scores are averaged over the
    voters (CoRe / AQA-TPT test-time voting). A protocol with random test clips
    (``test_clips="random"``, UNBC-McMaster: 10 per sequence) is evaluated once per
    sampling (:meth:`ClipDataset.set_sampling`) and averaged the same way: every
    (sampling, voter) pair counts once.

    ``speed``: autocast and channels-last inputs as in training (default: float32 on ``device``).

    Raises:
        DivergedError: a non-finite prediction.
    """
    speed = speed or SpeedSettings(device)
    model.eval()
    spec = method.exemplars
    voters = spec.test_voters if spec is not None else 1
    ds = loader.dataset
    samplings = ds.test_samplings if getattr(ds, "test_clips", "even") == "random" else 1
    total = None
    with torch.no_grad():
        for sampling in range(samplings):
            if samplings > 1:
                ds.set_sampling(sampling)
            for voter in range(voters):
                if spec is not None:
                    ds.set_voter(voter)
                out = []
                for batch in loader:
                    with speed.autocast():
                        pred = method.predict(model, speed.to_device(batch))
                    out.append(pred.reshape(-1).float().cpu())
                preds = torch.cat(out).numpy().astype(np.float64) if out else np.zeros(0)
                total = preds if total is None else total + preds
    preds = total / (voters * samplings)
    if not np.isfinite(preds).all():
        raise DivergedError("the model predicted NaN/inf on the test split")
    return preds


def trainable_batchnorms(model: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    """The BatchNorm layers of ``model`` that update running statistics while it trains: those
    with ``track_running_stats`` that stay in training mode under ``model.train()`` (a method
    that freezes its backbone's BatchNorm, CoRe's ``fix_bn``, keeps them in eval mode: left out).
    The model's own mode is restored."""
    was_training = model.training
    model.train()
    found = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training]
    model.train(was_training)
    return found


def recompute_bn_statistics(method, model: torch.nn.Module, loader, batches: int,
                            speed: SpeedSettings | None = None) -> dict:
    """Precise BatchNorm: replace the running mean / variance of :func:`trainable_batchnorms` by
    the plain average of their batch statistics over ``batches`` batches of ``loader`` (training
    clips, training augmentation), so that evaluation uses statistics of the weights being
    evaluated, not an exponential average over earlier weights (SlowFast ``precise_bn``,
    pytorchvideo / fvcore ``update_bn_stats``; ``torch.optim.swa_utils.update_bn`` computes the
    same average but also resets frozen layers, which this leaves alone). Forward passes only,
    without gradient, in training mode; the random streams are forked, so training after it is
    exactly what it would have been without it; the model's mode is restored.

    Args:
        method: the method (its :meth:`~benchmark.api.Method.forward`).
        model: the model (or its compiled wrapper).
        loader: yields training batches.
        batches: how many batches to average over (at most the loader's length).
        speed: device and autocast, as in training.

    Returns:
        ``{"layers": n, "batches": used}`` (``layers`` 0: nothing to re-estimate, nothing ran).
    """
    speed = speed or SpeedSettings(torch.device("cpu"))
    layers = trainable_batchnorms(model)
    if not layers or batches <= 0:
        return {"layers": len(layers), "batches": 0}
    momenta = [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the plain mean over the batches seen
    was_training = model.training
    used = 0
    try:
        with torch.random.fork_rng(devices=[speed.device] if speed.device.type == "cuda" else []), torch.no_grad():
            model.train()
            for batch in loader:
                if used >= batches:
                    break
                with speed.autocast():
                    method.forward(model, speed.to_device(batch))
                used += 1
    finally:
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.train(was_training)
    return {"layers": len(layers), "batches": used}


def fit_loss(loss_fn: torch.nn.Module, train_labels: np.ndarray) -> None:
    """Hand the training partition's labels ``(N,)`` to a loss that depends on their
    distribution (one with ``fit_labels``, e.g. :class:`benchmark.losses.GAILoss`'s GMM);
    other losses are left alone. Test labels never reach it."""
    fit = getattr(loss_fn, "fit_labels", None)
    if callable(fit):
        fit(np.asarray(train_labels, dtype=np.float64))


def _loader(ds, batch_size: int, *, shuffle: bool, seed: int, epoch: int, workers: int, drop_last: bool = False,
            pin_memory: bool = False):
    gen = torch.Generator()
    gen.manual_seed(seed * 1000003 + epoch)
    return torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen,
                                       num_workers=workers, drop_last=drop_last, pin_memory=pin_memory,
                                       prefetch_factor=2 if workers > 0 else None, persistent_workers=False)


# ------------------------------------------------------------------------ run
def _finished(folder: Path, retry_failed: bool, log) -> dict | None:
    """The record to return instead of training: an ``ok`` record, or a ``failed`` one unless
    ``retry_failed``; None when the run must (re)start."""
    done = read_result(folder)
    if done is None:
        return None
    if done.get("status") == "ok":
        return done
    if done.get("status") == "failed" and not retry_failed:
        log(f"[skip] {folder.name} failed earlier ({(done.get('error') or {}).get('type', 'error')}); "
            "--retry-failed runs it again")
        return done
    return None


def execute(run: ResolvedRun, *, device: str | torch.device = "cpu", progress: bool = True,
            log: Callable[[str], None] = print, retry_failed: bool = False, lock_wait: float = 2.0) -> dict:
    """Execute (or skip, or resume) one run and return its ``result.json`` content.

    A run whose ``result.json`` says ``ok`` is skipped; one that says ``failed`` too, unless
    ``retry_failed``. A run locked by another live process (on any host sharing the folder,
    :class:`~benchmark.runs.RunLock`) is skipped with status ``running``, and says so. The
    finished-record check is repeated once the lock is held, so two processes started on one
    run never both train it. Any error inside the run is recorded in ``result.json`` with
    status ``failed`` (type, message, traceback) and returned, not raised, so a grid of runs
    goes on; a run killed from outside (SIGKILL, a scheduler) leaves its last epoch checkpoint
    and resumes from it exactly when started again. ``lock_wait``: seconds to wait for another
    holder's lock (a requeued SLURM job waits out its predecessor's lock lifetime).

    Raises:
        ConfigError: the folder holds another run's ``config.json`` (a different run id), or a
            speed setting the device cannot run (``amp=fp16`` without CUDA), before anything starts.
    """
    folder = run.folder
    SpeedSettings.for_run(run.training, torch.device(device))
    done = _finished(folder, retry_failed, log)
    if done is not None:
        return done
    with RunLock(folder, wait=lock_wait) as lock:
        if not lock.acquired:
            log(f"[skip] {folder.name} is running in another process")
            return {"status": "running", "run_id": run.run_id}
        done = _finished(folder, retry_failed, log)  # another process may have finished it meanwhile
        if done is not None:
            return done
        _check_folder_is_this_run(folder, run)
        write_json(folder / "config.json", run.config)
        t0 = time.time()
        try:
            result = _train_and_evaluate(run, torch.device(device), progress, log)
        except Exception as exc:  # noqa: BLE001 - record every failure
            result = {
                "status": "failed",
                "format_version": RESULT_FORMAT_VERSION,
                "run_id": run.run_id,
                "error": {"type": type(exc).__name__, "message": str(exc),
                          "traceback": traceback.format_exc(limit=20)},
                "wall_time_s": time.time() - t0,
                "provenance": provenance(torch.device(device)),
            }
            log(f"[failed] {folder.name}: {type(exc).__name__}: {exc}")
        write_json(folder / "result.json", result)
        return result


def _train_and_evaluate(run: ResolvedRun, device: torch.device, progress: bool, log) -> dict:
    cfg = run.training
    method = run.method
    folder = run.folder
    seed = run.config["seed"]
    _seed_everything(seed)

    protocol = run.protocol or get_protocol(run.card.protocol)
    part = protocol.partition(run.dataset, run.card, run.config["expression"], run.config["split"])
    train_df, test_df = part.train, part.test
    run.dataset.check_files([*train_df["video_id"], *test_df["video_id"]])  # files = what prepare wrote
    train_df, val_df = validation_split(train_df, float(run.config.get("validation", 0.0)), seed)
    if run.config["control"] == "shuffled_labels":
        perm = np.random.default_rng([seed, 7919]).permutation(len(train_df))
        train_df = train_df.assign(label=train_df["label"].to_numpy()[perm])
    # Exemplars come from the training partition only (with the control's labels, if shuffled).
    exemplar_pool = train_df if method.exemplars is not None else None
    settings = run.clip
    train_ds = ClipDataset(run.dataset, train_df, settings, train=True, reps=cfg.reps_per_epoch, seed=seed,
                           exemplar_pool=exemplar_pool, exemplars=method.exemplars)
    test_ds = ClipDataset(run.dataset, test_df, settings, train=False, seed=seed,
                          exemplar_pool=exemplar_pool, exemplars=method.exemplars, test_clips=protocol.test_clips,
                          test_samplings=protocol.test_samplings)
    val_ds = ClipDataset(run.dataset, val_df, settings, train=False, seed=seed, exemplar_pool=exemplar_pool,
                         exemplars=method.exemplars, test_clips=protocol.test_clips,
                         test_samplings=protocol.test_samplings) if len(val_df) else None

    speed = SpeedSettings.for_run(cfg, device)
    model = method.build_model().to(device)
    loss_fn = method.build_loss().to(device)
    files = {r: Path(p) for r, p in run.config["paths"]["weights"].items()}
    pretrained_info = method.load_pretrained(model, files) if files else {"loaded": {}, "note": "trained from scratch"}
    from_scratch = run.config.get("from_scratch") or []
    forward_model = speed.prepare_model(model)  # model itself, or its torch.compile wrapper (same weights)
    scaler = torch.amp.GradScaler(device.type, enabled=speed.amp == "fp16")
    train_labels = train_df["label"].to_numpy(dtype=np.float32)
    method.on_train_start(model, train_labels)
    fit_loss(loss_fn, train_labels)  # e.g. GAI's label GMM: the training partition's labels only
    groups = method.param_groups(model, loss_fn, cfg)
    optimizer = make_optimizer(groups, cfg)
    scheduler = step_schedule(optimizer, groups, cfg) if optimizer is not None and cfg.lr_step > 0 else None

    history: list[dict] = []
    eval_rows: list[pd.DataFrame] = []
    val_rows: list[pd.DataFrame] = []
    start_epoch = 0
    ckpt_path = folder / "checkpoint_last.pt"
    if ckpt_path.is_file():  # resume
        state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if state.get("run_id") == run.run_id and state.get("version") == CHECKPOINT_VERSION:
            model.load_state_dict(state["model"])
            loss_fn.load_state_dict(state["loss"])
            if optimizer is not None and state.get("optimizer"):
                optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler"):
                scheduler.load_state_dict(state["scheduler"])
            if scaler.is_enabled() and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            history = json.loads(state["history"])
            start_epoch = int(state["epoch"]) + 1
            if (folder / "eval_history.csv").is_file():
                ev = pd.read_csv(folder / "eval_history.csv", dtype={"video_id": str})
                # an evaluation written after the checkpoint (killed before the next one) is redone
                eval_rows.append(ev[ev["epoch"] <= start_epoch])
            if (folder / "val_history.csv").is_file():
                ev = pd.read_csv(folder / "val_history.csv", dtype={"video_id": str})
                val_rows.append(ev[ev["epoch"] <= start_epoch])
            set_rng_states(state["rng"])
            log(f"[resume] {folder.name} from epoch {start_epoch + 1}")

    pin = speed.pin_memory
    test_loader = _loader(test_ds, max(1, cfg.batch_size), shuffle=False, seed=seed, epoch=0, workers=cfg.num_workers,
                          pin_memory=pin)
    val_loader = _loader(val_ds, max(1, cfg.batch_size), shuffle=False, seed=seed, epoch=0,
                         workers=cfg.num_workers, pin_memory=pin) if val_ds is not None else None
    epochs = cfg.epochs if optimizer is not None else 1
    t_start = time.time()
    for epoch in range(start_epoch, epochs):
        t_epoch = time.time()
        losses = []
        lrs = [g["lr"] for g in optimizer.param_groups] if optimizer is not None else None  # used in this epoch
        if optimizer is not None:
            model.train()
            train_ds.set_epoch(epoch)
            # BMC with a one-clip batch is identically zero: drop such a last batch.
            drop_last = len(train_ds) % cfg.batch_size == 1
            loader = _loader(train_ds, cfg.batch_size, shuffle=True, seed=seed, epoch=epoch,
                             workers=cfg.num_workers, drop_last=drop_last, pin_memory=pin)
            bar = tqdm(loader, desc=f"{folder.name[:40]} ep {epoch + 1}/{epochs}", leave=False, disable=not progress)
            for step, batch in enumerate(bar):
                batch = speed.to_device(batch)
                with speed.autocast():
                    loss = method.loss(loss_fn, method.forward(forward_model, batch), batch)
                if not torch.isfinite(loss):
                    raise DivergedError(f"non-finite training loss ({loss.item()}) at epoch {epoch + 1}, step {step + 1}")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()  # the identity unless amp=fp16
                if cfg.grad_clip > 0:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], cfg.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{losses[-1]:.4f}")
            if scheduler is not None:
                scheduler.step()
        entry = {"epoch": epoch + 1, "train_loss": float(np.mean(losses)) if losses else None,
                 "lr": lrs[0] if lrs else None, "lr_groups": lrs, "time_s": None}
        if (epoch + 1) % max(1, cfg.eval_every) == 0 or epoch + 1 == epochs:
            if cfg.precise_bn > 0 and optimizer is not None:
                train_ds.set_epoch(epoch)
                bn_loader = _loader(train_ds, cfg.batch_size, shuffle=True, seed=seed + 7717, epoch=epoch,
                                    workers=cfg.num_workers, pin_memory=pin)
                entry["precise_bn"] = recompute_bn_statistics(method, forward_model, bn_loader, cfg.precise_bn, speed)
            preds = evaluate(method, forward_model, test_loader, device, speed)
            m = regression_metrics(test_df["label"].to_numpy(), preds)
            entry.update({f"test_{k}": v for k, v in m.items() if k != "n"})
            eval_rows.append(pd.DataFrame({"epoch": epoch + 1, "video_id": test_df["video_id"],
                                           "label": test_df["label"], "prediction": preds}))
            if val_loader is not None:
                vpreds = evaluate(method, forward_model, val_loader, device, speed)
                vm = regression_metrics(val_df["label"].to_numpy(), vpreds)
                entry.update({f"val_{k}": v for k, v in vm.items() if k != "n"})
                val_rows.append(pd.DataFrame({"epoch": epoch + 1, "video_id": val_df["video_id"],
                                              "label": val_df["label"], "prediction": vpreds}))
                write_csv(folder / "val_history.csv", pd.concat(val_rows, ignore_index=True))
            write_csv(folder / "eval_history.csv", pd.concat(eval_rows, ignore_index=True))
        entry["time_s"] = time.time() - t_epoch
        history.append(entry)
        log(f"  {folder.name} epoch {epoch + 1}/{epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in entry.items() if isinstance(v, float) and k != "time_s"))
        if optimizer is not None and epoch + 1 < epochs:
            _save_checkpoint(ckpt_path, run, model, loss_fn, optimizer, scheduler, epoch, history, scaler)

    # final model, predictions, result
    final_preds = eval_rows[-1]
    final_preds = final_preds[final_preds["epoch"] == final_preds["epoch"].max()]
    predictions = pd.DataFrame({
        "video_id": test_df["video_id"], "subject": test_df["subject"], "expression": test_df["expression"],
        "split": part.name, "label": test_df["label"], "prediction": final_preds["prediction"].to_numpy(),
    })
    write_csv(folder / "predictions.csv", predictions)
    buf = _torch_bytes({"format": MODEL_FORMAT, "version": MODEL_VERSION,
                        "config": json.loads(json.dumps(run.config, default=str)),
                        "state_dict": model.state_dict(), "loss_state_dict": loss_fn.state_dict()})
    atomic_write_bytes(folder / "model.pt", buf)
    ckpt_path.unlink(missing_ok=True)
    all_evals = pd.concat(eval_rows, ignore_index=True)
    return {
        "status": "ok",
        "format_version": RESULT_FORMAT_VERSION,
        "run_id": run.run_id,
        "harness": {"qafe_bench": _version(), "protocol": protocol.name,
                    "protocol_version": getattr(protocol, "version", 1)},
        "metrics": {
            "final": regression_metrics(predictions["label"], predictions["prediction"]),
            "test_selected": _test_selected(all_evals, protocol.headline),
            **({"validation_selected": _validation_selected(pd.concat(val_rows, ignore_index=True), all_evals,
                                                            protocol.headline)} if val_rows else {}),
        },
        "protocol": {"name": protocol.name, "split": part.name, "headline": protocol.headline.name,
                     "test_samplings": protocol.test_samplings if protocol.test_clips == "random" else 1,
                     **part.info},
        "epochs": history,
        "wall_time_s": time.time() - t_start,
        "train_videos": int(len(train_df)),
        "validation_videos": int(len(val_df)),
        "test_videos": int(len(test_df)),
        "pretrained": pretrained_info,
        "from_scratch": from_scratch,
        "provenance": {**provenance(device), "dataset_content_hash": run.dataset.content_hash,
                       "dataset_manifest_backend": run.dataset.manifest.get("backend")},
    }


def validation_split(train: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out ``fraction`` of the training partition's subjects (at least one, at least one left
    to train on; drawn by the run seed) as a validation split: ``(train, validation)``, subject-disjoint.
    ``fraction`` 0: ``(train, empty)``.

    Raises:
        DataError: a fraction > 0 with fewer than two training subjects.
    """
    from .errors import DataError

    if fraction <= 0:
        return train, train.iloc[0:0]
    subjects = np.array(sorted(set(train["subject"].astype(str))))
    if len(subjects) < 2:
        raise DataError(f"a validation split needs at least 2 training subjects, the partition has {len(subjects)}")
    n_val = min(len(subjects) - 1, max(1, int(round(fraction * len(subjects)))))
    held = set(np.random.default_rng([int(seed), 271828]).permutation(subjects)[:n_val])
    is_val = train["subject"].astype(str).isin(held)
    return train[~is_val].reset_index(drop=True), train[is_val].reset_index(drop=True)


def _validation_selected(vals: pd.DataFrame, evals: pd.DataFrame, headline: MetricSpec = RHO) -> dict:
    """Test metrics of the evaluated epoch with the best VALIDATION ``headline`` metric (earliest on
    ties), with ``epoch`` and the validation metric as ``validation_<name>``: model selection that
    never looks at the test set."""
    best, best_epoch = None, None
    for epoch, grp in vals.groupby("epoch"):
        m = regression_metrics(grp["label"], grp["prediction"])
        if best is None or headline.better(m[headline.name], best[headline.name]):
            best, best_epoch = m, int(epoch)
    if best_epoch is None:
        return {}
    test = evals[evals["epoch"] == best_epoch]
    return {**regression_metrics(test["label"], test["prediction"]), "epoch": best_epoch,
            f"validation_{headline.name}": best[headline.name]}


def _test_selected(evals: pd.DataFrame, headline: MetricSpec = RHO) -> dict:
    """Metrics of the evaluated epoch with the best test ``headline`` metric (the official
    rule: highest rho on PFED5; lowest MAE on UNBC-McMaster), the earliest on ties; an epoch
    whose metric is undefined (NaN) is chosen only when every epoch's is."""
    best, best_epoch = None, None
    for epoch, grp in evals.groupby("epoch"):
        m = regression_metrics(grp["label"], grp["prediction"])
        if best is None or headline.better(m[headline.name], best[headline.name]):
            best, best_epoch = m, int(epoch)
    return {**best, "epoch": best_epoch} if best else {}


def _torch_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _version() -> str:
    import benchmark

    return benchmark.__version__


def _check_folder_is_this_run(folder: Path, run: ResolvedRun) -> None:
    """Refuse a run folder whose ``config.json`` belongs to another run id (a copied or renamed
    folder): nothing in it is touched."""
    from .errors import ConfigError

    p = folder / "config.json"
    if not p.is_file():
        return
    try:
        other = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return  # a half-written config of this run: rewritten below
    other_id = config_hash(other) if isinstance(other, dict) else None
    if other_id is not None and other_id != run.run_id:
        raise ConfigError(f"{folder}: this folder holds the config of run {other_id}, not of run {run.run_id}; "
                          "it was copied or renamed: move it away (or delete it) and start the run again")


def rng_states() -> dict:
    """Every random state a training step can draw from: torch CPU (and CUDA when present),
    numpy's global generator and Python's ``random``, as tensors and lists (loadable with
    ``torch.load(weights_only=True)``)."""
    import random

    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    import random

    torch.set_rng_state(states["torch"])
    if states.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    n = states["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    py = states["python"]
    random.setstate((py["version"], tuple(int(x) for x in py["state"].tolist()), py["gauss_next"]))


def _save_checkpoint(path: Path, run: ResolvedRun, model, loss_fn, optimizer, scheduler, epoch: int, history,
                     scaler=None) -> None:
    """Atomically write the epoch checkpoint: model, loss (e.g. a learned sigma, a GAI GMM),
    optimiser, scheduler, fp16 gradient scaler, every RNG state, the epoch and the history."""
    atomic_write_bytes(path, _torch_bytes({
        "version": CHECKPOINT_VERSION, "run_id": run.run_id, "epoch": epoch, "model": model.state_dict(),
        "loss": loss_fn.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler else None, "history": json.dumps(history),
        "rng": rng_states(), "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    }))


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu`` (``QAFE_BENCH_DEVICE`` overrides)."""
    return os.environ.get("QAFE_BENCH_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
