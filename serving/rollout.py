"""Canary rollout: persisted state, the step/verdict state machine, the audit log, admin-token
handling and the `layoutray rollout ...` CLI handlers.

Where it runs: the controller lives inside the single `Router` replica (serving/app.py). The
router already sees the outcome and latency of every request it routes, so its analysis windows
need no metric scraping, and the weights it decides take effect on the next request. The CLI
only talks HTTP to the router's admin endpoints (`/admin/rollout/...`, bearer token).

Durability: every change is written atomically to `<state_dir>/rollout_state.json` before it is
acknowledged, and every decision is appended to `<state_dir>/rollout_audit.jsonl`. A restarted
router replica (or a redeployed app) loads the state and continues the rollout at the step it
was on, with a fresh analysis window (requests seen before the restart are not in it).
"""

from __future__ import annotations

import dataclasses
import hmac
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from serving.judge import Thresholds, VersionWindow, analyse

STATE_FILE = "rollout_state.json"
AUDIT_FILE = "rollout_audit.jsonl"
TOKEN_ENV = "LAYOUTRAY_ADMIN_TOKEN"
TOKEN_FILE_ENV = "LAYOUTRAY_ADMIN_TOKEN_FILE"
DEFAULT_TOKEN_FILE = Path.home() / ".config" / "layoutray" / "admin_token"

ACTIVE = ("running", "paused")


class RolloutError(ValueError):
    """An admin action that does not fit the current state (HTTP 409) or bad parameters (422)."""

    def __init__(self, message: str, status: int = 409):
        super().__init__(message)
        self.status = status


def _now_iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def parse_steps(spec: str | list) -> list[int]:
    items = spec if isinstance(spec, list) else [s for s in str(spec).split(",") if s.strip()]
    try:
        steps = [int(float(s)) for s in items]
    except (TypeError, ValueError):
        raise RolloutError(f"steps must be comma-separated percentages; got {spec!r}", 422) from None
    if not steps or any(not 0 < s <= 100 for s in steps) or steps != sorted(set(steps)) or steps[-1] != 100:
        raise RolloutError(f"steps must be increasing percentages in (0, 100] ending at 100; got {spec!r}", 422)
    return steps


# ----------------------------------------------------------------------------- state


@dataclass
class RolloutState:
    status: str = "idle"  # idle | running | paused | promoted | rolled_back
    stable: str = "blue"  # slot (deployment) serving the stable version
    canary: str = "green"
    weights: dict = field(default_factory=dict)  # slot -> percent
    weights_source: str = "user_config"  # user_config | rollout
    artifacts: dict = field(default_factory=dict)  # slot -> artifact dir assigned by a rollout
    rollout_id: Optional[str] = None
    canary_model: Optional[str] = None
    steps: list = field(default_factory=lambda: [10, 25, 50, 100])
    step_index: int = 0
    interval_s: float = 60.0
    thresholds: dict = field(default_factory=lambda: Thresholds().to_dict())
    max_failed_windows: int = 2
    failed_windows: int = 0
    windows: int = 0
    started_at: Optional[float] = None
    updated_at: Optional[float] = None
    window_started_at: Optional[float] = None
    last_decision: Optional[dict] = None

    @property
    def step(self) -> Optional[int]:
        return self.steps[self.step_index] if self.status in ACTIVE else None

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["step"] = self.step
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "RolloutState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class StateStore:
    def __init__(self, state_dir: str | Path):
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_FILE

    def load(self) -> Optional[RolloutState]:
        try:
            return RolloutState.from_dict(json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None

    def save(self, state: RolloutState) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(state.to_dict(), indent=2))
        os.replace(tmp, self.path)  # atomic: a reader sees the old or the new file, never half


def read_assignment(state_dir: str | Path, slot: str) -> Optional[str]:
    """The artifact a rollout assigned to `slot` (None: keep the deployment's own)."""
    try:
        d = json.loads((Path(state_dir) / STATE_FILE).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return (d.get("artifacts") or {}).get(slot)


class AuditLog:
    def __init__(self, state_dir: str | Path):
        self.path = Path(state_dir) / AUDIT_FILE

    def append(self, entry: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def tail(self, n: int = 20) -> list[dict]:
        try:
            lines = self.path.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines[-n:]:
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


# ----------------------------------------------------------------------------- controller


class RolloutController:
    """The rollout state machine. Pure logic plus file I/O; the router drives it with a clock
    and the per-window observations. Every public method returns the audit entry it wrote."""

    def __init__(self, state_dir: str | Path, default_stable: str = "blue", default_canary: str = "green",
                 default_weights: Optional[dict] = None, clock=time.time):
        self.store, self.audit, self.clock = StateStore(state_dir), AuditLog(state_dir), clock
        loaded = self.store.load()
        self.restored = loaded is not None
        self.state = loaded or RolloutState(stable=default_stable, canary=default_canary,
                                            weights=dict(default_weights or {default_stable: 100,
                                                                              default_canary: 0}))
        if self.restored and self.state.status in ACTIVE:
            # A restart: the old window's observations are gone; open a new one.
            self.state.window_started_at = self.clock()
            self._record("restored", f"state reloaded from {self.store.path}; rollout continues at step "
                                     f"{self.state.step}% with a new analysis window")

    # --- helpers -------------------------------------------------------------------
    def _thresholds(self) -> Thresholds:
        return Thresholds(**self.state.thresholds)

    def _set_canary_weight(self, pct: float) -> None:
        s = self.state
        s.weights = {s.stable: 100 - pct, s.canary: pct}
        s.weights_source = "rollout"

    def _record(self, decision: str, reason: str, measured: Optional[dict] = None) -> dict:
        s, now = self.state, self.clock()
        s.updated_at = now
        entry = {"time": _now_iso(now), "rollout_id": s.rollout_id, "step": s.steps[s.step_index]
                 if s.steps else None, "step_index": s.step_index, "status": s.status,
                 "decision": decision, "reason": reason, "measured": measured or {},
                 "thresholds": dict(s.thresholds, max_failed_windows=s.max_failed_windows),
                 "failed_windows": s.failed_windows, "weights": dict(s.weights),
                 "stable": s.stable, "canary": s.canary}
        s.last_decision = {k: entry[k] for k in ("time", "decision", "reason", "step")}
        self.store.save(s)  # state first: the audit never mentions a state that was not saved
        self.audit.append(entry)
        return entry

    # --- operator actions ------------------------------------------------------------
    def start(self, canary_model: Optional[str], steps="10,25,50,100", interval_s: float = 60.0,
              min_requests: int = 50, max_error_rate: float = 0.05, max_p95_ms: float = 2000.0,
              max_failed_windows: int = 2, **extra_thresholds) -> dict:
        s = self.state
        if s.status in ACTIVE:
            raise RolloutError(f"a rollout is already {s.status} (id {s.rollout_id}); promote or roll it back first")
        steps_l = parse_steps(steps)
        if not (interval_s > 0) or min_requests < 1 or not 0 <= max_error_rate <= 1 or not max_p95_ms > 0:
            raise RolloutError("need interval > 0, min_requests >= 1, 0 <= max_error_rate <= 1, max_p95_ms > 0", 422)
        if max_failed_windows < 1:
            raise RolloutError("max_failed_windows must be >= 1", 422)
        th = Thresholds(min_requests=int(min_requests), max_error_rate=float(max_error_rate),
                        max_p95_ms=float(max_p95_ms), **extra_thresholds)
        now = self.clock()
        s.status, s.rollout_id, s.canary_model = "running", uuid.uuid4().hex[:12], canary_model
        if canary_model:
            s.artifacts[s.canary] = canary_model
        s.steps, s.step_index, s.interval_s = steps_l, 0, float(interval_s)
        s.thresholds, s.max_failed_windows = th.to_dict(), int(max_failed_windows)
        s.failed_windows, s.windows, s.started_at, s.window_started_at = 0, 0, now, now
        self._set_canary_weight(steps_l[0])
        return self._record("start", f"canary {s.canary} ({canary_model or 'as deployed'}) at {steps_l[0]}%")

    def pause(self) -> dict:
        if self.state.status != "running":
            raise RolloutError(f"nothing to pause: rollout is {self.state.status}")
        self.state.status = "paused"
        return self._record("pause", "paused by operator; weights held")

    def resume(self) -> dict:
        if self.state.status != "paused":
            raise RolloutError(f"nothing to resume: rollout is {self.state.status}")
        self.state.status, self.state.window_started_at = "running", self.clock()
        return self._record("resume", "resumed by operator; new analysis window")

    def promote(self, reason: str = "promoted by operator", measured: Optional[dict] = None) -> dict:
        s = self.state
        if s.status not in ACTIVE:
            raise RolloutError(f"nothing to promote: rollout is {s.status}")
        s.stable, s.canary = s.canary, s.stable
        s.weights, s.weights_source, s.status = {s.stable: 100, s.canary: 0}, "rollout", "promoted"
        return self._record("promote", reason + f"; {s.stable} is now stable", measured)

    def rollback(self, reason: str = "rolled back by operator", measured: Optional[dict] = None) -> dict:
        s = self.state
        if s.status not in ACTIVE:
            raise RolloutError(f"nothing to roll back: rollout is {s.status}")
        s.weights, s.weights_source, s.status = {s.stable: 100, s.canary: 0}, "rollout", "rolled_back"
        return self._record("rollback", reason, measured)

    def set_manual(self, stable: str, canary: str, weights: dict) -> Optional[dict]:
        """Operator weights from user_config (a reconfigure). They pause an active rollout."""
        s = self.state
        s.stable, s.canary, s.weights, s.weights_source = stable, canary, dict(weights), "user_config"
        if s.status == "running":
            s.status = "paused"
            return self._record("pause", "weights changed through user_config; rollout paused")
        s.updated_at = self.clock()
        self.store.save(s)
        return None

    # --- the analysis loop ---------------------------------------------------------------
    def window_due(self) -> bool:
        s = self.state
        return s.status == "running" and s.window_started_at is not None \
            and self.clock() - s.window_started_at >= s.interval_s

    def evaluate(self, canary: VersionWindow, stable: VersionWindow) -> dict:
        """Judge one closed analysis window and act on it: hold, advance, promote or roll back."""
        s = self.state
        verdict = analyse(canary, stable, self._thresholds())
        s.windows += 1
        s.window_started_at = self.clock()
        measured = dict(verdict.measured, verdict=verdict.result)
        reason = "; ".join(verdict.reasons)
        if verdict.result == "inconclusive":
            return self._record("hold", reason, measured)
        if verdict.result == "fail":
            s.failed_windows += 1
            if s.failed_windows >= s.max_failed_windows:
                return self.rollback(f"{s.failed_windows} consecutive failing windows: {reason}", measured)
            return self._record("hold", f"failing window {s.failed_windows}/{s.max_failed_windows}: {reason}",
                                measured)
        s.failed_windows = 0
        if s.step_index == len(s.steps) - 1:
            return self.promote(f"window passed at {s.steps[-1]}%: {reason}", measured)
        s.step_index += 1
        self._set_canary_weight(s.steps[s.step_index])
        return self._record("advance", f"window passed: {reason}; canary to {s.steps[s.step_index]}%", measured)


# ----------------------------------------------------------------------------- admin token


def load_admin_token(token_file: Optional[str] = None) -> Optional[str]:
    """The admin bearer token: env LAYOUTRAY_ADMIN_TOKEN, else the file named by
    LAYOUTRAY_ADMIN_TOKEN_FILE (or `token_file`), else ~/.config/layoutray/admin_token."""
    tok = os.environ.get(TOKEN_ENV, "").strip()
    if tok:
        return tok
    for p in (token_file, os.environ.get(TOKEN_FILE_ENV), str(DEFAULT_TOKEN_FILE)):
        if p:
            try:
                tok = Path(p).expanduser().read_text().strip()
            except OSError:
                continue
            if tok:
                return tok
    return None


def token_matches(expected: Optional[str], authorization: Optional[str]) -> bool:
    if not expected or not authorization:
        return False
    scheme, _, given = authorization.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected.encode())


# ----------------------------------------------------------------------------- CLI handlers


def _call(args, method: str, path: str, body: Optional[dict] = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    url = args.url.rstrip("/") + path
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    token = load_admin_token()
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


def print_status(d: dict, out=sys.stdout) -> None:
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
            msg += ("; this client sent the token it found" if load_admin_token() else
                    f"; this client found no token: set {TOKEN_ENV} (or {TOKEN_FILE_ENV}, or write "
                    f"{DEFAULT_TOKEN_FILE}) to the server's token")
        print(f"error ({code or 'no connection'}): {msg}", file=sys.stderr)
    if code == 200:
        return 0
    return 3 if code in (401, 403) else 1


def cmd_start(args) -> int:
    canary = str(Path(args.canary).expanduser().resolve())
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
