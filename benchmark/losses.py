"""Regression losses used by the compared methods.

* :class:`BMCLoss` -- Balanced MSE, batch-based Monte-Carlo (Ren et al., CVPR 2022,
  official ``jiawei-ren/BalancedMSE`` ``imdb-wiki-dir/balanaced_mse.py``), the
  QAFE-Net loss (paper section 4, Table 6 "BMC"; QAFE-Net
  ``dataloader/ibmse/balancedMSE.py``).
* :class:`MSELoss` -- plain mean squared error over a batch of scores.

Every loss maps ``pred (B,)`` and ``target (B,)`` (label units, e.g. severity
0..4) to a scalar.
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
