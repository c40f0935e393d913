"""The operator's view: Ray's Prometheus endpoint, scraped over HTTP while a live app serves.

Per model version (label `version`: the model id, name@sha; `slot` separately) there must be
request, error and latency series and rollout-decision series, and no label may carry client
text. Also: the listening sockets of this Ray instance and the app are bound where
docs/serving.md, "Bind addresses", says.
"""

import os

import pytest
import requests

from conftest import tiny_serving_artifact, wait_for
from helpers import poll, serve_app
from serving.api import METRIC_FIELDS

TOKEN = "test-admin-token-metrics-93c4"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """Its own Ray: metrics reach the exporter every second instead of every ten."""
    import ray

    from layoutray.runtime import start_local

    if ray.is_initialized():
        ray.shutdown()
    start_local(num_cpus=4, log_to_driver=False, configure_logging=False,
                _system_config={"metrics_report_interval_ms": 1000})
    try:
        root = tmp_path_factory.mktemp("metrics")
        blue = tiny_serving_artifact(root / "blue", seed=1)
        green = tiny_serving_artifact(root / "green", seed=2)
        with serve_app(root, TOKEN, {"stable_model": blue, "canary_model": green, "model_num_cpus": 0.5},
                       router={"weights": {"blue": 50, "green": 50}}) as app:
            app.metrics_url = f"http://127.0.0.1:{ray.nodes()[0]['MetricsExportPort']}/metrics"
            app.ids = {v["slot"]: v["id"] for v in requests.get(app.url + "/v1/models", timeout=30).json()["versions"]}
            yield app
    finally:
        ray.shutdown()


def scrape(url: str) -> list[tuple[str, dict, float]]:
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(url, timeout=30).text
    return [(s.name, s.labels, s.value) for fam in text_string_to_metric_families(text) for s in fam.samples
            if "layoutray_" in s.name]


def has(samples, name_part: str, **labels) -> bool:
    return any(name_part in n and all(l.get(k) == v for k, v in labels.items()) and v > 0 for n, l, v in samples)


def test_per_version_series_with_model_ids(live):
    ids = live.ids
    assert ids["blue"] != ids["green"] and all("@" in i for i in ids.values()), ids
    live.deploy(green={"fail_rate": 0.5})  # the canary fails half its calls: its error series
    poll(lambda: live.models()["versions"][1]["settings"]["fail_rate"] == 0.5, 60, "fault setting")
    for i in range(30):
        assert live.post(headers={"X-User-ID": f"user-{i}"}).status_code == 200  # failures fall back to blue
    r = live.post({"elements": ["heading"], "fi\u00e9ld": 1})  # client text must not become a label
    assert r.status_code == 422
    assert live.admin("POST", "/start", {"interval": 60}).status_code == 200
    assert live.admin("POST", "/rollback", {}).status_code == 200
    live.deploy(green={"fail_rate": 0.0})

    try:
        wait_for(lambda: not _missing(live), 90, "every series in the scrape", poll=1.0)
    except AssertionError:
        raise AssertionError(f"series missing from the scrape: {_missing(live)}") from None
    samples = scrape(live.metrics_url)
    for name, labels, _ in samples:  # labels come from fixed sets only
        if "version" in labels:
            assert labels["version"] in set(ids.values()) | {"unknown"}, (name, labels)
        if "field" in labels:
            assert labels["field"] in METRIC_FIELDS, (name, labels)
        assert all(v.isascii() for v in labels.values()), (name, labels)


def _missing(live) -> list:
    """The series a scrape should have by now but has not (name part, labels)."""
    s = scrape(live.metrics_url)
    ids = live.ids
    need = [("requests_total", dict(version=ids["blue"], slot="blue", role="primary", outcome="ok")),
            ("requests_total", dict(version=ids["green"], slot="green", role="primary", outcome="error")),
            ("requests_total", dict(version=ids["green"], slot="green", role="primary", outcome="ok")),
            ("request_latency_ms_count", dict(version=ids["blue"], slot="blue")),
            ("request_latency_ms_bucket", dict(version=ids["green"], slot="green", le="+Inf")),
            ("fallbacks_total", dict(version=ids["green"], slot="green")),
            ("rollout_decisions_total", dict(decision="start", version=ids["green"], slot="green")),
            ("rollout_decisions_total", dict(decision="rollback", version=ids["green"], slot="green")),
            ("client_errors_total", dict(status="422", field="other"))]
    return [(n, l) for n, l in need if not has(s, n, **l)]


def listening_addresses() -> dict:
    """{port: {bind address}} of every listening TCP socket of this process's Ray instance (GCS,
    raylet, agents, workers, Serve's controller, proxy and replicas: all children of this process)."""
    import psutil

    out: dict = {}
    for proc in psutil.Process(os.getpid()).children(recursive=True):
        try:
            conns = proc.net_connections(kind="inet")
        except psutil.Error:
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                out.setdefault(c.laddr.port, set()).add(c.laddr.ip)
    return out


def test_bind_addresses_are_as_documented(live):
    """docs/serving.md, "Bind addresses": what layoutray configures is on loopback (Serve's HTTP
    proxy, the dashboard); Ray 2.60's own servers listen on every interface (it turns a loopback
    node address into the host's address), the metrics exporter included. Fails when Ray
    changes that, so the docs stay true."""
    import ray

    ports = listening_addresses()
    node = ray.nodes()[0]
    wildcard = {"0.0.0.0", "::"}
    serve_port = int(live.url.rsplit(":", 1)[1])
    dashboard_port = int(ray._private.worker.get_dashboard_url().rsplit(":", 1)[1])
    gcs_port = int(ray.get_runtime_context().gcs_address.rsplit(":", 1)[1])
    assert ports[serve_port] == {"127.0.0.1"}, ports.get(serve_port)
    assert ports[dashboard_port] == {"127.0.0.1"}, ports.get(dashboard_port)
    for name, port in (("GCS", gcs_port), ("raylet", node["NodeManagerPort"]),
                       ("object manager", node["ObjectManagerPort"]), ("metrics", node["MetricsExportPort"])):
        assert ports.get(port) and ports[port] <= wildcard, (name, port, ports.get(port))
