"""Dataset cards: the declarative description of each dataset in ``datasets/``.

A card (``datasets/<name>/card.yaml``) gives the label range, the expressions in
the paper's order, the protocol name and the metric. The harness validates every
label against it and a method never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml

from .errors import ConfigError, LabelError
from .paths import datasets_dir

#: The five PFED5 expressions in the paper's column order (Table 2), which is
#: also the official code's ``--class_idx`` 0..4 (inferred: no mapping is published).
PFED5_EXPRESSIONS = ("sit_at_rest", "smile", "frown", "squeeze_eyes", "clench_teeth")


@dataclass(frozen=True)
class DatasetCard:
    """A dataset card (``datasets/<name>/card.yaml``).

    Attributes:
        name: card name (folder name).
        label_name: e.g. ``severity`` (PFED5, 0..4) or ``vas`` (UNBC, 0..10).
        label_min, label_max: inclusive label range.
        label_integer: labels must be whole numbers.
        expressions: expression names in the paper's order.
        protocol: protocol name (``pfed5``, ``unbc_5fold``).
        demo_labels: labels are not clinical (real-face demo data).
        path: the card's folder.
    """

    name: str
    label_name: str
    label_min: float
    label_max: float
    label_integer: bool
    expressions: tuple[str, ...]
    protocol: str
    metric: str
    demo_labels: bool = False
    path: Path = field(default=Path("."), compare=False)
    raw: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def label_range(self) -> tuple[float, float]:
        """``(label_min, label_max)`` as floats, the form a :class:`benchmark.api.Method` takes."""
        return float(self.label_min), float(self.label_max)

    def expression_index(self, expression: str | int) -> int:
        """Index of an expression given by name or index (0-based, paper order).

        Raises:
            ConfigError: for a name or index the card does not list.
        """
        if isinstance(expression, int) or (isinstance(expression, str) and expression.isdigit()):
            idx = int(expression)
            if 0 <= idx < len(self.expressions):
                return idx
        elif expression in self.expressions:
            return self.expressions.index(expression)
        raise ConfigError(
            f"unknown expression {expression!r} for dataset card {self.name!r}; "
            f"expected one of {', '.join(self.expressions)} (or an index 0..{len(self.expressions) - 1})"
        )

    def check_label(self, value, where: str) -> float:
        """Parse and range-check one label.

        Args:
            value: the raw label (number or string).
            where: names the item in the error, e.g. ``"PFED5_train.csv row 12 (video abc)"``.

        Returns:
            The label as float.

        Raises:
            LabelError: not a number, not whole where the card says integer, or
                outside ``[label_min, label_max]``.
        """
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise LabelError(f"{where}: label {value!r} is not a number") from None
        if x != x:
            raise LabelError(f"{where}: label is missing (NaN)")
        if not self.label_min <= x <= self.label_max:
            raise LabelError(
                f"{where}: {self.label_name} {value!r} is outside the range "
                f"{self.label_min:g}..{self.label_max:g} of dataset card {self.name!r}; fix the label"
            )
        if self.label_integer and x != int(x):
            raise LabelError(f"{where}: {self.label_name} {value!r} must be a whole number")
        return x


@lru_cache(maxsize=None)
def load_card(name: str) -> DatasetCard:
    """Load ``datasets/<name>/card.yaml``.

    Raises:
        ConfigError: no such card, or a card missing a required field.
    """
    path = datasets_dir() / name / "card.yaml"
    if not path.is_file():
        known = sorted(p.name for p in datasets_dir().iterdir() if (p / "card.yaml").is_file())
        raise ConfigError(f"no dataset card {path}; known cards: {', '.join(known)}")
    raw = yaml.safe_load(path.read_text())
    try:
        label = raw["label"]
        return DatasetCard(
            name=raw["name"],
            label_name=label["name"],
            label_min=float(label["min"]),
            label_max=float(label["max"]),
            label_integer=bool(label.get("integer", False)),
            expressions=tuple(raw["expressions"]),
            protocol=raw["protocol"],
            metric=raw["metric"],
            demo_labels=bool(raw.get("demo_labels", False)),
            path=path.parent,
            raw=raw,
        )
    except KeyError as exc:
        raise ConfigError(f"{path}: missing field {exc}") from None
