#!/usr/bin/env python
"""Time the vectorised landmark-heatmap renderer against the literal per-landmark reference.

Both run in the same process on the same clip (default: 80 frames x 73
landmarks at 256x256, one QAFE-Net clip); each timing is the median of
``--repeats`` runs (timeit, ``--number`` calls per run), and the speed-up is the
ratio of the medians.  The outputs are checked for exact equality first.

Usage::

    python scripts/bench_heatmaps.py [--frames 80] [--landmarks 73] [--size 256]
                                     [--modes official paper] [--repeats 7] [--number 1]

The reference implementations are the ones in ``tests/test_heatmaps.py``.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import timeit
from pathlib import Path

import numpy as np

from benchmark.data.heatmaps import render_heatmap_frames

ROOT = Path(__file__).resolve().parents[1]


def load_reference():
    """Import tests/test_heatmaps.py by path (it holds the per-landmark references)."""
    path = ROOT / "tests" / "test_heatmaps.py"
    spec = importlib.util.spec_from_file_location("_qafe_heatmap_reference", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def median_seconds(fn, repeats: int, number: int) -> float:
    """Median over ``repeats`` of the mean time of ``number`` calls, in seconds."""
    times = timeit.repeat(fn, repeat=repeats, number=number)
    return statistics.median(times) / number


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=80)
    ap.add_argument("--landmarks", type=int, default=73)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=1.0)
    ap.add_argument("--modes", nargs="+", default=["official", "paper"], choices=["official", "paper"])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--number", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2023)
    args = ap.parse_args(argv)

    ref = load_reference()
    rng = np.random.default_rng(args.seed)
    s = args.size
    pts = ref.random_points(rng, args.frames, args.landmarks, s, s)
    frames = rng.integers(0, 256, (args.frames, s, s, 3), dtype=np.uint8)
    sigma = args.sigma

    cases = {
        "official": (
            lambda: render_heatmap_frames(pts, size=s, mode="official", sigma=sigma),
            lambda: ref.reference_official(pts, (s, s), sigma=sigma),
        ),
        "paper": (
            lambda: render_heatmap_frames(pts, size=s, mode="paper", sigma=sigma, frames=frames),
            lambda: ref.reference_paper(pts, frames, (s, s), sigma=sigma),
        ),
    }
    print(f"clip: {args.frames} frames x {args.landmarks} landmarks at {s}x{s}, sigma {sigma:g}; "
          f"median of {args.repeats} repeats x {args.number} call(s)")
    ok = True
    for mode in args.modes:
        fast, slow = cases[mode]
        same = np.array_equal(fast(), slow())
        ok &= same
        t_fast = median_seconds(fast, args.repeats, args.number)
        t_slow = median_seconds(slow, args.repeats, args.number)
        print(f"{mode:9s} vectorised {t_fast * 1e3:9.1f} ms   per-landmark reference {t_slow * 1e3:9.1f} ms   "
              f"speed-up {t_slow / t_fast:6.1f}x   identical output: {same}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
