"""Shared pieces of the end-to-end serving tests: a live Serve application on 127.0.0.1 deployed
from a config (`serve_app`, `ServeApp`) and a background load generator (`Load`).

Configuration changes go through declarative deploys (what `serve deploy` does), so a user_config
change reaches `reconfigure` on the running replicas instead of restarting them.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional

import requests

from conftest import free_port, tiny_serving_artifact, wait_for

BODY = {"section_type": "hero", "elements": ["heading", "paragraph", "button"],
        "canvas": {"width": 1440, "height": 800}}
_OWN_TOKEN = object()  # admin(): send the app's own token unless told otherwise


def poll(fn, timeout_s: float, what: str, every: float = 0.1):
    """Call fn until it returns something truthy; fail with `what` at the deadline."""
    return wait_for(fn, timeout_s, what, poll=every)


class ServeApp:
    """The layoutray application as deployed by a test, and the HTTP calls tests make to it."""

    def __init__(self, url: str, root: Path, token: str, args: dict, router: Optional[dict] = None,
                 model: Optional[dict] = None):
        self.url, self.root, self.token, self.args = url, Path(root), token, args
        self.router = {"weights": {"blue": 100, "green": 0}, "tick_s": 0.1, "version_timeout_s": 10.0,
                       "admin_token_file": str(self.root / "token"), **(router or {})}
        self.blue = dict(model or {"max_batch_size": 8})
        self.green = dict(model or {"max_batch_size": 8})
        self.deployments: dict = {}  # extra deployment options by name (autoscaling_config, ...)

    def deploy(self, router: Optional[dict] = None, blue: Optional[dict] = None, green: Optional[dict] = None,
               deployments: Optional[dict] = None) -> None:
        from serving.deploy import app_config, deploy

        for mine, change in ((self.router, router), (self.blue, blue), (self.green, green),
                             (self.deployments, deployments)):
            mine.update(change or {})
        cfg = app_config("layoutray", "/", self.args, router=self.router, blue=self.blue, green=self.green)
        for dep in cfg["deployments"]:
            dep.update(self.deployments.get(dep["name"], {}))
        deploy([cfg])

    def post(self, body=None, headers: Optional[dict] = None, session=None, timeout: float = 60, **kw):
        h = {"Content-Type": "application/json", **(headers or {})}
        data = body if isinstance(body, (bytes, str)) else json.dumps(BODY if body is None else body)
        return (session or requests).post(self.url + "/v1/layouts", data=data, headers=h, timeout=timeout, **kw)

    def admin(self, method: str, path: str, body=None, token=_OWN_TOKEN, timeout: float = 330):
        token = self.token if token is _OWN_TOKEN else token
        h = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.request(method, self.url + "/admin/rollout" + path, json=body, headers=h, timeout=timeout)

    def models(self) -> dict:
        """The operator's view of /v1/models (artifacts, settings, load errors need the token)."""
        return requests.get(self.url + "/v1/models", headers={"Authorization": f"Bearer {self.token}"},
                            timeout=30).json()

    def state(self) -> dict:
        return self.admin("GET", "").json()["state"]

    def audit(self) -> list[dict]:
        """The whole audit log, from disk (the admin endpoint shows only its last 20 entries)."""
        path = self.root / "state" / "rollout_audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@contextmanager
def serve_app(root: Path, token: str, args: dict, router: Optional[dict] = None, model: Optional[dict] = None,
              http_options: Optional[dict] = None):
    """Serve on a free 127.0.0.1 port (Ray must be up: the `ray_local` fixture), the app deployed
    and answering /healthz; shut down afterwards. `args` are build_app's (artifacts, state dir)."""
    from ray import serve

    (Path(root) / "token").write_text(token + "\n")
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60, **(http_options or {})})
    app = ServeApp(f"http://127.0.0.1:{port}", root, token, {"state_dir": str(Path(root) / "state"), **args},
                   router=router, model=model)
    try:
        app.deploy()
        poll(lambda: requests.get(app.url + "/healthz", timeout=10).status_code == 200, 60, "healthz")
        yield app
    finally:
        serve.shutdown()


@contextmanager
def one_model_app(tmp_path_factory, name: str, token: str, model_num_cpus: float = 0.5, **kw):
    """`serve_app` with one tiny artifact in both slots, for tests that need a live app rather
    than two different models; `kw` as serve_app's (router, model, http_options)."""
    root = tmp_path_factory.mktemp(name)
    model = tiny_serving_artifact(root / "model", seed=1)
    with serve_app(root, token, {"stable_model": model, "canary_model": model, "model_num_cpus": model_num_cpus},
                   **kw) as app:
        yield app


class Answer(NamedTuple):
    status: int  # 0: no HTTP answer (connection error or client timeout)
    slot: Optional[str]  # X-Layoutray-Slot
    fallback: Optional[str]  # X-Layoutray-Fallback: the slot that failed first
    start: float  # time.time() when sent
    seconds: float
    error: str = ""


class Load:
    """Background clients posting continuously until the `with` block ends; every answer is kept
    in `results` (Answer tuples, in completion order). `bodies` are sent round-robin (default:
    BODY); `users` gives each request its own X-User-ID."""

    def __init__(self, app: ServeApp, workers: int = 4, bodies: Optional[list] = None, users: bool = False,
                 timeout: float = 60):
        self.app, self.bodies, self.users, self.timeout = app, bodies or [None], users, timeout
        self.stop_ev, self.results, self.lock = threading.Event(), [], threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(workers)]

    def _run(self, i: int) -> None:
        s = requests.Session()
        n = i
        while not self.stop_ev.is_set():
            h = {"X-User-ID": f"u{i}-{n}"} if self.users else {}
            t0 = time.time()
            try:
                r = self.app.post(self.bodies[n % len(self.bodies)], headers=h, session=s, timeout=self.timeout)
                rec = Answer(r.status_code, r.headers.get("X-Layoutray-Slot"),
                             r.headers.get("X-Layoutray-Fallback"), t0, time.time() - t0)
            except requests.RequestException as e:
                rec = Answer(0, None, None, t0, time.time() - t0, repr(e)[:200])
            n += 1
            with self.lock:
                self.results.append(rec)

    @property
    def codes(self) -> Counter:
        with self.lock:
            return Counter(r.status for r in self.results)

    def count(self) -> int:
        with self.lock:
            return len(self.results)

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop_ev.set()
        for t in self.threads:
            t.join(timeout=90)
