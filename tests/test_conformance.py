"""Conformance: one parametrised suite over every registered method (in-tree or plugin).

A new method gets all of it for free: forward shapes at the tiny and the paper
geometry, a finite loss, one optimiser step that changes the weights, a
``model.pt`` round trip, and learning on synthetic data against a
label-shuffled control trained the same way.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch

from benchmark import registry
from benchmark.api import Method, random_batch
from benchmark.engine import make_optimizer
from benchmark.errors import MissingWeightsError
from benchmark.learning import LEARNING_MARGIN, generate_learning_dataset, learning_check, learning_recipes
from benchmark.protocols.pfed5 import CLIP_LEN
from benchmark.runs import build_method
from benchmark.scales import get_scale

METHODS = sorted(registry.available())
RECIPES = learning_recipes()


def _method(cls: type[Method], scale: str, options: dict | None = None) -> Method:
    """The method at the options and geometry a run at ``scale`` uses (:func:`benchmark.runs.build_method`)."""
    method, _, _ = build_method(cls, get_scale(scale), options or {}, {}, (0.0, 4.0))
    return method


def _batch(method: Method, batch: int) -> dict:
    """A batch as the harness builds it (with an exemplar per sample for contrastive methods)."""
    return random_batch(method, batch)


def _trainable(model) -> bool:
    return any(p.requires_grad for p in model.parameters())


@pytest.fixture(params=METHODS)
def method_cls(request) -> type[Method]:
    return registry.get_method(request.param)


def test_registered_and_documented(method_cls):
    assert method_cls.name in METHODS and method_cls.display_name and method_cls.reference
    for name, opt in method_cls.options_spec.items():
        assert opt.help, f"option {name} has no help text"
        if opt.choices is not None:
            assert opt.default in opt.choices
            assert opt.code_value is None or opt.code_value in opt.choices


@pytest.mark.parametrize("scale,batch", [("tiny", 3), ("paper", 1)])
def test_forward_shapes(method_cls, scale, batch):
    """One finite score per clip, at the tiny and at the paper geometry, whatever the raw output is."""
    m = _method(method_cls, scale)
    torch.manual_seed(0)
    model = m.build_model().eval()
    m.on_train_start(model, np.array([0.0, 1.0, 2.0, 4.0], np.float32))
    with torch.no_grad():
        out = m.predict(model, _batch(m, batch))
    assert out.shape == (batch,) and torch.isfinite(out).all()


def _protocol_settings() -> list[tuple[str, tuple[float, float]]]:
    """Each distinct (protocol, label range) of the dataset cards in ``datasets/``, except PFED5's
    80 frames with severity 0-4, which :func:`test_forward_shapes` runs at the paper geometry."""
    from benchmark.cards import load_card
    from benchmark.paths import datasets_dir
    from benchmark.protocols import get_protocol

    cards = [load_card(p.parent.name) for p in sorted(datasets_dir().glob("*/card.yaml"))]
    return sorted({(c.protocol, c.label_range) for c in cards
                   if (get_protocol(c.protocol).clip_len, c.label_range) != (CLIP_LEN, (0.0, 4.0))})


@pytest.mark.parametrize("protocol,label_range", _protocol_settings(), ids=lambda v: str(v))
def test_forward_under_every_protocols_clip_and_label_range(method_cls, protocol, label_range):
    """Every method runs every protocol's paper clip length in sub-clips (PFED5 80 = 5 x 16,
    UNBC 144 = 9 x 16; tiny frame sizes, every sub-clip kept) with the card's label range
    (severity 0-4, VAS 0-10), and one training step under it is finite."""
    import dataclasses

    from benchmark.protocols import get_protocol

    p = get_protocol(protocol)
    scale = dataclasses.replace(get_scale("tiny"), max_subclips=None)
    m, clip, _ = build_method(method_cls, scale, {}, {}, label_range, p.clip_len)
    spec = m.input_spec()
    assert m.geometry.n_subclips == (spec.clip_len or p.clip_len) // spec.subclip_len
    torch.manual_seed(0)
    model = m.build_model()
    lo, hi = label_range
    m.on_train_start(model, np.array([lo, (lo + hi) / 2, hi, lo], np.float32))
    batch = _batch(m, 2)
    batch["label"] = torch.tensor([lo, hi])
    if "exemplar" in batch:
        batch["exemplar"]["label"] = torch.tensor([hi, lo])
    model.eval()
    with torch.no_grad():
        out = m.predict(model, batch)
    assert out.shape == (2,) and torch.isfinite(out).all()
    if _trainable(model):
        model.train()
        loss = m.loss(m.build_loss(), m.forward(model, batch), batch)
        assert torch.isfinite(loss)


def test_scale_options_are_valid_options_and_never_the_papers(method_cls):
    """A scale's option values are real options with legal values, differ from the paper's, and the
    paper scale sets none (so a paper-scale run is the paper's options)."""
    assert "paper" not in method_cls.scale_options
    for scale, opts in method_cls.scale_options.items():
        get_scale(scale)  # a known scale
        resolved = method_cls.resolve_options(opts)
        for k, v in opts.items():
            assert v != method_cls.options_spec[k].default, f"{scale}: {k}={v!r} is the paper default already"
            assert resolved[k] == v
        assert get_scale(scale).options_for(method_cls, {}) == opts
        # the user's overrides win over the scale's
        k = next(iter(opts))
        assert get_scale(scale).options_for(method_cls, {k: method_cls.options_spec[k].default})[k] == \
            method_cls.options_spec[k].default


def test_paper_geometry_is_the_input_spec(method_cls):
    """At the paper scale the harness feeds exactly the sizes the method declares."""
    m = method_cls({})
    spec = m.input_spec()
    clip = get_scale("paper").resolve(spec, CLIP_LEN)
    assert clip.geometry.subclip_len == spec.subclip_len and clip.geometry.rgb_size == spec.rgb_size
    assert clip.geometry.clip_len == ((spec.clip_len or CLIP_LEN) // spec.subclip_len) * spec.subclip_len
    assert clip.rgb_resize == (spec.rgb_resize or (256, 256))
    tiny = get_scale("tiny").resolve(spec, CLIP_LEN)
    assert tiny.geometry.rgb_size >= spec.min_rgb_size and tiny.geometry.subclip_len >= spec.min_subclip_len
    assert min(tiny.rgb_resize) >= tiny.geometry.rgb_size


def test_loss_is_finite_and_one_step_changes_the_weights(method_cls):
    m = _method(method_cls, "tiny")
    torch.manual_seed(0)
    model, loss_fn = m.build_model().train(), m.build_loss()
    batch = _batch(m, 4)
    m.on_train_start(model, batch["label"].numpy())
    loss = m.loss(loss_fn, m.forward(model, batch), batch)
    assert loss.dim() == 0 and torch.isfinite(loss)
    cfg = m.training_defaults()
    opt = make_optimizer(m.param_groups(model, loss_fn, cfg), cfg)
    if not _trainable(model):
        assert opt is None  # nothing to optimise (the dummy): the engine skips training
        return
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt.zero_grad()
    loss.backward()
    opt.step()
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert changed, "no parameter changed after one optimiser step"


def test_model_file_round_trip(method_cls):
    m = _method(method_cls, "tiny")
    torch.manual_seed(1)
    model = m.build_model()
    m.on_train_start(model, np.array([0.0, 1.0, 4.0], np.float32))
    model.eval()
    batch = _batch(m, 2)
    buf = io.BytesIO()
    torch.save({"format": "qafe-bench-model", "state_dict": model.state_dict()}, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    torch.manual_seed(2)
    fresh_method = _method(method_cls, "tiny")
    fresh = fresh_method.build_model().eval()
    fresh.load_state_dict(loaded["state_dict"], strict=True)
    with torch.no_grad():
        assert torch.equal(m.predict(model, batch), fresh_method.predict(fresh, batch))


@pytest.mark.parametrize("name", [n for n in METHODS if registry.get_method(n).pretrained_files])
def test_original_layout_checkpoint_loads_and_changes_the_output(name, tmp_path):
    """Every released file a method names, written in its ORIGINAL layout (tests/_original_layouts.py),
    loads through the method's own ``load_pretrained`` at the tiny geometry, is recorded as loaded
    (JSON-able info, the role not left at random init) and changes the prediction."""
    from _original_layouts import ORIGINAL_FILE_WRITERS

    method_cls = registry.get_method(name)
    missing = set(method_cls.pretrained_files.values()) - set(ORIGINAL_FILE_WRITERS)
    assert not missing, f"add a writer for {sorted(missing)} to tests/_original_layouts.py"
    m = _method(method_cls, "tiny")
    torch.manual_seed(0)
    model = m.build_model()
    m.on_train_start(model, np.array([0.0, 1.0, 2.0, 4.0], np.float32))
    model.eval()
    batch = _batch(m, 2)
    with torch.no_grad():
        before = m.predict(model, batch)
    files = {role: ORIGINAL_FILE_WRITERS[name](tmp_path, 7) for role, name in method_cls.pretrained_files.items()}
    info = m.load_pretrained(model, files)
    json.dumps(info)
    assert not set(files) & set(info.get("random_init", [])), info
    model.eval()
    with torch.no_grad():
        after = m.predict(model, batch)
    assert torch.isfinite(after).all()
    assert float((after - before).abs().max()) > 1e-4, "loading the original checkpoint did not change the output"


@pytest.mark.parametrize("name", [n for n in METHODS if registry.get_method(n).exemplars is not None])
def test_exemplar_methods_score_relative_to_the_exemplar(name):
    """A contrastive method's decoded score moves with its exemplar's label (it is relative to it)."""
    m = _method(registry.get_method(name), "tiny")
    torch.manual_seed(0)
    model = m.build_model().eval()
    m.on_train_start(model, np.array([0.0, 1.0, 2.0, 3.0, 4.0], np.float32))
    batch = _batch(m, 2)
    shifted = {**batch, "exemplar": {**batch["exemplar"], "label": batch["exemplar"]["label"] + 1.0}}
    with torch.no_grad():
        a, b = m.predict(model, batch), m.predict(model, shifted)
    assert not torch.allclose(a, b)


# ------------------------------------------------------------------ learning
# Every learnable in-tree method must learn the synthetic severity from motion: its
# test rho x 100 must beat the same recipe trained on shuffled labels by
# LEARNING_MARGIN (30) points. Recipes, dataset variants and their rationale:
# benchmark/learning.py; re-measure with `python scripts/learning_check.py`.
NON_LEARNERS = {"dummy"}  # predicts the training mean by design (tests/test_runs.py): rho undefined
# The learning checks in the README's test run (the others: `tox -e learning`, which .ci/run also runs).
FAST_LEARNING = set(os.environ.get("QAFE_BENCH_LEARNING", "qafe_net").split(",")) \
    if os.environ.get("QAFE_BENCH_LEARNING") != "all" else set(RECIPES)


def test_every_in_tree_method_has_a_learning_check():
    in_tree = {n for n in METHODS if registry.get_method(n).__module__.startswith("methods.")}
    unchecked = in_tree - NON_LEARNERS - set(RECIPES)
    assert not unchecked, "give the method a learning_recipe that learns"
    # a recipe that CI does not assert says why
    assert all(r["asserted"] or r.get("why") for r in RECIPES.values())


@pytest.fixture(scope="session")
def learning_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    made = {}

    def get(variant: str):
        if variant not in made:
            made[variant] = generate_learning_dataset(root / variant, variant)
        return made[variant]

    return get


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("name", sorted(n for n, r in RECIPES.items() if r["asserted"] and n in FAST_LEARNING))
def test_learns_severity_from_motion_beyond_shuffled_labels(name, learning_datasets, tmp_path):
    check = learning_check(name, learning_datasets(RECIPES[name]["data"]), tmp_path / "runs")
    assert check["status"] == {"none": "ok", "shuffled_labels": "ok"}, check
    assert check["margin"] >= LEARNING_MARGIN, check["rho_x100"]


def test_learning_cost_estimate_counts_the_checks_steps():
    """``estimate_learning_cost`` scales a timed step to the check's two runs: 6 epochs x 1 rep x
    ceil(200 / batch) steps each (the dummy: batch 4 -> 300 steps, no optimiser)."""
    from benchmark.learning import LEARNING_TRAINING, estimate_learning_cost

    e = estimate_learning_cost("dummy", steps=1)
    assert e["batch_size"] == 4 and e["steps_per_run"] == LEARNING_TRAINING["epochs"] * 1 * 50 == 300
    assert e["estimate_s"] == pytest.approx(2 * (300 * e["step_s"] + 25 * e["eval_batch_s"]))


# ------------------------------------------------------------------ overfit
# Every learnable method must memorise 8 clips with distinct labels, scored in eval mode through
# the engine's evaluation path (benchmark.learning.overfit_check): the proof that its loss, parameter
# groups, optimiser, frozen parts and BatchNorm mode train in this harness at all, built as a run
# without any released file builds it (its from-scratch policy applied). Steps per method: its
# learning recipe's ``overfit_steps``.
#: Methods that refuse to train without a released file (their from-scratch policy) run the check with
#: a stand-in file in the original layout: the recipe as released (C3D-LSTM: a frozen C3D extractor, only
#: the LSTM learns). The checks that take more than about 25 s on 2 CPU cores (measured 2026-12-07:
#: AQA-TPT 145 s, TraMP-Former 70 s, CoRe 43 s, IAL-GCA 29 s; C3D-LSTM about 5 s a step even frozen,
#: its 16 x 112 x 112 sub-clips fixed by fc6) run with the learning checks (`tox -e learning`, which
#: .ci/run runs after the suite), so that `tox -e test` stays within its 20 minutes; the others (QAFE-Net
#: 32 s and less) run in `tox -e test`.
HEAVY_OVERFIT = {"c3d_lstm", "aqa_tpt", "tramp_former", "core", "ial_gca", "r3d_34"}  # R3D-34: R3D-18's code, 21 s

_OVERFIT: dict = {}


def _overfit(name: str, tmp_path) -> dict:
    """The method's overfit check (once per session: the control test below reads USDL's again)."""
    from benchmark.learning import overfit_check

    if name not in _OVERFIT:
        _OVERFIT[name] = overfit_check(name, steps=int(RECIPES[name]["overfit_steps"]),
                                       weights=_stand_in_weights(name, tmp_path))
    return _OVERFIT[name]


def _stand_in_weights(name: str, folder) -> dict:
    """Role -> a stand-in file for the roles a refusing method cannot train without: the original
    layout (tests/_original_layouts.py) with variance-preserving random weights (Kaiming normal,
    zero biases), so that a frozen extractor passes informative features, as released weights do."""
    from _original_layouts import ORIGINAL_FILE_WRITERS

    cls = registry.get_method(name)
    roles = {a.role for a in cls.weights_assumptions if a.policy == "refuse"}
    out = {}
    for role in roles:
        path = ORIGINAL_FILE_WRITERS[cls.pretrained_files[role]](folder, 0)
        sd = torch.load(path, weights_only=True)
        for key, value in sd.items():
            if key.endswith("weight") and value.dim() > 1:
                torch.nn.init.kaiming_normal_(value, nonlinearity="relu")
            elif key.endswith("bias"):
                value.zero_()
        torch.save(sd, path)
        out[role] = path
    return out


@pytest.mark.overfit
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.learning) if n in HEAVY_OVERFIT else n
                                  for n in sorted(RECIPES)])
def test_memorises_eight_clips_in_eval_mode(name, tmp_path):
    from benchmark.learning import OVERFIT_TARGET

    r = _overfit(name, tmp_path)
    assert r["steps"] == RECIPES[name]["overfit_steps"]
    assert r["rho_x100"] >= OVERFIT_TARGET, r


def test_every_recipe_budgets_its_overfit_check():
    assert all(1 <= int(r["overfit_steps"]) <= 300 for r in RECIPES.values()), \
        {n: r.get("overfit_steps") for n, r in RECIPES.items()}


@pytest.mark.overfit
def test_stale_batchnorm_statistics_are_what_precise_bn_fixes(tmp_path):
    """The control of the overfit check: USDL's I3D BatchNorm (momentum 0.01) trained from scratch
    and scored with the running statistics it trained with ranks nothing (its eval-mode
    predictions barely move), while the same weights with re-estimated statistics memorise."""
    r = _overfit("usdl", tmp_path)
    assert r["precise_bn"]["layers"] > 0 and r["precise_bn"]["batches"] > 0
    assert r["rho_x100_precise_bn"] >= 90
    assert not r["rho_x100_running_bn"] >= 60, r  # NaN (constant predictions) or far below


# ------------------------------------------------------------------ from-scratch policy
def test_every_frozen_or_pretrained_factor_part_is_declared():
    """A method whose model freezes anything (parameters without gradient, BatchNorm kept in eval mode
    under train()) or scales a backbone's learning rate below the rest declares a WeightsAssumption for
    it; built without any released file (the adaptation applied) nothing stays frozen."""
    from benchmark.engine import trainable_batchnorms

    for name in METHODS:
        cls = registry.get_method(name)
        m = _method(cls, "tiny")
        model = m.build_model()
        bns = [mod for mod in model.modules() if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm)]
        frozen = (any(not p.requires_grad for p in model.parameters())
                  or len(trainable_batchnorms(model)) < len([b for b in bns if b.track_running_stats]))
        if frozen:
            assert cls.weights_assumptions, f"{name} freezes part of its model without a WeightsAssumption"
        refused = {k: v for a in cls.weights_assumptions if a.policy == "refuse" for k, v in a.options.items()}
        if refused:  # refused without the file, unless the user asks for the adaptation
            with pytest.raises(MissingWeightsError, match=r"--set "):
                _method(cls, "tiny").adapt_from_scratch(set())
            m = _method(cls, "tiny", refused)
        m.adapt_from_scratch(set(), refused)
        model = m.build_model()
        assert all(p.requires_grad for p in model.parameters()), name
        assert len(trainable_batchnorms(model)) == len([b for b in bns if b.track_running_stats]), name


def test_from_scratch_adaptation_is_recorded_and_hashed(small_prepared, tmp_path):
    """CoRe without model_rgb.pth: the run's method trains its BatchNorm at the full backbone rate
    with precise BatchNorm; the config keeps the asked options and records the adaptation (so the
    run id differs from a run that loaded the file); an explicit user option wins over the adaptation."""
    from benchmark.runs import RunSpec, effective_options, resolve

    run = resolve(RunSpec("core", small_prepared.root, "smile", scale="tiny"), tmp_path)
    rec = run.config["from_scratch"]
    assert [r["role"] for r in rec] == ["backbone"] and rec[0]["file"] == "model_rgb.pth"
    assert run.config["options"]["freeze_bn"] is True and run.method.options["freeze_bn"] is False
    assert effective_options(run.config) == run.method.options
    assert run.training.precise_bn == 8 and run.config["training"]["precise_bn"] == 8
    assert run.method.param_groups(run.method.build_model(), None, run.training)[0]["lr"] == run.training.lr
    own = resolve(RunSpec("core", small_prepared.root, "smile", scale="tiny", options={"freeze_bn": True},
                          training={"precise_bn": 0}), tmp_path)
    assert own.method.options["freeze_bn"] is True and own.training.precise_bn == 0
    assert own.config["from_scratch"][0]["options"] == {"backbone_lr_factor": 1.0}
    assert own.run_id != run.run_id


def test_refusal_names_the_file_its_source_and_the_option_that_trains_anyway():
    from benchmark.api import WeightsAssumption
    from benchmark.errors import ConfigError
    from methods.c3d_lstm import C3DLSTMMethod

    class Refusing(C3DLSTMMethod):
        name = "c3d_lstm_refusing"
        weights_assumptions = (WeightsAssumption("c3d", "a frozen Sports-1M C3D", "refuse", "C3D trains end to end",
                                                 options={"c3d_trainable": True}),)

    with pytest.raises(ConfigError) as err:
        Refusing().adapt_from_scratch(set())
    msg = str(err.value)
    assert "c3d.pickle" in msg and "DavideA/c3d-pytorch" in msg and "--set c3d_trainable=true" in msg
    m = Refusing({"c3d_trainable": True})
    assert m.adapt_from_scratch(set(), {"c3d_trainable": True})[0]["by_user"] is True
    assert Refusing().adapt_from_scratch({"c3d"}) == []


def test_report_without_weights_finds_the_run_made_with_them(small_prepared, tmp_path):
    """``report`` without --weights resolves CoRe's adapted run (BatchNorm trains, precise_bn 8); the
    run a ``reproduce --weights`` made differs only in its pretrained file and that adaptation, and is
    the one found (benchmark.runs.find_recorded_run)."""
    import json as _json

    from benchmark.runs import RunSpec, find_recorded_run, resolve, write_json

    fake = tmp_path / "model_rgb.pth"
    fake.write_bytes(b"weights")
    runs = tmp_path / "runs"
    made = resolve(RunSpec("core", small_prepared.root, "smile", scale="tiny", weights={"backbone": fake}), runs)
    assert "from_scratch" not in made.config and made.training.precise_bn == 0
    write_json(made.folder / "config.json", made.config)
    (made.folder / "result.json").write_text(_json.dumps({"status": "ok"}))
    bare = resolve(RunSpec("core", small_prepared.root, "smile", scale="tiny"), runs)
    assert bare.run_id != made.run_id and bare.training.precise_bn == 8
    found = find_recorded_run(bare, runs)
    assert found is not None and found.folder == made.folder
    other = resolve(RunSpec("core", small_prepared.root, "smile", scale="tiny", options={"score_range": 3.0}), runs)
    assert find_recorded_run(other, runs) is None  # another option is another run
