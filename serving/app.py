"""The Serve application: `Router` (the HTTP ingress) in front of two `LayoutModel` deployments
(serving/model_server.py), one per version slot.

    HTTP :8000 -> Router (1 replica, FastAPI) --handle--> LayoutModel_blue  (slot "blue")
                                                 \\------> LayoutModel_green (slot "green")

A *slot* is a deployment that serves one model version; the router's state says which slot is
`stable` and which is `canary` (promotion swaps the roles, so no replica has to be replaced).
Responses and metrics name the model that answered (`version`: `<name>@<weights sha256, 12 hex>`,
computed by the model deployment at load) and the slot separately (`slot`).

The Router is the Serve shell: HTTP routes, admin auth, metrics and the handles. The decisions
are made by plain classes: serving/traffic.py (which slot answers, shadow copies, fallback),
serving/judge.py (the analysis windows and their verdicts) and serving/rollout.py (the rollout
state machine, which the router drives on a timer).

`app` (module level) is what `serve run configs/serve.yaml` imports; `build_app(args)` builds the
same application with other artifact dirs or settings (tests, the benchmark).
"""


import asyncio
import logging
import os
import time
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from ray import serve

from layoutray.config import ConfigError
from layoutray.tracking import is_model_ref, move_alias, resolve_model_ref
from serving import api, web
from serving.judge import Windows, answer_quality, measured_by_slot, request_agreement
from serving.model_server import LayoutModel, replica_id, resolve_path
from serving.rollout import (ACTIVE, RolloutController, RolloutError, check_start_body, load_admin_token,
                             start_options, token_matches)
from serving.traffic import SLOTS, TrafficPolicy, check_roles

logger = logging.getLogger("ray.serve")

DEFAULT_MODEL = "runs/quickstart/model"  # where `make run` leaves its model
DEFAULT_STATE_DIR = "runs/serving"

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
    "max_image_pixels": 16_000_000,  # width x height in the PNG header; 413 over it, before decoding
    "max_json_depth": 32,  # 400 over it, checked before parsing
    "admin_token_file": None,  # else env LAYOUTRAY_ADMIN_TOKEN / LAYOUTRAY_ADMIN_TOKEN_FILE
    "tick_s": 0.2,  # how often the controller checks whether a window is due
    "model_load_timeout_s": 300.0,
    # The MLflow server of models:/NAME@ALIAS references (None: env MLFLOW_TRACKING_URI), and the
    # alias a promotion points at the new stable version when the old one had none (docs/tracking.md).
    "tracking_uri": None,
    "promote_alias": "champion",
    # Rollout analysis settings not on the CLI.
    "rollout": {"alpha": 0.05, "latency_ratio": 1.5, "latency_slack_ms": 50.0, "max_failed_windows": 2},
}


def router_config(user_config: Optional[dict]) -> dict:
    """ROUTER_DEFAULTS updated with the Router's user_config (its `rollout` dict key by key).
    ValueError on unknown keys; the roles and weights are checked by traffic.check_roles."""
    user_config = dict(user_config or {})
    unknown = set(user_config) - set(ROUTER_DEFAULTS)
    if unknown:
        raise ValueError(f"Router user_config: unknown keys {sorted(unknown)}; allowed {sorted(ROUTER_DEFAULTS)}")
    cfg = dict(ROUTER_DEFAULTS, **user_config)
    cfg["rollout"] = dict(ROUTER_DEFAULTS["rollout"], **(user_config.get("rollout") or {}))
    return cfg


def _error(status: int, field: str, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": {"field": field, "message": message}}, status_code=status, headers=headers)


# ============================================================================ metrics


def candidate_slot(entry: dict) -> str:
    """The slot a rollout decision is about: the canary's, which a promotion has just made stable."""
    return entry.get("stable" if entry.get("decision") == "promote" else "canary") or "unknown"


class RouterMetrics:
    """The router's metrics (exported by Ray's metrics agent). Created inside the replica: Ray's
    metric objects belong to the process that records them."""

    def __init__(self):
        from ray.serve.metrics import Counter, Gauge, Histogram

        # Label values come from fixed sets only, never from client text: `version` is a model id
        # (one per deployed artifact), `slot` blue/green, `field` one of api.METRIC_FIELDS.
        self.requests = Counter("layoutray_requests_total", "model calls by model, slot, role and outcome",
                                tag_keys=("version", "slot", "role", "outcome"))
        self.latency = Histogram("layoutray_request_latency_ms", "model call latency seen by the router (ms)",
                                 boundaries=LATENCY_BUCKETS_MS, tag_keys=("version", "slot", "role"))
        self.fallbacks = Counter("layoutray_fallbacks_total", "requests retried on stable after the chosen "
                                 "version failed", tag_keys=("version", "slot"))
        self.client_errors = Counter("layoutray_client_errors_total", "4xx answers by field",
                                     tag_keys=("status", "field"))
        # Per-slot state (a slot changes models during a rollout): labelled by slot only.
        self.weight = Gauge("layoutray_version_weight_percent", "traffic weight", tag_keys=("slot",))
        self.decisions = Counter("layoutray_rollout_decisions_total", "rollout decisions by the model and "
                                 "slot they judged (the rollout's candidate)", tag_keys=("decision", "version", "slot"))
        self.step = Gauge("layoutray_rollout_canary_percent", "canary weight of the rollout",
                          tag_keys=("slot",))
        self.win_err = Gauge("layoutray_rollout_window_error_rate", "error rate in the last analysis window",
                             tag_keys=("slot",))
        self.win_p95 = Gauge("layoutray_rollout_window_p95_ms", "P95 latency in the last analysis window",
                             tag_keys=("slot",))

    def call(self, model: str, slot: str, role: str, ok: bool, latency_ms: float, outcome: str) -> None:
        self.requests.inc(tags={"version": model, "slot": slot, "role": role, "outcome": outcome})
        if ok:
            self.latency.observe(latency_ms, tags={"version": model, "slot": slot, "role": role})

    def weights(self, weights: dict) -> None:
        for slot in SLOTS:
            self.weight.set(float(weights.get(slot, 0)), tags={"slot": slot})

    def decision(self, entry: dict, state, model: str) -> None:
        """A rollout decision (its audit entry) about `model`, and the state it left (`state`)."""
        self.decisions.inc(tags={"decision": entry["decision"], "version": model, "slot": candidate_slot(entry)})
        self.step.set(float(state.weights.get(state.canary, 0)), tags={"slot": state.canary})
        for slot, m in measured_by_slot(entry).items():
            if m.get("error_rate") is not None:
                self.win_err.set(m["error_rate"], tags={"slot": slot})
            if m.get("p95_ms") is not None:
                self.win_p95.set(m["p95_ms"], tags={"slot": slot})


# ============================================================================ Router

http_app = FastAPI(
    title="layoutray",
    version="1",
    description="Generate web section layouts. POST /v1/layouts; versions and weights at /v1/models. "
                "Admin endpoints (/admin/...) need `Authorization: Bearer <token>`.",
)
web.add_routes(http_app)  # the playground (/) and the rollout console (/console): serving/web.py


@serve.deployment(num_replicas=1, max_ongoing_requests=256, ray_actor_options={"num_cpus": 0},
                  health_check_period_s=5.0)
@serve.ingress(http_app)
class Router:
    """The HTTP ingress and the host of the canary controller.

    One replica on purpose: the analysis windows see every request, and the weights never
    disagree between replicas."""

    def __init__(self, blue, green, state_dir: str, registry: Optional[dict] = None):
        self.handles = {"blue": blue, "green": green}
        # Requests without a large image go straight to the replica over gRPC instead of through
        # Ray's object store: about 2 ms less per request on a 2-core machine
        # (bench/serve_latency.py). Large images keep the object store (grpc_max_image_bytes).
        self.direct_handles = {slot: h.options(_by_reference=False) for slot, h in self.handles.items()}
        self.state_dir = state_dir
        self.cfg: dict = {}
        self.ctl: Optional[RolloutController] = None
        self.traffic: Optional[TrafficPolicy] = None
        self.windows = Windows()
        self._loop_task: Optional[asyncio.Task] = None
        self._infos: dict[str, dict] = {}
        self._bg: set = set()  # shadow calls in flight: the loop keeps only weak references to tasks
        self.metrics = RouterMetrics()
        self._registry_at_build = {slot: ref for slot, ref in (registry or {}).items() if ref}

    # --- configuration and the controller ----------------------------------------------------
    async def reconfigure(self, user_config: dict) -> None:
        cfg = router_config(user_config)
        stable, canary, weights = check_roles(cfg)
        old, self.cfg = self.cfg, cfg
        if self.ctl is None:
            # First configuration: a saved state (a rollout in progress, a promotion) wins.
            self.ctl = RolloutController(self.state_dir, stable, canary, weights)
            if not self.ctl.state.registry:  # a saved state's versions win; so do its assigned artifacts
                self.ctl.state.registry = {slot: ref for slot, ref in self._registry_at_build.items()
                                           if slot not in self.ctl.state.artifacts}
            if not self.ctl.restored:
                self.ctl.store.save(self.ctl.state)
            self.traffic = TrafficPolicy(self.ctl.state)
            self.windows.reset()
        elif (old.get("stable"), old.get("canary"), check_roles(old)[2]) != (stable, canary, weights):
            # The operator changed the split through user_config: apply it now (no restart).
            self._on_decision(self.ctl.set_manual(stable, canary, weights))
        self.traffic.shadow_share = float(cfg["shadow_share"])
        self.metrics.weights(self.ctl.state.weights)
        self.token = load_admin_token(cfg["admin_token_file"])
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._controller_loop())

    async def _controller_loop(self) -> None:
        while True:
            await asyncio.sleep(float(self.cfg.get("tick_s", 0.2)))
            try:
                if self.ctl.window_due():
                    st = self.ctl.state
                    self._on_decision(self.ctl.evaluate(self.windows.of(st.canary), self.windows.of(st.stable)))
            except Exception:  # noqa: BLE001 - the loop must survive; the error is logged
                logger.exception("rollout controller tick failed")

    def _on_decision(self, entry: Optional[dict]) -> None:
        if not entry:
            return
        model = (self._infos.get(candidate_slot(entry)) or {}).get("model") or "unknown"
        self.metrics.decision(entry, self.ctl.state, model)
        self.windows.reset()  # a decision closes the window: the next one judges the new weights
        self.metrics.weights(self.ctl.state.weights)
        logger.info("rollout %s: %s", entry["decision"], entry["reason"])
        move = self.ctl.promotion_move(self.cfg["promote_alias"]) if entry["decision"] == "promote" else None
        if move:  # the registry follows the promotion; traffic does not wait for it
            t = asyncio.get_running_loop().create_task(self._move_alias(*move))
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)

    async def _move_alias(self, name: str, alias: str, version: str) -> None:
        try:
            await asyncio.to_thread(move_alias, self.cfg.get("tracking_uri") or "", name, alias, version)
            error = None
        except Exception as e:  # noqa: BLE001 - recorded in the audit log; the promotion stands
            error = f"{type(e).__name__}: {e}"[:300]
        entry = self.ctl.registry_moved(name, alias, version, error)
        (logger.info if error is None else logger.error)("registry: %s", entry["reason"])

    async def _fetch_ref(self, ref: str) -> tuple[str, dict]:
        """A models:/ reference's artifact, fetched under the state dir (a 422 naming it when it cannot be)."""
        try:
            return await asyncio.to_thread(resolve_model_ref, ref, os.path.join(self.state_dir, "registry"),
                                           self.cfg.get("tracking_uri") or "")
        except ConfigError as e:  # TrackingError: unreachable server, unknown name, alias or version
            raise RolloutError(e.problem, 422, "canary") from None
        except Exception as e:  # noqa: BLE001 - the download itself failed
            raise RolloutError(f"{ref}: could not fetch it: {type(e).__name__}: {e}"[:300], 503, "canary") from None

    # --- calling the model slots ----------------------------------------------------------
    async def _attempt(self, slot: str, payload: dict, timeout: float, role: str) -> tuple[bool, Any]:
        t0 = time.perf_counter()
        image = payload.get("image_png")
        small = image is None or len(image) <= int(self.cfg["grpc_max_image_bytes"])
        resp = (self.direct_handles if small else self.handles)[slot].remote(payload)
        try:
            result = await asyncio.wait_for(asyncio.ensure_future(resp), timeout=max(0.01, timeout))
            ok, outcome = True, "ok"
        except asyncio.TimeoutError:
            resp.cancel()
            ok, outcome, result = False, "timeout", f"{slot} timed out after {timeout:.1f} s"
        except Exception as e:  # noqa: BLE001 - any replica/model error
            ok, outcome, result = False, "error", f"{slot} failed: {type(e).__name__}"
        if ok and "client_error" in result:  # pixels that do not decode: the client's fault, not the model's
            self.metrics.requests.inc(tags={"version": result.get("model") or "unknown", "slot": slot,
                                            "role": role, "outcome": "client_error"})
            return ok, result
        latency_ms = (time.perf_counter() - t0) * 1000.0
        # The model that answered says who it is; a failure is charged to the slot's last known model.
        model = (result.get("model") if ok else None) or (self._infos.get(slot) or {}).get("model") or "unknown"
        self.metrics.call(model, slot, role, ok, latency_ms, outcome)
        # What it answered counts too: a broken model answers fast and without errors.
        self.windows.add(slot, ok, latency_ms, answer_quality(payload, result) if ok else None)
        return ok, result

    def _shadow(self, slot: str, payload: dict) -> asyncio.Task:
        t = asyncio.get_running_loop().create_task(
            self._attempt(slot, payload, float(self.cfg["version_timeout_s"]), "shadow"))
        self._bg.add(t)
        t.add_done_callback(self._bg.discard)
        return t

    def _agree_later(self, slot: str, shadow_task: asyncio.Task, payload: dict, primary_result: Any) -> None:
        """When the shadow copy has answered, record how far `slot` (the canary) agreed with the
        primary (stable) answer to the same request. The response does not wait for it."""
        def done(t: asyncio.Task) -> None:
            if t.cancelled() or t.exception() is not None:
                return
            shadow_ok, shadow_result = t.result()
            if shadow_ok and "client_error" not in shadow_result:
                self.windows.add_agreement(slot, request_agreement(payload, primary_result, shadow_result))
        shadow_task.add_done_callback(done)

    async def _route(self, payload: dict, user_id: Optional[str]) -> JSONResponse:
        cfg = self.cfg
        chosen = self.traffic.choose(user_id)
        deadline = time.perf_counter() + float(cfg["request_timeout_s"])
        shadow = self.traffic.shadow_to(chosen)
        shadow_task = self._shadow(shadow, payload) if shadow else None
        ok, result = await self._attempt(chosen, payload, min(float(cfg["version_timeout_s"]),
                                                                deadline - time.perf_counter()), "primary")
        if ok and "client_error" in result:
            err = result["client_error"]
            self.metrics.client_errors.inc(tags={"status": str(err["status"]), "field": api.metric_field(err["field"])})
            return _error(err["status"], err["field"], err["message"])
        if shadow_task is not None and ok:
            self._agree_later(shadow, shadow_task, payload, result)
        served = chosen
        fallback = None if ok else self.traffic.fallback_for(chosen)
        if fallback and deadline - time.perf_counter() > 0:
            self.metrics.fallbacks.inc(tags={"version": (self._infos.get(chosen) or {}).get("model") or "unknown",
                                             "slot": chosen})
            served = fallback
            ok, result = await self._attempt(fallback, payload, deadline - time.perf_counter(), "fallback")
        if not ok:
            timed_out = "timed out" in str(result)
            return _error(504 if timed_out else 503, "", f"no version could answer: {result}")
        headers = {"X-Layoutray-Version": result["model"], "X-Layoutray-Slot": served}
        if served != chosen:
            headers["X-Layoutray-Fallback"] = chosen  # the slot that failed
        return JSONResponse({"version": result["model"], "slot": served, "layouts": result["layouts"]},
                            headers=headers)

    async def _limits(self) -> api.Limits:
        caps = []
        for slot in SLOTS:
            info = await self._info(slot, max_age_s=30.0)
            if info and info.get("max_elements"):
                caps.append(int(info["max_elements"]))
        limits = api.Limits.from_config(self.cfg, min(caps) if caps else 16)
        limits.decode_images = False  # the model replica decodes, off its event loop: not this loop
        return limits

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
                       "schema": api.layout_request_schema()}}}},
                   summary="Generate layouts for a section")
    async def layouts(self, request: Request):
        try:
            limits = await self._limits()
            body = await api.read_body_limited(request, limits.max_body_bytes)
            req = api.parse_layout_request(body, request.headers.get("content-type"), limits)
        except api.ApiError as e:
            self.metrics.client_errors.inc(tags={"status": str(e.status), "field": api.metric_field(e.field)})
            return JSONResponse(e.body(), status_code=e.status)
        user_id = request.headers.get(self.cfg["sticky_header"])
        try:
            return await asyncio.wait_for(self._route(req.to_dict(), user_id),
                                          timeout=float(self.cfg["request_timeout_s"]) + 1.0)
        except asyncio.TimeoutError:
            return _error(504, "", f"request timed out after {self.cfg['request_timeout_s']} s")

    @http_app.get("/v1/models", summary="Models and weights; with the admin token also artifacts, "
                  "replicas, settings and rollout state")
    async def models(self, request: Request):
        st = self.ctl.state
        versions = []
        for slot in SLOTS:
            info = await self._info(slot)
            role = "stable" if slot == st.stable else "canary"
            model = (info or {}).get("model") or (self._infos.get(slot) or {}).get("model")
            versions.append({"name": slot, "role": role, "weight": st.weights.get(slot, 0),
                             "registry": st.registry.get(slot),
                             **{k: v for k, v in (info or {}).items() if k != "_at"}, "id": model, "slot": slot})
        full = {"versions": versions, "stable": st.stable, "canary": st.canary,
                "weights_source": st.weights_source, "shadow_share": self.cfg["shadow_share"],
                "rollout": {k: st.to_dict()[k] for k in ("status", "rollout_id", "step", "steps",
                                                         "failed_windows", "last_decision")}}
        # Paths, PIDs and chaos settings only for the operator (a wrong token sees the public view).
        return full if token_matches(self.token, request.headers.get("authorization")) else api.public_models(full)

    @http_app.get("/healthz", summary="Liveness of the router and its versions")
    async def healthz(self, request: Request):
        st = self.ctl.state
        stable = await self._info(st.stable)
        ok = bool(stable) and "error" not in stable
        body = {"status": "ok" if ok else "degraded", "stable": st.stable}
        if self.token and token_matches(self.token, request.headers.get("authorization")):
            body["router"] = {"replica": replica_id(), "pid": os.getpid()}  # internals: operators only
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
        win = self.windows.summary(st.canary, st.stable) if st.status in ACTIVE else None
        return {"state": st.to_dict(), "current_window": win, "audit": self.ctl.audit.tail(20)}

    async def _admin(self, request: Request, action) -> JSONResponse:
        denied = self._auth(request)
        if denied:
            return denied
        try:
            entry = await action()
        except RolloutError as e:
            return _error(e.status, e.field, str(e))
        self._on_decision(entry)
        return JSONResponse(self._status_body())

    @http_app.get("/admin/rollout", summary="Rollout state and recent decisions (bearer token)")
    async def rollout_status(self, request: Request):
        denied = self._auth(request)
        return denied or JSONResponse(self._status_body())

    @http_app.get("/admin/stats", summary="Per-version numbers of the open analysis window (bearer token)")
    async def admin_stats(self, request: Request):
        denied = self._auth(request)
        if denied:
            return denied
        models = {slot: ((await self._info(slot, max_age_s=5.0)) or {}).get("model")
                  or (self._infos.get(slot) or {}).get("model") for slot in SLOTS}
        return JSONResponse(web.version_stats(self.windows, self.ctl.state, models, self.windows.clock()))

    @http_app.post("/admin/rollout/start", summary="Start a canary rollout (bearer token)",
                   responses=api.ERROR_RESPONSES, openapi_extra={"requestBody": {"content": {
                       "application/json": {"schema": api.start_body_schema()}}}})
    async def rollout_start(self, request: Request):
        denied = self._auth(request)
        if denied:
            return denied
        try:  # the layouts parser's limits and a type check per field: 4xx naming it, never a 500
            body = api.parse_start_body(await api.read_body_limited(request, api.ADMIN_MAX_BODY_BYTES))
        except api.ApiError as e:
            return JSONResponse(e.body(), status_code=e.status)
        try:
            check_start_body(body)
            st = self.ctl.state
            if st.status in ACTIVE:
                raise RolloutError(f"a rollout is already {st.status}", 409)
            canary_dir, canary_ref = body.get("canary"), None
            if is_model_ref(canary_dir):
                canary_dir, canary_ref = await self._fetch_ref(canary_dir)
            if canary_dir is not None and not api.safe_is_dir(canary_dir):
                raise RolloutError(f"not a directory on the serving host: {str(canary_dir)[:200]!r}", 422, "canary")
            options = start_options(body, self.cfg["rollout"])
        except RolloutError as e:
            return _error(e.status, e.field, str(e))
        if canary_dir is not None:
            canary_dir = resolve_path(canary_dir)
            err = await self._load_canary(canary_dir)
            if err:
                return err

        async def act():
            entry = self.ctl.start(canary_dir, **options)
            self.ctl.set_registry(self.ctl.state.canary, canary_ref)
            return entry
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
    then runs/quickstart/model; the state dir to env LAYOUTRAY_SERVE_STATE_DIR, then runs/serving.
    A model given as models:/NAME@ALIAS (or /VERSION) is fetched from the MLflow registry here
    (args tracking_uri, else the router's, else env MLFLOW_TRACKING_URI)."""
    args = dict(args or {})
    state_dir = resolve_path(args.get("state_dir") or os.environ.get("LAYOUTRAY_SERVE_STATE_DIR")
                             or DEFAULT_STATE_DIR)
    router_cfg = dict(args.get("router") or {})
    uri = args.get("tracking_uri") or router_cfg.get("tracking_uri") or ""
    stable, stable_ref = _model_arg(args.get("stable_model") or os.environ.get("LAYOUTRAY_STABLE_MODEL")
                                    or DEFAULT_MODEL, state_dir, uri)
    canary, canary_ref = _model_arg(args.get("canary_model") or os.environ.get("LAYOUTRAY_CANARY_MODEL")
                                    or DEFAULT_MODEL, state_dir, uri)
    ncpu = float(args.get("model_num_cpus", 1))
    models = {}
    for slot, path in (("blue", stable), ("green", canary)):
        models[slot] = LayoutModel.options(
            name=f"LayoutModel_{slot}",
            user_config=dict(args.get(slot) or {}), ray_actor_options={"num_cpus": ncpu},
        ).bind(slot, path, state_dir)
    return Router.options(user_config=router_cfg).bind(
        models["blue"], models["green"], state_dir, {"blue": stable_ref, "green": canary_ref})


def _model_arg(model: str, state_dir: str, tracking_uri: str) -> tuple[str, Optional[dict]]:
    """(artifact path, registry version or None) of a slot's model argument."""
    if is_model_ref(model):
        return resolve_model_ref(model, os.path.join(state_dir, "registry"), tracking_uri)
    return resolve_path(model), None


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
