"""Run records without training: what ``resolve`` writes into a config and refuses,
how ``report`` picks a recorded run, and the record files' safety (atomic JSON with
NaN as null, the run lock, safe model-file loading)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark import registry
from benchmark.api import InputSpec, Option
from benchmark.errors import CheckpointError, ConfigError
from benchmark.runs import (RunLock, RunSpec, config_hash, find_recorded_run, hashed_config, load_model_file,
                            read_result, resolve, write_csv, write_json)

from test_runs import TinyLinear


class TwoWeights(TinyLinear):
    name = "two_weights"
    pretrained_files = {"rgb": "rgb.pth", "heatmap": "heatmap.pth"}


@pytest.fixture(autouse=True)
def _register():
    registry.register("tiny_linear", TinyLinear)
    registry.register("two_weights", TwoWeights)
    yield
    registry.unregister("tiny_linear")
    registry.unregister("two_weights")


def test_resolved_config_records_what_the_run_is(small_prepared, tmp_path):
    w = tmp_path / "rgb_weights.pth"
    w.write_bytes(b"abc")
    run = resolve(RunSpec("two_weights", small_prepared.root, "smile", seed=3, weights={"rgb": w},
                          training={"epochs": 2}), tmp_path / "runs")
    cfg = run.config
    assert cfg["method"] == "two_weights" and cfg["expression"] == "smile" and cfg["seed"] == 3
    assert cfg["scale"] == "tiny" and cfg["split"] == "official" and cfg["control"] == "none"
    assert cfg["protocol"] == "pfed5" and cfg["options"] == {"explode": False}
    assert cfg["dataset"]["card"] == "synthetic" and cfg["dataset"]["landmark_scheme"] == "test_1"
    assert cfg["dataset"]["backend"] == "test" and cfg["dataset"]["content_hash"] == small_prepared.content_hash
    # sha256("abc"), a published test vector
    assert cfg["pretrained"] == {"rgb": {"file": "rgb_weights.pth", "sha256":
                                         "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}}
    assert cfg["paths"]["weights"] == {"rgb": str(w.resolve())}
    assert cfg["paths"]["dataset"] == str(Path(small_prepared.root).resolve())
    assert cfg["training"]["epochs"] == 2 and run.training.epochs == 2
    assert cfg["exemplars"] is None and cfg["deviations_from_paper"] == run.method.deviations_from_paper()
    assert run.folder == tmp_path / "runs" / f"two_weights-smile-s3-{run.run_id}"
    assert run.run_id == config_hash(cfg) and len(run.run_id) == 12
    assert int(run.run_id, 16) >= 0  # hex digits
    # an expression given by its index of the card resolves to its name
    assert resolve(RunSpec("tiny_linear", small_prepared.root, "1"), tmp_path).config["expression"] == "smile"


def test_resolve_refuses_bad_controls_splits_roles_and_missing_files(small_prepared, tmp_path):
    d = small_prepared.root
    with pytest.raises(ConfigError, match="unknown control 'shuffle'; choose one of none, shuffled_labels"):
        resolve(RunSpec("tiny_linear", d, "smile", control="shuffle"), tmp_path)
    with pytest.raises(ConfigError, match="split 'random' is not available for protocol 'pfed5'; use 'official'"):
        resolve(RunSpec("tiny_linear", d, "smile", split="random"), tmp_path)
    with pytest.raises(ConfigError, match="method 'two_weights' takes no 'c3d' weights; roles: rgb, heatmap"):
        resolve(RunSpec("two_weights", d, "smile", weights={"c3d": tmp_path / "x"}), tmp_path)
    with pytest.raises(ConfigError, match=r"method 'tiny_linear' takes no 'rgb' weights; roles: \(none\)"):
        resolve(RunSpec("tiny_linear", d, "smile", weights={"rgb": tmp_path / "x"}), tmp_path)
    with pytest.raises(CheckpointError, match=r"absent.pth: no such checkpoint file \(expected heatmap.pth\)"):
        resolve(RunSpec("two_weights", d, "smile", weights={"heatmap": tmp_path / "absent.pth"}), tmp_path)
    assert resolve(RunSpec("tiny_linear", d, "smile", control="shuffled_labels"), tmp_path).config["control"] == \
        "shuffled_labels"


def test_hashed_config_keeps_contents_drops_paths_names_and_speed():
    cfg = {"method": "m", "paths": {"dataset": "/a"}, "training": {"lr": 0.1, "num_workers": 4},
           "pretrained": {"rgb": {"file": "x.pth", "sha256": "ff"}, "old": "aa"}}
    assert hashed_config(cfg) == {"method": "m", "training": {"lr": 0.1}, "pretrained": {"rgb": "ff", "old": "aa"}}
    assert cfg["training"] == {"lr": 0.1, "num_workers": 4}  # the input is not modified
    h = config_hash(cfg)
    assert h == config_hash({**cfg, "paths": {}}) == config_hash(dict(reversed(list(cfg.items()))))
    assert h != config_hash({**cfg, "training": {"lr": 0.2}})
    # settings added later hash only away from their default: earlier runs keep their ids
    assert config_hash({**cfg, "training": {"lr": 0.1, "amp": "none", "compile": "inductor",
                                            "channels_last": True}}) == h
    assert config_hash({**cfg, "training": {"lr": 0.1, "amp": "bf16"}}) != h
    import hashlib

    text = json.dumps(hashed_config(cfg), sort_keys=True, separators=(",", ":"), default=str)
    assert h == hashlib.sha256(text.encode()).hexdigest()[:12]


def _record(run, runs_dir: Path, *, roles: dict, status: str = "ok", seed_shift: int = 0, name: str = ""):
    """A finished run of ``run``'s config with other pretrained files, as ``reproduce --weights`` left it."""
    cfg = json.loads(json.dumps(run.config))
    cfg["pretrained"] = {r: {"file": f"{r}.pth", "sha256": h} for r, h in roles.items()}
    cfg["seed"] += seed_shift
    rid = config_hash(cfg)
    folder = runs_dir / (name or f"{run.folder.name[:-len(run.run_id)]}{rid}")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(cfg))
    if status:
        (folder / "result.json").write_text(json.dumps({"status": status}))
    return folder


def test_find_recorded_run_picks_the_finished_run_with_most_pretrained_roles(small_prepared, tmp_path):
    runs = tmp_path / "runs"
    run = resolve(RunSpec("two_weights", small_prepared.root, "smile"), runs)
    assert find_recorded_run(run, runs) is None  # nothing recorded
    runs.mkdir()
    _record(run, runs, roles={"rgb": "11"}, status="failed")  # failed: never substituted
    _record(run, runs, roles={"rgb": "22", "heatmap": "33"}, status="running")  # unfinished
    _record(run, runs, roles={"rgb": "44"}, seed_shift=1)  # differs in more than the weights
    assert find_recorded_run(run, runs) is None
    one = _record(run, runs, roles={"rgb": "55"})
    found = find_recorded_run(run, runs)
    assert found.folder == one and found.config["pretrained"]["rgb"]["sha256"] == "55"
    assert found.run_id == one.name[-12:] and found.method is run.method
    two = _record(run, runs, roles={"rgb": "66", "heatmap": "77"})
    assert find_recorded_run(run, runs).folder == two  # two roles beat one
    broken = _record(run, runs, roles={"rgb": "ab", "heatmap": "cd", "x": "ef"})
    (broken / "config.json").write_text("{not json")
    assert find_recorded_run(run, runs).folder != broken  # an unreadable config is skipped
    # another method's, expression's or seed's folder never matches the prefix
    assert find_recorded_run(resolve(RunSpec("two_weights", small_prepared.root, "smile", seed=1), runs), runs) \
        is None
    # ignoring nothing: only the run's own config matches
    assert find_recorded_run(run, runs, ignore=()) is None


def test_find_recorded_run_tie_goes_to_the_first_folder(small_prepared, tmp_path):
    runs = tmp_path / "runs"
    run = resolve(RunSpec("two_weights", small_prepared.root, "smile"), runs)
    runs.mkdir()
    prefix = run.folder.name[:-12]
    b = _record(run, runs, roles={"rgb": "1"}, name=prefix + "bbbbbbbbbbbb")
    a = _record(run, runs, roles={"rgb": "2"}, name=prefix + "aaaaaaaaaaaa")
    assert find_recorded_run(run, runs).folder == a
    c = _record(run, runs, roles={"rgb": "3", "heatmap": "4"}, name=prefix + "cccccccccccc")
    assert find_recorded_run(run, runs).folder == c and b.exists()


def test_find_recorded_run_looks_past_unfinished_and_unreadable_records(small_prepared, tmp_path):
    runs = tmp_path / "runs"
    run = resolve(RunSpec("two_weights", small_prepared.root, "smile"), runs)
    runs.mkdir()
    prefix = run.folder.name[:-12]
    _record(run, runs, roles={"rgb": "1"}, status="running", name=prefix + "000000000000")  # sorts first
    good = _record(run, runs, roles={"rgb": "2"}, name=prefix + "ffffffffffff")
    assert find_recorded_run(run, runs).folder == good
    broken = _record(run, runs, roles={"rgb": "3"}, name=prefix + "111111111111")
    (broken / "config.json").write_text("{not json")
    assert find_recorded_run(run, runs).folder == good


def test_find_weights_looks_in_the_given_folder_by_original_file_name(tmp_path):
    from benchmark.runs import find_weights

    (tmp_path / "rgb.pth").write_bytes(b"x")
    assert find_weights(TwoWeights, tmp_path) == {"rgb": tmp_path / "rgb.pth"}
    assert find_weights(TwoWeights, tmp_path / "absent") == {}


def test_read_result_is_none_for_absent_or_corrupt_records(tmp_path):
    assert read_result(tmp_path) is None
    (tmp_path / "result.json").write_text('{"status": "ok"')  # cut off mid-write by a crash
    assert read_result(tmp_path) is None
    (tmp_path / "result.json").write_text('{"status": "ok"}')
    assert read_result(tmp_path) == {"status": "ok"}


def test_write_json_writes_nan_as_null_and_leaves_no_temporary(tmp_path):
    p = tmp_path / "r.json"
    write_json(p, {"a": float("nan"), "b": [1.5, float("nan"), (2, float("nan"))], "c": {"d": float("nan")},
                   "e": "x", "f": Path("/p")})
    assert json.loads(p.read_text()) == {"a": None, "b": [1.5, None, [2, None]], "c": {"d": None}, "e": "x",
                                         "f": "/p"}
    assert "NaN" not in p.read_text() and "\n  " in p.read_text()  # strict JSON, indented
    write_json(p, {"z": 1, "a": [2]})
    assert p.read_text() == '{\n  "z": 1,\n  "a": [\n    2\n  ]\n}'  # 2-space indent, keys in written order
    assert sorted(x.name for x in tmp_path.iterdir()) == ["r.json"]
    write_csv(tmp_path / "t.csv", pd.DataFrame({"x": [1, 2]}))
    assert (tmp_path / "t.csv").read_text() == "x\n1\n2\n"  # no index column


def test_run_lock_is_exclusive_and_released(tmp_path):
    folder = tmp_path / "run"
    assert RunLock(folder).acquired is False  # not entered yet
    with RunLock(folder) as first:
        assert first.acquired is True and (folder / ".run.lock").is_file()
        with RunLock(folder, wait=0.1) as second:
            assert second.acquired is False
        with RunLock(folder, wait=0.1) as third:  # the failed attempt did not release the holder's lock
            assert not third.acquired
    assert not (folder / ".run.lock").exists()  # released: no lock file, no claim file left
    assert list(folder.iterdir()) == []
    with RunLock(folder) as again:
        assert again.acquired


def test_run_lock_heartbeat_keeps_a_long_holder_and_expiry_frees_a_silent_one(tmp_path):
    """A holder refreshes its lock (lifetime 1 s) for 2.5 s: nobody can take it. A holder whose
    heartbeat stopped (a hung process, or a crashed one on another host) loses it once the lifetime
    and flufl.lock's 10 s clock slop have passed."""
    import time

    folder = tmp_path / "run"
    with RunLock(folder, lifetime=1.0) as held:
        time.sleep(2.5)
        with RunLock(folder, lifetime=1.0, wait=0.2) as other:
            assert not other.acquired
        assert not held.lost
        held._stop.set()  # the heartbeat dies (the holder hangs)
        held._thread.join()
        t0 = time.time()
        with RunLock(folder, lifetime=1.0, wait=20.0) as taker:
            assert taker.acquired and 8.0 < time.time() - t0 < 20.0


def test_run_lock_of_a_killed_process_is_broken_at_once(tmp_path):
    """SIGKILL leaves the lock file behind; on the same host the next process sees that its holder
    is gone and takes the lock without waiting for the lifetime (600 s here)."""
    import signal
    import subprocess
    import sys
    import time

    folder = tmp_path / "run"
    code = ("import sys, time; from benchmark.runs import RunLock; "
            f"l = RunLock({str(folder)!r}, lifetime=600).__enter__(); print(l.acquired, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "True"
        with RunLock(folder, lifetime=600, wait=0.2) as busy:
            assert not busy.acquired  # alive: really held
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert (folder / ".run.lock").exists()
        t0 = time.time()
        with RunLock(folder, lifetime=600, wait=0.2) as after:
            assert after.acquired and time.time() - t0 < 5
    finally:
        proc.kill()


def test_load_model_file_refuses_what_is_not_a_safe_model_file(tmp_path):
    with pytest.raises(CheckpointError, match=r"absent.pt: no such model file \(a finished run folder holds"):
        load_model_file(tmp_path / "absent.pt")
    other = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="other.pt: not a qafe-bench model file"):
        load_model_file(other)
    torch.save([1, 2], other)
    with pytest.raises(CheckpointError, match="other.pt: not a qafe-bench model file"):
        load_model_file(other)
    evil = tmp_path / "evil.pt"
    torch.save({"format": "qafe-bench-model", "x": Path}, evil)  # a class: refused by weights_only
    with pytest.raises(CheckpointError, match="evil.pt: cannot be read safely as a qafe-bench model file"):
        load_model_file(evil)
    good = tmp_path / "model.pt"
    torch.save({"format": "qafe-bench-model", "version": 1, "config": {}, "state_dict": {"w": torch.ones(2)}}, good)
    assert load_model_file(good)["state_dict"]["w"].tolist() == [1.0, 1.0]


def test_load_model_file_maps_to_the_cpu_with_weights_only(tmp_path, monkeypatch):
    # A model.pt saved on a GPU must load on a CPU-only machine (map_location), and only
    # tensors and plain containers may be unpickled (weights_only), whatever torch's default.
    good = tmp_path / "model.pt"
    torch.save({"format": "qafe-bench-model", "version": 1, "config": {}, "state_dict": {}}, good)
    seen = {}
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_model_file(good)
    assert seen.get("map_location") == "cpu" and seen.get("weights_only") is True


class _SizedByOption(TinyLinear):
    """Its input spec follows an option and the label range (as a plugin's might)."""

    name = "sized_by_option"
    options_spec = {**TinyLinear.options_spec, "subclip": Option(8, "frames per sub-clip")}

    def input_spec(self):
        lo, hi = self.label_range
        return InputSpec(rgb=True, rgb_normalisation="unit", subclip_len=int(self.options["subclip"]),
                         rgb_size=int(hi - lo) * 20)


def test_build_method_builds_the_spec_geometry_and_label_range_the_run_uses():
    from benchmark.runs import build_method
    from benchmark.scales import Scale, get_scale

    paper = get_scale("paper")
    method, clip, training = build_method(_SizedByOption, paper, {"subclip": 10}, {"epochs": 7}, (0.0, 10.0))
    assert method.options["subclip"] == 10 and method.label_range == (0.0, 10.0)
    # the geometry comes from the spec of a method with these options and this range ...
    assert clip.geometry.subclip_len == 10 and clip.geometry.rgb_size == 200
    assert method.geometry == clip.geometry  # ... and the built method runs at it
    assert training.epochs == 7 and training.batch_size == 2  # the method's default, then the overrides
    method, clip, _ = build_method(_SizedByOption, get_scale("tiny"), {}, {}, (0.0, 4.0))
    assert method.geometry == clip.geometry and clip.geometry != _SizedByOption().geometry  # not the paper's
    with pytest.raises(ConfigError, match="^training overrides: unknown training setting 'epoch'"):
        build_method(_SizedByOption, paper, {}, {"epoch": 1}, (0.0, 4.0))
    odd = Scale(name="odd", frame_size=256, training={"bach_size": 1})
    with pytest.raises(ConfigError, match="^scale odd: unknown training setting 'bach_size'"):
        build_method(_SizedByOption, odd, {}, {}, (0.0, 4.0))


def test_config_records_the_crop_and_a_manifest_without_a_backend(small_prepared, tmp_path):
    from benchmark.data.prepared import PreparedDataset

    run = resolve(RunSpec("tiny_linear", small_prepared.root, "smile"), tmp_path)
    cfg = run.config
    assert cfg["dataset"]["crop"] == small_prepared.crop_spec()
    assert cfg["clip"] == run.clip.to_json() and run.scale.name == "tiny"
    assert cfg["exemplars"] is None  # not a contrastive method
    core = resolve(RunSpec("core", small_prepared.root, "smile"), tmp_path)
    assert core.config["exemplars"] == asdict(core.method.exemplars) and core.config["exemplars"]
    manifest = small_prepared.root / "manifest.json"
    data = json.loads(manifest.read_text())
    data.pop("backend", None)
    manifest.write_text(json.dumps(data))
    assert "backend" not in PreparedDataset(small_prepared.root).manifest
    cfg = resolve(RunSpec("tiny_linear", small_prepared.root, "smile"), tmp_path).config
    assert cfg["dataset"]["backend"] is None


def test_config_hash_of_values_json_does_not_know():
    cfg = {"method": "m", "note": Path("/x")}  # hashed as its text
    assert config_hash(cfg) == config_hash({"method": "m", "note": "/x"})
