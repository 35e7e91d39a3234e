"""Metrics against hand-worked examples and independent formulas."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmark.metrics import avg_corr, fisher_z_avg_corr, mae, regression_metrics, rmse, spearman_rho_x100


def test_spearman_hand_worked_with_ties():
    # labels 0,1,1,2 -> ranks 1, 2.5, 2.5, 4; predictions 0.1, 0.4, 0.2, 0.9 -> ranks 1, 3, 2, 4.
    # Pearson of the rank vectors: d = rank - 2.5:  x = (-1.5, 0, 0, 1.5), y = (-1.5, .5, -.5, 1.5)
    # sum xy = 2.25 + 0 + 0 + 2.25 = 4.5; sum x^2 = 4.5; sum y^2 = 2.25+.25+.25+2.25 = 5
    expected = 100 * 4.5 / math.sqrt(4.5 * 5.0)
    assert spearman_rho_x100([0, 1, 1, 2], [0.1, 0.4, 0.2, 0.9]) == pytest.approx(expected, abs=1e-9)


def test_spearman_perfect_and_reversed():
    assert spearman_rho_x100([0, 1, 2, 3], [5, 6, 7, 100]) == pytest.approx(100.0)
    assert spearman_rho_x100([0, 1, 2, 3], [3, 2, 1, 0]) == pytest.approx(-100.0)


def test_spearman_undefined_cases_are_nan():
    assert math.isnan(spearman_rho_x100([1, 2, 3], [2, 2, 2]))  # constant prediction (the dummy)
    assert math.isnan(spearman_rho_x100([1], [1]))


def test_spearman_rejects_diverged_predictions():
    with pytest.raises(ValueError, match="diverged"):
        spearman_rho_x100([0, 1, 2], [0.0, float("nan"), 1.0])
    with pytest.raises(ValueError, match="length"):
        spearman_rho_x100([0, 1, 2], [0.0, 1.0])


def test_avg_corr_is_arithmetic_mean_as_printed_in_table2():
    # QAFE-Net row of paper Table 2: printed Avg. Corr. 65.35
    rhos = [75.57, 68.29, 63.26, 59.60, 60.01]
    assert avg_corr(rhos) == pytest.approx(65.346, abs=1e-3)
    assert round(avg_corr(rhos), 2) == 65.35
    assert math.isnan(avg_corr([70.0, float("nan")]))


def test_fisher_z_mean_matches_formula_and_differs_from_arithmetic():
    rhos = [90.0, 10.0]
    z = (math.atanh(0.9) + math.atanh(0.1)) / 2
    assert fisher_z_avg_corr(rhos) == pytest.approx(100 * math.tanh(z))
    assert fisher_z_avg_corr(rhos) > avg_corr(rhos) + 5  # 62.2 vs 50: not the same statistic


def test_mae_rmse_hand_worked():
    y = [0, 2, 4]
    p = [1, 2, 1]  # errors 1, 0, -3
    assert mae(y, p) == pytest.approx(4 / 3)
    assert rmse(y, p) == pytest.approx(math.sqrt(10 / 3))
    m = regression_metrics(y, p)
    assert m["n"] == 3 and m["mae"] == pytest.approx(4 / 3)


# ---- hand-worked cases that pin the exact numbers (added for mutation testing) ----------


def test_spearman_ties_in_both_vectors_hand_ranked():
    # labels 1, 1, 2, 3      -> average ranks 1.5, 1.5, 3, 4
    # predictions 2, 1, 1, 3 -> average ranks 3, 1.5, 1.5, 4
    # centred (mean 2.5): x = (-1, -1, .5, 1.5), y = (.5, -1, -1, 1.5)
    # sum xy = -.5 + 1 - .5 + 2.25 = 2.25; sum x^2 = sum y^2 = 4.5 -> rho = 0.5 -> 50
    # (the tie-free shortcut 1 - 6 sum d^2 / (n (n^2 - 1)) would give 1 - 6 * 4.5 / 60 = 55)
    assert spearman_rho_x100([1, 1, 2, 3], [2.0, 1.0, 1.0, 3.0]) == pytest.approx(50.0, abs=1e-9)


def test_spearman_is_symmetric_and_rank_based():
    y = [0, 1, 1, 2]
    p = [0.1, 0.4, 0.2, 0.9]
    expected = 100 * 4.5 / math.sqrt(4.5 * 5.0)  # see test_spearman_hand_worked_with_ties
    # a monotone transform of the predictions does not change rho
    assert spearman_rho_x100(y, [math.exp(10 * v) for v in p]) == pytest.approx(expected, abs=1e-9)
    # negating the predictions flips the sign
    assert spearman_rho_x100(y, [-v for v in p]) == pytest.approx(-expected, abs=1e-9)


def test_spearman_two_videos_is_defined():
    # n = 2 is the smallest defined case: +-100
    assert spearman_rho_x100([0, 4], [1.0, 2.0]) == pytest.approx(100.0)
    assert spearman_rho_x100([0, 4], [2.0, 1.0]) == pytest.approx(-100.0)


def test_spearman_nan_rules():
    assert math.isnan(spearman_rho_x100([2, 2, 2], [0.1, 0.5, 0.9]))  # constant labels
    assert math.isnan(spearman_rho_x100([], []))
    # constant predictions: a returned NaN (a float), not an exception and not 0
    r = spearman_rho_x100([1, 2], [3, 3])
    assert isinstance(r, float) and math.isnan(r)
    with pytest.raises(ValueError, match="diverged"):
        spearman_rho_x100([0, 1, 2], [0.0, float("inf"), 1.0])
    with pytest.raises(ValueError, match="diverged"):
        spearman_rho_x100([0, 1, 2], [0.0, -float("inf"), 1.0])
    # (N, 1) predictions are flattened, not rejected
    assert spearman_rho_x100([0, 1, 2], [[0.0], [1.0], [2.0]]) == pytest.approx(100.0)


def test_avg_corr_hand_and_nan_rules():
    # (80 + 60 + 10) / 3 = 50
    assert avg_corr([80.0, 60.0, 10.0]) == pytest.approx(50.0)
    assert avg_corr(iter([40.0, -20.0])) == pytest.approx(10.0)  # any iterable
    assert math.isnan(avg_corr([]))
    assert math.isnan(avg_corr([float("nan"), 70.0]))


def test_fisher_z_hand_worked():
    # rho 0.6 and 0.2: exp(2 atanh r) = (1 + r) / (1 - r) = 4 and 1.5, so exp(2 mean z) = sqrt(6)
    # tanh(mean z) = (sqrt 6 - 1) / (sqrt 6 + 1) = 1.4494897 / 3.4494897 = 0.4202041 -> 42.02041
    assert fisher_z_avg_corr([60.0, 20.0]) == pytest.approx(42.02041, abs=1e-5)
    # a single value is returned unchanged; symmetric values average to 0
    assert fisher_z_avg_corr([37.0]) == pytest.approx(37.0)
    assert fisher_z_avg_corr([50.0, -50.0]) == pytest.approx(0.0, abs=1e-12)


def test_fisher_z_clips_perfect_correlations_and_nan_rules():
    # +-100 are clipped to +-99.999 (atanh finite): the mean of two clipped values is the clip itself
    assert fisher_z_avg_corr([100.0, 100.0]) == pytest.approx(99.999, abs=1e-9)
    assert fisher_z_avg_corr([-100.0, -100.0]) == pytest.approx(-99.999, abs=1e-9)
    assert math.isfinite(fisher_z_avg_corr([100.0, 0.0]))
    # 100 clipped to 0.99999: exp(2 z) = 1.99999 / 0.00001 = 199999; with 0: exp(2 mean z) = sqrt(199999)
    # = 447.21248 -> tanh = 446.21248 / 448.21248 = 0.9955378 -> 99.55378
    assert fisher_z_avg_corr([100.0, 0.0]) == pytest.approx(99.55378, abs=1e-4)
    assert math.isnan(fisher_z_avg_corr([]))
    assert math.isnan(fisher_z_avg_corr([50.0, float("nan")]))


def test_mae_rmse_second_hand_example():
    # labels 10, 0, 5, 5; predictions 7, 1, 5, 9 -> errors -3, 1, 0, 4
    # MAE = (3 + 1 + 0 + 4) / 4 = 2;  RMSE = sqrt((9 + 1 + 0 + 16) / 4) = sqrt(6.5) = 2.5495098
    y = [10, 0, 5, 5]
    p = [7, 1, 5, 9]
    assert mae(y, p) == pytest.approx(2.0)
    assert rmse(y, p) == pytest.approx(math.sqrt(6.5))
    assert rmse(y, p) > mae(y, p)  # RMSE >= MAE always; strictly here (unequal errors)
    assert mae(y, y) == 0.0 and rmse(y, y) == 0.0


def test_regression_metrics_all_keys_hand_worked():
    y = [0, 2, 4]
    p = [1, 2, 1]  # errors 1, 0, -3; ranks of p: 1.5, 3, 1.5 vs labels 1, 2, 3
    # rho: x = (-1, 0, 1), y = (-.5, 1, -.5) -> sum xy = .5 - .5 = 0 -> rho = 0
    m = regression_metrics(y, p)
    assert set(m) == {"rho_x100", "mae", "rmse", "n"}
    assert m["rho_x100"] == pytest.approx(0.0, abs=1e-9)
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(10 / 3))
    assert m["n"] == 3 and isinstance(m["n"], int)


def test_spearman_flattens_column_labels():
    # labels stored as an (N, 1) column are flattened like the predictions
    assert spearman_rho_x100([[0], [1], [2]], [0.0, 1.0, 2.0]) == pytest.approx(100.0)
    assert spearman_rho_x100([[0], [1], [2]], [[2.0], [1.0], [0.0]]) == pytest.approx(-100.0)


def test_spearman_missing_prediction_is_a_divergence():
    # a NaN prediction written to JSON comes back as null/None: still "diverged", not a TypeError
    with pytest.raises(ValueError, match=r"^predictions contain NaN/inf: the run diverged$"):
        spearman_rho_x100([0, 1, 2], [0.0, None, 1.0])


def test_undefined_cases_return_nan_without_warnings():
    # the guards return NaN themselves instead of letting scipy/numpy warn
    # (ConstantInputWarning, "Mean of empty slice")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert math.isnan(spearman_rho_x100([1, 2, 3], [2, 2, 2]))  # constant predictions
        assert math.isnan(spearman_rho_x100([2, 2, 2], [1, 2, 3]))  # constant labels
        assert math.isnan(spearman_rho_x100([2, 2, 2], [1, 1, 1]))  # both constant
        assert math.isnan(avg_corr([]))
        assert math.isnan(avg_corr([float("nan")]))
        assert math.isnan(fisher_z_avg_corr([]))
        assert math.isnan(fisher_z_avg_corr([float("nan")]))


def test_single_expression_averages():
    assert avg_corr([37.0]) == pytest.approx(37.0)
    assert fisher_z_avg_corr([-12.5]) == pytest.approx(-12.5)


def test_averages_treat_missing_json_values_as_nan():
    # run results store NaN as JSON null: a None rho is missing, so the average is NaN
    assert math.isnan(avg_corr([70.0, None]))
    assert math.isnan(fisher_z_avg_corr([70.0, None]))


# ------------------------------------------------------------------ bootstrap confidence intervals
def _fixed_predictions():
    """A fixed prediction file: 40 test videos of 20 subjects (two each), labels 0-4."""
    rng = np.random.default_rng(123)
    labels = np.repeat(rng.integers(0, 5, 20), 2).astype(float)
    preds = labels + rng.normal(0, 1.2, 40)
    subjects = np.repeat([f"s{i:02d}" for i in range(20)], 2)  # sorted as numbered: cluster g = subject g
    return labels, preds, subjects


@pytest.mark.parametrize("metric", ["rho_x100", "mae", "rmse"])
def test_bootstrap_ci_equals_scipy_within_monte_carlo_error(metric):
    """Videos as the resampling unit: the interval equals scipy.stats.bootstrap's percentile
    interval (an independent implementation, other random draws) within Monte Carlo error, contains
    the point estimate, and a fixed seed repeats it exactly."""
    from scipy.stats import bootstrap

    from benchmark.metrics import bootstrap_ci

    y, p, _ = _fixed_predictions()
    stat = {"rho_x100": lambda a, b: 100 * stats.spearmanr(a, b).statistic,
            "mae": lambda a, b: np.mean(np.abs(a - b)), "rmse": lambda a, b: np.sqrt(np.mean((a - b) ** 2))}[metric]
    ref = bootstrap((y, p), stat, paired=True, vectorized=False, n_resamples=4000, method="percentile",
                    random_state=7).confidence_interval
    lo, hi = bootstrap_ci(y, p, metric, n_resamples=4000, seed=0)
    width = ref.high - ref.low
    assert lo == pytest.approx(ref.low, abs=0.08 * width) and hi == pytest.approx(ref.high, abs=0.08 * width)
    point = stat(y, p)
    assert lo <= point <= hi
    assert bootstrap_ci(y, p, metric, n_resamples=4000, seed=0) == (lo, hi)
    assert bootstrap_ci(y, p, metric, n_resamples=4000, seed=1) != (lo, hi)


def test_bootstrap_ci_resamples_subjects_as_clusters_and_averages_seeds():
    """With two videos per subject, resampling subjects equals resampling the subject-level pairs
    (a hand-rolled loop with the same draws); two seeds' predictions are averaged per resample."""
    from benchmark.metrics import bootstrap_ci

    y, p, subjects = _fixed_predictions()
    p2 = p + np.random.default_rng(5).normal(0, 0.5, 40)
    lo, hi = bootstrap_ci(y, np.stack([p, p2]), "mae", clusters=subjects, n_resamples=500, seed=3)
    draws = np.random.default_rng(3).integers(0, 20, size=(500, 20))
    vals = []
    for d in draws:
        rows = np.concatenate([[2 * g, 2 * g + 1] for g in d])
        vals.append((np.mean(np.abs(p[rows] - y[rows])) + np.mean(np.abs(p2[rows] - y[rows]))) / 2)
    assert (lo, hi) == pytest.approx((np.percentile(vals, 2.5), np.percentile(vals, 97.5)), abs=1e-12)


def test_bootstrap_ci_undefined_cases_and_errors():
    from benchmark.metrics import bootstrap_ci

    lo, hi = bootstrap_ci([1.0], [1.0], "mae")
    assert np.isnan(lo) and np.isnan(hi)  # one video: nothing to resample
    lo, hi = bootstrap_ci([0, 1, 2, 3], [1, 1, 1, 1], "rho_x100")
    assert np.isnan(lo) and np.isnan(hi)  # constant predictions: rho never defined
    with pytest.raises(ValueError, match="do not describe the same videos"):
        bootstrap_ci([0, 1], [0, 1, 2], "mae")
    with pytest.raises(ValueError, match="no bootstrap for metric 'kendall'"):
        bootstrap_ci([0, 1], [0, 1], "kendall")
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_ci([0, 1], [0, 1], "mae", level=1.5)
