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

import functools

import cv2
import numpy as np
import pandas as pd
import torch

from ..api import NORMALISATIONS, ExemplarSpec
from ..cards import DatasetCard
from ..data.prepared import PreparedDataset, resize_frames
from ..errors import DataError, SubjectLeakError
from ..scales import ClipSettings
from . import MAE, RHO, RMSE, Partition, Protocol, sampling_rng

#: Frames per clip at the paper scale (official main_PFED5.py ``clip_len`` 80 = 5 x 16).
CLIP_LEN = 80


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


def eval_clip_indices(num_frames: int, clip_len: int) -> np.ndarray:
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


def check_labels(dataset: PreparedDataset, card: DatasetCard) -> None:
    """Range-check every label of ``videos.csv`` against the card (all expressions).

    Raises:
        LabelError: naming ``videos.csv`` and the video.
    """
    where = str(dataset.root / "videos.csv")
    videos = dataset.videos
    for vid, label in zip(videos["video_id"], videos["label"]):
        card.check_label(label, f"{where} (video {vid})")


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
    check_labels(dataset, card)
    sel = videos[videos["expression"] == expression]
    train = sel[sel["split"] == "train"]
    test = sel[sel["split"] == "test"]
    if len(train) == 0 or len(test) == 0:
        raise DataError(
            f"{where}: expression {expression!r} has {len(train)} train and {len(test)} test videos; "
            "both partitions need at least one"
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)


class PFED5Protocol(Protocol):
    """PFED5 (paper section 5): one model per expression on the official subject-disjoint
    train/test split; one deterministic test clip per video; Spearman's rho x 100 is the
    headline (MAE and RMSE in severity points are recorded too)."""

    name = "pfed5"
    title = "PFED5 official split, one model per expression"
    clip_len = CLIP_LEN
    test_clips = "even"
    test_samplings = 1
    metrics = (RHO, MAE, RMSE)
    pooled = False

    def partition_names(self, card: DatasetCard) -> list[str]:
        return ["official"]

    def default_partition(self, card: DatasetCard) -> str:
        return "official"

    def folder_tag(self, partition: str) -> str:
        return ""  # the only partition: run folders keep their ``<method>-<expression>-s<seed>`` names

    def partition_sizes(self, dataset: PreparedDataset, card: DatasetCard, expression: str
                        ) -> dict[str, tuple[int, int]]:
        v = dataset.videos
        counts = v[v["expression"] == expression]["split"].value_counts()
        return {"official": (int(counts.get("train", 0)), int(counts.get("test", 0)))}

    def partition(self, dataset: PreparedDataset, card: DatasetCard, expression: str, name: str) -> Partition:
        """The ``official`` partition (:func:`expression_split`); ``name=None`` means the default, ``official``.

        Raises:
            ConfigError: another partition name; else as :func:`expression_split`.
        """
        name = self.check_partition(card, name)
        train, test = expression_split(dataset, card, expression)
        return Partition(name, train, test)


# ------------------------------------------------------------------ transforms
def _crop_flip(frames: np.ndarray, size: int, offset: tuple[int, int], flip: bool) -> np.ndarray:
    y, x = offset
    out = frames[:, y:y + size, x:x + size]
    return out[:, :, ::-1] if flip else out


def centre_offset(full: int, size: int) -> int:
    """Offset of a centre crop (torchvideotransforms CenterCrop: ``round((full - size) / 2)``)."""
    return int(round((full - size) / 2.0))


def to_tensor(frames: np.ndarray, normalisation: str | None) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float32 in [0, 1], then ``(x - mean) / std`` of
    :data:`benchmark.api.NORMALISATIONS` (torchvideotransforms ClipToTensor + Normalize);
    ``None`` / ``"unit"``: [0, 1] only.

    Raises:
        ValueError: an unknown normalisation.
    """
    if normalisation is not None and normalisation not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {normalisation!r}; choose one of {', '.join(NORMALISATIONS)}")
    # Every output value is a function of one uint8 value and its channel: a (3, 256) float32 table
    # made by the same float32 operations in the same order (v / 255, then (v - mean) / std) gives
    # bit-identical values; transposing the uint8 frames first moves a quarter of the bytes, and
    # cv2.LUT writes each float32 plane once (no temporaries).
    planes = np.ascontiguousarray(np.moveaxis(np.asarray(frames), 3, 0))  # (3, T, H, W) uint8
    if planes.dtype != np.uint8:
        raise ValueError(f"to_tensor expects uint8 frames, got {planes.dtype}")
    lut = _normalisation_table(normalisation)
    out = np.empty(planes.shape, np.float32)
    if out.size:
        width = planes.shape[-1]
        for c in range(planes.shape[0]):
            cv2.LUT(planes[c].reshape(-1, width), lut[c], dst=out[c].reshape(-1, width))
    return torch.from_numpy(out)


@functools.lru_cache(maxsize=None)
def _normalisation_table(normalisation: str | None) -> np.ndarray:
    """``(3, 256)`` float32: channel c's value for each uint8 (read-only, cached)."""
    x = np.repeat(np.arange(256, dtype=np.float32)[None], 3, axis=0) / 255.0
    ms = NORMALISATIONS.get(normalisation) if normalisation is not None else None
    if ms is not None:
        x = (x - np.asarray(ms[0], np.float32)[:, None]) / np.asarray(ms[1], np.float32)[:, None]
    x = np.ascontiguousarray(x, dtype=np.float32)
    x.flags.writeable = False
    return x


class ClipDataset(torch.utils.data.Dataset):
    """PyTorch dataset of PFED5-protocol clips for one expression and partition.

    Args:
        dataset: the prepared dataset.
        videos: rows of ``videos.csv`` (from :func:`expression_split`).
        settings: clip settings (:meth:`benchmark.scales.Scale.resolve`).
        train: training sampling and augmentation (else deterministic test clips).
        reps: samples per video per epoch (training: ``reps_per_epoch``; test: 1).
        seed: base seed; item ``i`` of epoch ``e`` draws from
            ``default_rng([seed, e, i])`` so results do not depend on worker count.
        exemplar_pool: the TRAINING partition (rows of ``videos.csv``) exemplars are
            drawn from, for a method with :attr:`~benchmark.api.Method.exemplars`.
            Training: one exemplar per item, never the item's own video. Test: voter
            ``k`` (:meth:`set_voter`) of test video ``j`` is row
            ``voters(j)[k]``, a seeded draw without replacement (with replacement only
            when the pool is smaller than the voter count).
        exemplars: the method's :class:`~benchmark.api.ExemplarSpec` (required with a pool).
        test_clips: the protocol's test clips (:attr:`benchmark.protocols.Protocol.test_clips`):
            ``"even"`` (:func:`eval_clip_indices`, deterministic) or ``"random"`` (a training
            clip's frames, :func:`train_clip_indices`, drawn from
            :func:`benchmark.protocols.sampling_rng` of ``(seed, sampling, row)``; centre
            crop, no flip). Select the sampling with :meth:`set_sampling`.
        test_samplings: random test clips per video the engine averages (``test_clips="random"``).

    Items are dicts: ``rgb`` ``(3, T, rgb_size, rgb_size)`` float32, ``heatmap``
    ``(3, T, heatmap_size, heatmap_size)`` float32 in [0, 1] (each only if the
    method needs it), ``label`` float32 scalar, ``index`` (row in ``videos``) and,
    with exemplars, ``exemplar``: the same inputs of the exemplar clip plus its
    ``label`` and ``index`` (row in ``exemplar_pool``). Exemplar clips are sampled
    like the item (training: random clip and augmentation; test: the test clip).

    Raises:
        DataError: exemplars asked for with an empty pool, or crops larger than frames.
    """

    def __init__(self, dataset: PreparedDataset, videos: pd.DataFrame, settings: ClipSettings, *,
                 train: bool, reps: int = 1, seed: int = 0, exemplar_pool: pd.DataFrame | None = None,
                 exemplars: ExemplarSpec | None = None, test_clips: str = "even", test_samplings: int = 1) -> None:
        if test_clips not in ("even", "random"):
            raise DataError(f"unknown test_clips {test_clips!r}; use 'even' or 'random'")
        if int(test_samplings) < 1:
            raise DataError(f"test_samplings must be >= 1, got {test_samplings!r}")
        self.test_clips = test_clips
        self.test_samplings = int(test_samplings)
        self.sampling = 0
        self.dataset = dataset
        self.videos = videos.reset_index(drop=True)
        self.settings = settings
        self.train = train
        self.reps = max(1, int(reps)) if train else 1
        self.seed = int(seed)
        self.epoch = 0
        self.voter = 0
        self.exemplars = exemplars
        self.pool = None if exemplar_pool is None else exemplar_pool.reset_index(drop=True)
        if self.pool is not None:
            if exemplars is None:
                raise DataError("an exemplar pool needs the method's ExemplarSpec")
            if train and len(self.pool) < 2:
                raise DataError(f"{len(self.pool)} training video(s): an exemplar other than the query itself "
                                "needs at least 2 training videos")
            if len(self.pool) == 0:
                raise DataError("no training video to draw exemplars from")
        g = settings.geometry
        w, h = settings.rgb_resize
        if settings.inputs.rgb and (g.rgb_size > w or g.rgb_size > h):
            raise DataError(f"RGB crop {g.rgb_size} larger than the resized frames {w}x{h}")
        if settings.inputs.heatmap and g.heatmap_size > settings.heatmap_resize:
            raise DataError(f"heatmap crop {g.heatmap_size} larger than the resized heatmaps {settings.heatmap_resize}")

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random draws :meth:`__getitem__` uses."""
        self.epoch = int(epoch)

    def set_sampling(self, sampling: int) -> None:
        """Select which random test clip (0-based) of each test video :meth:`__getitem__` returns
        (``test_clips="random"`` only; the even test clip does not depend on it)."""
        self.sampling = int(sampling)

    def set_voter(self, voter: int) -> None:
        """Select which of each test video's exemplar voters :meth:`__getitem__` returns."""
        self.voter = int(voter)

    def voters(self, row: int) -> np.ndarray:
        """Pool rows of the exemplar voters of test item ``row``: ``(test_voters,)`` int64,
        seeded by ``(seed, row)`` only (the same for every epoch and voter)."""
        k = self.exemplars.test_voters
        rng = np.random.default_rng([self.seed, 104729, row])
        return rng.choice(len(self.pool), size=k, replace=len(self.pool) < k).astype(np.int64)

    def __len__(self) -> int:
        return len(self.videos) * self.reps

    def _train_exemplar(self, row: pd.Series, rng: np.random.Generator) -> int:
        own = np.flatnonzero(self.pool["video_id"].to_numpy() == row["video_id"])
        j = int(rng.integers(0, len(self.pool) - len(own)))
        for o in own:  # skip the query's own video (it is in the pool: both are the training partition)
            if j >= o:
                j += 1
        return j

    def __getitem__(self, i: int) -> dict:
        row = self.videos.iloc[i % len(self.videos)]
        rng = np.random.default_rng([self.seed, self.epoch, i])
        item = self._clip(row, rng, (0, i % len(self.videos)))
        item["index"] = i % len(self.videos)
        if self.pool is not None:
            j = self._train_exemplar(row, rng) if self.train else int(self.voters(i % len(self.videos))[self.voter])
            ex = self._clip(self.pool.iloc[j], rng, (1, j))
            ex["index"] = j
            item["exemplar"] = ex
        return item

    def _clip(self, row: pd.Series, rng: np.random.Generator, key: tuple[int, int]) -> dict:
        vid = row["video_id"]
        s = self.settings
        g = s.geometry
        n = int(row["num_frames"])
        if self.train:
            idx = train_clip_indices(n, g.clip_len, rng)
        elif self.test_clips == "random":  # key: (0, test row) or (1, an exemplar's pool row)
            idx = train_clip_indices(n, g.clip_len, sampling_rng(self.seed, self.sampling, key[1], key[0]))
        else:
            idx = eval_clip_indices(n, g.clip_len)
        flip_rgb = bool(rng.random() < 0.5) if self.train else False
        flip_hm = flip_rgb if s.inputs.stream_sync in ("flip", "flip_crop") else (
            bool(rng.random() < 0.5) if self.train else False)
        item: dict = {"label": torch.tensor(float(row["label"]), dtype=torch.float32)}
        w, h = s.rgb_resize
        span_y, span_x = h - g.rgb_size, w - g.rgb_size
        span_hm = s.heatmap_resize - g.heatmap_size
        if self.train:
            off_rgb = (int(rng.integers(0, span_y + 1)), int(rng.integers(0, span_x + 1)))
            if s.inputs.stream_sync == "flip_crop":
                off_hm = (min(span_hm, int(round(off_rgb[0] * s.heatmap_resize / h))),
                          min(span_hm, int(round(off_rgb[1] * s.heatmap_resize / w))))
            else:
                off_hm = (int(rng.integers(0, span_hm + 1)), int(rng.integers(0, span_hm + 1)))
        else:
            off_rgb = (centre_offset(h, g.rgb_size), centre_offset(w, g.rgb_size))
            off_hm = (centre_offset(s.heatmap_resize, g.heatmap_size),) * 2

        if s.inputs.rgb:
            if not self.train and s.inputs.test_crop == "resize":  # the whole frame resized (TraMP-Former's test)
                frames = resize_frames(self.dataset.frames(vid, idx), (g.rgb_size, g.rgb_size))
                item["rgb"] = to_tensor(frames, s.inputs.rgb_normalisation)
            else:
                frames = resize_frames(self.dataset.frames(vid, idx), s.rgb_resize)
                item["rgb"] = to_tensor(_crop_flip(frames, g.rgb_size, off_rgb, flip_rgb), s.inputs.rgb_normalisation)
        if s.inputs.heatmap:
            from ..data.heatmaps import cached_heatmap_frames

            # rendered at heatmap_render, resized to heatmap_resize (or read so from the heatmap cache)
            hm = cached_heatmap_frames(self.dataset, vid, idx, mode=s.inputs.heatmap_mode,
                                       sigma=s.inputs.heatmap_sigma, size=s.heatmap_render, resize=s.heatmap_resize)
            item["heatmap"] = to_tensor(_crop_flip(hm, g.heatmap_size, off_hm, flip_hm), None)
        if s.inputs.trajectory:
            item.update(self._trajectory(row, rng))
        return item

    def _trajectory(self, row: pd.Series, rng: np.random.Generator) -> dict:
        """``trajectory (V, L, 5)`` and ``index_t (L,)`` of one video (:mod:`benchmark.data.trajectories`);
        reversed in time with the spec's probability when training (drawn after every other draw).

        Raises:
            DataError: a landmark scheme of another size than the method's indices address.
        """
        from ..data.trajectories import trajectory_indices, trajectory_sample

        spec = self.settings.inputs
        vid = row["video_id"]
        points, _ = self.dataset.landmarks(vid)
        if points.shape[1] != spec.trajectory_landmarks:
            raise DataError(f"{self.dataset.root}: video {vid} has {points.shape[1]} landmarks per frame; the "
                            f"trajectory stream takes the {spec.trajectory_landmarks}-point inner-face scheme "
                            "(prepare the dataset with --backend insightface)")
        idx, index_t = trajectory_indices(int(row["num_frames"]), spec.trajectory_len(str(row["expression"])))
        reverse = bool(self.train and spec.trajectory_reverse_p > 0 and rng.random() < spec.trajectory_reverse_p)
        sample = trajectory_sample(points, self.dataset.frames(vid, idx), idx, point_ids=spec.trajectory_points,
                                   reference=spec.trajectory_reference, reverse=reverse)
        return {"trajectory": torch.from_numpy(sample), "index_t": torch.from_numpy(index_t)}
