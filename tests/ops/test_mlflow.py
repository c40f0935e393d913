"""MLflow end to end against a real `mlflow server` (sqlite backend, proxied artifact store in a
temporary directory, 127.0.0.1, a free port) started by this module: a tiny training run logs
params, per-epoch metrics, config, metrics.json and the model and becomes a registry version;
`evaluate` logs its own run for a `models:/` reference; Serve loads `models:/NAME@ALIAS`, a
rollout takes `models:/NAME/VERSION` as its canary and the promotion moves the alias."""

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import requests

from conftest import free_port, tiny_serving_artifact, wait_for
from layoutray.config import TrackingConfig, load_config

pytestmark = pytest.mark.slow

NAME = "tiny-layouts"
TOKEN = "mlflow-test-token-5d2e"
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32", "model.image_height=64",
        "model.image_width=96", "training.epochs=2", "training.batch_size=4", "validation.generate_examples=4",
        "training.max_steps_per_epoch=2", "scaling.num_workers=1", "scaling.cpus_per_worker=1"]


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(uri + "/health", timeout=5) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def mlflow_process(tmp_path_factory):
    """`mlflow server` started in its own process group (its uvicorn worker is a child), stopped
    afterwards. Not waited for here: it starts while Ray does (see `trained`)."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # no background job runner (it needs extra packages)
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
           f"sqlite:///{root}/mlflow.db", "--artifacts-destination", str(root / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc, f"http://127.0.0.1:{port}", root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)
        log.close()


@pytest.fixture(scope="module")
def mlflow_server(mlflow_process):
    """The server's URI once it answers /health."""
    proc, uri, root = mlflow_process
    wait_for(lambda: proc.poll() is not None or _healthy(uri), 300, "mlflow server /health", poll=0.5)
    assert proc.poll() is None, (root / "server.log").read_text()[-3000:]
    return uri


@pytest.fixture(scope="module")
def client(mlflow_server):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    from layoutray.data.synth import synthesize

    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 40, seed=3, shard_rows=20)
    return str(d)


@pytest.fixture(scope="module")
def trained(mlflow_process, ray_local, data_dir, mlflow_server, tmp_path_factory):  # server and Ray start together
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=TINY + [
        "tracking.backend=mlflow", f'tracking.uri="{mlflow_server}"', f"tracking.registered_model={NAME}"])
    return run_training(cfg, data_dir, "tracked", str(tmp_path_factory.mktemp("runs")))


def test_training_is_an_mlflow_run_and_a_registry_version(trained, client):
    run_id = trained["tracking"]["run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "tracked"
    params = run.data.params
    assert params["model.d_model"] == "32" and params["training.epochs"] == "2" and params["phase"] == "phase1"
    assert not any(k.startswith("tracking.") for k in params)
    history = client.get_metric_history(run_id, "val_loss")
    assert sorted(m.step for m in history) == [1, 2]  # one value per epoch, logged as the epochs ended
    rows = [json.loads(x) for x in (Path(trained["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
    assert sorted(m.value for m in history) == sorted(r["val_loss"] for r in rows)
    assert [m.step for m in client.get_metric_history(run_id, "val_element_f1_at_0.5")] != []
    test = json.loads((Path(trained["run_dir"]) / "metrics.json").read_text())
    assert run.data.metrics["test_token_accuracy"] == pytest.approx(test["token_accuracy"])
    files = {f.path for f in client.list_artifacts(run_id)} | {f.path for f in client.list_artifacts(run_id, "model")}
    assert {"config.yaml", "metrics.json", "model/meta.json", "model/model.safetensors"} <= files

    meta = json.loads((Path(trained["model"]) / "meta.json").read_text())
    lineage = meta["lineage"]
    assert lineage["tracking_run_id"] == run_id and lineage["data"]["kind"] == "dataset"
    assert run.data.tags["layoutray.config_hash"] == lineage["config_hash"]
    assert run.data.tags["mlflow.source.git.commit"] == lineage["code"]["commit"]
    versions = client.search_model_versions(f"name='{NAME}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", run_id)]
    assert trained["tracking"]["registered"] == {"name": NAME, "version": "1", "ref": f"models:/{NAME}/1"}


def test_resume_continues_the_same_run(trained, mlflow_server, client):
    from layoutray.tracking import TrackedRun

    cfg = TrackingConfig(backend="mlflow", uri=mlflow_server)
    again = TrackedRun.open(cfg, "tracked", trained["run_dir"], resume=True)
    assert again.run_id == trained["tracking"]["run_id"]
    assert client.get_run(again.run_id).info.status == "RUNNING"
    again.end()
    fresh = TrackedRun.open(cfg, "other", trained["run_dir"] + "-elsewhere", resume=True)
    assert fresh.run_id != again.run_id  # nothing to resume there: a new run
    fresh.end()


def test_evaluate_and_show_a_registry_model(trained, mlflow_server, data_dir, client, capsys, tmp_path,
                                             monkeypatch):
    from cli.main import main

    monkeypatch.setenv("LAYOUTRAY_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["evaluate", "--model", f"models:/{NAME}/1", "--data", data_dir, "--split", "val", "--limit", "4",
                 "--json", "--tracking", f"mlflow:{mlflow_server}"]) == 0
    out = json.loads(capsys.readouterr().out)
    run = client.get_run(out["tracking"]["run_id"])
    assert run.data.params["model"] == f"models:/{NAME}/1" and run.data.params["split"] == "val"
    assert run.data.metrics["token_accuracy"] == pytest.approx(out["token_accuracy"])
    assert run.data.tags["layoutray.model_run_id"] == trained["tracking"]["run_id"]
    assert "metrics.json" in {f.path for f in client.list_artifacts(run.info.run_id)}

    assert main(["model", "show", f"models:/{NAME}/1", "--tracking-uri", mlflow_server]) == 0
    shown = capsys.readouterr().out
    assert f"models:/{NAME}/1 -> version 1" in shown
    assert f"tracking run:  {trained['tracking']['run_id']}" in shown and "manifest" in shown


def _register_handmade(uri: str, root: Path) -> str:
    """A second version: a tiny random-init artifact logged from a run of its own."""
    from layoutray.tracking import TrackedRun

    model = tiny_serving_artifact(root / "handmade", seed=2)
    run = TrackedRun.open(TrackingConfig(backend="mlflow", uri=uri, registered_model=NAME), "handmade", str(root))
    run.log_path(model, "model")
    version = run.register("model")["version"]
    run.end()
    return version


def test_serve_from_the_registry_and_promotion_moves_the_alias(trained, mlflow_server, tmp_path):
    from layoutray.tracking import alias_version, move_alias
    from tests.serving.helpers import serve_app

    assert _register_handmade(mlflow_server, tmp_path) == "2"
    move_alias(mlflow_server, NAME, "champion", "1")
    args = {"stable_model": f"models:/{NAME}@champion", "canary_model": f"models:/{NAME}/1",
            "model_num_cpus": 0.25, "tracking_uri": mlflow_server}
    with serve_app(tmp_path, TOKEN, args, router={"tracking_uri": mlflow_server}) as app:
        blue = app.models()["versions"][0]
        assert blue["registry"]["ref"] == f"models:/{NAME}@champion" and blue["registry"]["version"] == "1"
        assert blue["lineage"]["tracking_run_id"] == trained["tracking"]["run_id"]
        public = requests.get(app.url + "/v1/models", timeout=30).json()["versions"][0]
        assert "lineage" not in public and "registry" not in public and "artifact" not in public

        r = app.admin("POST", "/start", {"canary": f"models:/{NAME}@nope", "interval": 3600})
        assert r.status_code == 422 and r.json()["error"]["field"] == "canary", r.text
        assert "not in the registry" in r.json()["error"]["message"]

        r = app.admin("POST", "/start", {"canary": f"models:/{NAME}/2", "interval": 3600})
        assert r.status_code == 200, r.text
        assert app.state()["registry"]["green"]["version"] == "2"
        assert app.admin("POST", "/promote", {}).status_code == 200
        wait_for(lambda: alias_version(mlflow_server, NAME, "champion") == "2", 60, "champion -> version 2")
        moved = [e for e in app.audit() if e["decision"] == "registry"]
        assert moved and moved[-1]["ok"] and moved[-1]["reason"] == f"models:/{NAME}@champion -> version 2"
        assert app.state()["registry"]["green"]["alias"] == "champion"
