"""The rollout CLI's HTTP client (serving/client.py) against a stand-in admin server: what it
sends, what it prints and its exit codes. test_serve.py runs it against the real router."""

import io
import json
import threading
from argparse import Namespace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from serving import client

ACTIVE_STATUS = {
    "state": {"status": "running", "rollout_id": "abc123", "stable": "blue", "canary": "green",
              "canary_model": "/models/new", "weights": {"blue": 75.0, "green": 25.0},
              "weights_source": "rollout", "step": 25, "step_index": 1, "steps": [10, 25, 50, 100],
              "interval_s": 60.0, "failed_windows": 1, "max_failed_windows": 2,
              "thresholds": {"min_requests": 50, "max_error_rate": 0.05, "max_p95_ms": 2000.0, "alpha": 0.05}},
    "current_window": {"age_s": 12.5, "canary": {"requests": 3}, "stable": {"requests": 9}},
    "audit": [{"time": "2024-01-02T03:04:05.678+00:00", "step": 10, "decision": "start",
               "reason": "canary green at 10%", "measured": {}},
              {"time": "2024-01-02T03:05:05.678+00:00", "step": 10, "decision": "advance", "reason": "window passed",
               "measured": {"canary": {"requests": 60, "error_rate": 0.0, "p95_ms": 12.5},
                            "stable": {"requests": 500, "error_rate": 0.002, "p95_ms": 11.0}, "p_value": 0.9}}],
}
ACTIVE_TEXT = """\
rollout:  running (id abc123)
stable:   blue    canary: green (/models/new)
weights:  blue 75%, green 25%  (set by rollout)
step:     25% (2/4 of 10,25,50,100), window every 60.0 s, failing windows 1/2
checks:   min_requests 50, max_error_rate 0.05, max_p95_ms 2000.0, alpha 0.05
window:   12.5 s old; canary {'requests': 3}; stable {'requests': 9}
decisions (latest last):
  2024-01-02T03:04:05.678  step 10%  start     canary green at 10%
  2024-01-02T03:05:05.678  step 10%  advance   window passed canary n=60 err=0.0 p95=12.5ms \
| stable n=500 err=0.002 p95=11.0ms | p=0.9
"""
IDLE_STATUS = {"state": {"status": "idle", "stable": "blue", "canary": "green", "weights": {"blue": 100, "green": 0},
                         "weights_source": "user_config"}, "current_window": None, "audit": []}
IDLE_TEXT = """\
rollout:  idle
stable:   blue    canary: green
weights:  blue 100%, green 0%  (set by user_config)
"""


@pytest.fixture
def no_token(monkeypatch, tmp_path):
    monkeypatch.delenv("LAYOUTRAY_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("LAYOUTRAY_ADMIN_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("serving.rollout.DEFAULT_TOKEN_FILE", tmp_path / "none")
    return monkeypatch


@pytest.fixture
def server():
    """An admin endpoint that answers with `server.reply` (status, body) and records requests."""
    seen, reply = [], {"value": (200, IDLE_STATUS)}

    class Handler(BaseHTTPRequestHandler):
        def _answer(self):
            length = int(self.headers.get("content-length") or 0)
            seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("authorization"),
                         "body": json.loads(self.rfile.read(length)) if length else None})
            status, body = reply["value"]
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = _answer

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield Namespace(url=f"http://127.0.0.1:{httpd.server_address[1]}", seen=seen, reply=reply)
    httpd.shutdown()
    httpd.server_close()


def args(url, **kw):
    return Namespace(url=url, json=False, **kw)


def test_status_text_unchanged():
    out = io.StringIO()
    client.print_status(ACTIVE_STATUS, out=out)
    assert out.getvalue() == ACTIVE_TEXT
    out = io.StringIO()
    client.print_status(IDLE_STATUS, out=out)
    assert out.getvalue() == IDLE_TEXT


def test_status_sends_the_token_and_prints(server, no_token, capsys):
    no_token.setenv("LAYOUTRAY_ADMIN_TOKEN", "tok-1")
    server.reply["value"] = (200, ACTIVE_STATUS)
    assert client.cmd_status(args(server.url + "/")) == 0
    assert capsys.readouterr().out == ACTIVE_TEXT
    assert server.seen == [{"method": "GET", "path": "/admin/rollout", "auth": "Bearer tok-1", "body": None}]


def test_actions_post_to_their_endpoints(server, no_token, capsys, tmp_path):
    for name in ("pause", "resume", "promote", "rollback"):
        assert getattr(client, f"cmd_{name}")(Namespace(url=server.url, json=True)) == 0
        assert json.loads(capsys.readouterr().out) == IDLE_STATUS
    assert [(s["method"], s["path"], s["body"], s["auth"]) for s in server.seen] == [
        ("POST", f"/admin/rollout/{n}", {}, None) for n in ("pause", "resume", "promote", "rollback")]
    server.seen.clear()
    model = tmp_path / "m"
    model.mkdir()
    start = args(server.url, canary=str(model), steps="50,100", interval=5.0, min_requests=7,
                 max_error_rate=0.1, max_p95_ms=900.0)
    assert client.cmd_start(start) == 0
    assert server.seen[0]["path"] == "/admin/rollout/start" and server.seen[0]["body"] == {
        "canary": str(model.resolve()), "steps": "50,100", "interval": 5.0, "min_requests": 7,
        "max_error_rate": 0.1, "max_p95_ms": 900.0}


def test_token_errors_exit_3_and_say_which_side(server, no_token, capsys):
    server.reply["value"] = (401, {"error": {"field": "authorization", "message": "missing or wrong bearer token"}})
    assert client.cmd_status(args(server.url)) == 3
    err = capsys.readouterr().err
    assert err.startswith("error (401): missing or wrong bearer token; this client found no token: set "
                          "LAYOUTRAY_ADMIN_TOKEN (or LAYOUTRAY_ADMIN_TOKEN_FILE, or write ")
    no_token.setenv("LAYOUTRAY_ADMIN_TOKEN", "tok-2")
    assert client.cmd_status(args(server.url)) == 3
    err = capsys.readouterr().err
    assert err == "error (401): missing or wrong bearer token; this client sent the token it found\n"
    server.reply["value"] = (403, {"error": {"field": "", "message": "forbidden"}})
    assert client.cmd_status(args(server.url)) == 3
    server.reply["value"] = (401, b"not json")  # a 401 from something else in front of the router
    assert client.cmd_status(args(server.url)) == 3
    assert "error (401): Unauthorized; this client sent the token it found" in capsys.readouterr().err


def test_other_errors_exit_1(server, no_token, capsys):
    server.reply["value"] = (409, {"error": {"field": "rollout", "message": "nothing to pause: rollout is idle"}})
    assert client.cmd_pause(args(server.url)) == 1
    assert capsys.readouterr().err == "error (409): nothing to pause: rollout is idle\n"
    server.reply["value"] = (409, {"error": {"field": "rollout", "message": "busy"}})
    assert client.cmd_pause(Namespace(url=server.url, json=True)) == 1
    assert json.loads(capsys.readouterr().out)["error"]["message"] == "busy"


def test_no_server_exit_1(no_token, capsys):
    from conftest import free_port

    url = f"http://127.0.0.1:{free_port()}"
    assert client.cmd_status(args(url)) == 1
    assert capsys.readouterr().err.startswith(f"error (no connection): cannot reach {url}: ")


def test_cli_subcommands_use_the_client():
    from cli.main import build_parser

    for name in ("status", "pause", "resume", "promote", "rollback"):
        ns = build_parser().parse_args(["rollout", name, "--url", "http://x:1", "--json"])
        assert ns.func is getattr(client, f"cmd_{name}") and ns.url == "http://x:1" and ns.json
    ns = build_parser().parse_args(["rollout", "start", "--canary", "/m"])
    assert ns.func is client.cmd_start and (ns.steps, ns.interval, ns.min_requests) == ("10,25,50,100", 60.0, 50)
