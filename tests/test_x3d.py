"""X3D-S adapter (methods/x3d.py) against pytorchvideo's own X3D.

The reference is the installed ``pytorchvideo.models.x3d.create_x3d`` model (the
builder ``pytorchvideo.models.hub.x3d.x3d_s`` calls), carrying the same seeded
weights that reach our model through a file in the hub checkpoint layout
(``{"model_state": state_dict}``, pytorchvideo/models/hub/x3d.py ``_x3d``) and the
project's loader. No weights are downloaded: the hub directory is monkeypatched.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError
from benchmark.scales import get_scale
from methods.x3d import KINETICS_HEAD_KEYS, X3D_S_FILE, X3DMethod

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _golden import seeded_input, seeded_state_dict  # noqa: E402

create_x3d = pytest.importorskip("pytorchvideo.models.x3d").create_x3d

#: pytorchvideo model zoo (docs/source/model_zoo.md): X3D-S 3.79 M parameters, counted here
#: on create_x3d(input_clip_length=13, input_crop_size=160) of pytorchvideo 0.1.5.
X3D_S_PARAMS = 3_794_274
KINETICS_HEAD_PARAMS = 2048 * 400 + 400
MLP_PARAMS = (2048 * 256 + 256) + (256 * 128 + 128) + (128 * 1 + 1)

#: The hub models' pixel normalisation on [0, 1] RGB, written out independently of
#: methods/x3d.py: pytorchvideo tutorials/torchhub_inference_tutorial.ipynb and
#: transforms_factory defaults, mean 0.45 and std 0.225 on every channel.
HUB_MEAN, HUB_STD = 0.45, 0.225


def _reference(clip_length: int = 13, crop_size: int = 160, seed: int = 0) -> tuple[torch.nn.Module, dict]:
    """pytorchvideo's X3D-S built as the hub builds it, with seeded weights (eval mode)."""
    ref = create_x3d(input_clip_length=clip_length, input_crop_size=crop_size)
    sd = seeded_state_dict(ref.state_dict(), seed)
    ref.load_state_dict(sd, strict=True)
    return ref.eval(), sd


def _hub_file(path: Path, state: dict, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model_state": state, **extra}, path)
    return path


def _method(geometry: ClipGeometry) -> X3DMethod:
    return X3DMethod({}, geometry)


def _ref_features(ref: torch.nn.Module, clips: torch.Tensor) -> torch.Tensor:
    """pytorchvideo's pooled head feature (``blocks[5].pool`` output) ``(N, 2048)``."""
    x = clips
    for block in ref.blocks[:-1]:
        x = block(x)
    return ref.blocks[-1].pool(x).flatten(1)


def _normalise(unit: torch.Tensor) -> torch.Tensor:
    return (unit - HUB_MEAN) / HUB_STD


def test_hub_layout_file_loads_and_changes_the_output(tmp_path):
    g = ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=64)
    _, sd = _reference(4, 64, seed=3)
    path = _hub_file(tmp_path / X3D_S_FILE, sd, epoch=300, cfg="X3D_S.yaml")
    m = _method(g)
    torch.manual_seed(0)
    model = m.build_model().eval()
    rgb = seeded_input((2, 3, g.clip_len, 64, 64), 1, "rand")
    with torch.no_grad():
        before = m.predict(model, {"rgb": rgb})
        info = m.load_pretrained(model, {"backbone": path})
        after = m.predict(model, {"rgb": rgb})
    assert (after - before).abs().max() > 1e-3
    b = info["backbone"]
    assert b["format"] == "pytorchvideo_hub" and b["tensors"] == len(sd) - 2
    assert set(b["dropped"]) == set(KINETICS_HEAD_KEYS) and info["random_init"] == ["evaluator"]
    # every backbone tensor now equals the file's
    own = model.backbone.state_dict()
    assert all(torch.equal(own[k], v) for k, v in sd.items() if k not in KINETICS_HEAD_KEYS)


def test_module_prefix_is_stripped(tmp_path):
    _, sd = _reference(4, 64, seed=1)
    path = _hub_file(tmp_path / X3D_S_FILE, {f"module.{k}": v for k, v in sd.items()})
    m = _method(ClipGeometry(1, 4, 64))
    info = m.load_pretrained(m.build_model(), {"backbone": path})
    assert info["backbone"]["stripped_module_prefix"] is True


def test_equals_pytorchvideo_x3d_on_a_small_input(tmp_path):
    """Features, Kinetics probabilities and the score of our model vs pytorchvideo's
    create_x3d model at 4 frames x 64 px (its head pool (4, 2, 2) covers the whole map)."""
    g = ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=64)
    ref, sd = _reference(4, 64, seed=0)
    m = _method(g)
    model = m.build_model()
    m.load_pretrained(model, {"backbone": _hub_file(tmp_path / X3D_S_FILE, sd)})
    model.eval()
    rgb = seeded_input((2, 3, g.clip_len, 64, 64), 2, "rand")  # [0, 1], the 'unit' input
    with torch.no_grad():
        ours = model.features(rgb)  # (2, n, 2048)
        # pytorchvideo on the same sub-clips, normalised by hand with the hub mean/std
        subclips = _normalise(rgb).reshape(2, 3, g.n_subclips, g.subclip_len, 64, 64).transpose(1, 2)
        subclips = subclips.reshape(2 * g.n_subclips, 3, g.subclip_len, 64, 64)
        theirs = _ref_features(ref, subclips).reshape(2, g.n_subclips, 2048)
        probs_ref = ref(subclips)  # pytorchvideo's full forward: fixed pool, proj, softmax
        w, bias = sd["blocks.5.proj.weight"], sd["blocks.5.proj.bias"]
        probs_ours = torch.softmax(ours.reshape(-1, 2048) @ w.T + bias, dim=1)
        # the score by hand: MLP_block on each sub-clip feature, mean over sub-clips
        e = {k: v for k, v in model.evaluator.state_dict().items()}
        h = torch.relu(theirs @ e["evaluator.layer1.weight"].T + e["evaluator.layer1.bias"])
        h = torch.relu(h @ e["evaluator.layer2.weight"].T + e["evaluator.layer2.bias"])
        score_hand = (h @ e["evaluator.layer3.weight"].T + e["evaluator.layer3.bias"]).squeeze(-1).mean(1)
        score = m.predict(model, {"rgb": rgb})
    assert theirs.abs().max() > 1e-2  # not a degenerate all-zero feature
    feat_err = ((ours - theirs).abs().max() / theirs.abs().max()).item()
    assert feat_err < 1e-5, feat_err
    assert (probs_ours - probs_ref).abs().max().item() < 1e-6
    assert (score - score_hand).abs().max().item() < 1e-5 * max(1.0, score_hand.abs().max().item())


def test_global_pool_equals_the_hub_pool_at_13x160(tmp_path):
    """At X3D-S's own input (13 frames, 160 px) pytorchvideo's AvgPool3d((13, 5, 5)) is
    exactly the global average our model uses: Kinetics outputs agree."""
    g = ClipGeometry(n_subclips=1, subclip_len=13, rgb_size=160)
    ref, sd = _reference(13, 160, seed=5)
    assert tuple(ref.blocks[-1].pool.pool.kernel_size) == (13, 5, 5)
    m = _method(g)
    model = m.build_model()
    m.load_pretrained(model, {"backbone": _hub_file(tmp_path / X3D_S_FILE, sd)})
    model.eval()
    rgb = seeded_input((1, 3, 13, 160, 160), 4, "rand")
    with torch.no_grad():
        probs_ref = ref(_normalise(rgb))
        feat = model.features(rgb).reshape(1, 2048)
        probs_ours = torch.softmax(feat @ sd["blocks.5.proj.weight"].T + sd["blocks.5.proj.bias"], dim=1)
        theirs = _ref_features(ref, _normalise(rgb))
    assert ((feat - theirs).abs().max() / theirs.abs().max()).item() < 1e-5
    assert (probs_ours - probs_ref).abs().max().item() < 1e-6


def test_parameter_count_vs_pytorchvideo_builder():
    ref = create_x3d(input_clip_length=13, input_crop_size=160)
    n_ref = sum(p.numel() for p in ref.parameters())
    assert n_ref == X3D_S_PARAMS  # pytorchvideo model zoo: 3.79 M
    model = _method(ClipGeometry(5, 13, 160)).build_model()
    n_backbone = sum(p.numel() for p in model.backbone.parameters())
    assert n_backbone == n_ref - KINETICS_HEAD_PARAMS == 2_974_674
    assert sum(p.numel() for p in model.parameters()) == n_backbone + MLP_PARAMS == 3_532_243
    # X3D-M is the same network: same keys and shapes (the pool kernel has no parameters)
    m_sd = create_x3d(input_clip_length=16, input_crop_size=224).state_dict()
    assert {k: v.shape for k, v in m_sd.items()} == {k: v.shape for k, v in ref.state_dict().items()}


def test_input_spec_and_resolved_geometry():
    spec = X3DMethod({}).input_spec()
    assert (spec.subclip_len, spec.rgb_size, spec.rgb_resize, spec.rgb_normalisation) == (13, 160, (182, 182), "unit")
    paper = get_scale("paper").resolve(spec, 80).geometry
    assert (paper.n_subclips, paper.subclip_len, paper.rgb_size) == (6, 13, 160)
    tiny = get_scale("tiny").resolve(spec, 80).geometry
    assert tiny.rgb_size == 32  # clamped to min_rgb_size (create_x3d's total stride)


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    """torch.hub's directory moved to tmp (TORCH_HOME), downloads forbidden."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)

    def no_download(*a, **k):
        raise AssertionError("X3D must never download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    return Path(torch.hub.get_dir())


def test_checkpoint_found_in_the_hub_cache(hub_dir, tmp_path):
    assert hub_dir == tmp_path / "torch_home" / "hub"
    assert X3DMethod.locate_pretrained(None) == {}
    _, sd = _reference(4, 64, seed=2)
    cached = _hub_file(hub_dir / "checkpoints" / X3D_S_FILE, sd)
    assert X3DMethod.locate_pretrained(None) == {"backbone": cached}
    assert X3DMethod.locate_pretrained(tmp_path / "empty") == {"backbone": cached}
    # the --weights folder comes first
    own = _hub_file(tmp_path / "weights" / X3D_S_FILE, sd)
    assert X3DMethod.locate_pretrained(tmp_path / "weights") == {"backbone": own}
    m = _method(ClipGeometry(1, 4, 64))
    info = m.load_pretrained(m.build_model(), X3DMethod.locate_pretrained(None))
    assert info["backbone"]["file"] == str(cached)
    # the harness asks the method, with or without --weights (a run then records the file by content)
    from benchmark.cli import build_parser, _weights
    from benchmark.runs import find_weights

    assert find_weights(X3DMethod, None) == {"backbone": cached}
    args = build_parser().parse_args(["reproduce", "table2"])
    found = _weights(args)
    assert found["x3d_s"] == {"backbone": cached} and found["qafe_net"] == {}


def test_mismatching_file_raises_checkpoint_error_naming_it(tmp_path):
    m = _method(ClipGeometry(1, 4, 64))
    model = m.build_model()
    # X3D-L (depth factor 5.0) has more blocks: unexpected keys
    big = create_x3d(input_clip_length=4, input_crop_size=64, depth_factor=5.0).state_dict()
    path = _hub_file(tmp_path / "wrong" / X3D_S_FILE, big)
    with pytest.raises(CheckpointError, match="unexpected keys") as err:
        m.load_pretrained(model, {"backbone": path})
    assert str(path) in str(err.value)
    # a wider network: shape mismatches
    wide = create_x3d(input_clip_length=4, input_crop_size=64, width_factor=3.0).state_dict()
    path = _hub_file(tmp_path / "wide" / X3D_S_FILE, wide)
    with pytest.raises(CheckpointError, match="shape mismatches") as err:
        m.load_pretrained(model, {"backbone": path})
    assert str(path) in str(err.value)
    # not the hub layout (a bare state dict)
    bare = tmp_path / "bare" / X3D_S_FILE
    bare.parent.mkdir()
    torch.save(create_x3d(input_clip_length=4, input_crop_size=64).state_dict(), bare)
    with pytest.raises(CheckpointError, match="model_state") as err:
        m.load_pretrained(model, {"backbone": bare})
    assert str(bare) in str(err.value)
    # a missing file names the original file
    with pytest.raises(CheckpointError, match=X3D_S_FILE):
        m.load_pretrained(model, {"backbone": tmp_path / "nowhere.pyth"})
