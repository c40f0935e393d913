"""Slow clients and huge images against a live Serve app: bench/results/slow_clients.json.

    python bench/slow_clients.py                    # a local Ray, tiny model, nginx from deploy/nginx/

Slow clients: `--stalled` connections (300) send a request head and one byte of a body that never
comes, from ten loopback source addresses (127.0.0.2-11, 30 each: under nginx's per-address
limit, so nginx holds them all). While they are open, a probe asks `/healthz` and posts a valid
layout request every `--probe-every-s`; the figures are the probes' latencies and failures,
measured twice in one run: straight at Serve's HTTP proxy (the baseline) and through nginx
(`serving/proxy.py`). The goal is every probe answered within 2 s through nginx.

Huge images: `--images` (16) concurrent requests, each a maximum-size PNG (4000 x 4000 RGBA =
16 megapixels, the default pixel cap), sent to the model slot; the figures are the model replica's
RSS before, at its peak and after, and `/healthz` latency meanwhile (the router must not decode),
for the replica's default `decode_concurrency` and for 16 (no bound) as the baseline.
"""

from __future__ import annotations

import argparse
import base64
import io
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BODY = {"section_type": "hero", "elements": ["heading", "paragraph", "button"]}
STALLED_SOURCES = tuple(f"127.0.0.{i}" for i in range(2, 12))  # not 127.0.0.1: the probes' address
GOAL_S = 2.0


# ----------------------------------------------------------------------------- slow clients


def stall_connections(port: int, n: int, sources=STALLED_SOURCES, path: str = "/v1/layouts") -> list:
    """n sockets to 127.0.0.1:port, each with a complete request head announcing a 4 KiB JSON body
    and one byte of it sent; the caller closes them. Source addresses round-robin over `sources`."""
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: 4096\r\n\r\n{{").encode()
    socks = []
    for i in range(n):
        s = socket.socket()
        s.bind((sources[i % len(sources)], 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.sendall(head)
        socks.append(s)
    return socks


def close_all(socks: list) -> None:
    for s in socks:
        try:
            s.close()
        except OSError:
            pass


def answered(s: socket.socket) -> bytes:
    """What the server sent on a stalled connection so far (b"" if nothing, None if closed)."""
    s.setblocking(False)
    try:
        data = s.recv(4096)
        return data if data else None
    except BlockingIOError:
        return b""
    except OSError:
        return None
    finally:
        s.setblocking(True)


def probe_once(url: str, timeout: float = 10.0) -> dict:
    """One /healthz and one valid layout request: status and seconds of each (status 0: none)."""
    import requests

    out = {}
    for name, call in (("healthz", lambda: requests.get(url + "/healthz", timeout=timeout)),
                       ("layout", lambda: requests.post(url + "/v1/layouts", json=BODY, timeout=timeout))):
        t0 = time.perf_counter()
        try:
            status = call().status_code
        except requests.RequestException:
            status = 0
        out[name] = (status, time.perf_counter() - t0)
    return out


def probe_for(url: str, seconds: float, every_s: float, timeout: float = 10.0) -> list[dict]:
    """Probes from a few threads (a stuck probe must not delay the next one) for `seconds`."""
    results, lock, stop = [], threading.Lock(), time.monotonic() + seconds

    def run():
        while time.monotonic() < stop:
            r = probe_once(url, timeout)
            with lock:
                results.append(r)
            time.sleep(every_s)  # pacing of the probe itself, not synchronisation
    threads = [threading.Thread(target=run, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + seconds + 5)
    return results


def summarise(probes: list[dict]) -> dict:
    out = {}
    for name in ("healthz", "layout"):
        secs = [p[name][1] for p in probes]
        ok = [s for p, s in zip(probes, secs) if p[name][0] == 200]
        out[name] = {"probes": len(secs), "ok": len(ok),
                     "within_goal": sum(1 for p, s in zip(probes, secs) if p[name][0] == 200 and s <= GOAL_S),
                     "p50_s": round(statistics.median(secs), 3) if secs else None,
                     "max_s": round(max(secs), 3) if secs else None}
    return out


# ----------------------------------------------------------------------------- huge images


def huge_png(width: int = 4000, height: int = 4000) -> bytes:
    """A wireframe-like RGBA PNG (boxes on white): a few kilobytes, width x height pixels."""
    from PIL import Image, ImageDraw

    img = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    d = ImageDraw.Draw(img)
    for i in range(12):
        x, y = (i % 4) * width // 4 + 40, (i // 4) * height // 3 + 40
        d.rectangle([x, y, x + width // 5, y + height // 5], outline=(0, 0, 0, 255), width=12)
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=9)
    return buf.getvalue()


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no VmRSS for pid {pid}")


def image_burst(url: str, pid: int, png: bytes, n: int, settle_s: float = 3.0) -> dict:
    """n concurrent requests with `png`; the replica's RSS sampled every 20 ms; /healthz timed
    meanwhile. RSS `after` is taken `settle_s` after the last answer."""
    import requests

    body = {"image": base64.b64encode(png).decode(), "elements": ["heading", "button"]}
    before = rss_mib(pid)
    peak, done, health = [before], threading.Event(), []

    def sample():
        while not done.is_set():
            peak.append(rss_mib(pid))
            time.sleep(0.02)  # sampling period

    def health_probe():
        while not done.is_set():
            t0 = time.perf_counter()
            code = requests.get(url + "/healthz", timeout=30).status_code
            health.append((code, time.perf_counter() - t0))
            time.sleep(0.1)

    threads = [threading.Thread(target=f, daemon=True) for f in (sample, health_probe)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(n) as ex:
        codes = list(ex.map(lambda _: requests.post(url + "/v1/layouts", json=body, timeout=120).status_code,
                            range(n)))
    wall = time.perf_counter() - t0
    done.set()
    for t in threads:
        t.join(35)
    time.sleep(settle_s)  # let the replica finish freeing before the "after" reading
    return {"codes": sorted(set(codes)), "ok": codes.count(200), "seconds": round(wall, 2),
            "rss_before_mib": round(before, 1), "rss_peak_mib": round(max(peak), 1),
            "rss_after_mib": round(rss_mib(pid), 1),
            "healthz_max_s": round(max((s for _, s in health), default=0.0), 3),
            "healthz_ok": sum(1 for c, _ in health if c == 200), "healthz_probes": len(health)}


# ----------------------------------------------------------------------------- the run


def _slow_client_phase(name: str, url: str, port: int, n: int, hold_s: float, every_s: float) -> dict:
    socks = stall_connections(port, n)
    try:
        probes = probe_for(url, hold_s, every_s)
        still_open = sum(1 for s in socks if answered(s) == b"")
    finally:
        close_all(socks)
    return {"target": name, "stalled": n, "still_open_at_end": still_open, **summarise(probes)}


def main() -> int:
    sys.path.insert(0, str(REPO / "bench"))
    sys.path.insert(0, str(REPO))
    sys.path.insert(0, str(REPO / "tests"))
    from jsonout import BenchRun, add_result_args, reserve_stdout

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stalled", type=int, default=300)
    ap.add_argument("--hold-s", type=float, default=20.0, help="how long the stalled connections stay open")
    ap.add_argument("--probe-every-s", type=float, default=0.5)
    ap.add_argument("--images", type=int, default=16)
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("slow_clients", tag=args.tag, results_dir=args.results_dir)

    import requests
    from ray import serve

    from conftest import free_port, tiny_serving_artifact
    from layoutray.runtime import start_local
    from serving.deploy import app_config, deploy
    from serving.proxy import Proxy

    root = Path(tempfile.mkdtemp(prefix="bench-slow-"))
    model = tiny_serving_artifact(root / "model", seed=1)
    start_local(num_cpus=4, log_to_driver=False, configure_logging=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port, "request_timeout_s": 60, "keep_alive_timeout_s": 75})
    args_ = {"stable_model": model, "canary_model": model, "state_dir": str(root / "state"), "model_num_cpus": 0.5}
    (root / "token").write_text("bench-token\n")
    router = {"admin_token_file": str(root / "token")}
    deploy([app_config("layoutray", "/", args_, router=router)])
    url = f"http://127.0.0.1:{port}"
    figures: dict = {"slow_clients": [], "huge_images": []}
    with Proxy(f"127.0.0.1:{free_port()}", f"127.0.0.1:{port}") as proxy:
        purl = "http://" + proxy.listen
        for name, u, p in (("serve", url, port), ("nginx", purl, int(proxy.listen.rsplit(":", 1)[1]))):
            figures["slow_clients"].append(_slow_client_phase(name, u, p, args.stalled, args.hold_s,
                                                              args.probe_every_s))
            # Serve may still hold the baseline's requests: wait until it answers again.
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and probe_once(url)["healthz"][0] != 200:
                time.sleep(1)
    png = huge_png()
    admin = {"Authorization": "Bearer bench-token"}
    for conc in (16, None):  # baseline first: no bound, then the default
        blue = {} if conc is None else {"decode_concurrency": conc}
        deploy([app_config("layoutray", "/", args_, router=router, blue=blue)])
        pid = requests.get(url + "/v1/models", headers=admin, timeout=30).json()["versions"][0]["pid"]
        fig = image_burst(url, pid, png, args.images)
        figures["huge_images"].append({"decode_concurrency": conc or "default", "png_bytes": len(png),
                                       "pixels": 4000 * 4000, **fig})
    serve.shutdown()
    run.finish(out, config={"stalled": args.stalled, "hold_s": args.hold_s, "probe_every_s": args.probe_every_s,
                            "images": args.images, "goal_s": GOAL_S, "model": "tiny random-init (tests)",
                            "nginx_conf": "deploy/nginx/nginx.conf"}, figures=figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
