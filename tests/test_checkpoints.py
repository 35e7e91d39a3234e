"""Loading the authors' checkpoints: original layouts, safety, shape adaptation.

The files are synthesised here in the ORIGINAL layouts (key names, prefixes,
top-level dict structure, pickled ``__main__.RecorderMeter``, CUDA storage
tags), from the facts in ../shared/reference/originals*.md, so the tests run
without the real (large, separately distributed) files.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError, ConfigError
from methods.backbones.former_dfer import FormerDFEREncoder, load_former_dfer_checkpoint
from methods.backbones.slowonly import SlowOnlyEncoder, load_pose_only_checkpoint
from methods.checkpoints import RecorderMeter, load_qafe_training_checkpoint, read_checkpoint
from methods.former_dfer import FormerDFERMethod
from methods.qafe_net import QAFENet, QAFENetMethod

TINY = ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=40, heatmap_size=14)
PAPER = ClipGeometry()


# ----------------------------------------------------------------- original-layout writers
class _OrigRecorderMeter:
    """Stands in for main_DFEW.py's RecorderMeter: pickled as ``__main__.RecorderMeter``."""

    def __init__(self, total_epoch: int) -> None:
        self.total_epoch = total_epoch
        self.current_epoch = 3
        self.epoch_losses = np.arange(total_epoch * 2, dtype=np.float32).reshape(total_epoch, 2)
        self.epoch_accuracy = np.full((total_epoch, 2), 55.5, dtype=np.float32)


@pytest.fixture
def main_recorder(monkeypatch):
    """Make ``_OrigRecorderMeter`` picklable as ``__main__.RecorderMeter``."""
    cls = type("RecorderMeter", (_OrigRecorderMeter,), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "RecorderMeter", cls, raising=False)
    return cls


def save_as_cuda(obj, path: Path, monkeypatch) -> None:
    """torch.save with every storage tagged 'cuda:0', as a file written on a GPU."""
    with monkeypatch.context() as m:
        m.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
        torch.save(obj, path)


def former_dfer_original_state(encoder: FormerDFEREncoder) -> dict[str, torch.Tensor]:
    """``encoder``'s tensors under Former-DFER's own key names (DataParallel, 'spatial_transformer', fc)."""
    out = {}
    for k, v in encoder.state_dict().items():
        k = k.replace("t_former.temporal_transformer", "t_former.spatial_transformer")
        out["module." + k] = v.clone()
    out["module.fc.weight"] = torch.randn(7, 512)
    out["module.fc.bias"] = torch.randn(7)
    return out


def write_former_dfer_file(path: Path, state: dict, recorder_cls, monkeypatch) -> Path:
    ckpt = {
        "epoch": 37,
        "state_dict": state,
        "best_acc": torch.tensor(55.25),  # top1.avg, a CUDA tensor in the original
        "optimizer": {"state": {0: {"momentum_buffer": torch.zeros(3)}},
                      "param_groups": [{"lr": 0.01, "momentum": 0.9, "params": [0]}]},
        "recorder": recorder_cls(100),
    }
    save_as_cuda(ckpt, path, monkeypatch)
    return path


def write_pose_only_file(path: Path, encoder: SlowOnlyEncoder, extra: dict | None = None,
                         drop: tuple = ()) -> Path:
    """PYSKL/mmcv layout: {'meta', 'state_dict'}; 'backbone.*' with a 17-channel stem, 'cls_head.fc_cls'."""
    sd = {"backbone." + k: v.clone() for k, v in encoder.state_dict().items() if k not in drop}
    sd["backbone.conv1.conv.weight"] = torch.randn(32, 17, 1, 7, 7)
    sd["cls_head.fc_cls.weight"] = torch.randn(60, 512)
    sd["cls_head.fc_cls.bias"] = torch.randn(60)
    sd.update(extra or {})
    torch.save({"meta": {"mmcv_version": "1.5.0", "epoch": 18, "CLASSES": None}, "state_dict": sd}, path)
    return path


def _inputs(geom: ClipGeometry, batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, geom.clip_len, geom.rgb_size, geom.rgb_size, generator=g)
    hm = torch.rand(batch, 3, geom.clip_len, geom.heatmap_size, geom.heatmap_size, generator=g)
    return rgb, hm


def _randomise_bn_stats(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


# ----------------------------------------------------------------- safe reading
def test_recorder_meter_file_loads_and_cuda_tensors_map_to_cpu(tmp_path, main_recorder, monkeypatch):
    torch.manual_seed(0)
    enc = FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len)
    path = write_former_dfer_file(tmp_path / "FormerDFER-DFEWset1-model_best.pth",
                                  former_dfer_original_state(enc), main_recorder, monkeypatch)
    if not torch.cuda.is_available():  # the simulation is faithful: a naive load fails here
        with pytest.raises(RuntimeError):
            torch.load(path, weights_only=False)
    ckpt = read_checkpoint(path)
    assert isinstance(ckpt["recorder"], RecorderMeter)
    np.testing.assert_array_equal(ckpt["recorder"].epoch_losses, main_recorder(100).epoch_losses)
    assert ckpt["recorder"].epoch_accuracy.dtype == np.float32
    assert ckpt["best_acc"].device.type == "cpu" and ckpt["best_acc"].item() == pytest.approx(55.25)
    assert ckpt["state_dict"]["module.fc.weight"].shape == (7, 512)


def test_numpy_scalar_best_acc_loads(tmp_path, main_recorder):
    path = tmp_path / "class_0-model_best.pth"
    torch.save({"best_acc": np.float64(0.75), "recorder": main_recorder(4)}, path)
    ckpt = read_checkpoint(path)
    assert float(ckpt["best_acc"]) == 0.75


class Evil:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = Evil()
    evil.marker = marker
    path = tmp_path / "FormerDFER-DFEWset1-model_best.pth"
    torch.save({"state_dict": {}, "recorder": evil}, path)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    assert str(path) in str(exc.value) and "system" in str(exc.value)
    assert not marker.exists()
    # through the method API too
    method = FormerDFERMethod(geometry=TINY)
    with pytest.raises(CheckpointError, match="refusing"):
        method.load_pretrained(method.build_model(), {"rgb": path})
    assert not marker.exists()


def test_unknown_main_class_is_refused(tmp_path, monkeypatch):
    cls = type("Evil", (), {"__module__": "__main__"})
    monkeypatch.setattr(sys.modules["__main__"], "Evil", cls, raising=False)
    path = tmp_path / "pose_only.pth"
    torch.save({"state_dict": {}, "meta": cls()}, path)
    with pytest.raises(CheckpointError) as exc:
        read_checkpoint(path)
    assert str(path) in str(exc.value) and "__main__.Evil" in str(exc.value)


def test_missing_file_names_path_and_original(tmp_path):
    path = tmp_path / "weights" / "former.pth"
    with pytest.raises(CheckpointError) as exc:
        load_former_dfer_checkpoint(FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len), path)
    assert str(path) in str(exc.value) and "FormerDFER-DFEWset1-model_best.pth" in str(exc.value)
    with pytest.raises(CheckpointError) as exc:
        QAFENetMethod(geometry=TINY).load_pretrained(QAFENet(TINY), {"heatmap": tmp_path / "nope.pth"})
    assert "nope.pth" in str(exc.value) and "pose_only.pth" in str(exc.value)


def test_corrupt_file_is_a_checkpoint_error(tmp_path):
    path = tmp_path / "pose_only.pth"
    path.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with pytest.raises(CheckpointError, match="pose_only.pth"):
        read_checkpoint(path)


# ----------------------------------------------------------------- Former-DFER loading
def test_former_dfer_original_layout_loads_into_qafe_net(tmp_path, main_recorder, monkeypatch):
    torch.manual_seed(1)
    source = FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len)
    _randomise_bn_stats(source, 1)
    path = write_former_dfer_file(tmp_path / "FormerDFER-DFEWset1-model_best.pth",
                                  former_dfer_original_state(source), main_recorder, monkeypatch)
    method = QAFENetMethod(geometry=TINY)
    torch.manual_seed(2)
    model = method.build_model().eval()
    torch.manual_seed(2)
    reference = method.build_model().eval()
    reference.rgb_encoder.load_state_dict(source.state_dict(), strict=True)
    rgb, hm = _inputs(TINY)
    with torch.no_grad():
        before = model(rgb, hm)
        info = method.load_pretrained(model, {"rgb": path})
        after = model(rgb, hm)
        expected = reference(rgb, hm)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    rgb_info = info["rgb"]
    assert rgb_info["strict"] and rgb_info["stripped_module_prefix"]
    assert rgb_info["renamed"] == len([k for k in source.state_dict() if k.startswith("t_former.temporal")])
    assert rgb_info["dropped"] == ["fc.weight [7, 512]", "fc.bias [7]"]
    assert rgb_info["epoch"] == 37 and rgb_info["best_acc"] == pytest.approx(55.25)
    assert rgb_info["adapted"] == {}
    assert "heatmap_encoder" in info["random_init"] and "decoder" in info["random_init"]
    import json
    json.dumps(info)


def test_former_dfer_baseline_loads(tmp_path, main_recorder, monkeypatch):
    torch.manual_seed(3)
    source = FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len)
    path = write_former_dfer_file(tmp_path / "f.pth", former_dfer_original_state(source), main_recorder, monkeypatch)
    method = FormerDFERMethod(geometry=TINY)
    model = method.build_model().eval()
    rgb, _ = _inputs(TINY)
    with torch.no_grad():
        before = model(rgb)
        method.load_pretrained(model, {"rgb": path})
        after = model(rgb)
        feats = source.eval().encode_clip(rgb)
        expected = model.evaluator(feats).squeeze(-1).mean(1)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected)
    with pytest.raises(ConfigError):
        method.load_pretrained(model, {"heatmap": path})


def test_former_dfer_strict_key_check(tmp_path, main_recorder, monkeypatch):
    enc = FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len)
    state = former_dfer_original_state(enc)
    del state["module.s_former.layer4.1.bn2.weight"]
    state["module.s_former.extra.weight"] = torch.zeros(1)
    path = write_former_dfer_file(tmp_path / "f.pth", state, main_recorder, monkeypatch)
    with pytest.raises(CheckpointError) as exc:
        load_former_dfer_checkpoint(enc, path)
    assert "s_former.layer4.1.bn2.weight" in str(exc.value) and "s_former.extra.weight" in str(exc.value)


def _manual_bicubic(pos49: torch.Tensor) -> torch.Tensor:
    grid = pos49.reshape(1, 7, 7, 256).permute(0, 3, 1, 2)
    up = F.interpolate(grid, size=(14, 14), mode="bicubic", align_corners=False)
    return up.permute(0, 2, 3, 1).reshape(1, 196, 256)


def test_pos_embedding_49_to_196(tmp_path, main_recorder, monkeypatch):
    torch.manual_seed(4)
    enc224 = FormerDFEREncoder(224, 16)
    assert enc224.s_former.pos_embedding.shape == (1, 196, 256)
    state = former_dfer_original_state(enc224)
    pos49 = torch.randn(1, 49, 256)
    state["module.s_former.pos_embedding"] = pos49
    path = write_former_dfer_file(tmp_path / "FormerDFER-DFEWset1-model_best.pth", state, main_recorder,
                                  monkeypatch)

    method = QAFENetMethod(geometry=PAPER)  # default pos_embed_resize='interpolate'
    model = method.build_model()
    info = method.load_pretrained(model, {"rgb": path})
    torch.testing.assert_close(model.rgb_encoder.s_former.pos_embedding.data, _manual_bicubic(pos49))
    assert info["rgb"]["adapted"]["s_former.pos_embedding"]["from"] == [1, 49, 256]
    assert info["rgb"]["adapted"]["s_former.pos_embedding"]["to"] == [1, 196, 256]
    assert "bicubic" in info["rgb"]["adapted"]["s_former.pos_embedding"]["method"]
    # everything else loaded unchanged
    torch.testing.assert_close(model.rgb_encoder.s_former.conv1.weight, enc224.s_former.conv1.weight)

    strict = QAFENetMethod({"pos_embed_resize": "strict"}, geometry=PAPER)
    with pytest.raises(CheckpointError) as exc:
        strict.load_pretrained(strict.build_model(), {"rgb": path})
    msg = str(exc.value)
    assert "(1, 49, 256)" in msg and "(1, 196, 256)" in msg and str(path) in msg and "interpolate" in msg


def test_temporal_pos_embedding_16_frames_into_8(tmp_path, main_recorder, monkeypatch):
    torch.manual_seed(5)
    enc16 = FormerDFEREncoder(TINY.rgb_size, 16)
    path = write_former_dfer_file(tmp_path / "f.pth", former_dfer_original_state(enc16), main_recorder,
                                  monkeypatch)
    enc8 = FormerDFEREncoder(TINY.rgb_size, 8)
    info = load_former_dfer_checkpoint(enc8, path)
    torch.testing.assert_close(enc8.t_former.pos_embedding.data, enc16.t_former.pos_embedding.data[:, :9])
    assert info["adapted"]["t_former.pos_embedding"]["from"] == [1, 17, 512]
    with pytest.raises(CheckpointError, match=r"\(1, 17, 512\)"):
        load_former_dfer_checkpoint(FormerDFEREncoder(TINY.rgb_size, 8), path, pos_embed_resize="strict")


# ----------------------------------------------------------------- pose_only loading
def test_pose_only_original_layout_loads(tmp_path):
    torch.manual_seed(6)
    source = SlowOnlyEncoder()
    _randomise_bn_stats(source, 6)
    path = write_pose_only_file(tmp_path / "pose_only.pth", source)
    method = QAFENetMethod(geometry=TINY)
    torch.manual_seed(7)
    model = method.build_model().eval()
    torch.manual_seed(7)
    reference = method.build_model().eval()
    stem_before = model.heatmap_encoder.conv1.conv.weight.detach().clone()
    ref_state = {k: v for k, v in source.state_dict().items() if k != "conv1.conv.weight"}
    missing = reference.heatmap_encoder.load_state_dict(ref_state, strict=False).missing_keys
    assert missing == ["conv1.conv.weight"]
    rgb, hm = _inputs(TINY)
    with torch.no_grad():
        before = model(rgb, hm)
        info = method.load_pretrained(model, {"heatmap": path})
        after = model(rgb, hm)
        expected = reference(rgb, hm)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, expected, rtol=0, atol=0)
    # the stem conv stays random, its BN is loaded
    torch.testing.assert_close(model.heatmap_encoder.conv1.conv.weight, stem_before)
    torch.testing.assert_close(model.heatmap_encoder.conv1.bn.running_mean, source.conv1.bn.running_mean)
    h = info["heatmap"]
    assert h["random_init"] == ["conv1.conv.weight"]
    assert h["dropped"] == {"conv1.conv.weight": [32, 17, 1, 7, 7], "fc_cls.weight": [60, 512], "fc_cls.bias": [60]}
    assert "heatmap_encoder.conv1.conv.weight" in info["random_init"]
    assert "randomly initialised" in h["note"]


def test_pose_only_unexpected_or_missing_keys_fail(tmp_path):
    enc = SlowOnlyEncoder()
    bad = write_pose_only_file(tmp_path / "a.pth", enc, extra={"backbone.layer4.0.conv1.conv.weight": torch.zeros(1),
                                                              "data_preprocessor.mean": torch.zeros(3)})
    with pytest.raises(CheckpointError) as exc:
        load_pose_only_checkpoint(enc, bad)
    assert "layer4.0.conv1.conv.weight" in str(exc.value) and "data_preprocessor.mean" in str(exc.value)
    short = write_pose_only_file(tmp_path / "b.pth", enc, drop=("layer3.2.conv3.bn.weight",))
    with pytest.raises(CheckpointError, match="layer3.2.conv3.bn.weight"):
        load_pose_only_checkpoint(enc, short)


# ----------------------------------------------------------------- QAFE-Net training checkpoint
def test_official_training_checkpoint_loads(tmp_path, main_recorder):
    torch.manual_seed(8)
    source = QAFENet(TINY, rgb_layout="channel_major", pos_embed_stream="heatmap").eval()
    _randomise_bn_stats(source, 8)
    ckpt = {
        "epoch": 12,
        "model": {"module." + k: v for k, v in source.rgb_encoder.state_dict().items()},
        "evaluator": {"module." + k: v for k, v in source.evaluator.state_dict().items()},
        "SlowOnly": {"module.restnet3d." + k: v for k, v in source.heatmap_encoder.state_dict().items()},
        "decoder": {"module." + k: v for k, v in source.decoder.state_dict().items()},
        "best_acc": np.float64(0.7557),
        "optimizer": {"state": {}, "param_groups": [{"lr": 1e-3, "params": []}]},
        "recorder": main_recorder(100),
    }
    path = tmp_path / "class_0-model_best.pth"
    torch.save(ckpt, path)
    torch.manual_seed(9)
    model = QAFENet(TINY, rgb_layout="channel_major", pos_embed_stream="heatmap").eval()
    info = load_qafe_training_checkpoint(model, path)
    rgb, hm = _inputs(TINY)
    with torch.no_grad():
        torch.testing.assert_close(model(rgb, hm), source(rgb, hm), rtol=0, atol=0)
    assert info["epoch"] == 12 and info["best_acc"] == pytest.approx(0.7557) and info["notes"] == []
    assert info["parts"]["SlowOnly"]["stripped_wrapper_prefix"] == "restnet3d."
    paper_model = QAFENet(TINY)  # paper options: both deviations are noted
    notes = load_qafe_training_checkpoint(paper_model, path)["notes"]
    assert len(notes) == 2
    # a decoder of another depth does not fit
    with pytest.raises(CheckpointError, match="model.2"):
        load_qafe_training_checkpoint(QAFENet(TINY, fusion_blocks=2), path)


def test_numpy2_global_names_load(tmp_path):
    """A pickle written under numpy 2 names its globals numpy._core.multiarray.*: allowed too."""
    import zipfile

    src = tmp_path / "np1.pth"
    torch.save({"a": np.arange(5, dtype=np.float32), "s": np.float64(2.5)}, src)
    dst = tmp_path / "np2.pth"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_STORED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy.core.multiarray" in data
                data = data.replace(b"numpy.core.multiarray", b"numpy._core.multiarray")
            zout.writestr(item, data)
    ckpt = read_checkpoint(dst)
    np.testing.assert_array_equal(ckpt["a"], np.arange(5, dtype=np.float32))
    assert float(ckpt["s"]) == 2.5


def test_checkpoint_without_num_batches_tracked_loads(tmp_path, main_recorder, monkeypatch):
    enc = FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len)
    state = {k: v for k, v in former_dfer_original_state(enc).items() if not k.endswith("num_batches_tracked")}
    path = write_former_dfer_file(tmp_path / "old.pth", state, main_recorder, monkeypatch)
    load_former_dfer_checkpoint(FormerDFEREncoder(TINY.rgb_size, TINY.subclip_len), path)
    sl = SlowOnlyEncoder()
    p2 = write_pose_only_file(tmp_path / "pose_only.pth", sl,
                              drop=tuple(k for k in sl.state_dict() if k.endswith("num_batches_tracked")))
    assert load_pose_only_checkpoint(SlowOnlyEncoder(), p2)["random_init"] == ["conv1.conv.weight"]
