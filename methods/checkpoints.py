"""Safe reading of the authors' released checkpoints.

Every checkpoint is read with ``torch.load(path, map_location="cpu",
weights_only=True)``: PyTorch's restricted unpickler, which only rebuilds
tensors, containers and the globals allow-listed here. No pickle from a
checkpoint can run arbitrary code.

Two original files carry more than tensors:

* ``FormerDFER-DFEWset1-model_best.pth`` (Former-DFER ``main_DFEW.py``
  ``save_checkpoint``; QAFE-Net README ``models/pretrain/``): a dict with
  ``epoch``, ``state_dict``, ``best_acc`` (a tensor saved on CUDA),
  ``optimizer`` and ``recorder``, a pickled ``__main__.RecorderMeter`` object
  holding numpy arrays (``epoch_losses``, ``epoch_accuracy``).
* The QAFE-Net training checkpoint (``main_PFED5.py`` ``save_checkpoint``:
  ``class_{k}-model.pth`` / ``-model_best.pth``): ``epoch``, ``model``,
  ``evaluator``, ``SlowOnly``, ``decoder``, ``best_acc`` (a numpy float),
  ``optimizer``, ``recorder`` (also ``__main__.RecorderMeter``).

Both load here through a local stub class allow-listed under the name
``__main__.RecorderMeter`` plus the numpy globals needed to rebuild arrays and
scalars (under both the numpy 1.x ``numpy.core`` and numpy 2.x ``numpy._core``
names). Any other global in a file (``os.system``, ``__main__.Evil``...) is
refused with :class:`~benchmark.errors.CheckpointError`.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from benchmark.errors import CheckpointError

#: Where each original file comes from (used in "file missing" messages).
ORIGINAL_SOURCES: dict[str, str] = {
    "FormerDFER-DFEWset1-model_best.pth": (
        "Former-DFER trained on DFEW fold 1; QAFE-Net README, authors' Google Drive folder "
        "'pretrain/' (official Former-DFER fold models: zengqunzhao/Former-DFER README)"
    ),
    "pose_only.pth": (
        "PYSKL / mmaction2 RGBPoseConv3D pose-only SlowOnly-R50 on NTU60-XSub; QAFE-Net README "
        "Google Drive folder, or download.openmmlab.com/mmaction/pyskl/ckpt/rgbpose_conv3d/pose_only.pth"
    ),
}


def register_sources(sources: Mapping[str, str]) -> None:
    """Add original file name -> source lines to :data:`ORIGINAL_SOURCES` (each
    backbone module registers its own files when imported)."""
    ORIGINAL_SOURCES.update(sources)


class RecorderMeter:
    """Inert stand-in for the training scripts' ``__main__.RecorderMeter``.

    Former-DFER ``main_DFEW.py`` and QAFE-Net ``main_PFED5.py`` pickle their
    loss/accuracy recorder (attributes ``total_epoch``, ``current_epoch``,
    ``epoch_losses`` ``(epochs, 2)`` float32, and in Former-DFER
    ``epoch_accuracy`` ``(epochs, 2)``) into every checkpoint. Unpickling
    restores those attributes into this class, which has no behaviour.
    """

    def __repr__(self) -> str:
        return f"RecorderMeter({', '.join(sorted(vars(self)))})"


def _numpy_globals() -> list:
    try:  # numpy 2 name (also present in numpy 1.26); numpy.core is deprecated in numpy 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy < 1.26
        from numpy.core import multiarray as ma

    out: list = [np.ndarray, np.dtype]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(ma, name)
        out.append((fn, f"numpy.core.multiarray.{name}"))
        out.append((fn, f"numpy._core.multiarray.{name}"))
    # numpy >= 1.25 gives each dtype its own class (numpy.dtypes.Float32DType...);
    # the restricted unpickler's BUILD step checks the instance's exact type.
    seen = set()
    for code in "?bBhHiIlLqQefdgFDGUSMmV":
        try:
            cls = type(np.dtype(code))
        except TypeError:
            continue
        if cls is not np.dtype and cls not in seen:
            seen.add(cls)
            out.append(cls)
    for code in ("M8[ns]", "m8[ns]", "O"):
        cls = type(np.dtype(code))
        if cls not in seen and cls is not np.dtype:
            seen.add(cls)
            out.append(cls)
    return out


def allowed_globals() -> list:
    """The globals :func:`read_checkpoint` allow-lists beyond PyTorch's defaults.

    Returns a list for ``torch.serialization.safe_globals``: the
    :class:`RecorderMeter` stub as ``(cls, "__main__.RecorderMeter")`` and the
    numpy array/scalar/dtype reconstruction globals. Nothing here executes code
    from the file: ``_reconstruct`` and ``scalar`` only build arrays/scalars.
    """
    return [(RecorderMeter, "__main__.RecorderMeter"), *_numpy_globals()]


def _refused_globals(path: Path) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format or unreadable: no listing
        return []
    allowed = set()
    for g in allowed_globals():
        if isinstance(g, tuple):
            allowed.add(g[1])
        else:
            allowed.add(f"{g.__module__}.{g.__qualname__}")
    return sorted(n for n in names if n not in allowed)


def read_checkpoint(path: str | Path, expected_name: str | None = None) -> Any:
    """Read a checkpoint safely (restricted unpickler, tensors mapped to CPU).

    Args:
        path: the file.
        expected_name: the original file name this path should hold (e.g.
            ``"pose_only.pth"``); named in the error when the file is missing.

    Returns:
        Whatever the file holds (usually a dict). A pickled ``RecorderMeter``
        comes back as :class:`RecorderMeter`; CUDA tensors come back on CPU.

    Raises:
        CheckpointError: the file is missing (names the path and the expected
            original file and its source), is not a readable PyTorch file, or its
            pickle references a global outside PyTorch's defaults and
            :func:`allowed_globals` (names the file and the refused globals).
    """
    path = Path(path)
    if not path.is_file():
        msg = f"checkpoint file {str(path)!r} does not exist"
        if expected_name:
            msg += f"; expected the original file {expected_name!r}"
            if expected_name in ORIGINAL_SOURCES:
                msg += f" ({ORIGINAL_SOURCES[expected_name]})"
        raise CheckpointError(msg)
    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_globals(path)
        detail = f"refused globals: {', '.join(refused)}" if refused else f"{str(exc).splitlines()[0]}"
        raise CheckpointError(
            f"refusing to unpickle {str(path)!r}: it references code outside the allowed set "
            f"(tensors, containers, numpy arrays, __main__.RecorderMeter); {detail}. "
            "Only load checkpoints from a source you trust; this loader never executes pickled code."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(
            f"cannot read {str(path)!r} as a PyTorch checkpoint: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def state_dict_of(ckpt: Any, key: str, path: str | Path) -> dict[str, torch.Tensor]:
    """``ckpt[key]`` checked to be a mapping of tensors.

    Raises:
        CheckpointError: ``ckpt`` is not a dict, lacks ``key`` or ``ckpt[key]``
            holds non-tensors; the message names the file and the keys found.
    """
    if not isinstance(ckpt, Mapping):
        raise CheckpointError(f"{str(path)!r}: expected a dict with {key!r}, got {type(ckpt).__name__}")
    if key not in ckpt:
        raise CheckpointError(f"{str(path)!r}: no {key!r} entry; top-level keys: {', '.join(map(str, ckpt))}")
    sd = ckpt[key]
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(path)!r}: {key!r} is not a state dict of tensors")
    return dict(sd)


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str) -> tuple[dict[str, torch.Tensor], bool]:
    """Remove ``prefix`` from every key that has it.

    Returns ``(new_state, stripped)``: ``stripped`` tells whether all keys had it
    (a mixed dict is returned unchanged with ``False``).
    """
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}, True
    return dict(state), False


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], path: str | Path, what: str) -> None:
    """``module.load_state_dict(state, strict=True)`` with a readable error.

    Raises:
        CheckpointError: missing / unexpected keys or shape mismatches, listed
            with the file name and ``what`` (the part being loaded).
    """
    own = module.state_dict()
    # BatchNorm fills in an absent num_batches_tracked itself (older checkpoints lack it).
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state) if tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing[:12])}{' ...' if len(missing) > 12 else ''}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:12])}"
                         f"{' ...' if len(unexpected) > 12 else ''}")
        if shapes:
            parts.append(f"shape mismatches: {'; '.join(shapes[:12])}")
        raise CheckpointError(f"{str(path)!r} does not fit the {what}: " + " | ".join(parts))
    module.load_state_dict(dict(state), strict=True)


#: Official QAFE-Net training checkpoint entry -> (attribute of
#: :class:`methods.qafe_net.QAFENet`, wrapper prefix to strip after ``module.``).
QAFE_TRAINING_PARTS: dict[str, tuple[str, str]] = {
    "model": ("rgb_encoder", ""),           # GenerateModel: s_former.*, t_former.*
    "SlowOnly": ("heatmap_encoder", "restnet3d."),  # ResNet3dSlowOnly wrapper (sic 'restnet3d')
    "decoder": ("decoder", ""),             # decoder_fuser: model.i.*, pos_embed, norm, conv
    "evaluator": ("evaluator", ""),         # Evaluator: evaluator.layer{1,2,3}
}


def load_qafe_training_checkpoint(model: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load an official QAFE-Net training checkpoint into a ``QAFENet``.

    The file (QAFE-Net ``main_PFED5.py`` ``save_checkpoint``) is a dict whose
    ``model``, ``SlowOnly``, ``decoder`` and ``evaluator`` entries are the state
    dicts of the four modules, ``module.``-prefixed when trained with
    ``nn.DataParallel`` (the README's 2-GPU run). Each part is loaded strictly.

    Args:
        model: a :class:`methods.qafe_net.QAFENet` built with the geometry the
            checkpoint was trained at (paper: 5 sub-clips x 16 frames, 224 / 56 px).
        path: the checkpoint file.

    Returns:
        JSON-able info: ``epoch``, ``best_acc`` (the test Spearman rho the
        original script selected on), per part whether ``module.`` was stripped,
        and ``notes`` about settings under which the released code trained
        (channel-major RGB layout, positional embedding on the heatmap tokens)
        when the model differs.

    Raises:
        CheckpointError: unreadable / unsafe file, a missing part, or a part
            that does not fit (keys or shapes listed).
    """
    ckpt = read_checkpoint(path)
    info: dict[str, Any] = {"file": str(path), "format": "qafe_net_training", "parts": {}}
    for entry, (attr, wrapper) in QAFE_TRAINING_PARTS.items():
        sd = state_dict_of(ckpt, entry, path)
        sd, had_module = strip_prefix(sd, "module.")
        had_wrapper = False
        if wrapper:
            sd, had_wrapper = strip_prefix(sd, wrapper)
            if not had_wrapper:
                raise CheckpointError(f"{str(path)!r}: {entry!r} keys do not start with {wrapper!r} "
                                      f"(the ResNet3dSlowOnly wrapper attribute); first key: {next(iter(sd), None)!r}")
        load_strict(getattr(model, attr), sd, path, f"{attr} ({entry!r} entry)")
        info["parts"][entry] = {"into": attr, "stripped_module_prefix": had_module,
                                "stripped_wrapper_prefix": wrapper if had_wrapper else None,
                                "tensors": len(sd)}
    for k in ("epoch", "best_acc"):
        v = ckpt.get(k) if isinstance(ckpt, Mapping) else None
        if isinstance(v, torch.Tensor):
            v = v.item()
        elif isinstance(v, np.generic):
            v = v.item()
        info[k] = v if isinstance(v, (int, float)) or v is None else str(v)
    notes = []
    layout = getattr(getattr(model, "rgb_encoder", None), "layout", None)
    if layout is not None and layout != "channel_major":
        notes.append("the released code trained with rgb_layout='channel_major'; this model uses "
                     f"{layout!r}")
    stream = getattr(model, "pos_embed_stream", None)
    if stream is not None and stream != "heatmap":
        notes.append("the released code added the decoder pos_embed to the heatmap tokens; this model "
                     f"adds it to the {stream!r} tokens")
    info["notes"] = notes
    return info
