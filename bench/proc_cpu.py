"""Where the cores went during a run: every process's CPU time, sampled from /proc (Linux).

    sampler = ProcSampler(every=2.0).start()
    ...                                  # e.g. a Ray Train fit
    sampler.stop()
    sampler.summary(busy=lambda name: name.startswith("ray::RayTrainWorker"), min_cores=1.0)

Used by train_throughput.py to show what else ran beside the train workers: on a 2-core
machine, Ray's own processes (train controller, data split coordinators, raylet, GCS, ...)
take a share of the cores that the bare-PyTorch baseline keeps for itself. One scan of /proc
costs a few ms of this process's CPU, so sample every second or two, not faster.
"""

from __future__ import annotations

import os
import threading
import time
from collections import defaultdict
from typing import Callable

_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def stat_fields(stat: str) -> list[str]:
    """Fields of a /proc/PID/stat line after "pid (comm) ": [0] state, [1] ppid, [11] utime, [12] stime."""
    return stat[stat.rfind(")") + 2:].split()


def read_stat(pid: int) -> list[str]:
    """`stat_fields` of one process; FileNotFoundError/ProcessLookupError once it has exited."""
    with open(f"/proc/{pid}/stat") as f:
        return stat_fields(f.read())


def cpu_seconds(fields: list[str]) -> float:
    """User + system CPU seconds from `stat_fields`."""
    return (int(fields[11]) + int(fields[12])) / _HZ


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds so far: user + system) for every readable process."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                stat = f.read()
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # the process ended between listdir and open
            continue
        name = cmd or stat[stat.find("(") + 1:stat.rfind(")")]
        out[int(p)] = (name, cpu_seconds(stat_fields(stat)))
    return out


def short_name(name: str) -> str:
    """`ray::TrainController.run`, or the executable's base name (raylet, gcs_server, python ...)."""
    first = name.split()[0] if name.split() else name
    return first if first.startswith("ray::") else os.path.basename(first)


class ProcSampler:
    """Snapshots of every process's CPU seconds, taken every `every` s on a daemon thread."""

    def __init__(self, every: float = 2.0):
        self.every = every
        self.samples: list[tuple[float, dict[int, tuple[str, float]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append((time.perf_counter(), snapshot()))
            if self._stop.wait(self.every):
                self.samples.append((time.perf_counter(), snapshot()))
                return

    def start(self) -> "ProcSampler":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self, busy: Callable[[str], bool], min_cores: float, top: int = 8) -> dict:
        """Cores used per group over the intervals in which the `busy` processes together used
        at least `min_cores` (the steady training, not start-up or checkpointing).

        Groups: "busy" (the processes `busy` selects), "this_process", "ray_other" (ray::*
        actors and Ray's binaries under .../ray/...), "other".
        """
        me = os.getpid()
        totals: dict[str, float] = defaultdict(float)
        by_name: dict[str, float] = defaultdict(float)
        seconds, intervals = 0.0, 0
        for (t0, s0), (t1, s1) in zip(self.samples, self.samples[1:]):
            dt = t1 - t0
            deltas = {pid: (name, cpu - s0[pid][1]) for pid, (name, cpu) in s1.items() if pid in s0}
            if dt <= 0 or sum(d for name, d in deltas.values() if busy(name)) / dt < min_cores:
                continue
            seconds, intervals = seconds + dt, intervals + 1
            for pid, (name, d) in deltas.items():
                if busy(name):
                    group = "busy"
                elif pid == me:
                    group = "this_process"
                elif name.startswith("ray::") or "/ray/" in name:
                    group = "ray_other"
                    by_name[short_name(name)] += d
                else:
                    group = "other"
                totals[group] += d
        if not seconds:
            return {"intervals": 0, "note": f"no interval with the busy processes at >= {min_cores} cores"}
        cores = {g: round(totals.get(g, 0.0) / seconds, 3) for g in ("busy", "this_process", "ray_other", "other")}
        return {
            "intervals": intervals, "seconds": round(seconds, 1), "cores": cores,
            "cores_idle": round(max(0.0, (os.cpu_count() or 1) - sum(cores.values())), 3),
            "ray_other_top": {n: round(v / seconds, 3)
                              for n, v in sorted(by_name.items(), key=lambda kv: -kv[1])[:top]},
        }
