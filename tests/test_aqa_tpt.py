"""AQA-TPT adapter (methods/aqa_tpt.py): golden equality with the original PairModel and losses,
hand-worked ranking / group examples, snippet rule, checkpoint layout, optimiser groups."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict
from benchmark.api import ClipGeometry
from benchmark.errors import CheckpointError, ConfigError
from methods.aqa_tpt import (AQATPT, AQATPTMethod, CoReGroups, TPTLoss, decode_scores,
                             load_tpt_checkpoint, snippet_starts, temporal_ranking_loss)
from methods.core import group_intervals

META, GOLDEN = load_golden("aqa_tpt")


def _head_model(case: dict) -> AQATPT:
    n = case["inputs"]["query"]["shape"][1]
    return AQATPT(ClipGeometry(1, 8 + n - 1, 32, 16), starts=list(range(n)), num_queries=case["num_queries"],
                  d_model=case["d_model"], d_ffn=case["d_ffn"], backbone=None)


def _original_layout_file(tmp_path, model: AQATPT, seed: int):
    """The seeded weights in the original training-checkpoint container (DDP 'module.' prefix)."""
    sd = seeded_state_dict(model.head.state_dict(), seed)  # head keys = original PairModel keys
    path = tmp_path / "checkpoint_9.pth"
    torch.save({"model": {f"module.{k}": v for k, v in sd.items()}, "epoch": 9, "epoch_best": 4,
                "rho_best": 0.5, "RL2_min": 1.25}, path)
    return path


@pytest.mark.parametrize("case_name", sorted(META["cases"]))
def test_matches_original_golden(tmp_path, case_name):
    case = META["cases"][case_name]
    expected = GOLDEN[case_name]
    model = _head_model(case)
    info = load_tpt_checkpoint(model, _original_layout_file(tmp_path, model, case["weight_seed"]))
    assert info["parts"]["model"]["stripped_module_prefix"] and info["epoch"] == 9
    assert sum(p.numel() for p in model.head.parameters()) == case["param_count_original"]
    model.set_groups(group_intervals(np.asarray(case["train_labels"], np.float64), case["group_max"]))
    assert_matches_golden(model.group_bounds, expected["group_bounds"], 0.0, f"{case_name} group bounds")
    x = inputs_of(case)
    lab, ex = torch.tensor(case["label"]), torch.tensor(case["exemplar_label"])
    model.eval()
    atol = case["atol"]
    with torch.no_grad():
        ob = model.forward_features(x["query"], x["exemplar"], both=True)
        ot = model.forward_features(x["query"], x["exemplar"], both=False)
        terms = TPTLoss(case["margin"], case["var_weight"]).terms(ob, lab, ex)
    for tag, out in (("both", ob), ("test", ot)):
        a = out["attention"]
        assert_matches_golden(out["log_probs"], expected[f"log_probs_{tag}"], atol, f"{case_name} log_probs {tag}")
        assert_matches_golden(out["offsets"], expected[f"offsets_{tag}"], atol, f"{case_name} offsets {tag}")
        assert_matches_golden(a.reshape(a.shape[0], -1, a.shape[-1]), expected[f"attention_{tag}"], atol,
                              f"{case_name} attention {tag}")
    for term in ("cls", "reg", "hinge", "var", "total"):
        assert_matches_golden(terms[term], expected[f"loss_{term}"], atol * max(1.0, float(expected[f"loss_{term}"])),
                              f"{case_name} loss {term}")
    groups = CoReGroups(model.group_bounds)
    assert_matches_golden(groups.targets(ex - lab)[0].float(), expected["group_target_1"], 0, "group targets 1")
    assert_matches_golden(groups.targets(lab - ex)[0].float(), expected["group_target_2"], 0, "group targets 2")
    assert_matches_golden(decode_scores(ob, ex), expected["score_train"], atol, f"{case_name} train-time score")
    assert_matches_golden(decode_scores(ot, ex), expected["score_test"], atol, f"{case_name} test-time score")


def test_ranking_loss_hand_worked():
    # 3 snippets, 2 parts; columns are distributions over t = 1, 2, 3
    att = torch.tensor([[[0.7, 0.1], [0.2, 0.3], [0.1, 0.6]]])
    # centres 0.7 + 0.4 + 0.3 = 1.4 and 0.1 + 0.6 + 1.8 = 2.5
    hinge, var = temporal_ranking_loss(att, margin=1.0)
    # max(0, 1 - 1.1) + max(0, 1 - (1.4 - 1)) + max(0, 1 - (3 - 2.5)) = 0 + 0.6 + 0.5
    assert hinge.item() == pytest.approx(1.1, abs=1e-6)
    # part 0: .7 x .4 + .2 x .6 + .1 x 1.6 = .56; part 1: .1 x 1.5 + .3 x .5 + .6 x .5 = .6
    assert var.item() == pytest.approx(0.58, abs=1e-6)
    hinge2, _ = temporal_ranking_loss(att, margin=1.2)  # 0.1 + 0.8 + 0.7
    assert hinge2.item() == pytest.approx(1.6, abs=1e-6)
    # a single part has no ranking term (the original's loop over K - 1 pairs is empty)
    assert temporal_ranking_loss(att[:, :, :1], margin=1.0)[0].item() == 0.0


def test_core_groups_hand_worked():
    # labels 0, 1, 3 -> pair deltas sorted [1, 2, 3]; leaf 8 + i edges d[int(i / 8 * 2)], d[int((i + 1) / 8 * 2)]
    b = group_intervals(np.array([0.0, 1.0, 3.0]), 5.0)
    pos = [[0, 1], [1, 1], [1, 1], [1, 2], [2, 2], [2, 2], [2, 2], [2, 5]]
    assert b[8:].tolist() == pos
    assert b[:8].tolist() == [[-hi, -lo] for lo, hi in pos[::-1]]
    g = CoReGroups(b)
    cls, off = g.targets(torch.tensor([0.5, 1.0, -1.0, 3.0, 7.0]))
    # 0.5 in [0, 1); 1.0 first in [1, 2) (zero-width [1, 1] holds nothing); -1 in (-2, -1]; 3 in [2, 5);
    # 7 outside every leaf -> class 0 and no position target
    assert cls.tolist() == [8, 11, 4, 15, 0]
    assert off[0, 8].item() == pytest.approx(0.5) and off[1, 11].item() == 0.0
    assert off[2, 4].item() == pytest.approx(1.0) and off[3, 15].item() == pytest.approx(1 / 3)
    assert (off[4] == -1).all() and int((off >= 0).sum()) == 4
    # +-Max: in no leaf for the original rule; the outermost leaf with outer_edges="closed"
    cls_o, off_o = g.targets(torch.tensor([5.0, -5.0]))
    assert cls_o.tolist() == [0, 0] and (off_o == -1).all()
    cls_c, off_c = g.targets(torch.tensor([5.0, -5.0, 0.5]), outer_edges="closed")
    assert cls_c.tolist() == [15, 0, 8] and off_c[0, 15].item() == 1.0 and off_c[1, 0].item() == 0.0
    assert int((off_c >= 0).sum()) == 3
    lp = torch.full((2, 16), -5.0)
    lp[0, 11] = 0.0
    lp[1, 9] = 0.0
    offs = torch.full((2, 16), 0.25)
    # leaf 11 [1, 2]: 1 + 0.25; leaf 9 [1, 1] zero width: 1 + 0.25
    assert g.decode(lp, offs).tolist() == [1.25, 1.25]


def test_snippet_rule():
    assert snippet_starts(103) == list(range(0, 96, 5))  # the original start_idx for 103 frames
    assert snippet_starts(80, rule="stride") == list(range(0, 71, 5))  # 15 snippets
    s80 = snippet_starts(80)
    assert len(s80) == 20 and s80[0] == 0 and s80[-1] == 72 and s80[1] == 4  # 72 / 19 = 3.79
    assert snippet_starts(16, n_snippets=2) == [0, 8]
    with pytest.raises(ConfigError, match="shorter than one 8-frame snippet"):
        snippet_starts(6)
    with pytest.raises(ConfigError):
        snippet_starts(80, rule="other")


class _FakeI3D(nn.Module):
    """features(x) -> (M, 1024, 1, 2, 2): channel c = mean of the snippet x scale_c (+ BN to test freezing)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.linspace(-1, 1, 1024))
        self.bn = nn.BatchNorm3d(3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        m = self.bn(x).mean(dim=(1, 2, 3, 4))
        return (m[:, None] * self.scale[None]).reshape(-1, 1024, 1, 1, 1).expand(-1, -1, 1, 2, 2)


def test_snippet_features_and_method_hooks():
    g = ClipGeometry(2, 8, 8, 8)
    method = AQATPTMethod({"n_snippets": 3, "d_model": 64, "d_ffn": 32}, g)
    method.label_range = (0, 4)
    assert method.starts() == [0, 4, 8]
    model = AQATPT(g, method.starts(), 8, 5, 64, 32, backbone=_FakeI3D())
    rgb = torch.randn(2, 3, 16, 8, 8)
    model.eval()
    feats = model.snippet_features(rgb)
    want = torch.stack([rgb[:, :, s:s + 8].mean(dim=(1, 2, 3, 4)) for s in (0, 4, 8)], 1)
    bn = model.backbone.bn  # eval BN with default stats: x / sqrt(1 + eps)
    want = want[..., None] / (1 + bn.eps) ** 0.5 * model.backbone.scale
    torch.testing.assert_close(feats, want, rtol=1e-5, atol=1e-6)
    model.train()
    assert model.training and not model.backbone.bn.training  # fix_bn
    with pytest.raises(ConfigError, match="on_train_start"):
        method.decode(model(rgb, rgb), {"exemplar": {"label": torch.zeros(2)}})
    method.on_train_start(model, np.array([0, 1, 2, 4, 3, 1]))
    assert model.group_bounds[15, 1].item() == 4.0 and model.group_bounds[8, 0].item() == 0.0
    batch = {"rgb": rgb, "label": torch.tensor([1.0, 3.0]),
             "exemplar": {"rgb": torch.randn(2, 3, 16, 8, 8), "label": torch.tensor([2.0, 2.0])}}
    out = method.forward(model, batch)
    assert out["log_probs"].shape == (4, 16) and out["attention"].shape == (4, 2, 3, 5)
    loss = method.loss(method.build_loss(), out, batch)
    loss.backward()
    assert torch.isfinite(loss) and model.head.cls[0].weight.grad is not None
    model.eval()
    with torch.no_grad():
        out_t = method.forward(model, batch)
    score = method.decode(out_t, batch)
    assert score.shape == (2,) and out_t["log_probs"].shape == (2, 16)
    groups = CoReGroups(model.group_bounds)
    torch.testing.assert_close(score, batch["exemplar"]["label"] + groups.decode(out_t["log_probs"],
                                                                                 out_t["offsets"]))
    pg = method.param_groups(model, method.build_loss(), method.training_defaults())
    lrs = {grp["name"]: grp["lr"] for grp in pg}
    assert lrs == {"backbone": 1e-4, "action_decoder": 1e-4, "pair_encoder": 1e-4, "cls": 1e-3, "reg": 1e-3}
    ids = [id(p) for grp in pg for p in grp["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    cfg = method.training_defaults()
    assert cfg.optimizer == "adam" and cfg.weight_decay == 0 and cfg.lr_step == 0


def test_bad_checkpoint_raises_and_loading_changes_output(tmp_path):
    case = META["cases"]["readme"]
    model = _head_model(case)
    other = AQATPT(ClipGeometry(1, 27, 32, 16), starts=list(range(20)), d_model=256, d_ffn=512, backbone=None)
    bad = tmp_path / "wrong_width.pth"
    torch.save({"model": other.head.state_dict(), "epoch": 1}, bad)
    with pytest.raises(CheckpointError, match="wrong_width.pth.*shape mismatches"):
        load_tpt_checkpoint(model, bad)
    extra = tmp_path / "extra_key.pth"
    torch.save({**model.head.state_dict(), "weighed_norm.weight": torch.ones(3)}, extra)
    with pytest.raises(CheckpointError, match="extra_key.pth.*unexpected keys"):
        load_tpt_checkpoint(model, extra)
    x = inputs_of(case)
    model.eval()
    with torch.no_grad():
        before = model.forward_features(x["query"], x["exemplar"], both=False)["log_probs"].clone()
        load_tpt_checkpoint(model, _original_layout_file(tmp_path, model, case["weight_seed"]))
        after = model.forward_features(x["query"], x["exemplar"], both=False)["log_probs"]
    assert (before - after).abs().max() > 1e-2
    assert_matches_golden(after, GOLDEN["readme"]["log_probs_test"], case["atol"], "after load")


def test_options():
    m = AQATPTMethod()
    assert m.options["d_model"] == 512 and m.options["margin"] == 3.2
    assert AQATPTMethod({"d_model": 1024, "margin": 20.0}).deviations_from_paper() == {"d_model": 1024,
                                                                                       "margin": 20.0}
    assert m.pretrained_files == {"backbone": "model_rgb.pth"} and m.exemplars.test_voters == 10
    with pytest.raises(ConfigError):
        AQATPTMethod({"num_queries": 0})
    with pytest.raises(ConfigError, match="no pretrained role"):
        m.load_pretrained(nn.Module(), {"rgb": "x.pth"})


def test_build_model_with_i3d():
    pytest.importorskip("methods.backbones.i3d")
    g = ClipGeometry(2, 8, 32, 16)
    method = AQATPTMethod({"n_snippets": 2, "d_model": 64, "d_ffn": 32}, g)
    model = method.build_model().eval()
    with torch.no_grad():
        feats = model.snippet_features(torch.randn(1, 3, 16, 32, 32))
    assert feats.shape == (1, 2, 1024) and torch.isfinite(feats).all()


def test_backbone_from_training_checkpoint_and_model_rgb(tmp_path):
    i3d = pytest.importorskip("methods.backbones.i3d")
    g = ClipGeometry(2, 8, 32, 16)
    method = AQATPTMethod({"n_snippets": 2, "d_model": 64, "d_ffn": 32}, g)
    model = method.build_model()
    # original I3D_backbone layout: 'backbone.' + hassony2 I3D keys, with the 400-class conv3d_0c_1x1 head
    template = {f"backbone.{i3d.project_to_hassony2_key(k)}": v for k, v in model.backbone.state_dict().items()}
    template["backbone.conv3d_0c_1x1.conv3d.weight"] = torch.zeros(400, 1024, 1, 1, 1)
    template["backbone.conv3d_0c_1x1.conv3d.bias"] = torch.zeros(400)
    sd = seeded_state_dict(template, 21)
    path = tmp_path / "checkpoint_4.pth"
    torch.save({"model": model.head.state_dict(), "backbone": sd, "epoch": 4}, path)
    info = load_tpt_checkpoint(model, path)
    assert info["parts"]["backbone"]["dropped_head"] == ["logits.conv3d.bias", "logits.conv3d.weight"]
    w = "Mixed_4c.b1b.conv3d.weight"
    assert torch.equal(model.backbone.state_dict()[w], sd[f"backbone.{i3d.project_to_hassony2_key(w)}"])
    # model_rgb.pth (plain hassony2 state dict) through the method's pretrained role
    plain = tmp_path / "model_rgb.pth"
    torch.save({k[len("backbone."):]: v * 0.5 for k, v in sd.items()}, plain)
    out = method.load_pretrained(model, {"backbone": plain})
    assert out["backbone"]["layout"] == "hassony2" and out["random_init"] == ["head"]
    assert torch.equal(model.backbone.state_dict()[w], 0.5 * sd[f"backbone.{i3d.project_to_hassony2_key(w)}"])
    bad = tmp_path / "bad_backbone.pth"
    torch.save({"model": model.head.state_dict(), "backbone": {"conv3d_1a_7x7.conv3d.weight": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="bad_backbone.pth.*'backbone.'"):
        load_tpt_checkpoint(model, bad)

