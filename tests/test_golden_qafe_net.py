"""QAFE-Net against golden outputs of the ORIGINAL code (tests/golden/qafe_net.md).

Each test rebuilds the fixture's seeded weights (:func:`_golden.seeded_state_dict`,
keyed on the original modules' own state-dict names, which the project modules
share), writes them to ``tmp_path`` in the ORIGINAL file layout (Former-DFER
``FormerDFER-DFEWset1-model_best.pth``, PYSKL ``pose_only.pth``, QAFE-Net's
training checkpoint), loads them through the project loaders and compares the
project's outputs with the numbers the original modules produced
(shuchaoduan/QAFE-Net, commit in ``tests/golden/qafe_net.json``).
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict
from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError
from methods.backbones.former_dfer import FormerDFEREncoder, load_former_dfer_checkpoint
from methods.backbones.slowonly import SlowOnlyEncoder, load_pose_only_checkpoint
from methods.checkpoints import load_qafe_training_checkpoint, load_strict, read_checkpoint, state_dict_of
from methods.qafe_net import CrossFusionDecoder, Evaluator, QAFENet

META, GOLDEN = load_golden("qafe_net")
CASES = META["cases"]
ORIGINAL = META["produced_by"]["original_modules"]


@pytest.fixture(autouse=True)
def _one_thread():
    """The fixture was produced on one thread; keep the reduction order comparable and the CPU shared."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


# ----------------------------------------------------------------- original-layout writers
def _seeded(template: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    return seeded_state_dict(template, seed)


def _former_dfer_file(path, encoder: FormerDFEREncoder, seed: int):
    """Seeded GenerateModel weights in the Former-DFER file layout ('module.', 'spatial_transformer', 7-class fc)."""
    sd = _seeded(encoder.state_dict(), seed)
    state = {"module." + k.replace("t_former.temporal_transformer", "t_former.spatial_transformer"): v
             for k, v in sd.items()}
    state.update(_seeded({"module.fc.weight": torch.zeros(7, 512), "module.fc.bias": torch.zeros(7)}, seed))
    torch.save({"epoch": 37, "state_dict": state, "best_acc": torch.tensor(55.25),
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": []}]}}, path)
    return sd


def _pose_only_file(path, encoder: SlowOnlyEncoder, seed: int):
    """Seeded ResNet3d weights in PYSKL's layout: 'backbone.*' with a 17-channel stem, 'cls_head.fc_cls.*'."""
    sd = _seeded(encoder.state_dict(), seed)
    state = {"backbone." + k: v for k, v in sd.items()}
    state.update(_seeded({"backbone.conv1.conv.weight": torch.zeros(32, 17, 1, 7, 7),
                          "cls_head.fc_cls.weight": torch.zeros(60, 512), "cls_head.fc_cls.bias": torch.zeros(60)},
                         seed))
    torch.save({"meta": {"epoch": 18}, "state_dict": state}, path)
    return sd


def _training_checkpoint(path, net: QAFENet, seeds: dict[str, int], prefix: str = "") -> None:
    """main_PFED5.py save_checkpoint layout; each entry seeded on the original module's own keys."""
    parts = {"model": net.rgb_encoder.state_dict(),
             "SlowOnly": {"restnet3d." + k: v for k, v in net.heatmap_encoder.state_dict().items()},
             "decoder": net.decoder.state_dict(), "evaluator": net.evaluator.state_dict()}
    ckpt = {name: {prefix + k: v for k, v in _seeded(sd, seeds[name]).items()} for name, sd in parts.items()}
    ckpt.update({"epoch": 3, "best_acc": np.float64(0.5),
                 "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": []}]}})
    torch.save(ckpt, path)


def _keys_crc(keys) -> int:
    return zlib.crc32("\n".join(sorted(keys)).encode())


# ----------------------------------------------------------------- structure
def test_parameter_counts_and_keys_equal_the_original():
    """Counted on the original modules built from shuchaoduan/QAFE-Net (commit in the fixture JSON)."""
    net = QAFENet(ClipGeometry(), rgb_layout="channel_major", pos_embed_stream="heatmap")
    ours = {"model": net.rgb_encoder, "SlowOnly": net.heatmap_encoder, "decoder": net.decoder,
            "evaluator": net.evaluator}
    for name, module in ours.items():
        keys = list(module.state_dict())
        if name == "SlowOnly":
            keys = ["restnet3d." + k for k in keys]
        assert sum(p.numel() for p in module.parameters()) == ORIGINAL[name]["parameters"], name
        assert len(keys) == ORIGINAL[name]["state_dict_tensors"], name
        assert _keys_crc(keys) == ORIGINAL[name]["state_dict_keys_crc32"], f"{name}: key names differ from original"
    assert sum(p.numel() for p in net.parameters()) == 29_661_775


# ----------------------------------------------------------------- 1. RGB encoder
@pytest.fixture(scope="module")
def former_dfer_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fdfer") / "FormerDFER-DFEWset1-model_best.pth"
    _former_dfer_file(path, FormerDFEREncoder(), CASES["rgb_encoder"]["weight_seed"])
    return path


@pytest.mark.parametrize("layout", ["channel_major", "frames"])
def test_rgb_encoder_matches_original(former_dfer_file, layout):
    """channel_major = GenerateModel fed (B,3,16,H,W) as main_PFED5.py; frames = the same network fed (B,16,3,H,W)."""
    case = CASES["rgb_encoder"]
    enc = FormerDFEREncoder(layout=layout).eval()
    info = load_former_dfer_checkpoint(enc, former_dfer_file, pos_embed_resize="strict")
    assert info["dropped"] == ["fc.weight [7, 512]", "fc.bias [7]"]
    with torch.no_grad():
        out = enc(inputs_of(case)["x"])
    assert_matches_golden(out, GOLDEN["rgb_encoder"][f"feat_{layout}"], case["atol"], f"rgb_encoder ({layout})")


def test_rgb_layouts_are_distinguishable():
    g = GOLDEN["rgb_encoder"]
    assert np.abs(g["feat_channel_major"] - g["feat_frames"]).max() > 1000 * CASES["rgb_encoder"]["atol"]


# ----------------------------------------------------------------- 2. heatmap encoder
def test_heatmap_encoder_matches_original(tmp_path):
    """pose_only.pth layout through load_pose_only_checkpoint. The loader (like the original's load_weights)
    keeps the random 3-channel stem conv, so the fixture's seeded stem weight is then copied in directly:
    every one of the 258 tensors is compared."""
    case = CASES["heatmap_encoder"]
    x = inputs_of(case)["x"]
    enc = SlowOnlyEncoder().eval()
    with torch.no_grad():
        before = enc(x)
    path = tmp_path / "pose_only.pth"
    sd = _pose_only_file(path, enc, case["weight_seed"])
    stem_init = enc.conv1.conv.weight.detach().clone()
    info = load_pose_only_checkpoint(enc, path)
    assert info["random_init"] == ["conv1.conv.weight"]
    assert torch.equal(enc.conv1.conv.weight, stem_init)
    with torch.no_grad():
        enc.conv1.conv.weight.copy_(sd["conv1.conv.weight"])
        for k, v in enc.state_dict().items():
            assert torch.equal(v, sd[k]), k
        out = enc(x)
    assert_matches_golden(out, GOLDEN["heatmap_encoder"]["feat"], case["atol"], "heatmap_encoder")
    assert (out - before).abs().max() > 1e-2


# ----------------------------------------------------------------- 3. decoder / 4. evaluator
def _load_entry(module, tmp_path, entry: str, seed: int):
    """Save ``{entry: seeded state}`` (training-checkpoint entry layout) and load it back strictly."""
    path = tmp_path / "class_0-model_best.pth"
    torch.save({entry: _seeded(module.state_dict(), seed)}, path)
    load_strict(module, state_dict_of(read_checkpoint(path), entry, path), path, entry)


def test_decoder_matches_original(tmp_path):
    """decoder_fuser(512, 8, 3) called as decoder(outputs_l, outputs_v): pos_embed on the first (heatmap) argument."""
    case = CASES["decoder"]
    x = inputs_of(case)
    dec = CrossFusionDecoder(5, 3, pos_on="first").eval()
    with torch.no_grad():
        before = dec(x["heatmap_tokens"], x["rgb_tokens"])
        _load_entry(dec, tmp_path, "decoder", case["weight_seed"])
        out = dec(x["heatmap_tokens"], x["rgb_tokens"])
        dec.pos_on = "second"
        other = dec(x["heatmap_tokens"], x["rgb_tokens"])
    assert_matches_golden(out, GOLDEN["decoder"]["tokens"], case["atol"], "decoder")
    assert (out - before).abs().max() > 1e-2
    assert np.abs(other.numpy() - GOLDEN["decoder"]["tokens"]).max() > 100 * case["atol"]  # pos_on matters


def test_evaluator_matches_original(tmp_path):
    case = CASES["evaluator"]
    x = inputs_of(case)["x"]
    ev = Evaluator(1).eval()
    with torch.no_grad():
        before = ev(x)
        _load_entry(ev, tmp_path, "evaluator", case["weight_seed"])
        out = ev(x)
    assert_matches_golden(out, GOLDEN["evaluator"]["scores"], case["atol"], "evaluator")
    assert (out - before).abs().max() > 1e-3


# ----------------------------------------------------------------- 5. full forward
def test_full_forward_matches_original(tmp_path):
    """QAFENet(channel_major, pos on heatmap) from a training-checkpoint-layout file vs main_PFED5's test step.

    The intermediate outputs are captured with hooks during the one forward call, so a
    failure names the first stage that differs (encoders, decoder tokens, score)."""
    case = CASES["full_forward"]
    net = QAFENet(ClipGeometry(), rgb_layout="channel_major", pos_embed_stream="heatmap").eval()
    path = tmp_path / "class_0-model_best.pth"
    _training_checkpoint(path, net, case["weight_seeds"])
    info = load_qafe_training_checkpoint(net, path)
    assert info["notes"] == [] and info["epoch"] == 3
    cap = {}
    net.rgb_encoder.register_forward_hook(lambda m, a, r: cap.__setitem__("rgb_tokens", r))
    net.heatmap_encoder.register_forward_hook(lambda m, a, r: cap.__setitem__("heatmap_tokens", r))
    net.decoder.register_forward_hook(lambda m, a, r: cap.__setitem__("decoder_tokens", r))
    x = inputs_of(case)
    with torch.no_grad():
        score = net(x["rgb"], x["heatmap"])
    got = {"rgb_tokens": cap["rgb_tokens"].reshape(5, 1, 512).transpose(0, 1),  # packed rows k*B + b
           "heatmap_tokens": cap["heatmap_tokens"].reshape(5, 1, 512).transpose(0, 1),
           "decoder_tokens": cap["decoder_tokens"], "score": score}
    failures = []
    for name in ("rgb_tokens", "heatmap_tokens", "decoder_tokens", "score"):
        try:
            assert_matches_golden(got[name], GOLDEN["full_forward"][name], case["atol"], f"full_forward.{name}")
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------- misfit files
def test_misfit_training_checkpoint_names_the_file(tmp_path):
    """Original-layout training checkpoint of a 2-block decoder with a 4-token conv: CheckpointError naming file."""
    tiny = ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=40, heatmap_size=14)
    source = QAFENet(tiny, rgb_layout="channel_major", pos_embed_stream="heatmap", fusion_blocks=2)
    path = tmp_path / "class_3-model_best.pth"
    _training_checkpoint(path, source, {"model": 1, "SlowOnly": 2, "decoder": 3, "evaluator": 4}, prefix="module.")
    target = QAFENet(tiny, rgb_layout="channel_major", pos_embed_stream="heatmap", fusion_blocks=3)
    with pytest.raises(CheckpointError) as exc:
        load_qafe_training_checkpoint(target, path)
    assert str(path) in str(exc.value) and "model.2" in str(exc.value)
    bad = tmp_path / "pose_only.pth"
    enc = SlowOnlyEncoder()
    _pose_only_file(bad, SlowOnlyEncoder(in_channels=3, base_channels=16), 5)
    with pytest.raises(CheckpointError) as exc:
        load_pose_only_checkpoint(enc, bad)
    assert str(bad) in str(exc.value) and "shape" in str(exc.value)
