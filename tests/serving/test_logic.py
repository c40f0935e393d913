"""Pure logic of serving: request validation, the analysis windows and verdicts, the rollout state
machine, the token. No Ray here; the end-to-end behaviour is in test_serve.py, the traffic policy
in test_traffic.py, the statistics in tests/layoutray/eval/test_stats.py."""

import base64
import io
import json

import pytest
from PIL import Image

from serving import api
from serving.judge import (QUALITY_DEFAULTS, Thresholds, VersionWindow, Windows, analyse, answer_quality,
                           measured_by_slot, request_agreement)
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
    assert (w.of("green").n, w.of("green").errors, list(w.of("green").latencies_ms)) == (3, 1, [10.0, 30.0])
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
                    "latency_slack_ms": 10.0, **QUALITY_DEFAULTS}
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


# ----------------------------------------------------------------------------- output quality

PAYLOAD = {"section_type": "hero", "elements": ["heading", "button"], "image_png": None, "canvas_width": 1440,
           "canvas_height": 800, "samples": 1, "temperature": 0.0, "top_p": 1.0, "seed": 0}


def _answer(types=("heading", "button"), overlap=0.1, alignment=0.01, x=0, size=50):
    els = [{"type": t, "x": x + 100 * i, "y": 10, "width": size, "height": size} for i, t in enumerate(types)]
    return {"layouts": [{"elements": els, "overlap": overlap, "alignment": alignment}]}


def _qwin(n, overlap=0.1, alignment=0.01, invalid=0, agreements=()):
    """n successful answers with these scores; the first `invalid` of them miss a requested element."""
    w = VersionWindow()
    for i in range(n):
        types = ("heading",) if i < invalid else ("heading", "button")
        w.add(True, 10.0, answer_quality(PAYLOAD, _answer(types, overlap, alignment)))
    w.agreements += list(agreements)
    return w


QTH = dict(min_requests=20, max_error_rate=0.05, max_p95_ms=1000)


def test_answer_quality_counts_valid_layouts_and_scores():
    q = answer_quality(PAYLOAD, _answer())
    assert q == {"layouts": 1, "valid": 1, "overlap": [0.1], "alignment": [0.01]}
    assert answer_quality(PAYLOAD, _answer(("heading",)))["valid"] == 0  # a requested element missing
    assert answer_quality(PAYLOAD, _answer(("heading", "button", "link")))["valid"] == 0  # one too many
    assert answer_quality(PAYLOAD, _answer(x=1395))["valid"] == 0  # off the canvas
    assert answer_quality({**PAYLOAD, "elements": None}, _answer(("link",)))["valid"] == 1  # free choice
    nan = answer_quality(PAYLOAD, _answer(overlap=float("nan")))
    assert nan["valid"] == 0 and nan["overlap"] == []
    for broken in ({"layouts": []}, {}, None, {"layouts": [{"elements": "x"}]}, {"layouts": [7]}):
        q = answer_quality(PAYLOAD, broken)
        assert q["layouts"] >= 1 and q["valid"] == 0, broken
    two = {"layouts": _answer()["layouts"] + _answer(("heading",), overlap=0.5)["layouts"]}
    assert answer_quality(PAYLOAD, two) == {"layouts": 2, "valid": 1, "overlap": [0.1, 0.5],
                                            "alignment": [0.01, 0.01]}


def test_request_agreement_is_mean_iou_with_stable():
    assert request_agreement(PAYLOAD, _answer(), _answer()) == 1.0
    assert request_agreement(PAYLOAD, _answer(), _answer(x=700)) == 0.0
    half = request_agreement(PAYLOAD, _answer(), _answer(x=25))  # each box shifted by half its width
    assert half == pytest.approx(1 / 3)
    # an element with no counterpart of its type counts as 0
    assert request_agreement(PAYLOAD, _answer(("heading", "button")), _answer(("heading", "link"))) == 0.5
    assert request_agreement({**PAYLOAD, "temperature": 0.7}, _answer(), _answer()) is None  # sampled
    assert request_agreement(PAYLOAD, _answer(), {"layouts": []}) is None


def test_quality_valid_share_below_floor_fails():
    th = Thresholds(**QTH, min_valid_share=0.95)
    v = analyse(_qwin(50, invalid=5), _qwin(3), th)  # 90% valid; stable too small to compare
    assert v.result == "fail" and v.signals == ["quality.valid"]
    assert any(r.startswith("quality: valid layouts 0.900 < min 0.950") for r in v.reasons), v.reasons
    assert v.measured["canary"]["valid_share"] == 0.9
    assert analyse(_qwin(50), _qwin(3), th).result == "pass"


def test_quality_valid_share_below_stable_fails():
    th = Thresholds(**QTH, min_valid_share=0.5, max_valid_drop=0.02)
    v = analyse(_qwin(50, invalid=4), _qwin(200), th)  # 92% vs 100%: above the floor, below stable
    assert v.result == "fail" and v.signals == ["quality.valid"]
    assert any("valid layouts 0.920 vs stable 1.000 (drop > 0.02)" in r for r in v.reasons), v.reasons
    assert analyse(_qwin(50, invalid=4), _qwin(200, invalid=16), th).result == "pass"  # stable as bad


def test_quality_overlap_worse_than_stable_fails():
    th = Thresholds(**QTH, overlap_ratio=1.5, overlap_slack=0.05)
    v = analyse(_qwin(50, overlap=0.61), _qwin(200, overlap=0.22), th)
    assert v.result == "fail" and v.signals == ["quality.overlap"]
    assert "quality: overlap 0.610 vs stable 0.220 (> 1.5x + 0.05)" in v.reasons
    assert v.measured["canary"]["overlap"] == 0.61 and v.measured["stable"]["overlap"] == 0.22
    ok = analyse(_qwin(50, overlap=0.37), _qwin(200, overlap=0.22), th)  # 0.37 <= 1.5 x 0.22 + 0.05
    assert ok.result == "pass" and any("overlap 0.370 (stable 0.220)" in r for r in ok.reasons)
    skipped = analyse(_qwin(50, overlap=0.61), _qwin(3, overlap=0.22), th)  # too few stable requests
    assert skipped.result == "pass" and "skipped" in " ".join(skipped.reasons)


def test_quality_alignment_worse_than_stable_fails():
    th = Thresholds(**QTH, alignment_ratio=1.5, alignment_slack=0.005)
    v = analyse(_qwin(50, alignment=0.05), _qwin(200, alignment=0.01), th)
    assert v.result == "fail" and v.signals == ["quality.alignment"]
    assert "quality: alignment 0.050 vs stable 0.010 (> 1.5x + 0.005)" in v.reasons
    assert analyse(_qwin(50, alignment=0.019), _qwin(200, alignment=0.01), th).result == "pass"


def test_quality_agreement_with_stable_below_floor_fails():
    th = Thresholds(**QTH, min_agreement=0.2, min_agreement_pairs=20)
    v = analyse(_qwin(50, agreements=[0.05] * 30), _qwin(200), th)
    assert v.result == "fail" and v.signals == ["quality.agreement"]
    assert any(r.startswith("quality: agreement with stable 0.05 < min 0.2") for r in v.reasons), v.reasons
    assert v.measured["canary"]["agreement"] == 0.05 and v.measured["canary"]["agreement_pairs"] == 30
    assert analyse(_qwin(50, agreements=[0.9] * 30), _qwin(200), th).result == "pass"
    few = analyse(_qwin(50, agreements=[0.05] * 5), _qwin(200), th)
    assert few.result == "pass" and "5 shadowed pairs < 20" in " ".join(few.reasons)
    off = analyse(_qwin(50, agreements=[0.05] * 30), _qwin(200), Thresholds(**QTH, min_agreement=0.0))
    assert off.result == "pass"
    # agreement needs no stable traffic of its own: the pairs are stable's answers
    assert analyse(_qwin(50, agreements=[0.05] * 30), _qwin(0), th).result == "fail"


def test_windows_record_quality_and_agreement():
    w = Windows(clock=lambda: 0.0)
    w.add("green", True, 5.0, answer_quality(PAYLOAD, _answer(overlap=0.3)))
    w.add("green", False, 9.0)  # a failure has no answer to judge
    w.add_agreement("green", 0.8)
    w.add_agreement("green", None)  # a sampled request says nothing
    s = w.summary("green", "blue")["canary"]
    assert (s["layouts"], s["valid_share"], s["overlap"], s["agreement"], s["agreement_pairs"]) == (
        1, 1.0, 0.3, 0.8, 1)
    assert w.summary("green", "blue")["stable"]["valid_share"] is None


def test_quality_failures_roll_back_naming_the_signal(tmp_path):
    c = RolloutController(tmp_path, "blue", "green", clock=Clock())
    c.start(None, **start_options({"min_requests": 10, "steps": "50,100"}, ROLLOUT_SETTINGS))
    good = c.evaluate(_qwin(20, overlap=0.2), _qwin(20, overlap=0.2))
    assert good["decision"] == "advance" and "quality: valid_share 1.000" in good["reason"]
    assert c.evaluate(_qwin(20, overlap=2.0), _qwin(20, overlap=0.2))["decision"] == "hold"  # at 100%: 0 stable
    c2 = RolloutController(tmp_path / "b", "blue", "green", clock=Clock())
    c2.start(None, **start_options({"min_requests": 10}, ROLLOUT_SETTINGS))
    assert c2.evaluate(_qwin(20, overlap=2.0), _qwin(100, overlap=0.2))["decision"] == "hold"
    e = c2.evaluate(_qwin(20, overlap=2.0), _qwin(100, overlap=0.2))
    assert e["decision"] == "hold"  # ROLLOUT_SETTINGS: 3 failing windows roll back
    e = c2.evaluate(_qwin(20, overlap=2.0), _qwin(100, overlap=0.2))
    assert e["decision"] == "rollback" and c2.state.status == "rolled_back"
    assert "3 consecutive failing windows: quality: overlap 2.000 vs stable 0.200 (> 1.5x + 0.05)" in e["reason"]
    assert e["measured"]["failed_signals"] == ["quality.overlap"]
    assert e["thresholds"]["overlap_ratio"] == 1.5 and e["thresholds"]["min_agreement"] == 0.2


def test_quality_thresholds_from_body_settings_and_checked(tmp_path):
    settings = dict(ROLLOUT_SETTINGS, min_agreement=0.4, overlap_slack=0.1)
    assert check_start_body({"overlap_ratio": 2, "min_agreement_pairs": 5})
    opts = start_options({"overlap_ratio": "2", "min_agreement_pairs": 5.0}, settings)
    assert (opts["overlap_ratio"], opts["min_agreement_pairs"], opts["min_agreement"], opts["overlap_slack"],
            opts["alignment_ratio"]) == (2.0, 5, 0.4, 0.1, QUALITY_DEFAULTS["alignment_ratio"])
    with pytest.raises(RolloutError) as ei:
        start_options({"min_valid_share": "most"}, settings)
    assert (ei.value.status, ei.value.field) == (422, "min_valid_share")
    for field, value in (("overlap_ratio", 0.5), ("min_agreement", 1.5), ("alignment_slack", -1),
                         ("max_valid_drop", float("nan")), ("min_agreement_pairs", -3)):
        c = RolloutController(tmp_path / field, "blue", "green", clock=Clock())
        with pytest.raises(RolloutError) as ei:
            c.start(None, **start_options({field: value}, settings))
        assert (ei.value.status, ei.value.field) == (422, field), field
        assert c.state.status == "idle"
    # a state file written before the quality thresholds existed still loads, with their defaults
    old = {k: v for k, v in Thresholds().to_dict().items() if k not in QUALITY_DEFAULTS}
    assert Thresholds(**old).overlap_ratio == QUALITY_DEFAULTS["overlap_ratio"]


def test_a_window_keeps_exact_counts_but_a_bounded_number_of_samples():
    from serving.judge import WINDOW_SAMPLES

    w = VersionWindow()
    for i in range(WINDOW_SAMPLES + 50):
        w.add(True, float(i), {"layouts": 1, "valid": 1, "overlap": [0.1], "alignment": [0.01]})
    assert w.n == w.layouts == WINDOW_SAMPLES + 50
    assert len(w.latencies_ms) == len(w.overlaps) == len(w.alignments) == WINDOW_SAMPLES
    assert w.latencies_ms[-1] == WINDOW_SAMPLES + 49  # the latest are kept
