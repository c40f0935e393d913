"""The `LayoutModel` Serve deployment: one model version (a "slot"), batched generation.

`ModelCore` loads an exported artifact (layoutray.model.artifact: no DeepSpeed or Ray Train) and turns
validated requests into layouts in the canvas's pixels; the in-process benchmark uses it alone.
`LayoutModel` wraps it for Serve: `@serve.batch`, live settings through `reconfigure`, health
checks, and, when a rollout assigns its slot another artifact, a reload without a restart. The
`Router` (serving/app.py) calls it through a handle; the benchmark also calls it over HTTP.

Versions are named by model, not by slot: `model_id` (the artifact's name and the start of the
sha256 of its weights file) is computed at load and travels with every answer, so the router's
responses and metrics say which model answered even while a slot switches artifacts.
"""

import asyncio
import hashlib
import logging
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Optional

from fastapi.responses import JSONResponse
from ray import serve

from layoutray.data.imaging import ImageError
from layoutray.model.request import LayoutRequest
from serving import api
from serving.rollout import read_assignment

logger = logging.getLogger("ray.serve")

REPO_ROOT = Path(__file__).resolve().parent.parent

MODEL_DEFAULTS = {
    "max_batch_size": 16,
    # 0: a batch takes whatever is queued when the model is free. Generation blocks the loop
    # (see _batched), so under load requests pile up meanwhile; waiting only slowed single
    # requests (bench/serve_latency.py --batch-wait-s: 0.005 gave +5 ms P50 at 1 client and no
    # more requests/s at 16).
    "batch_wait_timeout_s": 0.0,
    "torch_threads": 1,
    # Test / chaos settings (keep at 0 in production): a share of requests that raise, and
    # latency added to every request. They change live through user_config.
    "fail_rate": 0.0,
    "extra_latency_ms": 0.0,
    "reload_poll_s": 0.5,
    # Images decoded at once by one replica, off its event loop: a 16-megapixel PNG decodes to
    # up to 64 MB (RGBA) plus a converted copy, so 16 at once would hold about 2 GB.
    "decode_concurrency": 2,
}


def resolve_path(p: str | os.PathLike) -> str:
    """Relative paths are relative to the repository root (replicas do not share the shell's cwd);
    URIs (s3://bucket/runs/x/model) are kept as they are."""
    from layoutray import storage

    if storage.is_uri(p):
        return str(p)
    p = Path(os.path.expanduser(str(p)))
    return str(p if p.is_absolute() else (REPO_ROOT / p).resolve())


def replica_id() -> str:
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # outside a replica (in-process benchmark)
        return "local"


class InjectedFault(RuntimeError):
    """Raised by the fault-injection setting `fail_rate` (tests and chaos drills)."""


def weights_digest(artifact_dir: str, n: int = 12) -> str:
    """The first n hex digits of the sha256 of the artifact's weights file: two artifacts with the
    same name (every export of a run is called `model`) still get different ids."""
    from layoutray.model.artifact import WEIGHTS_FILE

    h = hashlib.sha256()
    with open(Path(artifact_dir) / WEIGHTS_FILE, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:n]


def model_name(artifact_dir: str, meta: dict) -> str:
    """A short ASCII name for ids and metric labels: the export's metadata name or run, else the
    directory (its parent for the usual `<run>/model`)."""
    extra = (meta or {}).get("metadata") or {}
    d = Path(artifact_dir)
    name = str(extra.get("name") or extra.get("run") or (d.parent.name if d.name == "model" else d.name))
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")[:40] or "model"


def shrink_png(png: bytes, height: int, width: int, channels: int) -> bytes:
    """A PNG decoded, converted and resized to the model's input size, re-encoded losslessly.

    `to_model_array` of the result equals `to_model_array` of the original (the same convert and
    resize; resizing an image to the size it has copies it), so the batch decodes a few
    kilobytes instead of megapixels. ImageError for bytes that do not decode."""
    from PIL import Image

    from layoutray.data.imaging import decode_png, encode_png

    img = decode_png(png)
    small = img.convert("L" if channels == 1 else "RGB").resize((width, height), Image.BILINEAR)
    del img
    release_freed_memory()
    return encode_png(small)


def release_freed_memory() -> None:
    """Give memory freed by a large decode back to the OS (glibc keeps freed heap pages, so a
    burst of large images would otherwise raise the replica's RSS for good). No-op elsewhere."""
    global _malloc_trim
    if _malloc_trim is None:
        import ctypes
        import ctypes.util
        try:
            _malloc_trim = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


def model_id(artifact_dir: str, meta: dict) -> str:
    """`<name>@<sha256 of the weights, 12 hex digits>`, e.g. `tiny-1@3f2a9c0d1e2b`."""
    return f"{model_name(artifact_dir, meta)}@{weights_digest(artifact_dir)}"


class Loaded:
    """One loaded artifact. Replaced as a whole on reload: a batch reads one snapshot, so the id
    it reports is the model that answered."""

    def __init__(self, predictor, artifact_dir: str, model_id: str):
        self.predictor, self.artifact_dir, self.model_id = predictor, artifact_dir, model_id
        self.loaded_at = time.time()


class ModelCore:
    """Artifact loading and batched generation, usable without Serve (the in-process benchmark)."""

    def __init__(self, artifact_dir: str):
        self.current: Optional[Loaded] = None
        self.load(artifact_dir)

    def load(self, artifact_dir: str) -> None:
        # Not just a parse: finite weights and the artifact's golden set too (layoutray/model/
        # golden.py). A damaged model still parses and answers, fast and wrong; refused here, it
        # never serves (at start-up the replica fails; on a reload the old model keeps serving
        # and load_error names the failed checks, which the router returns to `rollout start`).
        from layoutray.model.artifact import fetch_artifact
        from layoutray.model.golden import load_checked

        artifact_dir = resolve_path(artifact_dir)
        local = str(fetch_artifact(artifact_dir))  # a URI's cached copy: what is checked and loaded
        predictor = load_checked(local)
        predictor.path = artifact_dir
        self.current = Loaded(predictor, artifact_dir,
                              f"{model_name(artifact_dir, predictor.meta)}@{weights_digest(local)}")

    # The loaded artifact's attributes, as before `Loaded` (the benchmark and info() read them).
    predictor = property(lambda self: self.current.predictor if self.current else None)
    artifact_dir = property(lambda self: self.current.artifact_dir)
    loaded_at = property(lambda self: self.current.loaded_at)
    model_id = property(lambda self: self.current.model_id)

    @property
    def max_elements(self) -> int:
        return int(self.predictor.cfg.model.max_elements)

    @property
    def decoder(self) -> dict:
        """Which decoder answers, and for a diffusion model its T (the most `steps` it runs)."""
        m = self.predictor.cfg.model
        return {"decoder": m.decoder, "diffusion_steps": m.diffusion_steps if m.decoder == "diffusion" else None}

    def predict_many(self, reqs: list[dict]) -> list[Any]:
        """Validated request dicts -> response dicts with the answering model's id under "model"
        (or the exception for that request)."""
        cur = self.current
        out = cur.predictor.answer([LayoutRequest(**r) for r in reqs])
        return [r if isinstance(r, Exception) else {**r, "model": cur.model_id} for r in out]


@serve.deployment(max_ongoing_requests=64, health_check_period_s=5.0, health_check_timeout_s=60.0,
                  graceful_shutdown_timeout_s=5.0)
class LayoutModel:
    """One model version. Called by the Router through a handle with a validated request dict,
    or directly over HTTP (same JSON API, no router: used by the benchmark)."""

    def __init__(self, slot: str, artifact_dir: str, state_dir: Optional[str] = None):
        self.slot, self.state_dir = slot, state_dir
        assigned = read_assignment(state_dir, slot) if state_dir else None  # a rollout's canary wins
        self.core = ModelCore(assigned or artifact_dir)
        self.settings = dict(MODEL_DEFAULTS)
        self.load_error: Optional[str] = None
        self.load_failed_at: Optional[float] = None
        self._reload_task: Optional[asyncio.Task] = None
        self._decoding = asyncio.Semaphore(int(MODEL_DEFAULTS["decode_concurrency"]))

    async def reconfigure(self, user_config: dict) -> None:
        unknown = set(user_config or {}) - set(MODEL_DEFAULTS)
        if unknown:
            raise ValueError(f"LayoutModel user_config: unknown keys {sorted(unknown)}; allowed {sorted(MODEL_DEFAULTS)}")
        self.settings = dict(MODEL_DEFAULTS, **(user_config or {}))
        self._batched.set_max_batch_size(int(self.settings["max_batch_size"]))
        self._batched.set_batch_wait_timeout_s(float(self.settings["batch_wait_timeout_s"]))
        if self.settings.get("torch_threads"):
            import torch
            torch.set_num_threads(int(self.settings["torch_threads"]))
        self._decoding = asyncio.Semaphore(int(self.settings["decode_concurrency"]))
        if self._reload_task is None and self.state_dir:
            self._reload_task = asyncio.get_running_loop().create_task(self._follow_assignment())

    async def _follow_assignment(self) -> None:
        """Load the artifact a rollout assigns to this slot (every replica follows the state file)."""
        while True:
            await asyncio.sleep(float(self.settings["reload_poll_s"]))
            want = read_assignment(self.state_dir, self.slot)
            if want and resolve_path(want) != self.core.artifact_dir:
                try:
                    await asyncio.to_thread(self.core.load, want)  # requests keep the old one meanwhile
                    self.load_error = None
                except Exception as e:  # noqa: BLE001
                    self.load_error = f"{want}: {type(e).__name__}: {e}"
                    self.load_failed_at = time.time()
                    logger.error("slot %s: could not load %s", self.slot, self.load_error)
                    await asyncio.sleep(5.0)
            elif self.load_error is not None:
                self.load_error = None  # the assignment that failed was withdrawn: nothing is wrong now

    def check_health(self) -> None:
        if self.core.predictor is None:
            raise RuntimeError("no model loaded")

    def info(self) -> dict:
        return {"slot": self.slot, "model": self.core.model_id, "artifact": self.core.artifact_dir,
                "max_elements": self.core.max_elements, **self.core.decoder,
                "loaded_at": self.core.loaded_at, "load_error": self.load_error,
                "load_failed_at": self.load_failed_at, "replica": replica_id(),
                "pid": os.getpid(), "settings": self.settings,
                "max_batch_size": self._batched._get_max_batch_size(),
                "lineage": (self.core.predictor.meta or {}).get("lineage")}  # admin view only (api.public_models)

    async def generate(self, req: dict) -> dict:
        s = self.settings
        if s["extra_latency_ms"]:
            await asyncio.sleep(float(s["extra_latency_ms"]) / 1000.0)
        if s["fail_rate"] and random.random() < float(s["fail_rate"]):
            raise InjectedFault(f"injected fault (fail_rate={s['fail_rate']})")
        if req.get("elements") and len(req["elements"]) > self.core.max_elements:
            raise ValueError(f"{len(req['elements'])} elements > cap {self.core.max_elements}")
        if req.get("image_png") is not None:
            try:
                req = {**req, "image_png": await self._shrink(req["image_png"])}
            except ImageError as e:  # the client's pixels, not the model: a 422 the router passes on
                return {"model": self.core.model_id,
                        "client_error": {"status": 422, **api.ApiError(422, "image", str(e)).body()["error"]}}
        return await self._batched(req)

    async def _shrink(self, png: bytes) -> bytes:
        """The image at the model's input size, decoded on a worker thread (Pillow releases the
        GIL while it decodes), at most `decode_concurrency` at a time."""
        m = self.core.predictor.cfg.model
        async with self._decoding:
            return await asyncio.to_thread(shrink_png, png, m.image_height, m.image_width, m.image_channels)

    @serve.batch(max_batch_size=MODEL_DEFAULTS["max_batch_size"],
                 batch_wait_timeout_s=MODEL_DEFAULTS["batch_wait_timeout_s"])
    async def _batched(self, reqs: list[dict]) -> list[Any]:
        # Generation runs on the replica's event loop on purpose. It is a Python loop of small
        # torch ops that holds the GIL most of the time; on a worker thread it starved this loop,
        # requests reached the batch queue one by one and 80% of batches at 16 concurrent clients
        # had size 1. Blocking the loop for one batch lets every request that arrived meanwhile
        # join the next one (bench/serve_latency.py: 2x requests/s at 16 concurrent).
        return self.core.predict_many(reqs)

    async def __call__(self, request) -> Any:
        if isinstance(request, dict):  # from the Router
            result = await self.generate(request)
            if isinstance(result, Exception):
                raise result
            return result
        # Direct HTTP (no router).
        limits = api.Limits(max_elements=self.core.max_elements, decode_images=False)  # generate decodes
        try:
            body = await api.read_body_limited(request, limits.max_body_bytes)
            req = api.parse_layout_request(body, request.headers.get("content-type"), limits)
        except api.ApiError as e:
            return JSONResponse(e.body(), status_code=e.status)
        result = await self.generate(req.to_dict())
        if isinstance(result, dict) and "client_error" in result:
            err = result["client_error"]
            return JSONResponse({"error": {"field": err["field"], "message": err["message"]}},
                                status_code=err["status"])
        if isinstance(result, Exception):
            return JSONResponse({"error": {"field": "", "message": f"model error: {result}"}}, status_code=500)
        return JSONResponse({"version": result["model"], "slot": self.slot, "layouts": result["layouts"]},
                            headers={"X-Layoutray-Version": result["model"], "X-Layoutray-Slot": self.slot})
