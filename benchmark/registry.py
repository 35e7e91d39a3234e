"""The method registry: names -> :class:`benchmark.api.Method` subclasses.

Methods are discovered lazily through the ``qafe_bench.methods`` entry-point
group (in-tree methods are declared in this project's ``pyproject.toml``; a
plugin package declares its own), so importing the registry imports no model
code. Names are matched case-insensitively with ``-`` and ``_`` equivalent
(``QAFE-Net`` finds ``qafe_net``), and an unknown name gets a "did you mean".
"""

from __future__ import annotations

import difflib
import importlib
import os
from importlib.metadata import entry_points

from .api import Method
from .errors import UnknownMethodError

GROUP = "qafe_bench.methods"

_extra: dict[str, type[Method] | str] = {}


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_").replace(" ", "_")


#: Environment variable naming extra methods without packaging them: ``name=module:Class`` pairs
#: separated by commas (the module must be importable). Inherited by executor workers.
ENV_METHODS = "QAFE_BENCH_METHODS"


def _env_methods() -> dict[str, str]:
    out = {}
    for item in filter(None, (x.strip() for x in os.environ.get(ENV_METHODS, "").split(","))):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise UnknownMethodError(f"${ENV_METHODS}: {item!r} is not name=module:Class")
        out[_norm(name)] = target.strip()
    return out


def _entries() -> dict[str, tuple[str, str]]:
    """normalised name -> (target "module:attr", origin)."""
    out: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=GROUP):
        origin = ep.dist.name if ep.dist is not None else "unknown"
        out[_norm(ep.name)] = (ep.value, "in-tree" if origin == "qafe-bench" else origin)
    for name, target in _env_methods().items():
        out[name] = (target, f"${ENV_METHODS}")
    for name, target in _extra.items():
        out[_norm(name)] = (target if isinstance(target, str) else f"{target.__module__}:{target.__qualname__}",
                            "registered")
    return out


def register(name: str, target: type[Method] | str) -> None:
    """Register a method class (or a ``"module:attr"`` string) at run time, e.g. in tests.

    A registered name shadows an entry point of the same name.
    """
    _extra[_norm(name)] = target


def unregister(name: str) -> None:
    """Remove a method registered with :func:`register` (no error if absent)."""
    _extra.pop(_norm(name), None)


def available() -> dict[str, str]:
    """All registered method names -> origin (``in-tree``, a plugin distribution, ``registered``)."""
    return {k: v[1] for k, v in sorted(_entries().items())}


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``.

    Raises:
        UnknownMethodError: no such method (the message lists close names), or the
            entry point's target cannot be imported.
    """
    key = _norm(name)
    if key in _extra and not isinstance(_extra[key], str):
        return _extra[key]  # type: ignore[return-value]
    entries = _entries()
    if key not in entries:
        close = difflib.get_close_matches(key, entries, n=3, cutoff=0.5)
        raise UnknownMethodError(
            f"no method named {name!r}"
            + (f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else "")
            + f" Registered: {', '.join(sorted(entries)) or '(none)'}"
        )
    target = entries[key][0]
    module_name, _, attr = target.partition(":")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UnknownMethodError(f"method {name!r}: cannot import {target} ({exc})") from exc
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise UnknownMethodError(f"method {name!r}: {target} is not a benchmark.api.Method subclass")
    return obj


def is_registered(name: str) -> bool:
    """True when ``name`` resolves to a registered method (without importing it)."""
    return _norm(name) in _entries()
