"""Behaviour checks of the two QAFE-Net backbones found by mutation testing.

``methods/backbones/slowonly.py`` (SlowOnly-R50 heatmap encoder, PYSKL ``pose_only.pth``
loading) and ``methods/backbones/former_dfer.py`` (S-Former / T-Former RGB encoder,
Former-DFER checkpoint remapping): the details the broader tests in
``test_models.py`` / ``test_checkpoints.py`` leave open -- exact error and info texts,
constructor arguments other than QAFE-Net's, dtype and shape contracts of the public
pieces. Every model here is tiny (SlowOnly with 4 base channels and one block per
stage; Former-DFER at 40 px) and every expectation is worked out by hand or by an
independent computation.
"""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from benchmark.errors import CheckpointError
from methods.backbones.former_dfer import (
    BasicBlock,
    FeedForward,
    FormerDFEREncoder,
    SelfAttention,
    SFormer,
    TFormer,
    Transformer,
    checkpoint_filter_fn,
    load_former_dfer_checkpoint,
)
from methods.backbones.slowonly import Bottleneck3d, ConvBNReLU3d, SlowOnlyEncoder, load_pose_only_checkpoint


# ======================================================================== SlowOnly
def _small_slowonly(**kw) -> SlowOnlyEncoder:
    """4 base channels, one block per stage: 78 state-dict entries, widths 16 / 32 / 64."""
    return SlowOnlyEncoder(base_channels=4, stage_blocks=(1, 1, 1), **kw)


def _pose_only_file(path, encoder: SlowOnlyEncoder, *, stem: bool = True, head: bool = True,
                    drop: tuple = (), extra: dict | None = None):
    """PYSKL / mmcv layout: ``{'meta', 'state_dict'}`` with ``backbone.*`` keys, a 17-channel stem
    conv and the 60-class ``cls_head.fc_cls``; ``stem`` / ``head`` False leave those out."""
    sd = {"backbone." + k: v.clone() for k, v in encoder.state_dict().items() if k not in drop}
    del sd["backbone.conv1.conv.weight"]
    if stem:
        sd["backbone.conv1.conv.weight"] = torch.randn(4, 17, 1, 7, 7)
    if head:
        sd["cls_head.fc_cls.weight"] = torch.randn(60, 64)
        sd["cls_head.fc_cls.bias"] = torch.randn(60)
    sd.update(extra or {})
    torch.save({"meta": {"mmcv_version": "1.5.0", "epoch": 18}, "state_dict": sd}, path)
    return path


def test_small_slowonly_state_dict_size():
    # stem: conv + BN (weight, bias, running_mean, running_var, num_batches_tracked) = 6;
    # per stage: conv1, conv2, conv3, downsample, each conv + BN = 4 * 6 = 24; 3 stages -> 6 + 72
    assert len(_small_slowonly().state_dict()) == 78


def test_slowonly_forward_rejects_non_5d_input_naming_its_shape():
    enc = _small_slowonly()
    with pytest.raises(ValueError, match=re.escape("expected (B', C, T, h, w) heatmap sub-clips, got (2, 3, 8, 8)")):
        enc(torch.zeros(2, 3, 8, 8))


def test_slowonly_feat_dim_is_the_last_stage_width():
    assert SlowOnlyEncoder().feat_dim == 512  # 32 * 2**2 * 4
    enc = _small_slowonly().eval()
    assert enc.feat_dim == 64  # 4 * 2**2 * 4
    with torch.no_grad():
        assert enc.features(torch.rand(1, 3, 2, 8, 8)).shape[1] == enc.feat_dim
        assert enc(torch.rand(1, 3, 2, 8, 8)).shape == (1, 64)


def test_slowonly_stage_with_spatial_stride_one_still_gets_a_projection_shortcut():
    """mmaction builds the downsample when the stride is not 1 OR the width changes: a stage
    with spatial stride 1 (a user argument; QAFE-Net uses 2, 2, 2) still widens 4 -> 16
    channels, so its first block needs the 1x1x1 projection, with stride 1."""
    enc = _small_slowonly(spatial_strides=(1, 2, 2)).eval()
    ds = enc.layer1[0].downsample
    assert isinstance(ds, ConvBNReLU3d) and ds.activate is None
    assert ds.conv.weight.shape == (16, 4, 1, 1, 1) and ds.conv.stride == (1, 1, 1)
    assert enc.layer2[0].downsample.conv.stride == (1, 2, 2)
    with torch.no_grad():
        # 12 px: stem and max-pool keep 12, layer1 stride 1 -> 12, layer2 -> 6, layer3 -> 3
        assert enc.features(torch.rand(1, 3, 2, 12, 12)).shape == (1, 64, 2, 3, 3)


def test_bottleneck3d_is_inflated_by_default():
    block = Bottleneck3d(8, 2)
    assert block.conv1.conv.kernel_size == (3, 1, 1) and block.conv1.conv.padding == (1, 0, 0)
    assert block.downsample is None
    flat = Bottleneck3d(8, 2, inflate=False)
    assert flat.conv1.conv.kernel_size == (1, 1, 1) and flat.conv1.conv.padding == (0, 0, 0)


def test_pose_only_load_info_exact(tmp_path):
    torch.manual_seed(0)
    source = _small_slowonly()
    path = _pose_only_file(tmp_path / "pose_only.pth", source)
    target = _small_slowonly()
    info = load_pose_only_checkpoint(target, path)
    assert info == {
        "file": str(path),
        "original_name": "pose_only.pth",
        "loaded_tensors": 77,  # 78 entries of the model less the dropped 17-channel stem conv
        "strict": False,
        "dropped": {"conv1.conv.weight": [4, 17, 1, 7, 7], "fc_cls.weight": [60, 64], "fc_cls.bias": [60]},
        "random_init": ["conv1.conv.weight"],
        "note": "stem conv conv1.conv.weight stays randomly initialised (the pretrained stem has 17 keypoint "
                "channels, the model 3); stem BN and all stages are loaded",
    }
    torch.testing.assert_close(target.layer3[0].conv3.conv.weight, source.layer3[0].conv3.conv.weight)


def test_pose_only_file_without_stem_or_head_loads_and_says_so(tmp_path):
    path = _pose_only_file(tmp_path / "pose_only.pth", _small_slowonly(), stem=False, head=False)
    info = load_pose_only_checkpoint(_small_slowonly(), path)
    assert info["dropped"] == {} and info["loaded_tensors"] == 77
    assert info["note"] == ("stem conv conv1.conv.weight stays randomly initialised (the pretrained stem has ? "
                            "keypoint channels, the model 3); stem BN and all stages are loaded")


def test_pose_only_misfit_message_exact(tmp_path):
    """13 missing keys, 14 unexpected ones and 13 shape mismatches: each list is cut at 12,
    the stem conv (dropped on purpose) is not reported missing, parts are joined by ' | '."""
    enc = _small_slowonly()
    own = enc.state_dict()
    missing = sorted(k for k in own if k.startswith("layer1.") and not k.endswith("num_batches_tracked"))[:13]
    mismatched = sorted(k for k in own if k.startswith("layer3.") and not k.endswith("num_batches_tracked"))[:13]
    extra = {"data_preprocessor.mean": torch.zeros(3)}  # no backbone./cls_head. prefix: listed first
    extra.update({f"backbone.extra.{i:02d}": torch.zeros(1) for i in range(13)})
    extra.update({"backbone." + k: torch.zeros(1) for k in mismatched})
    path = _pose_only_file(tmp_path / "pose_only.pth", enc, drop=tuple(missing), extra=extra)
    with pytest.raises(CheckpointError) as exc:
        load_pose_only_checkpoint(enc, path)
    unexpected = ["data_preprocessor.mean"] + [f"extra.{i:02d}" for i in range(11)]
    shapes = [f"{k}: file (1,) vs model {tuple(own[k].shape)}" for k in mismatched[:12]]
    assert str(exc.value) == (
        f"{str(path)!r} does not fit the SlowOnly heatmap encoder: "
        f"missing keys (13): {', '.join(missing[:12])} | "
        f"unexpected keys (14): {', '.join(unexpected)} | "
        f"shape mismatches: {'; '.join(shapes)}"
    )


def test_pose_only_single_problem_message_has_no_stem_remark(tmp_path):
    enc = _small_slowonly()
    path = _pose_only_file(tmp_path / "pose_only.pth", enc, drop=("layer2.0.conv2.bn.bias",))
    with pytest.raises(CheckpointError) as exc:
        load_pose_only_checkpoint(enc, path)
    assert str(exc.value) == (f"{str(path)!r} does not fit the SlowOnly heatmap encoder: "
                              "missing keys (1): layer2.0.conv2.bn.bias")


def test_pose_only_without_state_dict_names_the_file(tmp_path):
    path = tmp_path / "pose_only.pth"
    torch.save({"meta": {"epoch": 1}}, path)
    with pytest.raises(CheckpointError) as exc:
        load_pose_only_checkpoint(_small_slowonly(), path)
    assert str(exc.value).startswith(f"{str(path)!r}: no 'state_dict' entry")


# ======================================================================== Former-DFER
@pytest.fixture(scope="module")
def enc8() -> FormerDFEREncoder:
    """40 px (3x3 token grid: s_former.pos_embedding (1, 9, 256)), 8 frames (t_former (1, 9, 512))."""
    torch.manual_seed(0)
    return FormerDFEREncoder(40, 8).eval()


def test_sformer_defaults_are_qafe_nets_224_px():
    s = SFormer()
    assert s.image_size == 224 and s.grid == 14 and s.pos_embedding.shape == (1, 196, 256)


def test_tformer_and_encoder_defaults_are_the_paper_scale():
    t = TFormer()
    assert t.frames == 16 and t.pos_embedding.shape == (1, 17, 512) and t.cls_token.shape == (1, 1, 512)
    enc = FormerDFEREncoder()
    assert (enc.image_size, enc.frames, enc.layout) == (224, 16, "frames")
    assert enc.s_former.pos_embedding.shape == (1, 196, 256) and enc.t_former.pos_embedding.shape == (1, 17, 512)


def test_encoder_rejects_an_unknown_layout():
    with pytest.raises(ValueError, match=re.escape("layout must be one of ('frames', 'channel_major'), got 'cm'")):
        FormerDFEREncoder(40, 8, layout="cm")


def test_sformer_convolutions_are_kaiming_normal_fan_out():
    """As the original ResNet init: N(0, 2 / fan_out), fan_out = out_channels * k * k (fan_in
    would give 0.117 for the stem, PyTorch's default init 0.048)."""
    torch.manual_seed(0)
    s = SFormer(40)
    for conv in (s.conv1, s.layer2[0].conv1, s.layer4[0].downsample[0]):
        out_ch, _, kh, kw = conv.weight.shape
        expected = (2.0 / (out_ch * kh * kw)) ** 0.5
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.1 * expected
    assert s.conv1.weight.std().item() == pytest.approx(0.02525, rel=0.05)  # sqrt(2 / (64 * 7 * 7))


@pytest.mark.parametrize("inplanes, planes, stride", [(4, 8, 1), (4, 4, 2), (4, 8, 2)])
def test_basic_block_projects_the_shortcut_when_width_or_stride_changes(inplanes, planes, stride):
    """torchvision's rule: a 1x1 conv + BN shortcut when the stride is not 1 OR the width changes."""
    block = BasicBlock(inplanes, planes, stride).eval()
    conv, bn = block.downsample
    assert conv.weight.shape == (planes, inplanes, 1, 1) and conv.stride == (stride, stride) and conv.bias is None
    assert isinstance(bn, torch.nn.BatchNorm2d) and bn.num_features == planes
    with torch.no_grad():
        assert block(torch.randn(1, inplanes, 6, 6)).shape == (1, planes, 6 // stride, 6 // stride)
    assert BasicBlock(4, 4).downsample is None


def test_former_dfer_has_no_dropout_by_default():
    """Every dropout defaults to p = 0 (the SFormer / TFormer docstrings' configuration): in
    training mode each transformer piece is deterministic and gives its eval-mode output."""
    torch.manual_seed(0)
    x8 = torch.randn(2, 3, 8)
    pieces = [
        (SelfAttention(8, 2, 4), x8),
        (FeedForward(8, 16), x8),
        (Transformer(8, 1, 2, 4, 16), x8),
        (SFormer(40).spatial_transformer, torch.randn(2, 9, 256)),
        (TFormer(frames=4), torch.randn(2, 4, 512)),
    ]
    with torch.no_grad():
        for module, x in pieces:
            assert torch.equal(module.train()(x), module.eval()(x)), type(module).__name__


def test_dropout_argument_reaches_every_residual_branch():
    """dropout=1.0 in training mode zeroes the attention and feed-forward outputs (their last
    Dropout), so a Transformer reduces to its residual path; eval mode does not."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        assert torch.equal(SelfAttention(8, 2, 4, dropout=1.0).train()(x), torch.zeros(2, 3, 8))
        assert torch.equal(FeedForward(8, 16, dropout=1.0).train()(x), torch.zeros(2, 3, 8))
        tr = Transformer(8, 2, 2, 4, 16, dropout=1.0)
        assert torch.equal(tr.train()(x), x) and not torch.allclose(tr.eval()(x), x)
        tokens = torch.randn(2, 9, 256)
        assert torch.equal(SFormer(40, dropout=1.0).spatial_transformer.train()(tokens), tokens)
        frames = torch.randn(2, 5, 512)
        assert torch.equal(TFormer(frames=4, dropout=1.0).temporal_transformer.train()(frames), frames)


def test_sformer_output_is_one_row_per_frame():
    torch.manual_seed(0)
    s = SFormer(image_size=40).eval()
    with torch.no_grad():
        assert s(torch.randn(2, 3, 40, 40)).shape == (2, 512)


def test_sformer_rejects_other_frame_sizes_naming_both():
    s = SFormer(image_size=40)
    with pytest.raises(ValueError, match=re.escape("S-Former built for (3, 40, 40) frames, got (3, 32, 32)")):
        s(torch.zeros(2, 3, 32, 32))


def test_tformer_rejects_other_lengths_naming_both():
    t = TFormer(frames=4)
    with pytest.raises(ValueError, match=re.escape("T-Former built for 4 frames, got 5") + "$"):
        t(torch.zeros(2, 5, 512))


def test_to_frames_channel_major_by_hand_on_non_square_frames(enc8):
    """Pseudo-frame g of sub-clip b is planes 3g, 3g+1, 3g+2 of the channel-major stack
    (plane p = c * L + t), for any frame size; checked element by element."""
    x = torch.arange(2 * 3 * 8 * 2 * 3, dtype=torch.float32).reshape(2, 3, 8, 2, 3)
    out = FormerDFEREncoder(40, 8, layout="channel_major").to_frames(x)
    assert out.shape == (16, 3, 2, 3)
    for b in range(2):
        for g in range(8):
            for j in range(3):
                p = 3 * g + j
                assert torch.equal(out[b * 8 + g, j], x[b, p // 8, p % 8]), (b, g, j)
    # "frames": frame t of sub-clip b is x[b, :, t]
    out = enc8.to_frames(x)
    assert all(torch.equal(out[b * 8 + t], x[b, :, t]) for b in range(2) for t in range(8))


@pytest.mark.parametrize("shape", [(1, 3, 5, 4, 4), (1, 4, 8, 4, 4), (3, 8, 4, 4)])
def test_to_frames_rejects_wrong_sub_clips(enc8, shape):
    with pytest.raises(ValueError, match=re.escape(f"expected (B', 3, 8, H, W) sub-clips, got {shape}")):
        enc8.to_frames(torch.zeros(shape))


@pytest.mark.parametrize("shape", [(1, 3, 12, 8, 8), (3, 16, 8, 8)])
def test_encode_clip_rejects_lengths_not_a_multiple_of_the_sub_clip(enc8, shape):
    with pytest.raises(ValueError, match=re.escape(f"expected (B, 3, n*8, H, W), got {shape}")):
        enc8.encode_clip(torch.zeros(shape))


# ----------------------------------------------------------------- checkpoint_filter_fn
def _bicubic_by_hand(pos: torch.Tensor, g0: int, grid: int) -> torch.Tensor:
    """(1, g0*g0, C) row-major token grid -> (1, grid*grid, C), bicubic, align_corners False."""
    c = pos.shape[-1]
    img = pos.reshape(1, g0, g0, c).permute(0, 3, 1, 2).float()
    up = F.interpolate(img, size=(grid, grid), mode="bicubic", align_corners=False)
    return up.permute(0, 2, 3, 1).reshape(1, grid * grid, c)


def test_filter_default_interpolates_spatial_pos_and_reports_it(enc8):
    pos49 = torch.randn(1, 49, 256, generator=torch.Generator().manual_seed(1))
    out, info = checkpoint_filter_fn({"s_former.pos_embedding": pos49}, enc8)  # default: 'interpolate'
    assert info == {
        "stripped_module_prefix": False, "renamed": 0, "dropped": [],
        "adapted": {"s_former.pos_embedding": {
            "from": [1, 49, 256], "to": [1, 9, 256],
            "method": "bicubic interpolation of the 7x7 token grid to 3x3"}},
    }
    assert out["s_former.pos_embedding"].dtype == torch.float32
    torch.testing.assert_close(out["s_former.pos_embedding"], _bicubic_by_hand(pos49, 7, 3))


def test_filter_keeps_the_checkpoint_dtype_of_the_spatial_pos(enc8):
    """A float64 (or half) checkpoint: resized in float32, returned in the file's dtype."""
    pos = torch.randn(1, 16, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out, _ = checkpoint_filter_fn({"s_former.pos_embedding": pos}, enc8)
    assert out["s_former.pos_embedding"].dtype == torch.float64
    assert torch.equal(out["s_former.pos_embedding"], _bicubic_by_hand(pos, 4, 3).double())


def test_filter_rejects_an_unknown_resize_mode(enc8):
    with pytest.raises(ValueError, match=re.escape(
            "pos_embed_resize must be one of ('interpolate', 'strict'), got 'bicubic'")):
        checkpoint_filter_fn({}, enc8, pos_embed_resize="bicubic")


def test_filter_strict_spatial_message_exact(enc8):
    with pytest.raises(CheckpointError) as exc:
        checkpoint_filter_fn({"s_former.pos_embedding": torch.zeros(1, 49, 256)}, enc8,
                             pos_embed_resize="strict", file="f.pth")
    assert str(exc.value) == (
        "'f.pth': s_former.pos_embedding has shape (1, 49, 256) (7x7 tokens, as a 112-px Former-DFER model) "
        "but this model needs (1, 9, 256) (3x3 tokens at 40 px). Fix: set pos_embed_resize='interpolate' "
        "(bicubic resize of the token grid, recorded), or use a checkpoint trained at 40 px."
    )


@pytest.mark.parametrize("shape", [(1, 50, 256), (1, 49, 128), (2, 49, 256)])
def test_filter_rejects_spatial_pos_that_is_not_a_square_grid_of_the_width(enc8, shape):
    with pytest.raises(CheckpointError) as exc:
        checkpoint_filter_fn({"s_former.pos_embedding": torch.zeros(shape)}, enc8, file="f.pth")
    assert str(exc.value) == f"'f.pth': s_former.pos_embedding shape {shape} is not a square token grid of width 256"


def _t_msg(have, have_frames, tail):
    return (f"'f.pth': t_former.pos_embedding has shape {have} ({have_frames} frames) but this model needs "
            f"(1, 9, 512) (8 frames per sub-clip). Fix: build the model with {have_frames}-frame sub-clips{tail}")


HINT = ", or set pos_embed_resize='interpolate' (keeps the class row and the first frame rows)."


@pytest.mark.parametrize("have, mode, tail", [
    ((1, 17, 512), "strict", HINT),      # more frames: the slice would do, strict forbids it
    ((1, 5, 512), "strict", "."),        # fewer frames: nothing to slice, no hint
    ((1, 5, 512), "interpolate", "."),
])
def test_filter_temporal_pos_frame_count_message_exact(enc8, have, mode, tail):
    with pytest.raises(CheckpointError) as exc:
        checkpoint_filter_fn({"t_former.pos_embedding": torch.zeros(have)}, enc8, pos_embed_resize=mode,
                             file="f.pth")
    assert str(exc.value) == _t_msg(have, have[1] - 1, tail)


@pytest.mark.parametrize("have, mode", [((1, 9, 256), "strict"), ((1, 17, 256), "interpolate"),
                                        ((2, 17, 512), "interpolate"), ((17, 512), "interpolate")])
def test_filter_temporal_pos_of_another_layout_is_refused_as_such(enc8, have, mode):
    """Another width, a batch dimension other than 1 or a 2-D table is not a frame-count question:
    refused in both modes, naming both shapes, and neither other sub-clips nor
    pos_embed_resize='interpolate' is offered as the fix (found by mutation testing: the width case
    used to advise 8-frame sub-clips, a (2, 17, 512) table was sliced and recorded as adapted)."""
    with pytest.raises(CheckpointError) as exc:
        checkpoint_filter_fn({"t_former.pos_embedding": torch.zeros(have)}, enc8, pos_embed_resize=mode,
                             file="f.pth")
    assert str(exc.value) == (
        f"'f.pth': t_former.pos_embedding has shape {have}, not a (1, frames + 1, 512) temporal table as this "
        "model's (1, 9, 512); the file is not a Former-DFER checkpoint of this width (its T-Former dim differs)")


def test_filter_temporal_pos_keeps_class_row_and_first_frames(enc8):
    pos = torch.randn(1, 17, 512, generator=torch.Generator().manual_seed(3))
    out, info = checkpoint_filter_fn({"module.t_former.pos_embedding": pos}, enc8)
    assert torch.equal(out["t_former.pos_embedding"], pos[:, :9])
    assert info["stripped_module_prefix"] is True
    assert info["adapted"] == {"t_former.pos_embedding": {
        "from": [1, 17, 512], "to": [1, 9, 512], "method": "kept the class row and the first 8 frame rows"}}


# ----------------------------------------------------------------- load_former_dfer_checkpoint
def test_former_dfer_load_info_exact(tmp_path, enc8):
    state = {"module." + k.replace("t_former.temporal_transformer", "t_former.spatial_transformer"): v.clone()
             for k, v in enc8.state_dict().items()}
    renamed = sum(k.startswith("module.t_former.spatial_transformer") for k in state)
    assert renamed == 3 * 11  # 3 layers x (norm w/b, to_qkv, to_out.0 w/b; norm w/b, net.0 w/b, net.3 w/b)
    state["module.fc.weight"], state["module.fc.bias"] = torch.zeros(7, 512), torch.zeros(7)
    path = tmp_path / "FormerDFER-DFEWset1-model_best.pth"
    torch.save({"epoch": 37, "state_dict": state, "best_acc": torch.tensor(55.25)}, path)
    info = load_former_dfer_checkpoint(enc8, path)
    assert info == {
        "file": str(path), "original_name": "FormerDFER-DFEWset1-model_best.pth",
        "loaded_tensors": len(enc8.state_dict()), "strict": True, "epoch": 37, "best_acc": 55.25,
        "stripped_module_prefix": True, "renamed": renamed, "dropped": ["fc.weight [7, 512]", "fc.bias [7]"],
        "adapted": {},
    }


def test_former_dfer_misfit_message_names_file_and_part(tmp_path, enc8):
    path = tmp_path / "f.pth"
    torch.save({"state_dict": {"t_former.cls_token": torch.zeros(1, 1, 512)}}, path)
    with pytest.raises(CheckpointError) as exc:
        load_former_dfer_checkpoint(enc8, path)
    assert str(exc.value).startswith(f"{str(path)!r} does not fit the Former-DFER encoder (s_former / t_former): "
                                     "missing keys (")


def test_former_dfer_batched_temporal_pos_is_a_shape_mismatch(tmp_path, enc8):
    """A (2, 9, 512) temporal table has the right length: not a frame-count problem but a table of
    another layout, refused with the file's own shape before any slicing."""
    path = tmp_path / "f.pth"
    torch.save({"state_dict": {"t_former.pos_embedding": torch.zeros(2, 9, 512)}}, path)
    with pytest.raises(CheckpointError, match=re.escape(
            "t_former.pos_embedding has shape (2, 9, 512), not a (1, frames + 1, 512) temporal table")):
        load_former_dfer_checkpoint(enc8, path)


def test_former_dfer_without_state_dict_names_the_file(tmp_path, enc8):
    path = tmp_path / "FormerDFER-DFEWset1-model_best.pth"
    torch.save({"epoch": 1}, path)
    with pytest.raises(CheckpointError) as exc:
        load_former_dfer_checkpoint(enc8, path)
    assert str(exc.value).startswith(f"{str(path)!r}: no 'state_dict' entry")
