"""What a running Ray instance costs a training loop that fills every core.

    .venv/bin/python bench/ray_presence.py [--pairs 4] [--batch-size 16] [--threads 2] [--dashboard]

A diagnostic for `train_throughput.py`'s b/a. A plain process that never imports Ray runs the
bench's bare step (`train_throughput.Bare`, the same model, optimizer and batches as its (a)) in
chunks of 30 fixed batches. Around it, in the same run:

  no Ray      3 chunks before a local Ray instance starts, 3 after it is killed;
  running     a local Ray instance with a one-worker TorchTrainer run up, the shape of (b): its
              controller and helper actors, GCS, raylet and a worker holding --threads CPUs that
              waits and computes nothing; the dashboard only with --dashboard (`layoutray
              train`'s local instance has one, `train_throughput.py`'s does not);
  stopped     the same instance with every one of its processes SIGSTOPped for one chunk.

running and stopped alternate (ABBA) so that both see the same state of this VM, whose speed
drifts by ~10% over minutes. The ratio running / stopped is what the instance's background work
costs the loop. Each chunk also records the cores the loop got and the machine's context
switches per second (/proc/stat). Linux only; the script kills only the processes it started.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402
from proc_cpu import cpu_seconds, read_stat  # noqa: E402

CHUNK_BATCHES = 30


def log(msg: str) -> None:
    print(f"[ray_presence {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- the two children


def plain_child(data: str, batch_size: int, threads: int) -> None:
    """Answer each line on stdin with the samples/s of one timed chunk of the bare step."""
    from layoutray.data.batches import iter_local_batches
    from layoutray.config import load_config
    from train_throughput import Bare

    cfg = load_config(phase="phase1", overrides=[f"training.batch_size={batch_size}"])
    it = iter_local_batches(data, "train", cfg, batch_size, train=True, seed=0, epoch=0, drop_last=True)
    batches = [b for _, b in zip(range(CHUNK_BATCHES), it)]
    bare = Bare(cfg, threads, total_steps=1_000_000)
    bare.run(batches[:3], timed=False)  # warm-up: allocator, OpenMP pool
    print("ready", flush=True)
    for _ in sys.stdin:
        t = time.perf_counter()
        bare.run(batches, timed=False)
        print(batch_size * len(batches) / (time.perf_counter() - t), flush=True)


def ray_driver(ready_file: str, threads: int, dashboard: bool) -> None:
    """A local Ray instance with a one-worker TorchTrainer run whose worker only waits."""
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from layoutray.runtime import start_local
    start_local(num_cpus=max(4, threads + 2), dashboard=dashboard, log_to_driver=False, configure_logging=False)

    def wait_forever(config: dict) -> None:
        import torch  # noqa: F401  (the worker holds what a training worker holds)
        Path(config["ready_file"]).write_text(str(os.getpid()))
        threading.Event().wait()

    TorchTrainer(wait_forever, train_loop_config={"ready_file": ready_file},
                 scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": threads}),
                 run_config=RunConfig(storage_path=str(Path(ready_file).parent / "runs"),
                                      name="ray-presence")).fit()


# ---------------------------------------------------------------------------- the controller


def proc_stat() -> tuple[list[int], int]:
    with open("/proc/stat") as f:
        lines = f.read().splitlines()
    cpu = [int(x) for x in lines[0].split()[1:]]
    ctxt = next(int(line.split()[1]) for line in lines if line.startswith("ctxt"))
    return cpu, ctxt


class Plain:
    """The plain child, driven one chunk at a time."""

    def __init__(self, data: Path, batch_size: int, threads: int):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--plain-child", str(data), "--batch-size", str(batch_size),
             "--threads", str(threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise SystemExit(f"the plain loop did not start (said {line!r}); see stderr above")

    def chunk(self, label: str) -> dict:
        cpu0, ctxt0 = proc_stat()
        own0, t0 = cpu_seconds(read_stat(self.proc.pid)), time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        rate = float(self.proc.stdout.readline())
        dt = time.perf_counter() - t0
        own = cpu_seconds(read_stat(self.proc.pid)) - own0
        cpu1, ctxt1 = proc_stat()
        busy_ticks = sum(cpu1) - sum(cpu0) - (cpu1[3] - cpu0[3]) - (cpu1[4] - cpu0[4])  # not idle, not iowait
        busy = busy_ticks / os.sysconf("SC_CLK_TCK")
        return {"condition": label, "samples_per_s": round(rate, 1),
                "loop_cores": round(own / dt, 3), "other_cores": round((busy - own) / dt, 3),
                "context_switches_per_s": round((ctxt1 - ctxt0) / dt)}

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def instance_pids(driver_pid: int) -> list[int]:
    """The driver and every process below it (GCS, raylet, its workers, the dashboard), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(read_stat(int(entry))[1])
            except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
                continue
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [driver_pid]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def signal_all(pids, sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def summary(rows: list[dict], condition: str) -> dict:
    mine = [r for r in rows if r["condition"] == condition]
    med = lambda key: round(statistics.median(r[key] for r in mine), 3)  # noqa: E731
    return {"samples_per_s": [r["samples_per_s"] for r in mine],
            "loop_cores_median": med("loop_cores"), "other_cores_median": med("other_cores"),
            "context_switches_per_s_median": med("context_switches_per_s")}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=4, help="running/stopped pairs (ABBA order)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="torch threads of the loop")
    ap.add_argument("--dashboard", action="store_true", help="start the instance with its dashboard")
    ap.add_argument("--examples", type=int, default=600, help="synthetic sections (>= 30 batches)")
    ap.add_argument("--settle", type=float, default=10.0,
                    help="seconds after the worker is up before measuring (start-up work ends)")
    ap.add_argument("--plain-child", metavar="DATA", help=argparse.SUPPRESS)
    ap.add_argument("--ray-driver", metavar="READY_FILE", help=argparse.SUPPRESS)
    add_result_args(ap)
    return ap.parse_args()


def start_instance(args, tmp: Path) -> subprocess.Popen:
    """The Ray driver, in a process of its own."""
    return subprocess.Popen([sys.executable, __file__, "--ray-driver", str(tmp / "worker_ready"), "--threads",
                             str(args.threads)] + (["--dashboard"] if args.dashboard else []),
                            stdout=subprocess.DEVNULL, stderr=open(tmp / "driver.log", "w"))


def wait_ready(driver: subprocess.Popen, tmp: Path, settle: float) -> None:
    """Until the driver's worker is up, then `settle` seconds more."""
    deadline = time.monotonic() + 180
    while not (tmp / "worker_ready").exists():
        if driver.poll() is not None or time.monotonic() > deadline:
            tail = (tmp / "driver.log").read_text()[-2000:]
            raise SystemExit(f"the Ray instance did not come up:\n{tail}")
        time.sleep(0.2)
    time.sleep(settle)  # Ray's start-up work (worker prestart, dataset and actor set-up) ends


def chunks_beside_instance(plain: Plain, args, tmp: Path, res: dict) -> list[dict]:
    """Chunks with the instance running and SIGSTOPped, ABBA; the instance is killed after."""
    driver = start_instance(args, tmp)
    pids: list[int] = []
    rows = []
    try:
        wait_ready(driver, tmp, args.settle)
        pids = instance_pids(driver.pid)
        res["instance_processes"] = len(pids)
        log(f"Ray up: {len(pids)} processes")
        for cond in (["running", "stopped", "stopped", "running"] * args.pairs)[: 2 * args.pairs]:
            if cond == "stopped":
                signal_all(pids, signal.SIGSTOP)
            try:
                rows.append(plain.chunk(cond))
            finally:
                if cond == "stopped":
                    signal_all(pids, signal.SIGCONT)
            log(f"{cond}: {rows[-1]['samples_per_s']}")
    finally:
        alive = set(pids) | set(instance_pids(driver.pid) if driver.poll() is None else [])
        signal_all(alive, signal.SIGCONT)  # never leave a stopped process behind
        signal_all(alive, signal.SIGKILL)
        driver.wait(timeout=60)
    return rows


def main() -> None:
    args = parse_args()
    if args.plain_child:
        return plain_child(args.plain_child, args.batch_size, args.threads)
    if args.ray_driver:
        return ray_driver(args.ray_driver, args.threads, args.dashboard)

    out = reserve_stdout()
    run = BenchRun("ray_presence", tag=args.tag, results_dir=args.results_dir)
    config = {**args_config(args, drop=("tag", "results_dir", "plain_child", "ray_driver")),
              "cpus": os.cpu_count(), "chunk_batches": CHUNK_BATCHES}
    res = {"what": "cost of a running Ray instance (one idle TorchTrainer worker) to a plain training loop"}
    with tempfile.TemporaryDirectory(prefix="layoutray-ray-presence-") as tmp:
        tmp = Path(tmp)
        from layoutray.data.synth import synthesize
        synthesize(tmp / "sections", args.examples, seed=0)
        plain = Plain(tmp / "sections", args.batch_size, args.threads)
        rows = [plain.chunk("no_ray_before") for _ in range(3)]
        log(f"no Ray: {[r['samples_per_s'] for r in rows]}")
        rows += chunks_beside_instance(plain, args, tmp, res)
        rows += [plain.chunk("no_ray_after") for _ in range(3)]
        plain.close()

    res["chunks"] = rows
    res.update({c: summary(rows, c) for c in ("no_ray_before", "running", "stopped", "no_ray_after")})
    ratios = [a / b for a, b in zip(res["running"]["samples_per_s"], res["stopped"]["samples_per_s"])]
    res["ratio_running_over_stopped_per_pair"] = [round(r, 3) for r in ratios]
    res["ratio_running_over_stopped_median"] = round(statistics.median(ratios), 3)
    run.finish(out, config=config, figures=res)


if __name__ == "__main__":
    main()
