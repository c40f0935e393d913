"""Ray start-up (layoutray.runtime): a local run starts its own instance and is not disturbed
by other Ray instances on the host."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from conftest import metrics_rows, wait_for
from layoutray.runtime import cluster_address, local_cpus

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "training.epochs=2", "training.batch_size=8",
        "data.synth_per_epoch=64", "data.synth_val=16", "data.synth_test=16", "validation.generate_examples=8"]


def test_cluster_address_prefers_the_argument_then_the_environment(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert cluster_address(None) is None
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert cluster_address(None) == "10.0.0.1:6379"
    assert cluster_address("127.0.0.1:7000") == "127.0.0.1:7000"


def test_local_cpus_leave_room_for_ray_data():
    assert local_cpus(1, 2.0) >= 4  # two for the worker, two for Ray Data's tasks
    assert local_cpus(2, 1.0, spare=1) >= 3


def _train(tmp_path, name, env=None):
    cmd = [sys.executable, "-m", "cli.main", "train", "--data", "synth:3", "--phase", "phase1", "--name", name,
           "--output", str(tmp_path), *[a for kv in TINY for a in ("--set", kv)]]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={k: v for k, v in (env or os.environ).items() if k != "RAY_ADDRESS"})


@pytest.mark.slow
def test_a_stale_cluster_record_does_not_stop_a_run(tmp_path):
    """A stopped `ray start --head` leaves its address in the temp dir; a run must not join it."""
    tmp_root = Path(tempfile.mkdtemp(prefix="lrt", dir="/tmp"))  # short: Ray's socket paths cap at 107 bytes
    (tmp_root / "ray").mkdir()
    (tmp_root / "ray" / "ray_current_cluster").write_text("127.0.0.1:9\n")  # nothing listens there
    env = {**os.environ, "RAY_TMPDIR": str(tmp_root), "TMPDIR": str(tmp_root)}
    try:
        p = _train(tmp_path, "stale", env)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    assert (tmp_path / "stale" / "model" / "config.yaml").is_file()


@pytest.mark.slow
def test_another_ray_instance_on_the_host_does_not_disturb_a_run(tmp_path):
    """A user's `ray start --head` (recorded under /tmp/ray as the host's current cluster) while a
    run trains: Ray Train's helpers must keep asking the run's own instance about its controller."""
    record = Path("/tmp/ray/ray_current_cluster")
    before = record.stat().st_mtime_ns if record.exists() else 0
    ray = Path(sys.executable).parent / "ray"
    with open(tmp_path / "other.log", "w") as log:
        other = subprocess.Popen([str(ray), "start", "--head", "--port=0", "--num-cpus=1", "--block",
                                  "--include-dashboard=false", "--disable-usage-stats"],
                                 stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TMPDIR": "/tmp"})
    try:
        wait_for(lambda: other.poll() is not None or (record.exists() and record.stat().st_mtime_ns > before),
                 120, "the other instance to record itself under /tmp/ray")
        assert other.poll() is None, (tmp_path / "other.log").read_text()[-2000:]
        p = _train(tmp_path, "beside")
    finally:
        other.terminate()
        other.wait(timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-3000:]
    assert "Found multiple active Ray instances" not in out
    assert "controller actor" not in out  # the placement-group cleaner never thought it dead
    assert [r["restarts"] for r in metrics_rows(tmp_path / "beside")] == [0, 0]
