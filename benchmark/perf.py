"""Performance measured as ratios against a straightforward baseline run in the same process.

``qafe-bench perf`` (and ``tox -e bench``) prints one line per stage: our throughput, the
baseline's, and the ratio, each the median of repeated timings (this machine is shared and
noisy: medians and ratios, never absolute promises):

1. ``heatmaps``: landmark heatmap volumes of one QAFE-Net clip (80 frames x 73 landmarks at
   256 x 256), ``official`` and ``paper`` modes, against the literal per-landmark loop of the
   original ``dataset/generate_landmark_heatmap.py`` (:mod:`benchmark.data.heatmap_reference`);
   outputs checked identical first.
2. ``loading``: one PFED5 training sample (80 RGB frames cropped to 224, 80 heatmap frames resized
   to 64 and cropped to 56, flips, normalisation) from a prepared dataset, in each frame format,
   against the original loader's way: 160 JPEG files opened one by one with PIL (RGB frames and the
   precomputed JET heatmap images) and transformed frame by frame. With each format's disk
   footprint per 1000 frames (RGB frames + the stored heatmap frames a run reads) and what the
   whole of PFED5 (about 247,000 frames) would take.
3. ``prepare``: frames per second of decode + face detection + landmarks + crop with the offline
   backend (mediapipe) on ``../shared/real_faces``.
4. ``train_step``: QAFE-Net forward + backward at the paper's input sizes (5 sub-clips of
   16 x 224 x 224 RGB and 16 x 56 x 56 heatmaps), batch 1: samples/s, peak memory, forward
   FLOPs per sample counted with ``FlopCounterMode`` and the share of a stated peak
   (``--peak-gflops``), on CPU in float32 and with bf16 autocast, and on a GPU when one is
   visible in float32 and with AMP bf16 + channels-last (the engine's speed options).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

#: Frames of PFED5 (paper Table 1: 2811 videos, 88 frames on average).
PFED5_FRAMES = 247_000


def median_seconds(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` calls, in seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------- heatmaps
def heatmap_case(mode: str, frames: int = 80, landmarks: int = 73, size: int = 256, seed: int = 2023):
    """``(ours, baseline)``: zero-argument callables rendering one clip's landmark heatmap volume
    ``(frames, size, size, 3)`` uint8 in ``mode`` (``official`` or ``paper``), vectorised and with
    the per-landmark loops of :mod:`benchmark.data.heatmap_reference` (equal arrays)."""
    from .data import heatmap_reference as ref
    from .data.heatmaps import render_heatmap_frames

    rng = np.random.default_rng(seed)
    pts = ref.random_points(rng, frames, landmarks, size, size)
    rgb = rng.integers(0, 256, (frames, size, size, 3), dtype=np.uint8)
    if mode == "official":
        return (lambda: render_heatmap_frames(pts, size=size, mode="official", sigma=1.0),
                lambda: ref.reference_official(pts, (size, size), sigma=1.0))
    if mode == "paper":
        return (lambda: render_heatmap_frames(pts, size=size, mode="paper", sigma=1.0, frames=rgb),
                lambda: ref.reference_paper(pts, rgb, (size, size), sigma=1.0))
    raise ValueError(f"heatmap_case: mode must be 'official' or 'paper', got {mode!r}")


def heatmap_stage(repeats: int = 5, frames: int = 80, landmarks: int = 73, size: int = 256, seed: int = 2023) -> list[dict]:
    """Stage 1: vectorised heatmap volumes (blocks of 8 frames on OpenCV's threads) vs the
    per-landmark loops of one thread (identical output checked)."""
    from .data.heatmaps import _BLOCK, _thread_count

    threads = _thread_count(None, -(-frames // _BLOCK))  # what render_heatmap_frames uses
    out = []
    for mode in ("official", "paper"):
        ours, base = heatmap_case(mode, frames, landmarks, size, seed)
        identical = bool(np.array_equal(ours(), base()))
        t_ours, t_base = median_seconds(ours, repeats), median_seconds(base, max(1, repeats // 2))
        out.append({"stage": f"heatmaps ({mode})", "unit": "clips/s", "ours": 1 / t_ours, "baseline": 1 / t_base,
                    "ratio": t_base / t_ours, "target": 20.0,
                    "check": f"identical output: {identical}; {threads} thread(s)"})
    return out


# -------------------------------------------------------------------------------------- loading
def _baseline_sample(rgb_dir: Path, hm_dir: Path, n: int, rng: np.random.Generator):
    """The original loader's work for one training sample: 80 + 80 JPEG files through PIL, per-frame
    flips / crops / resizes, then ClipToTensor and ImageNet normalisation (QAFE-Net
    ``dataloader/Parkinson_landmarkheatmap.py`` with torchvideotransforms)."""
    import torch
    from PIL import Image

    start = int(rng.integers(1, n - 80)) if n > 81 else 1
    idx = [start + i for i in range(80)] if n > 80 else [(i % n) + 1 for i in range(80)]
    rgb = [Image.open(rgb_dir / f"{i:05d}.jpg").convert("RGB") for i in idx]
    hms = [Image.open(hm_dir / f"{i:05d}.jpg").convert("RGB") for i in idx]
    if rng.random() < 0.5:
        rgb = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in rgb]
    y, x = int(rng.integers(0, 33)), int(rng.integers(0, 33))
    rgb = [im.crop((x, y, x + 224, y + 224)) for im in rgb]
    if rng.random() < 0.5:
        hms = [im.transpose(Image.FLIP_LEFT_RIGHT) for im in hms]
    hms = [im.resize((64, 64), Image.BILINEAR) for im in hms]
    y, x = int(rng.integers(0, 9)), int(rng.integers(0, 9))
    hms = [im.crop((x, y, x + 56, y + 56)) for im in hms]
    clip = torch.from_numpy(np.stack([np.asarray(im) for im in rgb])).permute(3, 0, 1, 2).float().div(255)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1, 1)
    clip = (clip - mean) / std
    heat = torch.from_numpy(np.stack([np.asarray(im) for im in hms])).permute(3, 0, 1, 2).float().div(255)
    return clip, heat


def _folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


class LoadingCase:
    """One PFED5 training sample loaded both ways from the same synthetic video (stage 2).

    Built in ``workdir`` (a fresh temporary folder by default): one prepared dataset per frame format
    of :data:`benchmark.data.prepared.FRAME_FORMATS` with its heatmap cache written as ``qafe-bench
    heatmaps`` writes it for QAFE-Net at the paper scale (drawn at 256 px, stored at 64 px), and the
    original pipeline's input: per-frame RGB JPEGs and JET heatmap JPEGs (cv2 quality 95).

    Attributes:
        ours: frame format -> zero-argument callable returning one training sample (a dict with
            ``rgb`` ``(3, 80, 224, 224)`` and ``heatmap`` ``(3, 80, 56, 56)`` float32), a new epoch's
            random clip, crop and flip each call.
        baseline: zero-argument callable, the original loader's work for one sample.
        bytes_per_1000: frame format (and ``original``) -> disk bytes per 1000 frames (RGB frames plus
            the heatmap frames a run reads).
    """

    def __init__(self, workdir: str | Path | None = None, frames: int = 120, seed: int = 4):
        import cv2
        import pandas as pd

        from .api import InputSpec
        from .data.heatmaps import render_heatmap_frames, write_heatmap_cache
        from .data.prepared import FRAME_FORMATS, PreparedDataset
        from .data.synthetic import generate_synthetic
        from .protocols.pfed5 import ClipDataset
        from .scales import get_scale

        tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="qafe-perf-"))
        spec = InputSpec(rgb=True, heatmap=True, heatmap_mode="official", stream_sync="none")
        settings = get_scale("paper").resolve(spec, 80)
        self.ours, self.bytes_per_1000 = {}, {}
        for fmt in FRAME_FORMATS:
            root = tmp / f"prepared-{fmt}"
            generate_synthetic(root, scale="tiny", seed=seed, subjects=2, train_subjects=1, videos_per_expression=1,
                               expressions="smile", crop_size=256, min_length=frames, max_length=frames,
                               mean_length=frames, frame_format=fmt)
            ds = PreparedDataset(root)
            cache = write_heatmap_cache(ds, mode="official", sigma=1.0, size=settings.heatmap_render,
                                        resize=settings.heatmap_resize)
            clips = ClipDataset(ds, pd.DataFrame(ds.videos), settings, train=True, reps=1, seed=0)
            epochs = iter(range(10**9))
            self.ours[fmt] = lambda c=clips, e=epochs: (c.set_epoch(next(e)), c[0])[1]
            n_frames = int(ds.videos["num_frames"].sum())
            self.bytes_per_1000[fmt] = (_folder_bytes(root / "frames") + _folder_bytes(cache)) / n_frames * 1000
        vid = ds.videos.index[0]
        n = int(ds.videos.at[vid, "num_frames"])
        rgb_dir, hm_dir = tmp / "original" / "frames", tmp / "original" / "heatmaps"
        rgb_dir.mkdir(parents=True, exist_ok=True)
        hm_dir.mkdir(parents=True, exist_ok=True)
        all_rgb = ds.frames(vid)
        heat = render_heatmap_frames(ds.landmarks(vid)[0], size=256, mode="official")
        for i in range(n):
            cv2.imwrite(str(rgb_dir / f"{i + 1:05d}.jpg"), cv2.cvtColor(all_rgb[i], cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(hm_dir / f"{i + 1:05d}.jpg"), cv2.cvtColor(heat[i], cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        rng = np.random.default_rng(0)
        self.baseline = lambda: _baseline_sample(rgb_dir, hm_dir, n, rng)
        self.bytes_per_1000["original"] = _folder_bytes(tmp / "original") / n * 1000
        self.workdir = tmp


def loading_stage(repeats: int = 5, workdir: str | Path | None = None, frames: int = 120) -> list[dict]:
    """Stage 2: one PFED5 training sample in each frame format vs the per-frame PIL loader."""
    case = LoadingCase(workdir, frames)
    t_base = median_seconds(case.baseline, repeats)
    base = case.bytes_per_1000["original"]
    out = []
    for fmt, load in case.ours.items():
        t = median_seconds(load, repeats)
        per = case.bytes_per_1000[fmt]
        out.append({"stage": f"loading ({fmt} frames)", "unit": "samples/s", "ours": 1 / t, "baseline": 1 / t_base,
                    "ratio": t_base / t, "target": 3.0,
                    "check": f"{per / 1e6:.1f} MB per 1000 frames, PFED5 {per / 1000 * PFED5_FRAMES / 1e9:.1f} GB "
                             f"(original JPEG frames + heatmaps: {base / 1e6:.1f} MB, "
                             f"{base / 1000 * PFED5_FRAMES / 1e9:.1f} GB)"})
    return out


# -------------------------------------------------------------------------------------- prepare
def prepare_stage(video_dir: str | Path | None = None, max_frames: int = 150) -> list[dict]:
    """Stage 3: prepare throughput (frames/s) with the offline mediapipe backend on the real face videos
    (no baseline in this process: the original runs insightface on a GPU; the target is absolute)."""
    from .data.prepare import prepare_dataset
    from .paths import shared_dir

    src = Path(video_dir) if video_dir else shared_dir() / "real_faces"
    videos = sorted(p for p in src.glob("*.mp4"))
    if not videos:
        return [{"stage": "prepare (mediapipe)", "unit": "frames/s", "ours": float("nan"), "baseline": float("nan"),
                 "ratio": float("nan"), "target": 100.0, "check": f"no videos in {src}"}]
    tmp = Path(tempfile.mkdtemp(prefix="qafe-perf-prep-"))
    raw = tmp / "raw"
    raw.mkdir()
    rows = []
    for i, v in enumerate(videos):
        (raw / v.name).symlink_to(v)
        rows.append({"video": v.name, "subject": f"s{i}", "expression": "smile", "label": 1, "split": "train"})
    import pandas as pd

    pd.DataFrame(rows).to_csv(raw / "labels.csv", index=False)
    t0 = time.perf_counter()
    manifest = prepare_dataset(raw, tmp / "out", layout="folder", card="real_faces_demo", backend="mediapipe",
                               max_frames=max_frames, progress=False)
    dt = time.perf_counter() - t0
    frames = manifest["counts"]["frames"]
    return [{"stage": "prepare (mediapipe)", "unit": "frames/s", "ours": frames / dt, "baseline": float("nan"),
             "ratio": float("nan"), "target": 100.0, "check": f"{frames} frames of {len(videos)} videos in {dt:.1f} s"}]


# ----------------------------------------------------------------------------------- train step
def train_step_case(precision: str = "float32", method: str = "qafe_net", batch_size: int = 1, device: str = "cpu",
                    channels_last: bool = False):
    """``(step, gflop)``: a zero-argument callable running one training step (forward, loss,
    backward) of ``method`` at the paper's input sizes (``random_batch``: QAFE-Net's 5
    sub-clips of 16 x 224 x 224 RGB and 16 x 56 x 56 heatmaps), and the forward GFLOP per sample
    counted by ``torch.utils.flop_counter.FlopCounterMode``.

    Args:
        precision: ``float32`` or ``bf16`` (``torch.autocast(device, torch.bfloat16)``).
        device: ``cpu`` or ``cuda`` (the step synchronises, so wall time is the step's).
        channels_last: the engine's ``channels_last`` speed option (GPU tensor cores).

    Raises:
        ValueError: another precision.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .api import random_batch
    from .engine import SpeedSettings
    from .registry import get_method

    if precision not in ("float32", "bf16"):
        raise ValueError(f"precision must be 'float32' or 'bf16', got {precision!r}")
    m = get_method(method)({})  # default options (QAFE-Net: BMC loss; its gradient still flows at batch 1)
    torch.manual_seed(0)
    model = m.build_model()
    loss_fn = m.build_loss()
    batch = random_batch(m, batch_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        m.forward(model, batch)
    gflop = counter.get_total_flops() / 1e9 / batch_size
    speed = SpeedSettings(torch.device(device), "bf16" if precision == "bf16" else "none", "none", channels_last)
    model, loss_fn = model.to(speed.device), loss_fn.to(speed.device)
    model = speed.prepare_model(model)
    batch = speed.to_device(batch)
    sync = torch.cuda.synchronize if speed.device.type == "cuda" else (lambda: None)

    def step():
        model.zero_grad(set_to_none=True)
        with speed.autocast():
            loss = m.loss(loss_fn, m.forward(model, batch), batch)
        loss.float().backward()
        sync()
        return loss.detach()

    return step, gflop


def _train_step_in_fresh_process(precision: str, repeats: int, device: str = "cpu",
                                 channels_last: bool = False) -> tuple[float, float, float, int]:
    """(median seconds, forward GFLOP, peak memory in MB, torch threads) of one step, run in the
    calling (fresh) process, so that its peak memory is its own (resident set on CPU, the CUDA
    allocator's peak on a GPU)."""
    import resource

    import torch

    step, gflop = train_step_case(precision, device=device, channels_last=channels_last)
    t = median_seconds(step, repeats)
    peak = (torch.cuda.max_memory_allocated() / 2**20 if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return t, gflop, peak, torch.get_num_threads()


def train_step_stage(repeats: int = 3, peak_gflops: float | None = None) -> list[dict]:
    """Stage 4: QAFE-Net forward + backward at paper sizes, batch 1, CPU, float32 and bf16 autocast
    (no baseline: samples/s, FLOPs and peak memory). Each precision runs in a fresh process (spawn),
    so that the peak resident memory printed is that precision's alone."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    cases = [("cpu", "float32", False), ("cpu", "bf16", False)]
    if torch.cuda.is_available():  # the GPU rows: float32, and AMP bf16 with channels-last
        cases += [("cuda", "float32", False), ("cuda", "bf16", True)]
    out = []
    for device, precision, channels_last in cases:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            t, gflop, peak_mb, threads = pool.submit(_train_step_in_fresh_process, precision, repeats, device,
                                                     channels_last).result()
        achieved = 3 * gflop / t  # forward + backward ~ 3x the forward FLOPs
        share = f", {100 * achieved / peak_gflops:.1f}% of a {peak_gflops:g} GFLOP/s peak" if peak_gflops else ""
        what = f"{device} {precision}" + (" channels_last" if channels_last else "")
        memory = "CUDA peak allocated" if device == "cuda" else "peak RSS"
        out.append({"stage": f"train step QAFE-Net ({what})", "unit": "samples/s", "ours": 1 / t,
                    "baseline": float("nan"), "ratio": float("nan"), "target": float("nan"),
                    "check": f"forward {gflop:.1f} GFLOP/sample, ~{achieved:.0f} GFLOP/s achieved (3x forward){share}, "
                             f"{memory} {peak_mb:.0f} MB" + (f", {threads} threads" if device == "cpu" else "")})
    return out


STAGES = {"heatmaps": heatmap_stage, "loading": loading_stage, "prepare": prepare_stage, "train_step": train_step_stage}


def format_line(r: dict) -> str:
    """One printed line per stage: ours, baseline, ratio (and target), check."""
    def num(v):
        return "-" if v != v else f"{v:.2f}"

    target = "" if r["target"] != r["target"] else f" (target >= {r['target']:g}{'x' if r['ratio'] == r['ratio'] else ' ' + r['unit']})"
    ratio = "" if r["ratio"] != r["ratio"] else f"  ratio {r['ratio']:.1f}x"
    return (f"{r['stage']:<34} ours {num(r['ours']):>8} {r['unit']:<9} baseline {num(r['baseline']):>8}"
            f"{ratio}{target}   {r['check']}")


__all__ = ["PFED5_FRAMES", "STAGES", "LoadingCase", "format_line", "heatmap_case", "heatmap_stage", "loading_stage",
           "median_seconds", "prepare_stage", "train_step_case", "train_step_stage"]
