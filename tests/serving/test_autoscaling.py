"""Serve autoscaling of the model slots, as configs/serve.yaml sets it, exercised on a live app:
load makes LayoutModel_blue's replicas go up, and they come back to min_replicas when it stops.

The deployed autoscaling_config is the file's (min_replicas, target_ongoing_requests) with
shorter delays and metric intervals, and at most 2 replicas: a test cannot wait the production
delays, and a 2-core machine should not start four replicas.
"""

from pathlib import Path

import pytest
import yaml

from helpers import Load, one_model_app, poll

TOKEN = "test-admin-token-autoscale-6a1d"
SERVE_YAML = Path(__file__).resolve().parents[2] / "configs" / "serve.yaml"
FAST = {"max_replicas": 2, "upscale_delay_s": 0.5, "downscale_delay_s": 1.0, "metrics_interval_s": 0.5,
        "look_back_period_s": 2.0}


def file_deployments() -> dict:
    app = yaml.safe_load(SERVE_YAML.read_text())["applications"][0]
    return {d["name"]: d for d in app["deployments"]}


def test_serve_yaml_autoscales_the_model_slots_only():
    from ray.serve.config import AutoscalingConfig

    deps = file_deployments()
    assert deps["Router"]["num_replicas"] == 1 and "autoscaling_config" not in deps["Router"]
    for name in ("LayoutModel_blue", "LayoutModel_green"):
        auto = deps[name]["autoscaling_config"]
        assert "num_replicas" not in deps[name], name  # Serve refuses both
        cfg = AutoscalingConfig(**auto)  # Serve's own validation
        assert 1 <= cfg.min_replicas < cfg.max_replicas and cfg.target_ongoing_requests > 0, auto
        # a replica must be able to hold the target: more than it may take in flight never comes
        assert cfg.target_ongoing_requests <= deps[name]["user_config"]["max_batch_size"]


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    # Each request waits 0.5 s in the replica (chaos latency): clients keep requests in flight
    # without burning this machine's CPU on generation.
    with one_model_app(tmp_path_factory, "autoscale", TOKEN,
                       model={"max_batch_size": 8, "extra_latency_ms": 500.0}) as app:
        yield app


def running(name: str) -> int:
    from ray import serve

    dep = serve.status().applications["layoutray"].deployments[name]
    return dep.replica_states.get("RUNNING", 0)


@pytest.mark.slow
def test_load_scales_replicas_up_and_back(live):
    auto = {**file_deployments()["LayoutModel_blue"]["autoscaling_config"], **FAST}
    live.deploy(deployments={"LayoutModel_blue": {"autoscaling_config": auto}})
    assert running("LayoutModel_blue") == auto["min_replicas"] == 1
    # twice the target in flight: Serve wants ceil(16 / 8) = 2 replicas
    with Load(live, workers=2 * int(auto["target_ongoing_requests"])) as load:
        poll(lambda: running("LayoutModel_blue") == 2, 90, "a second LayoutModel_blue replica", every=0.5)
        served_by = load.count()
    assert set(load.codes) == {200}, load.codes
    assert served_by > 0
    poll(lambda: running("LayoutModel_blue") == 1, 90, "back to min_replicas", every=0.5)
