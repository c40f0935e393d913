"""Sweeps through real Ray Tune + Ray Train on tiny data: a 2-trial sweep writes its report, and a
sweep whose driver is SIGKILLed resumes without rerunning finished trials.

The sweep-file checks at the top need no Ray and run fast.
"""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from layoutray.config import ConfigError
from layoutray.data.synth import synthesize
from layoutray.sweep_config import load_sweep
from trainables.sweep import DONE_FILE

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.epochs=2", "training.batch_size=4",
        "validation.generate_examples=4", "training.max_steps_per_epoch=3"]


def _sweep_yaml(tmp_path: Path, data_dir: str, name: str, **extra) -> Path:
    tree = {"name": name, "phase": "phase1", "overrides": TINY,
            "data": {"dir": data_dir, "synthesize_if_missing": False},
            "arms": [{"name": "constant", "overrides": ["schedule.lr=constant"]},
                     {"name": "phi_decay", "overrides": ["schedule.lr=phi_decay"]}],
            "seeds": [0], "min_seeds": 1, "target_val_loss": 5.0,
            "resources": {"trial_cpus": 0.5, "workers": 1, "cpus_per_worker": 1.0},
            "max_concurrent_trials": 1, "asha": {"enabled": False},
            "storage_path": str(tmp_path / "sweeps")}
    tree.update(extra)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


# ---------------------------------------------------------------------------- the sweep file (fast)


@pytest.mark.parametrize("path", sorted((REPO / "configs" / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_repo_sweep_files_load(path):
    spec = load_sweep(path)
    assert len(spec.seeds) >= 3
    assert {"warmup_cosine", "constant"} <= {a.name for a in spec.arms}
    assert {spec.arm_kind(a.name) for a in spec.arms} == {"phi", "baseline"}
    assert path.read_text().startswith("#") and "layoutray sweep --config" in path.read_text().splitlines()[0]


@pytest.mark.parametrize("extra,key", [
    ({"bogus": 1}, "bogus"),
    ({"asha": {"enabled": True, "grace": 1}}, "asha.grace"),
    ({"resources": {"workers": 0}}, "resources.workers"),
    ({"seeds": [0], "min_seeds": 3}, "seeds"),
    ({"arms": [{"name": "a", "overrides": ["schedule.lr=nope"]}]}, "arms[0].overrides"),
    ({"arms": [{"name": "a", "override": []}]}, "arms[0].override"),
    ({"target_val_loss": -1}, "target_val_loss"),
])
def test_bad_sweep_file_names_file_and_key(tmp_path, extra, key):
    path = _sweep_yaml(tmp_path, str(tmp_path), "bad", **extra)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    assert str(path) in str(e.value) and key in str(e.value), str(e.value)


def test_cli_reports_bad_sweep_file_without_traceback(tmp_path):
    path = _sweep_yaml(tmp_path, str(tmp_path), "bad", seeds=[0, 0])
    p = subprocess.run([sys.executable, "-m", "cli.main", "sweep", "--config", str(path)],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "seeds" in p.stderr and "Traceback" not in p.stderr, p.stderr


# ---------------------------------------------------------------------------- real Tune + Train (slow)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 80, seed=3, shard_rows=40)
    return str(d)


@pytest.mark.slow
def test_two_trial_sweep_writes_report(ray_local, data_dir, tmp_path):
    from trainables.sweep import run_sweep

    spec = load_sweep(_sweep_yaml(tmp_path, data_dir, "two"))
    out = run_sweep(spec, full_budget=True)
    recs = out["records"]
    assert sorted(r["arm"] for r in recs) == ["constant", "phi_decay"]
    assert all(r["status"] == "completed" for r in recs), recs
    assert all([h["epoch"] for h in r["history"]] == [1, 2] for r in recs)
    rep = Path(out["report_dir"])
    for f in ("trials.csv", "report.md", "curves.png", "schedules.png", "summary.json"):
        assert (rep / f).stat().st_size > 0, f
    with open(rep / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and all(float(r["final_val_loss"]) > 0 for r in rows)
    md = (rep / "report.md").read_text()
    assert "| phi_decay | phi |" in md and "| constant | baseline |" in md
    assert "not tested" in md  # one seed per arm: no test is run, and the report says so
    # each trial's Train run lives in its own trial directory
    for r in recs:
        assert (Path(out["experiment_dir"]) / r["trial_id"] / DONE_FILE).is_file()


def _trial_states(exp_dir: Path) -> dict[str, str]:
    """trial_id -> status from Tune's latest experiment state file."""
    files = sorted(exp_dir.glob("experiment_state-*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
    except (json.JSONDecodeError, OSError):
        return {}
    out = {}
    for item in state.get("trial_data", []):
        t = json.loads(item[0]) if isinstance(item, (list, tuple)) else item
        t = json.loads(t) if isinstance(t, str) else t
        out[t.get("trial_id")] = t.get("status")
    return out


def _kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    p.wait(timeout=60)


def test_gpu_sweep_on_a_cpu_only_local_ray_is_a_config_error(ray_local, data_dir, tmp_path, monkeypatch):
    """Checked once in the driver, before Tune starts trials that would each fail the same way."""
    from trainables.sweep import run_sweep

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    path = _sweep_yaml(tmp_path, data_dir, "gpu", resources={"trial_cpus": 0.5, "workers": 1, "cpus_per_worker": 1.0,
                                                             "use_gpu": True, "gpus_per_worker": 1.0})
    with pytest.raises(ConfigError) as e:
        run_sweep(load_sweep(path), config_path=str(path))
    assert e.value.key == "resources.use_gpu" and str(path) in str(e.value) and "has 0" in str(e.value)
    assert not (tmp_path / "sweeps" / "gpu").exists()  # refused before the experiment was created


@pytest.mark.slow
def test_resume_after_driver_killed(data_dir, tmp_path):
    cfg = _sweep_yaml(tmp_path, data_dir, "resume")
    exp_dir = tmp_path / "sweeps" / "resume"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"
    cmd = [sys.executable, "-m", "cli.main", "sweep", "--config", str(cfg)]
    log1 = open(tmp_path / "first.log", "w")
    # Own process group (session): killing the group takes the driver's local Ray with it.
    p = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log1, stderr=subprocess.STDOUT, start_new_session=True)
    first = None
    try:
        deadline = time.time() + 900
        while time.time() < deadline and p.poll() is None:
            done = [d for d in exp_dir.glob("*/" + DONE_FILE)]
            states = _trial_states(exp_dir)
            for d in done:
                tid = next((t for t in states if t and t in d.parent.name), None)
                if tid and states[tid] == "TERMINATED":
                    first = d.parent
            if first:
                break
            time.sleep(1)
        assert p.poll() is None, "the sweep ended before it could be killed:\n" + (tmp_path / "first.log").read_text()
        assert first is not None, "no trial finished in time:\n" + (tmp_path / "first.log").read_text()[-4000:]
    finally:
        _kill_group(p)
        log1.close()

    jsonl = next(first.glob("train_*/metrics.jsonl"))
    before = {"history": jsonl.read_text(), "done": (first / DONE_FILE).read_text(),
              "result": (first / "result.json").read_text()}

    p2 = subprocess.Popen(cmd + ["--resume"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = p2.communicate(timeout=900)
    finally:
        _kill_group(p2)
    assert p2.returncode == 0, out[-6000:]
    assert "resuming sweep" in out

    with open(exp_dir / "report" / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["arm"] for r in rows) == ["constant", "phi_decay"]
    assert all(r["status"] == "completed" for r in rows), rows
    # The first finished trial was not rerun: its histories are byte-identical.
    assert jsonl.read_text() == before["history"]
    assert (first / DONE_FILE).read_text() == before["done"]
    assert (first / "result.json").read_text() == before["result"]
