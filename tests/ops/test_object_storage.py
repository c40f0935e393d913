"""Every artifact in a bucket: synth -> train -> evaluate -> serve -> rollout against a real
S3-compatible server (moto's, started here on 127.0.0.1; credentials and endpoint through the
standard AWS variables only), and an outage in the middle of training: the server stopped, a
clear error naming the run's URI, the server restarted, the run resumed from its checkpoints
in the bucket. A recipe and a sweep keep their runs, experiment and report in the bucket too."""

import json
import os
import subprocess
import sys
import threading

import pytest
import requests

from conftest import free_port, wait_for
from s3server import BUCKET, s3_environment

pytestmark = pytest.mark.slow

ROOT = f"s3://{BUCKET}"
DATA, RUNS = f"{ROOT}/sections", f"{ROOT}/runs"
TOKEN = "object-storage-admin-token-51c2"
# Enough epochs after the first checkpoint that the outage lands mid-run on a fast machine too.
EPOCHS = 10
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.batch_size=4", f"training.epochs={EPOCHS}",
        "validation.generate_examples=0", "training.max_steps_per_epoch=2", "scaling.num_workers=1",
        "scaling.cpus_per_worker=1", "checkpoint.max_failures=0"]
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    # Before `ray_local` in every test's arguments: Ray's processes inherit the variables.
    with s3_environment(tmp_path_factory.mktemp("s3")) as server:
        yield server


@pytest.fixture(scope="module")
def dataset(s3):
    from layoutray.data.synth import synthesize

    synthesize(DATA, 48, seed=3, shard_rows=24)
    return DATA


def _registered(uri: str) -> int:
    """Checkpoints Ray Train's controller has registered in the run's snapshot in the bucket."""
    from layoutray import storage
    try:
        return len(storage.read_json(f"{uri}/checkpoint_manager_snapshot.json").get("checkpoint_results", []))
    except (FileNotFoundError, ValueError):
        return 0


def _history(uri: str) -> list[int]:
    from layoutray import storage
    rows = storage.read_text(f"{uri}/metrics.jsonl").splitlines()
    return [json.loads(r)["epoch"] for r in rows if r.strip()]


def test_dataset_commands_read_a_uri(s3, dataset, tmp_path):
    from layoutray.data.dataset import count_examples, read_manifest

    assert count_examples(dataset) == {"train": 38, "val": 4, "test": 6}  # split_counts(48)
    assert read_manifest(dataset)["total"] == 48
    p = subprocess.run([sys.executable, "-m", "cli", "data", "validate", dataset, "--json"], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr


def test_a_read_from_an_unreachable_store_fails_instead_of_stalling(s3, ray_local, dataset):
    """Ray Data's default retries connection errors in nested loops (hours against a store that
    is down); the training pipeline's read ends with the connection error."""
    from layoutray.config import load_config
    from layoutray.data.pipeline import build_dataset

    ds = build_dataset(dataset, "train", load_config(phase="phase1", overrides=TINY), train=True)
    outcome: dict = {}

    def target():
        try:
            outcome["rows"] = sum(len(b["id"]) for b in ds.iter_batches(batch_size=4))
        except Exception as e:  # checked below
            outcome["error"] = e

    s3.stop()
    try:
        thread = threading.Thread(target=target, daemon=True)
        thread.start()
        thread.join(timeout=300)
    finally:
        s3.start()
    assert not thread.is_alive(), "the read was still retrying 5 min into the outage"
    assert "NETWORK_CONNECTION" in str(outcome.get("error")), outcome


@pytest.fixture(scope="module")
def trained(s3, ray_local, dataset):
    """The run `obj` in the bucket, interrupted by an outage after its first checkpoint and resumed."""
    from layoutray.config import load_config
    from layoutray.storage import StorageError
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=TINY)
    run = f"{RUNS}/obj"
    outcome: dict = {}

    def target():
        try:
            outcome["summary"] = run_training(cfg, dataset, "obj", RUNS)
        except BaseException as e:  # checked below
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    wait_for(lambda: _registered(run) >= 1 or "error" in outcome, 600, "the first checkpoint in the bucket", poll=0.1)
    assert "error" not in outcome, outcome.get("error")
    s3.stop()
    thread.join(timeout=600)
    s3.start()
    assert not thread.is_alive(), "the run neither failed nor finished within 10 min of the outage"
    assert "summary" not in outcome, "the run finished before the outage"
    error = outcome["error"]
    assert isinstance(error, StorageError), repr(error)
    assert run in str(error) and "--resume" in str(error), str(error)

    done = _history(run)
    assert 1 <= len(done) < EPOCHS
    summary = run_training(cfg, dataset, "obj", RUNS, resume=True)
    return {"summary": summary, "epochs_before_outage": done, "run": run}


def test_training_survives_an_outage_and_writes_everything_to_the_bucket(trained):
    from layoutray import storage

    run, summary = trained["run"], trained["summary"]
    assert _history(run) == list(range(1, EPOCHS + 1))  # each epoch once: the resumed run did not start over
    assert summary["model"] == f"{run}/model" and summary["run_dir"] == run
    assert {"meta.json", "config.yaml", "model.safetensors", "golden.json"} <= set(storage.list_dir(f"{run}/model"))
    assert storage.read_json(f"{run}/metrics.json")["split"] == "test"
    assert any(n.startswith("checkpoint_") for n in storage.list_dir(run))
    assert storage.list_dir(f"{run}/tensorboard")


def test_evaluate_job_reads_model_and_data_from_the_bucket(trained):
    model = f"{trained['run']}/model"
    p = subprocess.run([sys.executable, "-m", "trainables.evaluate", "--model", model, "--data", DATA, "--json"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)
    assert m["model"] == model and m["data"] == DATA and m["examples"] == 6


def test_serve_and_roll_out_models_from_the_bucket(s3, trained, tmp_path):
    from ray import serve

    from layoutray import storage
    from serving.deploy import app_config, deploy

    stable = f"{trained['run']}/model"
    canary = f"{ROOT}/models/v2"
    storage.copy_dir(stable, canary)
    (tmp_path / "token").write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}"
    router = {"weights": {"blue": 100, "green": 0}, "tick_s": 0.1, "admin_token_file": str(tmp_path / "token")}
    try:
        deploy([app_config("layoutray", "/", {"stable_model": stable, "canary_model": stable,
                                               "state_dir": str(tmp_path / "state"), "model_num_cpus": 0.5},
                           router=router, blue={}, green={})])
        r = requests.post(f"{url}/v1/layouts", json={"section_type": "hero", "elements": ["heading", "button"]},
                          timeout=60)
        assert r.status_code == 200, r.text
        models = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        assert [v["artifact"] for v in models["versions"]] == [stable, stable]

        env = {**os.environ, "LAYOUTRAY_ADMIN_TOKEN": TOKEN}
        cli = [sys.executable, "-m", "cli", "rollout"]
        bad = subprocess.run(cli + ["start", "--canary", f"{ROOT}/models/absent", "--url", url, "--json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert bad.returncode == 1 and f"{ROOT}/models/absent" in bad.stdout + bad.stderr, bad.stdout + bad.stderr
        ok = subprocess.run(cli + ["start", "--canary", canary, "--url", url, "--json"],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert ok.returncode == 0, ok.stdout + ok.stderr
        promoted = subprocess.run(cli + ["promote", "--url", url, "--json"], cwd=REPO, env=env,
                                  capture_output=True, text=True, timeout=120)
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
        models = requests.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
        assert models["stable"] == "green"
        assert {v["name"]: v["artifact"] for v in models["versions"]}["green"] == canary
    finally:
        serve.shutdown()


def test_recipe_writes_its_stages_to_the_bucket(s3, ray_local, dataset, tmp_path):
    from cli.main import main
    from layoutray import storage

    small = [o for o in TINY if not o.startswith("training.epochs")]
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# layoutray train --recipe THIS\nname: r\nphase: phase1\n"
                      f"set: {json.dumps(small)}\nstages:\n"
                      "  - {name: a, epochs: 1, learning_rate: 2.0e-3}\n"
                      "  - {name: b, epochs: 1, learning_rate: 5.0e-4}\n")
    assert main(["train", "--recipe", str(recipe), "--data", dataset, "--output", RUNS]) == 0
    state = storage.read_json(f"{RUNS}/r/recipe.json")
    assert state["model"] == f"{RUNS}/r/02-b/model" and state["stages"]["01-a"]["model"] == f"{RUNS}/r/01-a/model"
    assert "model.safetensors" in storage.list_dir(state["model"])
    # the run exists in the bucket: starting it again without --resume is refused
    assert main(["train", "--recipe", str(recipe), "--data", dataset, "--output", RUNS]) == 2


def test_sweep_keeps_its_experiment_and_report_in_the_bucket(s3, ray_local, dataset, tmp_path):
    import yaml

    from layoutray import storage
    from layoutray.sweep_config import load_sweep
    from trainables.sweep import run_sweep

    tree = {"name": "sw", "phase": "phase1",
            "overrides": [o for o in TINY if not o.startswith(("training.epochs", "scaling.", "checkpoint."))]
            + ["training.epochs=1"],
            "data": {"dir": dataset, "synthesize_if_missing": False},
            "arms": [{"name": "constant", "overrides": ["schedule.lr=constant"]}],
            "seeds": [0], "min_seeds": 1, "target_val_loss": 5.0,
            "resources": {"trial_cpus": 0.5, "workers": 1, "cpus_per_worker": 1.0},
            "max_concurrent_trials": 1, "asha": {"enabled": False}, "storage_path": f"{ROOT}/sweeps"}
    path = tmp_path / "sw.yaml"
    path.write_text(yaml.safe_dump(tree))
    out = run_sweep(load_sweep(path), full_budget=True)
    assert out["experiment_dir"] == f"{ROOT}/sweeps/sw" and out["report_dir"] == f"{ROOT}/sweeps/sw/report"
    assert [r["status"] for r in out["records"]] == ["completed"]
    assert {"report.md", "trials.csv", "summary.json"} <= set(storage.list_dir(out["report_dir"]))
    # the same name again is refused: the experiment is in the bucket, not only in the local staging copy
    from layoutray.config import ConfigError
    with pytest.raises(ConfigError, match="already exists"):
        run_sweep(load_sweep(path), full_budget=True)
