"""Losses against their published formulas, with hand-worked numbers.

BMC (Balanced MSE, batch-based Monte-Carlo; Ren et al., CVPR 2022, Algorithm 1 / official
``jiawei-ren/BalancedMSE`` ``bmc_loss``)::

    logits[i, j] = -0.5 * (pred_i - target_j)^2 / sigma^2
    loss         = CrossEntropy(logits, labels = arange(B)) * stopgrad(2 * sigma^2)

Hand derivation of the gradients used below (q_ij = softmax_j(logits[i, :]),
d_ij = pred_i - target_j, s = 2 sigma^2 a constant because of the stop-gradient)::

    dL/dpred_i = s * (1/B) * (1/sigma^2) * [d_ii - sum_j q_ij d_ij]
               = (2/B) * (sum_j q_ij target_j - target_i)
    dL/dsigma  = s * (1/B) * (1/sigma^3) * sum_i [sum_j q_ij d_ij^2 - d_ii^2]
               = (2 / (B sigma)) * sum_i [sum_j q_ij d_ij^2 - d_ii^2]

Without the stop-gradient dL/dsigma would gain CE * d(2 sigma^2)/dsigma = 4 sigma * CE.
"""

from __future__ import annotations

import math

import pytest
import torch

from benchmark.losses import BMC_SIGMA_LR, BMCLoss, MSELoss

# The 3-element batch used throughout.
PRED = [0.0, 1.0, 3.0]
TARGET = [0.0, 2.0, 2.0]

# ---- sigma = 1 (noise variance 1) -------------------------------------------------------
# d_ij = pred_i - target_j:     row 0: ( 0, -2, -2)   row 1: (1, -1, -1)   row 2: (3, 1, 1)
# logits = -0.5 d^2:            row 0: ( 0, -2, -2)   row 1: (-.5,-.5,-.5) row 2: (-4.5,-.5,-.5)
# log-softmax at the diagonal (labels 0, 1, 2):
#   row 0: 0 - log(1 + 2 e^-2)                = -log(1.2706706) = -0.2395448
#   row 1: all equal                          = -log 3          = -1.0986123
#   row 2: -0.5 - log(e^-4.5 + 2 e^-0.5)      = -log(2 + e^-4)  = -0.7022633
# CE = (0.2395448 + 1.0986123 + 0.7022633) / 3 = 2.0404204 / 3 = 0.6801401
# scale 2 sigma^2 = 2  ->  loss = 1.3602803
CE_SIGMA1 = (math.log(1 + 2 * math.exp(-2)) + math.log(3) + math.log(2 + math.exp(-4))) / 3
LOSS_SIGMA1 = 2 * CE_SIGMA1
# softmax rows: q0 = (1, e^-2, e^-2) / 1.2706706 = (0.7869860, 0.1065070, 0.1065070)
#               q1 = (1/3, 1/3, 1/3)
#               q2 = (e^-4, 1, 1) / (2 + e^-4)   = (0.0090747, 0.4954626, 0.4954626)
# dL/dpred = (2/3) * (E_q[target] - target_i):
#   row 0: E = 2 * 0.2130140 = 0.4260280 -> (2/3) * 0.4260280      =  0.2840187
#   row 1: E = 4/3                       -> (2/3) * (4/3 - 2)      = -0.4444444
#   row 2: E = 2 * 0.9909253 = 1.9818506 -> (2/3) * (1.9818506 - 2) = -0.0120996
_Q0_OFF = math.exp(-2) / (1 + 2 * math.exp(-2))
_Q2_FIRST = math.exp(-4) / (2 + math.exp(-4))
GRAD_PRED_SIGMA1 = [(2 / 3) * (2 * 2 * _Q0_OFF - 0.0), (2 / 3) * (4 / 3 - 2), (2 / 3) * (2 * (1 - _Q2_FIRST) - 2)]
# dL/dsigma = (2/3) * sum_i [E_q d^2 - d_ii^2]:
#   row 0: 4 * 0.2130140 - 0 = 0.8520560;  row 1: 1 - 1 = 0;
#   row 2: 9 * 0.0090747 + 1 * 0.9909253 - 1 = 0.0725977
#   sum = 0.9246537 -> dL/dsigma = 0.6164358   (without stop-gradient: + 4 * 0.6801401 = 3.3370)
GRAD_SIGMA_SIGMA1 = (2 / 3) * (4 * 2 * _Q0_OFF + 0.0 + (9 * _Q2_FIRST + (1 - _Q2_FIRST) - 1))

# ---- sigma = 2 (noise variance 4) -------------------------------------------------------
# logits = -d^2 / 8:  row 0: (0, -.5, -.5)  row 1: (-.125, -.125, -.125)  row 2: (-1.125, -.125, -.125)
#   -log-softmax at the diagonal: row 0: log(1 + 2 e^-.5) = 0.7943760; row 1: log 3 = 1.0986123;
#                                 row 2: log(2 + e^-1)    = 0.8619948
# CE = 2.7549831 / 3 = 0.9183277; scale 2 * 4 = 8 -> loss = 7.3466216
LOSS_SIGMA2 = 8 * (math.log(1 + 2 * math.exp(-0.5)) + math.log(3) + math.log(2 + math.exp(-1))) / 3
# q0 off-diagonal = e^-.5 / (1 + 2 e^-.5) = 0.2740686;  q2 first = e^-1 / (2 + e^-1) = 0.1553624
# dL/dpred: row 0: (2/3) * 2 * 0.5481372 = 0.7308496; row 1: -0.4444444;
#           row 2: (2/3) * (2 * 0.8446376 - 2) = -0.2071499
# dL/dsigma = (2 / (3 * 2)) * [4 * 0.5481372 + 0 + (9 * 0.1553624 + 0.8446376 - 1)]
#           = (2.1925488 + 1.2428992) / 3 = 1.1451493
_Q0_OFF2 = math.exp(-0.5) / (1 + 2 * math.exp(-0.5))
_Q2_FIRST2 = math.exp(-1) / (2 + math.exp(-1))
GRAD_PRED_SIGMA2 = [(2 / 3) * 2 * 2 * _Q0_OFF2, (2 / 3) * (4 / 3 - 2), (2 / 3) * (2 * (1 - _Q2_FIRST2) - 2)]
GRAD_SIGMA_SIGMA2 = (1 / 3) * (4 * 2 * _Q0_OFF2 + (9 * _Q2_FIRST2 + (1 - _Q2_FIRST2) - 1))


def _run(sigma, learn_sigma=True, pred=PRED, target=TARGET, pred_shape=None, target_shape=None):
    p = torch.tensor(pred, dtype=torch.float32)
    if pred_shape is not None:
        p = p.reshape(pred_shape)
    p.requires_grad_(True)
    t = torch.tensor(target, dtype=torch.float32)
    if target_shape is not None:
        t = t.reshape(target_shape)
    loss_fn = BMCLoss(init_noise_sigma=sigma, learn_sigma=learn_sigma)
    loss = loss_fn(p, t)
    loss.backward()
    return loss, p.grad, loss_fn


def test_hand_numbers_are_what_the_comments_say():
    # guards the constants above against a typo in the closed forms
    assert LOSS_SIGMA1 == pytest.approx(1.3602803, abs=1e-6)
    assert GRAD_PRED_SIGMA1 == pytest.approx([0.2840187, -0.4444444, -0.0120996], abs=1e-6)
    assert GRAD_SIGMA_SIGMA1 == pytest.approx(0.6164358, abs=1e-6)
    assert LOSS_SIGMA2 == pytest.approx(7.3466216, abs=1e-5)
    assert GRAD_PRED_SIGMA2 == pytest.approx([0.7308496, -0.4444444, -0.2071499], abs=1e-6)
    assert GRAD_SIGMA_SIGMA2 == pytest.approx(1.1451493, abs=1e-6)


def test_bmc_value_sigma1_hand_worked():
    loss, _, _ = _run(1.0)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(LOSS_SIGMA1, abs=1e-6)


def test_bmc_value_sigma2_hand_worked():
    # catches a missing square on sigma, -1.0 instead of -0.5, or a wrong scale factor
    loss, _, _ = _run(2.0)
    assert loss.item() == pytest.approx(LOSS_SIGMA2, abs=1e-5)


def test_bmc_grad_pred_hand_derived():
    _, g1, _ = _run(1.0)
    assert g1.tolist() == pytest.approx(GRAD_PRED_SIGMA1, abs=1e-6)
    _, g2, _ = _run(2.0)
    assert g2.tolist() == pytest.approx(GRAD_PRED_SIGMA2, abs=1e-6)


def test_bmc_grad_sigma_has_stop_gradient_on_scale():
    _, _, f1 = _run(1.0)
    assert f1.noise_sigma.grad.item() == pytest.approx(GRAD_SIGMA_SIGMA1, abs=1e-6)
    # without .detach() on the scale the gradient would be 0.6164 + 4 * 0.6801 = 3.337
    assert abs(f1.noise_sigma.grad.item() - (GRAD_SIGMA_SIGMA1 + 4 * CE_SIGMA1)) > 1.0
    _, _, f2 = _run(2.0)
    assert f2.noise_sigma.grad.item() == pytest.approx(GRAD_SIGMA_SIGMA2, abs=1e-5)


def test_bmc_logits_are_pred_rows_target_columns():
    # swapping pred and target transposes the logit matrix: the column-softmax CE is different
    # (sigma 1: rows of the transposed matrix are (0, -.5, -4.5), (-2, -.5, -.5), (-2, -.5, -.5)
    #  -> CE = [log(1 + e^-.5 + e^-4.5) + 2 log(e^-1.5 + 2)] / 3 = (0.4809681 + 2 * 0.7989162) / 3 = 0.6929335,
    #  loss 1.3858670 vs 1.3602803 in the right orientation)
    swapped, _, _ = _run(1.0, pred=TARGET, target=PRED)
    expected = 2 * (math.log(1 + math.exp(-0.5) + math.exp(-4.5)) + 2 * math.log(math.exp(-1.5) + 2)) / 3
    assert swapped.item() == pytest.approx(expected, abs=1e-6)
    assert swapped.item() == pytest.approx(1.3858670, abs=1e-6)
    assert abs(swapped.item() - LOSS_SIGMA1) > 0.02


def test_bmc_learn_sigma_flag():
    loss_fn = BMCLoss()
    assert loss_fn.noise_sigma.item() == 1.0  # the published default init_noise_sigma
    assert loss_fn.noise_sigma.requires_grad is True  # Balanced MSE learns sigma by default
    assert [n for n, _ in loss_fn.named_parameters()] == ["noise_sigma"]
    _, g, frozen = _run(1.0, learn_sigma=False)
    assert frozen.noise_sigma.requires_grad is False
    assert frozen.noise_sigma.grad is None
    assert g.tolist() == pytest.approx(GRAD_PRED_SIGMA1, abs=1e-6)  # pred gradient unchanged
    assert BMC_SIGMA_LR == 1e-2


def test_bmc_init_sigma_is_stored():
    assert BMCLoss(init_noise_sigma=2.5).noise_sigma.item() == 2.5
    assert BMCLoss(init_noise_sigma=2).noise_sigma.dtype == torch.float32


def test_bmc_batch_of_one_is_zero():
    loss, g, f = _run(1.0, pred=[3.0], target=[0.0])
    assert loss.item() == 0.0
    assert g.tolist() == [0.0]
    assert f.noise_sigma.grad.item() == 0.0


def test_bmc_shapes_b1_and_b_agree():
    ref, gref, _ = _run(1.0)
    for ps, ts in [((3, 1), (3,)), ((3,), (3, 1)), ((3, 1), (3, 1))]:
        loss, g, _ = _run(1.0, pred_shape=ps, target_shape=ts)
        assert loss.item() == pytest.approx(ref.item(), abs=1e-7)
        assert g.shape == torch.Size(ps)
        assert g.reshape(-1).tolist() == pytest.approx(gref.tolist(), abs=1e-7)


def test_bmc_integer_targets_and_double_pred():
    # labels arrive as integers (severity 0..4) and predictions may be float64
    p = torch.tensor(PRED, dtype=torch.float64)
    t = torch.tensor([0, 2, 2])
    loss = BMCLoss()(p, t)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(LOSS_SIGMA1, abs=1e-6)


def test_bmc_perfect_predictions_still_penalise_close_neighbours():
    # pred == target, B = 2, targets 0 and 1: logits rows (0, -.5), (-.5, 0):
    # CE = log(1 + e^-.5) for each row = 0.4740770; loss = 2 * 0.4740770
    loss = BMCLoss()(torch.tensor([0.0, 1.0]), torch.tensor([0.0, 1.0]))
    assert loss.item() == pytest.approx(2 * math.log(1 + math.exp(-0.5)), abs=1e-6)


def test_mse_hand_worked():
    # errors (1, 0, 2) -> squares (1, 0, 4) -> mean 5/3
    pred = torch.tensor([[1.0], [2.0], [4.0]], requires_grad=True)
    loss = MSELoss()(pred, torch.tensor([0, 2, 2]))
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(5 / 3, abs=1e-6)
    loss.backward()
    # d/dpred mean((p - t)^2) = 2 (p - t) / B = (2/3, 0, 4/3)
    assert pred.grad.reshape(-1).tolist() == pytest.approx([2 / 3, 0.0, 4 / 3], abs=1e-6)


def test_mse_flattens_and_casts():
    # (B, 1) float64 predictions against (B,) integer labels: errors (1, 3) -> mean square 5
    loss = MSELoss()(torch.tensor([[1.0], [3.0]], dtype=torch.float64), torch.tensor([0, 0]))
    assert loss.item() == pytest.approx(5.0)


# ---- Focal-R (Yang et al., ICML 2021; YyzHarry/imbalanced-regression loss.py) -----------------
# pred (0, 1, 4), target (0, 2, 2): |e| = (0, 1, 2). Sigmoid activation, beta 0.2, gamma 1:
#   w(e) = 2 sigmoid(0.2 e) - 1 = tanh(0.1 e):  w(0) = 0, w(1) = tanh(0.1) = 0.0996680, w(2) = tanh(0.2) = 0.1973753
#   focal-MSE = (0 + 1 * 0.0996680 + 4 * 0.1973753) / 3 = 0.8891692 / 3 = 0.2963897
#   focal-L1  = (0 + 1 * 0.0996680 + 2 * 0.1973753) / 3 = 0.4944186 / 3 = 0.1648062
# The weight is not detached: d/dpred_1 of e^2 w(e) / 3 at pred - target = -1 is
#   -(1/3) [2 e w(e) + e^2 w'(e)], w'(e) = 0.1 (1 - tanh(0.1 e)^2):  -(1/3) (0.1993360 + 0.0990066) = -0.0994475
FOCAL_PRED, FOCAL_TARGET = [0.0, 1.0, 4.0], [0.0, 2.0, 2.0]


def test_focal_mse_and_l1_hand_worked():
    from benchmark.losses import FocalRLoss

    t = torch.tensor(FOCAL_TARGET)
    assert FocalRLoss("mse")(torch.tensor(FOCAL_PRED), t).item() == pytest.approx(0.2963897, abs=1e-6)
    assert FocalRLoss("l1")(torch.tensor(FOCAL_PRED), t).item() == pytest.approx(0.1648062, abs=1e-6)
    # tanh activation: w(e) = tanh(0.2 e): (0 + 1 * tanh(0.2) + 4 * tanh(0.4)) / 3 = (0.1973753 + 1.5197961) / 3
    assert FocalRLoss("mse", activate="tanh")(torch.tensor(FOCAL_PRED), t).item() == pytest.approx(0.5723905, abs=1e-6)
    # gamma 2 squares the weight: (0.0996680^2 + 4 * 0.1973753^2) / 3 = (0.0099337 + 0.1558286) / 3
    assert FocalRLoss("mse", gamma=2)(torch.tensor(FOCAL_PRED), t).item() == pytest.approx(0.0552541, abs=1e-6)


def test_focal_mse_gradient_flows_through_the_weight():
    from benchmark.losses import FocalRLoss

    p = torch.tensor(FOCAL_PRED, requires_grad=True)
    FocalRLoss("mse")(p, torch.tensor(FOCAL_TARGET)).backward()
    assert p.grad[1].item() == pytest.approx(-0.0994475, abs=1e-6)
    assert p.grad[0].item() == 0.0
    with pytest.raises(ValueError, match="kind must be 'mse' or 'l1'"):
        FocalRLoss("huber")
    with pytest.raises(ValueError, match="activate must be 'sigmoid' or 'tanh'"):
        FocalRLoss("mse", activate="relu")


# ---- GAI (Balanced MSE, official gai_loss) ------------------------------------------------------
# GMM means (0, 3), variances (1, 1), weights (0.5, 0.5); sigma 1; pred (0, 1, 3), target (0, 2, 2):
#   mse_i = d_i^2 / 2 + 0.5 log 1 = (0, 0.5, 0.5)
#   bal_i = logsumexp_k[-0.5 log 2 - (p_i - m_k)^2 / 4 + log 0.5]
#         = -0.5 log 2 + log 0.5 + log(e^{-(p-0)^2/4} + e^{-(p-3)^2/4})
#     p=0: log(1 + e^-2.25) = 0.1002066;  p=1: log(e^-0.25 + e^-1) = 0.1368710;  p=3: 0.1002066
#     constant -0.5 log 2 - log 2 = -1.0397208  ->  bal = (-0.9395142, -0.9028498, -0.9395142)
#   loss = mean(mse + bal) * 2 sigma^2 = 2 * (-0.9395142 - 0.4028498 - 0.4395142) / 3 = -1.1879188
def _gai(sigma=1.0, learn=True):
    from benchmark.losses import GAILoss

    f = GAILoss(2, init_noise_sigma=sigma, learn_sigma=learn)
    f.gmm_means.copy_(torch.tensor([0.0, 3.0], dtype=torch.float64))
    f.gmm_variances.copy_(torch.tensor([1.0, 1.0], dtype=torch.float64))
    f.gmm_weights.copy_(torch.tensor([0.5, 0.5], dtype=torch.float64))
    f.fitted.fill_(True)
    return f


def test_gai_hand_worked():
    loss = _gai()(torch.tensor(PRED), torch.tensor(TARGET))
    assert loss.item() == pytest.approx(-1.1879188, abs=1e-6)
    const = -0.5 * math.log(2) + math.log(0.5)
    bal = [const + math.log(math.exp(-p ** 2 / 4) + math.exp(-(p - 3) ** 2 / 4)) for p in PRED]
    assert loss.item() == pytest.approx(2 * (bal[0] + bal[1] + 0.5 + bal[2] + 0.5) / 3, abs=1e-6)


def test_gai_sigma_gradient_has_stop_gradient_on_the_scale():
    # with sigma = s: L = (2 s^2)_const * mean_i[d_i^2 / (2 s^2) + log s + bal_i(s)], so at s = 1
    # dL/ds = 2 * mean_i[-d_i^2 + 1 + dbal_i/ds], dbal_i/ds = sum_k r_ik (-s / V + s (p_i - m_k)^2 / V^2), V = 1 + s^2 = 2,
    # r_ik the softmax weights of bal's terms: p=0: r = (1, e^-2.25) / (1 + e^-2.25); p=1: (e^-0.25, e^-1) / (...); p=3 mirrors p=0
    f = _gai()
    f(torch.tensor(PRED), torch.tensor(TARGET)).backward()

    def dbal(p):
        terms = [math.exp(-(p - m) ** 2 / 4) for m in (0.0, 3.0)]
        return sum(t / sum(terms) * (-1 / 2 + (p - m) ** 2 / 4) for t, m in zip(terms, (0.0, 3.0)))

    d2 = [(p - t) ** 2 for p, t in zip(PRED, TARGET)]
    expected = 2 * sum(-d + 1 + dbal(p) for d, p in zip(d2, PRED)) / 3
    assert f.noise_sigma.grad.item() == pytest.approx(expected, abs=1e-5)


def test_gai_fits_its_gmm_on_the_labels_it_is_given_and_refuses_to_run_unfitted():
    from benchmark.losses import GAILoss

    f = GAILoss(2)
    with pytest.raises(RuntimeError, match="not fitted"):
        f(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.0]))
    # two clusters of labels, 0-ish and 4-ish: the GMM finds them (means, equal weights)
    f.fit_labels([0, 0, 0, 1, 4, 4, 4, 3])
    assert sorted(f.gmm_means.tolist()) == pytest.approx([0.25, 3.75], abs=1e-3)
    assert f.gmm_weights.tolist() == pytest.approx([0.5, 0.5], abs=1e-3)
    # variance of (0, 0, 0, 1) is 0.1875, plus sklearn's reg_covar 1e-6
    assert f.gmm_variances.tolist() == pytest.approx([0.1875, 0.1875], abs=1e-4)
    with pytest.raises(ValueError, match="cannot fit a 2-component GMM"):
        GAILoss(2).fit_labels([1.0])
    # the fitted GMM is part of the state dict (saved with the run, restored on resume)
    assert {"gmm_means", "gmm_variances", "gmm_weights", "fitted"} <= set(f.state_dict())


# ---- classification (paper Table 9) ----------------------------------------------------------
# logits ((0, 1, 2), (1, 1, 1)), labels (2, 0):
#   -log p: row 0: log(1 + e + e^2) - 2 = 0.4076059;  row 1: log 3 = 1.0986123   -> CE = 0.7531091
#   focal (gamma 2): (1 - p)^2 (-log p): p0 = e^-0.4076059 = 0.6652410 -> 0.1120635 * 0.4076059 = 0.0456778
#                                        p1 = 1/3 -> 0.4444444 * 1.0986123 = 0.4882721   -> mean 0.2669750
def test_classification_losses_hand_worked():
    from benchmark.losses import ClassificationLoss

    logits, labels = torch.tensor([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]), torch.tensor([2.0, 0.0])
    assert ClassificationLoss(3, 0.0, "ce")(logits, labels).item() == pytest.approx(0.7531091, abs=1e-6)
    assert ClassificationLoss(3, 0.0, "focal")(logits, labels).item() == pytest.approx(0.2669750, abs=1e-6)
    # labels are shifted by the range's lower end: labels (3, 1) with low = 1 are classes (2, 0)
    assert ClassificationLoss(3, 1.0, "ce")(logits, torch.tensor([3.0, 1.0])).item() == pytest.approx(0.7531091, abs=1e-6)
    with pytest.raises(ValueError, match=r"integer labels in \[0, 2\]"):
        ClassificationLoss(3, 0.0)(logits, torch.tensor([2.5, 0.0]))
    with pytest.raises(ValueError, match=r"integer labels in \[0, 2\]"):
        ClassificationLoss(3, 0.0)(logits, torch.tensor([3.0, 0.0]))
