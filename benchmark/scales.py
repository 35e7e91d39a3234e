"""Scales: ``paper`` (the paper's settings) and ``tiny`` (CI and laptops).

Both run the same code path; ``tiny`` shrinks the frames, the clips, the number
of epochs and (for synthetic data) the dataset, never the architecture.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .api import ClipGeometry
from .errors import ConfigError


@dataclass(frozen=True)
class Scale:
    """One scale.

    Attributes:
        name: ``paper`` or ``tiny``.
        frame_size: prepared face crops are resized to this square size (pixels)
            before cropping, when stored at another size (256 in the paper: no resize).
        geometry: clip geometry fed to methods.
        heatmap_resize: heatmap frames are resized to this size before the random /
            centre crop of ``geometry.heatmap_size`` (64 -> 56 in the official loader).
        training: training-setting overrides applied after the method's defaults.
        synthetic_preset: the synthetic generator preset used with ``--dataset synthetic``.
    """

    name: str
    frame_size: int
    geometry: ClipGeometry
    heatmap_resize: int
    training: dict = field(default_factory=dict)
    synthetic_preset: str = "tiny"


SCALES: dict[str, Scale] = {
    # Paper section 5 / official main_PFED5.py + Parkinson_landmarkheatmap.py.
    "paper": Scale(
        name="paper",
        frame_size=256,
        geometry=ClipGeometry(n_subclips=5, subclip_len=16, rgb_size=224, heatmap_size=56),
        heatmap_resize=64,
        training={},
        synthetic_preset="paper",
    ),
    # Small frames, short clips, few epochs: the whole pipeline on 2 CPU cores.
    "tiny": Scale(
        name="tiny",
        frame_size=48,
        geometry=ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=40, heatmap_size=14),
        heatmap_resize=16,
        training={"epochs": 6, "reps_per_epoch": 2, "lr_step": 0, "eval_every": 6},
        synthetic_preset="tiny",
    ),
}


def get_scale(name: str) -> Scale:
    """The scale called ``name``.

    Raises:
        ConfigError: unknown scale.
    """
    try:
        return SCALES[name]
    except KeyError:
        raise ConfigError(f"unknown scale {name!r}; choose one of {', '.join(SCALES)}") from None
