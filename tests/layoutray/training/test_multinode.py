"""Multi-node, simulated with ray.cluster_utils.Cluster: a head and two worker nodes on this
machine. Training with 2 workers lands one worker on each node, checkpoints to shared storage
(a local directory every "node" sees), and survives a node removed mid-run through the
failure policy. This module owns its cluster: it does not use the `ray_local` fixture.

run_training has no knob for ScalingConfig.placement_strategy, so spreading is forced by
resources: each worker asks for 1.5 CPUs and each worker node has 2, so no node can hold two
workers. The head and a third "data" node have 1 CPU each, too small for a worker: Ray Data needs
one whole CPU for a preprocessing task and another for read tasks (the 0.5 CPUs left on each
worker node do not add up to one: Ray does not pool fractions across nodes), or the pipeline
waits forever.
Where the workers ran is checked from the actors' node ids. A fourth node declares one GPU, for
where a GPU run's test-split evaluation goes.
"""

import os
import threading

import pytest

from conftest import free_port, metrics_rows, registered_checkpoints, wait_for
from layoutray.config import load_config
from layoutray.data.synth import synthesize

TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.batch_size=4",
        "validation.generate_examples=0", "training.max_steps_per_epoch=2",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1.5", "checkpoint.max_failures=3"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    import ray
    from ray.cluster_utils import Cluster

    ray.shutdown()
    port = free_port()
    # Ray Train's helpers find the state API through this variable (layoutray.runtime.start_local);
    # an earlier module's value would point them at a dashboard that is gone.
    saved = os.environ.get("RAY_API_SERVER_ADDRESS")
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    try:
        c = Cluster(initialize_head=True, connect=True, head_node_args={
            "num_cpus": 1, "include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port})
        data_node = c.add_node(num_cpus=1, resources={"data": 1})
        c.add_node(num_cpus=2, resources={"node_a": 1})
        c.add_node(num_cpus=2, resources={"node_b": 1})
        # A "GPU" node: Ray schedules on the declared GPU; nothing here runs CUDA on it.
        gpu_node = c.add_node(num_cpus=1, num_gpus=1)
        c.wait_for_nodes()
    finally:  # the nodes have it; this process's later tests must not
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)
        if saved is not None:
            os.environ["RAY_API_SERVER_ADDRESS"] = saved
    c.small_node_ids = {c.head_node.node_id, data_node.node_id, gpu_node.node_id}  # too small to host a worker
    c.gpu_node_id = gpu_node.node_id
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 80, seed=7, shard_rows=40)
    return str(d)








def worker_nodes() -> dict[str, str]:
    """{actor_id: node_id} of the ALIVE Ray Train workers."""
    import ray
    from ray.util.state import list_actors
    return {a.actor_id: a.node_id for a in list_actors(
        address=ray.get_runtime_context().gcs_address,
        filters=[("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")], timeout=30)}


def run_in_thread(fn):
    outcome: dict = {}

    def target():
        try:
            outcome["summary"] = fn()
        except BaseException as e:
            outcome["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, outcome


def test_spread_training_and_node_loss(cluster, data_dir, tmp_path):
    from layoutray.training.driver import run_training

    epochs = 4
    cfg = load_config(phase="phase1", overrides=TINY + [f"training.epochs={epochs}"])
    run_dir = tmp_path / "spread"
    thread, outcome = run_in_thread(lambda: run_training(cfg, data_dir, "spread", str(tmp_path),
                                                         evaluate_test=False))

    # Two workers, on two different nodes, neither on the head.
    placed = wait_for(lambda: (w := worker_nodes()) and len(w) == 2 and w, 600, "two ALIVE RayTrainWorkers")
    assert len(set(placed.values())) == 2 and not cluster.small_node_ids & set(placed.values()), placed

    # Checkpoints land in the shared storage path (storage_path = tmp dir every node sees).
    wait_for(lambda: registered_checkpoints(run_dir) >= 1 or "error" in outcome, 600,
             "the first checkpoint registered in the shared storage path")
    assert any(run_dir.glob("checkpoint_*/model"))
    assert "error" not in outcome, outcome.get("error")

    # Remove the node of one worker, then bring up a replacement so the group can be rebuilt.
    victim_node_id = next(iter(placed.values()))
    victim = next(n for n in cluster.worker_nodes if n.node_id == victim_node_id)
    rows_at_loss = len(metrics_rows(run_dir))
    assert rows_at_loss < epochs and thread.is_alive(), "the run finished before the node was removed"
    cluster.remove_node(victim, allow_graceful=False)
    cluster.add_node(num_cpus=2, resources={"node_c": 1})

    thread.join(timeout=900)
    assert not thread.is_alive(), "training did not finish within 15 minutes of the node loss"
    assert "error" not in outcome, f"run failed after the node loss: {outcome.get('error')!r}"

    history = metrics_rows(run_dir)
    seen = [r["epoch"] for r in history]
    assert sorted(set(seen)) == list(range(1, epochs + 1)) and seen[-1] == epochs, seen
    after = history[rows_at_loss:]
    assert after and all(r["restarts"] >= 1 for r in after), history
    assert (run_dir / "model" / "config.yaml").is_file()


def test_gpu_run_driven_without_cuda_evaluates_on_a_gpu_node(cluster, data_dir, tmp_path):
    """A GPU run's driver on a head node without CUDA (`ray job submit`) sends the test-split
    evaluation to a node with a GPU as a Ray task, and gets the same metrics back."""
    import ray
    import torch
    from ray.util.state import list_tasks

    from layoutray.model.artifact import export_artifact
    from layoutray.model.network import build_model
    from layoutray.training.driver import evaluate_test_split

    cfg = load_config(phase="phase1", overrides=TINY)
    torch.manual_seed(0)
    model_dir = tmp_path / "model"
    export_artifact(build_model(cfg), cfg, str(model_dir), {"name": "tiny", "note": "random init"})
    assert not torch.cuda.is_available()

    here = evaluate_test_split(str(model_dir), data_dir, cfg)
    gpu_cfg = load_config(phase="phase1", overrides=TINY + ["scaling.use_gpu=true", "scaling.gpus_per_worker=1"])
    there = evaluate_test_split(str(model_dir), data_dir, gpu_cfg)

    def finished_tasks():  # task events reach the state API a moment after ray.get returns
        tasks = list_tasks(address=ray.get_runtime_context().gcs_address,
                           filters=[("func_or_class_name", "=", "evaluate_artifact")], timeout=30)
        return tasks if tasks and all(t.state == "FINISHED" for t in tasks) else None

    tasks = wait_for(finished_tasks, 60, "the evaluation task's FINISHED event")
    assert [t.node_id for t in tasks] == [cluster.gpu_node_id], tasks
    untimed = lambda m: {k: v for k, v in m.items() if k != "seconds"}  # noqa: E731
    assert here["examples"] > 0
    assert untimed(there) == untimed(here)
