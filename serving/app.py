"""The Serve application: `Router` (the HTTP ingress, the traffic split and the canary controller)
in front of two `LayoutModel` deployments (serving/model_server.py), one per version slot.

    HTTP :8000 -> Router (1 replica, FastAPI) --handle--> LayoutModel_blue  (slot "blue")
                                                 \\------> LayoutModel_green (slot "green")

A *slot* is a deployment that serves one model version; the router's state says which slot is
`stable` and which is `canary` (promotion swaps the roles, so no replica has to be replaced).
Versions are named by their slot in responses and metrics.

`app` (module level) is what `serve run configs/serve.yaml` imports; `build_app(args)` builds the
same application with other artifact dirs or settings (tests, the benchmark).
"""


import asyncio
import hashlib
import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from serving import api
from serving.model_server import LayoutModel, replica_id, resolve_path
from serving.rollout import ACTIVE, RolloutController, RolloutError, load_admin_token, token_matches
from serving.judge import VersionWindow

logger = logging.getLogger("ray.serve")

DEFAULT_MODEL = "runs/quickstart/model"  # where `make run` leaves its model
DEFAULT_STATE_DIR = "runs/serving"
SLOTS = ("blue", "green")

LATENCY_BUCKETS_MS = [2, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2000, 5000, 10000, 30000]

ROUTER_DEFAULTS = {
    "stable": "blue",
    "canary": "green",
    "weights": {"blue": 100, "green": 0},  # percent; canary weight > 0 gives a manual split
    "shadow_share": 0.0,  # share of non-canary requests also sent to the canary (answer discarded)
    "sticky_header": "X-User-ID",
    "version_timeout_s": 10.0,  # one attempt on one version; then fallback to stable
    "request_timeout_s": 30.0,  # the whole request, fallback included
    "max_body_bytes": 4 * 1024 * 1024,
    # Router -> model over gRPC for requests whose image is at most this size, else through Ray's
    # object store (a replica's gRPC server refuses messages over 4 MiB).
    "grpc_max_image_bytes": 1024 * 1024,
    "max_samples": 8,
    "min_canvas": 16,
    "max_canvas": 16384,
    "max_temperature": 5.0,
    "admin_token_file": None,  # else env LAYOUTRAY_ADMIN_TOKEN / LAYOUTRAY_ADMIN_TOKEN_FILE
    "tick_s": 0.2,  # how often the controller checks whether a window is due
    "model_load_timeout_s": 300.0,
    # Rollout analysis settings not on the CLI.
    "rollout": {"alpha": 0.05, "latency_ratio": 1.5, "latency_slack_ms": 50.0, "max_failed_windows": 2},
}


# ============================================================================ Router

http_app = FastAPI(
    title="layoutray",
    version="1",
    description="Generate web section layouts. POST /v1/layouts; versions and weights at /v1/models. "
                "Admin endpoints (/admin/...) need `Authorization: Bearer <token>`.",
)


def _error(status: int, field: str, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=5.0)
@serve.ingress(http_app)
class Router:
    """Weighted, sticky routing with shadow copies and fallback; hosts the canary controller.

    One replica on purpose: the analysis windows see every request, and the weights never
    disagree between replicas."""

    def __init__(self, blue, green, state_dir: str):
        self.handles = {"blue": blue, "green": green}
        # Requests without a large image go straight to the replica over gRPC instead of through
        # Ray's object store: about 2 ms less per request on a 2-core machine
        # (bench/serve_latency.py). Large images keep the object store (grpc_max_image_bytes).
        self.direct_handles = {slot: h.options(_by_reference=False) for slot, h in self.handles.items()}
        self.state_dir = state_dir
        self.cfg: dict = {}
        self.ctl: Optional[RolloutController] = None
        self.window: dict[str, VersionWindow] = {}
        self.window_opened = time.time()
        self._loop_task: Optional[asyncio.Task] = None
        self._infos: dict[str, dict] = {}
        self._bg: set = set()
        self._init_metrics()

    # --- metrics ------------------------------------------------------------------------
    def _init_metrics(self) -> None:
        from ray.serve.metrics import Counter, Gauge, Histogram

        self.m_requests = Counter("layoutray_requests_total", "model calls by version, role and outcome",
                                  tag_keys=("version", "role", "outcome"))
        self.m_latency = Histogram("layoutray_request_latency_ms", "model call latency seen by the router (ms)",
                                   boundaries=LATENCY_BUCKETS_MS, tag_keys=("version", "role"))
        self.m_fallbacks = Counter("layoutray_fallbacks_total", "requests retried on stable after the chosen "
                                   "version failed", tag_keys=("version",))
        self.m_client_errors = Counter("layoutray_client_errors_total", "4xx answers by field",
                                       tag_keys=("status", "field"))
        self.m_weight = Gauge("layoutray_version_weight_percent", "traffic weight", tag_keys=("version",))
        self.m_decisions = Counter("layoutray_rollout_decisions_total", "rollout decisions",
                                   tag_keys=("decision",))
        self.m_step = Gauge("layoutray_rollout_canary_percent", "canary weight of the rollout",
                            tag_keys=("version",))
        self.m_win_err = Gauge("layoutray_rollout_window_error_rate", "error rate in the last analysis window",
                               tag_keys=("version",))
        self.m_win_p95 = Gauge("layoutray_rollout_window_p95_ms", "P95 latency in the last analysis window",
                               tag_keys=("version",))

    def _export_weights(self) -> None:
        for slot in SLOTS:
            self.m_weight.set(float(self.weights.get(slot, 0)), tags={"version": slot})

    def _observe(self, slot: str, role: str, ok: bool, latency_ms: float, outcome: str) -> None:
        self.m_requests.inc(tags={"version": slot, "role": role, "outcome": outcome})
        if ok:
            self.m_latency.observe(latency_ms, tags={"version": slot, "role": role})
        self.window.setdefault(slot, VersionWindow()).add(ok, latency_ms)

    def _on_decision(self, entry: Optional[dict]) -> None:
        if not entry:
            return
        self.m_decisions.inc(tags={"decision": entry["decision"]})
        st = self.ctl.state
        self.m_step.set(float(st.weights.get(st.canary, 0)), tags={"version": st.canary})
        for role in ("canary", "stable"):
            m = (entry.get("measured") or {}).get(role) or {}
            slot = entry[role] if entry["decision"] != "promote" else entry["canary" if role == "stable" else "stable"]
            if m.get("error_rate") is not None:
                self.m_win_err.set(m["error_rate"], tags={"version": slot})
            if m.get("p95_ms") is not None:
                self.m_win_p95.set(m["p95_ms"], tags={"version": slot})
        self._reset_window()
        self._export_weights()
        logger.info("rollout %s: %s", entry["decision"], entry["reason"])

    def _reset_window(self) -> None:
        self.window, self.window_opened = {}, time.time()

    # --- configuration ---------------------------------------------------------------------
    @property
    def weights(self) -> dict:
        return self.ctl.state.weights

    @staticmethod
    def _check_roles(cfg: dict) -> tuple[str, str, dict]:
        stable, canary, w = cfg["stable"], cfg["canary"], cfg["weights"]
        if stable not in SLOTS or canary not in SLOTS or stable == canary:
            raise ValueError(f"Router user_config: stable/canary must be two different slots of {SLOTS}")
        if not isinstance(w, dict) or set(w) - set(SLOTS) or any(
                not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v) for v in w.values()):
            raise ValueError(f"Router user_config: weights must map slots {SLOTS} to numbers >= 0; got {w!r}")
        total = float(sum(w.values()))
        if total <= 0:
            raise ValueError("Router user_config: weights must not all be 0")
        return stable, canary, {s: 100.0 * float(w.get(s, 0)) / total for s in SLOTS}

    async def reconfigure(self, user_config: dict) -> None:
        user_config = dict(user_config or {})
        unknown = set(user_config) - set(ROUTER_DEFAULTS)
        if unknown:
            raise ValueError(f"Router user_config: unknown keys {sorted(unknown)}; allowed {sorted(ROUTER_DEFAULTS)}")
        cfg = dict(ROUTER_DEFAULTS, **user_config)
        cfg["rollout"] = dict(ROUTER_DEFAULTS["rollout"], **(user_config.get("rollout") or {}))
        stable, canary, weights = self._check_roles(cfg)
        old = self.cfg
        self.cfg = cfg
        if self.ctl is None:
            # First configuration: a saved state (a rollout in progress, a promotion) wins.
            self.ctl = RolloutController(self.state_dir, stable, canary, weights)
            if not self.ctl.restored:
                self.ctl.store.save(self.ctl.state)
            self._reset_window()
        elif (old.get("stable"), old.get("canary"), self._check_roles(old)[2]) != (stable, canary, weights):
            # The operator changed the split through user_config: apply it now (no restart).
            self._on_decision(self.ctl.set_manual(stable, canary, weights))
        self._export_weights()
        self.token = load_admin_token(cfg["admin_token_file"])
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._controller_loop())

    async def _controller_loop(self) -> None:
        while True:
            await asyncio.sleep(float(self.cfg.get("tick_s", 0.2)))
            try:
                if self.ctl.window_due():
                    st = self.ctl.state
                    win = self.window
                    entry = self.ctl.evaluate(win.get(st.canary, VersionWindow()),
                                              win.get(st.stable, VersionWindow()))
                    self._on_decision(entry)
            except Exception:  # noqa: BLE001 - the loop must survive; the error is logged
                logger.exception("rollout controller tick failed")

    # --- routing ----------------------------------------------------------------------------
    def choose(self, user_id: Optional[str]) -> str:
        w = {s: v for s, v in self.weights.items() if v > 0}
        if not w:
            return self.ctl.state.stable
        if user_id:
            # Weighted rendezvous hashing: one hash per (user, version). A user stays on a version
            # while its weight does not drop, and moves only when it must.
            best, best_score = None, math.inf
            for slot in sorted(w):
                h = int.from_bytes(hashlib.sha256(f"{slot}\x00{user_id}".encode()).digest()[:8], "big")
                u = (h + 0.5) / 2.0**64
                score = -math.log(u) / w[slot]
                if score < best_score:
                    best, best_score = slot, score
            return best
        slots = sorted(w)
        return random.choices(slots, weights=[w[s] for s in slots])[0]

    async def _attempt(self, slot: str, payload: dict, timeout: float, role: str) -> tuple[bool, Any]:
        t0 = time.perf_counter()
        image = payload.get("image_png")
        small = image is None or len(image) <= int(self.cfg["grpc_max_image_bytes"])
        resp = (self.direct_handles if small else self.handles)[slot].remote(payload)
        try:
            result = await asyncio.wait_for(asyncio.ensure_future(resp), timeout=max(0.01, timeout))
            self._observe(slot, role, True, (time.perf_counter() - t0) * 1000.0, "ok")
            return True, result
        except asyncio.TimeoutError:
            resp.cancel()
            self._observe(slot, role, False, (time.perf_counter() - t0) * 1000.0, "timeout")
            return False, f"{slot} timed out after {timeout:.1f} s"
        except Exception as e:  # noqa: BLE001 - any replica/model error
            self._observe(slot, role, False, (time.perf_counter() - t0) * 1000.0, "error")
            return False, f"{slot} failed: {type(e).__name__}"

    async def _shadow(self, payload: dict) -> None:
        slot = self.ctl.state.canary
        await self._attempt(slot, payload, float(self.cfg["version_timeout_s"]), "shadow")

    async def _route(self, payload: dict, user_id: Optional[str]) -> JSONResponse:
        st, cfg = self.ctl.state, self.cfg
        chosen = self.choose(user_id)
        deadline = time.perf_counter() + float(cfg["request_timeout_s"])
        share = float(cfg["shadow_share"])
        if share > 0 and chosen != st.canary and random.random() < share:
            t = asyncio.get_running_loop().create_task(self._shadow(payload))
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)
        role = "primary"
        ok, result = await self._attempt(chosen, payload, min(float(cfg["version_timeout_s"]),
                                                                deadline - time.perf_counter()), role)
        served, fallback = chosen, False
        if not ok and chosen != st.stable and deadline - time.perf_counter() > 0:
            self.m_fallbacks.inc(tags={"version": chosen})
            served, fallback = st.stable, True
            ok, result = await self._attempt(st.stable, payload, deadline - time.perf_counter(), "fallback")
        if not ok:
            timed_out = "timed out" in str(result)
            return _error(504 if timed_out else 503, "", f"no version could answer: {result}")
        headers = {"X-Layoutray-Version": served}
        if fallback:
            headers["X-Layoutray-Fallback"] = chosen
        return JSONResponse({"version": served, "layouts": result["layouts"]}, headers=headers)

    async def _limits(self) -> api.Limits:
        caps = []
        for slot in SLOTS:
            info = await self._info(slot, max_age_s=30.0)
            if info and info.get("max_elements"):
                caps.append(int(info["max_elements"]))
        return api.Limits.from_config(self.cfg, min(caps) if caps else 16)

    async def _info(self, slot: str, max_age_s: float = 0.0) -> Optional[dict]:
        cached = self._infos.get(slot)
        if cached and time.time() - cached["_at"] <= max_age_s:
            return cached
        try:
            info = await asyncio.wait_for(asyncio.ensure_future(self.handles[slot].info.remote()), timeout=10.0)
        except Exception as e:  # noqa: BLE001
            return {"slot": slot, "error": f"{type(e).__name__}: {e}"[:300], "_at": time.time()}
        info["_at"] = time.time()
        self._infos[slot] = info
        return info

    # --- HTTP: public ------------------------------------------------------------------------
    @http_app.post("/v1/layouts", response_model=api.LayoutResponse, responses=api.ERROR_RESPONSES,
                   openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                       "schema": api.LayoutRequestModel.model_json_schema()}}}},
                   summary="Generate layouts for a section")
    async def layouts(self, request: Request):
        try:
            limits = await self._limits()
            body = await api.read_body_limited(request, limits.max_body_bytes)
            req = api.parse_layout_request(body, request.headers.get("content-type"), limits)
        except api.ApiError as e:
            self.m_client_errors.inc(tags={"status": str(e.status), "field": e.field[:40]})
            return JSONResponse(e.body(), status_code=e.status)
        user_id = request.headers.get(self.cfg["sticky_header"])
        try:
            return await asyncio.wait_for(self._route(req.to_dict(), user_id),
                                          timeout=float(self.cfg["request_timeout_s"]) + 1.0)
        except asyncio.TimeoutError:
            return _error(504, "", f"request timed out after {self.cfg['request_timeout_s']} s")

    @http_app.get("/v1/models", summary="Versions, weights and rollout state")
    async def models(self):
        st = self.ctl.state
        versions = []
        for slot in SLOTS:
            info = await self._info(slot)
            role = "stable" if slot == st.stable else "canary"
            versions.append({"name": slot, "role": role, "weight": st.weights.get(slot, 0),
                             **{k: v for k, v in (info or {}).items() if k != "_at"}})
        return {"versions": versions, "stable": st.stable, "canary": st.canary,
                "weights_source": st.weights_source, "shadow_share": self.cfg["shadow_share"],
                "rollout": {k: st.to_dict()[k] for k in ("status", "rollout_id", "step", "steps",
                                                         "failed_windows", "last_decision")}}

    @http_app.get("/healthz", summary="Liveness of the router and its versions")
    async def healthz(self):
        st = self.ctl.state
        stable = await self._info(st.stable)
        ok = bool(stable) and "error" not in stable
        body = {"status": "ok" if ok else "degraded", "stable": st.stable,
                "router": {"replica": replica_id(), "pid": os.getpid()}}
        return JSONResponse(body, status_code=200 if ok else 503)

    # --- HTTP: admin ---------------------------------------------------------------------------
    def _auth(self, request: Request) -> Optional[JSONResponse]:
        if not self.token:
            return _error(401, "authorization", "admin actions are disabled: no admin token configured "
                          "(set LAYOUTRAY_ADMIN_TOKEN or LAYOUTRAY_ADMIN_TOKEN_FILE)",
                          headers={"WWW-Authenticate": "Bearer"})
        if not token_matches(self.token, request.headers.get("authorization")):
            return _error(401, "authorization", "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})
        return None

    def _status_body(self) -> dict:
        st = self.ctl.state
        age = round(time.time() - self.window_opened, 1)
        win = None
        if st.status in ACTIVE:
            win = {"age_s": age, "canary": self.window.get(st.canary, VersionWindow()).summary(),
                   "stable": self.window.get(st.stable, VersionWindow()).summary()}
        return {"state": st.to_dict(), "current_window": win, "audit": self.ctl.audit.tail(20)}

    async def _admin(self, request: Request, action) -> JSONResponse:
        denied = self._auth(request)
        if denied:
            return denied
        try:
            entry = await action()
        except RolloutError as e:
            return _error(e.status, "rollout", str(e))
        self._on_decision(entry)
        return JSONResponse(self._status_body())

    @http_app.get("/admin/rollout", summary="Rollout state and recent decisions (bearer token)")
    async def rollout_status(self, request: Request):
        denied = self._auth(request)
        return denied or JSONResponse(self._status_body())

    @http_app.post("/admin/rollout/start", summary="Start a canary rollout (bearer token)")
    async def rollout_start(self, request: Request):
        denied = self._auth(request)
        if denied:
            return denied
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except Exception:  # noqa: BLE001
            return _error(400, "body", "expected a JSON object")
        known = {"canary", "steps", "interval", "min_requests", "max_error_rate", "max_p95_ms", "max_failed_windows"}
        if set(body) - known:
            return _error(422, sorted(set(body) - known)[0], f"unknown field; allowed: {', '.join(sorted(known))}")
        st = self.ctl.state
        if st.status in ACTIVE:
            return _error(409, "rollout", f"a rollout is already {st.status}")
        canary_dir = body.get("canary")
        if canary_dir is not None:
            if not isinstance(canary_dir, str) or not Path(canary_dir).is_dir():
                return _error(422, "canary", f"not a directory on the serving host: {str(canary_dir)[:200]!r}")
            canary_dir = resolve_path(canary_dir)
            err = await self._load_canary(canary_dir)
            if err:
                return err
        ro = self.cfg["rollout"]

        async def act():
            return self.ctl.start(
                canary_dir, steps=body.get("steps", "10,25,50,100"), interval_s=float(body.get("interval", 60.0)),
                min_requests=int(body.get("min_requests", 50)), max_error_rate=float(body.get("max_error_rate", 0.05)),
                max_p95_ms=float(body.get("max_p95_ms", 2000.0)),
                max_failed_windows=int(body.get("max_failed_windows", ro["max_failed_windows"])),
                alpha=float(ro["alpha"]), latency_ratio=float(ro["latency_ratio"]),
                latency_slack_ms=float(ro["latency_slack_ms"]))
        return await self._admin(request, act)

    async def _load_canary(self, canary_dir: str) -> Optional[JSONResponse]:
        """Assign the artifact to the canary slot and wait until the slot serves it."""
        st = self.ctl.state
        info = await self._info(st.canary)
        if info and info.get("artifact") == canary_dir:
            st.artifacts[st.canary] = canary_dir
            return None
        assigned_at = time.time()
        st.artifacts[st.canary] = canary_dir
        self.ctl.store.save(st)
        deadline = assigned_at + float(self.cfg["model_load_timeout_s"])
        while time.time() < deadline:
            info = await self._info(st.canary)
            if info and info.get("artifact") == canary_dir:
                return None
            # Only a failure of this assignment counts: the replica keeps the error of an earlier
            # attempt with the same directory until its next poll, and a user who fixed the
            # artifact and retried would be refused with it. (A replica on a node whose clock is
            # behind makes a real failure look old: the caller then gets the 504 below, not a
            # wrong answer.)
            if (info and info.get("load_error") and canary_dir in info["load_error"]
                    and (info.get("load_failed_at") or 0.0) >= assigned_at):
                st.artifacts.pop(st.canary, None)
                self.ctl.store.save(st)
                return _error(422, "canary", f"the canary slot could not load it: {info['load_error'][:300]}")
            await asyncio.sleep(0.25)
        return _error(504, "canary", "the canary slot did not load the artifact in time")

    @http_app.post("/admin/rollout/pause", summary="Hold the current step (bearer token)")
    async def rollout_pause(self, request: Request):
        async def act():
            return self.ctl.pause()
        return await self._admin(request, act)

    @http_app.post("/admin/rollout/resume", summary="Continue a paused rollout (bearer token)")
    async def rollout_resume(self, request: Request):
        async def act():
            return self.ctl.resume()
        return await self._admin(request, act)

    @http_app.post("/admin/rollout/promote", summary="Make the canary the stable version (bearer token)")
    async def rollout_promote(self, request: Request):
        async def act():
            return self.ctl.promote()
        return await self._admin(request, act)

    @http_app.post("/admin/rollout/rollback", summary="All traffic back to stable (bearer token)")
    async def rollout_rollback(self, request: Request):
        async def act():
            return self.ctl.rollback()
        return await self._admin(request, act)


# ============================================================================ building


def build_app(args: Optional[dict] = None):
    """The bound application. args (all optional): stable_model, canary_model, state_dir,
    router (Router user_config), blue / green (LayoutModel user_config per slot),
    model_num_cpus. Artifact dirs default to env LAYOUTRAY_STABLE_MODEL / LAYOUTRAY_CANARY_MODEL,
    then runs/quickstart/model; the state dir to env LAYOUTRAY_SERVE_STATE_DIR, then runs/serving."""
    args = dict(args or {})
    stable = resolve_path(args.get("stable_model") or os.environ.get("LAYOUTRAY_STABLE_MODEL") or DEFAULT_MODEL)
    canary = resolve_path(args.get("canary_model") or os.environ.get("LAYOUTRAY_CANARY_MODEL") or DEFAULT_MODEL)
    state_dir = resolve_path(args.get("state_dir") or os.environ.get("LAYOUTRAY_SERVE_STATE_DIR")
                             or DEFAULT_STATE_DIR)
    router_cfg = dict(args.get("router") or {})
    ncpu = float(args.get("model_num_cpus", 1))
    models = {}
    for slot, path in (("blue", stable), ("green", canary)):
        models[slot] = LayoutModel.options(
            name=f"LayoutModel_{slot}",
            user_config=dict(args.get(slot) or {}), ray_actor_options={"num_cpus": ncpu},
        ).bind(slot, path, state_dir)
    return Router.options(user_config=router_cfg).bind(
        models["blue"], models["green"], state_dir)


def build_model_app(artifact_dir: str, user_config: Optional[dict] = None, name: str = "direct",
                    num_cpus: float = 1.0):
    """One LayoutModel as its own HTTP ingress (no router): the benchmark's baseline."""
    path = resolve_path(artifact_dir)
    return LayoutModel.options(name=f"LayoutModel_{name}",
                               user_config=dict(user_config or {}),
                               ray_actor_options={"num_cpus": num_cpus}).bind(name, path, None)


def build_direct_app(args: dict):
    """Config builder for one LayoutModel behind its own route (args: model, num_cpus)."""
    return build_model_app(args["model"], num_cpus=float(args.get("num_cpus", 1.0)))


app = build_app()
