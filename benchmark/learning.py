"""Learning check: does a method learn the synthetic severity from motion?

A method is trained on a single-expression synthetic dataset (tiny geometry) twice
with the same recipe: once on the true labels and once on labels permuted across
the training videos (``control="shuffled_labels"``, the chance-level control). Its
test Spearman's rho x 100 on the true labels must beat the shuffled control by a
margin. The conformance suite runs it for every in-tree learnable method
(``tests/test_conformance.py``); ``scripts/learning_check.py`` prints the numbers.

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
from .errors import ConfigError

LEARNING_TRAINING = {"epochs": 6, "reps_per_epoch": 1, "optimizer": "adam", "lr": 3e-4, "weight_decay": 0.0,
                     "lr_step": 0, "eval_every": 6}
"""Training overrides of the check (on top of the ``tiny`` scale)."""

LEARNING_DATA = {
    "tiny": {},
    "nuisance_free": {"noise_sigma": (0.0, 0.0), "head_motion": (0.0, 0.0, 0.0), "illumination": (1.0, 1.0, 0.0),
                      "expression_gain": 4.0},
}
"""Dataset variants of the check: synthetic spec overrides on top of the ``tiny`` preset.
``nuisance_free`` removes sensor noise, head drift and the illumination ramp and
doubles the expressions again; severity still lives only in the motion."""

LEARNING_RECIPES = {
    "qafe_net": {"options": {"loss": "mse", "heatmap_mode": "official"}, "data": "tiny", "asserted": True},
    "former_dfer": {"options": {"loss": "mse"}, "data": "nuisance_free", "asserted": False,
                    "why": "RGB only: at chance on 'tiny' in 6 CPU epochs; seed-dependent (11.3 .. 87.8) on "
                           "'nuisance_free'; see LEARNING_RECIPES"},
}
"""Per method: method options, dataset variant, whether CI asserts the margin (and
``why`` not, when it does not).

QAFE-Net, on the ``tiny`` data, uses the released code's JET heatmaps and an MSE
loss: with the paper's defaults (RGB-weighted heatmaps, learned BMC sigma) and the
same Adam recipe its test rho x 100 was 17.1; with these options 80.3 (shuffled
control -7.9), 154 s + 160 s on 2 cores.

Former-DFER (RGB only) is measured, not asserted. On the ``tiny`` data it stays at
chance at this budget: at 40 px the expression moves a few pixels against a per-video
illumination ramp of up to 30 %, sensor noise and head drift (raw mouth-region
frame-difference energy has rho -0.13 with severity, landmark displacement -0.41);
6 epochs gave test rho 2.5 (Adam 3e-4, MSE), 6.9 (Adam 1e-3), 6.9 (learned BMC),
-7.4 (illumination calmed only). On the ``nuisance_free`` variant one initialisation
reached 87.8 (train 89.7) and another 11.3 (shuffled 4.2): the RGB path carries the
motion, but 6 CPU epochs are too few to make the margin reliable. The landmark
heatmap stream is what copes with the nuisances at this budget (the paper's point)."""

LEARNING_MARGIN = 30.0
"""rho x 100 points by which the true-label run must beat the shuffled-label run."""

LEARNING_EXPRESSION = "smile"


def generate_learning_dataset(out: str | Path, variant: str = "tiny", seed: int = 7) -> Path:
    """Generate a dataset of the check: ``smile`` only, 150 subjects (100 train / 50
    test), 2 videos each, 16-24 frames, the ``tiny`` preset (48 px) with the
    :data:`LEARNING_DATA` overrides of ``variant``. About 5 s on one core.

    Raises:
        ConfigError: unknown variant.
    """
    if variant not in LEARNING_DATA:
        raise ConfigError(f"unknown learning-check dataset variant {variant!r}; choose one of "
                          f"{', '.join(LEARNING_DATA)}")
    names = ("sit_at_rest", "smile", "frown", "squeeze_eyes", "clench_teeth")
    generate_synthetic(out, scale="tiny", seed=seed, expressions=(LEARNING_EXPRESSION,), subjects=150,
                       train_subjects=100, videos_per_expression=2, min_length=dict.fromkeys(names, 16),
                       mean_length=dict.fromkeys(names, 20), max_length=dict.fromkeys(names, 24),
                       **LEARNING_DATA[variant])
    return Path(out)


def learning_check(method: str, dataset: str | Path, runs_dir: str | Path, *, seed: int = 0,
                   options: dict | None = None, training: dict | None = None) -> dict:
    """Train ``method`` on true and on shuffled labels with the same recipe.

    Args:
        method: registry name.
        dataset: a dataset from :func:`generate_learning_dataset` (the method's
            recipe names the variant).
        runs_dir: where the two runs are recorded (finished runs are reused).
        options / training: override the recipe's options / :data:`LEARNING_TRAINING`.

    Returns:
        ``{"rho_x100": {"none": r, "shuffled_labels": r}, "margin": r_true - r_shuffled,
        "passed": margin >= LEARNING_MARGIN, "wall_s": {...}, "status": {...}}``; a run
        that failed (e.g. diverged) has rho NaN and status ``failed``.
    """
    from .engine import execute
    from .runs import RunSpec, resolve

    opts = LEARNING_RECIPES.get(method, {}).get("options", {}) if options is None else options
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


__all__ = ["LEARNING_TRAINING", "LEARNING_DATA", "LEARNING_RECIPES", "LEARNING_MARGIN",
           "LEARNING_EXPRESSION", "generate_learning_dataset", "learning_check"]
