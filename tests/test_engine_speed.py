"""The engine's speed options give the results of the plain float32 eager run.

``channels_last`` and ``compile`` (here the ``aot_eager`` backend: TorchDynamo tracing and
AOTAutograd, the graph capture ``inductor`` compiles; inductor itself is timed by ``qafe-bench
perf``) must train to the same predictions within float32 rounding and save the same state-dict
keys; ``amp=bf16`` stays close but is another run (another id); ``fp16`` on CPU is refused up front.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from benchmark import registry
from benchmark.api import InputSpec, Method, TrainingConfig
from benchmark.engine import execute
from benchmark.errors import ConfigError
from benchmark.runs import RunSpec, load_model_file, resolve


class _ConvNet(nn.Module):
    """Conv3d on the clip, then a per-frame Conv2d, pooled, attention over frames, linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.c3 = nn.Conv3d(3, 4, 3, padding=1)
        self.c2 = nn.Conv2d(4, 4, 3, padding=1)
        self.qkv = nn.Linear(4, 12)
        self.head = nn.Linear(4, 1)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.c3(rgb))  # (B, 4, T, H, W)
        b, c, t, h, w = x.shape
        x = torch.relu(self.c2(x.transpose(1, 2).reshape(b * t, c, h, w))).mean(dim=(2, 3)).view(b, t, c)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = nn.functional.scaled_dot_product_attention(q, k, v).mean(dim=1)
        return self.head(x).reshape(-1)


class TinyConv(Method):
    name = "tiny_conv"
    display_name = "Tiny conv"

    def input_spec(self):
        return InputSpec(rgb=True, rgb_normalisation="unit")

    def build_model(self):
        return _ConvNet()

    def training_defaults(self):
        return TrainingConfig(epochs=2, batch_size=2, optimizer="sgd", lr=0.05, reps_per_epoch=1, lr_step=0,
                              eval_every=1, grad_clip=1.0)


@pytest.fixture(autouse=True)
def _register():
    registry.register("tiny_conv", TinyConv)
    yield
    registry.unregister("tiny_conv")


def _train(ds, root, **training):
    run = resolve(RunSpec("tiny_conv", ds.root, "smile", training=training), root)
    res = execute(run, progress=False, log=lambda s: None)
    assert res["status"] == "ok", res.get("error")
    preds = pd.read_csv(run.folder / "predictions.csv")["prediction"].to_numpy()
    return run, preds, load_model_file(run.folder / "model.pt")["state_dict"]


def test_channels_last_and_compile_train_to_the_plain_runs_predictions(small_prepared, tmp_path):
    plain, p0, sd0 = _train(small_prepared, tmp_path / "plain")
    assert np.ptp(p0) > 0  # a model that predicts, not a constant
    for name, training in {"channels_last": {"channels_last": True},
                           "compile": {"compile": "aot_eager"},
                           "both": {"compile": "aot_eager", "channels_last": True}}.items():
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        run, p, sd = _train(small_prepared, tmp_path / name, **training)
        compiled = torch._dynamo.utils.counters["stats"]["unique_graphs"]
        assert (compiled > 0) == ("compile" in training), (name, compiled)  # the option was applied
        assert sd["c3.weight"].is_contiguous() != training.get("channels_last", False), name
        assert run.run_id == plain.run_id, name  # the same run: only how fast it computes differs
        np.testing.assert_allclose(p, p0, rtol=0, atol=1e-5, err_msg=name)
        assert list(sd) == list(sd0), name  # no torch.compile "_orig_mod." prefix in model.pt
        for key in sd0:
            a, b = sd[key].contiguous(), sd0[key]
            if key == "qkv.bias":
                # the key bias (the middle third) has gradient 0 in exact arithmetic (softmax is
                # shift-invariant): what it learns is the kernels' rounding noise, which differs from
                # CPU to CPU (AVX-512 or not) and is no result; the query and value biases are.
                a, b = torch.cat((a[:4], a[8:])), torch.cat((b[:4], b[8:]))
            torch.testing.assert_close(a, b, rtol=0, atol=1e-4, msg=f"{name}: {key}")
    # the saved run config records what ran
    assert run.config["training"]["compile"] == "aot_eager" and run.config["training"]["channels_last"] is True


def test_bf16_autocast_is_another_run_close_to_float32(small_prepared, tmp_path):
    plain, p0, _ = _train(small_prepared, tmp_path / "plain")
    run, p, _ = _train(small_prepared, tmp_path / "bf16", amp="bf16")
    assert run.run_id != plain.run_id
    # bfloat16 keeps 8 bits of mantissa: close, not equal
    assert not np.array_equal(p, p0)
    np.testing.assert_allclose(p, p0, rtol=0, atol=0.1)


def test_fp16_without_cuda_is_refused_before_anything_runs(small_prepared, tmp_path):
    run = resolve(RunSpec("tiny_conv", small_prepared.root, "smile", training={"amp": "fp16"}), tmp_path)
    with pytest.raises(ConfigError, match="amp=fp16 needs a CUDA device; on CPU use amp=bf16"):
        execute(run, device="cpu", progress=False, log=lambda s: None)
    assert not run.folder.exists() or not (run.folder / "result.json").exists()
    with pytest.raises(ConfigError, match="amp='half'; choose one of none, bf16, fp16"):
        resolve(RunSpec("tiny_conv", small_prepared.root, "smile", training={"amp": "half"}), tmp_path)
    with pytest.raises(ConfigError, match="channels_last='maybe' is not a bool"):
        resolve(RunSpec("tiny_conv", small_prepared.root, "smile", training={"channels_last": "maybe"}), tmp_path)


def test_bf16_on_a_cpu_without_native_bfloat16_warns_and_provenance_records_it(monkeypatch):
    import warnings

    import benchmark.engine as engine
    from benchmark.api import TrainingConfig

    cfg = TrainingConfig(amp="bf16")
    monkeypatch.setattr(engine, "cpu_bf16_native", lambda: False)
    with pytest.warns(RuntimeWarning, match=r"amp=bf16 on a CPU without native bfloat16 \(PyTorch reports CPU "
                                            r"capability \w+"):
        engine.SpeedSettings.for_run(cfg, torch.device("cpu"))
    monkeypatch.setattr(engine, "cpu_bf16_native", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.SpeedSettings.for_run(cfg, torch.device("cpu"))  # native: no warning
        engine.SpeedSettings.for_run(TrainingConfig(), torch.device("cpu"))
    info = engine.provenance(torch.device("cpu"))
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_bf16_native"] is True  # what this process reports (patched above)
