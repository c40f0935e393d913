"""The web pages of the Serve ingress: the playground at `/` and the rollout console at `/console`.

The pages are static files in `serving/web/` (HTML, CSS and a little JavaScript, shipped in the
wheel, no build step, nothing loaded from the internet). They call the same HTTP API as any
client: the playground `POST /v1/layouts` and `GET /openapi.json` (which request fields exist,
so controls for fields a version of the API lacks are not shown); the console `GET
/admin/rollout`, `GET /admin/stats` and the rollout actions, with the admin token the operator
types in, sent only in an `Authorization` header. The pages themselves hold no data, so they are
public; everything an anonymous caller could not already read stays behind the token.

Every answer here carries a Content-Security-Policy that allows the page's own origin only (no
inline script or style, no other host, no framing): a page that handles the admin token must not
run anything it did not ship.

`version_stats` builds the body of `GET /admin/stats` (the Router serves it): per version, the
numbers of the open analysis window, the same ones the judge decides on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import FileResponse, JSONResponse

from serving.rollout import ACTIVE

WEB_DIR = Path(__file__).resolve().parent / "web"
PAGES = {"/": "index.html", "/console": "console.html"}
ASSET_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".svg": "image/svg+xml"}

CSP = "; ".join((
    "default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
    # data: and blob: for the uploaded wireframe's preview and the PNG export, both made in the page
    "img-src 'self' data: blob:", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'"))
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def asset_names(web_dir: Path = WEB_DIR) -> dict[str, Path]:
    """The files `/web/<name>` may serve: CSS, JS and SVG directly in the web directory, found
    once at start-up. A name outside this table is a 404, so no request path reaches the disk."""
    if not web_dir.is_dir():
        return {}
    return {p.name: p for p in sorted(web_dir.iterdir()) if p.is_file() and p.suffix in ASSET_TYPES}


def _not_found() -> JSONResponse:
    return JSONResponse({"error": {"field": "path", "message": "no such file"}}, status_code=404,
                        headers=SECURITY_HEADERS)


def add_routes(app: FastAPI, web_dir: Path = WEB_DIR) -> None:
    """Register the pages and their assets on the ingress app (left out of the OpenAPI document:
    they are not API operations)."""
    assets = asset_names(web_dir)

    def page_route(path: str, filename: str) -> None:
        async def page():
            return FileResponse(web_dir / filename, media_type="text/html; charset=utf-8",
                                headers=SECURITY_HEADERS)
        app.add_api_route(path, page, methods=["GET"], include_in_schema=False, name=f"page:{filename}")

    for path, filename in PAGES.items():
        page_route(path, filename)

    async def asset(name: str):
        file = assets.get(name)
        if file is None:
            return _not_found()
        return FileResponse(file, media_type=ASSET_TYPES[file.suffix], headers=SECURITY_HEADERS)

    app.add_api_route("/web/{name}", asset, methods=["GET"], include_in_schema=False, name="web-asset")


# ----------------------------------------------------------------------------- /admin/stats

MIN_RATE_AGE_S = 1.0  # a window opened a moment ago gives no rate: 3 requests in 0.1 s is not 30/s


def version_stats(windows, state, models: dict[str, Optional[str]], now: float) -> dict:
    """Body of GET /admin/stats: for the stable and the canary slot, its role, model id and
    weight, and the open analysis window's numbers (`judge.VersionWindow.summary`: requests,
    error rate, P50/P95 latency, valid share, overlap, alignment, agreement) with the request
    rate over the window's age (None while the window is younger than MIN_RATE_AGE_S).
    `windows` is the router's `judge.Windows`, `state` its `rollout.RolloutState`, `models` the
    model id each slot last reported."""
    age = max(0.0, now - windows.opened)
    versions = []
    for role, slot in (("stable", state.stable), ("canary", state.canary)):
        summary = windows.of(slot).summary()
        rate = summary["requests"] / age if age >= MIN_RATE_AGE_S else None
        versions.append({"slot": slot, "role": role, "model": models.get(slot), "weight": state.weights.get(slot, 0),
                         "rate_per_s": None if rate is None else round(rate, 3), **summary})
    return {"window": {"opened_at": windows.opened, "age_s": round(age, 1),
                       "judged": state.status in ACTIVE},
            "status": state.status, "thresholds": dict(state.thresholds, max_failed_windows=state.max_failed_windows),
            "versions": versions}
