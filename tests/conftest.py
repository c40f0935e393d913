"""Shared fixtures. Tests use a real local Ray (token authentication left on)."""

import os
import socket

import pytest

# Tests own their Ray instance; never join a cluster a developer has running.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: the sockets stay bound until all are chosen, since a port released
    by one call is often the very one the kernel hands to the next."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def metrics_rows(run_dir) -> list[dict]:
    """The rows of a run's metrics.jsonl ([] before the first epoch)."""
    import json
    from pathlib import Path
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def registered_checkpoints(run_dir) -> int:
    """Checkpoints the Train controller has registered (its snapshot in the run directory).
    A checkpoint_* directory alone is not enough: it exists once uploaded, before the
    controller has taken the report, and a kill in between loses it."""
    import json
    from pathlib import Path
    try:
        snap = json.loads((Path(run_dir) / "checkpoint_manager_snapshot.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return 0
    return len(snap.get("checkpoint_results", []))


def wait_for(predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll a condition (a state change of another process) until it holds; fail naming it and
    the last value seen."""
    import time
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last={value!r}")


# A small Phase 2 config that tiny_serving_artifact's model grows into exactly (wider, deeper).
TINY_GROWN = ["model.d_model=64", "model.n_heads=4", "model.n_layers=2", "model.ff_mult=2", "model.patch_size=32",
              "model.image_height=64", "model.image_width=96", "model.max_elements=8", "model.max_seq_len=64",
              "model.coord_bins=32", "model.max_spec_len=16"]


def tiny_serving_artifact(out_dir, seed: int, decoder: str = "autoregressive") -> str:
    """A random-init Phase 1 artifact small enough to load and answer in milliseconds."""
    import torch

    from layoutray.model.artifact import export_artifact
    from layoutray.config import load_config
    from layoutray.model.network import build_model

    cfg = load_config(phase="phase1", overrides=[
        "model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.ff_mult=2", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "model.max_elements=8", "model.max_seq_len=48",
        "model.coord_bins=32", "model.max_spec_len=16", f"model.decoder={decoder}", "model.diffusion_steps=20"])
    torch.manual_seed(seed)
    model = build_model(cfg)
    export_artifact(model, cfg, str(out_dir), {"name": f"tiny-{seed}", "note": "random init, for tests"})
    return str(out_dir)


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance for one test module.

    Ray gets more logical CPUs than the 2 physical ones: Ray Data needs a CPU the Train
    workers have not reserved, or its file-listing task waits forever.
    """
    import ray

    from layoutray.runtime import start_local

    if ray.is_initialized():  # a test that trained in-process without this fixture left its instance
        ray.shutdown()
    start_local(num_cpus=4, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


# Property tests check behaviour, not speed: on a loaded 2-core CI machine hypothesis's
# default 200 ms deadline would fail tests for reasons that have nothing to do with them.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("layoutray", deadline=None)
_hypothesis_settings.load_profile("layoutray")
