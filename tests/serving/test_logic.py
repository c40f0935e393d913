"""Pure logic of serving: request validation, the analysis windows and verdicts, the rollout state
machine, the token. No Ray here; the end-to-end behaviour is in test_serve.py, the traffic policy
in test_traffic.py, the statistics in tests/layoutray/eval/test_stats.py."""

import base64
import io
import json

import pytest
from PIL import Image

from serving import api
from serving.judge import Thresholds, VersionWindow, Windows, analyse, measured_by_slot
from serving.rollout import (RolloutController, RolloutError, StateStore, check_start_body, load_admin_token,
                             parse_steps, start_options, token_matches)

LIM = api.Limits(max_body_bytes=10_000, max_elements=4, max_samples=4)


def _png(w=20, h=10) -> str:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _parse(obj, ct="application/json"):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return api.parse_layout_request(raw, ct, LIM)


# ----------------------------------------------------------------------------- validation


def test_valid_request_defaults_and_image():
    r = _parse({"section_type": "hero", "elements": ["heading", "button"]})
    assert (r.canvas_width, r.canvas_height, r.samples, r.temperature, r.seed) == (1440, 800, 1, 0.0, 0)
    r = _parse({"image": _png(), "canvas": {"width": 300, "height": 200}, "samples": 2, "temperature": 0.7})
    assert r.image_png.startswith(b"\x89PNG") and r.elements is None and r.canvas_width == 300


@pytest.mark.parametrize("obj,ct,status,field", [
    (b"{not json", "application/json", 400, "body"),
    (b"", "application/json", 400, "body"),
    ({"elements": ["heading"]}, "text/plain", 415, "content-type"),
    ({"elements": ["heading"]}, None, 415, "content-type"),
    ({"elements": ["heading"], "section_type": "spaceship"}, "application/json", 422, "section_type"),
    ({"elements": ["heading", "laser"]}, "application/json", 422, "elements[1]"),
    ({"elements": "heading"}, "application/json", 422, "elements"),
    ({"elements": ["heading"] * 5}, "application/json", 422, "elements"),
    ({"image": "***not base64***"}, "application/json", 422, "image"),
    ({"image": base64.b64encode(b"GIF89a....").decode()}, "application/json", 422, "image"),
    ({"image": base64.b64encode(b"\x89PNG\r\n\x1a\n garbage").decode()}, "application/json", 422, "image"),
    ({}, "application/json", 422, "elements"),
    ({"elements": []}, "application/json", 422, "elements"),
    ({"elements": ["heading"], "canvas": {"width": 0, "height": 800}}, "application/json", 422, "canvas.width"),
    ({"elements": ["heading"], "canvas": {"width": 100, "height": 10**9}}, "application/json", 422, "canvas.height"),
    ({"elements": ["heading"], "canvas": {"width": "wide"}}, "application/json", 422, "canvas.width"),
    ({"elements": ["heading"], "canvas": [1, 2]}, "application/json", 422, "canvas"),
    ({"elements": ["heading"], "samples": 1000}, "application/json", 422, "samples"),
    ({"elements": ["heading"], "samples": 0}, "application/json", 422, "samples"),
    ({"elements": ["heading"], "samples": True}, "application/json", 422, "samples"),
    ({"elements": ["heading"], "temperature": -1}, "application/json", 422, "temperature"),
    ({"elements": ["heading"], "seed": 1.5}, "application/json", 422, "seed"),
    ({"elements": ["heading"], "colour": "red"}, "application/json", 422, "colour"),
    ([1, 2, 3], "application/json", 422, "body"),
])
def test_bad_input_names_field(obj, ct, status, field):
    with pytest.raises(api.ApiError) as ei:
        _parse(obj, ct)
    assert ei.value.status == status and ei.value.field == field, ei.value.body()
    assert field in json.dumps(ei.value.body())


def test_oversized_body():
    with pytest.raises(api.ApiError) as ei:
        _parse({"elements": ["heading"], "image": "A" * 20_000})
    assert ei.value.status == 413 and ei.value.field == "body"
    with pytest.raises(api.ApiError) as ei:
        api.check_content_length("999999", 1000)
    assert ei.value.status == 413


def test_to_pixels_stays_on_canvas():
    from layoutray.model.tokenizer import Box
    out = api.to_pixels([Box("heading", 0.5, 0.25, 0.5, 0.5), Box("button", 0.9, 0.9, 0.3, 0.3)], 1440, 800)
    assert out[0] == {"type": "heading", "x": 720, "y": 200, "width": 720, "height": 400}
    assert out[1]["x"] + out[1]["width"] <= 1440 and out[1]["y"] + out[1]["height"] <= 800


# ----------------------------------------------------------------------------- judging


def _win(n, errors, lat=10.0):
    w = VersionWindow()
    for i in range(n):
        w.add(i >= errors, lat)
    return w


def test_analyse_verdicts():
    th = Thresholds(min_requests=20, max_error_rate=0.05, max_p95_ms=100)
    assert analyse(_win(19, 0), _win(200, 0), th).result == "inconclusive"
    assert analyse(_win(50, 0), _win(200, 0), th).result == "pass"
    v = analyse(_win(50, 15), _win(200, 0), th)
    assert v.result == "fail" and any("error rate" in r for r in v.reasons) and v.measured["p_value"] < 0.05
    assert analyse(_win(50, 0, lat=500), _win(200, 0), th).result == "fail"  # absolute P95
    th2 = Thresholds(min_requests=20, max_error_rate=0.5, max_p95_ms=10_000, latency_ratio=1.5, latency_slack_ms=5)
    v = analyse(_win(50, 0, lat=100), _win(200, 0, lat=20), th2)
    assert v.result == "fail" and "stable P95" in " ".join(v.reasons)
    # within the absolute limit but significantly worse than stable
    th3 = Thresholds(min_requests=20, max_error_rate=0.2, max_p95_ms=1000)
    assert analyse(_win(200, 30), _win(800, 2), th3).result == "fail"
    # stable too small to compare (100% canary): comparison skipped, noted
    v = analyse(_win(50, 0), _win(3, 0), th)
    assert v.result == "pass" and "skipped" in " ".join(v.reasons)


def test_windows_per_slot_and_reset():
    t = [100.0]
    w = Windows(clock=lambda: t[0])
    for ok, ms in ((True, 10.0), (False, 500.0), (True, 30.0)):
        w.add("green", ok, ms)
    w.add("blue", True, 5.0)
    assert (w.of("green").n, w.of("green").errors, w.of("green").latencies_ms) == (3, 1, [10.0, 30.0])
    assert w.of("blue").n == 1
    t[0] += 2.26
    s = w.summary("green", "blue")
    assert s["age_s"] == 2.3 and s["canary"]["requests"] == 3 and s["canary"]["errors"] == 1
    assert s["stable"] == VersionWindow(n=1, latencies_ms=[5.0]).summary()
    w.of("nobody").add(True, 1.0)  # an empty window handed out is not kept
    assert w.of("nobody").n == 0
    w.reset()
    assert w.of("green").n == 0 and w.opened == t[0] and w.summary("green", "blue")["age_s"] == 0.0


def test_measured_by_slot_follows_promotion():
    measured = {"canary": {"error_rate": 0.5, "p95_ms": 9.0}, "stable": {"error_rate": 0.0, "p95_ms": 3.0}}
    hold = {"decision": "hold", "stable": "blue", "canary": "green", "measured": measured}
    assert measured_by_slot(hold) == {"green": measured["canary"], "blue": measured["stable"]}
    # after a promotion the entry names the new roles: the measured canary is now stable
    promote = {"decision": "promote", "stable": "green", "canary": "blue", "measured": measured}
    assert measured_by_slot(promote) == {"green": measured["canary"], "blue": measured["stable"]}
    assert measured_by_slot({"decision": "pause", "stable": "blue", "canary": "green", "measured": {}}) == {
        "green": {}, "blue": {}}


# ----------------------------------------------------------------------------- controller


ROLLOUT_SETTINGS = {"alpha": 0.01, "latency_ratio": 2.0, "latency_slack_ms": 10.0, "max_failed_windows": 3}


def test_start_body_checks():
    assert check_start_body({"canary": "/m", "steps": "50,100"}) == {"canary": "/m", "steps": "50,100"}
    for body, status, field in (([1], 400, "body"), (None, 400, "body"), ("x", 400, "body"),
                                ({"steps": "50,100", "zeta": 1, "alpha": 2}, 422, "alpha")):
        with pytest.raises(RolloutError) as ei:
            check_start_body(body)
        assert (ei.value.status, ei.value.field) == (status, field)
    assert RolloutError("busy").field == "rollout" and RolloutError("busy").status == 409


def test_start_options_defaults_and_numbers():
    opts = start_options({}, ROLLOUT_SETTINGS)
    assert opts == {"steps": "10,25,50,100", "interval_s": 60.0, "min_requests": 50, "max_error_rate": 0.05,
                    "max_p95_ms": 2000.0, "max_failed_windows": 3, "alpha": 0.01, "latency_ratio": 2.0,
                    "latency_slack_ms": 10.0}
    opts = start_options({"interval": "2.5", "min_requests": 7.9, "max_failed_windows": 1, "steps": [50, 100]},
                         ROLLOUT_SETTINGS)
    assert (opts["interval_s"], opts["min_requests"], opts["max_failed_windows"], opts["steps"]) == (
        2.5, 7, 1, [50, 100])
    for name, value in (("interval", "soon"), ("min_requests", None), ("max_p95_ms", [1]),
                        ("max_failed_windows", float("inf"))):
        with pytest.raises(RolloutError) as ei:
            start_options({name: value}, ROLLOUT_SETTINGS)
        assert (ei.value.status, ei.value.field) == (422, name)


def test_start_options_drive_the_controller(tmp_path):
    c = RolloutController(tmp_path, "blue", "green", clock=Clock())
    c.start("/m", **start_options({"steps": "20,100", "min_requests": 5}, ROLLOUT_SETTINGS))
    assert c.state.weights == {"blue": 80, "green": 20} and c.state.max_failed_windows == 3
    assert c.state.thresholds["alpha"] == 0.01 and c.state.thresholds["min_requests"] == 5


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def test_parse_steps():
    assert parse_steps("10,25,50,100") == [10, 25, 50, 100]
    for bad in ("10,5,100", "10,50", "0,100", "x", ""):
        with pytest.raises(RolloutError):
            parse_steps(bad)


def test_rollout_advances_promotes_and_survives_restart(tmp_path):
    clock = Clock()
    c = RolloutController(tmp_path, "blue", "green", {"blue": 100, "green": 0}, clock=clock)
    c.start("/models/new", steps="10,25,50,100", interval_s=5, min_requests=10, max_p95_ms=100)
    assert c.state.weights == {"blue": 90, "green": 10} and c.state.step == 10
    assert not c.window_due()
    clock.t += 5
    assert c.window_due()
    assert c.evaluate(_win(3, 0), _win(30, 0))["decision"] == "hold"  # inconclusive
    assert c.state.step == 10
    seen = []
    for _ in range(3):
        e = c.evaluate(_win(20, 0), _win(100, 0))
        seen.append((e["decision"], c.state.step))
    assert seen == [("advance", 25), ("advance", 50), ("advance", 100)]
    # restart of the driver: a new controller from the same directory continues at 100%
    c2 = RolloutController(tmp_path, "blue", "green", {"blue": 100, "green": 0}, clock=clock)
    assert c2.restored and c2.state.status == "running" and c2.state.step == 100
    assert c2.state.weights == {"blue": 0, "green": 100}
    e = c2.evaluate(_win(20, 0), _win(0, 0))
    assert e["decision"] == "promote"
    assert c2.state.stable == "green" and c2.state.canary == "blue" and c2.state.status == "promoted"
    assert c2.state.weights == {"green": 100, "blue": 0}
    audit = [json.loads(x) for x in (tmp_path / "rollout_audit.jsonl").read_text().splitlines()]
    assert [a["decision"] for a in audit] == ["start", "hold", "advance", "advance", "advance", "restored", "promote"]
    for a in audit:
        assert {"time", "step", "measured", "thresholds", "decision", "reason"} <= set(a)
    assert audit[1]["measured"]["canary"]["requests"] == 3


def test_rollback_after_consecutive_failures_only(tmp_path):
    c = RolloutController(tmp_path, "blue", "green", clock=Clock())
    c.start(None, interval_s=1, min_requests=10, max_failed_windows=2)
    assert c.evaluate(_win(20, 10), _win(100, 0))["decision"] == "hold"
    assert c.evaluate(_win(20, 0), _win(100, 0))["decision"] == "advance"  # a pass resets the count
    assert c.state.failed_windows == 0
    assert c.evaluate(_win(20, 10), _win(100, 0))["decision"] == "hold"
    assert c.evaluate(_win(2, 0), _win(100, 0))["decision"] == "hold"  # inconclusive: count kept
    e = c.evaluate(_win(20, 10), _win(100, 0))
    assert e["decision"] == "rollback" and c.state.status == "rolled_back"
    assert c.state.weights == {"blue": 100, "green": 0}
    assert "2 consecutive failing windows" in e["reason"]


def test_operator_actions_and_conflicts(tmp_path):
    c = RolloutController(tmp_path, "blue", "green", clock=Clock())
    for act in (c.pause, c.resume, c.promote, c.rollback):
        with pytest.raises(RolloutError):
            act()
    c.start(None, interval_s=1, min_requests=1)
    with pytest.raises(RolloutError):
        c.start(None)
    c.pause()
    assert not c.window_due() and c.state.status == "paused"
    c.resume()
    c.rollback()
    assert c.state.status == "rolled_back"
    c.start(None, steps="50,100", interval_s=1, min_requests=1)
    assert c.state.weights == {"blue": 50, "green": 50}
    c.set_manual("blue", "green", {"blue": 80, "green": 20})  # user_config change pauses it
    assert c.state.status == "paused" and c.state.weights_source == "user_config"
    c.promote()
    assert StateStore(tmp_path).load().stable == "green"


def test_admin_token_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LAYOUTRAY_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("LAYOUTRAY_ADMIN_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    f = tmp_path / "tok"
    f.write_text("s3cret\n")
    assert load_admin_token(str(f)) == "s3cret"
    monkeypatch.setenv("LAYOUTRAY_ADMIN_TOKEN_FILE", str(f))
    assert load_admin_token() == "s3cret"
    monkeypatch.setenv("LAYOUTRAY_ADMIN_TOKEN", "fromenv")
    assert load_admin_token(str(f)) == "fromenv"
    assert token_matches("fromenv", "Bearer fromenv")
    assert not token_matches("fromenv", "Bearer nope")
    assert not token_matches("fromenv", None)
    assert not token_matches(None, "Bearer x")
    assert not token_matches("fromenv", "Basic fromenv")
