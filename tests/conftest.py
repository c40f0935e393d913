"""Shared fixtures. Tests use a real local Ray (token authentication left on)."""

import os
import socket

import pytest

# Tests own their Ray instance; never join a cluster a developer has running.
os.environ.pop("RAY_ADDRESS", None)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance for one test module.

    Ray gets more logical CPUs than the 2 physical ones: Ray Data needs a CPU the Train
    workers have not reserved, or its file-listing task waits forever (shared/notes).
    """
    import ray

    ray.init(num_cpus=4, include_dashboard=True, dashboard_host="127.0.0.1",
             log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


# Property tests check behaviour, not speed: on a loaded 2-core CI machine hypothesis's
# default 200 ms deadline would fail tests for reasons that have nothing to do with them.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("layoutray", deadline=None)
_hypothesis_settings.load_profile("layoutray")
