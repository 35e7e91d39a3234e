"""`qafe-bench score`: one video goes through the training data's own crop and the test clip."""

from __future__ import annotations

import numpy as np
import pytest

import benchmark.score as score_mod
from benchmark.data.landmarks.crop import CropSpec
from benchmark.data.prepare import PreparedVideo
from benchmark.data.prepared import LandmarkScheme, PreparedWriter
from benchmark.engine import execute
from benchmark.runs import RunSpec, resolve


class _FakeBackend:
    scheme = LandmarkScheme("test_1", 1, {})

    def provenance(self):
        return {"name": "fake"}

    def close(self):
        pass


def _dataset(root, crop):
    w = PreparedWriter(root, card="synthetic", crop_size=crop["size"], landmark_scheme=_FakeBackend.scheme,
                       backend={"name": "test"}, extra={"prepare": {"crop": crop}})
    rng = np.random.default_rng(0)
    for v in range(6):
        n = 20
        w.add_video(f"v{v}", rng.integers(0, 255, (n, crop["size"], crop["size"], 3), dtype=np.uint8),
                    np.full((n, 1, 2), crop["size"] / 2, np.float32), np.ones(n, bool), subject=f"s{v}",
                    expression="smile", label=v % 5, split="train" if v < 3 else "test", fps=25)
    w.finalize()
    return root


@pytest.mark.parametrize("crop", [
    {"size": 64, "mode": "square", "margin": 0.25, "round_points": False, "interpolation": "linear"},
    {"size": 56, "mode": "bbox", "margin": 0.0, "round_points": True, "interpolation": "area"},
])
def test_score_crops_the_video_as_the_training_data_was_cropped(tmp_path, monkeypatch, crop):
    data = _dataset(tmp_path / "data", crop)
    run = resolve(RunSpec("dummy", data, "smile"), tmp_path / "runs")
    assert run.config["dataset"]["crop"] == crop
    assert execute(run, progress=False, log=lambda s: None)["status"] == "ok"
    seen = {}

    def fake_prepare(video, backend, spec, **kw):
        seen["spec"] = spec
        n, s = 30, spec.size
        return PreparedVideo(np.zeros((n, s, s, 3), np.uint8), np.full((n, 1, 2), s / 2, np.float32),
                             np.ones(n, bool), 25.0, np.zeros((n, 4)), np.zeros((n, 1, 2)))

    monkeypatch.setattr(score_mod, "prepare_video", fake_prepare)
    monkeypatch.setattr(score_mod, "get_backend", lambda name, **kw: _FakeBackend())
    out = score_mod.score_video(tmp_path / "video.mp4", run.folder / "model.pt", expression="smile")
    assert seen["spec"] == CropSpec(**crop)  # size, mode, margin, rounding and filter of the training data
    train_mean = np.mean([v % 5 for v in range(3)])
    assert out["prediction"] == pytest.approx(train_mean)
