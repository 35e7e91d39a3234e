"""Learning check: does a method learn the synthetic severity from motion?

A method is trained on a single-expression synthetic dataset (tiny geometry) twice
with the same recipe: once on the true labels and once on labels permuted across
the training videos (``control="shuffled_labels"``, the chance-level control). Its
test Spearman's rho x 100 on the true labels must beat the shuffled control by a
margin. The conformance suite runs it for every in-tree method that can learn within
the CI budget (``tests/test_conformance.py``; the others are listed with their
measured reason in :data:`NOT_LEARNING_AT_CI_BUDGET`); ``scripts/learning_check.py``
prints the numbers.

Why a recipe and not the paper's: the paper trains 100 epochs of SGD lr 1e-3 with
a learned BMC noise sigma. Cut to a few CPU minutes (6 epochs) that recipe stays at
chance on the synthetic data (QAFE-Net test rho between -1 and 15 over our trials,
the learned sigma drifting to 5). Adam lr 3e-4 without weight decay and an MSE loss
learn in 6 epochs of 200 videos, so the check uses them; it checks that the
architecture and the data path carry the motion cue, not the paper's optimiser.
"""

from __future__ import annotations

import time
from pathlib import Path

from .data.synthetic import generate_synthetic

LEARNING_TRAINING = {"epochs": 6, "reps_per_epoch": 1, "optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0,
                     "lr_step": 0, "eval_every": 6}
"""Training overrides of the check (on top of the ``tiny`` scale)."""

LEARNING_OPTIONS = {
    "qafe_net": {"loss": "mse", "heatmap_mode": "official"},
}
"""Method options of the check, per method. QAFE-Net uses the released code's JET
heatmaps and an MSE loss: with the paper's defaults (RGB-weighted heatmaps, learned
BMC sigma) and the same Adam recipe its test rho x 100 was 17.1; with these options
80.3 (shuffled control -7.9), 154 s + 160 s on 2 cores."""

NOT_LEARNING_AT_CI_BUDGET = {
    "former_dfer": (
        "RGB only: at 40 px the synthetic expression moves a few pixels against per-subject contrast and "
        "sensor noise (raw mouth-region frame-difference energy has rho -0.13 with severity, landmark "
        "displacement -0.41); trained from scratch for 6 epochs its test rho x 100 stayed at chance "
        "(2.5 with Adam 3e-4 + MSE, 6.9 with Adam 1e-3, 6.9 with learned BMC). The landmark heatmap "
        "stream is what carries the cue at this budget, which is the paper's point."),
}
"""In-tree methods the check cannot assert within the CI budget, with the measured reason.
``scripts/learning_check.py former_dfer`` re-measures them."""

LEARNING_MARGIN = 30.0
"""rho x 100 points by which the true-label run must beat the shuffled-label run."""

LEARNING_EXPRESSION = "smile"


def generate_learning_dataset(out: str | Path, seed: int = 7) -> Path:
    """Generate the check's dataset: ``smile`` only, 150 subjects (100 train / 50 test),
    2 videos each, 16-24 frames, the ``tiny`` preset (48 px). About 5 s on one core."""
    names = ("sit_at_rest", "smile", "frown", "squeeze_eyes", "clench_teeth")
    generate_synthetic(out, scale="tiny", seed=seed, expressions=(LEARNING_EXPRESSION,), subjects=150,
                       train_subjects=100, videos_per_expression=2, min_length=dict.fromkeys(names, 16),
                       mean_length=dict.fromkeys(names, 20), max_length=dict.fromkeys(names, 24))
    return Path(out)


def learning_check(method: str, dataset: str | Path, runs_dir: str | Path, *, seed: int = 0,
                   options: dict | None = None, training: dict | None = None) -> dict:
    """Train ``method`` on true and on shuffled labels with the same recipe.

    Args:
        method: registry name.
        dataset: a dataset from :func:`generate_learning_dataset`.
        runs_dir: where the two runs are recorded (finished runs are reused).
        options / training: override :data:`LEARNING_OPTIONS` / :data:`LEARNING_TRAINING`.

    Returns:
        ``{"rho_x100": {"none": r, "shuffled_labels": r}, "margin": r_true - r_shuffled,
        "passed": margin >= LEARNING_MARGIN, "wall_s": {...}, "status": {...}}``; a run
        that failed (e.g. diverged) has rho NaN and status ``failed``.
    """
    from .engine import execute
    from .runs import RunSpec, resolve

    opts = LEARNING_OPTIONS.get(method, {}) if options is None else options
    train = LEARNING_TRAINING if training is None else training
    rho, wall, status = {}, {}, {}
    for control in ("none", "shuffled_labels"):
        t0 = time.perf_counter()
        run = resolve(RunSpec(method, dataset, LEARNING_EXPRESSION, seed=seed, scale="tiny", options=opts,
                              training=train, control=control), runs_dir)
        result = execute(run, progress=False, log=lambda s: None)
        wall[control] = time.perf_counter() - t0
        status[control] = result["status"]
        rho[control] = result["metrics"]["final"]["rho_x100"] if result["status"] == "ok" else float("nan")
    margin = rho["none"] - rho["shuffled_labels"]
    return {"rho_x100": rho, "margin": margin, "passed": bool(margin >= LEARNING_MARGIN), "wall_s": wall,
            "status": status}


__all__ = ["LEARNING_TRAINING", "LEARNING_OPTIONS", "NOT_LEARNING_AT_CI_BUDGET", "LEARNING_MARGIN",
           "LEARNING_EXPRESSION", "generate_learning_dataset", "learning_check"]
