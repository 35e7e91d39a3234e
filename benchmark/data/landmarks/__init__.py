"""Face + landmark backends and the face crop.

Backends (``get_backend(name, **options)``):

| name | engine | points | models |
|---|---|---|---|
| ``insightface`` | InsightFace 2.1 SCRFD + 2d106det (the paper's) | 73 (``insightface_73``) | user directory, never downloaded |
| ``mediapipe`` | MediaPipe 0.10.21 FaceMesh | 116 (``facemesh_inner_116``) | inside the wheel (offline) |

Backends are imported lazily: asking for one does not import the others'
packages. :mod:`.crop` turns a backend's box and points into the stored
``S x S`` face crop and crop-space landmarks.
"""

from __future__ import annotations

import difflib
import importlib
import inspect

from ...errors import ConfigError
from .base import Detection, LandmarkBackend

#: Registry: backend name -> "module:Class" (relative to this package).
BACKENDS: dict[str, str] = {
    "insightface": ".insightface_backend:InsightFaceBackend",
    "mediapipe": ".mediapipe_backend:MediaPipeBackend",
}
#: Accepted alternative names.
ALIASES: dict[str, str] = {"facemesh": "mediapipe", "mp": "mediapipe", "scrfd": "insightface", "2d106": "insightface"}


def available_backends() -> list[str]:
    """Registered backend names (whether or not their packages are installed)."""
    return sorted(BACKENDS)


def backend_class(name: str) -> type[LandmarkBackend]:
    """The backend class registered under ``name`` (or an alias).

    Raises:
        ConfigError: unknown name (with "did you mean" suggestions).
    """
    key = ALIASES.get(name, name)
    if key not in BACKENDS:
        close = difflib.get_close_matches(name, list(BACKENDS) + list(ALIASES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown landmark backend {name!r}: known backends are {', '.join(available_backends())}{hint}")
    module, cls = BACKENDS[key].split(":")
    return getattr(importlib.import_module(module, __name__), cls)


def get_backend(name: str, **options) -> LandmarkBackend:
    """Build a landmark backend by name.

    Args:
        name: ``mediapipe`` or ``insightface`` (aliases: ``facemesh``, ``scrfd``, ...).
        **options: passed to the backend's constructor, e.g.
            ``static_image_mode=True`` (mediapipe) or ``model_dir=...`` (insightface).

    Returns:
        A ready :class:`LandmarkBackend`.

    Raises:
        ConfigError: unknown backend or option.
        BackendUnavailableError: its package or model files are missing.
    """
    cls = backend_class(name)
    params = inspect.signature(cls.__init__).parameters
    unknown = sorted(k for k in options if k not in params or k == "self")
    if unknown:
        accepted = [k for k in params if k != "self"]
        raise ConfigError(
            f"landmark backend {name!r} has no option {', '.join(unknown)}; accepted: {', '.join(accepted) or 'none'}"
        )
    return cls(**options)


__all__ = ["BACKENDS", "Detection", "LandmarkBackend", "available_backends", "backend_class", "get_backend"]
