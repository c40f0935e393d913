"""Serve's direct ingress (RAY_SERVE_ENABLE_DIRECT_INGRESS=1, experimental in Ray 2.60): the
Router replica runs its own HTTP server, and clients reach it with no proxy on the path.
docs/serving.md offers it as an opt-in that cuts latency and CPU per request; these tests check
that the HTTP contract holds there too: answers, 4xx naming the field, admin behind the token,
and a server bound to 127.0.0.1 only.

The module starts its own local Ray: Serve's processes read the flag from the environment they
inherit when Ray starts.
"""

import json
from pathlib import Path

import pytest
import requests

from conftest import free_port, tiny_serving_artifact

TOKEN = "test-admin-token-d1rect"
BODY = {"section_type": "hero", "elements": ["heading", "paragraph", "button"],
        "canvas": {"width": 1440, "height": 800}}


@pytest.fixture(scope="module")
def direct(tmp_path_factory):
    import ray
    from ray import serve

    from layoutray.runtime import start_local
    from serving.deploy import app_config, deploy, direct_ingress_url

    # Only Ray's start needs the variables: its processes inherit them from this one.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1")
        # Nothing is in flight when the module ends; the 30-s default would only slow the suite.
        mp.setenv("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
        start_local(num_cpus=4, dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        root = tmp_path_factory.mktemp("direct-ingress")
        model = tiny_serving_artifact(root / "model", seed=1)
        (root / "token").write_text(TOKEN + "\n")
        proxy_port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": proxy_port, "request_timeout_s": 60})
        deploy([app_config("layoutray", "/", {"stable_model": model, "canary_model": model,
                                              "state_dir": str(root / "state"), "model_num_cpus": 0.5},
                           router={"admin_token_file": str(root / "token"), "max_body_bytes": 65536})])
        url = direct_ingress_url("layoutray", proxy_port)
        yield {"url": url, "port": int(url.rsplit(":", 1)[1]), "proxy_port": proxy_port}
        serve.shutdown()
    finally:
        ray.shutdown()


def _post(url, body, headers=None):
    h = {"Content-Type": "application/json", **(headers or {})}
    data = body if isinstance(body, bytes) else json.dumps(body)
    return requests.post(url + "/v1/layouts", data=data, headers=h, timeout=60)


def test_router_answers_on_its_own_port(direct):
    assert direct["port"] != direct["proxy_port"]
    assert 30000 <= direct["port"] <= 31000  # Serve's direct-ingress range, not the proxy
    r = _post(direct["url"], BODY)
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["slot"] == "blue" and r.headers["X-Layoutray-Slot"] == "blue"
    assert sorted(e["type"] for e in d["layouts"][0]["elements"]) == ["button", "heading", "paragraph"]
    h = requests.get(direct["url"] + "/healthz", timeout=10)
    assert h.status_code == 200 and h.json()["status"] == "ok"


def test_bad_input_gets_4xx_naming_the_field(direct):
    cases = [
        ("invalid JSON", b'{"elements": [', None, 400, "body"),
        ("unknown element", {"elements": ["heading", "laser"]}, None, 422, "elements[1]"),
        ("oversized body", {"elements": ["heading"], "image": "A" * 70000}, None, 413, "body"),
        ("wrong content type", {"elements": ["heading"]}, {"Content-Type": "text/plain"}, 415, "content-type"),
    ]
    for name, body, headers, status, field in cases:
        r = _post(direct["url"], body, headers)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["field"] == field, (name, r.text)


def test_admin_needs_the_token(direct):
    url = direct["url"] + "/admin/rollout"
    assert requests.get(url, timeout=30).status_code == 401
    assert requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    r = requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert r.status_code == 200 and r.json()["state"]["status"] == "idle"


def test_listens_on_loopback_only(direct):
    """The replica's server takes Serve's http_options.host (127.0.0.1 here), like the proxy."""
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            f = line.split()
            addr, port = f[1].rsplit(":", 1)
            if f[3] == "0A" and int(port, 16) == direct["port"]:  # 0A: LISTEN
                listening.append(addr)
    assert listening == ["0100007F"], listening  # 127.0.0.1, little-endian hex; nothing else
