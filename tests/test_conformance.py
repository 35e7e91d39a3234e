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
from benchmark.engine import _make_optimizer
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
    opt = _make_optimizer(m.param_groups(model, loss_fn, cfg), cfg)
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
