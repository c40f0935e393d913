"""Canary rollout: persisted state, the step/verdict state machine, the audit log, the checks of
a start request and admin-token handling.

Where it runs: the controller lives inside the single `Router` replica (serving/app.py). The
router already sees the outcome and latency of every request it routes, so its analysis windows
need no metric scraping, and the weights it decides take effect on the next request. The CLI
(serving/client.py) only talks HTTP to the router's admin endpoints (`/admin/rollout/...`,
bearer token).

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
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from serving.judge import QUALITY_DEFAULTS, QUALITY_FIELDS, Thresholds, VersionWindow, analyse

STATE_FILE = "rollout_state.json"
AUDIT_FILE = "rollout_audit.jsonl"
TOKEN_ENV = "LAYOUTRAY_ADMIN_TOKEN"
TOKEN_FILE_ENV = "LAYOUTRAY_ADMIN_TOKEN_FILE"
DEFAULT_TOKEN_FILE = Path.home() / ".config" / "layoutray" / "admin_token"

ACTIVE = ("running", "paused")
START_FIELDS = ("canary", "steps", "interval", "min_requests", "max_error_rate", "max_p95_ms",
                "max_failed_windows") + QUALITY_FIELDS


class RolloutError(ValueError):
    """An admin action that does not fit the current state (HTTP 409) or bad parameters (422);
    `field` is what the HTTP error body names."""

    def __init__(self, message: str, status: int = 409, field: str = "rollout"):
        super().__init__(message)
        self.status = status
        self.field = field


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


def check_start_body(body) -> dict:
    """The body of POST /admin/rollout/start, if it is a JSON object of known fields only."""
    if not isinstance(body, dict):
        raise RolloutError("expected a JSON object", 400, "body")
    unknown = sorted(set(body) - set(START_FIELDS))
    if unknown:
        raise RolloutError(f"unknown field; allowed: {', '.join(sorted(START_FIELDS))}", 422, unknown[0])
    return body


def start_options(body: dict, settings: dict) -> dict:
    """`RolloutController.start` keyword arguments (all but the canary) from a checked start body
    and the router's `rollout` settings (the thresholds that are not on the CLI). The output
    quality thresholds come from the body, else the settings, else judge.Thresholds' defaults."""

    def number(name: str, kind, default):
        value = body.get(name, default)
        try:
            return kind(value)
        except (TypeError, ValueError, OverflowError):
            raise RolloutError(f"expected a number; got {str(value)[:50]!r}", 422, name) from None

    return {"steps": body.get("steps", "10,25,50,100"), "interval_s": number("interval", float, 60.0),
            "min_requests": number("min_requests", int, 50),
            "max_error_rate": number("max_error_rate", float, 0.05),
            "max_p95_ms": number("max_p95_ms", float, 2000.0),
            "max_failed_windows": number("max_failed_windows", int, settings["max_failed_windows"]),
            "alpha": float(settings["alpha"]), "latency_ratio": float(settings["latency_ratio"]),
            "latency_slack_ms": float(settings["latency_slack_ms"]),
            **{name: number(name, type(default), settings.get(name, default))
               for name, default in QUALITY_DEFAULTS.items()}}


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
    # slot -> the MLflow registry version it serves ({"ref", "name", "version", "alias", "run_id"}),
    # for slots whose model came as models:/NAME@ALIAS or models:/NAME/VERSION
    registry: dict = field(default_factory=dict)

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
        bad = th.invalid()
        if bad:
            raise RolloutError(bad[1], 422, bad[0])
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

    # --- the model registry ---------------------------------------------------------------
    def set_registry(self, slot: str, ref: Optional[dict]) -> None:
        """The registry version `slot` now serves (None: a model that did not come from the registry)."""
        if ref:
            self.state.registry[slot] = dict(ref)
        else:
            self.state.registry.pop(slot, None)
        self.store.save(self.state)

    def promotion_move(self, default_alias: str) -> Optional[tuple[str, str, str]]:
        return promotion_alias(self.state, default_alias)

    def registry_moved(self, name: str, alias: str, version: str, error: Optional[str] = None) -> dict:
        """Record the alias move a promotion asked for (in the audit log, and on success in the state)."""
        s = self.state
        if error is None and s.registry.get(s.stable, {}).get("name") == name:
            s.registry[s.stable]["alias"] = alias
            self.store.save(s)
        entry = {"time": _now_iso(self.clock()), "rollout_id": s.rollout_id, "decision": "registry",
                 "reason": (f"models:/{name}@{alias} -> version {version}" if error is None else
                            f"could not move models:/{name}@{alias} to version {version}: {error}"),
                 "ok": error is None, "stable": s.stable, "canary": s.canary}
        self.audit.append(entry)
        return entry

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
        if verdict.signals:
            measured["failed_signals"] = verdict.signals  # which checks decided, for tools and tests
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


def promotion_alias(state: RolloutState, default_alias: str) -> Optional[tuple[str, str, str]]:
    """After a promotion (the slots' roles swapped): (registered model, alias, version) to point at
    the new stable model, or None when that model did not come from the registry. The alias is the
    one the old stable model was served under (models:/NAME@ALIAS), else `default_alias`."""
    new, old = state.registry.get(state.stable), state.registry.get(state.canary) or {}
    if not new:
        return None
    return new["name"], old.get("alias") or default_alias, str(new["version"])


# ----------------------------------------------------------------------------- admin token


def load_admin_token(token_file: Optional[str] = None) -> Optional[str]:
    """The admin bearer token, for the server and the CLI alike: env LAYOUTRAY_ADMIN_TOKEN, else
    the first readable, non-empty file of `token_file` (the Router's admin_token_file), the one
    named by LAYOUTRAY_ADMIN_TOKEN_FILE and ~/.config/layoutray/admin_token."""
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
