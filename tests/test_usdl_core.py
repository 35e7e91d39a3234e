"""USDL and CoRe adapters: heads against the originals' golden outputs, hand-worked targets.

Golden fixtures ``tests/golden/usdl.*`` and ``tests/golden/core.*`` were produced by the
ORIGINAL code (nzl-thu/MUSDL ``Evaluator`` / ``proc_label`` / ``compute_score`` /
``compute_loss``; yuxumin/CoRe ``I3D_backbone.forward`` with a stub backbone, ``RegressTree``,
``Group_helper``, ``network_forward_train`` / ``network_forward_test``), see the ``.md`` files.
The I3D backbone itself is tested in the backbone's own tests; here a stub stands in for it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict
from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError, ConfigError
from methods.core import (CoReLoss, CoReMethod, CoReModel, RegressTree, decode_delta, group_intervals,
                          group_targets, load_core_training_checkpoint, pair_abs_differences)
from methods.usdl import (USDLLoss, USDLMethod, USDLModel, decode_distribution, load_usdl_training_checkpoint,
                          soft_label)


class MeanStub(nn.Module):
    """Backbone stand-in (same as the golden script's): temporal mean, flatten, first 1024 values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=2).flatten(1)[:, :1024]


class CountingStub(nn.Module):
    """(B, 3, L, H, W) -> (B, 1024): a fixed function of the clip; counts calls and batch sizes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.bn = nn.BatchNorm1d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return x.mean(dim=(1, 3, 4)).repeat(1, 1024 // x.shape[2] + 1)[:, :1024]


def _usdl_method(label_range=(0.0, 4.0), **options) -> USDLMethod:
    return USDLMethod(options, label_range=label_range)


def _core_method(label_range=(0.0, 4.0), **options) -> CoReMethod:
    return CoReMethod(options, label_range=label_range)


# =========================================================================== USDL
def _save_usdl_ckpt(tmp_path, evaluator_state, name="USDL.pt"):
    path = tmp_path / name
    torch.save({"epoch": 3, "i3d": {}, "evaluator": {f"module.{k}": v for k, v in evaluator_state.items()},
                "optimizer": {}, "rho_best": 0.5}, path)
    return path


@pytest.mark.parametrize("case", ["mtl101", "pfed5_101", "pfed5_21"])
def test_usdl_head_matches_original(tmp_path, case):
    meta, outs = load_golden("usdl")
    c, exp = meta["cases"][case], outs[case]
    model = USDLModel(ClipGeometry(n_subclips=10, subclip_len=16, rgb_size=8), bins=c["bins"], backbone=MeanStub())
    # original layout: Evaluator.state_dict() keys evaluator.layer{1,2,3}.*, DataParallel 'module.' prefix
    state = seeded_state_dict(model.evaluator.state_dict(), c["weight_seed"])
    assert sorted(state) == sorted(f"evaluator.layer{i}.{p}" for i in (1, 2, 3) for p in ("weight", "bias"))
    info = load_usdl_training_checkpoint(model, _save_usdl_ckpt(tmp_path, state))
    assert info["stripped_module_prefix"] and info["bins"] == c["bins"]
    model.eval()
    lr = tuple(c["label_range"])
    method = _usdl_method(lr, bins=c["bins"], soft_label_sigma=c["sigma"])
    with torch.no_grad():
        probs = model.head(inputs_of(c)["clip_feats"])
    assert_matches_golden(probs, exp["probs"], c["atol"], f"USDL probs {case}")
    soft = method.soft_target(torch.tensor(c["scores"]))
    assert_matches_golden(soft, exp["soft_label"], 1e-6, f"USDL soft label {case}")
    loss = USDLLoss()(probs, soft)
    assert_matches_golden(loss.reshape(1), exp["kl_loss"], 1e-6, f"USDL KLDivLoss {case}")
    pred = method.decode(probs, {})
    assert_matches_golden(pred, exp["pred_argmax"], 1e-4, f"USDL argmax score {case}")


def test_usdl_soft_label_hand_worked():
    # score 2 on (0, 4), 5 bins, sigma 1: mu = 2; weights exp(-(k-2)^2 / 2) = e^-2, e^-0.5, 1, e^-0.5, e^-2
    w = [math.exp(-2), math.exp(-0.5), 1.0, math.exp(-0.5), math.exp(-2)]
    expected = [x / sum(w) for x in w]  # 0.0544887, 0.2442013, 0.4026199, 0.2442013, 0.0544887
    got = soft_label(torch.tensor([2.0]), 5, (0.0, 4.0), 1.0)[0]
    assert np.allclose(got.numpy(), expected, atol=1e-7)
    assert np.allclose(got.numpy(), [0.0544887, 0.2442013, 0.4026199, 0.2442013, 0.0544887], atol=1e-7)
    # score 1 on (0, 4), 101 bins, sigma 5: mu = 25 bins; peak 1 / sum_k exp(-(k-25)^2/50) = 0.07978847
    got = soft_label(torch.tensor([1.0]), 101, (0.0, 4.0), 5.0)[0]
    assert abs(float(got[25]) - 0.07978847) < 1e-7 and abs(float(got[20]) - 0.04839415) < 1e-7
    assert abs(float(got[30]) - float(got[20])) < 1e-9 and int(got.argmax()) == 25
    # UNBC (0, 10), 11 bins: score 7 -> peak at bin 7
    assert int(soft_label(torch.tensor([7.0]), 11, (0.0, 10.0), 1.0).argmax()) == 7


def test_usdl_kl_is_element_mean():
    probs = torch.softmax(torch.randn(3, 7, generator=torch.Generator().manual_seed(0)), dim=1)
    target = soft_label(torch.tensor([0.0, 2.0, 4.0]), 7, (0.0, 4.0), 1.0)
    pointwise = torch.where(target > 0, target * (torch.log(target) - torch.log(probs)), torch.zeros(()))
    assert torch.allclose(USDLLoss()(probs, target), pointwise.sum() / (3 * 7), atol=1e-7)
    assert not torch.allclose(USDLLoss()(probs, target), pointwise.sum() / 3)  # not 'batchmean'


def test_usdl_decoding_argmax_and_expectation():
    probs = torch.tensor([[0.1, 0.6, 0.3, 0.0, 0.0], [0.0, 0.0, 0.2, 0.2, 0.6]])
    # bins 0..4 on (0, 4): argmax bins 1 and 4; expectation 0.6 + 0.6 = 1.2 and 0.4 + 0.6 + 2.4 = 3.4
    assert decode_distribution(probs, (0.0, 4.0), "argmax").tolist() == [1.0, 4.0]
    assert np.allclose(decode_distribution(probs, (0.0, 4.0), "expectation").numpy(), [1.2, 3.4])
    # on (0, 10) the bins are 0, 2.5, 5, 7.5, 10
    assert decode_distribution(probs, (0.0, 10.0), "argmax").tolist() == [2.5, 10.0]
    with pytest.raises(ConfigError):
        decode_distribution(probs, (0.0, 4.0), "median")


def test_usdl_forward_averages_subclips_one_call_each():
    g = ClipGeometry(n_subclips=3, subclip_len=4, rgb_size=6)
    stub = CountingStub()
    model = USDLModel(g, bins=11, backbone=stub).eval()
    rgb = torch.randn(2, 3, 12, 6, 6, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(rgb)
        feats = torch.stack([stub(rgb[:, :, 4 * k:4 * k + 4]) for k in range(3)], 1)
        manual = model.evaluator(feats.mean(1))
    assert stub.calls[:3] == [2, 2, 2]  # one backbone call per sub-clip, as MUSDL's loop
    assert torch.allclose(out, manual, atol=1e-6) and torch.allclose(out.sum(1), torch.ones(2), atol=1e-6)
    with pytest.raises(ValueError):
        model(torch.randn(2, 3, 10, 6, 6))


def test_usdl_checkpoint_errors_and_load_changes_output(tmp_path):
    model = USDLModel(ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=6), bins=101, backbone=MeanStub()).eval()
    other = USDLModel(ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=6), bins=21, backbone=MeanStub())
    bad = _save_usdl_ckpt(tmp_path, seeded_state_dict(other.evaluator.state_dict(), 0), "bad.pt")
    with pytest.raises(CheckpointError, match="bad.pt.*layer3"):
        load_usdl_training_checkpoint(model, bad)
    torch.save({"i3d": {}}, tmp_path / "noeval.pt")
    with pytest.raises(CheckpointError, match="noeval.pt.*evaluator"):
        load_usdl_training_checkpoint(model, tmp_path / "noeval.pt")
    x = torch.randn(2, 4, 1024)
    before = model.head(x).detach()
    load_usdl_training_checkpoint(model, _save_usdl_ckpt(tmp_path, seeded_state_dict(model.evaluator.state_dict(), 5)))
    assert (model.head(x).detach() - before).abs().max() > 1e-3


def test_usdl_method_settings():
    m = _usdl_method()
    assert m.pretrained_files == {"backbone": "rgb_i3d_pretrained.pt"}
    assert m.options == {"bins": 101, "soft_label_sigma": 5.0, "decode": "argmax"}
    cfg = m.training_defaults()
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.batch_size, cfg.epochs, cfg.lr_step) == ("adam", 1e-4, 0.0, 4,
                                                                                                  100, 0)
    assert m.input_spec().rgb_normalisation == "imagenet" and m.input_spec().names == ("rgb",)
    with pytest.raises(ConfigError):
        USDLMethod({"bins": 1})
    with pytest.raises(ConfigError):
        USDLMethod({"decode": "mode"})
    # the loss target follows the dataset's label range (UNBC 0..10)
    unbc = _usdl_method((0.0, 10.0), bins=11, soft_label_sigma=1.0)
    assert int(unbc.soft_target(torch.tensor([3.0])).argmax()) == 3
    probs = torch.softmax(torch.randn(2, 11), 1)
    loss = unbc.loss(USDLLoss(), probs, {"label": torch.tensor([3.0, 9.0])})
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert m.learning_recipe["data"] == "tiny"


def test_usdl_evaluator_parameter_count():
    # counted on the original MUSDL Evaluator(output_dim=101, model_type='USDL') (golden json)
    meta, _ = load_golden("usdl")
    model = USDLModel(bins=101, backbone=MeanStub())
    n = sum(p.numel() for p in model.evaluator.parameters())
    assert n == meta["produced_by"]["evaluator_params_101_bins"] == 308325


# =========================================================================== CoRe
def _save_core_ckpt(tmp_path, regressor_state, name="best.pth"):
    path = tmp_path / name
    torch.save({"base_model": {}, "regressor": {f"module.{k}": v for k, v in regressor_state.items()},
                "optimizer": {}, "epoch": 1, "epoch_best": 1, "rho_best": 0.1, "L2_min": 1.0, "RL2_min": 1.0}, path)
    return path


def _core_golden_model(tmp_path, c):
    model = CoReModel(ClipGeometry(n_subclips=10, subclip_len=16, rgb_size=19), label_range=(0.0, c["score_range"]),
                      score_range=c["score_range"], backbone=MeanStub())
    state = seeded_state_dict(model.regressor.state_dict(), c["weight_seed"])
    load_core_training_checkpoint(model, _save_core_ckpt(tmp_path, state))
    model.set_groups(group_intervals(np.array(c["train_labels"]), c["score_range"]))
    return model.eval()


def _as_subclips(video, starts):
    """The original's 10 overlapping 16-frame windows laid end to end (the harness's sub-clips)."""
    return torch.cat([video[:, :, s:s + 16] for s in starts], dim=2)


@pytest.mark.parametrize("case", ["pfed5", "unbc"])
def test_core_matches_original(tmp_path, case):
    meta, outs = load_golden("core")
    c, exp = meta["cases"][case], outs[case]
    model = _core_golden_model(tmp_path, c)
    assert_matches_golden(model.groups, exp["groups"], 1e-5, f"CoRe groups {case}")
    x = inputs_of(c)
    q, e = _as_subclips(x["query"], c["clip_starts"]), _as_subclips(x["exemplar"], c["clip_starts"])
    lq, le = torch.tensor(c["query_labels"]), torch.tensor(c["exemplar_labels"])
    n = len(lq)
    with torch.no_grad():
        fq, fe = model.video_features(q), model.video_features(e)
        pairs = torch.cat([model.pair_feature(fq, fe, lq), model.pair_feature(fe, fq, le)], 0)
        out = model(q, e, le, label=lq)
    # golden rows: [query as exemplar (reverse) ; exemplar as exemplar (forward)]
    assert_matches_golden(pairs, exp["pair_features"], 1e-5, f"CoRe pair features {case}")
    assert_matches_golden(torch.cat([out["leaf_log_probs_rev"], out["leaf_log_probs"]]), exp["leaf_log_probs"],
                          1e-5, f"CoRe leaf log-probs {case}")
    assert_matches_golden(torch.cat([out["delta_rev"], out["delta"]]), exp["delta"], 1e-5, f"CoRe deltas {case}")
    loss = CoReLoss("original")(out, lq - le)
    assert_matches_golden(loss.reshape(1), exp["loss"], 1e-4, f"CoRe loss {case}")
    method = _core_method((0.0, c["score_range"]), outer_edges="original")
    batch = {"label": lq, "exemplar": {"label": le}}
    assert_matches_golden(method.decode(out, batch), exp["train_pred"], 1e-5, f"CoRe train decode {case}")
    votes = []
    for k, vl in enumerate(c["voter_labels"]):
        ex = _as_subclips(x[f"voter{k}"], c["clip_starts"])
        with torch.no_grad():
            o = method.forward(model, {"rgb": q, "label": lq, "exemplar": {"rgb": ex, "label": torch.tensor(vl)}})
        assert "leaf_log_probs_rev" not in o  # eval: one ordering
        votes.append(method.decode(o, {"exemplar": {"label": torch.tensor(vl)}}))
    assert_matches_golden(torch.stack(votes).mean(0), exp["test_pred"], 1e-5, f"CoRe 3-voter mean {case}")
    cls, target = group_targets(torch.tensor(c["probe_deltas"]), model.groups, "original")
    assert_matches_golden(cls.float(), exp["probe_cls"], 0, f"CoRe leaf classes {case}")
    assert_matches_golden(target, exp["probe_target"], 1e-5, f"CoRe in-group targets {case}")
    assert n == 3


def test_core_groups_hand_worked():
    # labels 0, 1, 1, 3 -> pair |differences| (i < j) sorted D = [0, 1, 1, 2, 2, 3], P - 1 = 5;
    # positive leaf 8+i = [D[int(i/8*5)], D[int((i+1)/8*5)]], first left 0, last right score_range 4
    g = group_intervals(np.array([0.0, 1.0, 1.0, 3.0]), 4.0)
    pos = [[0, 0], [0, 1], [1, 1], [1, 1], [1, 2], [2, 2], [2, 2], [2, 4]]
    assert g[8:].tolist() == pos
    assert g[:8].tolist() == [[-b, -a] for a, b in reversed(pos)]
    uniq, mult = pair_abs_differences(np.array([0.0, 1.0, 1.0, 3.0]))
    assert uniq.tolist() == [0, 1, 2, 3] and mult.tolist() == [1, 2, 2, 1]
    groups = torch.tensor(g)
    d = torch.tensor([0.0, 1.5, 3.0, -1.0, -0.5, 4.0, -4.0])
    cls, target = group_targets(d, groups, "original")
    # 0 -> [0,1) pos 0; 1.5 -> [1,2) 0.5; 3 -> [2,4) 0.5; -1 -> (-2,-1] 1; -0.5 -> (-1,0] 0.5; +-4: no leaf -> 0
    assert cls.tolist() == [9, 12, 15, 3, 6, 0, 0]
    inside = target.max(dim=1).values
    assert inside.tolist() == [0.0, 0.5, 0.5, 1.0, 0.5, -1.0, -1.0]
    cls_c, target_c = group_targets(d, groups, "closed")
    assert cls_c.tolist() == [9, 12, 15, 3, 6, 15, 0]
    assert target_c[5, 15] == 1.0 and target_c[6, 0] == 0.0 and (target_c[:5] == target[:5]).all()
    assert int((target_c >= 0).sum()) == 7  # exactly one leaf per pair


def test_core_pair_differences_against_brute_force():
    lab = np.random.default_rng(3).integers(0, 11, size=40).astype(float)
    brute = np.sort([abs(lab[i] - lab[j]) for i in range(40) for j in range(i + 1, 40)])
    uniq, mult = pair_abs_differences(lab)
    assert np.array_equal(np.repeat(uniq, mult), brute)
    g = group_intervals(lab, 10.0)
    idx = [int((i / 8) * (len(brute) - 1)) for i in range(9)]
    assert g[8:, 0].tolist() == [0.0] + [brute[k] for k in idx[1:8]]
    assert g[8:, 1].tolist() == [brute[k] for k in idx[1:8]] + [10.0]


def test_core_decode_known_delta_relative_to_batch_exemplar():
    groups = torch.tensor(group_intervals(np.array([0.0, 1.0, 1.0, 3.0]), 4.0))
    logp = torch.full((2, 16), -10.0)
    logp[0, 12] = -0.1  # leaf [1, 2]
    logp[1, 10] = -0.1  # degenerate leaf [1, 1]
    delta = torch.zeros(2, 16)
    delta[0, 12], delta[1, 10] = 0.25, 0.3
    assert np.allclose(decode_delta(logp, delta, groups).numpy(), [1.25, 1.3])
    m = _core_method()
    out = {"leaf_log_probs": logp, "delta": delta, "groups": groups}
    a = m.decode(out, {"label": torch.tensor([9.0, 9.0]), "exemplar": {"label": torch.tensor([2.0, 0.0])}})
    b = m.decode(out, {"label": torch.tensor([9.0, 9.0]), "exemplar": {"label": torch.tensor([1.0, 3.0])}})
    assert np.allclose(a.numpy(), [3.25, 1.3]) and np.allclose(b.numpy(), [2.25, 4.3])  # label ignored


def test_core_exemplar_enters_the_pair_feature():
    g = ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=6)
    model = CoReModel(g, (0.0, 4.0), backbone=CountingStub()).eval()
    rng = torch.Generator().manual_seed(2)
    q, e1, e2 = (torch.randn(2, 3, 8, 6, 6, generator=rng) for _ in range(3))
    with torch.no_grad():
        f = model.video_features(torch.cat([q, e1]))
        feat = model.pair_feature(f[2:], f[:2], torch.tensor([1.0, 3.0]))
        o1 = model(q, e1, torch.tensor([1.0, 3.0]))
        o2 = model(q, e2, torch.tensor([1.0, 3.0]))
        o3 = model(q, e1, torch.tensor([2.0, 3.0]))
    assert torch.allclose(feat[:, -1], torch.tensor([0.25, 0.75]))  # s_exemplar / score_range
    assert torch.allclose(feat[:, 1024:2048], f[:2]) and torch.allclose(feat[:, :1024], f[2:])
    assert (o1["delta"] - o2["delta"]).abs().max() > 0  # another exemplar video
    assert (o1["delta"][0] - o3["delta"][0]).abs().max() > 0 and torch.equal(o1["delta"][1], o3["delta"][1])


def test_core_method_training_step_and_groups():
    g = ClipGeometry(n_subclips=2, subclip_len=4, rgb_size=6)
    m = _core_method()
    m.geometry = g
    model = CoReModel(g, (0.0, 4.0), m.score_range(), backbone=CountingStub())
    batch = {"rgb": torch.randn(3, 3, 8, 6, 6), "label": torch.tensor([0.0, 4.0, 2.0]),
             "exemplar": {"rgb": torch.randn(3, 3, 8, 6, 6), "label": torch.tensor([4.0, 0.0, 3.0])}}
    model.train()
    assert not model.backbone.bn.training  # fix_bn
    out = m.forward(model, batch)
    with pytest.raises(ConfigError, match="on_train_start"):
        m.loss(m.build_loss(), out, batch)
    m.on_train_start(model, np.array([0, 1, 1, 3, 4, 2], dtype=np.float32))
    assert model.groups[-1, 1] == 4.0 and model.groups[0, 0] == -4.0
    out = m.forward(model, batch)
    assert out["leaf_log_probs_rev"].shape == (3, 16)
    loss = m.loss(m.build_loss(), out, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.regressor.first_layer[0].weight.grad is not None
    assert torch.allclose(out["leaf_log_probs"].exp().sum(1), torch.ones(3), atol=1e-5)
    groups = m.param_groups(model, m.build_loss(), m.training_defaults())
    assert [gr["lr"] for gr in groups] == [1e-4, 1e-3]


def test_core_checkpoint_errors_and_load_changes_output(tmp_path):
    model = CoReModel(ClipGeometry(2, 4, 6), (0.0, 4.0), backbone=MeanStub())
    shallow = RegressTree(depth=4)
    with pytest.raises(CheckpointError, match="shallow.pth"):
        load_core_training_checkpoint(model, _save_core_ckpt(tmp_path, shallow.state_dict(), "shallow.pth"))
    torch.save({"base_model": {}}, tmp_path / "noreg.pth")
    with pytest.raises(CheckpointError, match="noreg.pth.*regressor"):
        load_core_training_checkpoint(model, tmp_path / "noreg.pth")
    x = torch.randn(2, 2049)
    before = model.regressor(x)[1].detach()
    load_core_training_checkpoint(model, _save_core_ckpt(tmp_path, seeded_state_dict(model.regressor.state_dict(), 4)))
    assert (model.regressor(x)[1].detach() - before).abs().max() > 1e-3


def test_core_method_settings_and_parameter_count():
    m = _core_method((0.0, 10.0))
    assert m.score_range() == 10.0 and _core_method(score_range=30.0).score_range() == 30.0
    assert m.pretrained_files == {"backbone": "model_rgb.pth"} and m.exemplars.test_voters == 10
    cfg = m.training_defaults()
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.epochs, cfg.lr_step) == ("adam", 1e-3, 0.0, 200, 0)
    assert m.deviations_from_paper() == {} and _core_method(outer_edges="original").deviations_from_paper()
    # counted on the original CoRe RegressTree(2049, 256, 5) (golden json)
    meta, _ = load_golden("core")
    n = sum(p.numel() for p in RegressTree().parameters())
    assert n == meta["produced_by"]["regressor_params"] == 2510382
    keys = set(RegressTree().state_dict())
    assert {"first_layer.0.weight", "feature_layers.3.0.weight", "clf_layers.3.weight", "reg_layer.bias"} <= keys


# =========================================================================== with the real I3D backbone
def _i3d_file(tmp_path, encoder, name, layout, seed=3, classes=400):
    """A seeded I3D state dict in an ORIGINAL layout (piergiaj keys + logits head, or hassony2 keys)."""
    i3d = pytest.importorskip("methods.backbones.i3d")
    template = dict(encoder.state_dict())
    template["logits.conv3d.weight"] = torch.zeros(classes, 1024, 1, 1, 1)
    template["logits.conv3d.bias"] = torch.zeros(classes)
    state = seeded_state_dict(template, seed)
    if layout == "hassony2":
        state = {i3d.project_to_hassony2_key(k): v for k, v in state.items()}
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_usdl_end_to_end_with_i3d(tmp_path):
    pytest.importorskip("methods.backbones.i3d")
    g = ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=32)
    m = USDLMethod({"bins": 21}, geometry=g, label_range=(0.0, 4.0))
    model = m.build_model().eval()
    assert model.backbone.variant == "piergiaj"
    batch = {"rgb": torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0)),
             "label": torch.tensor([1.0, 3.0])}
    with torch.no_grad():
        before = m.forward(model, batch)
    path = _i3d_file(tmp_path, model.backbone, "rgb_i3d_pretrained.pt", "piergiaj", classes=157)
    info = m.load_pretrained(model, {"backbone": path})
    assert info["backbone"]["layout"] == "piergiaj" and info["backbone"]["dropped_head"]["classes"] == 157
    with torch.no_grad():
        out = m.forward(model, batch)
    assert out.shape == (2, 21) and (out - before).abs().max() > 1e-4
    pred = m.predict(model, batch)
    assert pred.shape == (2,) and ((pred >= 0) & (pred <= 4)).all()
    with pytest.raises(ConfigError):
        m.load_pretrained(model, {"rgb": path})


def test_core_end_to_end_with_i3d(tmp_path):
    pytest.importorskip("methods.backbones.i3d")
    g = ClipGeometry(n_subclips=2, subclip_len=8, rgb_size=32)
    m = CoReMethod(geometry=g, label_range=(0.0, 10.0))
    model = m.build_model()
    assert model.backbone.variant == "core" and model.score_range == 10.0
    m.on_train_start(model, np.array([0, 2, 5, 5, 7, 10], dtype=np.float32))
    rng = torch.Generator().manual_seed(1)
    batch = {"rgb": torch.randn(2, 3, 16, 32, 32, generator=rng), "label": torch.tensor([1.0, 9.0]),
             "exemplar": {"rgb": torch.randn(2, 3, 16, 32, 32, generator=rng), "label": torch.tensor([4.0, 6.0])}}
    model.eval()
    with torch.no_grad():
        before = m.forward(model, batch)["delta"]
    path = _i3d_file(tmp_path, model.backbone, "model_rgb.pth", "hassony2")
    info = m.load_pretrained(model, {"backbone": path})
    assert info["backbone"]["layout"] == "hassony2"
    with torch.no_grad():
        out = m.forward(model, batch)
    assert (out["delta"] - before).abs().max() > 1e-4
    model.train()
    loss = m.loss(m.build_loss(), m.forward(model, batch), batch)
    assert torch.isfinite(loss)
