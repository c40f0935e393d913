"""End to end: real Serve on a local Ray, real HTTP on 127.0.0.1, tiny real artifacts.

One Serve application for the whole module. Configuration changes go through declarative deploys
(what `serve deploy` does), so a user_config change reaches `reconfigure` on the running replicas.
Order matters only at the end: the promotion test runs last (it swaps the stable slot).
"""

import base64
import json
import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from conftest import TINY_GROWN, tiny_serving_artifact
from helpers import BODY, Load, poll, serve_app

TOKEN = "test-admin-token-7c1f"


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("serving")
    stable = tiny_serving_artifact(root / "stable", seed=1)
    canary = tiny_serving_artifact(root / "canary", seed=2, decoder="diffusion")  # beside an AR stable
    # the promotion test's canary: another AR model, as alike in quality as two random models get
    healthy = tiny_serving_artifact(root / "healthy", seed=2)
    with serve_app(root, TOKEN, {"stable_model": stable, "canary_model": canary, "model_num_cpus": 0.5},
                   router={"max_body_bytes": 65536, "grpc_max_image_bytes": 1024}) as app:
        app.stable_dir, app.canary_dir, app.healthy_dir = stable, canary, healthy
        yield app


def _versions(ctx, n, headers_fn=lambda i: {}, workers=8):
    def one(i):
        r = ctx.post(headers=headers_fn(i))
        assert r.status_code == 200, r.text
        return r.json()["slot"]
    with ThreadPoolExecutor(workers) as ex:
        return list(ex.map(one, range(n)))


def _set_weights(ctx, blue, green):
    ctx.deploy(router={"weights": {"blue": blue, "green": green}})
    poll(lambda: ctx.models()["versions"][1]["weight"] == pytest.approx(100.0 * green / (blue + green)),
         60, "new weights")


# ----------------------------------------------------------------------------- API


def test_health_models_docs(served):
    r = requests.get(served.url + "/healthz", timeout=10)
    assert r.status_code == 200 and r.json() == {"status": "ok", "stable": "blue"}  # no internals anonymously
    m = served.models()
    assert [v["name"] for v in m["versions"]] == ["blue", "green"]
    assert m["stable"] == "blue" and m["versions"][0]["weight"] == 100
    assert m["versions"][0]["max_elements"] == 8 and m["versions"][1]["artifact"] == served.canary_dir
    assert requests.get(served.url + "/docs", timeout=10).status_code == 200
    spec = requests.get(served.url + "/openapi.json", timeout=10).json()
    assert "/v1/layouts" in spec["paths"] and "/v1/models" in spec["paths"]


def test_layouts_response(served):
    r = served.post({**BODY, "samples": 2, "temperature": 0.8, "seed": 3, "canvas": {"width": 300, "height": 200}})
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["slot"] == "blue" and len(d["layouts"]) == 2
    for lay in d["layouts"]:
        assert sorted(e["type"] for e in lay["elements"]) == ["button", "heading", "paragraph"]
        for e in lay["elements"]:
            assert 0 <= e["x"] and e["x"] + e["width"] <= 300 and 0 <= e["y"] and e["y"] + e["height"] <= 200
        assert "alignment" in lay and "overlap" in lay
    # an image-only request
    import io
    from PIL import Image
    # A plain PNG goes router -> model over gRPC; a noisy one is over grpc_max_image_bytes (1 KiB
    # here) and goes through the object store. Both must answer.
    for img, large in ((Image.new("L", (96, 64), 255), False), (Image.effect_noise((96, 64), 64), True)):
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        assert (len(buf.getvalue()) > 1024) == large
        r = served.post({"image": base64.b64encode(buf.getvalue()).decode()})
        assert r.status_code == 200, r.text


def test_bad_inputs_get_4xx_naming_the_field(served):
    png_sig_garbage = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really").decode()
    cases = [
        ("invalid JSON", b'{"elements": [', None, 400, "body"),
        ("unknown section", {"section_type": "spaceship", "elements": ["heading"]}, None, 422, "section_type"),
        ("unknown element", {"elements": ["heading", "laser"]}, None, 422, "elements[1]"),
        ("too many elements", {"elements": ["button"] * 9}, None, 422, "elements"),
        ("bad base64", {"image": "%%%"}, None, 422, "image"),
        ("not a PNG", {"image": base64.b64encode(b"GIF89a\x01\x00").decode()}, None, 422, "image"),
        ("broken PNG", {"image": png_sig_garbage}, None, 422, "image"),
        ("oversized body", {"elements": ["heading"], "image": "A" * 70000}, None, 413, "body"),
        ("absurd canvas", {"elements": ["heading"], "canvas": {"width": 10**7, "height": 5}}, None, 422, "canvas.width"),
        ("absurd samples", {"elements": ["heading"], "samples": 10**6}, None, 422, "samples"),
        ("wrong content type", {"elements": ["heading"]}, {"Content-Type": "text/plain"}, 415, "content-type"),
        ("nothing to lay out", {"seed": 3}, None, 422, "elements"),
    ]
    for name, body, headers, status, field in cases:
        r = served.post(body, headers=headers)
        assert r.status_code == status, (name, r.status_code, r.text)
        assert r.json()["error"]["field"] == field, (name, r.text)
    # a declared Content-Length over the limit is refused before reading the body
    r = requests.post(served.url + "/v1/layouts", data=b"x" * 70000,
                      headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413


def test_admin_needs_token(served):
    for method, path in (("GET", ""), ("POST", "/start"), ("POST", "/pause"), ("POST", "/resume"),
                         ("POST", "/promote"), ("POST", "/rollback")):
        r = served.admin(method, path, {}, token=None)
        assert r.status_code == 401, (path, r.text)
        assert served.admin(method, path, {}, token="wrong").status_code == 401
    r = served.admin("GET", "")
    assert r.status_code == 200 and r.json()["state"]["status"] == "idle"
    assert TOKEN not in r.text


def test_rollout_cli_says_which_side_lacks_the_token(served, tmp_path):
    """`layoutray rollout` against the live server: without a token it names where to put one;
    with a wrong one it says the token it sent was refused. Exit status 3 both times."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("LAYOUTRAY_ADMIN_TOKEN")}
    env["HOME"] = str(tmp_path)  # no ~/.config/layoutray/admin_token either
    cmd = [sys.executable, "-m", "cli.main", "rollout", "status", "--url", served.url]
    none = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert none.returncode == 3, none.stderr
    assert "error (401)" in none.stderr and "found no token: set LAYOUTRAY_ADMIN_TOKEN" in none.stderr
    wrong = subprocess.run(cmd, env={**env, "LAYOUTRAY_ADMIN_TOKEN": "wrong"}, capture_output=True, text=True,
                           timeout=120)
    assert wrong.returncode == 3 and "sent the token it found" in wrong.stderr, wrong.stderr
    assert "wrong" not in wrong.stderr.replace("missing or wrong", "")
    right = subprocess.run(cmd, env={**env, "LAYOUTRAY_ADMIN_TOKEN": TOKEN}, capture_output=True, text=True,
                           timeout=120)
    assert right.returncode == 0 and "rollout:" in right.stdout, right.stderr


# ----------------------------------------------------------------------------- routing


def test_split_proportions(served):
    _set_weights(served, 70, 30)
    n = 400
    counts = Counter(_versions(served, n))
    # binomial(400, 0.3): sd 9.2; allow 4 sd
    assert abs(counts["green"] - 0.3 * n) <= 4 * (n * 0.3 * 0.7) ** 0.5, counts
    assert counts["blue"] + counts["green"] == n


def test_sticky_users(served):
    _set_weights(served, 50, 50)
    users = [f"user-{i}" for i in range(40)]
    first = _versions(served, 40, lambda i: {"X-User-ID": users[i]})
    again = _versions(served, 80, lambda i: {"X-User-ID": users[i % 40]})
    for i, v in enumerate(again):
        assert v == first[i % 40], users[i % 40]
    assert {"blue", "green"} == set(first)
    # growing the canary keeps every user that was on it there
    _set_weights(served, 20, 80)
    later = _versions(served, 40, lambda i: {"X-User-ID": users[i]})
    for before, after in zip(first, later):
        if before == "green":
            assert after == "green"


def _replicas():
    import ray
    from ray.util.state import list_actors
    dashboard = "http://" + ray._private.worker.get_dashboard_url()  # never guess: other Rays may run here
    actors = list_actors(address=dashboard, filters=[("state", "=", "ALIVE")], limit=1000)
    return sorted((a.class_name, a.actor_id, a.pid) for a in actors if "ServeReplica" in a.class_name)


def test_weight_change_keeps_replicas(served):
    before = _replicas()
    admin = {"Authorization": f"Bearer {TOKEN}"}
    router_pid = requests.get(served.url + "/healthz", headers=admin, timeout=10).json()["router"]
    assert len([r for r in before if "Router" in r[0]]) == 1 and len(before) == 3
    _set_weights(served, 60, 40)
    _set_weights(served, 100, 0)
    assert _replicas() == before
    assert requests.get(served.url + "/healthz", headers=admin, timeout=10).json()["router"] == router_pid
    assert set(_versions(served, 20)) == {"blue"}


def test_a_diffusion_canary_answers_beside_an_autoregressive_stable(served):
    m = served.models()
    assert [(v["decoder"], v["diffusion_steps"]) for v in m["versions"]] == [("autoregressive", None), ("diffusion", 20)]
    _set_weights(served, 0, 100)
    try:
        fixed = {"type": "button", "x": 90, "y": 500, "width": 270, "height": 100}
        r = served.post({**BODY, "steps": 5, "fixed": [fixed]})
        assert r.status_code == 200, r.text
        d = r.json()
        assert d["slot"] == "green"
        elements = d["layouts"][0]["elements"]
        assert sorted(e["type"] for e in elements) == ["button", "heading", "paragraph"]
        button = next(e for e in elements if e["type"] == "button")
        # one coordinate bin of a 1440 x 800 canvas at 32 bins: 45 x 25 px
        assert all(abs(button[k] - fixed[k]) <= tol for k, tol in
                   (("x", 45), ("width", 45), ("y", 25), ("height", 25))), button
        r = served.post({**BODY, "steps": 0})
        assert r.status_code == 422 and r.json()["error"]["field"] == "steps", r.text
    finally:
        _set_weights(served, 100, 0)


# ----------------------------------------------------------------------------- rollout


def test_bad_canary_refused_and_nothing_lost(served):
    r = served.admin("POST", "/start", {"canary": str(served.root / "token")})
    assert r.status_code == 422 and r.json()["error"]["field"] == "canary", r.text
    assert "not a directory" in r.json()["error"]["message"]
    # A directory that is not (yet) a model: say, an export still being written.
    late = served.root / "late"
    late.mkdir()
    r = served.admin("POST", "/start", {"canary": str(late)})
    assert r.status_code == 422 and r.json()["error"]["field"] == "canary", r.text
    assert "could not load it" in r.json()["error"]["message"] and str(late) in r.json()["error"]["message"]
    # Nothing lost: no rollout started, the canary slot keeps its model, requests are answered.
    assert served.admin("GET", "").json()["state"]["status"] == "idle"
    assert served.models()["versions"][1]["artifact"] == served.canary_dir
    assert served.post().status_code == 200
    # The export finishes and the same command is retried at once: it must not be refused with
    # the first attempt's error, which the replica still holds (it waits 5 s after a failure).
    for f in Path(served.canary_dir).iterdir():
        shutil.copy(f, late / f.name)
    r = served.admin("POST", "/start", {"canary": str(late), "interval": 60})
    assert r.status_code == 200, r.text
    assert served.models()["versions"][1]["artifact"] == str(late)
    assert served.admin("POST", "/rollback", {}).status_code == 200
    # A failed load does not linger in /v1/models once its assignment is withdrawn.
    empty = served.root / "empty"
    empty.mkdir()
    assert served.admin("POST", "/start", {"canary": str(empty)}).status_code == 422
    poll(lambda: served.models()["versions"][1]["load_error"] is None, 30, "the withdrawn load error to clear")


def test_an_upgraded_artifact_loads_as_canary_and_answers_over_http(served):
    from layoutray.model.upgrade import upgrade_artifact

    grown = served.root / "grown"
    res = upgrade_artifact(served.stable_dir, "phase2", grown, examples=8, overrides=TINY_GROWN)
    assert res["written"] and abs(res["validation"]["relative_change"]) < 1e-4
    body = {**BODY, "constraints": "off"}  # (phase 2 decodes with `basic` constraints by default)
    before = served.post(body)
    assert before.status_code == 200 and before.json()["slot"] == "blue", before.text
    r = served.admin("POST", "/start", {"canary": str(grown), "steps": "100", "interval": 600})
    assert r.status_code == 200, r.text
    try:
        assert served.models()["versions"][1]["artifact"] == str(grown)
        after = served.post(body)
        assert after.status_code == 200 and after.json()["slot"] == "green", after.text
        # the grown model computes its parent's function: the same greedy layouts as the stable parent
        assert after.json()["layouts"] == before.json()["layouts"]
        assert after.json()["version"] != before.json()["version"]
    finally:
        assert served.admin("POST", "/rollback", {}).status_code == 200


@pytest.mark.slow
def test_inconclusive_window_holds(served):
    r = served.admin("POST", "/start", {"canary": served.canary_dir, "steps": "10,25,50,100", "interval": 0.5,
                                        "min_requests": 100000, "max_error_rate": 0.05, "max_p95_ms": 5000})
    assert r.status_code == 200, r.text
    with Load(served, workers=2):
        poll(lambda: sum(1 for a in served.audit() if a["decision"] == "hold") >= 3, 60, "three held windows")
    st = served.admin("GET", "").json()["state"]
    assert st["status"] == "running" and st["step"] == 10 and st["weights"]["green"] == 10
    holds = [a for a in served.audit() if a["decision"] == "hold"]
    assert all("min_requests" in a["reason"] and a["measured"]["verdict"] == "inconclusive" for a in holds)
    assert served.admin("POST", "/start", {}).status_code == 409  # one rollout at a time
    assert served.admin("POST", "/rollback", {}).status_code == 200
    assert served.models()["versions"][1]["weight"] == 0


@pytest.mark.slow
def test_failing_canary_rolled_back_with_fallback(served):
    served.deploy(green={"fail_rate": 0.3})
    poll(lambda: served.models()["versions"][1].get("settings", {}).get("fail_rate") == 0.3, 60, "fault setting")
    r = served.admin("POST", "/start", {"canary": served.canary_dir, "steps": "25,50,100", "interval": 1.0,
                                        "min_requests": 15, "max_error_rate": 0.05, "max_p95_ms": 5000,
                                        "max_failed_windows": 2})
    assert r.status_code == 200, r.text
    with Load(served, workers=4) as load:
        st = poll(lambda: (s := served.admin("GET", "").json()["state"])["status"] != "running" and s,
                  120, "automatic rollback")
    assert st["status"] == "rolled_back" and st["weights"] == {"blue": 100, "green": 0}
    codes = load.codes
    assert codes and set(codes) == {200}, codes  # every client request answered
    fallbacks = [r for r in load.results if r.fallback == "green"]
    assert fallbacks and all(r.slot == "blue" for r in fallbacks)
    audit = served.audit()
    last = audit[-1]
    assert last["decision"] == "rollback" and "consecutive failing windows" in last["reason"]
    assert last["measured"]["canary"]["error_rate"] > 0.05 and last["thresholds"]["max_error_rate"] == 0.05
    # the metrics reached Ray's Prometheus endpoint (tagged by version)
    served.deploy(green={"fail_rate": 0.0})


@pytest.mark.slow
def test_healthy_canary_promoted(served):
    r = served.admin("POST", "/start", {"canary": served.healthy_dir, "steps": "10,25,50,100", "interval": 1.0,
                                        "min_requests": 8, "max_error_rate": 0.05, "max_p95_ms": 5000})
    assert r.status_code == 200, r.text
    with Load(served, workers=4) as load:
        st = poll(lambda: (s := served.admin("GET", "").json()["state"])["status"] != "running" and s,
                  180, "promotion")
    assert st["status"] == "promoted", served.audit()
    assert st["stable"] == "green" and st["weights"] == {"green": 100, "blue": 0}
    assert set(load.codes) == {200}
    steps = [(a["decision"], a["step"]) for a in served.audit() if a["rollout_id"] == st["rollout_id"]
             and a["decision"] in ("start", "advance", "promote")]
    assert [d for d, _ in steps] == ["start", "advance", "advance", "advance", "promote"]
    weights_seen = [a["weights"]["green"] for a in served.audit() if a["rollout_id"] == st["rollout_id"]
                    and a["decision"] in ("start", "advance")]
    assert weights_seen == [10, 25, 50, 100]
    m = served.models()
    assert m["stable"] == "green" and m["versions"][1]["role"] == "stable"
    assert set(_versions(served, 10)) == {"green"}
    # the state survives: the file on disk says the same
    saved = json.loads((served.root / "state" / "rollout_state.json").read_text())
    assert saved["stable"] == "green" and saved["status"] == "promoted"
