"""C3D-LSTM baseline (Parmar & Morris, CVPRW 2017 "Learning to Score Olympic Events").

Follows the authors' PyTorch port, ParitoshParmar/C3D-LSTM--PyTorch
(``models/C3D.py``, ``models/LSTM_anno.py``, ``train_c3d_lstm.py``, ``opts.py``,
``data_loader.py``); QAFE-Net's Table 2 lists it on PFED5 without adaptation details.

Model (:class:`C3DLSTM`): the clip is cut into non-overlapping 16-frame sub-clips;
a frozen Sports-1M C3D (:class:`methods.backbones.c3d.C3D`, eval mode, no
gradient) gives one ``fc6`` + ReLU feature (4096) per sub-clip; the sequence
``(B, n, 4096)`` goes through ``rnn = LSTM(4096, 256, 1 layer, batch_first)``;
``fc_final_score = Linear(256, 1)`` on the LAST time step is the score. Only
``rnn`` and ``fc_final_score`` are trained (the port optimises
``model_lstm.parameters()`` only).

Where the port, the original Caffe model and the QAFE-Net paper differ:

* Pretraining: the paper's Table 2 says "C3D pretrained on UCF-101", which is
  the original Caffe C3D-LSTM (ParitoshParmar/LTSOE: a slim C3D, 5 convs of
  64/128/256/256/256, fc6 2048, UCF-101 weights never released). The port and
  this adapter use the full Sports-1M C3D (``c3d.pickle``, fc6 4096). Not an option:
  no UCF-101 weights exist to load.
* Sub-clips: the port loops ``range(0, frames - 17, 16)``, which drops the last
  full 16-frame clip (96 frames -> 5 clips, 80 frames -> 4). Option
  ``drop_last_clip`` (code value True); the default uses all ``n`` sub-clips of the
  harness's clip (80 = 5 x 16 as every PFED5 method).
* Pixels: the port's ``data_loader.py`` normalises with ImageNet mean / std
  (``transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])`` after
  ``ToTensor``), although the Sports-1M conversion it loads was demonstrated
  (DavideA/c3d-pytorch ``predict.py``) on raw RGB in 0..255 without any mean
  subtraction. Option ``rgb_normalisation``: ``"imagenet"`` (port, default) or
  ``"raw255"`` (harness delivers ``"unit"`` [0, 1] pixels, the model multiplies
  by 255 inside ``forward``: RGB order, 0..255, no mean, as ``predict.py``).
* Frames: resized to 171 x 128 (W x H, ``opts.input_resize``) and centre-cropped
  to 112 (train and test: the port has no random crop). The prepared PFED5 face
  crops are square, so 171 x 128 stretches them horizontally; option
  ``frame_resize = "128x128"`` keeps the aspect. The port's random PIL
  interpolation per frame and its cumulative per-frame flip flag are data-side
  quirks not reproduced (the harness's augmentation is used).
* Training (``train_c3d_lstm.py`` / ``opts.py``): MSE, Adam lr 1e-4 (no weight
  decay), 10 epochs, batch 6 (test 5), lr x 0.5 every 5 epochs
  (``global_lr_stepsize`` 5, ``global_lr_gamma`` 0.5) -- as shipped that update
  raises ``UnboundLocalError`` (``learning_rate`` is never defined), so the
  intended schedule is taken. Each training video is seen once per epoch (the
  first 96 frames in the port: no temporal augmentation). Labels there are
  ``score / 100 / std_action``; here the harness's label units are regressed
  directly (MSE), the scale only changes the loss value.

Input geometry: C3D's fc6 fixes 16 x 112 x 112 (``min_rgb_size`` /
``min_subclip_len``); the ``tiny`` scale cannot shrink it (one 16-frame sub-clip
is about 38.5 GFLOP through C3D).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig, WeightsAssumption
from benchmark.errors import CheckpointError, ConfigError
from methods.backbones.c3d import (C3D, C3D_CLIP_LEN, C3D_CROP, C3D_FEAT_DIM, C3D_FILE, C3D_SOURCE,
                                   load_c3d_checkpoint)
from methods.checkpoints import load_strict, read_checkpoint, register_sources, strip_prefix

#: Hidden width of the score LSTM (``LSTM_anno``).
LSTM_HIDDEN = 256
#: File names of the original sources (registered in ``methods.checkpoints.ORIGINAL_SOURCES``).
ORIGINAL_SOURCES = {C3D_FILE: C3D_SOURCE}
register_sources(ORIGINAL_SOURCES)


def clip_starts(n_frames: int, length: int = C3D_CLIP_LEN, drop_last_clip: bool = False) -> list[int]:
    """First frames of the non-overlapping sub-clips of an ``n_frames`` clip.

    ``drop_last_clip=False``: every full sub-clip, ``range(0, n_frames - length + 1, length)``.
    ``drop_last_clip=True``: the port's ``np.arange(0, frames - 17, 16)`` (for 16-frame
    clips), i.e. ``range(0, n_frames - length - 1, length)``: 80 frames -> starts 0, 16, 32, 48.
    """
    stop = n_frames - length - 1 if drop_last_clip else n_frames - length + 1
    return list(range(0, max(stop, 0), length))


class C3DLSTM(nn.Module):
    """Frozen C3D fc6 features per 16-frame sub-clip -> LSTM(4096, 256) -> last step -> Linear(256, 1).

    Args:
        geometry: clip geometry; ``subclip_len`` must be 16 and ``rgb_size`` 112 (C3D's fc6).
        drop_last_clip: use the port's sub-clip loop, which drops the last full sub-clip.
        pixel_scale: factor applied to the input before C3D (255 for ``raw255``: [0, 1]
            pixels -> 0..255; 1 for ImageNet-normalised input).

    ``forward(rgb)``: ``(B, 3, T, 112, 112)`` -> ``(B,)`` scores in label units.
    Keys: ``c3d.*`` (``C3D``), ``rnn.*`` and ``fc_final_score.*`` (the port's
    ``LSTM_anno`` names). ``train()`` keeps ``c3d`` in eval mode (the port calls
    ``model_CNN.eval()`` in every phase); its parameters have ``requires_grad=False``.
    ``c3d_trainable=True`` (the from-scratch adaptation): C3D is trained end to end with the LSTM.

    Raises:
        ConfigError: a geometry C3D cannot take, or no sub-clip left.
    """

    def __init__(self, geometry: ClipGeometry | None = None, drop_last_clip: bool = False,
                 pixel_scale: float = 1.0, c3d_trainable: bool = False) -> None:
        super().__init__()
        g = geometry or ClipGeometry(5, C3D_CLIP_LEN, C3D_CROP, 56)
        if g.subclip_len != C3D_CLIP_LEN or g.rgb_size != C3D_CROP:
            raise ConfigError(f"C3D-LSTM needs {C3D_CLIP_LEN}-frame sub-clips of {C3D_CROP} x {C3D_CROP} pixels "
                              f"(C3D's fc6 takes 8192 = 512 x 1 x 4 x 4 inputs), got subclip_len {g.subclip_len}, "
                              f"rgb_size {g.rgb_size}; the scale must not shrink them (InputSpec.min_subclip_len / "
                              "min_rgb_size)")
        self.geometry = g
        self.drop_last_clip = bool(drop_last_clip)
        self.starts = clip_starts(g.clip_len, C3D_CLIP_LEN, self.drop_last_clip)
        if not self.starts:
            raise ConfigError(f"C3D-LSTM: a {g.clip_len}-frame clip has no sub-clip with drop_last_clip="
                              f"{self.drop_last_clip} (needs at least {2 * C3D_CLIP_LEN + 1 if drop_last_clip else C3D_CLIP_LEN} frames)")
        self.pixel_scale = float(pixel_scale)
        self.c3d = C3D()
        self.c3d_trainable = bool(c3d_trainable)
        for p in self.c3d.parameters():
            p.requires_grad_(self.c3d_trainable)
        self.rnn = nn.LSTM(C3D_FEAT_DIM, LSTM_HIDDEN, 1, batch_first=True)
        self.fc_final_score = nn.Linear(LSTM_HIDDEN, 1)

    def train(self, mode: bool = True) -> "C3DLSTM":
        super().train(mode)
        if not self.c3d_trainable:
            self.c3d.eval()
        return self

    def clip_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """C3D fc6 features of the sub-clips, ``(B, n_used, 4096)``; without gradient unless
        ``c3d_trainable`` (the from-scratch adaptation)."""
        g = self.geometry
        if rgb.dim() != 5 or rgb.shape[1] != 3 or rgb.shape[2] != g.clip_len or tuple(rgb.shape[-2:]) != (
                C3D_CROP, C3D_CROP):
            raise ValueError(f"rgb: expected (B, 3, {g.clip_len}, {C3D_CROP}, {C3D_CROP}), got {tuple(rgb.shape)}")
        with torch.set_grad_enabled(self.c3d_trainable and torch.is_grad_enabled()):
            x = rgb * self.pixel_scale if self.pixel_scale != 1.0 else rgb
            feats = [self.c3d(x[:, :, s:s + C3D_CLIP_LEN]) for s in self.starts]
        return torch.stack(feats, dim=1)

    def score(self, feats: torch.Tensor) -> torch.Tensor:
        """``LSTM_anno.forward``: ``(B, n, 4096)`` -> ``(B, 1)`` from the last time step."""
        out, _ = self.rnn(feats)
        return self.fc_final_score(out[:, -1, :])

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        return self.score(self.clip_features(rgb)).squeeze(-1)


def load_lstm_head_checkpoint(model: C3DLSTM, path: str | Path) -> dict[str, Any]:
    """Load a port-trained LSTM (``train_c3d_lstm.py`` ``save_model``: ``model_my_lstm_<epoch>.pth``,
    the plain state dict of ``LSTM_anno``: ``rnn.weight_ih_l0`` (1024, 4096), ``rnn.weight_hh_l0``
    (1024, 256), ``rnn.bias_ih_l0``, ``rnn.bias_hh_l0``, ``fc_final_score.weight`` (1, 256), ``.bias``)
    into ``model.rnn`` / ``model.fc_final_score`` (strict; a leading ``module.`` is stripped).

    Returns JSON-able info. Raises CheckpointError (unreadable file, keys / shapes that do not fit).
    """
    sd = read_checkpoint(path)
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{str(path)!r} is not the LSTM_anno state dict of the C3D-LSTM port")
    sd, stripped = strip_prefix(sd, "module.")
    head = nn.ModuleDict({"rnn": model.rnn, "fc_final_score": model.fc_final_score})
    load_strict(head, sd, path, "C3D-LSTM score head (LSTM_anno: rnn, fc_final_score)")
    return {"file": str(path), "loaded_tensors": len(sd), "stripped_module_prefix": stripped, "strict": True}


_RESIZES = {"171x128": (171, 128), "128x128": (128, 128)}


class C3DLSTMMethod(Method):
    """The C3D-LSTM baseline adapter (RGB only; see the module docstring for every choice).

    From scratch (no ``c3d.pickle``): REFUSED before training (:attr:`weights_assumptions`): the
    port's recipe is a frozen Sports-1M extractor, and a frozen random C3D gives near-constant
    features, so no number would mean anything; ``--set c3d_trainable=true`` trains C3D end to
    end instead (another, far costlier model), recorded as a deviation.

    Options: ``drop_last_clip`` (code value True), ``rgb_normalisation``
    (``imagenet`` | ``raw255``), ``frame_resize`` (``171x128`` | ``128x128``).
    Pretrained file: ``c3d`` = ``c3d.pickle`` (Sports-1M C3D; fc7 / fc8 dropped).
    Training: MSE, Adam 1e-4, 10 epochs, lr x 0.5 every 5, batch 6, each video once per epoch.
    """

    name = "c3d_lstm"
    display_name = "C3D-LSTM"
    repository = "github.com/ParitoshParmar/C3D-LSTM--PyTorch"
    licence = "none stated (C3D weights: DavideA/c3d-pytorch, MIT)"
    backbone = "C3D"
    pretraining = "UCF-101 (paper) / Sports-1M (released port)"
    reference = ("Parmar & Morris: Learning to Score Olympic Events, CVPRW 2017 "
                 "(github.com/ParitoshParmar/C3D-LSTM--PyTorch; Caffe original github.com/ParitoshParmar/LTSOE); "
                 "Sports-1M C3D weights from github.com/DavideA/c3d-pytorch")
    options_spec = {
        "drop_last_clip": Option(
            False,
            "Sub-clips fed to the LSTM. False: all n non-overlapping 16-frame sub-clips of the clip (80 frames -> 5, "
            "as the paper's PFED5 clips). True: the port's train_c3d_lstm.py loop np.arange(0, frames - 17, 16), "
            "which drops the last full sub-clip (96 frames -> 5, 80 -> 4).",
            choices=(False, True), code_value=True),
        "rgb_normalisation": Option(
            "imagenet",
            "C3D input pixels. 'imagenet': [0, 1] then ImageNet mean/std (the port's data_loader.py Normalize). "
            "'raw255': RGB in 0..255 without mean subtraction, as DavideA/c3d-pytorch predict.py feeds the Sports-1M "
            "c3d.pickle (the harness delivers [0, 1] 'unit' pixels; the model multiplies by 255).",
            choices=("imagenet", "raw255")),
        "frame_resize": Option(
            "171x128",
            "Frame resize (W x H) before the 112 x 112 crop: '171x128' (port opts.input_resize, the C3D convention) or "
            "'128x128' (keeps the aspect of the square face crops).",
            choices=tuple(_RESIZES)),
        "c3d_trainable": Option(
            False, "Train C3D end to end with the LSTM (false: frozen, as the port, whose optimiser holds only "
                   "model_lstm.parameters()). The from-scratch adaptation without c3d.pickle sets it."),
    }
    pretrained_files = {"c3d": C3D_FILE}
    weights_assumptions = (WeightsAssumption(
        role="c3d",
        assumes="the Sports-1M C3D is a frozen feature extractor (eval mode, no gradient): only the LSTM and "
                "the score layer learn",
        policy="refuse",
        adaptation="C3D trained end to end with the LSTM at the same learning rate from PyTorch's initialisation",
        options={"c3d_trainable": True},
        why="the fc6 features of a frozen random C3D are half exact zeros and vary by 2.5 % across clips: after "
            "150 steps every prediction was the same number, at any budget. Trained end to end it is another "
            "method (78 M parameters learnt from the dataset instead of a Sports-1M extractor; on 2 CPU cores "
            "about 20 s a step at the tiny scale, and 20 steps moved no prediction), so no C3D-LSTM number is "
            "made without c3d.pickle unless asked for: tables show the row as refused"),)
    learning_recipe = {
        "overfit_steps": 40,
        "options": {}, "training": {}, "data": "nuisance_free", "asserted": False,
        "why": "without c3d.pickle the run is refused (its from-scratch policy), so the check cannot run offline; "
               "measured 2026-12-03 with the frozen random C3D that policy now refuses: true -4.7 vs shuffled -3.8 "
               "(1860 s + 1836 s on 2 shared CPU cores). Its overfit check runs on a stand-in c3d.pickle "
               "(tests/test_conformance.py)",
    }

    def input_spec(self) -> InputSpec:
        """RGB, 16-frame sub-clips, 112 crops of frames resized to ``frame_resize``; never shrunk below 16 x 112."""
        norm = "unit" if self.options["rgb_normalisation"] == "raw255" else "imagenet"
        return InputSpec(rgb=True, heatmap=False, rgb_normalisation=norm, subclip_len=C3D_CLIP_LEN,
                         rgb_size=C3D_CROP, rgb_resize=_RESIZES[self.options["frame_resize"]],
                         min_rgb_size=C3D_CROP, min_subclip_len=C3D_CLIP_LEN)

    def build_model(self) -> C3DLSTM:
        """A fresh :class:`C3DLSTM` (C3D frozen) at this method's geometry.

        Raises:
            ConfigError: geometry other than 16-frame sub-clips of 112 px, or no sub-clip left.
        """
        return C3DLSTM(self.geometry, drop_last_clip=bool(self.options["drop_last_clip"]),
                       pixel_scale=255.0 if self.options["rgb_normalisation"] == "raw255" else 1.0,
                       c3d_trainable=bool(self.options["c3d_trainable"]))

    def build_loss(self) -> nn.Module:
        """``nn.MSELoss()`` (``train_c3d_lstm.py`` ``criterion = nn.MSELoss()``)."""
        return nn.MSELoss()

    def training_defaults(self) -> TrainingConfig:
        """The port's settings: Adam lr 1e-4, no weight decay, 10 epochs, lr x 0.5 every 5 epochs,
        batch 6, each training video once per epoch."""
        return TrainingConfig(epochs=10, batch_size=6, optimizer="adam", lr=1e-4, momentum=0.9, weight_decay=0.0,
                              lr_step=5, lr_gamma=0.5, reps_per_epoch=1)

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        """One group: ``rnn`` + ``fc_final_score`` (C3D frozen, as the port's optimiser); with
        ``c3d_trainable`` the C3D parameters join it (same rate)."""
        params = [p for n, p in model.named_parameters()
                  if (model.c3d_trainable or not n.startswith("c3d.")) and p.requires_grad]
        return [{"params": params, "lr": cfg.lr}]

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load ``c3d`` = ``c3d.pickle`` into ``model.c3d`` (fc7 / fc8 dropped, the rest strict).

        Returns JSON-able ``{"c3d": {...}, "random_init": [...]}``.
        Raises ConfigError (unknown role) or CheckpointError (see :func:`load_c3d_checkpoint`).
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        random_init = ["rnn", "fc_final_score"]
        if "c3d" in files:
            info["c3d"] = load_c3d_checkpoint(model.c3d, files["c3d"])
        else:
            random_init.append("c3d (trained end to end)" if model.c3d_trainable else "c3d (frozen: stays random)")
        info["random_init"] = random_init
        return info
