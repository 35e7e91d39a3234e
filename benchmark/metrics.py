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


#: Bootstrap resamples behind every confidence interval in the reports.
BOOTSTRAP_RESAMPLES = 2000


def _weighted_ranks(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties averaged) of ``x (N,)`` in the multiset where element i occurs
    ``w[r, i]`` times, for every row r of ``w (R, N)``: ``(R, N)``. Equal to ranking the expanded
    multiset (a resample drawn with replacement) with ``scipy.stats.rankdata``."""
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])  # first sorted position of each tie group
    ends = np.r_[starts[1:], len(xs)] - 1
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(xs)]))
    ws = w[:, order]
    cs = np.cumsum(ws, axis=1)
    before = cs[:, starts] - ws[:, starts]
    total = cs[:, ends] - before
    ranks_sorted = (before + (total + 1) / 2)[:, group]
    ranks = np.empty_like(ranks_sorted)
    ranks[:, order] = ranks_sorted
    return ranks


def _weighted_metric(y: np.ndarray, p: np.ndarray, w: np.ndarray, metric: str) -> np.ndarray:
    """The metric of every resample given as multiplicities: ``y (N,)``, ``p (S, N)``, ``w (R, N)`` ->
    ``(S, R)``; rho is NaN where a resample's labels or predictions are constant."""
    n = w.sum(axis=1)
    if metric == "mae":
        return np.stack([(w * np.abs(ps - y)).sum(axis=1) / n for ps in p])
    if metric == "rmse":
        return np.stack([np.sqrt((w * (ps - y) ** 2).sum(axis=1) / n) for ps in p])
    if metric != "rho_x100":
        raise ValueError(f"no bootstrap for metric {metric!r}; use rho_x100, mae or rmse")
    ry = _weighted_ranks(y, w)
    ry = ry - (w * ry).sum(axis=1, keepdims=True) / n[:, None]
    out = []
    for ps in p:
        rp = _weighted_ranks(ps, w)
        rp = rp - (w * rp).sum(axis=1, keepdims=True) / n[:, None]
        den = np.sqrt((w * ry ** 2).sum(axis=1) * (w * rp ** 2).sum(axis=1))
        with np.errstate(invalid="ignore", divide="ignore"):
            rho = 100.0 * (w * ry * rp).sum(axis=1) / den
        out.append(np.where(den > 1e-12, rho, np.nan))
    return np.stack(out)


def bootstrap_values(labels: Sequence[float], predictions, metric: str, *, clusters: Sequence | None = None,
                     n_resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """The bootstrap distribution behind :func:`bootstrap_ci`: the metric (averaged over seeds) of
    each of ``n_resamples`` resamples of test videos or clusters, NaN where undefined.

    A resample is represented by how many times it holds each video (its cluster's count in the
    draw), and the metrics are computed on those multiplicities directly (vectorised over the
    resamples; identical to expanding each resample and ranking it with scipy).

    Args: as :func:`bootstrap_ci`.

    Returns:
        ``(n_resamples,)`` float array; all NaN with fewer than 2 clusters.

    Raises:
        ValueError: shapes that differ, an unknown metric.
    """
    y = np.asarray(labels, dtype=float).reshape(-1)
    p = np.asarray(predictions, dtype=float)
    p = p.reshape(1, -1) if p.ndim == 1 else p
    if p.ndim != 2 or p.shape[1] != y.size:
        raise ValueError(f"labels {y.shape} and predictions {p.shape} do not describe the same videos")
    if metric not in ("rho_x100", "mae", "rmse"):
        raise ValueError(f"no bootstrap for metric {metric!r}; use rho_x100, mae or rmse")
    ids = np.arange(y.size) if clusters is None else np.asarray(clusters)
    if ids.shape != y.shape:
        raise ValueError(f"clusters {ids.shape} and labels {y.shape} differ in length")
    if y.size == 0:
        return np.full(int(n_resamples), np.nan)
    _, inverse = np.unique(ids, return_inverse=True)
    n_clusters = int(inverse.max()) + 1
    if n_clusters < 2:
        return np.full(int(n_resamples), np.nan)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_clusters, size=(int(n_resamples), n_clusters))
    counts = np.zeros((int(n_resamples), n_clusters))
    np.add.at(counts, (np.arange(int(n_resamples))[:, None], draws), 1.0)
    values = _weighted_metric(y, p, counts[:, inverse], metric)  # (S, R)
    return values.mean(axis=0)  # a NaN for any seed leaves the resample out


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Efron's percentile interval of a bootstrap distribution, ignoring undefined (NaN) resamples;
    ``(nan, nan)`` when fewer than half of them are defined.

    Raises:
        ValueError: a level outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = np.asarray(values, dtype=float)
    ok = values[~np.isnan(values)]
    if ok.size == 0 or ok.size < values.size / 2:
        return float("nan"), float("nan")
    a = (1 - level) / 2
    return float(np.percentile(ok, 100 * a)), float(np.percentile(ok, 100 * (1 - a)))


def bootstrap_ci(labels: Sequence[float], predictions, metric: str, *, clusters: Sequence | None = None,
                 n_resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
                 ) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a metric over test videos.

    Each resample draws test videos with replacement (or, with ``clusters``, whole clusters,
    e.g. subjects, with replacement, keeping every video of a drawn cluster: a subject with
    several videos is one unit of evidence); the metric is computed on the resample for every
    seed's predictions and averaged over seeds (the table's cell is the seed mean); the interval
    is the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles of those values (Efron's
    percentile method, as ``scipy.stats.bootstrap(method="percentile")``). Resamples where the
    metric is undefined (rho of a resample with constant labels or predictions) are left out.

    Args:
        labels: ``(N,)`` true labels.
        predictions: ``(N,)`` or ``(S, N)`` (S seeds, the same N test videos in the same order).
        metric: ``rho_x100``, ``mae`` or ``rmse``.
        clusters: ``(N,)`` cluster id of each video (None: every video its own cluster).
        n_resamples: resamples (:data:`BOOTSTRAP_RESAMPLES`).
        level: coverage (0.95).
        seed: the generator's seed: a fixed seed gives identical intervals.

    Returns:
        ``(low, high)`` in the metric's units; ``(nan, nan)`` with fewer than 2 clusters or when
        fewer than half of the resamples give a defined value.

    Raises:
        ValueError: shapes that differ, an unknown metric, a level outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    values = bootstrap_values(labels, predictions, metric, clusters=clusters, n_resamples=n_resamples, seed=seed)
    return percentile_interval(values, level)
