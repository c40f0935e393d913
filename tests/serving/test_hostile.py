"""A hostile client against the serving API: every mistake is a 4xx naming the field, through a
real Serve app over HTTP as well as in the checks themselves.

The cases are the findings of a fuzz study against `serve run configs/serve.yaml`: 500s from a
non-ASCII unknown field (it became a metric label), 10,000-deep JSON, a 5,000-digit integer and
wrongly typed admin bodies; 503s from temperature / top_p = 1e-300 (counted against the model);
/v1/models showing paths, PIDs and chaos settings to anyone; versions named by slot. The
validator's own unit tests are tests/layoutray/model/test_request.py; the schemathesis run is
tests/serving/test_openapi.py.
"""

import base64
import json
import struct
import time
import zlib

import pytest
import requests

from conftest import free_port, tiny_serving_artifact
from serving import api

TOKEN = "test-admin-token-5e0b"
BODY = {"section_type": "hero", "elements": ["heading", "paragraph", "button"]}


def png_header(w: int, h: int) -> bytes:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


# ----------------------------------------------------------------------------- no Ray


@pytest.mark.parametrize("raw,field", [
    (b'{"interval": "60"}', "interval"), (b'{"interval": true}', "interval"), (b'{"interval": -1}', "interval"),
    (b'{"interval": [1]}', "interval"), (b'{"min_requests": 1.5}', "min_requests"),
    (b'{"min_requests": ' + b"9" * 5000 + b"}", "min_requests"), (b'{"max_error_rate": 2}', "max_error_rate"),
    (b'{"max_p95_ms": {"a": 1}}', "max_p95_ms"), (b'{"max_failed_windows": "x"}', "max_failed_windows"),
    (b'{"steps": 5}', "steps"), (b'{"steps": {"a": 1}}', "steps"), (b'{"steps": "1e400"}', "steps"),
    (b'{"steps": [1e400]}', "steps"), (b'{"steps": [[1]]}', "steps"), (b'{"steps": "50,10,100"}', "steps"),
    (b'{"canary": 5}', "canary"), (b'{"canary": ""}', "canary"), (b'{"canary": "/a/' + b"x" * 300 + b'"}', "canary"),
    (b'{"canary": "/a\\u0000b"}', "canary"), (b'{"canary": "\\udc80"}', "canary"),
    (b'[1, 2]', "body"), (b'"text"', "body"), (b'{"k\xc3\xa9y": 1}', "k\u00e9y"), (b'{"\\ud800": 1}', "\\ud800"),
])
def test_start_body_wrong_types_are_422_naming_the_field(raw, field):
    with pytest.raises(api.ApiError) as ei:
        api.parse_start_body(raw)
    assert (ei.value.status, ei.value.field) == (422, field), ei.value.body()
    json.dumps(ei.value.body(), ensure_ascii=False).encode("utf-8")


@pytest.mark.parametrize("raw", [b"", b"{", b"[" * 10_000, b"\xff"])
def test_start_body_unreadable_is_400(raw):
    with pytest.raises(api.ApiError) as ei:
        api.parse_start_body(raw)
    assert (ei.value.status, ei.value.field) == (400, "body")


def test_start_body_valid_passes_through():
    body = {"canary": "/m", "steps": "10,25,50,100", "interval": 2, "min_requests": 5.0, "max_error_rate": 0.05,
            "max_p95_ms": 5000, "max_failed_windows": 2}
    assert api.parse_start_body(json.dumps(body).encode()) == body
    assert api.parse_start_body(b'{"steps": [50, 100]}') == {"steps": [50, 100]}


def test_public_models_view_and_safe_is_dir(tmp_path):
    full = {"versions": [{"id": "m@1", "slot": "blue", "weight": 90, "artifact": "/secret", "pid": 7,
                          "decoder": "diffusion", "diffusion_steps": 100, "settings": {"fail_rate": 0.3}}],
            "stable": "blue"}
    assert api.public_models(full) == {"versions": [{"id": "m@1", "slot": "blue", "weight": 90}]}
    assert api.safe_is_dir(str(tmp_path)) and not api.safe_is_dir(str(tmp_path / ("x" * 300)))
    assert not api.safe_is_dir("a\x00b")


def test_model_id_is_name_and_weights_digest(tmp_path):
    from serving.model_server import model_id, model_name

    a = tiny_serving_artifact(tmp_path / "a" / "model", seed=1)
    b = tiny_serving_artifact(tmp_path / "b", seed=2)
    meta = {"metadata": {"name": "tiny 1/ü"}}
    ida, idb = model_id(a, meta), model_id(b, {})
    name, digest = ida.split("@")
    assert name == "tiny-1" and len(digest) == 12 and int(digest, 16) >= 0
    assert idb.startswith("b@") and idb.split("@")[1] != digest
    assert model_name(a, {}) == "a"  # `<run>/model` is named after the run


# ----------------------------------------------------------------------------- live app


@pytest.fixture(scope="module")
def live(ray_local, tmp_path_factory):
    from ray import serve

    from serving.deploy import app_config, deploy

    root = tmp_path_factory.mktemp("hostile")
    stable = tiny_serving_artifact(root / "stable", seed=1)
    canary = tiny_serving_artifact(root / "canary", seed=2)
    (root / "token").write_text(TOKEN + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60})
    deploy([app_config("layoutray", "/", {"stable_model": stable, "canary_model": canary,
                                          "state_dir": str(root / "state"), "model_num_cpus": 0.5},
                       router={"admin_token_file": str(root / "token"), "max_body_bytes": 65536,
                               "weights": {"blue": 50, "green": 50}})])
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while requests.get(url + "/healthz", timeout=10).status_code != 200:
        assert time.time() < deadline, "healthz"
        time.sleep(0.2)
    yield {"url": url, "stable": stable, "canary": canary, "root": root}
    serve.shutdown()


def _post(live, data, path="/v1/layouts", token=None):
    h = {"Content-Type": "application/json"}
    if token:
        h["Authorization"] = f"Bearer {token}"
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return requests.post(live["url"] + path, data=raw, headers=h, timeout=60)


def test_hostile_layout_requests_get_4xx(live):
    cases = [
        ("non-ASCII unknown field", json.dumps({**BODY, "fëld中": 1}).encode(), 422, "fëld中"),
        ("lone surrogate field", b'{"section_type": "hero", "\\udc80": 1}', 422, "\\udc80"),
        ("10,000-deep JSON", b"[" * 10_000 + b"]" * 10_000, 400, "body"),
        ("5,000-digit integer", json.dumps(BODY)[:-1].encode() + b', "seed": ' + b"9" * 5000 + b"}", 422, "seed"),
        ("temperature 1e-300", {**BODY, "temperature": 1e-300}, 422, "temperature"),
        ("top_p 1e-300", {**BODY, "temperature": 1.0, "top_p": 1e-300}, 422, "top_p"),
        ("6300x6300 PNG header", {"image": base64.b64encode(png_header(6300, 6300)).decode()}, 413, "image"),
    ]
    for name, body, status, field in cases:
        r = _post(live, body)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert r.json()["error"]["field"] == field, (name, r.text[:300])
    assert _post(live, BODY).status_code == 200  # and the router is still fine


def test_admin_start_wrong_types_get_422_naming_the_field(live):
    for body, field in (({"interval": "soon"}, "interval"), ({"steps": 5}, "steps"), ({"steps": "1e400"}, "steps"),
                        ({"min_requests": [1]}, "min_requests"), ({"canary": 5}, "canary"),
                        ({"canary": "/" + "x" * 300}, "canary"), ({"cänary": "/m"}, "cänary")):
        r = _post(live, body, "/admin/rollout/start", token=TOKEN)
        assert r.status_code == 422, (body, r.status_code, r.text[:300])
        assert r.json()["error"]["field"] == field, (body, r.text[:300])
    r = _post(live, b"[" * 10_000, "/admin/rollout/start", token=TOKEN)
    assert r.status_code == 400
    assert _post(live, {"interval": "soon"}, "/admin/rollout/start").status_code == 401  # the token comes first
    status = requests.get(live["url"] + "/admin/rollout", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert status.json()["state"]["status"] == "idle"  # nothing started


def test_models_without_token_shows_only_public_fields(live):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = requests.get(live["url"] + "/v1/models", headers=headers, timeout=30)
        assert r.status_code == 200
        d = r.json()
        assert set(d) == {"versions"} and [v["slot"] for v in d["versions"]] == ["blue", "green"]
        assert all(set(v) == {"id", "slot", "weight"} for v in d["versions"])
        assert live["stable"] not in r.text and "pid" not in r.text and "fail_rate" not in r.text
    full = requests.get(live["url"] + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).json()
    blue = full["versions"][0]
    assert blue["artifact"] == live["stable"] and "pid" in blue and "settings" in blue and "rollout" in full


def test_responses_name_the_model_and_the_slot(live):
    ids = {v["slot"]: v["id"] for v in requests.get(live["url"] + "/v1/models", timeout=30).json()["versions"]}
    assert ids["blue"] != ids["green"] and all("@" in i for i in ids.values())
    seen = set()
    for i in range(40):
        r = requests.post(live["url"] + "/v1/layouts", json=BODY, headers={"X-User-ID": f"u{i}"}, timeout=60)
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["version"] == ids[d["slot"]], d
        assert r.headers["X-Layoutray-Version"] == d["version"] and r.headers["X-Layoutray-Slot"] == d["slot"]
        seen.add(d["slot"])
    assert seen == {"blue", "green"}  # a 50/50 split: both answered
