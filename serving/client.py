"""The HTTP client behind `layoutray rollout ...` (cli/rollout.py builds its arguments): each
`cmd_*` calls one admin endpoint of a running Router (`/admin/rollout/...`, bearer token), prints
the rollout status (or the JSON with --json) and returns the exit code: 0 on success, 3 when the
token is missing or refused, 1 otherwise.
"""

from __future__ import annotations

import json
import sys
from typing import Optional

from serving.rollout import ACTIVE, DEFAULT_TOKEN_FILE, TOKEN_ENV, TOKEN_FILE_ENV, load_admin_token


def client_token() -> Optional[str]:
    """The token this client sends: the server's lookup without its `admin_token_file` setting,
    which names a file on the serving host."""
    return load_admin_token()


def _call(args, method: str, path: str, body: Optional[dict] = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    url = args.url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    token = client_token()
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {"error": {"field": "", "message": e.reason}}
    except (urllib.error.URLError, OSError) as e:
        return 0, {"error": {"field": "url", "message": f"cannot reach {args.url}: {e}"}}


def _fmt_decision(e: dict) -> str:
    m = e.get("measured") or {}
    c = m.get("canary") or {}
    st = m.get("stable") or {}
    nums = ""
    if c:
        nums = (f" canary n={c.get('requests')} err={c.get('error_rate')} p95={c.get('p95_ms')}ms"
                f" | stable n={st.get('requests')} err={st.get('error_rate')} p95={st.get('p95_ms')}ms")
        if "p_value" in m:
            nums += f" | p={m['p_value']}"
    return f"  {e.get('time', '')[:23]}  step {e.get('step')}%  {e.get('decision', ''):<9} {e.get('reason', '')}{nums}"


def print_status(d: dict, out=None) -> None:
    out = sys.stdout if out is None else out  # looked up per call: redirections of stdout apply
    s = d.get("state", {})
    print(f"rollout:  {s.get('status')}" + (f" (id {s.get('rollout_id')})" if s.get("rollout_id") else ""), file=out)
    print(f"stable:   {s.get('stable')}    canary: {s.get('canary')}"
          + (f" ({s.get('canary_model')})" if s.get("canary_model") else ""), file=out)
    w = s.get("weights") or {}
    print("weights:  " + ", ".join(f"{k} {v:g}%" for k, v in w.items()) + f"  (set by {s.get('weights_source')})",
          file=out)
    if s.get("status") in ACTIVE:
        print(f"step:     {s.get('step')}% ({s.get('step_index', 0) + 1}/{len(s.get('steps') or [])} of "
              f"{','.join(map(str, s.get('steps') or []))}), window every {s.get('interval_s')} s, "
              f"failing windows {s.get('failed_windows')}/{s.get('max_failed_windows')}", file=out)
        th = s.get("thresholds") or {}
        print(f"checks:   min_requests {th.get('min_requests')}, max_error_rate {th.get('max_error_rate')}, "
              f"max_p95_ms {th.get('max_p95_ms')}, alpha {th.get('alpha')}", file=out)
    win = d.get("current_window")
    if win:
        print(f"window:   {win.get('age_s')} s old; canary {win.get('canary')}; stable {win.get('stable')}", file=out)
    audit = d.get("audit") or []
    if audit:
        print("decisions (latest last):", file=out)
        for e in audit:
            print(_fmt_decision(e), file=out)


def _finish(args, code: int, body: dict) -> int:
    if args.json:
        print(json.dumps(body, indent=2))
    elif code == 200:
        print_status(body)
    else:
        err = body.get("error") or {}
        msg = str(err.get("message", body))  # a 401 from something else may carry no message
        if code == 401:  # say which side lacks the token: a bare 401 reads the same for both
            msg += ("; this client sent the token it found" if client_token() else
                    f"; this client found no token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or write "
                    f"{DEFAULT_TOKEN_FILE}) to the server's token")
        print(f"error ({code or 'no connection'}): {msg}", file=sys.stderr)
    if code == 200:
        return 0
    return 3 if code in (401, 403) else 1


def cmd_start(args) -> int:
    from layoutray import storage

    from layoutray.tracking import is_model_ref

    # a URI (s3://...) or a registry reference (models:/NAME@ALIAS) as it is: the serving host fetches it
    canary = args.canary if is_model_ref(args.canary) else storage.absolute(args.canary)
    body = {"canary": canary, "steps": args.steps, "interval": args.interval,
            "min_requests": args.min_requests, "max_error_rate": args.max_error_rate,
            "max_p95_ms": args.max_p95_ms}
    return _finish(args, *_call(args, "POST", "/admin/rollout/start", body))


def cmd_status(args) -> int:
    return _finish(args, *_call(args, "GET", "/admin/rollout"))


def cmd_pause(args) -> int:
    return _finish(args, *_call(args, "POST", "/admin/rollout/pause", {}))


def cmd_resume(args) -> int:
    return _finish(args, *_call(args, "POST", "/admin/rollout/resume", {}))


def cmd_promote(args) -> int:
    return _finish(args, *_call(args, "POST", "/admin/rollout/promote", {}))


def cmd_rollback(args) -> int:
    return _finish(args, *_call(args, "POST", "/admin/rollout/rollback", {}))
