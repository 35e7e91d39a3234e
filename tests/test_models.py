"""QAFE-Net and Former-DFER models: shapes, original key layouts, options, the RGB scramble."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from benchmark.api import ClipGeometry, InputSpec
from benchmark.errors import ConfigError
from benchmark.losses import BMC_SIGMA_LR, BMCLoss, MSELoss
from methods.backbones.former_dfer import FormerDFEREncoder, layer3_grid
from methods.backbones.slowonly import SlowOnlyEncoder
from methods.former_dfer import FormerDFERMethod
from methods.qafe_net import CrossFusionDecoder, QAFENet, QAFENetMethod

TINY = ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=40, heatmap_size=14)
PAPER = ClipGeometry()


def _inputs(geom: ClipGeometry, batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, geom.clip_len, geom.rgb_size, geom.rgb_size, generator=g)
    hm = torch.rand(batch, 3, geom.clip_len, geom.heatmap_size, geom.heatmap_size, generator=g)
    return rgb, hm


def _nparams(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ----------------------------------------------------------------- shapes
@pytest.mark.parametrize("layout", ["frames", "channel_major"])
def test_qafe_net_tiny_forward(layout):
    torch.manual_seed(0)
    model = QAFENetMethod({"rgb_layout": layout}, geometry=TINY).build_model()
    rgb, hm = _inputs(TINY, 3)
    out = model(rgb, hm)
    assert out.shape == (3,) and torch.isfinite(out).all()
    assert model.fused_tokens(rgb, hm).shape == (3, 2 * TINY.n_subclips, 512)
    with pytest.raises(ValueError, match="heatmap"):
        model(rgb, hm[:, :, :-1])


def test_former_dfer_tiny_forward():
    torch.manual_seed(0)
    model = FormerDFERMethod(geometry=TINY).build_model()
    rgb, _ = _inputs(TINY, 3)
    out = model(rgb)
    assert out.shape == (3,) and torch.isfinite(out).all()


def test_paper_geometry_forward():
    """One clip at the paper's geometry: 5 x 16 frames, RGB 224, heatmaps 56."""
    torch.manual_seed(0)
    rgb, hm = _inputs(PAPER, 1)
    qafe = QAFENetMethod(geometry=PAPER).build_model().eval()
    dfer = FormerDFERMethod(geometry=PAPER).build_model().eval()
    with torch.no_grad():
        tokens = qafe.fused_tokens(rgb, hm)
        out = qafe.evaluator(tokens).squeeze(-1).mean(1)
        out2 = dfer(rgb)
    assert tokens.shape == (1, 10, 512)
    assert out.shape == (1,) and torch.isfinite(out).all()
    assert out2.shape == (1,) and torch.isfinite(out2).all()
    assert qafe.rgb_encoder.s_former.pos_embedding.shape == (1, 196, 256)
    assert qafe.rgb_encoder.t_former.pos_embedding.shape == (1, 17, 512)
    assert qafe.decoder.conv.weight.shape == (10, 10, 1)


def test_slowonly_feature_map_and_official_pooling():
    """16x56x56 -> 512x16x7x7; the global mean equals the official AvgPool3d((16, 7, 7))."""
    torch.manual_seed(0)
    enc = SlowOnlyEncoder().eval()
    x = torch.rand(1, 3, 16, 56, 56)
    with torch.no_grad():
        fmap = enc.features(x)
        out = enc(x)
    assert fmap.shape == (1, 512, 16, 7, 7)
    torch.testing.assert_close(out, nn.AvgPool3d((16, 7, 7))(fmap).reshape(1, 512))


def test_layer3_grid():
    assert [layer3_grid(s) for s in (224, 112, 40)] == [14, 7, 3]


# ----------------------------------------------------------------- original key layouts
def test_former_dfer_keys_and_shapes():
    sd = FormerDFEREncoder(224, 16).state_dict()
    expect = {
        "s_former.conv1.weight": (64, 3, 7, 7),
        "s_former.layer2.0.downsample.0.weight": (128, 64, 1, 1),
        "s_former.layer4.0.downsample.1.running_var": (512,),
        "s_former.pos_embedding": (1, 196, 256),
        "s_former.spatial_transformer.layers.0.0.fn.norm.weight": (256,),
        "s_former.spatial_transformer.layers.0.0.fn.fn.to_qkv.weight": (768, 256),
        "s_former.spatial_transformer.layers.0.0.fn.fn.to_out.0.weight": (256, 256),
        "s_former.spatial_transformer.layers.0.1.fn.fn.net.0.weight": (512, 256),
        "s_former.spatial_transformer.layers.0.1.fn.fn.net.3.weight": (256, 512),
        "t_former.cls_token": (1, 1, 512),
        "t_former.pos_embedding": (1, 17, 512),
        "t_former.temporal_transformer.layers.2.0.fn.fn.to_qkv.weight": (1536, 512),
        "t_former.temporal_transformer.layers.2.1.fn.fn.net.0.weight": (1024, 512),
        "t_former.temporal_transformer.layers.2.1.fn.fn.net.3.bias": (512,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert not any("fc." in k and not k.startswith(("s_former.spatial", "t_former")) for k in sd)
    assert "t_former.temporal_transformer.layers.3.0.fn.norm.weight" not in sd
    assert "s_former.spatial_transformer.layers.1.0.fn.norm.weight" not in sd
    # ResNet-18 without fc + spatial transformer (196 tokens) + T-Former, counted by hand
    resnet18_no_fc = 11_689_512 - 513_000
    spatial = 196 * 256 + (2 * 256 + 256 * 768 + 256 * 256 + 256 + 2 * 256 + 256 * 512 + 512 + 512 * 256 + 256)
    temporal = 512 + 17 * 512 + 3 * (2 * 512 + 512 * 1536 + 512 * 512 + 512 + 2 * 512 + 512 * 1024 + 1024
                                     + 1024 * 512 + 512)
    assert _nparams(FormerDFEREncoder(224, 16)) == resnet18_no_fc + spatial + temporal == 18_065_984


def test_slowonly_keys_and_shapes():
    sd = SlowOnlyEncoder().state_dict()
    expect = {
        "conv1.conv.weight": (32, 3, 1, 7, 7),
        "conv1.bn.num_batches_tracked": (),
        "layer1.0.conv1.conv.weight": (32, 32, 1, 1, 1),
        "layer1.0.conv2.conv.weight": (32, 32, 1, 3, 3),
        "layer1.0.conv3.conv.weight": (128, 32, 1, 1, 1),
        "layer1.0.downsample.conv.weight": (128, 32, 1, 1, 1),
        "layer1.3.conv3.bn.running_mean": (128,),
        "layer2.0.conv1.conv.weight": (64, 128, 3, 1, 1),
        "layer2.0.downsample.conv.weight": (256, 128, 1, 1, 1),
        "layer2.5.conv2.conv.weight": (64, 64, 1, 3, 3),
        "layer3.1.conv1.conv.weight": (128, 512, 3, 1, 1),
        "layer3.2.conv1.conv.weight": (128, 512, 3, 1, 1),
        "layer3.0.downsample.bn.weight": (512,),
    }
    for k, shape in expect.items():
        assert tuple(sd[k].shape) == shape, k
    assert "layer1.4.conv1.conv.weight" not in sd and "layer4.0.conv1.conv.weight" not in sd
    assert not any(k.startswith(f"layer{i}.1.downsample") for k in sd for i in (1, 2, 3))
    enc = SlowOnlyEncoder()
    # stride on conv2 of block 0 and on the downsample, not on conv1
    assert enc.layer2[0].conv1.conv.stride == (1, 1, 1) and enc.layer2[0].conv2.conv.stride == (1, 2, 2)
    assert enc.layer2[0].downsample.conv.stride == (1, 2, 2)
    assert enc.layer1[0].conv3.activate is None and enc.layer1[0].conv2.activate is not None


def _decoder_expected_keys(n_blocks: int) -> list[str]:
    """Key list of decoder_fuser (originals-detail 1.4)."""
    keys = ["pos_embed"]
    for i in range(n_blocks):
        p = f"model.{i}."
        keys += [p + "norm_q.weight", p + "norm_q.bias", p + "norm_v.weight", p + "norm_v.bias",
                 p + "attn.q_map.weight", p + "attn.k_map.weight", p + "attn.v_map.weight",
                 p + "attn.proj.weight", p + "attn.proj.bias", p + "norm2.weight", p + "norm2.bias",
                 p + "mlp.fc1.weight", p + "mlp.fc1.bias", p + "mlp.fc2.weight", p + "mlp.fc2.bias"]
    return keys + ["norm.weight", "norm.bias", "conv.weight", "conv.bias"]


def test_decoder_shares_weights_between_directions():
    dec = CrossFusionDecoder(5, 3)
    assert sorted(dec.state_dict()) == sorted(_decoder_expected_keys(3))
    # by hand from the key list: per block 3 LayerNorms (2*512 each), q/k/v maps 512x512 without
    # bias, proj 512x512+512, fc1 512x2048+2048, fc2 2048x512+512; plus pos_embed 5x512, norm, conv 10x10+10
    per_block = 3 * 2 * 512 + 3 * 512 * 512 + (512 * 512 + 512) + (512 * 2048 + 2048) + (2048 * 512 + 512)
    expected = 3 * per_block + 5 * 512 + 2 * 512 + (10 * 10 + 10)
    assert expected == 9_459_310
    assert _nparams(dec) == expected
    # both directions go through the same module objects: a gradient that only reaches the
    # second direction's output still lands on the single attention's weights
    x1, x2 = torch.randn(2, 5, 512), torch.randn(2, 5, 512)
    block = dec.model[0]
    out = block(torch.cat([x1, x2], 1))
    out[:, 5:].sum().backward()
    assert block.attn.q_map.weight.grad is not None and block.mlp.fc1.weight.grad.abs().sum() > 0
    n_modules = sum(1 for m in block.modules() if isinstance(m, nn.LayerNorm))
    assert n_modules == 3


def test_evaluator_keys():
    model = QAFENet(TINY)
    keys = sorted(model.evaluator.state_dict())
    assert keys == sorted(f"evaluator.layer{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
    assert model.evaluator.evaluator.layer3.weight.shape == (1, 128)


# ----------------------------------------------------------------- RGB layout
# originals-detail 1.2: pseudo-frame g of the channel-major view = planes 3g..3g+2, plane = c*16 + t
SCRAMBLE_TABLE = [
    ["Rt0", "Rt1", "Rt2"], ["Rt3", "Rt4", "Rt5"], ["Rt6", "Rt7", "Rt8"], ["Rt9", "Rt10", "Rt11"],
    ["Rt12", "Rt13", "Rt14"], ["Rt15", "Gt0", "Gt1"], ["Gt2", "Gt3", "Gt4"], ["Gt5", "Gt6", "Gt7"],
    ["Gt8", "Gt9", "Gt10"], ["Gt11", "Gt12", "Gt13"], ["Gt14", "Gt15", "Bt0"], ["Bt1", "Bt2", "Bt3"],
    ["Bt4", "Bt5", "Bt6"], ["Bt7", "Bt8", "Bt9"], ["Bt10", "Bt11", "Bt12"], ["Bt13", "Bt14", "Bt15"],
]


def _plane_code(name: str) -> int:
    return "RGB".index(name[0]) * 100 + int(name[2:])


def _coded_clip(batch: int = 2, size: int = 40) -> torch.Tensor:
    """(B, 3, 16, H, W) where plane (c, t) of sample b holds the constant 1000*b + 100*c + t."""
    x = torch.empty(batch, 3, 16, size, size)
    for b in range(batch):
        for c in range(3):
            for t in range(16):
                x[b, c, t] = 1000 * b + 100 * c + t
    return x


def test_channel_major_scramble_matches_table():
    x = _coded_clip()
    cm = FormerDFEREncoder(40, 16, layout="channel_major").to_frames(x)
    fr = FormerDFEREncoder(40, 16, layout="frames").to_frames(x)
    assert cm.shape == fr.shape == (32, 3, 40, 40)
    for b in range(2):
        for g, planes in enumerate(SCRAMBLE_TABLE):
            got = cm[b * 16 + g, :, 0, 0].tolist()
            assert got == [1000 * b + _plane_code(p) for p in planes], (b, g)
            assert fr[b * 16 + g, :, 0, 0].tolist() == [1000 * b + 100 * c + g for c in range(3)]


def test_channel_major_forward_is_frames_forward_of_permuted_planes():
    torch.manual_seed(0)
    frames = FormerDFEREncoder(40, 16, layout="frames").eval()
    cm = FormerDFEREncoder(40, 16, layout="channel_major").eval()
    cm.load_state_dict(frames.state_dict())
    x = torch.randn(2, 3, 16, 40, 40)
    # build the permuted clip from the table: frame g, channel j := plane SCRAMBLE_TABLE[g][j]
    perm = torch.empty_like(x)
    for g, planes in enumerate(SCRAMBLE_TABLE):
        for j, p in enumerate(planes):
            perm[:, j, g] = x[:, "RGB".index(p[0]), int(p[2:])]
    with torch.no_grad():
        out_cm = cm(x)
        out_fr = frames(x)
        torch.testing.assert_close(out_cm, frames(perm))
    assert not torch.allclose(out_cm, out_fr, atol=1e-4)


# ----------------------------------------------------------------- positional embedding stream
@pytest.mark.parametrize("stream", ["rgb", "heatmap"])
def test_pos_embed_stream(stream):
    torch.manual_seed(0)
    model = QAFENet(TINY, pos_embed_stream=stream).eval()
    n = TINY.n_subclips
    with torch.no_grad():
        model.decoder.pos_embed.copy_(torch.arange(n, dtype=torch.float32).view(1, n, 1) + 5.0)
    seen = {}
    model.rgb_encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("rgb", o))
    model.heatmap_encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("hm", o))
    model.decoder.model[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("tokens", a[0]))
    rgb, hm = _inputs(TINY, 2)
    with torch.no_grad():
        model(rgb, hm)
    # encoder outputs are packed clip-major: row k*B + b
    v = seen["rgb"].reshape(n, 2, 512).transpose(0, 1)
    h = seen["hm"].reshape(n, 2, 512).transpose(0, 1)
    tokens = seen["tokens"]
    pos = model.decoder.pos_embed
    # token order is always [heatmap x n, rgb x n] (released code)
    if stream == "rgb":
        torch.testing.assert_close(tokens[:, :n], h)
        torch.testing.assert_close(tokens[:, n:], v + pos)
    else:
        torch.testing.assert_close(tokens[:, :n], h + pos)
        torch.testing.assert_close(tokens[:, n:], v)


def test_subclip_packing_matches_official_cat():
    """rearrange packing == torch.cat([x[:, :, i:i+L] for i ...]) of main_PFED5.py."""
    torch.manual_seed(0)
    model = QAFENet(TINY)
    rgb, _ = _inputs(TINY, 3)
    official = torch.cat([rgb[:, :, i:i + TINY.subclip_len] for i in range(0, TINY.clip_len, TINY.subclip_len)])
    torch.testing.assert_close(model._pack(rgb, TINY.rgb_size, "rgb"), official, rtol=0, atol=0)


# ----------------------------------------------------------------- loss / optimiser
def _one_step(method, seed=0):
    torch.manual_seed(seed)
    model = method.build_model()
    loss_fn = method.build_loss()
    cfg = method.training_defaults()
    groups = method.param_groups(model, loss_fn, cfg)
    opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    rgb, hm = _inputs(TINY, 4)
    target = torch.tensor([0.0, 1.0, 3.0, 4.0])
    sigma = loss_fn.noise_sigma.item()
    loss = loss_fn(model(rgb, hm), target)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss_fn, groups, sigma, loss_fn.noise_sigma.item()


def test_bmc_sigma_learned_has_own_group_and_moves():
    method = QAFENetMethod(geometry=TINY)
    loss_fn, groups, before, after = _one_step(method)
    assert isinstance(loss_fn, BMCLoss)
    sigma_groups = [g for g in groups if any(p is loss_fn.noise_sigma for p in g["params"])]
    assert len(sigma_groups) == 1 and sigma_groups[0]["lr"] == BMC_SIGMA_LR == 1e-2
    assert sigma_groups[0]["name"] == "noise_sigma" and sigma_groups[0]["params"] == [loss_fn.noise_sigma]
    assert groups[0]["lr"] == 1e-3
    assert after != before


def test_bmc_sigma_fixed_is_not_optimised():
    method = QAFENetMethod({"bmc_sigma": "fixed"}, geometry=TINY)
    loss_fn, groups, before, after = _one_step(method)
    assert not any(p is loss_fn.noise_sigma for g in groups for p in g["params"])
    assert after == before == 1.0
    assert isinstance(QAFENetMethod({"loss": "mse"}).build_loss(), MSELoss)


def test_model_group_holds_every_parameter():
    method = QAFENetMethod(geometry=TINY)
    model = method.build_model()
    groups = method.param_groups(model, method.build_loss(), method.training_defaults())
    assert sum(p.numel() for p in groups[0]["params"]) == _nparams(model)


# ----------------------------------------------------------------- options / contract
def test_options_and_contract():
    spec = QAFENetMethod.options_spec
    code = {k: o.code_value for k, o in spec.items() if o.code_value is not None}
    assert code == {"rgb_layout": "channel_major", "pos_embed_stream": "heatmap", "bmc_sigma": "fixed",
                    "heatmap_mode": "official", "stream_sync": "none", "pos_embed_resize": "strict"}
    defaults = QAFENetMethod().options
    assert defaults["rgb_layout"] == "frames" and defaults["pos_embed_stream"] == "rgb"
    assert defaults["fusion_blocks"] == 3 and defaults["heatmap_sigma"] == 1.0
    released = QAFENetMethod({k: v for k, v in code.items()})
    assert released.deviations_from_paper() == code
    assert QAFENetMethod().input_spec() == InputSpec(rgb=True, heatmap=True, rgb_normalisation="imagenet",
                                                     heatmap_mode="paper", heatmap_sigma=1.0, stream_sync="flip")
    assert FormerDFERMethod().input_spec().names == ("rgb",)
    cfg = QAFENetMethod().training_defaults()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.lr_step, cfg.lr_gamma, cfg.epochs,
            cfg.batch_size, cfg.reps_per_epoch) == ("sgd", 1e-3, 0.9, 1e-4, 40, 0.1, 100, 4, 5)
    assert FormerDFERMethod().training_defaults() == cfg
    assert QAFENetMethod.pretrained_files == {"rgb": "FormerDFER-DFEWset1-model_best.pth",
                                              "heatmap": "pose_only.pth"}
    assert FormerDFERMethod.pretrained_files == {"rgb": "FormerDFER-DFEWset1-model_best.pth"}
    with pytest.raises(ConfigError, match="rgb_layout"):
        QAFENetMethod({"rgb_layot": "frames"})
    with pytest.raises(ConfigError):
        QAFENetMethod({"fusion_blocks": 0})
    assert len(QAFENetMethod({"fusion_blocks": 2}, geometry=TINY).build_model().decoder.model) == 2
    with pytest.raises(ConfigError, match="no pretrained role"):
        QAFENetMethod(geometry=TINY).load_pretrained(nn.Linear(1, 1), {"flow": "x.pth"})


def test_registered_entry_points():
    from benchmark.registry import get_method

    assert get_method("QAFE-Net") is QAFENetMethod
    assert get_method("former_dfer") is FormerDFERMethod


def test_parameter_counts():
    qafe = QAFENet(PAPER)
    n_rgb = _nparams(qafe.rgb_encoder)
    n_hm = _nparams(qafe.heatmap_encoder)
    assert n_rgb == 18_065_984
    assert _nparams(qafe.decoder) == 9_459_310
    assert _nparams(qafe.evaluator) == 512 * 256 + 256 + 256 * 128 + 128 + 128 + 1
    assert _nparams(qafe) == n_rgb + n_hm + 9_459_310 + 164_353
    # tiny geometry only changes the two positional tables and the token-mixing conv
    tiny = QAFENet(TINY)
    diff = _nparams(qafe) - _nparams(tiny)
    assert diff == (196 - 9) * 256 + (17 - 9) * 512 + (5 - 2) * 512 + (10 * 10 + 10) - (4 * 4 + 4)
    assert math.isfinite(n_hm)


def test_qafe_net_module_defaults_are_the_original_signatures():
    """Defaults of main_PFED5.py's modules: 8 heads, 5 sub-clips, 3 fusion blocks, MLP ratio 4,
    one output (``Evaluator(output_dim=1, model_type='MLP')``); arguments given are used."""
    from methods.qafe_net import CrossAttention, DecoderBlock, Evaluator, MLPBlock

    assert CrossAttention().heads == 8
    block = DecoderBlock(5)
    assert block.attn.heads == 8 and block.mlp.fc1.out_features == 4 * 512
    decoder = CrossFusionDecoder()
    assert len(decoder.model) == 3 and decoder.pos_embed.shape == (1, 5, 512)
    assert all(b.attn.heads == 8 for b in decoder.model)
    assert Evaluator().evaluator.layer3.out_features == 1 and MLPBlock().layer3.out_features == 1
    small = DecoderBlock(3, dim=64, heads=4, mlp_ratio=2.0)
    assert small.attn.heads == 4 and small.mlp.fc1.out_features == 128
    assert all(b.attn.heads == 4 for b in CrossFusionDecoder(3, 2, dim=64, heads=4).model)


def test_qafe_net_bad_inputs_raise_errors_that_name_them():
    with pytest.raises(ValueError, match="^pos_on must be 'first' or 'second', got 'middle'$"):
        CrossFusionDecoder(pos_on="middle")
    with pytest.raises(ValueError, match="^pos_embed_stream must be 'rgb' or 'heatmap', got 'both'$"):
        QAFENet(TINY, pos_embed_stream="both")
    model = QAFENet(TINY).eval()
    rgb, hm = _inputs(TINY, 2)
    t, s, k = TINY.clip_len, TINY.rgb_size, TINY.heatmap_size
    with pytest.raises(ValueError, match=rf"^rgb: expected \(B, 3, {t}, {s}, {s}\), got \(2, 4, {t}, {s}, {s}\)$"):
        model(torch.cat([rgb, rgb[:, :1]], 1), hm)  # four channels, right length and size
    with pytest.raises(ValueError, match=rf"^heatmap: expected \(B, 3, {t}, {k}, {k}\), got \(2, 3, {t}, {k}, 1\)$"):
        model(rgb, hm[..., :1])
    with pytest.raises(ValueError, match="^rgb and heatmap batch sizes differ: 2 vs 1$"):
        model(rgb, hm[:1])


# ----------------------------------------------------------------- fusion variants (paper Tables 5 / 3) and n
BASELINES = ("concat", "concat_channels", "sum")


def _geom(n: int) -> ClipGeometry:
    """n sub-clips of 2 frames at 40 / 14 px: the smallest clip the encoders take, n as given."""
    return ClipGeometry(n_subclips=n, subclip_len=2, rgb_size=40, heatmap_size=14)


class _FixedFeatures(nn.Module):
    """Stands in for an encoder: returns ``feats`` (rows packed clip-major, k*B + b) whatever the input."""

    def __init__(self, feats: torch.Tensor) -> None:
        super().__init__()
        self.feats = feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[0] == self.feats.shape[0]
        return self.feats


@pytest.mark.parametrize("n", [5, 9])
@pytest.mark.parametrize("fusion", ["cross", *BASELINES])
def test_qafe_net_fusion_shapes_at_any_n(fusion, n):
    """Every fusion at n = 5 (PFED5) and n = 9 (UNBC 144 = 9 x 16): scores (B,), the head's input
    tokens (2n for cross / concat, n for sum / concat_channels), decoder tensors sized by n (cross)
    or absent (baselines)."""
    torch.manual_seed(0)
    geom = _geom(n)
    model = QAFENetMethod({"fusion": fusion}, geometry=geom).build_model().eval()
    assert model.fusion == fusion
    seen = {}
    model.evaluator.register_forward_pre_hook(lambda m, a: seen.__setitem__("head_in", a[0]))
    rgb, hm = _inputs(geom, 2)
    with torch.no_grad():
        out = model(rgb, hm)
    assert out.shape == (2,) and torch.isfinite(out).all()
    tokens, dim = {"cross": (2 * n, 512), "concat": (2 * n, 512), "sum": (n, 512),
                   "concat_channels": (n, 1024)}[fusion]
    assert seen["head_in"].shape == (2, tokens, dim)
    assert model.evaluator.evaluator.layer1.in_features == dim
    decoder_keys = sorted(model.decoder.state_dict())
    if fusion == "cross":
        assert decoder_keys == sorted(_decoder_expected_keys(3))
        assert model.decoder.pos_embed.shape == (1, n, 512)
        assert model.decoder.conv.weight.shape == (2 * n, 2 * n, 1)
        assert all(block.n_tokens == n for block in model.decoder.model)
    else:
        assert decoder_keys == [] and _nparams(model.decoder) == 0
        assert not any(k.startswith("decoder.") for k in model.state_dict())


def test_qafe_net_baselines_drop_exactly_the_decoder():
    """concat / sum: the cross model's state dict minus every decoder.* key, nothing else (the
    encoder and evaluator keys and shapes stay the original's); concat_channels: the same keys,
    only the head's first layer is 1024 wide."""
    cross = QAFENet(TINY).state_dict()
    kept = {k: tuple(v.shape) for k, v in cross.items() if not k.startswith("decoder.")}
    assert len(kept) < len(cross)
    for fusion in ("concat", "sum"):
        assert {k: tuple(v.shape) for k, v in QAFENet(TINY, fusion=fusion).state_dict().items()} == kept
    wide = {k: tuple(v.shape) for k, v in QAFENet(TINY, fusion="concat_channels").state_dict().items()}
    assert wide == {**kept, "evaluator.evaluator.layer1.weight": (256, 1024)}
    n_cross = _nparams(QAFENet(TINY))
    n_dec = _nparams(QAFENet(TINY).decoder)
    assert _nparams(QAFENet(TINY, fusion="sum")) == n_cross - n_dec
    assert _nparams(QAFENet(TINY, fusion="concat_channels")) == n_cross - n_dec + 512 * 256


def _as_encoder(tokens: torch.Tensor) -> _FixedFeatures:
    """An encoder stand-in that yields ``tokens (B, n, 512)`` in the packed row order k*B + b."""
    return _FixedFeatures(tokens.transpose(0, 1).reshape(-1, tokens.shape[-1]))


@pytest.fixture(scope="module")
def qafe_stream_tokens():
    """Real encoder features of one 2-clip batch at n = 3 and of the same clips with the sub-clips
    reversed: ``{"h", "v", "h_rev", "v_rev"}`` each (2, 3, 512); computed once (the encoders
    dominate the run time on CPU)."""
    torch.manual_seed(2)
    geom = _geom(3)
    model = QAFENet(geom).eval()
    rgb, hm = _inputs(geom, 2)
    rev = lambda x: torch.cat(list(x.split(geom.subclip_len, dim=2))[::-1], dim=2)  # noqa: E731
    with torch.no_grad():
        h, v = model.stream_tokens(rgb, hm)
        h_rev, v_rev = model.stream_tokens(rev(rgb), rev(hm))
    return {"h": h, "v": v, "h_rev": h_rev, "v_rev": v_rev}


def _with_streams(model: QAFENet, h: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``model``'s forward (packing, fusion, head, mean) with its encoders replaced by ``h`` / ``v``."""
    model.heatmap_encoder, model.rgb_encoder = _as_encoder(h), _as_encoder(v)
    geom = model.geometry
    rgb, hm = _inputs(geom, h.shape[0])
    with torch.no_grad():
        return model(rgb, hm)


def test_qafe_net_fusions_differ_given_the_same_encoders(qafe_stream_tokens):
    """The same encoder features (and, where shapes allow, the same head weights): the scores of
    the four fusions all differ, so the option really changes the model."""
    h, v = qafe_stream_tokens["h"], qafe_stream_tokens["v"]
    torch.manual_seed(0)
    cross = QAFENet(_geom(3)).eval()
    scores = {}
    for fusion in ("cross", *BASELINES):
        model = cross if fusion == "cross" else QAFENet(_geom(3), fusion=fusion).eval()
        if fusion in ("concat", "sum"):
            model.evaluator.load_state_dict(cross.evaluator.state_dict())
        scores[fusion] = _with_streams(model, h, v)
        assert scores[fusion].shape == (2,)
    names = list(scores)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (scores[a] - scores[b]).abs().max() > 1e-4, (a, b)


def _hand_head(model: QAFENet) -> None:
    """Head = 2 * (relu(x0) + relu(-x1) [+ relu(x512) when 1024 wide]) + 0.5 on the token features x."""
    ev = model.evaluator.evaluator
    with torch.no_grad():
        for layer in (ev.layer1, ev.layer2, ev.layer3):
            layer.weight.zero_()
            layer.bias.zero_()
        ev.layer1.weight[0, 0] = 1.0
        ev.layer1.weight[1, 1] = -1.0
        ev.layer2.weight[0, :2] = 1.0
        if ev.layer1.in_features == 1024:
            ev.layer1.weight[2, 512] = 1.0
            ev.layer2.weight[0, 2] = 1.0
        ev.layer3.weight[0, 0] = 2.0
        ev.layer3.bias[0] = 0.5


@pytest.mark.parametrize("fusion, expected", [("sum", 5.5), ("concat", 4.75), ("concat_channels", 5.0)])
def test_qafe_net_fusion_hand_computed(fusion, expected):
    """n = 2, B = 1, encoders replaced by fixed features, hand-set head. Heatmap tokens h1 = (1, 2),
    h2 = (-3, -1), RGB tokens v1 = (2, -4), v2 = (0.5, 1) (first two features; the rest 0).
    sum: h + v = (3, -2), (-2.5, 0) -> 2*(3+2)+.5 = 10.5, 2*0+.5 = 0.5 -> mean 5.5.
    concat: h1 2.5, h2 2.5, v1 2*(2+4)+.5 = 12.5, v2 2*.5+.5 = 1.5 -> mean 4.75.
    concat_channels (the head also reads v's feature 0 at index 512): 2*(1+0+2)+.5 = 6.5,
    2*(0+1+.5)+.5 = 3.5 -> mean 5.0."""
    model = QAFENet(TINY, fusion=fusion).eval()
    h = torch.zeros(2, 512)
    v = torch.zeros(2, 512)
    h[:, :2] = torch.tensor([[1.0, 2.0], [-3.0, -1.0]])
    v[:, :2] = torch.tensor([[2.0, -4.0], [0.5, 1.0]])
    model.heatmap_encoder = _FixedFeatures(h)
    model.rgb_encoder = _FixedFeatures(v)
    _hand_head(model)
    rgb, hm = _inputs(TINY, 1)
    with torch.no_grad():
        assert model(rgb, hm).tolist() == [expected]


def test_qafe_net_sum_and_concat_properties(qafe_stream_tokens):
    """On real encoder features: sum with all-zero heatmap features == the head on the RGB tokens
    alone; concat == the mean of the two streams' separate head scores (score-level fusion);
    sum and concat are symmetric in the two streams, concat_channels is not."""
    h, v = qafe_stream_tokens["h"], qafe_stream_tokens["v"]
    torch.manual_seed(1)
    summ = QAFENet(_geom(3), fusion="sum").eval()
    concat = QAFENet(_geom(3), fusion="concat").eval()
    concat.evaluator.load_state_dict(summ.evaluator.state_dict())
    wide = QAFENet(_geom(3), fusion="concat_channels").eval()
    with torch.no_grad():
        head = lambda model, tokens: model.evaluator(tokens).squeeze(-1).mean(1)  # noqa: E731
        rgb_only = head(summ, v)
        torch.testing.assert_close(_with_streams(summ, torch.zeros_like(h), v), rgb_only)
        assert (_with_streams(summ, h, v) - rgb_only).abs().max() > 1e-4  # the heatmaps do count otherwise
        torch.testing.assert_close(_with_streams(concat, h, v), (head(concat, h) + head(concat, v)) / 2)
        for model in (summ, concat):
            torch.testing.assert_close(_with_streams(model, v, h), _with_streams(model, h, v))
        assert (_with_streams(wide, v, h) - _with_streams(wide, h, v)).abs().max() > 1e-4


def test_qafe_net_baselines_ignore_subclip_order_cross_does_not(qafe_stream_tokens):
    """Reversing the sub-clips of both input streams reverses the encoder tokens (each sub-clip is
    encoded on its own); the baselines, with no positional embedding or token mixing, then give
    the same scores; the cross decoder (pos_embed, Conv1d) sees the order."""
    t = qafe_stream_tokens
    torch.testing.assert_close(t["h_rev"], t["h"].flip(1))
    torch.testing.assert_close(t["v_rev"], t["v"].flip(1))
    for fusion in ("cross", *BASELINES):
        torch.manual_seed(3)
        model = QAFENet(_geom(3), fusion=fusion).eval()
        a = _with_streams(model, t["h"], t["v"])
        b = _with_streams(model, t["h_rev"], t["v_rev"])
        if fusion == "cross":
            assert (a - b).abs().max() > 1e-4
        else:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_qafe_net_cross_decoder_at_nine_subclips_splits_at_n():
    """n = 9: tokens [heatmap x 9, RGB x 9 + pos_embed (1, 9, 512)] into the blocks; a block with
    shared weights maps the half-swapped tokens to the half-swapped output only when it splits at 9."""
    torch.manual_seed(3)
    model = QAFENet(_geom(9)).eval()
    seen = {}
    model.decoder.model[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("tokens", a[0]))
    h, v = torch.randn(2, 9, 512), torch.randn(2, 9, 512)
    assert _with_streams(model, h, v).shape == (2,)
    torch.testing.assert_close(seen["tokens"], torch.cat([h, v + model.decoder.pos_embed], 1))
    block = model.decoder.model[0]
    x = torch.randn(2, 18, 512)
    with torch.no_grad():
        out = block(x)
        swapped = block(torch.cat([x[:, 9:], x[:, :9]], 1))
    torch.testing.assert_close(swapped, torch.cat([out[:, 9:], out[:, :9]], 1))


def _pretrained_files(folder, geom: ClipGeometry, seed: int = 4):
    """Original-layout FormerDFER-DFEWset1-model_best.pth and pose_only.pth for ``geom``'s encoders."""
    from test_checkpoints import former_dfer_original_state, write_pose_only_file

    torch.manual_seed(seed)
    rgb_enc = FormerDFEREncoder(geom.rgb_size, geom.subclip_len)
    hm_enc = SlowOnlyEncoder()
    rgb_path = folder / "FormerDFER-DFEWset1-model_best.pth"
    torch.save({"epoch": 37, "state_dict": former_dfer_original_state(rgb_enc)}, rgb_path)
    return {"rgb": rgb_path, "heatmap": write_pose_only_file(folder / "pose_only.pth", hm_enc)}, rgb_enc, hm_enc


@pytest.mark.parametrize("fusion", ["cross", "sum"])
def test_qafe_net_pretrained_encoders_load_at_any_n(tmp_path, fusion):
    """The same Former-DFER / pose_only files load into n = 5 and n = 9 models (nothing in them
    depends on n); the report names the fusion, and the baselines list no decoder as random init."""
    files, rgb_enc, hm_enc = _pretrained_files(tmp_path, _geom(5))
    for n in (5, 9):
        method = QAFENetMethod({"fusion": fusion}, geometry=_geom(n))
        model = method.build_model()
        info = method.load_pretrained(model, files)
        for k, t in rgb_enc.state_dict().items():
            assert torch.equal(model.rgb_encoder.state_dict()[k], t), k
        for k, t in hm_enc.state_dict().items():
            if k != "conv1.conv.weight":  # QAFE-Net's loader drops the 17-channel stem
                assert torch.equal(model.heatmap_encoder.state_dict()[k], t), k
        assert info["fusion"]["fusion"] == fusion and info["fusion"]["n_subclips"] == n
        if fusion == "cross":
            assert info["random_init"] == ["decoder", "evaluator", "heatmap_encoder.conv1.conv.weight"]
            assert f"(1, {n}, 512)" in info["fusion"]["decoder"]
        else:
            assert info["random_init"] == ["evaluator", "heatmap_encoder.conv1.conv.weight"]
            assert info["fusion"]["decoder"].startswith("none")


def _qafe_training_file(path, model: QAFENet):
    """main_PFED5.py save_checkpoint layout of ``model`` (which must have a cross decoder)."""
    torch.save({"epoch": 3, "model": model.rgb_encoder.state_dict(), "evaluator": model.evaluator.state_dict(),
                "SlowOnly": {"restnet3d." + k: v for k, v in model.heatmap_encoder.state_dict().items()},
                "decoder": model.decoder.state_dict()}, path)
    return path


def test_qafe_net_five_subclip_training_checkpoint_refused_at_nine_and_by_baselines(tmp_path):
    """A whole-model (5 sub-clip, cross) training checkpoint is loaded strictly: at n = 9 the
    CheckpointError names the n-sized decoder tensors; a baseline model refuses its decoder keys."""
    from benchmark.errors import CheckpointError
    from methods.checkpoints import load_qafe_training_checkpoint

    torch.manual_seed(5)
    path = _qafe_training_file(tmp_path / "class_0-model_best.pth", QAFENet(_geom(5)))
    load_qafe_training_checkpoint(QAFENet(_geom(5)), path)  # fits
    with pytest.raises(CheckpointError) as exc:
        load_qafe_training_checkpoint(QAFENet(_geom(9)), path)
    msg = str(exc.value)
    assert "pos_embed: file (1, 5, 512) vs model (1, 9, 512)" in msg
    assert "conv.weight: file (10, 10, 1) vs model (18, 18, 1)" in msg
    with pytest.raises(CheckpointError, match=r"decoder \('decoder' entry\): unexpected keys \(50\): conv.bias"):
        load_qafe_training_checkpoint(QAFENet(_geom(5), fusion="sum"), path)


def test_qafe_net_fusion_option_and_errors():
    spec = QAFENetMethod.options_spec["fusion"]
    assert spec.default == "cross" and spec.choices == ("cross", "concat", "concat_channels", "sum")
    assert spec.code_value is None  # the released code has cross fusion only: no deviation to record
    assert QAFENetMethod().options["fusion"] == "cross"
    assert isinstance(QAFENetMethod(geometry=TINY).build_model().decoder, CrossFusionDecoder)
    assert QAFENetMethod({"fusion": "sum"}).deviations_from_paper() == {}
    with pytest.raises(ConfigError, match="^option fusion='attention' of method 'qafe_net' must be one of "
                                          "cross, concat, concat_channels, sum$"):
        QAFENetMethod({"fusion": "attention"})
    with pytest.raises(ConfigError, match="did you mean 'fusion'"):
        QAFENetMethod({"fusoin": "sum"})
    with pytest.raises(ValueError, match="^fusion must be one of cross, concat, concat_channels, sum, got 'max'$"):
        QAFENet(TINY, fusion="max")
    from methods.qafe_net import StreamFusion

    with pytest.raises(ValueError, match="got 'cross'"):
        StreamFusion("cross")
    with pytest.raises(ValueError, match=r"^stream tokens differ in shape: \(1, 2, 512\) vs \(1, 3, 512\)$"):
        StreamFusion("sum")(torch.zeros(1, 2, 512), torch.zeros(1, 3, 512))


# ------------------------------------------------ Table 8: decoder output; Table 9: classification
def test_decoder_output_selects_the_blocks_output_tokens():
    """Table 8's rows from one set of decoder weights: 'concat' is the blocks' 2n output tokens
    before the Conv1d, 'heatmap' the first n of them, 'rgb' the last n; 'concat_conv1d' (the
    paper's model) applies the Conv1d, which only it owns."""
    n = 3
    torch.manual_seed(0)
    ref = CrossFusionDecoder(n, 2, pos_on="second").eval()
    h, v = torch.randn(2, n, 512), torch.randn(2, n, 512)
    with torch.no_grad():
        x = torch.cat([h, v + ref.pos_embed], dim=1)
        for block in ref.model:
            x = block(x)
        expected = {"concat": x, "first": x[:, :n], "second": x[:, n:], "concat_conv1d": ref.conv(x)}
    for output, want in expected.items():
        dec = CrossFusionDecoder(n, 2, pos_on="second", output=output).eval()
        dec.load_state_dict({k: t for k, t in ref.state_dict().items() if output == "concat_conv1d"
                             or not k.startswith("conv.")})
        with torch.no_grad():
            assert torch.equal(dec(h, v), want), output
        assert (dec.conv is not None) == (output == "concat_conv1d")
    with pytest.raises(ValueError, match="output must be one of concat_conv1d, concat, first, second"):
        CrossFusionDecoder(n, 2, output="both")


def test_decoder_output_option_maps_rgb_and_heatmap_to_their_tokens():
    """QAFE-Net passes heatmap tokens first and RGB second: decoder_output='rgb' scores the RGB
    half; the models differ from the paper's by exactly the Conv1d's (2n)^2 + 2n parameters."""
    full = QAFENetMethod({}, TINY).build_model()
    for name, internal in (("rgb", "second"), ("heatmap", "first"), ("concat", "concat")):
        m = QAFENetMethod({"decoder_output": name}, TINY).build_model()
        assert m.decoder.output == internal
        assert _nparams(full) - _nparams(m) == (2 * TINY.n_subclips) ** 2 + 2 * TINY.n_subclips
        rgb, hm = _inputs(TINY, 2)
        assert m(rgb, hm).shape == (2,)
    with pytest.raises(ConfigError, match="decoder_output='both'"):
        QAFENetMethod({"decoder_output": "both"}, TINY)


def test_classification_head_logits_loss_and_decoding():
    """Table 9: 'ce' / 'focal' give the head one logit per severity class (5 for PFED5's 0-4, 11
    for VAS 0-10); the score is the argmax class (or the expected class) plus the range's low end."""
    m = QAFENetMethod({"loss": "ce"}, TINY)
    model = m.build_model()
    assert m.classification and m.n_classes == 5 and model.evaluator.evaluator.layer3.out_features == 5
    rgb, hm = _inputs(TINY, 2)
    assert model(rgb, hm).shape == (2, 5)
    assert type(m.build_loss()).__name__ == "ClassificationLoss"
    assert QAFENetMethod({"loss": "focal"}, TINY, label_range=(0, 10)).n_classes == 11
    logits = torch.tensor([[0.0, 3.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 2.0]])
    assert m.decode(logits, {}).tolist() == [1.0, 4.0]
    shifted = QAFENetMethod({"loss": "ce"}, TINY, label_range=(1, 5))
    assert shifted.decode(logits, {}).tolist() == [2.0, 5.0]
    # expectation: sum_c softmax_c * c; row (0, 0, 0, 0, 0) -> 2.0 exactly; row (ln 3, 0, ...) -> (0*3 + 1+2+3+4) / 7
    expect = QAFENetMethod({"loss": "ce", "class_decode": "expectation"}, TINY)
    out = expect.decode(torch.tensor([[0.0] * 5, [math.log(3), 0, 0, 0, 0]]), {})
    assert out.tolist() == pytest.approx([2.0, 10 / 7], abs=1e-6)
    batch = {"label": torch.tensor([1.0, 4.0])}
    loss = m.loss(m.build_loss(), logits, batch)
    assert loss.item() == pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.tensor([1, 4])).item()))
    # regression ignores class_decode; a range without whole classes is refused
    assert QAFENetMethod({"class_decode": "expectation"}, TINY).decode(torch.tensor([1.5]), {}).tolist() == [1.5]
    with pytest.raises(ConfigError, match="no whole number of classes"):
        QAFENetMethod({"loss": "ce"}, TINY, label_range=(0, 2.5))


@pytest.mark.parametrize("loss, cls", [("bmc", "BMCLoss"), ("mse", "MSELoss"), ("focal_l1", "FocalRLoss"),
                                       ("focal_mse", "FocalRLoss"), ("gai", "GAILoss"), ("ce", "ClassificationLoss"),
                                       ("focal", "ClassificationLoss")])
def test_every_table6_and_table9_loss_builds_its_module(loss, cls):
    m = QAFENetMethod({"loss": loss, "bmc_sigma": "fixed"}, TINY)
    f = m.build_loss()
    assert type(f).__name__ == cls
    if loss in ("focal_l1", "focal_mse"):
        assert f.kind == loss[len("focal_"):] and (f.beta, f.gamma, f.activate) == (0.2, 1.0, "sigmoid")
    if loss == "focal":
        assert f.kind == "focal" and f.gamma == 2.0
    if loss in ("bmc", "gai"):
        assert f.noise_sigma.requires_grad is False  # bmc_sigma applies to both Balanced MSE losses
    if loss == "gai":
        assert f.components == 2
        assert QAFENetMethod({"loss": "gai", "gai_components": 3}, TINY).build_loss().components == 3
