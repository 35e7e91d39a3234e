"""Regression losses used by the compared methods.

* :class:`BMCLoss` -- Balanced MSE, batch-based Monte-Carlo (Ren et al., CVPR 2022,
  official ``jiawei-ren/BalancedMSE`` ``imdb-wiki-dir/balanaced_mse.py``), the
  QAFE-Net loss (paper section 4, Table 6 "BMC"; QAFE-Net
  ``dataloader/ibmse/balancedMSE.py``).
* :class:`MSELoss` -- plain mean squared error over a batch of scores.
* :class:`FocalRLoss` -- Focal-L1 / Focal-MSE (Yang et al., ICML 2021), Table 6.
* :class:`GAILoss` -- Balanced MSE, GMM-based analytical integration, its GMM fitted on
  the training labels only (:meth:`GAILoss.fit_labels`), Table 6.
* :class:`ClassificationLoss` -- cross-entropy / focal loss over severity classes, Table 9.

Every regression loss maps ``pred (B,)`` and ``target (B,)`` (label units, e.g. severity
0..4) to a scalar; the classification loss maps ``logits (B, C)`` and ``target (B,)``.
A loss with a ``fit_labels(labels)`` method depends on the training label distribution:
the engine calls it once with the training partition's labels before training.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Learning rate of the BMC noise sigma in the official Balanced MSE training
#: script (``--sigma_lr`` default, imdb-wiki-dir/train.py); QAFE-Net never
#: optimises sigma (its optimiser does not receive the loss's parameter).
BMC_SIGMA_LR = 1e-2


class BMCLoss(nn.Module):
    """Balanced MSE, batch-based Monte-Carlo variant.

    ``logits[i, j] = -(pred_i - target_j)^2 / (2 sigma^2)`` over the ``B x B`` batch,
    ``loss = CrossEntropy(logits, labels=arange(B)) * stopgrad(2 sigma^2)``.

    Args:
        init_noise_sigma: initial noise sigma in label units (1.0 in QAFE-Net and
            Balanced MSE).
        learn_sigma: sigma is an optimised parameter (Balanced MSE as published;
            give it its own parameter group at :data:`BMC_SIGMA_LR`) or frozen at its
            initial value (QAFE-Net's released ``main_PFED5.py``, where the
            parameter is never handed to the optimiser).

    Shapes: ``pred (B,)`` or ``(B, 1)``, ``target`` likewise; returns a scalar.
    With ``B == 1`` the loss is identically zero (a one-way softmax): the engine
    drops incomplete last batches for this reason.
    """

    def __init__(self, init_noise_sigma: float = 1.0, learn_sigma: bool = True) -> None:
        super().__init__()
        self.noise_sigma = nn.Parameter(torch.tensor(float(init_noise_sigma)), requires_grad=learn_sigma)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.reshape(-1, 1).float()
        target = target.reshape(1, -1).to(pred)
        noise_var = self.noise_sigma.to(pred) ** 2
        logits = -0.5 * (pred - target) ** 2 / noise_var
        labels = torch.arange(pred.shape[0], device=pred.device)
        return F.cross_entropy(logits, labels) * (2 * noise_var).detach()


class MSELoss(nn.Module):
    """Mean squared error ``mean((pred - target)^2)``; shapes ``(B,)`` -> scalar."""

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred.reshape(-1).float(), target.reshape(-1).to(pred.dtype))


# ---------------------------------------------------------------------------------------------
# Paper Table 6's other regression losses and Table 9's classification losses.
#: Focal-R defaults of Yang et al., "Delving into Deep Imbalanced Regression", ICML 2021
#: (YyzHarry/imbalanced-regression ``loss.py`` ``weighted_focal_{mse,l1}_loss``: activate
#: 'sigmoid', beta 0.2, gamma 1); QAFE-Net's ``FocalRLoss`` copy has the same defaults.
FOCAL_R_BETA = 0.2
FOCAL_R_GAMMA = 1.0
#: GMM components of the GAI loss: QAFE-Net ``preprocess_gmm_PD.py`` ``--K`` default 2 (the
#: Balanced MSE IMDB-WIKI script's default is 8).
GAI_COMPONENTS = 2


class FocalRLoss(nn.Module):
    """Focal-R regression loss (Yang et al., ICML 2021, section 3 "Focal-R"; official
    ``weighted_focal_mse_loss`` / ``weighted_focal_l1_loss`` without sample weights)::

        e    = |pred - target|
        w    = (2 sigmoid(beta e) - 1)^gamma      (activate='sigmoid', the default)
             = tanh(beta e)^gamma                 (activate='tanh')
        loss = mean(base(e) * w),  base = e^2 (``kind='mse'``) or e (``kind='l1'``)

    The weight is not detached (the original multiplies in place, so gradients flow
    through it). Shapes: ``pred (B,)``, ``target (B,)`` -> scalar.

    Raises:
        ValueError: unknown ``kind`` or ``activate``.
    """

    def __init__(self, kind: str = "mse", beta: float = FOCAL_R_BETA, gamma: float = FOCAL_R_GAMMA,
                 activate: str = "sigmoid") -> None:
        super().__init__()
        if kind not in ("mse", "l1"):
            raise ValueError(f"FocalRLoss kind must be 'mse' or 'l1', got {kind!r}")
        if activate not in ("sigmoid", "tanh"):
            raise ValueError(f"FocalRLoss activate must be 'sigmoid' or 'tanh', got {activate!r}")
        self.kind, self.beta, self.gamma, self.activate = kind, float(beta), float(gamma), activate

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.reshape(-1).float()
        target = target.reshape(-1).to(pred)
        err = (pred - target).abs()
        base = err ** 2 if self.kind == "mse" else err
        if self.activate == "tanh":
            weight = torch.tanh(self.beta * err) ** self.gamma
        else:
            weight = (2 * torch.sigmoid(self.beta * err) - 1) ** self.gamma
        return (base * weight).mean()


class GAILoss(nn.Module):
    """Balanced MSE, GMM-based analytical integration (Ren et al., CVPR 2022, eq. 6; official
    ``jiawei-ren/BalancedMSE`` ``imdb-wiki-dir/balanaced_mse.py`` ``gai_loss``)::

        mse_i  = (pred_i - target_i)^2 / (2 sigma^2) + 0.5 log sigma^2
        bal_i  = logsumexp_k [ -0.5 log(v_k + sigma^2) - 0.5 (pred_i - m_k)^2 / (v_k + sigma^2) + log w_k ]
        loss   = mean_i (mse_i + bal_i) * stopgrad(2 sigma^2)

    with the training-label GMM (means ``m_k``, variances ``v_k``, weights ``w_k``) fitted by
    :meth:`fit_labels` (scikit-learn ``GaussianMixture(n_components=K, random_state=0)``,
    full covariance, as the official ``preprocess_gmm.py``) on the TRAINING partition's labels
    only: the engine calls it with those labels before the first step. The GMM is held in
    buffers, so it is saved with the run and restored on resume.

    Args:
        components: K (:data:`GAI_COMPONENTS` = 2, QAFE-Net's ``preprocess_gmm_PD.py``).
        init_noise_sigma, learn_sigma: as :class:`BMCLoss`.

    Shapes: ``pred (B,)``, ``target (B,)`` -> scalar.

    Raises:
        RuntimeError: :meth:`forward` before :meth:`fit_labels`.
    """

    def __init__(self, components: int = GAI_COMPONENTS, init_noise_sigma: float = 1.0,
                 learn_sigma: bool = True) -> None:
        super().__init__()
        if int(components) < 1:
            raise ValueError(f"GAILoss needs >= 1 GMM component, got {components!r}")
        self.components = int(components)
        self.noise_sigma = nn.Parameter(torch.tensor(float(init_noise_sigma)), requires_grad=learn_sigma)
        self.register_buffer("gmm_means", torch.zeros(self.components, dtype=torch.float64))
        self.register_buffer("gmm_variances", torch.ones(self.components, dtype=torch.float64))
        self.register_buffer("gmm_weights", torch.full((self.components,), 1.0 / self.components,
                                                       dtype=torch.float64))
        self.register_buffer("fitted", torch.tensor(False))

    def fit_labels(self, labels) -> None:
        """Fit the label GMM on ``labels`` ``(N,)`` (the training partition's labels only).

        Raises:
            ValueError: fewer labels than components, or non-finite labels.
        """
        import numpy as np
        from sklearn.mixture import GaussianMixture

        y = np.asarray(labels, dtype=np.float64).reshape(-1, 1)
        if len(y) < self.components:
            raise ValueError(f"GAI: {len(y)} training label(s) cannot fit a {self.components}-component GMM")
        if not np.isfinite(y).all():
            raise ValueError("GAI: non-finite training labels")
        gmm = GaussianMixture(n_components=self.components, random_state=0).fit(y)
        self.gmm_means.copy_(torch.from_numpy(gmm.means_.reshape(-1)))
        self.gmm_variances.copy_(torch.from_numpy(gmm.covariances_.reshape(-1)))
        self.gmm_weights.copy_(torch.from_numpy(gmm.weights_.reshape(-1)))
        self.fitted.fill_(True)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise RuntimeError("GAILoss: the label GMM is not fitted; call fit_labels(training labels) first")
        pred = pred.reshape(-1, 1).float()
        target = target.reshape(-1, 1).to(pred)
        noise_var = self.noise_sigma.to(pred) ** 2
        means, variances, weights = (b.to(pred).reshape(1, -1) for b in
                                     (self.gmm_means, self.gmm_variances, self.gmm_weights))
        mse_term = (pred - target) ** 2 / 2 / noise_var + 0.5 * noise_var.log()
        sum_var = variances + noise_var
        balancing = -0.5 * sum_var.log() - 0.5 * (pred - means) ** 2 / sum_var + weights.log()
        balancing = torch.logsumexp(balancing, dim=-1, keepdim=True)
        return ((mse_term + balancing) * (2 * noise_var).detach()).mean()


#: Focal loss gamma for classification (Lin et al., ICCV 2017, the paper's default gamma = 2;
#: the QAFE-Net paper's Table 9 does not give its value).
FOCAL_CE_GAMMA = 2.0


class ClassificationLoss(nn.Module):
    """Cross-entropy or focal loss over severity classes (paper Table 9).

    ``target`` holds labels in label units; class ``c = round(target - lo)`` for the card's
    range ``(lo, hi)`` (PFED5 severity 0..4 -> 5 classes)::

        ce    = -log p_c                         (``kind='ce'``)
        focal = -(1 - p_c)^gamma log p_c         (``kind='focal'``, Lin et al. 2017, no alpha)
        loss  = mean over the batch

    Shapes: ``logits (B, C)``, ``target (B,)`` -> scalar.

    Raises:
        ValueError: unknown ``kind``; a target that is not an integer class in ``[lo, hi]``.
    """

    def __init__(self, n_classes: int, low: float = 0.0, kind: str = "ce", gamma: float = FOCAL_CE_GAMMA) -> None:
        super().__init__()
        if kind not in ("ce", "focal"):
            raise ValueError(f"ClassificationLoss kind must be 'ce' or 'focal', got {kind!r}")
        self.n_classes, self.low, self.kind, self.gamma = int(n_classes), float(low), kind, float(gamma)

    def classes(self, target: torch.Tensor) -> torch.Tensor:
        """Class indices ``(B,)`` int64 of labels ``target (B,)``."""
        c = target.reshape(-1).double() - self.low
        idx = torch.round(c)
        if not torch.all((idx - c).abs() < 1e-6) or idx.min() < 0 or idx.max() >= self.n_classes:
            raise ValueError(f"classification needs integer labels in [{self.low:g}, {self.low + self.n_classes - 1:g}]"
                             f", got {target.reshape(-1).tolist()}")
        return idx.long()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        cls = self.classes(target).to(logits.device)
        logp = F.log_softmax(logits, dim=-1).gather(1, cls.reshape(-1, 1)).reshape(-1)
        if self.kind == "ce":
            return (-logp).mean()
        return (-((1 - logp.exp()) ** self.gamma) * logp).mean()
