"""Metrics against hand-worked examples and independent formulas."""

import math

import pytest

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
