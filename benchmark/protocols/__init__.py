"""Evaluation protocols as plug-ins: what a dataset card's ``protocol`` field names.

A protocol (:class:`Protocol`) owns everything between a prepared dataset and a
run that is not the method's business:

* its **partitions**: an official train/test split (PFED5: ``official``) or K
  subject-wise folds (UNBC-McMaster: ``fold1`` .. ``fold5``), each checked for
  subject leaks;
* its **clip sampling** at train and test time, and the clip length it feeds at
  the paper scale (PFED5 80 frames = 5 sub-clips of 16; UNBC 144 = 9 x 16), which
  a table row may override (Table 3's 80-frame R3D and Former-DFER rows);
* how many random **test samplings** are averaged per test video (PFED5: one
  deterministic clip; UNBC: 10 seeded random clips, paper section 5);
* its **metrics** with their direction (Spearman's rho higher is better, MAE and
  RMSE lower), the headline metric that selects the "test-selected" epoch, and
  whether partition predictions are pooled (cross-validation: every sequence is
  predicted once by the fold model that did not see its subject).

The engine, run ids, run folder names, tables and reports ask the protocol; they
never test a dataset's name. Protocols are found through the
``qafe_bench.protocols`` entry-point group (in-tree ones in ``pyproject.toml``; a
plugin package declares its own), like methods; :func:`register` adds one at run
time (tests).
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd

from ..errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from ..cards import DatasetCard
    from ..data.prepared import PreparedDataset

GROUP = "qafe_bench.protocols"


@dataclass(frozen=True)
class MetricSpec:
    """One metric a protocol reports.

    Attributes:
        name: key in :func:`benchmark.metrics.regression_metrics` (``rho_x100``, ``mae``, ``rmse``).
        label: column heading (``Sp. Corr.``, ``MAE``).
        higher_is_better: direction (rho: True; MAE, RMSE: False).
        unit: e.g. ``rho x 100`` or ``VAS points``.
    """

    name: str
    label: str
    higher_is_better: bool
    unit: str

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` (NaN is never better; anything beats NaN)."""
        if a != a:
            return False
        if b != b:
            return True
        return a > b if self.higher_is_better else a < b


RHO = MetricSpec("rho_x100", "Sp. Corr.", True, "Spearman's rho x 100")
MAE = MetricSpec("mae", "MAE", False, "label units")
RMSE = MetricSpec("rmse", "RMSE", False, "label units")


@dataclass
class Partition:
    """One train/test partition of one expression.

    Attributes:
        name: ``official`` or ``fold<k>``.
        train, test: rows of ``videos.csv`` (index reset), subject-disjoint.
        info: protocol facts recorded in the run's config (e.g. the fold file's SHA-256).
    """

    name: str
    train: pd.DataFrame
    test: pd.DataFrame
    info: dict = field(default_factory=dict)


class Protocol:
    """Base class of an evaluation protocol (see the module docstring).

    Class attributes:
        name: registry name (the card's ``protocol`` field).
        title: one line for reports.
        clip_len: frames per clip at the paper scale when neither the method nor the
            run fixes its own.
        test_clips: ``"even"`` (one deterministic clip of evenly spaced frames per test
            video) or ``"random"`` (random clips as in training, seeded, no augmentation).
        test_samplings: clips per test video whose predictions are averaged.
        metrics: every metric reported, headline first.
        pooled: tables pool the partitions' predictions (cross-validation) before
            computing a metric; otherwise there is one partition and nothing to pool.
        version: bump when a change alters what a run computes (sampling, partitions,
            metrics): it is hashed into every run id, so records made under an older
            version are never reused.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    title: ClassVar[str] = ""
    clip_len: ClassVar[int] = 80
    test_clips: ClassVar[str] = "even"
    test_samplings: ClassVar[int] = 1
    metrics: ClassVar[tuple[MetricSpec, ...]] = (RHO, MAE, RMSE)
    pooled: ClassVar[bool] = False

    @property
    def headline(self) -> MetricSpec:
        """The metric that ranks models and selects the test-selected epoch (the first of :attr:`metrics`)."""
        return self.metrics[0]

    def metric(self, name: str) -> MetricSpec:
        """The :class:`MetricSpec` called ``name``.

        Raises:
            ConfigError: a metric this protocol does not report.
        """
        for m in self.metrics:
            if m.name == name:
                return m
        raise ConfigError(f"protocol {self.name!r} reports no metric {name!r}; "
                          f"it reports {', '.join(m.name for m in self.metrics)}")

    def partition_names(self, card: "DatasetCard") -> list[str]:
        """Every partition a run can ask for, in order (``["official"]``, ``["fold1", ...]``)."""
        raise NotImplementedError

    def default_partition(self, card: "DatasetCard") -> str | None:
        """The partition a run uses when none is given; None when one must be named (folds)."""
        return None

    def check_partition(self, card: "DatasetCard", name: str | None) -> str:
        """``name`` (or the default) checked against :meth:`partition_names`.

        Raises:
            ConfigError: no partition given where one is required, or an unknown one.
        """
        names = self.partition_names(card)
        if name is None:
            name = self.default_partition(card)
            if name is None:
                raise ConfigError(f"protocol {self.name!r} needs a partition (--split): one of {', '.join(names)}")
        if name not in names:
            choices = ", ".join(repr(n) for n in names)
            raise ConfigError(f"split {name!r} is not available for protocol {self.name!r}; use "
                              f"{'one of ' if len(names) > 1 else ''}{choices}")
        return name

    def folder_tag(self, partition: str) -> str:
        """The partition's part of a run folder name (``""`` for a protocol's only partition)."""
        return partition

    def partition(self, dataset: "PreparedDataset", card: "DatasetCard", expression: str,
                  name: str) -> Partition:
        """The checked train and test videos of ``expression`` in partition ``name``.

        Raises:
            SubjectLeakError / LabelError / DataError: see the protocol.
        """
        raise NotImplementedError

    def partition_sizes(self, dataset: "PreparedDataset", card: "DatasetCard", expression: str
                        ) -> dict[str, tuple[int, int]]:
        """Partition name -> ``(train videos, test videos)`` of ``expression``, without the
        partition checks' errors for empty sides (a table shows such a cell as "no data").

        Raises:
            DataError: the partition definition itself is invalid (e.g. a bad fold file).
        """
        raise NotImplementedError

    def config_info(self, card: "DatasetCard") -> dict:
        """Protocol facts hashed into every run's id and recorded in its config (default: none)."""
        return {}


_extra: dict[str, type[Protocol] | str] = {}


def register(name: str, target: type[Protocol] | str) -> None:
    """Register a protocol class (or ``"module:attr"``) at run time; shadows an entry point."""
    _extra[name] = target


def unregister(name: str) -> None:
    """Remove a protocol added with :func:`register` (no error if absent)."""
    _extra.pop(name, None)


def _entries() -> dict[str, type[Protocol] | str]:
    out: dict[str, type[Protocol] | str] = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    out.update(_extra)
    return out


def available_protocols() -> list[str]:
    """Names of every registered protocol."""
    return sorted(_entries())


def get_protocol(name: str) -> Protocol:
    """An instance of the protocol registered as ``name``.

    Raises:
        ConfigError: no such protocol (with a suggestion), or its target cannot be imported.
    """
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(str(name), entries, n=1)
        raise ConfigError(f"no protocol named {name!r}" + (f"; did you mean {close[0]!r}?" if close else "")
                          + f" Registered: {', '.join(sorted(entries)) or '(none)'}")
    target = entries[name]
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"protocol {name!r}: cannot import {entries[name]} ({exc})") from exc
    if not (isinstance(target, type) and issubclass(target, Protocol)):
        raise ConfigError(f"protocol {name!r}: {target!r} is not a benchmark.protocols.Protocol subclass")
    return target()


def sampling_rng(seed: int, sampling: int, row: int, stream: int = 0) -> np.random.Generator:
    """The generator of random test clip ``sampling`` of test row ``row`` (``stream`` 0: the test
    video itself; 1: an exemplar, ``row`` then being its training-pool row). It depends on
    nothing else (not the epoch, not the worker count), so the same command twice gives
    identical predictions."""
    return np.random.default_rng([int(seed), 15485863, int(sampling), int(stream), int(row)])


__all__ = ["GROUP", "MAE", "RHO", "RMSE", "MetricSpec", "Partition", "Protocol", "available_protocols",
           "get_protocol", "register", "sampling_rng", "unregister"]
