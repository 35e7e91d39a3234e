"""Where the project's declarative folders live.

qafe-bench is used from a checkout (``pip install -e .``): the dataset cards in
``datasets/`` and the table specifications in ``reports/`` are read from the
checkout, next to the ``benchmark`` package. ``QAFE_BENCH_ROOT`` overrides it.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError


def project_root() -> Path:
    """The checkout root that holds ``datasets/`` and ``reports/``.

    Raises:
        ConfigError: when neither ``$QAFE_BENCH_ROOT`` nor the package's parent
            folder holds a ``datasets/`` folder (a non-editable install).
    """
    env = os.environ.get("QAFE_BENCH_ROOT")
    root = Path(env) if env else Path(__file__).resolve().parents[1]
    if not (root / "datasets").is_dir():
        raise ConfigError(
            f"no datasets/ folder under {root}: install qafe-bench from a checkout "
            "with `pip install -e .`, or set QAFE_BENCH_ROOT to the checkout"
        )
    return root


def datasets_dir() -> Path:
    """``<root>/datasets``: one folder per dataset card."""
    return project_root() / "datasets"


def reports_dir() -> Path:
    """``<root>/reports``: table specs, published numbers, generated output."""
    return project_root() / "reports"


def shared_dir() -> Path:
    """``<root>/../shared`` (real face videos, paper tables, references)."""
    return project_root().parent / "shared"
