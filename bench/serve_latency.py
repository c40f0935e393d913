"""Serving latency and throughput, all in one run; prints one JSON document, also written to
bench/results/serve_latency.json (bench/jsonout.py).

For concurrency 1, 4 and 16, with and without batching (LayoutModel max_batch_size 16 vs 1,
changed live through user_config), it measures P50/P95/P99 latency and requests/s of
  (a) router:     POST /v1/layouts through the Router over HTTP (the product path),
  (b) direct:     POST /direct to a LayoutModel deployment over HTTP, no router,
  (c) in_process: the same model called in this process on the same inputs
                  (no batching: one predict call per request from c threads;
                   batching: the c concurrent requests as one predict call).
and checks the serving goals:
  - P95 at 16 concurrent <= 2x the single-request P50 (router, batching on),
  - the router adds <= 10% to P50 over (b) (batching on; one client alternating router and
    direct requests, so both P50s come from the same moments of a noisy machine),
  - batching raises requests/s at 16 concurrent by >= 2x (router).
It also charges the CPU time of each process on the router path (proxy, router, model, this
client) to the requests served at 16 concurrent: when the cores are saturated, that sum bounds
requests/s.

    python bench/serve_latency.py [--model DIR] [--seconds 5] [--direct-ingress] [--elements a,b,...]

--direct-ingress turns on Ray Serve's experimental direct ingress (Ray 2.60,
RAY_SERVE_ENABLE_DIRECT_INGRESS=1): each application's ingress replica runs its own HTTP server on
a port of its own (30000-31000), and the clients here call those ports instead of the proxy.

Without --model it uses runs/quickstart/model when present, else exports a randomly initialised
Phase 1 model (generation length is fixed by the request's element list, so timing does not
depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402

BODY = {"section_type": "hero", "elements": ["heading", "subheading", "paragraph", "button", "image"],
        "canvas": {"width": 1440, "height": 800}, "samples": 1, "temperature": 0.0, "seed": 0}
CONCURRENCY = (1, 4, 16)


def _pct(values, q):
    from layoutray.eval.stats import percentile
    v = percentile(values, q)
    return None if v is None else round(v, 2)


def summarize(lat_ms: list[float], wall_s: float, errors: int) -> dict:
    return {"requests": len(lat_ms), "errors": errors, "p50_ms": _pct(lat_ms, 50), "p95_ms": _pct(lat_ms, 95),
            "p99_ms": _pct(lat_ms, 99), "rps": round(len(lat_ms) / wall_s, 2) if wall_s else None}


def run_closed_loop(call, concurrency: int, seconds: float, warmup_s: float = 1.0) -> dict:
    """`concurrency` clients, each calling `call()` back to back; latencies after the warm-up."""
    lat, errors, lock = [], [0], threading.Lock()
    start = time.perf_counter()
    t_measure, t_end = start + warmup_s, start + warmup_s + seconds

    def client():
        while True:
            t0 = time.perf_counter()
            if t0 >= t_end:
                return
            ok = call()
            t1 = time.perf_counter()
            if t0 >= t_measure:
                with lock:
                    if ok:
                        lat.append((t1 - t0) * 1000.0)
                    else:
                        errors[0] += 1

    with ThreadPoolExecutor(concurrency) as ex:
        for f in [ex.submit(client) for _ in range(concurrency)]:
            f.result()
    return summarize(lat, seconds, errors[0])


def paired_single(call_a, call_b, seconds: float, warmup_s: float = 1.0) -> dict:
    """One client alternating a and b, so both see the same machine at the same moments; the
    router's overhead is the difference of these two P50s, not of two runs taken apart in time."""
    lat: dict = {"a": [], "b": []}
    start = time.perf_counter()
    while time.perf_counter() < start + warmup_s + seconds:
        for key, call in (("a", call_a), ("b", call_b)):
            t0 = time.perf_counter()
            ok = call()
            if ok and t0 >= start + warmup_s:
                lat[key].append((time.perf_counter() - t0) * 1000.0)
    return {k: {"requests": len(v), "p50_ms": _pct(v, 50), "p95_ms": _pct(v, 95)} for k, v in lat.items()}


def _serve_processes() -> dict[str, list[int]]:
    """pids of the processes on the request path, by role (Linux /proc; empty elsewhere)."""
    roles = {"proxy": "ray::ProxyActor", "router": "ServeReplica:layoutray:Router",
             "model": "ServeReplica:layoutray:LayoutModel_blue"}
    found: dict[str, list[int]] = {r: [] for r in roles}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        for role, pat in roles.items():
            if pat in cmd:
                found[role].append(int(d.name))
    found["client (this benchmark)"] = [os.getpid()]
    return found


def _cpu_seconds(pids: list[int]) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12])) / tick  # utime + stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def cpu_per_request(call, concurrency: int, seconds: float) -> dict:
    """Run the closed loop once more and charge the CPU time of each process on the path to the
    requests it served: where a request's cost goes when the machine is saturated."""
    procs = _serve_processes()
    before = {r: _cpu_seconds(p) for r, p in procs.items()}
    t0 = time.perf_counter()
    res = run_closed_loop(call, concurrency, seconds, warmup_s=0.0)
    wall = time.perf_counter() - t0
    n = max(1, res["requests"])
    per = {r: round((_cpu_seconds(p) - before[r]) * 1000.0 / n, 2) for r, p in procs.items()}
    return {"concurrency": concurrency, "requests": res["requests"], "rps": res["rps"],
            "cpu_ms_per_request": per, "cpu_ms_per_request_total": round(sum(per.values()), 2),
            "cores": os.cpu_count(), "wall_s": round(wall, 2)}


def http_caller(url: str):
    import requests
    local = threading.local()
    data = json.dumps(BODY)

    def call():
        s = getattr(local, "s", None) or requests.Session()
        local.s = s
        r = s.post(url, data=data, headers={"Content-Type": "application/json"}, timeout=120)
        return r.status_code == 200
    return call


def in_process(model_dir: str, concurrency: int, batching: bool, seconds: float) -> dict:
    from serving.api import Limits, parse_layout_request
    from serving.model_server import ModelCore

    core = in_process.cache.get(model_dir) or ModelCore(model_dir)
    in_process.cache[model_dir] = core
    req = parse_layout_request(json.dumps(BODY).encode(), "application/json",
                               Limits(max_elements=core.max_elements)).to_dict()
    if not batching:
        return run_closed_loop(lambda: not isinstance(core.predict_many([req])[0], Exception), concurrency, seconds)
    # batching: the c concurrent requests arrive together and are answered by one call
    lat, t_end, t0_all = [], time.perf_counter() + 1.0 + seconds, None
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        out = core.predict_many([req] * concurrency)
        dt = (time.perf_counter() - t0) * 1000.0
        if t_end - time.perf_counter() <= seconds and not any(isinstance(o, Exception) for o in out):
            t0_all = t0_all or t0
            lat.extend([dt] * concurrency)
    return summarize(lat, time.perf_counter() - (t0_all or time.perf_counter()), 0)


in_process.cache = {}


def ensure_model(path: str | None) -> tuple[str, str]:
    if path:
        return str(Path(path).resolve()), "given"
    default = REPO / "runs" / "quickstart" / "model"
    if default.is_dir():
        return str(default), "runs/quickstart/model"
    import torch

    from layoutray.model.artifact import export_artifact
    from layoutray.config import load_config
    from layoutray.model.network import build_model

    cfg = load_config(phase="phase1")
    torch.manual_seed(0)
    out = Path(tempfile.mkdtemp(prefix="layoutray-bench-")) / "model"
    export_artifact(build_model(cfg), cfg, str(out), {"name": "bench-random-phase1"})
    return str(out), "random-init phase1 (no trained model found)"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model artifact dir")
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per configuration")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--batch-wait-s", type=float, default=None,
                    help="LayoutModel batch_wait_timeout_s (default: the deployment's default)")
    ap.add_argument("--direct-ingress", action="store_true",
                    help="Ray Serve's experimental direct ingress: no proxy on the measured paths")
    ap.add_argument("--elements", default=",".join(BODY["elements"]),
                    help="the request's element types, comma-separated (generation length, and so the "
                         "model's share of each request, grows with their number; default: %(default)s)")
    add_result_args(ap)
    return ap.parse_args()


def free_port() -> int:
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def start_serve() -> int:
    """A private local Ray instance with Serve's proxy on a free loopback port; returns the port."""
    from ray import serve

    from layoutray.runtime import start_local
    start_local(num_cpus=4, dashboard=False, log_to_driver=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 120})
    return port


def make_apply(a: argparse.Namespace, model_dir: str, port: int):
    """`apply(max_batch)`: (re)deploy the router app and the direct app with that batch size, live
    through user_config; returns the URLs of the two measured paths."""
    from serving.deploy import app_config, deploy, direct_ingress_url

    state_dir = tempfile.mkdtemp(prefix="layoutray-bench-state-")

    def apply(max_batch: int) -> dict:
        mcfg = {"max_batch_size": max_batch, "torch_threads": a.torch_threads}
        if a.batch_wait_s is not None:
            mcfg["batch_wait_timeout_s"] = a.batch_wait_s
        deploy([app_config("layoutray", "/", {"stable_model": model_dir, "canary_model": model_dir,
                                              "state_dir": state_dir, "model_num_cpus": 0.5},
                           router={"weights": {"blue": 100, "green": 0}}, blue=mcfg, green=mcfg),
                {"name": "direct", "route_prefix": "/direct", "import_path": "serving.app:build_direct_app",
                 "args": {"model": model_dir, "num_cpus": 0.5},
                 "deployments": [{"name": "LayoutModel_direct", "user_config": mcfg}]}])
        if not a.direct_ingress:
            return {"router": f"http://127.0.0.1:{port}/v1/layouts", "direct": f"http://127.0.0.1:{port}/direct"}
        return {"router": direct_ingress_url("layoutray", port) + "/v1/layouts",
                "direct": direct_ingress_url("direct", port) + "/direct"}
    return apply


def measure_all(apply, model_dir: str, seconds: float) -> tuple[dict, dict, dict, dict]:
    """Every path at every concurrency, batching on then off; the paired single-client run and
    the CPU per request at 16 concurrent with batching on. Returns (results, paired, cpu, urls)."""
    results: dict = {"router": {}, "direct": {}, "in_process": {}}
    for batching in (True, False):
        key = "batching" if batching else "no_batching"
        urls = apply(16 if batching else 1)
        for name, url in urls.items():
            call = http_caller(url)
            for _ in range(5):
                assert call(), f"{name} does not answer"
            results[name][key] = {str(c): run_closed_loop(call, c, seconds) for c in CONCURRENCY}
        results["in_process"][key] = {str(c): in_process(model_dir, c, batching, seconds) for c in CONCURRENCY}
        if batching:
            paired = paired_single(http_caller(urls["router"]), http_caller(urls["direct"]), 2 * seconds)
            cpu = cpu_per_request(http_caller(urls["router"]), 16, seconds)
    return results, paired, cpu, urls


def goals(results: dict, paired: dict) -> dict:
    """The issue's three serving goals, each with its figures and whether it is met."""
    r = results["router"]
    p95_16, p50_1 = r["batching"]["16"]["p95_ms"], r["batching"]["1"]["p50_ms"]
    added = paired["a"]["p50_ms"] - paired["b"]["p50_ms"]
    overhead = added / paired["b"]["p50_ms"]
    speedup = r["batching"]["16"]["rps"] / max(1e-9, r["no_batching"]["16"]["rps"])
    return {
        "p95_at_16_vs_2x_single_p50": {"p95_ms": p95_16, "limit_ms": round(2 * p50_1, 2), "met": p95_16 <= 2 * p50_1},
        "router_p50_overhead_vs_direct": {"overhead": round(overhead, 4), "added_ms": round(added, 2),
                                          "router_p50_ms": paired["a"]["p50_ms"], "direct_p50_ms": paired["b"]["p50_ms"],
                                          "measured": "one client alternating router and direct requests",
                                          "limit": 0.10, "met": overhead <= 0.10},
        "batching_rps_speedup_at_16": {"speedup": round(speedup, 2), "limit": 2.0, "met": speedup >= 2.0},
    }


def main() -> int:
    a = parse_args()
    BODY["elements"] = [e.strip() for e in a.elements.split(",") if e.strip()]

    os.environ.pop("RAY_ADDRESS", None)
    # Read by Serve's controller and replicas, which inherit this process's environment.
    os.environ["RAY_SERVE_ENABLE_DIRECT_INGRESS"] = "1" if a.direct_ingress else "0"
    # Nothing is in flight at the end; the 30-s default drain would only add to the run.
    os.environ.setdefault("RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S", "1")
    json_out = reserve_stdout()
    run = BenchRun("serve_latency", tag=a.tag, results_dir=a.results_dir)
    import ray
    import torch
    from ray import serve

    model_dir, model_src = ensure_model(a.model)
    port = start_serve()
    torch.set_num_threads(a.torch_threads)
    results, paired, cpu, urls = measure_all(make_apply(a, model_dir, port), model_dir, a.seconds)
    figures = {"results": results, "paired_single_router_vs_direct": paired,
               "router_path_cpu_at_16": cpu, "goals": goals(results, paired)}
    config = {**args_config(a), "python": platform.python_version(), "ray": ray.__version__,
              "torch": torch.__version__, "model": {"dir": model_dir, "source": model_src}, "request": BODY,
              "ingress": ("direct (RAY_SERVE_ENABLE_DIRECT_INGRESS=1: " + urls["router"] + ", " + urls["direct"] + ")")
              if a.direct_ingress else "proxy"}
    serve.shutdown()
    ray.shutdown()
    run.finish(json_out, config=config, figures=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
