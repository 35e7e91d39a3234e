"""TraMP-Former against its ORIGINAL implementation (golden fixture ``tests/golden/tramp_former``, produced
from shuchaoduan/TraMP-Former; see ``tests/golden/tramp_former.md``): the SkateFormer trajectory encoder
at both trajectory lengths loaded from a ``SkateFormer_256_rgb1x1.pth``-layout file, the fusion decoder,
and the full forward loaded from a training checkpoint, each within its stated tolerance."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest
import torch

from benchmark.api import ClipGeometry
from methods.backbones.skateformer import SkateFormerEncoder
from methods.tramp_former import (TraMPFormer, TrajectoryGuidedFusion, load_skateformer_checkpoint,
                                  load_tramp_training_checkpoint, project_to_original_key)

from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict

META, OUT = load_golden("tramp_former")


def _index_t(b: int, t: int) -> torch.Tensor:
    return (2 * torch.arange(t, dtype=torch.float32) / t - 1).repeat(b, 1)


def skateformer_file(path: Path, encoder: SkateFormerEncoder, seed: int) -> Path:
    """``SkateFormer_256_rgb1x1.pth`` in its original layout: ``{'model': ...}`` with nn.DataParallel's
    ``module.`` prefix and the pretraining head ``evaluator.head`` the loader drops."""
    sd = seeded_state_dict(encoder.state_dict(), seed)
    model = {f"module.{k}": v for k, v in sd.items()}
    model["module.evaluator.head.weight"] = torch.randn(1, 256)
    model["module.evaluator.head.bias"] = torch.randn(1)
    torch.save({"epoch": 60, "model": model}, path)
    return path


@pytest.mark.parametrize("frames", [128, 64])
def test_trajectory_encoder_matches_original(frames, tmp_path):
    case = META["cases"][f"trajectory_encoder_{frames}"]
    enc = SkateFormerEncoder(t_partition=(8, None)).eval()  # one model for both lengths (M = T / 8)
    info = load_skateformer_checkpoint(enc, skateformer_file(tmp_path / "SkateFormer_256_rgb1x1.pth", enc,
                                                             case["weight_seed"]))
    assert info["dropped"] == ["evaluator.head.weight", "evaluator.head.bias"] and info["ignored"] == []
    x = inputs_of(case)["trajectory"]
    with torch.no_grad():
        feat = enc(x, _index_t(2, frames))
    assert_matches_golden(feat, OUT[f"trajectory_encoder_{frames}"]["feat"], case["atol"], f"SkateFormer {frames}")


def test_fusion_matches_original():
    case = META["cases"]["fusion"]
    fus = TrajectoryGuidedFusion().eval()
    fus.load_state_dict(seeded_state_dict(fus.state_dict(), case["weight_seed"]), strict=True)
    x = inputs_of(case)
    with torch.no_grad():
        out = fus(x["rgb_token"], x["trajectory_token"])
    assert_matches_golden(out, OUT["fusion"]["tokens"], case["atol"], "decoder_fuser_1")


def test_full_forward_matches_original_through_a_training_checkpoint(tmp_path):
    """Quality_Model with seeded weights on its own keys, saved as main_rgb1x1_128.py's checkpoint dict (with
    nn.DataParallel's prefix), loaded strictly; the code's channel-major RGB reading; intermediates by hooks."""
    case = META["cases"]["full_forward"]
    model = TraMPFormer(ClipGeometry(5, 16, 224, 56), rgb_layout="channel_major").eval()
    keys = sorted(project_to_original_key(k) for k in model.state_dict())  # the original's own key names
    orig = META["produced_by"]["original_modules"]
    assert len(keys) == orig["state_dict_keys"] and zlib.crc32("\n".join(keys).encode()) == orig["keys_crc32"]
    params = {name: sum(p.numel() for p in getattr(model, name).parameters())
              for name in ("encoder", "rgb_encoder", "fusion", "evaluator", "rgb_transform")}
    assert params == {k: v for k, v in orig["params"].items() if k != "total"}
    assert sum(p.numel() for p in model.parameters()) == orig["params"]["total"] == 25_168_930
    sd = seeded_state_dict({project_to_original_key(k): v for k, v in model.state_dict().items()}, case["weight_seed"])
    path = tmp_path / "class_1-model_best.pth"
    torch.save({"epoch": 12, "model": {f"module.{k}": v for k, v in sd.items()}, "best_pho": 0.7}, path)
    info = load_tramp_training_checkpoint(model, path)
    assert info["loaded_tensors"] == len(keys) and info["epoch"] == 12
    seen = {}
    model.encoder.register_forward_hook(lambda m, i, o: seen.__setitem__("trajectory", o))
    x = inputs_of(case)
    with torch.no_grad():
        score = model(x["rgb"], x["trajectory"], _index_t(1, 128))
        rgb_token = model.rgb_transform(model.rgb_tokens(x["rgb"])).mean(dim=1, keepdim=True)
    expected = OUT["full_forward"]
    assert_matches_golden(rgb_token, expected["rgb_token"], case["atol"], "rgb token")
    assert_matches_golden(seen["trajectory"].unsqueeze(1), expected["trajectory_token"], case["atol"], "trajectory token")
    assert_matches_golden(score, expected["score"], case["atol"], "score")


def test_frames_layout_differs_from_the_codes_channel_major_reading():
    """The paper's per-frame reading is a different model input than the code's (the option matters)."""
    g = ClipGeometry(5, 16, 224, 56)
    a, b = TraMPFormer(g, rgb_layout="channel_major").eval(), TraMPFormer(g, rgb_layout="frames").eval()
    b.load_state_dict(a.state_dict())
    rgb = torch.randn(1, 3, 80, 224, 224)
    with torch.no_grad():
        ta, tb = a.rgb_tokens(rgb), b.rgb_tokens(rgb)
    assert ta.shape == tb.shape == (1, 5, 512) and (ta - tb).abs().max() > 1e-3
    # channel-major pseudo-frame j holds planes 3j..3j+2 of the (C, T) stack: a frames-layout model fed that
    # rearrangement sees the same thing
    scrambled = rgb.reshape(1, 240, 224, 224).reshape(1, 80, 3, 224, 224).transpose(1, 2)
    with torch.no_grad():
        assert torch.equal(b.rgb_tokens(scrambled), ta)
