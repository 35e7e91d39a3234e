"""Print the learning check of benchmark/learning.py: test rho x 100 on true vs shuffled labels.

Usage: python scripts/learning_check.py [METHOD ...] [--data VARIANT] [--runs-dir DIR] [--seed N] [--estimate] [--overfit]
(default: every method with a recipe). --data tiny|nuisance_free picks the dataset
variant instead of the recipe's. Runs already finished in --runs-dir are reused.
--estimate times a few training steps instead and prints the check's expected wall time.
--overfit runs each method's overfit check (benchmark.learning.overfit_check) instead; a method
that refuses to train without its released file (C3D-LSTM) says so (the conformance test runs it
with a stand-in file in the original layout).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from benchmark.errors import MissingWeightsError
from benchmark.learning import (LEARNING_DATA, LEARNING_MARGIN, estimate_learning_cost, generate_learning_dataset,
                                learning_check, learning_recipes, overfit_check)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    recipes = learning_recipes()
    ap.add_argument("methods", nargs="*", default=sorted(recipes))
    ap.add_argument("--data", choices=sorted(LEARNING_DATA), help="dataset variant (default: the recipe's)")
    ap.add_argument("--runs-dir", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--estimate", action="store_true", help="time a few steps, print the expected wall time")
    ap.add_argument("--overfit", action="store_true",
                    help="run each method's overfit check instead (8 clips, eval mode; running vs precise BatchNorm)")
    args = ap.parse_args()
    if args.overfit:
        for name in args.methods:
            try:
                r = overfit_check(name, steps=int(recipes[name]["overfit_steps"]), seed=args.seed)
            except MissingWeightsError as exc:
                print(f"{name:12s} refused without its released file ({exc}); tests/test_conformance.py runs its "
                      "check with a stand-in file in the original layout", flush=True)
                continue
            print(f"{name:12s} {r['steps']:4d} steps  loss {r['first_loss']:.3g} -> {r['last_loss']:.3g}  "
                  f"eval rho x 100: running BN {r['rho_x100_running_bn']:6.1f}, precise BN "
                  f"{r['rho_x100_precise_bn']:6.1f}, as run {r['rho_x100']:6.1f} "
                  f"({'pass' if r['passed'] else 'FAIL'})  {r['wall_s']:.0f} s", flush=True)
        return
    if args.estimate:
        for name in args.methods:
            e = estimate_learning_cost(name, seed=args.seed)
            print(f"{name:12s} step {e['step_s']:6.2f} s (batch {e['batch_size']})  eval batch {e['eval_batch_s']:5.2f} s  "
                  f"{e['steps_per_run']} steps per run  -> about {e['estimate_s'] / 60:5.1f} min for both runs", flush=True)
        return
    root = Path(args.runs_dir) if args.runs_dir else Path(tempfile.mkdtemp(prefix="qafe-learning-"))
    print(f"margin asserted by the tests: {LEARNING_MARGIN:.0f} rho x 100 points; runs in {root}")
    for name in args.methods:
        variant = args.data or recipes.get(name, {}).get("data", "tiny")
        data = generate_learning_dataset(root / f"data-{variant}", variant)
        try:
            c = learning_check(name, data, root / "runs", seed=args.seed)
        except MissingWeightsError as exc:
            print(f"{name:12s} refused without its released file: {exc}", flush=True)
            continue
        print(f"{name:12s} true {c['rho_x100']['none']:6.1f}  shuffled {c['rho_x100']['shuffled_labels']:6.1f}  "
              f"margin {c['margin']:6.1f}  {'pass' if c['passed'] else 'FAIL'}  data {variant}  "
              f"{'' if recipes.get(name, {}).get('asserted') else '(not asserted in CI)  '}"
              f"({c['wall_s']['none']:.0f} s + {c['wall_s']['shuffled_labels']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
