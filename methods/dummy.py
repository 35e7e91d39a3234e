"""The do-nothing floor: predicts the mean training label for every clip.

Every table can show it (Spearman's rho is undefined for a constant prediction,
so it shows as "n/a" for rho and as the baseline MAE/RMSE), and it is the fastest
way to run the whole pipeline (cf. lm-evaluation-harness ``models/dummy.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.api import InputSpec, Method, TrainingConfig


class MeanPredictor(nn.Module):
    """Returns the stored training mean for every clip: ``rgb (B, 3, T, H, W) -> (B,)``."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(rgb.shape[0]).clone()


class DummyMethod(Method):
    """Mean-of-training-labels predictor (no trainable parameters, no epochs)."""

    name = "dummy"
    display_name = "Dummy (training mean)"
    reference = "qafe-bench floor; cf. EleutherAI/lm-evaluation-harness lm_eval/models/dummy.py"
    licence = "this project's"
    backbone = "none (predicts the training mean)"
    pretraining = "none"

    def input_spec(self) -> InputSpec:
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="unit")

    def build_model(self) -> nn.Module:
        return MeanPredictor()

    def training_defaults(self) -> TrainingConfig:
        return TrainingConfig(epochs=1, reps_per_epoch=1)

    def on_train_start(self, model: nn.Module, train_labels: np.ndarray) -> None:
        model.mean.fill_(float(np.mean(train_labels)))
