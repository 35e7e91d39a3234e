"""QAFE-Net (Duan et al. 2023, arXiv 2312.00856; shuchaoduan/QAFE-Net).

Two streams per sub-clip -- RGB frames through Former-DFER
(:mod:`methods.backbones.former_dfer`) and landmark heatmaps through SlowOnly-R50
(:mod:`methods.backbones.slowonly`), 512 features each -- fused by a cross-attention
decoder (:class:`CrossFusionDecoder`), scored per token by an MLP
(:class:`Evaluator`) and averaged. Trained with Balanced MSE (BMC).

The ``fusion`` option swaps the decoder for the paper's fusion baselines (Table 5 on
PFED5, Table 3 on UNBC-McMaster): ``concat`` / ``concat_channels`` / ``sum`` are
parameter-free (:class:`StreamFusion`), see :class:`QAFENet`. Every fusion works for any
number ``n`` of sub-clips (PFED5 5 x 16 frames, UNBC-McMaster 9 x 16).

Module layout and state-dict keys follow the released code's four modules::

    QAFENet.rgb_encoder      = GenerateModel     ('model' in the training checkpoint)
    QAFENet.heatmap_encoder  = ResNet3dSlowOnly.restnet3d   ('SlowOnly', keys 'restnet3d.*')
    QAFENet.decoder          = decoder_fuser     ('decoder'; fusion='cross' only: the other
                                                  fusions have no decoder tensors)
    QAFENet.evaluator        = Evaluator         ('evaluator')

Where the paper and the released code differ the method has a named option
(default = paper; ``code_value`` = released code); see :attr:`QAFENetMethod.options_spec`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch
from einops import rearrange
from torch import nn

from benchmark.api import ClipGeometry, InputSpec, Method, Option, TrainingConfig
from benchmark.errors import ConfigError
from benchmark.losses import (BMC_SIGMA_LR, FOCAL_CE_GAMMA, GAI_COMPONENTS, BMCLoss, ClassificationLoss, FocalRLoss,
                               GAILoss, MSELoss)
from methods.backbones.former_dfer import FORMER_DFER_FILE, FormerDFEREncoder, load_former_dfer_checkpoint
from methods.backbones.slowonly import POSE_ONLY_FILE, SlowOnlyEncoder, load_pose_only_checkpoint

FEAT_DIM = 512


# --------------------------------------------------------------------------- fusion decoder
class Mlp(nn.Module):
    """``fc1`` Linear(dim, hidden) -> exact GELU -> ``fc2`` Linear(hidden, dim) (dropout 0).

    Source: QAFE-Net ``models/vit_decoder_two.py`` ``Mlp``. Shapes ``(..., dim) -> (..., dim)``.
    """

    def __init__(self, dim: int = FEAT_DIM, hidden: int = 4 * FEAT_DIM) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CrossAttention(nn.Module):
    """Multi-head cross-attention: queries from ``q``, keys and values from ``kv``.

    ``q_map``, ``k_map``, ``v_map``: Linear(dim, dim, bias=False); ``heads`` heads of
    ``dim / heads`` (64), scale ``(dim / heads) ** -0.5``; ``proj`` Linear(dim, dim).
    Shapes: ``q (B, Nq, dim)``, ``kv (B, Nk, dim)`` -> ``(B, Nq, dim)``.
    Source: QAFE-Net ``models/vit_decoder_two.py`` ``CrossAttention``.
    """

    def __init__(self, dim: int = FEAT_DIM, heads: int = 8) -> None:
        super().__init__()
        self.heads = heads
        self.q_map = nn.Linear(dim, dim, bias=False)
        self.k_map = nn.Linear(dim, dim, bias=False)
        self.v_map = nn.Linear(dim, dim, bias=False)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        split = lambda t: rearrange(t, "b n (h d) -> b h n d", h=self.heads)  # noqa: E731
        out = torch.nn.functional.scaled_dot_product_attention(split(self.q_map(q)), split(self.k_map(kv)),
                                                               split(self.v_map(kv)))
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class DecoderBlock(nn.Module):
    """One cross-fusion block with ONE set of weights shared by both directions.

    Tokens ``x = [x1 (n), x2 (n)]``; in parallel from the block input::

        x1' = x1 + CA(norm_q(x1), norm_v(x2));  x1'' = x1' + mlp(norm2(x1'))
        x2' = x2 + CA(norm_q(x2), norm_v(x1));  x2'' = x2' + mlp(norm2(x2'))

    Keys ``norm_q``, ``norm_v``, ``norm2`` (LayerNorm eps 1e-5), ``attn.{q,k,v}_map``,
    ``attn.proj``, ``mlp.fc1``, ``mlp.fc2``. Shapes ``(B, 2n, 512) -> (B, 2n, 512)``.
    Source: QAFE-Net ``models/vit_decoder_two.py`` ``DecoderBlock`` (``img_dim = 5``
    hard-coded there; ``n`` here), parallel update since commit 95dbe90.
    """

    def __init__(self, n_tokens: int, dim: int = FEAT_DIM, heads: int = 8, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.n_tokens = n_tokens
        self.norm_q = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def _direction(self, x: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm_q(x), self.norm_v(other))
        return x + self.mlp(self.norm2(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x[:, : self.n_tokens], x[:, self.n_tokens:]
        return torch.cat([self._direction(x1, x2), self._direction(x2, x1)], dim=1)


class CrossFusionDecoder(nn.Module):
    """QAFE-Net's ``decoder_fuser``: positional embedding, cross-fusion blocks, token-mixing Conv1d.

    ``forward(first, second)``: both ``(B, n, 512)``; ``pos_embed`` ``(1, n, 512)``
    (standard-normal init) is added to ``first`` (``pos_on="first"``, the released
    code) or to ``second`` (``pos_on="second"``); tokens ``[first, second]``
    ``(B, 2n, 512)`` go through ``num_blocks`` :class:`DecoderBlock` (``model.i``)
    and ``conv`` = Conv1d(2n, 2n, 1) with the tokens as channels. ``norm``
    (LayerNorm eps 1e-6) exists only for key compatibility: the original never
    uses it. Output ``(B, 2n, 512)``.
    Source: QAFE-Net ``models/vit_decoder_two.py`` ``decoder_fuser(dim=512,
    num_heads=8, num_layers=3, drop_rate=0.)``.

    ``output`` (paper Table 8, which decoder output feeds the MLP) selects what leaves the
    blocks: ``"concat_conv1d"`` (the paper's "Concat Stream + CONV1D" and the released
    code: both streams' tokens, then the Conv1d), ``"concat"`` (both streams' tokens
    ``(B, 2n, 512)``, no Conv1d), ``"first"`` / ``"second"`` (one stream's ``n`` tokens
    ``(B, n, 512)``, no Conv1d; :class:`QAFENet` passes the heatmap tokens first and the
    RGB tokens second). Only ``"concat_conv1d"`` has a ``conv`` (the Conv1d mixes all
    ``2n`` tokens, so it cannot follow one stream; the paper's single-stream rows name no
    Conv1d): this project's reading of Table 8, which the released code does not contain.
    """

    OUTPUTS = ("concat_conv1d", "concat", "first", "second")

    def __init__(self, n_subclips: int = 5, num_blocks: int = 3, dim: int = FEAT_DIM, heads: int = 8,
                 pos_on: str = "first", output: str = "concat_conv1d") -> None:
        super().__init__()
        if pos_on not in ("first", "second"):
            raise ValueError(f"pos_on must be 'first' or 'second', got {pos_on!r}")
        if output not in self.OUTPUTS:
            raise ValueError(f"output must be one of {', '.join(self.OUTPUTS)}, got {output!r}")
        self.n_subclips = n_subclips
        self.pos_on = pos_on
        self.output = output
        self.model = nn.ModuleList(DecoderBlock(n_subclips, dim, heads) for _ in range(num_blocks))
        self.pos_embed = nn.Parameter(torch.randn(1, n_subclips, dim))
        self.norm = nn.LayerNorm(dim, eps=1e-6)  # unused, as in the original
        self.conv = nn.Conv1d(2 * n_subclips, 2 * n_subclips, 1) if output == "concat_conv1d" else None

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if self.pos_on == "first":
            first = first + self.pos_embed
        else:
            second = second + self.pos_embed
        x = torch.cat([first, second], dim=1)
        for block in self.model:
            x = block(x)
        if self.output == "first":
            return x[:, :self.n_subclips]
        if self.output == "second":
            return x[:, self.n_subclips:]
        return self.conv(x) if self.conv is not None else x


#: ``fusion`` option values: the released cross-fusion decoder and the paper's baselines.
FUSIONS = ("cross", "concat", "concat_channels", "sum")
#: ``loss`` option values that make the head a severity classifier (paper Table 9).
CLASSIFICATION_LOSSES = ("ce", "focal")
#: ``decoder_output`` option values (paper Table 8): RGB Stream, Heatmap Stream, Concat Stream,
#: Concat Stream + CONV1D (the paper's model and the released code).
DECODER_OUTPUTS = ("rgb", "heatmap", "concat", "concat_conv1d")


class StreamFusion(nn.Module):
    """Parameter-free fusion of the two streams' sub-clip tokens (the paper's fusion baselines).

    ``forward(first, second)``, both ``(B, n, 512)`` (``first`` = heatmap tokens, ``second``
    = RGB tokens, the order in which :class:`QAFENet` calls :class:`CrossFusionDecoder`):

    * ``"concat"``: ``cat([first, second], dim=1)`` -> ``(B, 2n, 512)``: the token-axis
      concatenation the decoder's own output has (``[heatmap x n, RGB x n]``), without the
      positional embedding, the cross-fusion blocks and the Conv1d;
    * ``"concat_channels"``: ``cat([first, second], dim=-1)`` -> ``(B, n, 1024)`` (the
      head then takes 1024 features);
    * ``"sum"``: ``first + second`` -> ``(B, n, 512)``.

    Source: QAFE-Net paper Table 5 (PFED5: Concatenation / Summation / Cross-Fusion) and
    Table 3 (UNBC-McMaster: Former-DFER+SlowOnly with the three fusions). The paper names
    them only and the released code has neither, so the exact form is this project's
    reading (see the ``fusion`` option). No parameters, no state-dict keys.

    Raises:
        ValueError: an unknown ``mode``, or stream token tensors of different shapes.
    """

    def __init__(self, mode: str) -> None:
        super().__init__()
        if mode not in FUSIONS[1:]:
            raise ValueError(f"StreamFusion mode must be one of {', '.join(FUSIONS[1:])}, got {mode!r}")
        self.mode = mode

    def out_dim(self, dim: int = FEAT_DIM) -> int:
        """Feature size of each fused token (``2 * dim`` for ``concat_channels``, else ``dim``)."""
        return 2 * dim if self.mode == "concat_channels" else dim

    def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        if first.shape != second.shape:
            raise ValueError(f"stream tokens differ in shape: {tuple(first.shape)} vs {tuple(second.shape)}")
        if self.mode == "concat":
            return torch.cat([first, second], dim=1)
        if self.mode == "concat_channels":
            return torch.cat([first, second], dim=-1)
        return first + second


class MLPBlock(nn.Module):
    """``layer1`` 512->256, ReLU, ``layer2`` 256->128, ReLU, ``layer3`` 128->out (no output activation).

    Source: QAFE-Net ``models/evaluator.py`` ``MLP_block``. Shapes ``(..., 512) -> (..., out)``.
    """

    def __init__(self, output_dim: int = 1, dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.activation = nn.ReLU()
        self.layer1 = nn.Linear(dim, 256)
        self.layer2 = nn.Linear(256, 128)
        self.layer3 = nn.Linear(128, output_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer3(self.activation(self.layer2(self.activation(self.layer1(x)))))


class Evaluator(nn.Module):
    """QAFE-Net ``Evaluator(output_dim=1, model_type='MLP')``: keys ``evaluator.layer{1,2,3}``.

    Shapes ``(..., dim) -> (..., output_dim)``; ``dim`` 512 as the original (1024 only for
    ``fusion='concat_channels'``). Source: QAFE-Net ``models/evaluator.py``.
    """

    def __init__(self, output_dim: int = 1, dim: int = FEAT_DIM) -> None:
        super().__init__()
        self.evaluator = MLPBlock(output_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluator(x)


# --------------------------------------------------------------------------- model
class QAFENet(nn.Module):
    """QAFE-Net: Former-DFER RGB + SlowOnly heatmap streams, cross fusion (or a baseline), MLP scores.

    Args:
        geometry: clip geometry (``n`` sub-clips of ``L`` frames; RGB and heatmap sizes).
        rgb_layout: ``"frames"`` or ``"channel_major"`` (see :class:`FormerDFEREncoder`).
        pos_embed_stream: which stream's tokens get the decoder's sub-clip
            positional embedding: ``"rgb"`` (the paper's pipeline figure: "SPE" on ``E_v``) or
            ``"heatmap"`` (released code: ``decoder(outputs_l, outputs_v)`` adds it
            to its first argument, the heatmap tokens). In both modes the token
            order into the decoder and its Conv1d is the code's ``[heatmap x n, RGB x n]``
            so checkpoints stay compatible. Used by ``fusion="cross"`` only.
        fusion_blocks: decoder blocks (3 in the paper, Table 7). ``fusion="cross"`` only.
        fusion: ``"cross"`` (the paper's model, released ``decoder_fuser``:
            :class:`CrossFusionDecoder`, ``(B, 2n, 512)`` tokens), or a parameter-free
            :class:`StreamFusion` baseline of paper Tables 5 / 3 in place of the whole
            decoder: ``"concat"`` (``(B, 2n, 512)``), ``"concat_channels"`` (``(B, n, 1024)``,
            the evaluator's first layer then takes 1024) or ``"sum"`` (``(B, n, 512)``).
            Non-cross models have no ``decoder.*`` tensors (no positional embedding,
            blocks or Conv1d), so they carry no sub-clip order: their score is invariant to
            permuting the sub-clips.
        decoder_output: which cross-decoder output feeds the head (paper Table 8):
            ``"concat_conv1d"`` (the paper's model and the released code), ``"concat"``,
            ``"rgb"`` or ``"heatmap"`` (see :class:`CrossFusionDecoder`; ``m = 2n, 2n, n, n``
            tokens). ``fusion="cross"`` only.
        n_outputs: head outputs per token: 1 (regression, the paper's model) or the number
            of severity classes (paper Table 9's classification; the head's last layer is
            then ``Linear(128, C)``).

    ``forward(rgb, heatmap)``: ``rgb (B, 3, n*L, S, S)`` (normalised RGB),
    ``heatmap (B, 3, n*L, s, s)`` in [0, 1] -> scores ``(B,)`` in label units (or class
    logits ``(B, C)`` when ``n_outputs = C > 1``).
    Sub-clips are packed clip-major on the batch axis (row ``k*B + b``) as
    ``main_PFED5.py``; each encoder gives ``(B, n, 512)``; the fusion ``(B, m, d)``
    (:meth:`fused_tokens`); the evaluator scores each token; the prediction is the mean of
    the ``m`` scores (``m = 2n`` for cross and concat, ``n`` for concat_channels and sum),
    or of the ``m`` logit vectors for classification.

    Any ``n`` (``geometry.n_subclips``; 5 for PFED5, 9 for UNBC-McMaster's 144-frame clips):
    the only ``n``-sized tensors are the cross decoder's ``pos_embed (1, n, 512)`` and
    ``conv`` Conv1d(2n, 2n, 1) (the original hard-codes 5 and 10), and each
    :class:`DecoderBlock` splits the tokens at ``n``. The encoders do not depend on ``n``
    (each sub-clip is encoded on its own), so their pretrained files load at any ``n``.

    Raises:
        ValueError: an unknown ``pos_embed_stream`` or ``fusion``; in ``forward``, inputs
            not shaped as above or batch sizes that differ.
    """

    def __init__(self, geometry: ClipGeometry | None = None, rgb_layout: str = "frames",
                 pos_embed_stream: str = "rgb", fusion_blocks: int = 3, fusion: str = "cross",
                 decoder_output: str = "concat_conv1d", n_outputs: int = 1) -> None:
        super().__init__()
        g = geometry or ClipGeometry()
        if pos_embed_stream not in ("rgb", "heatmap"):
            raise ValueError(f"pos_embed_stream must be 'rgb' or 'heatmap', got {pos_embed_stream!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if decoder_output not in DECODER_OUTPUTS:
            raise ValueError(f"decoder_output must be one of {', '.join(DECODER_OUTPUTS)}, got {decoder_output!r}")
        if int(n_outputs) < 1:
            raise ValueError(f"n_outputs must be >= 1, got {n_outputs!r}")
        self.geometry = g
        self.pos_embed_stream = pos_embed_stream
        self.fusion = fusion
        self.n_outputs = int(n_outputs)
        self.rgb_encoder = FormerDFEREncoder(image_size=g.rgb_size, frames=g.subclip_len, layout=rgb_layout)
        self.heatmap_encoder = SlowOnlyEncoder()
        if fusion == "cross":
            self.decoder: nn.Module = CrossFusionDecoder(
                g.n_subclips, fusion_blocks, pos_on="first" if pos_embed_stream == "heatmap" else "second",
                output={"rgb": "second", "heatmap": "first"}.get(decoder_output, decoder_output))
            head_dim = FEAT_DIM
        else:
            self.decoder = StreamFusion(fusion)
            head_dim = self.decoder.out_dim(FEAT_DIM)
        self.evaluator = Evaluator(self.n_outputs, head_dim)

    def _pack(self, x: torch.Tensor, size: int, what: str) -> torch.Tensor:
        g = self.geometry
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] != g.clip_len or tuple(x.shape[-2:]) != (size, size):
            raise ValueError(f"{what}: expected (B, 3, {g.clip_len}, {size}, {size}), got {tuple(x.shape)}")
        return rearrange(x, "b c (n t) h w -> (n b) c t h w", n=g.n_subclips)

    def stream_tokens(self, rgb: torch.Tensor, heatmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two encoders' sub-clip features ``(heatmap (B, n, 512), rgb (B, n, 512))``."""
        b, n = rgb.shape[0], self.geometry.n_subclips
        v = rearrange(self.rgb_encoder(self._pack(rgb, self.geometry.rgb_size, "rgb")), "(n b) d -> b n d", n=n)
        h = rearrange(self.heatmap_encoder(self._pack(heatmap, self.geometry.heatmap_size, "heatmap")),
                      "(n b) d -> b n d", n=n)
        if h.shape[0] != b:
            raise ValueError(f"rgb and heatmap batch sizes differ: {b} vs {h.shape[0]}")
        return h, v

    def fused_tokens(self, rgb: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        """The tokens the evaluator scores: cross ``(B, 2n, 512)`` (decoder output) and concat
        ``(B, 2n, 512)``, both ordered ``[heatmap x n, RGB x n]``; concat_channels
        ``(B, n, 1024)`` (``[heatmap | RGB]`` features); sum ``(B, n, 512)``."""
        return self.decoder(*self.stream_tokens(rgb, heatmap))

    def forward(self, rgb: torch.Tensor, heatmap: torch.Tensor) -> torch.Tensor:
        out = self.evaluator(self.fused_tokens(rgb, heatmap)).mean(dim=1)
        return out.squeeze(-1) if self.n_outputs == 1 else out


# --------------------------------------------------------------------------- options
_RGB_OPTIONS: dict[str, Option] = {
    "rgb_layout": Option(
        "frames",
        "How S-Former cuts a (3, L, H, W) sub-clip into frames. 'frames': frame t = the RGB planes of time t "
        "(the paper's 16-frame sub-clips encoded frame by frame; Former-DFER's own (T, C) input). 'channel_major': the "
        "released QAFE-Net code feeds the loader's (C, T, H, W) tensor to S_Former.forward's view(-1, 3, 224, 224) "
        "without permuting, so pseudo-frame g = planes 3g..3g+2 of the channel-major stack (originals 13 row 3, "
        "originals-detail 1.2).",
        choices=("frames", "channel_major"), code_value="channel_major"),
    "rgb_normalisation": Option(
        "imagenet",
        "RGB pixel normalisation. 'imagenet': [0, 1] then ImageNet mean/std (QAFE-Net "
        "dataloader/Parkinson_landmarkheatmap.py; the paper is silent, so the code's choice is the default). "
        "'unit': [0, 1] only (Former-DFER's DFEW pretraining, originals 13 row 5).",
        choices=("imagenet", "unit")),
    "pos_embed_resize": Option(
        "interpolate",
        "Former-DFER checkpoint whose s_former.pos_embedding grid differs from the model's (a 112-px file has "
        "7x7 = 49 tokens, the 224-px model 14x14 = 196). 'interpolate': bicubic resize of the token grid, "
        "recorded in the load info; 'strict': raise CheckpointError (the released code loads strictly and fails "
        "on a 49-token file; originals 13 row 4).",
        choices=("interpolate", "strict"), code_value="strict"),
}

_LOSS_OPTIONS: dict[str, Option] = {
    "loss": Option(
        "bmc",
        "Training loss: 'bmc' Balanced MSE batch Monte-Carlo (paper section 4, Table 6; QAFE-Net "
        "dataloader/ibmse/balancedMSE.py BMCLoss, init sigma 1.0) or 'mse'.",
        choices=("bmc", "mse")),
    "bmc_sigma": Option(
        "learned",
        "BMC noise sigma: 'learned' (Balanced MSE as published: its own parameter group at lr 1e-2, "
        "jiawei-ren/BalancedMSE imdb-wiki-dir/train.py) or 'fixed' (released main_PFED5.py never hands the "
        "criterion's parameter to the optimiser: sigma stays 1.0; originals 13 row 7).",
        choices=("learned", "fixed"), code_value="fixed"),
}


def build_bmc_or_mse(options: Mapping[str, Any]) -> nn.Module:
    """The loss selected by the ``loss`` / ``bmc_sigma`` options (shared by QAFE-Net and Former-DFER)."""
    if options["loss"] == "mse":
        return MSELoss()
    return BMCLoss(init_noise_sigma=1.0, learn_sigma=options["bmc_sigma"] == "learned")


def param_groups_with_sigma(model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
    """Every trainable model parameter at ``cfg.lr`` (one group, as ``main_PFED5.py`` gives all
    four modules the same settings) plus, when the BMC sigma is learned, ``loss.noise_sigma``
    in its own group at :data:`~benchmark.losses.BMC_SIGMA_LR` (official Balanced MSE
    ``optimizer.add_param_group({'params': criterion.noise_sigma, 'lr': sigma_lr, 'name':
    'noise_sigma'})``; momentum / weight decay are the optimiser's defaults there too). The group
    carries ``name="noise_sigma"`` like the official one, whose ``adjust_learning_rate``
    (imdb-wiki-dir/utils.py) skips it: the sigma learning rate is never decayed there, and
    ``"decay": False`` tells the engine's step schedule the same."""
    groups = [{"params": [p for p in model.parameters() if p.requires_grad], "lr": cfg.lr}]
    sigma = getattr(loss, "noise_sigma", None)
    if isinstance(sigma, nn.Parameter) and sigma.requires_grad:
        groups.append({"params": [sigma], "lr": BMC_SIGMA_LR, "name": "noise_sigma", "decay": False})
    return groups


def qafe_training_defaults() -> TrainingConfig:
    """QAFE-Net main_PFED5.py + README: SGD lr 1e-3, momentum 0.9, wd 1e-4, StepLR(40, 0.1),
    100 epochs, batch 4 (README; the parser's default 1 makes BMC identically zero),
    each training video 5x per epoch."""
    return TrainingConfig(epochs=100, batch_size=4, optimizer="sgd", lr=1e-3, momentum=0.9, weight_decay=1e-4,
                          lr_step=40, lr_gamma=0.1, reps_per_epoch=5)


class QAFENetMethod(Method):
    """The QAFE-Net method adapter.

    Options (default = paper; ``code_value`` = released code where it differs):
    ``rgb_layout``, ``pos_embed_stream``, ``loss``, ``bmc_sigma``,
    ``rgb_normalisation``, ``heatmap_mode``, ``heatmap_sigma``, ``stream_sync``,
    ``fusion``, ``fusion_blocks``, ``pos_embed_resize`` (help strings give the sources).
    Pretrained files: ``rgb`` = ``FormerDFER-DFEWset1-model_best.pth``,
    ``heatmap`` = ``pose_only.pth``; neither holds a tensor that depends on the number
    of sub-clips, so both load at any ``geometry.n_subclips`` (UNBC-McMaster: 9).
    """

    name = "qafe_net"
    display_name = "QAFE-Net"
    repository = "github.com/shuchaoduan/QAFE-Net"
    licence = "none stated"
    backbone = "Former-DFER+SlowOnly"
    pretraining = "DFEW+NTU60-XSub"
    reference = ("Duan, Dadashzadeh, Whone, Mirmehdi: QAFE-Net: Quality Assessment of Facial Expressions "
                 "with Landmark Heatmaps, arXiv 2312.00856 (2023); github.com/shuchaoduan/QAFE-Net")
    options_spec = {
        "rgb_layout": _RGB_OPTIONS["rgb_layout"],
        "pos_embed_stream": Option(
            "rgb",
            "Which tokens get the decoder's learned sub-clip positional embedding (1, n, 512). 'rgb': the paper's "
            "pipeline figure ('SPE' on the RGB features E_v). 'heatmap': released code, main_PFED5.py calls "
            "decoder(outputs_l, outputs_v) and decoder_fuser adds pos_embed to its first argument, the heatmap "
            "tokens (originals 13 row 6). The token order into the blocks and the Conv1d is the code's "
            "[heatmap, rgb] in both modes, so checkpoints load either way.",
            choices=("rgb", "heatmap"), code_value="heatmap"),
        "loss": Option(
            "bmc",
            "Training loss (paper section 4; Tables 6 and 9). Regression: 'bmc' Balanced MSE batch Monte-Carlo "
            "(the paper's; QAFE-Net dataloader/ibmse/balancedMSE.py BMCLoss, init sigma 1.0), 'mse', 'focal_l1' / "
            "'focal_mse' (Focal-R of Yang et al., ICML 2021: YyzHarry/imbalanced-regression loss.py, sigmoid, beta "
            "0.2, gamma 1), 'gai' (Balanced MSE GMM-based analytical integration, official "
            "jiawei-ren/BalancedMSE gai_loss; the GMM of gai_components components fitted on the training "
            "partition's labels only; QAFE-Net's own copy has the formula commented out, originals 13 row 9). "
            "Classification into the card's integer label classes (Table 9; PFED5: 5 severities), the head's "
            "last layer giving one logit per class: 'ce' cross-entropy, 'focal' focal loss (Lin et al. 2017, "
            f"gamma {FOCAL_CE_GAMMA:g}, the paper gives none); the score is decoded by class_decode.",
            choices=("bmc", "mse", "focal_l1", "focal_mse", "gai", "ce", "focal")),
        "bmc_sigma": Option(
            "learned",
            "Balanced MSE noise sigma of the 'bmc' and 'gai' losses: 'learned' (Balanced MSE as published: its own "
            "parameter group at lr 1e-2, jiawei-ren/BalancedMSE imdb-wiki-dir/train.py) or 'fixed' (released "
            "main_PFED5.py never hands the criterion's parameter to the optimiser: sigma stays 1.0; originals 13 "
            "row 7).",
            choices=("learned", "fixed"), code_value="fixed"),
        "gai_components": Option(
            GAI_COMPONENTS,
            "GMM components of the 'gai' loss (QAFE-Net preprocess_gmm_PD.py --K default 2; Balanced MSE's "
            "IMDB-WIKI script uses 8). loss='gai' only."),
        "class_decode": Option(
            "argmax",
            "How a classification head ('ce' / 'focal' loss, Table 9) becomes one score for Spearman's rho: "
            "'argmax' (the predicted class, the paper's 'predicted severity'; ties between videos are common) or "
            "'expectation' (sum of class probabilities x class labels). Regression losses ignore it.",
            choices=("argmax", "expectation")),
        "rgb_normalisation": _RGB_OPTIONS["rgb_normalisation"],
        "heatmap_mode": Option(
            "paper",
            "Heatmap volume rendering: 'paper' (section 4: accumulated, smoothed, (0,1)-normalised Gaussian "
            "weights multiply the RGB frame), 'official' (dataset/generate_landmark_heatmap.py: summed Gaussians, "
            "7x7 blur, JET pseudo-colour, RGB untouched; originals 13 row 1), 'points' (landmark positions only, "
            "no Gaussian: Table 4 row 1 / Table 10 'N/A').",
            choices=("paper", "official", "points"), code_value="official"),
        "heatmap_sigma": Option(
            1.0, "Gaussian sigma in pixels of the landmark heatmaps (paper Table 10 best = 1; code default 1)."),
        "stream_sync": Option(
            "flip",
            "Training augmentation pairing of the two streams: 'flip' (one horizontal-flip draw for both, crops "
            "independent: the paper's same-frames pairing), 'flip_crop' (flip and crop window shared), 'none' "
            "(released loader: flip and crop drawn independently per stream; originals 13 row 12).",
            choices=("flip", "none", "flip_crop"), code_value="none"),
        "fusion": Option(
            "cross",
            "How the heatmap and RGB sub-clip features (each (B, n, 512), n = geometry.n_subclips: 5 PFED5, 9 "
            "UNBC-McMaster) are fused before the per-token MLP head, whose scores are averaged. 'cross': the "
            "paper's QAFE-Net (PFED5 model; released models/vit_decoder_two.py decoder_fuser): positional "
            "embedding, fusion_blocks shared-weight cross-attention blocks, Conv1d over the 2n tokens. The "
            "baselines of paper Table 5 (PFED5: Concatenation 60.34 / Summation 60.09 / Cross-Fusion 65.35 avg "
            "rho) and Table 3 (UNBC-McMaster, 144 frames: Summation best, MAE 1.57) are named there but not "
            "specified, and the released code has none of them; this project's reading replaces the whole decoder "
            "by a parameter-free fusion (no positional embedding, no blocks, no Conv1d: no decoder tensors; "
            "fusion_blocks and pos_embed_stream are unused) and keeps the encoders and the head: 'concat': "
            "token-axis concatenation [heatmap x n, RGB x n] (B, 2n, 512), the same 512-d head input the decoder "
            "output gives (Table 8's 'Concat Stream' joins the decoder's two output streams the same way); "
            "'concat_channels': the other reading, feature-axis concatenation (B, n, 1024), head Linear(1024, 256) "
            "first; 'sum': element-wise sum (B, n, 512).",
            choices=FUSIONS),
        "fusion_blocks": Option(3, "Cross-fusion decoder blocks (paper Table 7; code num_layers=3). fusion='cross' "
                                   "only."),
        "decoder_output": Option(
            "concat_conv1d",
            "Which cross-fusion decoder output feeds the MLP head (paper Table 8): 'concat_conv1d' (Concat Stream + "
            "CONV1D: the paper's model and released decoder_fuser, both streams' 2n tokens mixed by Conv1d(2n, 2n, "
            "1)), 'concat' (both streams' 2n tokens, no Conv1d), 'rgb' / 'heatmap' (one stream's n output tokens, "
            "no Conv1d). The released code has only the first; the others are this project's reading of the "
            "table's row names. fusion='cross' only.",
            choices=DECODER_OUTPUTS),
        "pos_embed_resize": _RGB_OPTIONS["pos_embed_resize"],
    }
    pretrained_files = {"rgb": FORMER_DFER_FILE, "heatmap": POSE_ONLY_FILE}

    learning_recipe = {
        "overfit_steps": 30,
        "options": {"loss": "mse", "heatmap_mode": "official"}, "data": "tiny", "asserted": True,
        "why": "the released code's JET heatmaps and MSE: with the paper's RGB-weighted heatmaps and learned BMC "
               "sigma the same 6 Adam epochs gave test rho 17.1 (80.3 with these options, shuffled control -7.9)",
    }

    def __init__(self, options: Mapping[str, Any] | None = None, geometry: ClipGeometry | None = None,
                 label_range: tuple[float, float] = (0.0, 4.0)) -> None:
        super().__init__(options, geometry, label_range)
        if self.classification:
            lo, hi = self.label_range
            if abs((hi - lo) - round(hi - lo)) > 1e-9:
                raise ConfigError(f"option loss={self.options['loss']!r} of method 'qafe_net' classifies integer "
                                  f"labels; the label range {self.label_range} has no whole number of classes")
        if int(self.options["gai_components"]) < 1:
            raise ConfigError(f"option gai_components={self.options['gai_components']!r} of method 'qafe_net' "
                              "must be >= 1")
        if int(self.options["fusion_blocks"]) < 1:
            raise ConfigError(f"option fusion_blocks={self.options['fusion_blocks']!r} of method 'qafe_net' "
                              "must be >= 1")
        if float(self.options["heatmap_sigma"]) <= 0:
            raise ConfigError(f"option heatmap_sigma={self.options['heatmap_sigma']!r} of method 'qafe_net' "
                              "must be > 0")

    def input_spec(self) -> InputSpec:
        """RGB + heatmap, with the normalisation / heatmap / pairing options."""
        o = self.options
        return InputSpec(rgb=True, heatmap=True, rgb_normalisation=o["rgb_normalisation"],
                         heatmap_mode=o["heatmap_mode"], heatmap_sigma=float(o["heatmap_sigma"]),
                         stream_sync=o["stream_sync"], subclip_len=16, rgb_size=224, heatmap_size=56,
                         heatmap_resize=64)

    @property
    def classification(self) -> bool:
        """The head classifies severities (``loss`` 'ce' or 'focal', paper Table 9)."""
        return self.options["loss"] in CLASSIFICATION_LOSSES

    @property
    def n_classes(self) -> int:
        """Integer label classes of the card's range (PFED5 0..4: 5; UNBC VAS 0..10: 11)."""
        lo, hi = self.label_range
        return int(round(hi - lo)) + 1

    def build_model(self) -> QAFENet:
        """A fresh :class:`QAFENet` at this method's geometry and options."""
        return QAFENet(self.geometry, rgb_layout=self.options["rgb_layout"],
                       pos_embed_stream=self.options["pos_embed_stream"],
                       fusion_blocks=int(self.options["fusion_blocks"]), fusion=self.options["fusion"],
                       decoder_output=self.options["decoder_output"],
                       n_outputs=self.n_classes if self.classification else 1)

    def build_loss(self) -> nn.Module:
        """The ``loss`` option's module: :class:`~benchmark.losses.BMCLoss` / :class:`~benchmark.losses.GAILoss`
        (sigma learned or fixed), :class:`~benchmark.losses.MSELoss`, :class:`~benchmark.losses.FocalRLoss`
        or :class:`~benchmark.losses.ClassificationLoss`."""
        o = self.options
        learn = o["bmc_sigma"] == "learned"
        if o["loss"] == "bmc":
            return BMCLoss(init_noise_sigma=1.0, learn_sigma=learn)
        if o["loss"] == "gai":
            return GAILoss(int(o["gai_components"]), init_noise_sigma=1.0, learn_sigma=learn)
        if o["loss"] in ("focal_l1", "focal_mse"):
            return FocalRLoss(o["loss"][len("focal_"):])
        if self.classification:
            return ClassificationLoss(self.n_classes, self.label_range[0], "ce" if o["loss"] == "ce" else "focal")
        return MSELoss()

    def loss(self, loss_fn: nn.Module, output: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """Regression: ``loss_fn(scores (B,), labels (B,))``; classification: ``loss_fn(logits (B, C), labels)``."""
        if self.classification:
            return loss_fn(output, batch["label"])
        return loss_fn(output.reshape(-1), batch["label"])

    def decode(self, output: Any, batch: Mapping[str, Any]) -> torch.Tensor:
        """Scores ``(B,)`` in label units: the regression output, or for classification the
        predicted class (``class_decode='argmax'``) or the expected class under the softmax
        (``'expectation'``), plus the range's lower end."""
        if not self.classification:
            return output.reshape(-1)
        lo = self.label_range[0]
        if self.options["class_decode"] == "argmax":
            return output.argmax(dim=-1).to(torch.float32) + lo
        values = torch.arange(output.shape[-1], dtype=torch.float32, device=output.device) + lo
        return (output.float().softmax(dim=-1) * values).sum(dim=-1)

    def training_defaults(self) -> TrainingConfig:
        return qafe_training_defaults()

    def param_groups(self, model: nn.Module, loss: nn.Module, cfg: TrainingConfig) -> list[dict]:
        return param_groups_with_sigma(model, loss, cfg)

    def load_pretrained(self, model: nn.Module, files: Mapping[str, Path]) -> dict[str, Any]:
        """Load the roles given: ``rgb`` (Former-DFER, strict after QAFE-Net's key filter and the
        ``pos_embed_resize`` handling) and/or ``heatmap`` (pose_only.pth, QAFE-Net's filtered
        non-strict load, verified).

        Neither file holds fusion tensors, and neither depends on ``geometry.n_subclips``: the
        encoders load the same at ``n = 5`` (PFED5) and ``n = 9`` (UNBC-McMaster 144-frame clips,
        started from the same Former-DFER DFEW / SlowOnly files). The cross decoder
        (``pos_embed (1, n, 512)``, ``conv`` Conv1d(2n, 2n, 1)) always starts at random init;
        ``concat`` / ``concat_channels`` / ``sum`` have no decoder tensors at all. (A full
        QAFE-Net training checkpoint, :func:`methods.checkpoints.load_qafe_training_checkpoint`,
        is loaded strictly: one trained at another ``n`` or with another fusion raises a
        CheckpointError naming the shape mismatches / unexpected decoder keys.)

        Returns:
            JSON-able ``{"rgb": {...}, "heatmap": {...}, "fusion": {...}, "random_init": [...]}``:
            per role what was loaded / adapted / dropped, the fusion and its decoder tensors,
            and which parts keep their random initialisation.

        Raises:
            ConfigError: an unknown role. CheckpointError: see the backbone loaders.
        """
        self.check_pretrained_roles(files)
        info: dict[str, Any] = {}
        fusion = getattr(model, "fusion", self.options["fusion"])
        n = getattr(model, "geometry", self.geometry).n_subclips
        if fusion == "cross":
            info["fusion"] = {"fusion": "cross", "n_subclips": n, "decoder": "random init (in no pretrained file); "
                              f"pos_embed (1, {n}, {FEAT_DIM}), conv ({2 * n}, {2 * n}, 1)"}
            random_init = ["decoder", "evaluator"]
        else:
            info["fusion"] = {"fusion": fusion, "n_subclips": n,
                              "decoder": "none: parameter-free fusion, no decoder tensors to load or initialise"}
            random_init = ["evaluator"]
        if "rgb" in files:
            info["rgb"] = load_former_dfer_checkpoint(model.rgb_encoder, files["rgb"],
                                                      pos_embed_resize=self.options["pos_embed_resize"])
        else:
            random_init.append("rgb_encoder")
        if "heatmap" in files:
            info["heatmap"] = load_pose_only_checkpoint(model.heatmap_encoder, files["heatmap"])
            random_init.append("heatmap_encoder.conv1.conv.weight")
        else:
            random_init.append("heatmap_encoder")
        info["random_init"] = random_init
        return info
