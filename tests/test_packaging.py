"""Installable like a tool: the wheel carries the dataset cards, table specs and published numbers,
and a non-editable install run from an empty directory writes everything under that directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_explicit_package_list_holds_every_package_of_the_checkout():
    from setuptools import find_packages

    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = set(find_packages(where=str(REPO), include=["benchmark*", "methods*"]))
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages in pyproject.toml"
    mapped = cfg["package-dir"]
    assert {k: mapped[k] for k in mapped} == {"benchmark.resources.datasets": "datasets",
                                              "benchmark.resources.specs": "reports/specs",
                                              "benchmark.resources.published": "reports/published"}


@pytest.mark.slow
def test_a_wheel_install_reproduces_from_an_empty_directory(tmp_path):
    """`pip install` of the built wheel (no editable link to this checkout) into a fresh virtualenv that
    borrows this environment's third-party packages (torch is not downloaded again), then `qafe-bench
    reproduce table2` in an empty directory: the cards and specs come from the package, and the runs,
    the generated data and the report all land in that directory."""
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(wheels), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    [wheel] = list(wheels.glob("qafe_bench-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    # then third-party packages from this environment, after the venv's own site-packages (a plain path:
    # its .pth files, among them this checkout's editable link, are not processed)
    (site / "borrowed.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    work = tmp_path / "empty"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("QAFE_BENCH_") and k != "PYTHONPATH"}
    probe = subprocess.run([str(py), "-c", "import benchmark, benchmark.paths as p; print(benchmark.__file__); "
                            "print(p.project_root()); print(p.specs_dir())"],
                           check=True, capture_output=True, text=True, cwd=work, env=env).stdout.split()
    assert probe[0].startswith(str(site)) and probe[1] == "None" and probe[2].startswith(str(site))
    # the dummy row: the whole pipeline (data generation, runs, records, tables, site) in seconds; training is
    # the other tests' business
    cmd = [str(venv / "bin" / "qafe-bench"), "reproduce", "table2", "--dataset", "synthetic", "--scale", "tiny",
           "--rows", "Dummy (training mean)", "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=work, env=env, timeout=900)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ["reports", "runs"]
    assert len(list((work / "runs").glob("dummy-*/result.json"))) == 5
    [report] = list((work / "reports" / "output").glob("synthetic-*-tiny"))
    table = pd.read_csv(report / "table2.csv").set_index("row")
    dummy = table.loc["Dummy (training mean)"]
    assert pd.isna(dummy["smile"]) and pd.isna(dummy["smile_paper"])  # constant predictions; not in the paper
    assert (report / "index.html").is_file() and (report / "leaderboard.html").is_file()
    assert (work / "reports" / "output" / "index.html").is_file()
