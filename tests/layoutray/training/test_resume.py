"""Resume: a real worker process killed mid-run (FailureConfig restarts the group from the
last checkpoint), and `--resume` continuing a stopped run by name."""

import os
import signal
import threading

import pytest

from conftest import metrics_rows, registered_checkpoints, wait_for
from layoutray.config import load_config
from layoutray.schedules import batch_schedule, regularization_at
from layoutray.data.synth import synthesize

TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.batch_size=4",
        "validation.generate_examples=0", "training.max_steps_per_epoch=2",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1", "checkpoint.max_failures=2"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 80, seed=5, shard_rows=40)
    return str(d)








def alive_train_workers():
    import ray
    from ray.util.state import list_actors
    # Ray Train V2's worker actor class (ray/train/v2/_internal/execution/worker_group/worker.py).
    return list_actors(address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")], timeout=30)


def test_killed_worker_resumes_from_last_checkpoint(ray_local, data_dir, tmp_path):
    from layoutray.training.driver import run_training

    epochs = 4
    cfg = load_config(phase="phase1", overrides=TINY + [f"training.epochs={epochs}", "schedule.batch=phi",
                                                        "schedule.batch_phases=4", "schedule.regularization=phi",
                                                        "training.dropout=0.3"])
    run_dir = tmp_path / "killed"
    outcome: dict = {}

    def target():
        try:
            outcome["summary"] = run_training(cfg, data_dir, "killed", str(tmp_path), evaluate_test=False)
        except BaseException as e:  # surfaced by the assertions below
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    # Wait until the controller has registered a checkpoint, so the rebuilt group has one to
    # continue from (rows are written just before the checkpoint is reported).
    wait_for(lambda: registered_checkpoints(run_dir) >= 1 or "error" in outcome, 600,
             "the first registered checkpoint")
    assert "error" not in outcome, outcome.get("error")

    workers = wait_for(alive_train_workers, 60, "an ALIVE RayTrainWorker")
    victim = workers[0]
    rows_at_kill = len(metrics_rows(run_dir))
    os.kill(victim.pid, signal.SIGKILL)
    assert rows_at_kill < epochs and thread.is_alive(), "the run finished before the kill landed"

    thread.join(timeout=900)
    assert not thread.is_alive(), "training did not finish within 15 minutes of the kill"
    assert "error" not in outcome, f"run failed after the kill: {outcome.get('error')!r}"

    history = metrics_rows(run_dir)
    epochs_seen = [r["epoch"] for r in history]
    # Every epoch exactly once: the epoch in flight at the kill wrote its row before its
    # checkpoint was registered, and the resumed run dropped that row before redoing the epoch.
    assert epochs_seen == list(range(1, epochs + 1)), epochs_seen
    restarted = [i for i, r in enumerate(history) if r["restarts"] >= 1]
    assert restarted, f"no row after the kill has restarts >= 1: {history}"
    first = restarted[0]
    assert first >= 1 and restarted == list(range(first, len(history))), history
    # It continued from a checkpoint instead of starting over at epoch 1, and the step count,
    # the phi batch schedule and the phi regularisation carried on as if nothing had happened.
    steps = [r["global_step"] for r in history]
    assert steps == [2 * e for e in range(1, epochs + 1)], steps
    total = 2 * epochs
    expected_batch = [batch_schedule(s, total, 4, phases=4, micro_batch=2, world_size=2) for s in steps]
    assert [r["batch_size"] for r in history] == expected_batch, history
    assert expected_batch[-1] > expected_batch[0]  # the schedule really grew the batch
    expected_dropout = [regularization_at(s, total, 0.3, 0.01, "phi", 4)[0] for s in steps]
    assert [r["dropout"] for r in history] == pytest.approx(expected_dropout), history
    assert (run_dir / "model").is_dir()
    # The killed process really is gone: the group was rebuilt with new worker processes.
    assert victim.pid not in {a.pid for a in alive_train_workers()}


def test_resume_continues_a_stopped_run_by_name(ray_local, data_dir, tmp_path):
    from layoutray.training.driver import run_training

    run_training(load_config(phase="phase1", overrides=TINY + ["training.epochs=2"]),
                 data_dir, "resumable", str(tmp_path), evaluate_test=False)
    assert [r["epoch"] for r in metrics_rows(tmp_path / "resumable")] == [1, 2]

    cfg4 = load_config(phase="phase1", overrides=TINY + ["training.epochs=4"])
    run_training(cfg4, data_dir, "resumable", str(tmp_path), resume=True, evaluate_test=False)
    history = metrics_rows(tmp_path / "resumable")
    assert [r["epoch"] for r in history] == [1, 2, 3, 4], "epochs 1-2 rerun or an epoch missing"
    assert [r["restarts"] for r in history[:2]] == [0, 0]
    assert history[2]["restarts"] >= 1 and history[3]["restarts"] >= 1
    assert history[2]["global_step"] > history[1]["global_step"]  # optimizer state carried over


def test_resume_without_a_run_is_refused(tmp_path, data_dir):
    from layoutray.config import ConfigError
    from layoutray.training.driver import run_training

    with pytest.raises(ConfigError, match="nothing to resume"):
        run_training(load_config(phase="phase1", overrides=TINY), data_dir, "never-ran", str(tmp_path),
                     resume=True)
