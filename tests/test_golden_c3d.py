"""C3D-LSTM vs the original port (ParitoshParmar/C3D-LSTM--PyTorch), golden fixture ``c3d_lstm``.

The fixture holds outputs of the ORIGINAL ``models/C3D.py`` ``C3D`` (weights from a
seeded state dict in DavideA's full ``c3d.pickle`` layout, loaded with
``train_c3d_lstm.py``'s key intersection) and ``models/LSTM_anno.py`` ``LSTM_anno``,
run with ``train_c3d_lstm.py``'s clip loop (see ``tests/golden/c3d_lstm.md``). Here
the same weights are written to files in the original layouts (``c3d.pickle``: a
plain legacy-format state dict with fc7 / fc8; the LSTM: ``save_model``'s plain
state dict) and pushed through the project's loaders.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict, one_thread  # noqa: E402

from benchmark.api import ClipGeometry  # noqa: E402
from benchmark.errors import CheckpointError, ConfigError  # noqa: E402
from methods.backbones.c3d import C3D, C3D_FILE, load_c3d_checkpoint  # noqa: E402
from methods.c3d_lstm import C3DLSTM, C3DLSTMMethod, clip_starts, load_lstm_head_checkpoint  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()


#: Sports-1M classifier layers of DavideA's C3D (present in c3d.pickle, dropped by C3D-LSTM).
EXTRA = {"fc7.weight": (4096, 4096), "fc7.bias": (4096,), "fc8.weight": (487, 4096), "fc8.bias": (487,)}


@pytest.fixture(scope="module")
def golden():
    return load_golden("c3d_lstm")


def _meta_c3d() -> C3D:
    with torch.device("meta"):  # shapes only, no init cost
        return C3D()


def _fast_c3d() -> C3D:
    """A C3D with uninitialised storage (the tests load or compare its weights only)."""
    return _meta_c3d().to_empty(device="cpu")


def pickle_layout(seed: int) -> dict[str, torch.Tensor]:
    """A state dict in the c3d.pickle layout: our C3D keys seeded (as the fixture's), plus fc7 / fc8
    (zeros: the loader drops them, so their values cannot reach the output)."""
    template = {k: torch.empty(v.shape, device="meta") for k, v in _meta_c3d().state_dict().items()}
    sd = seeded_state_dict(template, seed)
    sd.update({k: torch.zeros(s) for k, s in EXTRA.items()})
    return sd


@pytest.fixture(scope="module")
def seeded_pickle(golden):
    """The pipeline case's c3d.pickle-layout weights (about 80 M values: built once per module)."""
    return pickle_layout(golden[0]["cases"]["pipeline"]["weight_seed"])


def lstm_layout(model: C3DLSTM, seed: int) -> dict[str, torch.Tensor]:
    """A seeded LSTM_anno state dict (keys rnn.*, fc_final_score.*)."""
    return seeded_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("c3d.")}, seed)


@pytest.mark.slow  # two C3D forwards at 16 x 112 x 112 (fc6 fixes the size) + an 80 M-value weight file
def test_c3d_lstm_pipeline_matches_original(golden, seeded_pickle, tmp_path):
    meta, out = golden
    case = meta["cases"]["pipeline"]
    path = tmp_path / C3D_FILE
    torch.save(seeded_pickle, path, _use_new_zipfile_serialization=False)  # 2017-era format
    model = C3DLSTM(ClipGeometry(3, 16, 112, 56), drop_last_clip=case["drop_last_clip"]).eval()
    assert model.starts == case["clip_starts"] == [0, 16]
    info = load_c3d_checkpoint(model.c3d, path)
    assert sorted(info["dropped"]) == sorted(EXTRA) and info["n_classes"] == 487 and info["loaded_tensors"] == 18
    lstm_path = tmp_path / "model_my_lstm_9.pth"
    torch.save(lstm_layout(model, case["lstm_weight_seed"]), lstm_path)
    load_lstm_head_checkpoint(model, lstm_path)
    rgb = inputs_of(case)["rgb"]
    with torch.no_grad():
        feats = model.clip_features(rgb)
        score = model.score(feats)
    assert_matches_golden(feats, out["pipeline"]["clip_feats"], case["atol"], "C3D fc6 features of 2 clips")
    assert_matches_golden(score, out["pipeline"]["score"], case["atol"], "C3D-LSTM score")


def test_lstm_head_matches_original(golden, tmp_path):
    meta, out = golden
    case = meta["cases"]["lstm"]
    model = C3DLSTM(ClipGeometry(5, 16, 112, 56)).eval()
    feats = inputs_of(case)["feats"]
    with torch.no_grad():
        before = model.score(feats)
    path = tmp_path / "model_my_lstm_4.pth"
    torch.save({"module." + k: v for k, v in lstm_layout(model, case["lstm_weight_seed"]).items()}, path)
    info = load_lstm_head_checkpoint(model, path)
    assert info["stripped_module_prefix"] is True
    with torch.no_grad():
        after = model.score(feats)
    assert_matches_golden(after, out["lstm"]["score"], case["atol"], "LSTM_anno score")
    assert float((after - before).abs().max()) > 1e-3, "loading the LSTM file did not change the output"


def test_parameter_counts_equal_the_originals(golden):
    counts = golden[0]["produced_by"]["param_counts"]
    with torch.device("meta"):
        model = C3DLSTM()
    n_c3d = sum(p.numel() for p in model.c3d.parameters())
    n_head = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("c3d."))
    assert n_c3d == counts["c3d_up_to_fc6"] == 61_214_464
    assert n_head == counts["lstm_anno"] == 4_458_753
    assert n_c3d + sum(torch.Size(s).numel() for s in EXTRA.values()) == counts["c3d_pickle_full_sports1m"]
    # trainable = the LSTM head only (the port optimises model_lstm.parameters())
    groups = C3DLSTMMethod().param_groups(model, nn.MSELoss(), C3DLSTMMethod().training_defaults())
    assert sum(p.numel() for g in groups for p in g["params"]) == n_head
    assert all(not p.requires_grad for p in model.c3d.parameters())


def test_mismatching_c3d_file_raises_naming_it(tmp_path):
    c3d = _fast_c3d()
    with torch.no_grad():  # uninitialised storage may hold NaN, which torch.equal never matches
        c3d.conv1.weight.fill_(0.25)
    before = c3d.conv1.weight.detach().clone()
    sd = {k: torch.zeros(1) if k == "conv3b.weight" else torch.zeros(v.shape)
          for k, v in c3d.state_dict().items() if k != "fc6.bias"}
    sd["fc8.weight"] = torch.zeros(487, 1)
    path = tmp_path / "broken_c3d.pickle"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match="broken_c3d.pickle") as exc:
        load_c3d_checkpoint(c3d, path)
    assert "fc6.bias" in str(exc.value) and "conv3b.weight" in str(exc.value)
    assert torch.equal(c3d.conv1.weight, before)
    # an R3D checkpoint given as c3d.pickle
    path2 = tmp_path / "r3d18_KM_200ep.pth"
    torch.save({"arch": "resnet-18", "state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7, 7)}}, path2)
    with pytest.raises(CheckpointError, match="r3d18_KM_200ep.pth"):
        load_c3d_checkpoint(c3d, path2)
    with pytest.raises(CheckpointError, match="c3d.pickle"):
        load_c3d_checkpoint(c3d, tmp_path / "absent" / "c3d.pickle")


def test_loading_changes_the_c3d_weights(seeded_pickle, tmp_path):
    c3d = _fast_c3d()
    for p in c3d.parameters():
        nn.init.normal_(p)
    sd = seeded_pickle
    path = tmp_path / C3D_FILE
    torch.save(sd, path)
    before = {k: v.clone() for k, v in c3d.state_dict().items()}
    load_c3d_checkpoint(c3d, path)
    for k, v in c3d.state_dict().items():
        assert torch.equal(v, sd[k]) and not torch.equal(v, before[k]), k
    # the output changes too (cheap check on conv1 alone: the full C3D forward is covered by the golden test)
    x = torch.randn(1, 3, 3, 8, 8)
    assert not torch.allclose(c3d.conv1(x), nn.functional.conv3d(x, before["conv1.weight"], before["conv1.bias"],
                                                                 padding=1))


class _RecordingC3D(nn.Module):
    """Stand-in for C3D: records the clips it sees, returns their mean as a 4096-d feature."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        return x.mean(dim=(1, 2, 3, 4)).unsqueeze(1).expand(-1, 4096)


@pytest.mark.parametrize("drop_last_clip, starts", [(True, [0, 16, 32, 48]), (False, [0, 16, 32, 48, 64])])
def test_subclips_and_pixel_scale(drop_last_clip, starts):
    # the port's np.arange(0, 80 - 17, 16) drops the 5th clip of an 80-frame clip
    assert clip_starts(80, 16, drop_last_clip) == starts
    method = C3DLSTMMethod({"drop_last_clip": drop_last_clip, "rgb_normalisation": "raw255"})
    assert method.geometry == ClipGeometry(5, 16, 112, 56)
    spec = method.input_spec()
    assert (spec.rgb_normalisation, spec.rgb_resize, spec.rgb_size, spec.min_rgb_size, spec.min_subclip_len) == (
        "unit", (171, 128), 112, 112, 16)
    with torch.device("meta"):
        model = method.build_model()
    model.c3d = _RecordingC3D()
    model.to_empty(device="cpu")
    model.rnn.reset_parameters()
    model.fc_final_score.reset_parameters()
    t = torch.arange(80, dtype=torch.float32) / 80.0  # frame index coded in the pixel values (unit range)
    rgb = t.view(1, 1, 80, 1, 1).expand(2, 3, 80, 112, 112).contiguous()
    model(rgb)
    assert len(model.c3d.seen) == len(starts)
    for s, clip in zip(starts, model.c3d.seen):
        assert clip.shape == (2, 3, 16, 112, 112)
        # raw255: the model multiplies the [0, 1] input by 255 before C3D
        assert torch.allclose(clip[0, 0, :, 0, 0], 255.0 * t[s:s + 16])


def test_geometry_c3d_cannot_take_raises():
    with pytest.raises(ConfigError, match="16-frame sub-clips of 112"):
        C3DLSTMMethod(geometry=ClipGeometry(2, 8, 40, 14)).build_model()
    with pytest.raises(ConfigError, match="no sub-clip"):
        C3DLSTM(ClipGeometry(1, 16, 112, 56), drop_last_clip=True)


def test_c3d_stays_in_eval_mode_and_training_defaults():
    with torch.device("meta"):
        model = C3DLSTMMethod().build_model().train()
    assert model.training and model.rnn.training and not model.c3d.training
    cfg = C3DLSTMMethod().training_defaults()
    assert (cfg.optimizer, cfg.lr, cfg.epochs, cfg.lr_step, cfg.lr_gamma, cfg.batch_size, cfg.weight_decay) == (
        "adam", 1e-4, 10, 5, 0.5, 6, 0.0)
    assert C3DLSTMMethod().input_spec().rgb_normalisation == "imagenet"
    assert C3DLSTMMethod().pretrained_files == {"c3d": "c3d.pickle"}
