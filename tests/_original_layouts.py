"""Checkpoint files in the ORIGINAL layouts, by original file name, with seeded weights.

One writer per released file name (not per method: CoRe and AQA-TPT share ``model_rgb.pth``),
each the layout the golden / checkpoint tests already use for that file:
``writer(folder, seed) -> path`` writes ``folder/<original file name>``. The conformance suite
(``tests/test_conformance.py::test_original_layout_checkpoint_loads_and_changes_the_output``)
loads them into every registered method whose ``pretrained_files`` names them; a method with a
new original file adds its writer here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from _golden import seeded_state_dict


def _i3d(folder: Path, seed: int, name: str, original: str) -> Path:
    from test_golden_i3d import original_layout_state

    sd = original_layout_state(original, seed)
    if original == "musdl":  # DataParallel prefix, no num_batches_tracked (older torch)
        sd = {f"module.{k}": v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    torch.save(sd, folder / name)
    return folder / name


def _c3d(folder: Path, seed: int) -> Path:
    from test_golden_c3d import pickle_layout

    torch.save(pickle_layout(seed), folder / "c3d.pickle")
    return folder / "c3d.pickle"


def _former_dfer(folder: Path, seed: int) -> Path:
    from test_checkpoints import former_dfer_original_state

    from methods.backbones.former_dfer import FormerDFEREncoder

    enc = FormerDFEREncoder()
    enc.load_state_dict(seeded_state_dict(enc.state_dict(), seed))
    path = folder / "FormerDFER-DFEWset1-model_best.pth"
    torch.save({"epoch": 37, "state_dict": former_dfer_original_state(enc), "best_acc": torch.tensor(55.25)}, path)
    return path


def _pose_only(folder: Path, seed: int) -> Path:
    from test_checkpoints import write_pose_only_file

    from methods.backbones.slowonly import SlowOnlyEncoder

    enc = SlowOnlyEncoder()
    enc.load_state_dict(seeded_state_dict(enc.state_dict(), seed))
    torch.manual_seed(seed)  # the 17-channel stem and the 60-class head the loader drops
    return write_pose_only_file(folder / "pose_only.pth", enc)


def _ial_gca(folder: Path, seed: int) -> Path:
    from test_golden_ial_gca import _save_original

    return _save_original(folder, seed, container=True)


def _r3d(depth: int) -> Callable[[Path, int], Path]:
    def write(folder: Path, seed: int) -> Path:
        from test_golden_r3d import released_file

        path = folder / f"r3d{depth}_KM_200ep.pth"
        released_file(path, depth, 1039, seed)
        return path

    return write


def _x3d(folder: Path, seed: int) -> Path:
    from test_x3d import _hub_file

    from pytorchvideo.models.x3d import create_x3d

    ref = create_x3d(input_clip_length=13, input_crop_size=160)  # the hub's X3D-S
    return _hub_file(folder / "X3D_S.pyth", seeded_state_dict(ref.state_dict(), seed))


def _tramp_rgb(folder: Path, seed: int) -> Path:
    """TraMP-Former's ``FormerDFER_DFEW.pth``: the Former-DFER DFEW layout (the same writer's content)."""
    path = _former_dfer(folder, seed)
    return path.rename(folder / "FormerDFER_DFEW.pth")


def _skateformer(folder: Path, seed: int) -> Path:
    from test_golden_tramp_former import skateformer_file

    from methods.backbones.skateformer import SkateFormerEncoder

    return skateformer_file(folder / "SkateFormer_256_rgb1x1.pth", SkateFormerEncoder(t_partition=(8, None)), seed)


ORIGINAL_FILE_WRITERS: dict[str, Callable[[Path, int], Path]] = {
    "model_rgb.pth": lambda folder, seed: _i3d(folder, seed, "model_rgb.pth", "hassony2"),
    "rgb_i3d_pretrained.pt": lambda folder, seed: _i3d(folder, seed, "rgb_i3d_pretrained.pt", "musdl"),
    "rgb_imagenet.pt": lambda folder, seed: _i3d(folder, seed, "rgb_imagenet.pt", "piergiaj"),
    "c3d.pickle": _c3d,
    "FormerDFER-DFEWset1-model_best.pth": _former_dfer,
    "pose_only.pth": _pose_only,
    "pretrain_DFEW.pth": _ial_gca,
    "r3d18_KM_200ep.pth": _r3d(18),
    "r3d34_KM_200ep.pth": _r3d(34),
    "X3D_S.pyth": _x3d,
    "FormerDFER_DFEW.pth": _tramp_rgb,
    "SkateFormer_256_rgb1x1.pth": _skateformer,
}
"""Original file name -> writer ``(folder, seed) -> path``."""
