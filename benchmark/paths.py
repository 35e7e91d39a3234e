"""Where the project's declarative folders and its outputs live.

Inputs (read-only): the dataset cards (``datasets/``), the table specs (``reports/specs``)
and the published numbers (``reports/published``). From a checkout (``pip install -e .``)
they are read from the checkout's top-level folders; a wheel (``pip install .``) carries
copies as ``benchmark/resources/{datasets,specs,published}`` (``pyproject.toml`` maps them
in). ``QAFE_BENCH_ROOT`` points at another checkout.

Outputs: one root, the current directory unless ``QAFE_BENCH_OUTPUT`` (or a command's
``--output-root``) says otherwise, holding ``runs/`` (run records and generated synthetic
data) and ``reports/output/`` (rendered tables); ``--runs-dir`` / ``--out`` still override
each. From a checkout's root this is the checkout's own (git-ignored) ``runs/`` and
``reports/output/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import ConfigError

#: Environment variable naming the output root (default: the current directory).
ENV_OUTPUT = "QAFE_BENCH_OUTPUT"
_PACKAGED = Path(__file__).resolve().parent / "resources"


def project_root() -> Path | None:
    """The checkout that holds ``datasets/`` and ``reports/`` (``$QAFE_BENCH_ROOT``, else the
    package's parent folder), or None for a wheel install (resources come from the package).

    Raises:
        ConfigError: ``$QAFE_BENCH_ROOT`` names a folder without ``datasets/``.
    """
    env = os.environ.get("QAFE_BENCH_ROOT")
    if env:
        if not (Path(env) / "datasets").is_dir():
            raise ConfigError(f"QAFE_BENCH_ROOT={env} holds no datasets/ folder; point it at a qafe-bench checkout")
        return Path(env)
    root = Path(__file__).resolve().parents[1]
    return root if (root / "datasets").is_dir() and (root / "reports" / "specs").is_dir() else None


def _resource(checkout_rel: str, packaged: str) -> Path:
    root = project_root()
    path = root / checkout_rel if root is not None else _PACKAGED / packaged
    if not path.is_dir():
        raise ConfigError(f"{path} does not exist: the qafe-bench install is incomplete; reinstall it "
                          "(`pip install .` or `pip install -e .` from a checkout)")
    return path


def datasets_dir() -> Path:
    """One folder per dataset card (``datasets/`` of the checkout, or the packaged copy)."""
    return _resource("datasets", "datasets")


def specs_dir() -> Path:
    """Table specs (``reports/specs`` of the checkout, or the packaged copy)."""
    return _resource("reports/specs", "specs")


def published_dir() -> Path:
    """The paper's numbers as CSV (``reports/published`` of the checkout, or the packaged copy)."""
    return _resource("reports/published", "published")


def output_root() -> Path:
    """Where runs and reports go: ``$QAFE_BENCH_OUTPUT``, else the current directory."""
    return Path(os.environ.get(ENV_OUTPUT) or ".")


def runs_dir() -> Path:
    """``<output root>/runs``: run records and generated synthetic data."""
    return output_root() / "runs"


def reports_output_dir() -> Path:
    """``<output root>/reports/output``: rendered reports, one folder per dataset and scale."""
    return output_root() / "reports" / "output"


def shared_dir() -> Path:
    """``<checkout>/../shared`` (real face videos, paper tables, references); None-safe for tests."""
    root = project_root() or Path(__file__).resolve().parents[1]
    return root.parent / "shared"
