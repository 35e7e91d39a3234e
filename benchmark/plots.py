"""Figures of the report site, drawn with matplotlib and returned as SVG text.

Every function returns a complete ``<svg>`` document as a string (matplotlib's SVG backend,
text drawn as paths, so a label can never become markup) that the templates embed. The
figures are deterministic: the jitter of a scatter is seeded.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def _figure(width: float = 5.0, height: float = 3.2):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "qafe-bench", "font.size": 9})
    return plt.subplots(figsize=(width, height))


def _svg(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.tight_layout()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg"):]


def scatter_predicted_vs_true(panels: dict[str, tuple[Sequence[float], Sequence[float]]], *, label: str = "label",
                              seed: int = 0) -> str:
    """Predicted vs true score, one panel per expression (or fold): ``panels`` maps a title to
    ``(labels, predictions)``. True labels are jittered horizontally (seeded, +-0.15) so that
    videos of one severity do not hide each other; the diagonal is the perfect prediction."""
    import matplotlib.pyplot as plt

    n = max(1, len(panels))
    import matplotlib

    matplotlib.use("Agg", force=True)
    plt.rcParams.update({"svg.fonttype": "path", "svg.hashsalt": "qafe-bench", "font.size": 8})
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.4), squeeze=False)
    rng = np.random.default_rng(seed)
    for ax, (title, (y, p)) in zip(axes[0], panels.items()):
        y, p = np.asarray(y, float), np.asarray(p, float)
        ax.scatter(y + rng.uniform(-0.15, 0.15, y.size), p, s=10, alpha=0.7)
        if y.size:
            lo, hi = float(min(y.min(), p.min())), float(max(y.max(), p.max()))
            ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
        ax.set_title(str(title).replace("_", " "))
        ax.set_xlabel(f"true {label}")
    axes[0][0].set_ylabel(f"predicted {label}")
    return _svg(fig)


def bars_with_ci(names: Sequence[str], values: Sequence[float], lows: Sequence[float], highs: Sequence[float], *,
                 ylabel: str, published: Sequence[float] | None = None) -> str:
    """One bar per method with its 95% CI as an error bar (NaN values drawn as gaps), and the
    published value as a marker where given."""
    fig, ax = _figure(max(4.0, 0.55 * len(names) + 1.5), 3.0)
    x = np.arange(len(names))
    v = np.asarray(values, float)
    lo, hi = np.asarray(lows, float), np.asarray(highs, float)
    ax.bar(x, np.nan_to_num(v), color=["#4c72b0" if np.isfinite(t) else "#dddddd" for t in v])
    ok = np.isfinite(v) & np.isfinite(lo) & np.isfinite(hi)
    ax.errorbar(x[ok], v[ok], yerr=[v[ok] - lo[ok], hi[ok] - v[ok]], fmt="none", ecolor="black", capsize=3, lw=1)
    if published is not None:
        pub = np.asarray(published, float)
        has = np.isfinite(pub)
        ax.scatter(x[has], pub[has], marker="D", color="#dd8452", zorder=3, label="published")
        if has.any():
            ax.legend(loc="best", frameon=False)
    ax.axhline(0, color="grey", lw=0.6)
    ax.set_xticks(x, [str(n) for n in names], rotation=35, ha="right")
    ax.set_ylabel(ylabel)
    return _svg(fig)


def learning_curves(history: list[dict], *, metrics: Sequence[str] = ("test_rho_x100", "test_mae")) -> str:
    """A run's training loss per epoch (left axis) and its evaluated test metrics (right axis)."""
    fig, ax = _figure(5.0, 2.8)
    epochs = [h.get("epoch") for h in history]
    loss = [h.get("train_loss") for h in history]
    ax.plot([e for e, v in zip(epochs, loss) if v is not None], [v for v in loss if v is not None],
            color="#4c72b0", marker="o", ms=3, label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("train loss", color="#4c72b0")
    right = ax.twinx()
    colours = ["#dd8452", "#55a868", "#c44e52"]
    for m, c in zip(metrics, colours):
        pts = [(h["epoch"], h[m]) for h in history if h.get(m) is not None]
        if pts:
            right.plot(*zip(*pts), color=c, marker="s", ms=3, label=m.replace("test_", "test "))
    right.legend(loc="best", frameon=False)
    return _svg(fig)


def published_vs_reproduced(points: Sequence[tuple[str, float, float]], *, unit: str) -> str:
    """Each table cell as a point (published, reproduced); the diagonal is perfect reproduction."""
    fig, ax = _figure(3.6, 3.4)
    pts = [(p, r) for _, p, r in points if np.isfinite(p) and np.isfinite(r)]
    if pts:
        pub, rep = np.array(pts).T
        ax.scatter(pub, rep, s=14, alpha=0.75)
        lo, hi = float(min(pub.min(), rep.min())), float(max(pub.max(), rep.max()))
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlabel(f"published ({unit})")
    ax.set_ylabel(f"reproduced ({unit})")
    return _svg(fig)


__all__ = ["bars_with_ci", "learning_curves", "published_vs_reproduced", "scatter_predicted_vs_true"]
