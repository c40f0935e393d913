"""Declarative deploys from Python (what `serve deploy` does), for tests and the benchmark.

Serve 2.60 computes a deployment's code version from the application config (import path,
runtime_env, args). A config deploy that changes only a deployment's `user_config` therefore calls
`reconfigure` on the running replicas instead of replacing them; `serve.run` from Python always
gives a new random version (replicas restart). Weight changes must go through this path.
"""

from __future__ import annotations

import time
from typing import Optional


def app_config(name: str, route_prefix: str, args: dict, router: Optional[dict] = None,
               blue: Optional[dict] = None, green: Optional[dict] = None) -> dict:
    deployments = []
    for dep, uc in (("Router", router), ("LayoutModel_blue", blue), ("LayoutModel_green", green)):
        if uc is not None:
            deployments.append({"name": dep, "user_config": uc})
    return {"name": name, "route_prefix": route_prefix, "import_path": "serving.app:build_app",
            "args": args, "deployments": deployments}


def deploy(applications: list[dict], timeout_s: float = 180.0) -> None:
    """Apply a multi-application config (replaces what is deployed) and wait until RUNNING."""
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    client = _get_global_client()
    schema = getattr(ServeDeploySchema, "model_validate", None) or ServeDeploySchema.parse_obj
    client.deploy_apps(schema({"applications": applications}))
    wait_running([a["name"] for a in applications], timeout_s)


def wait_running(names: list[str], timeout_s: float = 180.0) -> None:
    from ray import serve

    deadline = time.time() + timeout_s
    last = None
    while time.time() < deadline:
        st = serve.status()
        apps = {n: st.applications.get(n) for n in names}
        last = {n: (a.status if a else None) for n, a in apps.items()}
        deps_ok = all(a and a.status == "RUNNING" and all(d.status == "HEALTHY" for d in a.deployments.values())
                      for a in apps.values())
        if deps_ok:
            return
        if any(a and a.status in ("DEPLOY_FAILED", "UNHEALTHY") for a in apps.values()):
            msgs = {n: (a.message if a else "") for n, a in apps.items()}
            raise RuntimeError(f"deploy failed: {last} {msgs}")
        time.sleep(0.2)
    raise TimeoutError(f"applications not running after {timeout_s} s: {last}")


def direct_ingress_url(app: str, proxy_port: int, timeout_s: float = 120.0) -> str:
    """Under Serve's direct ingress (RAY_SERVE_ENABLE_DIRECT_INGRESS=1, experimental in Ray 2.60),
    the base URL of `app`'s ingress replica, which runs its own HTTP server on a port from
    30000-31000. Serve 2.60 has no public call for that port, so this asks the controller for the
    app's target groups as Serve's own tests do; until the replica's server is up, the group
    points at the proxy (`proxy_port`) instead, and this waits."""
    import ray
    from ray.serve.context import _get_global_client

    controller = _get_global_client()._controller
    deadline = time.time() + timeout_s
    ports: list = []
    while time.time() < deadline:
        groups = ray.get(controller.get_target_groups.remote(app))
        ports = [t.port for g in groups if g.protocol == "HTTP" for t in g.targets]  # a str enum
        if ports and proxy_port not in ports:
            # The server binds Serve's http_options.host, not the node's address; this is for
            # clients on the same machine (tests, the benchmark).
            return f"http://127.0.0.1:{ports[0]}"
        time.sleep(0.2)
    raise TimeoutError(f"no direct-ingress port for application {app!r} after {timeout_s:.0f} s "
                       f"(targets: {ports}); is RAY_SERVE_ENABLE_DIRECT_INGRESS=1 set where Ray started?")
