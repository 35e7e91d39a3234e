"""Golden references: outputs of the ORIGINAL implementations, stored as numbers.

A golden fixture ties a project model to the authors' code without committing
any of that code. A reference script outside the project (described in
``tests/golden/README.md``) builds the original module from the fetched
repository, fills its state dict with :func:`seeded_state_dict` (values that
depend only on each key's name, shape and a seed, so both sides can rebuild
them), runs it in eval mode on :func:`seeded_input` tensors and stores the
outputs with :func:`save_golden`. The project's test rebuilds the same state
dict in the ORIGINAL layout, pushes it through the project's own checkpoint
loader, runs the project's model on the same inputs and compares with
:func:`assert_matches_golden`.

Fixture format: ``tests/golden/<name>.npz`` holds one float32 array per output
(``<case>.<output>``); ``tests/golden/<name>.json`` holds, per case, the weight
seed, the input recipes (shape, seed, distribution), the tolerance, and how it
was produced (original repository, commit, file, date, torch version).
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

GOLDEN_DIR = Path(__file__).resolve().parent / "golden"


def _key_seed(key: str, seed: int) -> int:
    return (zlib.crc32(key.encode()) ^ (seed * 2654435761)) % (2**63 - 1)


def seeded_state_dict(template: Mapping[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Deterministic values for every tensor of a state dict, from key name, shape and ``seed``.

    Independent of key order and of how either implementation initialises, so the
    reference script (original module) and the test (project module, through its
    loader) build bit-identical weights.

    Rules (float tensors; the scale keeps deep nets' activations O(1)):
      * ``*running_var``: uniform [0.5, 1.5]; ``*running_mean``: 0.1 x N(0, 1);
      * other 1-D tensors named ``*weight`` (norm scales): 1 + 0.1 x N(0, 1);
      * other 1-D tensors (biases, scalars): 0.1 x N(0, 1);
      * tensors of 2+ dims: N(0, 1) / sqrt(fan_in), fan_in = numel / shape[0]
        (positional embeddings and tokens included);
      * integer tensors (``num_batches_tracked``) are copied unchanged.

    Args:
        template: a state dict in the layout that will be filled (only names,
            shapes and dtypes are read).
        seed: weight seed stored in the fixture.

    Returns:
        A new state dict with the same keys, shapes and dtypes.
    """
    out: dict[str, torch.Tensor] = {}
    for key, t in template.items():
        if not t.dtype.is_floating_point:
            out[key] = t.clone()
            continue
        g = torch.Generator().manual_seed(_key_seed(key, seed))
        shape = tuple(t.shape)
        if key.endswith("running_var"):
            v = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif key.endswith("running_mean"):
            v = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif len(shape) <= 1:
            base = 1.0 if key.endswith("weight") else 0.0
            v = base + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        else:
            fan_in = max(1, math.prod(shape) // shape[0])
            v = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(fan_in)
        out[key] = v.to(t.dtype)
    return out


def seeded_input(shape: tuple[int, ...] | list[int], seed: int, dist: str = "randn") -> torch.Tensor:
    """A float32 input tensor: ``randn`` (N(0, 1)) or ``rand`` (U[0, 1)) from ``torch.Generator(seed)``."""
    g = torch.Generator().manual_seed(int(seed))
    if dist == "randn":
        return torch.randn(tuple(shape), generator=g, dtype=torch.float32)
    if dist == "rand":
        return torch.rand(tuple(shape), generator=g, dtype=torch.float32)
    raise ValueError(f"unknown input distribution {dist!r} (randn or rand)")


def inputs_of(case: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The inputs of one fixture case, rebuilt from its recipes ``{name: {shape, seed, dist}}``."""
    return {name: seeded_input(r["shape"], r["seed"], r.get("dist", "randn")) for name, r in case["inputs"].items()}


def save_golden(name: str, cases: Mapping[str, Mapping[str, Any]], outputs: Mapping[str, Mapping[str, Any]],
                produced_by: Mapping[str, Any], directory: Path = GOLDEN_DIR) -> None:
    """Write ``<name>.json`` (case recipes + provenance) and ``<name>.npz`` (outputs as float32).

    Args:
        cases: case -> ``{"weight_seed", "inputs": {name: {shape, seed, dist}}, "atol", ...}``.
        outputs: case -> output name -> array-like (tensors are detached to float32 numpy).
        produced_by: provenance: original repository, commit, files, torch version, date, script.
    """
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for case, outs in outputs.items():
        for out_name, value in outs.items():
            arr = value.detach().cpu().numpy() if torch.is_tensor(value) else np.asarray(value)
            arrays[f"{case}.{out_name}"] = arr.astype(np.float32)
    np.savez_compressed(directory / f"{name}.npz", **arrays)
    meta = {"produced_by": dict(produced_by), "cases": {k: dict(v) for k, v in cases.items()}}
    (directory / f"{name}.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


def load_golden(name: str, directory: Path = GOLDEN_DIR) -> tuple[dict, dict[str, dict[str, np.ndarray]]]:
    """``(meta, outputs)`` of a fixture: the JSON and case -> output name -> array."""
    meta = json.loads((directory / f"{name}.json").read_text())
    outputs: dict[str, dict[str, np.ndarray]] = {}
    with np.load(directory / f"{name}.npz") as z:
        for key in z.files:
            case, _, out_name = key.partition(".")
            outputs.setdefault(case, {})[out_name] = z[key]
    return meta, outputs


def assert_matches_golden(actual: torch.Tensor | np.ndarray, expected: np.ndarray, atol: float, what: str) -> float:
    """Assert ``max |actual - expected| <= atol`` (same shape); returns the max difference.

    Raises:
        AssertionError: naming ``what``, the shapes or the max difference and where it is.
    """
    a = actual.detach().cpu().numpy() if torch.is_tensor(actual) else np.asarray(actual)
    a = a.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} vs golden {e.shape}"
    diff = np.abs(a - e)
    worst = float(diff.max()) if diff.size else 0.0
    assert worst <= atol, (f"{what}: max |difference| {worst:.3e} > {atol:.1e} at index "
                           f"{np.unravel_index(int(diff.argmax()), diff.shape)} (golden {e.flat[int(diff.argmax())]:.6g}, "
                           f"got {a.flat[int(diff.argmax())]:.6g})")
    return worst


def one_thread():
    """Generator for a module's autouse fixture: one intra-op thread (the reduction order the golden
    references were produced with), the session's thread count restored after the module. Set at
    import instead, it would hold every test of the session (all modules are imported at collection)
    to one thread."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
