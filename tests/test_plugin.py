"""An out-of-tree method package (tests/plugin_example) found through its entry point.

The package is installed offline (``pip install --no-deps --no-build-isolation
--no-index --target DIR``, from a copy so no build files land in the repository)
into a temporary folder that is put on ``sys.path`` only for the tests that ask
for it (``plugin_on_path``) and removed afterwards, with the import and metadata
caches invalidated both ways: the other test files never see the plugin (the last
test checks it).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import registry
from benchmark.cli import main

from conftest import make_prepared

PLUGIN_SRC = Path(__file__).resolve().parent / "plugin_example"
DIST = "qafe-bench-plugin-example"
MODULE = "qafe_bench_plugin_example"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The plugin installed by pip into a fresh folder (offline, no dependencies)."""
    tmp = tmp_path_factory.mktemp("plugin")
    src = tmp / "src"
    shutil.copytree(PLUGIN_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = tmp / "site"
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "--target", str(site), str(src)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return site


def _forget_plugin(site: Path) -> None:
    while str(site) in sys.path:
        sys.path.remove(str(site))
    for name in [m for m in sys.modules if m == MODULE or m.startswith(MODULE + ".")]:
        del sys.modules[name]
    importlib.invalidate_caches()  # also clears importlib.metadata's path cache


@pytest.fixture
def plugin_on_path(plugin_site):
    """The installed plugin importable and visible to importlib.metadata, for one test."""
    sys.path.insert(0, str(plugin_site))
    importlib.invalidate_caches()
    try:
        yield plugin_site
    finally:
        _forget_plugin(plugin_site)


def test_pip_installed_the_entry_point(plugin_on_path):
    dist = importlib.metadata.distribution(DIST)
    assert Path(str(dist.locate_file(""))).resolve() == plugin_on_path.resolve()
    eps = [ep for ep in dist.entry_points if ep.group == registry.GROUP]
    assert [(ep.name, ep.value) for ep in eps] == [("plugin_mean", "qafe_bench_plugin_example:PluginMeanMethod")]


def test_registry_lists_it_with_its_distribution(plugin_on_path):
    avail = registry.available()
    assert avail["plugin_mean"] == DIST
    assert avail["qafe_net"] == "in-tree"  # in-tree methods are unaffected
    cls = registry.get_method("Plugin-Mean")  # the usual name matching applies
    assert cls.__name__ == "PluginMeanMethod"
    assert Path(sys.modules[cls.__module__].__file__).resolve().is_relative_to(plugin_on_path.resolve())


def test_methods_command_shows_it(plugin_on_path, capsys):
    assert main(["methods"]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("plugin_mean ")]
    assert len(lines) == 1
    assert "Plugin example (mean frame + motion, linear)" in lines[0] and DIST in lines[0]


def test_conformance_checks_pass_for_the_plugin(plugin_on_path):
    """The checks tests/test_conformance.py runs on every registered method."""
    import test_conformance as conf

    cls = registry.get_method("plugin_mean")
    for scale, batch in (("tiny", 3), ("paper", 1)):
        conf.test_forward_shapes(cls, scale, batch)
    conf.test_paper_geometry_is_the_input_spec(cls)
    conf.test_loss_is_finite_and_one_step_changes_the_weights(cls)
    conf.test_model_file_round_trip(cls)


def test_run_command_trains_and_evaluates_it(plugin_on_path, tmp_path, capsys):
    data = make_prepared(tmp_path / "data", videos=8, size=16, frames=12)
    runs = tmp_path / "runs"
    rc = main(["run", "--method", "plugin_mean", "--dataset", str(data.root), "--expression", "smile",
               "--runs-dir", str(runs), "--quiet", "--device", "cpu", "--train", "epochs=3", "--set", "grid=2"])
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    (folder,) = [p for p in runs.iterdir() if p.name.startswith("plugin_mean-smile-")]
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "ok"
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] == "plugin_mean" and config["options"] == {"grid": 2}
    pred = pd.read_csv(folder / "predictions.csv")
    assert len(pred) == 4 and np.isfinite(pred["prediction"]).all()
    assert pred["prediction"].std() > 0  # a trained linear model, not a constant like the dummy


def test_nothing_leaks_into_other_tests():
    """Runs after the tests above (file order): the plugin is gone again."""
    assert "plugin_mean" not in registry.available()
    assert MODULE not in sys.modules
    with pytest.raises(importlib.metadata.PackageNotFoundError):
        importlib.metadata.distribution(DIST)
