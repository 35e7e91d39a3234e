"""Runs: a resolved configuration, its stable id, and its record on disk.

A run is fully described by its resolved config (method + resolved options,
dataset content hash, protocol (and its fold file's hash), expression, split or fold, seed, scale with geometry, training
settings, pretrained files by content hash, control). Its id is a hash of that
config, so a finished run is skipped when asked again and an interrupted one
resumes from its last epoch checkpoint.

Run folder ``<runs_dir>/<method>-<expression>[-<fold>]-s<seed>-<id>/`` (the fold for
cross-validation protocols, :meth:`benchmark.protocols.Protocol.folder_tag`):

    config.json              the resolved config (written first)
    result.json              status ("ok" | "failed"), metrics (final epoch and
                             test-selected epoch), per-epoch history, timing,
                             provenance; or the error of a failed run
    predictions.csv          one row per test video: video_id, subject,
                             expression, split (the partition: official, fold<k>),
                             label, prediction (final model)
    eval_history.csv         epoch, video_id, label, prediction for every
                             evaluated epoch (for test-selected model selection)
    model.pt                 final weights + config (``qafe-bench score``)
    checkpoint_last.pt       per-epoch training state for resume (removed at the end)

Files are written atomically (temporary name + rename) and a run holds an
exclusive lock on ``.lock`` while it trains, so several processes can work on
one runs folder.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd

from .api import Method, TrainingConfig
from .cards import DatasetCard, load_card
from .data.prepared import PreparedDataset, atomic_write_text, sha256_file
from .errors import CheckpointError, ConfigError
from .protocols import Protocol, get_protocol
from .protocols.pfed5 import CLIP_LEN
from .registry import get_method
from .scales import ClipSettings, Scale, get_scale

CONTROLS = ("none", "shuffled_labels")


@dataclass
class RunSpec:
    """What a user (or a table) asks for; :func:`resolve` turns it into a config.

    Attributes:
        method: registry name.
        dataset: path of a prepared dataset.
        expression: expression name (or index) of the dataset card.
        seed: random seed (model init, sampling, augmentation).
        scale: ``tiny`` or ``paper``.
        options: method option overrides.
        training: training-setting overrides (applied after scale overrides).
        weights: role -> checkpoint path (e.g. ``{"rgb": ".../FormerDFER-DFEWset1-model_best.pth"}``).
        split: the protocol's partition: ``official`` (PFED5: the dataset's train/test
            column) or ``fold1`` .. ``fold5`` (UNBC-McMaster); None: the protocol's default
            (PFED5 ``official``; a cross-validation protocol has none and needs one named).
        control: ``none`` or ``shuffled_labels`` (training labels permuted across
            training videos: the chance-level control).
        validation: fraction of the training partition's subjects held out as a validation
            split (seeded by the run seed; 0: none, as the paper). With one, each evaluated epoch
            is also scored on it and the "validation-selected" epoch (best validation headline
            metric) gives an honest model selection beside the final epoch.
        clip_len: frames per clip at the paper scale instead of the protocol's (Table 3's
            80-frame R3D and Former-DFER rows); None: the protocol's (PFED5 80, UNBC 144).
    """

    method: str
    dataset: str | Path
    expression: str
    seed: int = 0
    scale: str = "tiny"
    options: dict = field(default_factory=dict)
    training: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)
    split: str | None = None
    control: str = "none"
    clip_len: int | None = None
    validation: float = 0.0


@dataclass
class ResolvedRun:
    """A resolved run: its config, id, folder and the live objects to execute it."""

    config: dict
    run_id: str
    folder: Path
    method: Method
    dataset: PreparedDataset
    card: DatasetCard
    scale: Scale
    training: TrainingConfig
    clip: ClipSettings
    protocol: Protocol | None = None
    spec: "RunSpec | None" = None


#: Training settings that cannot change a run's results beyond float32 rounding, left out of its id.
UNHASHED_TRAINING = ("num_workers", "compile", "channels_last")

#: Training settings added after run ids existed, left out of the id at this value (so that every
#: earlier run keeps its id) and hashed at any other.
HASHED_UNLESS_DEFAULT = {"amp": "none", "precise_bn": 0}


def hashed_config(config: dict) -> dict:
    """The part of a config that identifies a run: all but ``paths`` (where files
    are), pretrained files' names (their SHA-256 stays), the training settings of
    :data:`UNHASHED_TRAINING` (how fast) and those of :data:`HASHED_UNLESS_DEFAULT` at their default."""
    out = {k: v for k, v in config.items() if k != "paths"}
    if isinstance(out.get("pretrained"), dict):  # a checkpoint counts by its content, not by its file name
        out["pretrained"] = {r: v.get("sha256") if isinstance(v, dict) else v for r, v in out["pretrained"].items()}
    if isinstance(out.get("training"), dict):
        out["training"] = {k: v for k, v in out["training"].items() if k not in UNHASHED_TRAINING
                           and not (k in HASHED_UNLESS_DEFAULT and v == HASHED_UNLESS_DEFAULT[k])}
    return out


def config_hash(config: dict) -> str:
    """12 hex digits of SHA-256 over the canonical JSON of :func:`hashed_config`."""
    text = json.dumps(hashed_config(config), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def find_weights(method_cls: type[Method], weights_dir: str | Path | None) -> dict[str, Path]:
    """Role -> path of the method's original checkpoint files: :meth:`Method.locate_pretrained`
    (``weights_dir`` by original file name, plus a method's own library cache). Missing files
    are simply absent (the run then trains from scratch and records it)."""
    return method_cls.locate_pretrained(weights_dir)


def build_method(method_cls: type[Method], scale: Scale, options: dict, training: dict,
                 label_range: tuple[float, float], clip_len: int = CLIP_LEN
                 ) -> tuple[Method, ClipSettings, TrainingConfig]:
    """The method instance, clip settings and training settings a run of ``method_cls`` at
    ``scale`` uses: options = the method's ``scale_options`` for the scale, then ``options``;
    geometry = the scale's resolution of the method's input spec under the clip length
    ``clip_len`` (the protocol's, :attr:`benchmark.protocols.Protocol.clip_len`: PFED5 80,
    UNBC 144 frames, or a run's own); training = the method's defaults, then the scale's
    overrides, then ``training``. :func:`resolve` and the learning check's cost estimate both
    build a method this way.

    Raises:
        ConfigError: an unknown option or training field (with a suggestion).
    """
    options = scale.options_for(method_cls, options)
    clip = scale.resolve(method_cls(options, label_range=label_range).input_spec(), int(clip_len))
    method = method_cls(options, clip.geometry, label_range=label_range)
    settings = method.training_defaults().updated(scale.training, f"scale {scale.name}")
    return method, clip, settings.updated(training, "training overrides")


def resolve(spec: RunSpec, runs_dir: str | Path) -> ResolvedRun:
    """Validate ``spec`` and build the resolved config.

    Raises:
        ConfigError / UnknownMethodError / ManifestError: invalid method, option,
            scale, expression, control or dataset.
        CheckpointError: a weights path that does not exist.
    """
    method_cls = get_method(spec.method)
    scale = get_scale(spec.scale)
    dataset = PreparedDataset(spec.dataset)
    card = load_card(dataset.card_name)
    expression = card.expressions[card.expression_index(spec.expression)]
    if spec.control not in CONTROLS:
        raise ConfigError(f"unknown control {spec.control!r}; choose one of {', '.join(CONTROLS)}")
    protocol = get_protocol(card.protocol)
    split = protocol.check_partition(card, spec.split)
    if not 0.0 <= float(spec.validation) < 1.0:
        raise ConfigError(f"validation fraction must be in [0, 1), got {spec.validation!r}")
    clip_len = protocol.clip_len if spec.clip_len is None else int(spec.clip_len)
    fixed = method_cls(scale.options_for(method_cls, spec.options), label_range=card.label_range).input_spec().clip_len
    if spec.clip_len is not None and fixed is not None and fixed != clip_len:
        raise ConfigError(f"method {method_cls.name!r} fixes its clip at {fixed} frames; it cannot run "
                          f"clip_len={clip_len}")
    method, clip, training = build_method(method_cls, scale, spec.options, spec.training, card.label_range,
                                          clip_len)
    pretrained = {}
    for role, path in sorted(spec.weights.items()):
        if role not in method_cls.pretrained_files:
            raise ConfigError(f"method {method_cls.name!r} takes no {role!r} weights; roles: "
                              f"{', '.join(method_cls.pretrained_files) or '(none)'}")
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"{p}: no such checkpoint file (expected {method_cls.pretrained_files[role]})")
        pretrained[role] = {"file": p.name, "sha256": sha256_file(p)}
    # The from-scratch policy: every recipe part that assumes an absent file adapts (recorded) or refuses.
    from_scratch = method.adapt_from_scratch(set(pretrained), spec.options, spec.training)
    adapted_training = {k: v for rec in from_scratch for k, v in rec["training"].items()}
    if adapted_training:
        training = training.updated(adapted_training, f"from-scratch adaptation of method {method_cls.name!r}")
    config = {
        "method": method_cls.name,
        "options": options_before_adaptation(method.options, from_scratch),
        "deviations_from_paper": method.deviations_from_paper(),
        **({"from_scratch": from_scratch} if from_scratch else {}),
        "dataset": {"card": card.name, "content_hash": dataset.content_hash,
                    "landmark_scheme": dataset.manifest["landmark_scheme"]["name"],
                    "backend": dataset.manifest.get("backend", {}).get("name"),
                    "crop": dataset.crop_spec()},
        "protocol": card.protocol,
        "protocol_version": protocol.version,
        **({"protocol_info": info} if (info := protocol.config_info(card)) else {}),
        "expression": expression,
        "split": split,
        "seed": int(spec.seed),
        "scale": scale.name,
        "clip": clip.to_json(),
        "exemplars": asdict(method.exemplars) if method.exemplars is not None else None,
        "training": asdict(training),
        "pretrained": pretrained,
        "control": spec.control,
        **({"validation": float(spec.validation)} if spec.validation else {}),
        "paths": {"dataset": str(Path(spec.dataset).resolve()),
                  "weights": {r: str(Path(p).resolve()) for r, p in spec.weights.items()}},
    }
    run_id = config_hash(config)
    tag = protocol.folder_tag(split)
    folder = Path(runs_dir) / f"{method_cls.name}-{expression}{'-' + tag if tag else ''}-s{spec.seed}-{run_id}"
    return ResolvedRun(config, run_id, folder, method, dataset, card, scale, training, clip, protocol, spec)


def options_before_adaptation(options: dict, from_scratch: list[dict]) -> dict:
    """The run's options as asked (method defaults, scale, user), without the values a
    from-scratch adaptation set: what ``config["options"]`` records, so that a run with the
    released files and one without differ only in ``pretrained`` and ``from_scratch``."""
    out = dict(options)
    for rec in from_scratch:
        out.update(rec["options_before"])
    return out


def effective_options(config: dict) -> dict:
    """The option values a recorded run trained with: ``config["options"]`` updated by its
    from-scratch adaptations (:meth:`benchmark.api.Method.adapt_from_scratch`)."""
    out = dict(config.get("options", {}))
    for rec in config.get("from_scratch", []) or []:
        out.update(rec.get("options", {}))
    return out


def find_recorded_run(run: ResolvedRun, runs_dir: str | Path, ignore: tuple[str, ...] = ("pretrained", "from_scratch")
                      ) -> ResolvedRun | None:
    """A finished run in ``runs_dir`` whose config equals ``run``'s except for ``ignore``.

    Used by ``qafe-bench report`` when no ``--weights`` folder is given: a table
    re-rendered later finds the runs a ``reproduce --weights ...`` made (their ids
    hash the weights' contents). Among several matches the one with the most
    pretrained roles wins (then the folder name, for determinism).

    Returns:
        ``run`` with that run's id, folder and config, or None.
    """
    def key(cfg: dict) -> dict:
        out = {k: v for k, v in hashed_config(cfg).items() if k not in ignore}
        if "from_scratch" in ignore and isinstance(out.get("training"), dict):
            # training settings a from-scratch adaptation set (precise_bn) differ from a run with the files
            adapted = {k for rec in cfg.get("from_scratch") or [] for k in rec.get("training", {})}
            out["training"] = {k: v for k, v in out["training"].items() if k not in adapted}
        return out

    want = key(run.config)
    prefix = run.folder.name[: -len(run.run_id)]
    best = None
    for cfg_path in sorted(Path(runs_dir).glob(f"{prefix}*/config.json")):
        res = read_result(cfg_path.parent)
        if not res or res.get("status") != "ok":
            continue
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if key(cfg) == want and (best is None or len(cfg.get("pretrained", {})) > len(best[1].get("pretrained", {}))):
            best = (cfg_path.parent, cfg)
    if best is None:
        return None
    folder, cfg = best
    return replace(run, config=cfg, run_id=config_hash(cfg), folder=folder)


def read_result(folder: Path) -> dict | None:
    """The parsed ``result.json`` of a run folder, or None when absent/unreadable."""
    p = folder / "result.json"
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def write_json(path: Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON (NaN written as null)."""
    atomic_write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=False, default=str))


def _nan_to_none(obj: Any) -> Any:
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def write_csv(path: Path, df: pd.DataFrame) -> None:
    """Atomically write a DataFrame as CSV (no index)."""
    atomic_write_text(path, df.to_csv(index=False))


#: Seconds a run lock lives without a heartbeat (``QAFE_BENCH_LOCK_LIFETIME`` overrides): a holder
#: refreshes it every quarter of this; a crashed holder's lock is broken by the next process once it
#: has expired (at once, on the same host, when the holder's process is gone).
LOCK_LIFETIME_S = 120.0
LOCK_NAME = ".run.lock"


class RunLock:
    """Exclusive lock of one run folder that works across hosts on a shared (NFS) file system.

    Built on :mod:`flufl.lock` (GNU Mailman's NFS-safe lock: a claim file per host and process,
    hard-linked to ``<folder>/.run.lock``, with a lifetime), plus:

    * a **heartbeat**: a daemon thread refreshes the lifetime every ``lifetime / 4`` seconds while
      the lock is held, so a long training keeps it and a crashed holder stops refreshing;
    * **stale-lock recovery**: a lock whose lifetime (plus flufl's 10 s clock slop) has passed is
      broken by the next process that tries (flufl's rule); a lock held by a process of this host
      that no longer exists (killed with SIGKILL) is broken at once.

    Non-blocking: ``acquired`` is False when another live holder has it (the run is in progress
    elsewhere); the caller skips it and says so. Released on exit.

    Args:
        folder: the run folder (created if needed).
        lifetime: seconds (default :data:`LOCK_LIFETIME_S` or ``$QAFE_BENCH_LOCK_LIFETIME``).
        wait: seconds to keep trying before giving up (default 2: long enough to break an expired lock).
    """

    def __init__(self, folder: Path, lifetime: float | None = None, wait: float = 2.0) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.lifetime = float(lifetime or os.environ.get("QAFE_BENCH_LOCK_LIFETIME") or LOCK_LIFETIME_S)
        self.wait = float(wait)
        self.acquired = False
        self.lost = False
        self._lock = None
        self._stop = None
        self._thread = None

    def _break_if_stale(self, lock) -> None:
        from flufl.lock import LockState

        if lock.state == LockState.stale:  # same host, the holder's process is gone
            try:
                claim = self.path.read_text().strip()
            except OSError:
                return
            for stale in (self.path, Path(claim)):
                try:
                    stale.unlink()
                except OSError:
                    pass

    def __enter__(self) -> "RunLock":
        import threading
        from datetime import timedelta

        import logging

        from flufl.lock import Lock, TimeOutError

        logging.getLogger("flufl.lock").setLevel(logging.CRITICAL)  # "timed out" is our normal "busy"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = Lock(str(self.path), lifetime=timedelta(seconds=self.lifetime))
        self._break_if_stale(lock)
        try:
            lock.lock(timeout=timedelta(seconds=self.wait))
        except TimeOutError:
            return self
        self._lock, self.acquired = lock, True
        self._stop = threading.Event()

        def beat() -> None:
            while not self._stop.wait(self.lifetime / 4):
                try:
                    lock.refresh()
                except Exception:  # noqa: BLE001 - the lock was broken by another process
                    self.lost = True
                    return

        self._thread = threading.Thread(target=beat, name=f"heartbeat {self.path}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None:
            self._stop.set()
            self._thread.join()
        if self._lock is not None:
            self._lock.unlock(unconditionally=True)
            self._lock = None


def load_model_file(path: str | Path) -> dict:
    """Read a run's ``model.pt`` safely (``weights_only=True``).

    Returns:
        ``{"format", "version", "config", "state_dict"}``.

    Raises:
        CheckpointError: missing file or not a qafe-bench model file.
    """
    import torch

    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such model file (a finished run folder holds model.pt)")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a bad file
        raise CheckpointError(f"{p}: cannot be read safely as a qafe-bench model file ({exc})") from None
    if not isinstance(obj, dict) or obj.get("format") != "qafe-bench-model":
        raise CheckpointError(f"{p}: not a qafe-bench model file (no 'format': 'qafe-bench-model')")
    return obj
