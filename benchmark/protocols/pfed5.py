"""The PFED5 protocol (paper section 5; official ``main_PFED5.py`` and
``dataloader/Parkinson_landmarkheatmap.py`` in shuchaoduan/QAFE-Net).

* One model per expression, trained on the subject-disjoint ``train`` split and
  evaluated on ``test`` (a subject in both is an error, never a warning).
* Training clips: ``clip_len`` (80) consecutive frames from a random start; a
  video of at most ``clip_len`` frames is looped from its first frame. Each
  training video is sampled ``reps_per_epoch`` (5) times per epoch.
* Test clips: ``clip_len`` evenly spaced frames (``linspace(0, n-1)`` floored),
  or the same loop for short videos.
* The clip is cut into ``n_subclips`` (5) sub-clips of ``subclip_len`` (16) by
  the method; this module delivers ``(3, clip_len, H, W)`` tensors.
* RGB: random ``rgb_size`` (224) crop of the 256x256 face crop + horizontal
  flip (train), centre crop (test), ImageNet normalisation (or [0, 1]).
  Heatmaps: rendered from landmarks on the same frame indices, resized to
  ``heatmap_resize`` (64), random / centre ``heatmap_size`` (56) crop, flip,
  values in [0, 1]. The flip is shared by both streams unless the method asks
  for the released code's independent draws (``InputSpec.stream_sync``).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd
import torch

from ..api import ClipGeometry, InputSpec
from ..cards import DatasetCard
from ..data.prepared import PreparedDataset
from ..errors import DataError, SubjectLeakError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# ---------------------------------------------------------------- frame sampling
def loop_clip_indices(num_frames: int, clip_len: int) -> np.ndarray:
    """Frames ``0..n-1`` repeated from the first frame until ``clip_len`` indices
    (official ``load_short_clips``, used when ``num_frames <= clip_len``).

    Returns:
        ``(clip_len,)`` int64, 0-based frame indices.
    """
    if num_frames < 1:
        raise DataError("a video needs at least one frame")
    return np.arange(clip_len, dtype=np.int64) % num_frames


def train_clip_indices(num_frames: int, clip_len: int, rng: np.random.Generator) -> np.ndarray:
    """A training clip: ``clip_len`` consecutive frames from a random start.

    Official ``load_long_clips``: 1-based ``start = random.randint(1, n - clip_len)``
    (both ends inclusive), i.e. 0-based start in ``[0, n - clip_len - 1]``; the last
    frame of a long video is therefore never used in training (kept for fidelity).
    Videos of at most ``clip_len`` frames use :func:`loop_clip_indices`.

    Returns:
        ``(clip_len,)`` int64, 0-based frame indices.
    """
    if num_frames <= clip_len:
        return loop_clip_indices(num_frames, clip_len)
    start = int(rng.integers(0, num_frames - clip_len))
    return np.arange(start, start + clip_len, dtype=np.int64)


def test_clip_indices(num_frames: int, clip_len: int) -> np.ndarray:
    """A test clip: ``clip_len`` evenly spaced frames,
    ``np.linspace(0, n - 1, clip_len).astype(int32)`` (floored), or the loop for short videos.

    Returns:
        ``(clip_len,)`` int64, 0-based frame indices.
    """
    if num_frames <= clip_len:
        return loop_clip_indices(num_frames, clip_len)
    return np.linspace(0, num_frames - 1, num=clip_len, dtype=np.int32).astype(np.int64)


# ---------------------------------------------------------------------- splits
def check_subject_disjoint(train: pd.DataFrame, test: pd.DataFrame, where: str) -> None:
    """Raise if any subject has videos in both partitions.

    Raises:
        SubjectLeakError: naming the subject(s) and an example video from each side.
    """
    both = sorted(set(train["subject"]) & set(test["subject"]))
    if both:
        s = both[0]
        a = train.loc[train["subject"] == s, "video_id"].iloc[0]
        b = test.loc[test["subject"] == s, "video_id"].iloc[0]
        more = f" (and {len(both) - 1} more: {', '.join(both[1:4])})" if len(both) > 1 else ""
        raise SubjectLeakError(
            f"{where}: subject {s!r} is in both train (e.g. video {a}) and test (e.g. video {b}){more}; "
            "fix the split so that every subject is in one partition only"
        )


def expression_split(dataset: PreparedDataset, card: DatasetCard, expression: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test videos of one expression, checked.

    Returns:
        ``(train, test)`` DataFrames (``videos.csv`` rows).

    Raises:
        SubjectLeakError: a subject in both partitions (checked over ALL expressions:
            PFED5 splits patients, not videos).
        LabelError: a label outside the card's range.
        DataError: an expression with no training or no test video.
    """
    videos = dataset.videos
    where = str(dataset.root / "videos.csv")
    check_subject_disjoint(videos[videos["split"] == "train"], videos[videos["split"] == "test"], where)
    for vid, label in zip(videos["video_id"], videos["label"]):
        card.check_label(label, f"{where} (video {vid})")
    sel = videos[videos["expression"] == expression]
    train = sel[sel["split"] == "train"]
    test = sel[sel["split"] == "test"]
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"{where}: expression {expression!r} has {len(train)} train and {len(test)} test videos; "
            "both partitions need at least one"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


# ------------------------------------------------------------------ transforms
def _resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3), area interpolation (anti-aliased)."""
    if frames.shape[1] == size and frames.shape[2] == size:
        return frames
    return np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])


def _crop_flip(frames: np.ndarray, size: int, offset: tuple[int, int], flip: bool) -> np.ndarray:
    y, x = offset
    out = frames[:, y:y + size, x:x + size]
    return out[:, :, ::-1] if flip else out


def centre_offset(full: int, size: int) -> int:
    """Offset of a centre crop (torchvideotransforms CenterCrop: ``round((full - size) / 2)``)."""
    return int(round((full - size) / 2.0))


def to_tensor(frames: np.ndarray, normalisation: str | None) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [0, 1], then ImageNet mean/std when
    ``normalisation == "imagenet"`` (torchvideotransforms ClipToTensor + Normalize)."""
    x = frames.astype(np.float32) / 255.0
    if normalisation == "imagenet":
        x = (x - IMAGENET_MEAN) / IMAGENET_STD
    elif normalisation not in (None, "unit"):
        raise ValueError(f"unknown normalisation {normalisation!r}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(3, 0, 1, 2)))


@dataclass(frozen=True)
class ClipSettings:
    """Everything the clip pipeline needs (from scale, protocol and method).

    Attributes:
        geometry: clip geometry (clip length, crop sizes).
        frame_size: prepared crops are resized to this size first (256 paper, no-op).
        heatmap_resize: heatmap frames are resized to this before cropping (64).
        inputs: the method's input spec.
    """

    geometry: ClipGeometry
    frame_size: int
    heatmap_resize: int
    inputs: InputSpec


class ClipDataset(torch.utils.data.Dataset):
    """PyTorch dataset of PFED5-protocol clips for one expression and partition.

    Args:
        dataset: the prepared dataset.
        videos: rows of ``videos.csv`` (from :func:`expression_split`).
        settings: clip settings.
        train: training sampling and augmentation (else deterministic test clips).
        reps: samples per video per epoch (training: ``reps_per_epoch``; test: 1).
        seed: base seed; item ``i`` of epoch ``e`` draws from
            ``default_rng([seed, e, i])`` so results do not depend on worker count.

    Items are dicts: ``rgb`` ``(3, T, rgb_size, rgb_size)`` float32, ``heatmap``
    ``(3, T, heatmap_size, heatmap_size)`` float32 in [0, 1] (each only if the
    method needs it), ``label`` float32 scalar, ``index`` (row in ``videos``).
    """

    def __init__(self, dataset: PreparedDataset, videos: pd.DataFrame, settings: ClipSettings, *,
                 train: bool, reps: int = 1, seed: int = 0) -> None:
        self.dataset = dataset
        self.videos = videos.reset_index(drop=True)
        self.settings = settings
        self.train = train
        self.reps = max(1, int(reps)) if train else 1
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws :meth:`__getitem__` uses."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.videos) * self.reps

    def __getitem__(self, i: int) -> dict:
        row = self.videos.iloc[i % len(self.videos)]
        vid = row["video_id"]
        s = self.settings
        g = s.geometry
        n = int(row["num_frames"])
        rng = np.random.default_rng([self.seed, self.epoch, i])
        idx = train_clip_indices(n, g.clip_len, rng) if self.train else test_clip_indices(n, g.clip_len)
        flip_rgb = bool(rng.random() < 0.5) if self.train else False
        flip_hm = flip_rgb if s.inputs.stream_sync in ("flip", "flip_crop") else (
            bool(rng.random() < 0.5) if self.train else False)
        item: dict = {"label": torch.tensor(float(row["label"]), dtype=torch.float32), "index": i % len(self.videos)}

        span_rgb = s.frame_size - g.rgb_size
        span_hm = s.heatmap_resize - g.heatmap_size
        if span_rgb < 0 or span_hm < 0:
            raise DataError(f"crop {g.rgb_size}/{g.heatmap_size} larger than frames {s.frame_size}/{s.heatmap_resize}")
        if self.train:
            off_rgb = (int(rng.integers(0, span_rgb + 1)), int(rng.integers(0, span_rgb + 1)))
            if s.inputs.stream_sync == "flip_crop":
                ratio = s.heatmap_resize / s.frame_size
                off_hm = (min(span_hm, int(round(off_rgb[0] * ratio))), min(span_hm, int(round(off_rgb[1] * ratio))))
            else:
                off_hm = (int(rng.integers(0, span_hm + 1)), int(rng.integers(0, span_hm + 1)))
        else:
            off_rgb = (centre_offset(s.frame_size, g.rgb_size),) * 2
            off_hm = (centre_offset(s.heatmap_resize, g.heatmap_size),) * 2

        if s.inputs.rgb:
            frames = _resize_frames(self.dataset.frames(vid, idx), s.frame_size)
            item["rgb"] = to_tensor(_crop_flip(frames, g.rgb_size, off_rgb, flip_rgb), s.inputs.rgb_normalisation)
        if s.inputs.heatmap:
            from ..data.heatmaps import cached_heatmap_frames

            hm = cached_heatmap_frames(self.dataset, vid, idx, mode=s.inputs.heatmap_mode,
                                       sigma=s.inputs.heatmap_sigma, size=s.frame_size)
            hm = _resize_frames(hm, s.heatmap_resize)
            item["heatmap"] = to_tensor(_crop_flip(hm, g.heatmap_size, off_hm, flip_hm), None)
        return item
