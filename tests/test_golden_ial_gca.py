"""IAL-GCA (muse1998/IAL-for-Facial-Expression-Recognition) against the original's golden outputs.

``tests/golden/ial_gca.{json,npz}`` holds what the ORIGINAL ``final_model.GenerateModel``
(commit in the JSON) returned in eval mode with :func:`_golden.seeded_state_dict` weights:
the 7-way logits, the 4096-d x_FER and the layer2 / layer3 auxiliary logits, plus the
original's state-dict shapes. Each test rebuilds those weights from the ORIGINAL key list,
saves them as ``main.py`` does (``pretrain_DFEW.pth``: a DataParallel state dict, keys
``module.*``), loads them through the project's loader and compares (see ial_gca.md).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict
from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError, ConfigError
from benchmark.losses import BMC_SIGMA_LR
from benchmark.scales import SCALES
from methods.backbones.ial_gca import IAL_GCA_FILE, IALGCANet, load_ial_gca_checkpoint
from methods.ial_gca import IALGCAMethod, IALGCARegressor, segment_indices

META, GOLDEN = load_golden("ial_gca")
SHAPES = META["produced_by"]["state_dict_shapes"]


def _original_state(seed: int) -> dict[str, torch.Tensor]:
    """The seeded weights of the original GenerateModel, from its key list (not from our module)."""
    template = {k: torch.zeros(s, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
                for k, s in SHAPES.items()}
    return seeded_state_dict(template, seed)


def _save_original(tmp_path, seed: int, container: bool = False):
    state = {f"module.{k}": v for k, v in _original_state(seed).items()}  # nn.DataParallel keys
    path = tmp_path / IAL_GCA_FILE
    torch.save({"epoch": 12, "state_dict": state, "best_acc": torch.tensor(55.5)} if container else state, path)
    return path


def _clips_to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Original clips (N, 16, 3, H, W) -> one harness clip (1, 3, N*16, H, W): clip j = sub-clip j."""
    return x.permute(2, 0, 1, 3, 4).reshape(1, 3, -1, x.shape[-2], x.shape[-1])


@pytest.mark.parametrize("case", sorted(GOLDEN))
def test_network_matches_original(case, tmp_path):
    spec = META["cases"][case]
    torch.manual_seed(0)
    net = IALGCANet(expression_head=True).eval()
    x = inputs_of(spec)["x"]
    with torch.no_grad():
        before = net(x)["features"]
    info = load_ial_gca_checkpoint(net, _save_original(tmp_path, spec["weight_seed"]))
    assert info["stripped_module_prefix"] and info["dropped"] == [] and info["loaded_tensors"] == len(SHAPES)
    with torch.no_grad():
        out = net(x)
    for name in ("features", "logits", "aux2", "aux3"):
        assert_matches_golden(out[name], GOLDEN[case][name], spec["atol"], f"IAL-GCA {case} {name}")
    assert (before - out["features"]).abs().max() > 1e-2, "loading the file did not change the output"


def test_parameter_count_equals_original():
    assert sum(p.numel() for p in IALGCANet(expression_head=True).parameters()) == \
        META["produced_by"]["original_param_count"] == 19_083_527
    assert {k: list(v.shape) for k, v in IALGCANet().state_dict().items()} == SHAPES


@pytest.mark.parametrize("layout", ["frames", "channel_major"])
def test_regressor_subclips_through_method_loader(layout, tmp_path):
    """Two 16-frame sub-clips of one harness clip = the golden's two original clips; the score is
    the mean of the 4096-256-128-1 MLP over them (computed here in numpy)."""
    spec = META["cases"]["clips2"]
    g = ClipGeometry(n_subclips=2, subclip_len=16, rgb_size=112, heatmap_size=56)
    method = IALGCAMethod({"rgb_layout": layout}, geometry=g)
    torch.manual_seed(0)
    model = method.build_model().eval()
    info = method.load_pretrained(model, {"backbone": _save_original(tmp_path, spec["weight_seed"], container=True)})
    assert sorted(info["backbone"]["dropped"]) == ["fc_f.bias [7]", "fc_f.weight [7, 4096]"]
    assert info["backbone"]["epoch"] == 12 and info["random_init"] == ["evaluator"]
    x = inputs_of(spec)["x"]
    if layout == "frames":
        rgb = _clips_to_rgb(x)
    else:  # the (3, 16, H, W) memory of sub-clip j holds original clip j's (16, 3, H, W) memory
        rgb = x.reshape(2, 3, 16, 112, 112).permute(1, 0, 2, 3, 4).reshape(1, 3, 32, 112, 112)
    with torch.no_grad():
        res = model.clip_outputs(rgb)
        score = model(rgb)
    assert_matches_golden(res["features"][0], GOLDEN["clips2"]["features"], 1e-5, f"regressor features ({layout})")
    assert_matches_golden(res["aux2"][0], GOLDEN["clips2"]["aux2"], 1e-5, f"regressor aux2 ({layout})")
    w = {k: v.double().numpy() for k, v in model.evaluator.state_dict().items()}
    h = GOLDEN["clips2"]["features"].astype(np.float64)
    for i in (1, 2):
        h = np.maximum(h @ w[f"evaluator.layer{i}.weight"].T + w[f"evaluator.layer{i}.bias"], 0.0)
    expected = (h @ w["evaluator.layer3.weight"].T + w["evaluator.layer3.bias"]).mean()
    assert score.shape == (1,) and abs(float(score) - expected) < 1e-4


def test_segments_mode_picks_the_original_test_frames(tmp_path):
    """clip_mode='segments' at eval: 16 segment centres of an 80-frame clip (2, 7, ..., 77)."""
    centres = segment_indices(80, 16, train=False)
    assert centres.tolist() == [int(2.5 + 5 * i) for i in range(16)] == list(range(2, 80, 5))
    gen = torch.Generator().manual_seed(3)
    train = segment_indices(80, 16, train=True, generator=gen)
    assert ((train >= torch.arange(16) * 5) & (train < torch.arange(16) * 5 + 5)).all()
    assert segment_indices(16, 16, train=False).tolist() == list(range(16))
    with pytest.raises(ValueError, match="cannot sample"):
        segment_indices(8, 16, train=False)

    spec = META["cases"]["unit1"]
    method = IALGCAMethod({"clip_mode": "segments", "head": "proj_mlp"})
    assert method.geometry == ClipGeometry(5, 16, 112, 56)
    model = method.build_model().eval()
    method.load_pretrained(model, {"backbone": _save_original(tmp_path, spec["weight_seed"])})
    rgb = torch.zeros(1, 3, 80, 112, 112)
    rgb[:, :, centres] = _clips_to_rgb(inputs_of(spec)["x"])
    with torch.no_grad():
        res = model.clip_outputs(rgb)
    assert res["features"].shape == (1, 1, 4096) and res["scores"].shape == (1, 1)
    assert_matches_golden(res["features"][0], GOLDEN["unit1"]["features"], 1e-5, "segments features")


def test_mismatching_files_raise_checkpoint_error(tmp_path):
    net = IALGCANet(expression_head=False)
    state = {f"module.{k}": v for k, v in _original_state(0).items()}
    bad = dict(state)
    bad["module.s_former.pos_embedding"] = torch.zeros(1, 16, 2048)
    del bad["module.s_former.layer3.0.gc.0.weight"]
    path = tmp_path / "bad_pretrain_DFEW.pth"
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="bad_pretrain_DFEW.pth") as err:
        load_ial_gca_checkpoint(net, path)
    assert "s_former.layer3.0.gc.0.weight" in str(err.value) and "s_former.pos_embedding" in str(err.value)
    extra = dict(state, **{"module.fc.weight": torch.zeros(7, 512)})
    torch.save(extra, path)
    with pytest.raises(CheckpointError, match="unexpected keys .*fc.weight"):
        load_ial_gca_checkpoint(net, path)
    torch.save({"epoch": 3, "model": state}, path)
    with pytest.raises(CheckpointError, match="not an IAL-GCA state dict"):
        load_ial_gca_checkpoint(net, path)
    with pytest.raises(CheckpointError, match="pretrain_DFEW.pth"):
        load_ial_gca_checkpoint(net, tmp_path / "absent.pth")
    with pytest.raises(ConfigError, match="no pretrained role"):
        IALGCAMethod().load_pretrained(IALGCAMethod().build_model(), {"rgb": path})


def test_sizes_the_architecture_takes():
    spec = IALGCAMethod().input_spec()
    assert (spec.rgb_size, spec.min_rgb_size, spec.subclip_len, spec.rgb_resize, spec.rgb_normalisation) == \
        (112, 112, 16, (112, 112), "unit")
    resolved = SCALES["tiny"].resolve(spec, 80)
    tiny = resolved.geometry
    assert tiny == ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=112, heatmap_size=28)
    assert resolved.rgb_resize == (112, 112)  # the 48-px tiny frames are resized up to the fixed 112
    torch.manual_seed(0)
    model = IALGCAMethod(geometry=tiny).build_model().eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 16, 112, 112))
    assert out.shape == (1,) and torch.isfinite(out).all()
    for size in (104, 113, 40):
        with pytest.raises(ConfigError, match="105..112"):
            IALGCAMethod(geometry=ClipGeometry(2, 8, size, 14))
    with pytest.raises(ConfigError, match="2..17"):
        IALGCAMethod(geometry=ClipGeometry(1, 18, 112, 14))
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(1, 3, 16, 108, 108))


def test_training_defaults_and_groups():
    m = IALGCAMethod()
    cfg = m.training_defaults()
    assert (cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, cfg.lr_step, cfg.lr_gamma, cfg.batch_size,
            cfg.epochs) == ("sgd", 1e-3, 0.9, 0.1, 7, 0.5, 8, 100)
    assert math.isclose(cfg.lr * cfg.lr_gamma ** (cfg.epochs // cfg.lr_step), 1e-3 * 0.5 ** 14)
    assert IALGCAMethod({"clip_mode": "segments"}).training_defaults().batch_size == 40
    assert IALGCAMethod({"recipe": "qafe"}).training_defaults().weight_decay == 1e-4
    model, loss = m.build_model(), m.build_loss()
    groups = m.param_groups(model, loss, cfg)
    assert groups[1]["params"][0] is loss.noise_sigma and groups[1]["weight_decay"] == 0.0
    assert groups[1]["lr"] == BMC_SIGMA_LR and groups[1]["decay"] is False
    assert len(m.param_groups(model, IALGCAMethod({"loss": "mse"}).build_loss(), cfg)) == 1
    head = sum(p.numel() for p in model.evaluator.parameters())
    assert head == 4096 * 256 + 256 + 256 * 128 + 128 + 128 + 1
    assert isinstance(IALGCARegressor(head="proj_mlp").proj, torch.nn.Linear)
