"""`ray job submit` as a first-class path: a real local cluster (`ray start --head` on
127.0.0.1, token authentication left on), a short Phase 1 training job submitted with the
project's runtime env, its artifact and `ray job logs`, and a bad-config job that fails with
the config error in its logs.

The cluster is started with `ray start --head --block` in its own process group and stopped
by signalling that process (which tears down what it started), not with `ray stop --force`:
`ray stop` kills every Ray process of this user on the machine, including other test
sessions' clusters.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import free_ports
from layoutray.data.synth import synthesize  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.epochs=2", "training.batch_size=4",
        "validation.generate_examples=4", "training.max_steps_per_epoch=2",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1"]

pytestmark = pytest.mark.slow


def cli_env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Token auth stays on. `ray start` turns it on by itself (and creates ~/.ray/auth_token on
    # first use), but the `ray job` CLI only sends the token when RAY_AUTH_MODE=token; it then
    # reads it from ~/.ray/auth_token. Without it every call fails with
    # "Authentication required: Unauthorized: Missing authentication token".
    env["RAY_AUTH_MODE"] = "token"
    return env


def ray_cli(*args, timeout=120, check=False) -> subprocess.CompletedProcess:
    p = subprocess.run([str(BIN / "ray"), *args], cwd=REPO, env=cli_env(), capture_output=True, text=True,
                       timeout=timeout)
    if check and p.returncode:
        raise AssertionError(f"ray {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def cluster():
    temp = tempfile.mkdtemp(prefix="lrjob", dir="/tmp")  # short: Ray's socket paths have a length cap
    flags = ["--port", "--dashboard-port", "--ray-client-server-port", "--dashboard-agent-listen-port",
             "--dashboard-agent-grpc-port", "--metrics-export-port", "--runtime-env-agent-port",
             "--node-manager-port", "--object-manager-port"]
    ports = dict(zip(flags, free_ports(len(flags))))  # distinct: Ray refuses a port named twice
    dash = ports["--dashboard-port"]
    cmd = [str(BIN / "ray"), "start", "--head", "--block", "--node-ip-address=127.0.0.1", "--num-cpus=4",
           "--dashboard-host=127.0.0.1", f"--temp-dir={temp}", "--disable-usage-stats",
           *[f"{k}={v}" for k, v in ports.items()]]
    log = open(Path(temp) / "ray-start.log", "w")
    head = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert head.poll() is None, f"ray start exited {head.returncode}: {(Path(temp) / 'ray-start.log').read_text()}"
            probe = ray_cli("job", "list", "--address", address, timeout=60)
            if probe.returncode == 0:
                break
            assert time.monotonic() < deadline, \
                f"the job API did not come up within 300 s; last `ray job list`:\n{probe.stdout[-1500:]}\n{probe.stderr[-3000:]}"
            time.sleep(2)
        # Auth really is on: the same API without the token is refused.
        import urllib.error
        import urllib.request
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{address}/api/jobs/", timeout=30)
        assert e.value.code == 401
        yield address
    finally:
        head.send_signal(signal.SIGTERM)  # --block: tears down the processes it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(timeout=30)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 80, seed=11, shard_rows=40)
    return str(d.resolve())


def submit(address: str, args: list[str], module: str = "trainables.train") -> str:
    sid = f"layoutray-test-{uuid.uuid4().hex[:8]}"
    ray_cli("job", "submit", "--address", address, "--submission-id", sid, "--no-wait", "--working-dir", ".",
            "--runtime-env", "cluster/runtime_env.yaml", "--", "python", "-m", module, *args,
            timeout=300, check=True)
    return sid


def wait_terminal(address: str, sid: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            p = ray_cli("job", "status", "--address", address, sid, timeout=60)
        except subprocess.TimeoutExpired:
            # One slow poll is not the job's state: on a loaded 2-core machine the CLI (a fresh
            # Python importing Ray) once took over 60 s while the job trained. Ask again until
            # the deadline.
            continue
        out = p.stdout + p.stderr  # through the CLI's logger (stderr)
        # ray/dashboard/modules/job/cli.py: terminal states print "Job '<id>' succeeded" / "failed" /
        # "was stopped"; running ones "Status for job '<id>': RUNNING".
        for state, said in (("SUCCEEDED", "succeeded"), ("FAILED", "failed"), ("STOPPED", "was stopped")):
            if f"Job '{sid}' {said}" in out:
                return state
        time.sleep(3)
    raise AssertionError(f"job {sid} not finished after {timeout:.0f}s:\n{ray_cli('job', 'logs', '--address', address, sid).stdout[-3000:]}")


def test_training_job_succeeds(cluster, data_dir, tmp_path):
    out = tmp_path / "runs"
    set_args = [a for kv in TINY for a in ("--set", kv)]
    sid = submit(cluster, ["--data", data_dir, "--output", str(out), "--name", "j1", "--phase", "phase1", *set_args])
    state = wait_terminal(cluster, sid, 900)
    logs = ray_cli("job", "logs", "--address", cluster, sid, check=True).stdout
    assert state == "SUCCEEDED", logs[-4000:]
    assert "[layoutray] epoch 1/2" in logs and "[layoutray] epoch 2/2" in logs, logs[-4000:]
    assert "[layoutray] model:" in logs
    model = out / "j1" / "model"
    assert (model / "config.yaml").is_file() and any(model.glob("*.safetensors"))
    assert (out / "j1" / "metrics.json").is_file()

    from layoutray.model.predictor import load as load_predictor
    predictor = load_predictor(model)
    layouts = predictor.predict(section_type="hero", elements=["heading"])
    assert [e["type"] for e in layouts[0]["elements"]] == ["heading"]

    # The evaluation job of the README: the same artifact scored on the test split, JSON in the logs.
    sid = submit(cluster, ["--model", str(model), "--data", data_dir, "--split", "test", "--json"],
                 module="trainables.evaluate")
    state = wait_terminal(cluster, sid, 300)
    logs = ray_cli("job", "logs", "--address", cluster, sid, check=True).stdout
    assert state == "SUCCEEDED", logs[-4000:]
    scored = json.loads(logs[logs.index("{"):logs.rindex("}") + 1])
    assert scored["examples"] == json.loads((out / "j1" / "metrics.json").read_text())["examples"]
    assert 0.0 <= scored["element_f1@0.5"] <= 1.0


def test_bad_config_job_fails_with_the_error_in_its_logs(cluster, data_dir, tmp_path):
    sid = submit(cluster, ["--data", data_dir, "--output", str(tmp_path), "--name", "bad", "--phase", "phase1",
                           "--set", "training.epochs=0"])
    state = wait_terminal(cluster, sid, 300)
    logs = ray_cli("job", "logs", "--address", cluster, sid, check=True).stdout
    assert state == "FAILED", logs
    assert "training.epochs" in logs and "error:" in logs, logs
    assert not (tmp_path / "bad").exists()
