"""Ray start-up, in one place.

A run on one machine starts its own Ray instance (`address="local"`) unless the caller names a
cluster (`--address`, or `RAY_ADDRESS` in the environment). Starting a private instance rather
than joining "whatever is there" is what lets two runs, or a run and the test suite, share a host:
`ray.init()` with no address would join the cluster that the last `ray start --head` recorded under
/tmp/ray, fail on a stale record ("When connecting to an existing cluster, num_cpus and num_gpus
must not be provided"), or put a run's Train controller at the mercy of someone else's
`ray stop`. Each local instance also keeps its session files in a directory of its own, so a
`ray start` / `ray stop` on the same host never finds it.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile

from layoutray.config import ConfigError


API_SERVER_VAR = "RAY_API_SERVER_ADDRESS"


def cluster_address(address: str | None = None) -> str | None:
    """The cluster this process should join: `address`, else `RAY_ADDRESS`, else None (local)."""
    return address or os.environ.get("RAY_ADDRESS") or None


def local_cpus(workers: int, cpus_per_worker: float, spare: int = 2) -> int:
    """Logical CPUs for a local instance: the workers' share plus `spare`.

    Ray Data only gets the CPUs that Train workers did not reserve, and its read tasks need a
    whole CPU each; with none left over the pipeline waits forever."""
    need = max(1, workers) * cpus_per_worker + spare
    return max(int(math.ceil(need)), os.cpu_count() or 1)


def init_ray(address: str | None = None, *, num_cpus: int | None = None, dashboard: bool = True,
             **kwargs) -> str:
    """Start or join Ray once per process; returns "cluster" or "local".

    Joining a cluster takes no resource arguments (Ray refuses them). A local instance binds
    its dashboard to loopback and keeps token authentication as Ray sets it by default."""
    import ray

    if ray.is_initialized():
        return "cluster" if cluster_address(address) else "local"
    target = cluster_address(address)
    if target:
        ray.init(address=target, **kwargs)
        return "cluster"
    start_local(num_cpus=num_cpus, dashboard=dashboard, **kwargs)
    return "local"


def start_local(num_cpus: int | None = None, dashboard: bool = True, **kwargs) -> None:
    """A new Ray instance of this process's own, whatever RAY_ADDRESS or /tmp/ray say.

    Ray's own helpers that query the state API without an address (Ray Train's placement-group
    cleaner, which decides whether the run's controller is alive) would otherwise guess the
    cluster from /tmp/ray or from the GCS processes on the host: with another instance on the
    host they ask the wrong one, find no controller and tear the run's workers down. So the
    dashboard (the state API's server) gets a port chosen here, named in RAY_API_SERVER_ADDRESS
    while Ray starts, so that the raylet and every worker inherit it. This process's own
    environment is restored afterwards: the variable overrides even an explicit address in Ray's
    clients (`ray job`, the state API), and must not outlive this instance here."""
    import ray

    saved = os.environ.pop(API_SERVER_VAR, None)
    if dashboard:
        port = free_port()
        os.environ[API_SERVER_VAR] = f"http://127.0.0.1:{port}"
        kwargs["dashboard_port"] = port
    try:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard, dashboard_host="127.0.0.1",
                 _temp_dir=private_temp_dir(), _node_ip_address="127.0.0.1", **kwargs)
    finally:
        os.environ.pop(API_SERVER_VAR, None)
        if saved is not None:
            os.environ[API_SERVER_VAR] = saved


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_temp_dir() -> str:
    """A short, per-process root for Ray's session files (Unix socket paths cap at 107 bytes)."""
    root = os.environ.get("LAYOUTRAY_RAY_TMPDIR") or tempfile.gettempdir()
    os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix="lr-ray-", dir=root)


def gpu_shortfall(need: float, address: str | None = None) -> float | None:
    """The GPUs a local Ray instance has, when fewer than `need`; else None.

    Asking a local instance for more GPUs than the machine has is not an error to Ray Train: it
    waits for workers that cannot start while the autoscaler says no node type fits, so the run
    would hang. On a cluster nodes may still come, so only a local instance is judged."""
    import ray

    if need <= 0 or cluster_address(address):
        return None
    have = ray.cluster_resources().get("GPU", 0.0)
    return have if have < need else None


def check_gpus(workers: int, gpus_per_worker: float, *, key: str, what: str, fix: str,
               address: str | None = None, source: str | None = None) -> None:
    """Refuse, naming the config key, a GPU request a local instance cannot meet."""
    need = workers * gpus_per_worker
    have = gpu_shortfall(need, address)
    if have is not None:
        raise ConfigError(key, f"{what} asks for {need:g} GPU(s) ({workers} worker(s) x {gpus_per_worker:g} "
                               f"per worker) but the local Ray instance has {have:g}; {fix}, or submit to a "
                               f"cluster with GPUs (--address or RAY_ADDRESS)", source=source)
