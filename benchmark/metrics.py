"""Evaluation metrics.

* Spearman's rho x 100 per expression (PFED5; paper Tables 2 and 4-10), computed
  with :func:`scipy.stats.spearmanr` over per-video predictions as the official
  ``main_PFED5.py`` does.
* "Avg. Corr." as the paper prints it: the arithmetic mean of the per-expression
  rho values (checked against every row of the paper's tables but three, see
  ``reports/published``). The Fisher-z mean (``tanh(mean(atanh(rho)))``) is
  available and always labelled as such.
* MAE and RMSE in label units (UNBC-McMaster VAS 0-10; paper Table 3).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
from scipy import stats


def spearman_rho_x100(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """Spearman's rank correlation between labels and predictions, times 100.

    Args:
        labels: ``(N,)`` ground-truth scores (e.g. severity 0..4).
        predictions: ``(N,)`` predicted scores.

    Returns:
        rho x 100 in [-100, 100]; NaN when undefined (fewer than 2 videos, or
        constant labels or predictions, as scipy returns).

    Raises:
        ValueError: different lengths, or non-finite predictions (a diverged run
            must be recorded as failed, not scored).
    """
    y = np.asarray(labels, dtype=float).reshape(-1)
    p = np.asarray(predictions, dtype=float).reshape(-1)
    if y.shape != p.shape:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} differ in length")
    if not np.isfinite(p).all():
        raise ValueError("predictions contain NaN/inf: the run diverged")
    if y.size < 2 or np.ptp(y) == 0 or np.ptp(p) == 0:
        return float("nan")
    return float(stats.spearmanr(y, p).statistic) * 100.0


def avg_corr(rhos_x100: Iterable[float]) -> float:
    """The paper's "Avg. Corr.": arithmetic mean of per-expression rho x 100.

    Returns NaN if any value is NaN (a missing expression must not be averaged away).
    """
    v = np.asarray(list(rhos_x100), dtype=float)
    if v.size == 0 or np.isnan(v).any():
        return float("nan")
    return float(v.mean())


def fisher_z_avg_corr(rhos_x100: Iterable[float]) -> float:
    """Fisher-z average of rho x 100 values: ``100 * tanh(mean(atanh(rho / 100)))``.

    The statistically usual way to average correlations; the paper does NOT use it
    (its "Avg. Corr." is the arithmetic mean, :func:`avg_corr`). Values of +-100
    are clipped to +-99.999 to keep atanh finite. NaN if any value is NaN.
    """
    v = np.asarray(list(rhos_x100), dtype=float) / 100.0
    if v.size == 0 or np.isnan(v).any():
        return float("nan")
    v = np.clip(v, -0.99999, 0.99999)
    return float(np.tanh(np.arctanh(v).mean()) * 100.0)


def mae(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """Mean absolute error in label units (e.g. VAS points)."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(predictions, dtype=float)
    return float(np.mean(np.abs(p - y)))


def rmse(labels: Sequence[float], predictions: Sequence[float]) -> float:
    """Root mean squared error in label units."""
    y = np.asarray(labels, dtype=float)
    p = np.asarray(predictions, dtype=float)
    return float(math.sqrt(np.mean((p - y) ** 2)))


def regression_metrics(labels: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """All per-run metrics: ``rho_x100``, ``mae``, ``rmse``, ``n`` (number of videos)."""
    return {
        "rho_x100": spearman_rho_x100(labels, predictions),
        "mae": mae(labels, predictions),
        "rmse": rmse(labels, predictions),
        "n": int(len(labels)),
    }
