"""An out-of-tree qafe-bench method: a linear model on a clip's mean frame and mean motion.

This package is the smallest complete plugin. Its ``pyproject.toml`` declares::

    [project.entry-points."qafe_bench.methods"]
    plugin_mean = "qafe_bench_plugin_example:PluginMeanMethod"

and once it is installed (``pip install tests/plugin_example``) ``qafe-bench
methods`` lists ``plugin_mean`` with this distribution as its origin, and
``qafe-bench run --method plugin_mean ...`` trains and evaluates it like an
in-tree method (the conformance suite in ``tests/test_conformance.py`` covers it
too). Nothing here is from the QAFE-Net paper: it is a floor just above the dummy.
"""

from __future__ import annotations

import torch
from torch import nn

from benchmark.api import InputSpec, Method, Option, TrainingConfig

__all__ = ["MeanFrameLinear", "PluginMeanMethod"]


class MeanFrameLinear(nn.Module):
    """A linear score from two pooled summaries of a clip.

    Features: the clip's mean frame and its mean absolute frame difference (the
    motion), each average-pooled to a ``grid x grid`` map per channel, concatenated:
    ``2 * 3 * grid**2`` numbers; score = ``linear(features)``.

    Args:
        grid: side of the pooled map (any clip size works: adaptive pooling).

    ``forward(rgb)``: ``rgb (B, 3, T, H, W)`` (any normalisation, ``T >= 1``) -> ``(B,)``.
    A one-frame clip has zero motion features.
    """

    def __init__(self, grid: int = 4) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(grid)
        self.linear = nn.Linear(2 * 3 * grid * grid, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        if rgb.dim() != 5 or rgb.shape[1] != 3:
            raise ValueError(f"rgb: expected (B, 3, T, H, W), got {tuple(rgb.shape)}")
        mean_frame = rgb.mean(dim=2)
        if rgb.shape[2] > 1:
            motion = (rgb[:, :, 1:] - rgb[:, :, :-1]).abs().mean(dim=2)
        else:
            motion = torch.zeros_like(mean_frame)
        feats = torch.cat([self.pool(mean_frame).flatten(1), self.pool(motion).flatten(1)], dim=1)
        return self.linear(feats).squeeze(-1)


class PluginMeanMethod(Method):
    """Example plugin method: :class:`MeanFrameLinear` on [0, 1] RGB, trained with MSE by Adam.

    Options: ``grid`` (pooled map side). No pretrained files. Inputs: RGB only,
    16-frame sub-clips at 112 px (small: it only averages).
    """

    name = "plugin_mean"
    display_name = "Plugin example (mean frame + motion, linear)"
    reference = "qafe-bench example plugin (tests/plugin_example); not from a paper"
    options_spec = {
        "grid": Option(4, "Side of the average-pooled mean-frame / motion maps fed to the linear layer.",
                       choices=(1, 2, 4, 8)),
    }
    learning_recipe = {"options": {}, "data": "nuisance_free", "asserted": False,
                       "why": "an example plugin: not held to the learning margin"}

    def input_spec(self) -> InputSpec:
        """RGB in [0, 1], 16-frame sub-clips, 112-px crops (the tiny scale shrinks them)."""
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation="unit", subclip_len=16, rgb_size=112,
                         min_rgb_size=8)

    def build_model(self) -> MeanFrameLinear:
        """A fresh :class:`MeanFrameLinear` with the ``grid`` option."""
        return MeanFrameLinear(int(self.options["grid"]))

    def training_defaults(self) -> TrainingConfig:
        """Adam lr 1e-2 without weight decay, 20 epochs of batch 4, constant rate."""
        return TrainingConfig(epochs=20, batch_size=4, optimizer="adam", lr=1e-2, weight_decay=0.0, lr_step=0,
                              reps_per_epoch=1)
