"""R3D-18 / R3D-34 vs the original 3D-ResNets-PyTorch ``models/resnet.py``, golden fixture ``r3d``.

The fixture holds avgpool features and 1039-class logits of the ORIGINAL
``generate_model(18 | 34, n_classes=1039)`` (opts defaults) with seeded weights, on
``(2, 3, 16, 56, 56)`` inputs (see ``tests/golden/r3d.md``). Here the same weights
are written in the released files' layout (``main.py`` ``save_checkpoint``: a dict
with ``epoch``, ``arch``, ``state_dict``, ``optimizer``, ``scheduler``) and loaded
through :func:`methods.backbones.r3d.load_r3d_checkpoint`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _golden import assert_matches_golden, inputs_of, load_golden, seeded_state_dict, one_thread  # noqa: E402

from benchmark.api import ClipGeometry  # noqa: E402
from benchmark.errors import CheckpointError  # noqa: E402
from methods.backbones.r3d import R3DEncoder, load_r3d_checkpoint  # noqa: E402
from methods.r3d import R3D18Method, R3D34Method, R3DRegressor  # noqa: E402



@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    yield from one_thread()



@pytest.fixture(scope="module")
def golden():
    return load_golden("r3d")


def fast_encoder(depth: int, n_classes: int | None = None) -> R3DEncoder:
    """An encoder with uninitialised storage (for tests that only load into it)."""
    with torch.device("meta"):
        enc = R3DEncoder(depth, n_classes=n_classes)
    return enc.to_empty(device="cpu")


def released_file(path: Path, depth: int, n_classes: int, seed: int | None, prefix: str = "") -> dict[str, torch.Tensor]:
    """Write a checkpoint in the 3D-ResNets ``save_checkpoint`` layout (seeded values, or cheap
    distinct constants per tensor when ``seed`` is None); returns its state dict."""
    with torch.device("meta"):
        template = R3DEncoder(depth, n_classes=n_classes).state_dict()
    if seed is None:
        sd = {k: torch.full(v.shape, 0.01 * i) if v.dtype.is_floating_point else torch.tensor(0)
              for i, (k, v) in enumerate(template.items())}
    else:  # integer buffers (num_batches_tracked) come back as the meta template: make them real
        sd = {k: torch.zeros((), dtype=v.dtype) if v.is_meta else v for k, v in seeded_state_dict(template, seed).items()}
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, [50, 100, 150])
    torch.save({"epoch": 200, "arch": f"resnet-{depth}", "state_dict": {prefix + k: v for k, v in sd.items()},
                "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, path)
    return sd


def _scaled_atol(case: dict, expected) -> float:
    """The fixture's atol (1e-5) relative to the output's magnitude: R3D-34 features reach 3.6, where
    float32 summation order alone (thread count) moved one value by 1.03e-5 in a full-suite run."""
    return case["atol"] * max(1.0, float(np.abs(np.asarray(expected)).max()))


@pytest.mark.parametrize("depth", [18, 34])
def test_r3d_matches_original(golden, tmp_path, depth):
    meta, out = golden
    case = meta["cases"][f"r3d{depth}"]
    path = tmp_path / f"r3d{depth}_KM_200ep.pth"
    released_file(path, depth, case["n_classes"], case["weight_seed"])
    x = inputs_of(case)["rgb"]
    # the encoder (classifier dropped) against the original's avgpool output
    enc = R3DEncoder(depth).eval()
    with torch.no_grad():
        before = enc(x)
    info = load_r3d_checkpoint(enc, path, expected_name=path.name)
    assert info["dropped"] == {"fc.weight": [1039, 512], "fc.bias": [1039]}
    assert (info["n_pretrain_classes"], info["arch"], info["epoch"]) == (1039, f"resnet-{depth}", 200)
    with torch.no_grad():
        feats = enc(x)
    assert_matches_golden(feats, out[f"r3d{depth}"]["features"], _scaled_atol(case, out[f"r3d{depth}"]["features"]),
                          f"R3D-{depth} 512-d features")
    assert float((feats - before).abs().max()) > 1e-2, "loading the file did not change the output"
    # the whole released network (fc kept) against the original's logits
    full = fast_encoder(depth, n_classes=1039).eval()
    load_r3d_checkpoint(full, path)
    with torch.no_grad():
        assert_matches_golden(full.logits(x), out[f"r3d{depth}"]["logits"],
                              _scaled_atol(case, out[f"r3d{depth}"]["logits"]), f"R3D-{depth} logits")


def test_parameter_counts_equal_the_originals(golden):
    counts = golden[0]["produced_by"]["param_counts"]
    for depth in (18, 34):
        for n_cls in (1039, 700):
            with torch.device("meta"):
                n = sum(p.numel() for p in R3DEncoder(depth, n_classes=n_cls).parameters())
            assert n == counts[f"r3d{depth}_{n_cls}"], (depth, n_cls)
    assert counts["r3d18_1039"] == 33_736_911 and counts["r3d34_1039"] == 64_046_543
    with torch.device("meta"):
        assert sum(p.numel() for p in R3DEncoder(18).parameters()) == 33_203_904


def test_module_prefix_and_plain_state_dict_load(tmp_path):
    path = tmp_path / "r3d18_K_200ep.pth"
    sd = released_file(path, 18, 700, None, prefix="module.")
    enc = fast_encoder(18)
    info = load_r3d_checkpoint(enc, path, expected_name=path.name)
    assert info["stripped_module_prefix"] and info["n_pretrain_classes"] == 700
    assert torch.equal(enc.layer4[1].conv2.weight, sd["layer4.1.conv2.weight"])
    plain = tmp_path / "plain.pth"
    torch.save(sd, plain)
    assert load_r3d_checkpoint(fast_encoder(18), plain)["container"] == "plain state dict"


def test_mismatching_file_raises_naming_it(tmp_path):
    path = tmp_path / "r3d34_KM_200ep.pth"
    released_file(path, 34, 1039, None)
    # an R3D-34 file in the R3D-18 slot: the arch check names the file
    with pytest.raises(CheckpointError, match="r3d34_KM_200ep.pth"):
        load_r3d_checkpoint(fast_encoder(18), path)
    # same keys without the arch entry: the strict load lists the extra blocks
    ckpt = torch.load(path, weights_only=True)
    del ckpt["arch"]
    path2 = tmp_path / "renamed.pth"
    torch.save(ckpt, path2)
    with pytest.raises(CheckpointError, match=r"renamed\.pth.*unexpected keys.*layer1\.2"):
        load_r3d_checkpoint(fast_encoder(18), path2)
    # a wrong shape (shortcut A-style model has no downsample convs; here: a stem of another width)
    ckpt["state_dict"]["conv1.weight"] = torch.zeros(64, 3, 3, 7, 7)
    torch.save(ckpt, path2)
    with pytest.raises(CheckpointError, match=r"renamed\.pth.*conv1\.weight: file \(64, 3, 3, 7, 7\)"):
        load_r3d_checkpoint(fast_encoder(34), path2)
    with pytest.raises(CheckpointError, match="r3d18_KM_200ep.pth"):
        load_r3d_checkpoint(fast_encoder(18), tmp_path / "nowhere.pth", expected_name="r3d18_KM_200ep.pth")


@pytest.mark.parametrize("aggregate", ["scores", "features"])
def test_regressor_subclips_match_manual_computation(aggregate):
    torch.manual_seed(0)
    g = ClipGeometry(3, 4, 24, 14)
    model = R3DRegressor(18, g, aggregate=aggregate).eval()
    x = torch.randn(2, 3, 12, 24, 24)
    with torch.no_grad():
        got = model(x)
        feats = torch.stack([model.encoder(x[:, :, 4 * k:4 * k + 4]) for k in range(3)], dim=1)  # (B, n, 512)
        if aggregate == "scores":
            want = model.evaluator(feats).squeeze(-1).mean(dim=1)
        else:
            want = model.evaluator(feats.mean(dim=1)).squeeze(-1)
    assert got.shape == (2,)
    assert torch.allclose(got, want, atol=1e-6)
    whole = R3DRegressor(18, g, clip_mode="whole").eval()
    whole.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.allclose(whole(x), whole.evaluator(whole.encoder(x)).squeeze(-1), atol=1e-6)


def test_methods_files_and_inputs():
    assert R3D18Method().pretrained_files == {"backbone": "r3d18_KM_200ep.pth"}
    assert R3D18Method({"pretrained_variant": "K"}).pretrained_files == {"backbone": "r3d18_K_200ep.pth"}
    assert R3D34Method().pretrained_files == {"backbone": "r3d34_KM_200ep.pth"}
    assert R3D34Method.accepted_files() == {"backbone": ("r3d34_KM_200ep.pth", "r3d34_K_200ep.pth")}
    spec = R3D34Method().input_spec()
    assert (spec.rgb_normalisation, spec.rgb_size, spec.subclip_len, spec.rgb_resize) == ("kinetics", 112, 16,
                                                                                          (128, 128))
    m = R3D18Method(geometry=ClipGeometry(2, 8, 40, 14))
    model = m.build_model().eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 16, 40, 40)).shape == (1,)  # tiny sizes run (adaptive pool)
