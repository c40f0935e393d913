"""What an idle Ray actor costs the machine: wake-ups and CPU per second, per thread.

    .venv/bin/python bench/idle_actors.py [--actors 4] [--window 10]

A diagnostic for the train benchmark's gap (b / a): a Ray Train run keeps about nine actors
alive beside its worker, and on two cores filled by torch threads every wake-up of theirs
preempts a training thread. Prints one JSON document, also written to
bench/results/idle_actors.json (bench/jsonout.py): for `--actors` idle actors (num_cpus=0,
nothing running) the context switches and CPU time per second, per actor and by thread name,
read from /proc over `--window` seconds; the baseline in the same run is a plain idle Python
process (`time.sleep`), measured over the same window. Linux only.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def thread_counters(pid: int) -> dict[str, tuple[str, int, int]]:
    """tid -> (thread name, context switches so far, CPU ticks so far)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        base = f"/proc/{pid}/task/{tid}"
        try:
            with open(f"{base}/comm") as f:
                name = f.read().strip()
            with open(f"{base}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"{base}/stat") as f:
                stat = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # the thread exited between listdir and open
            continue
        switches = int(fields["voluntary_ctxt_switches"]) + int(fields["nonvoluntary_ctxt_switches"])
        out[tid] = (name, switches, int(stat[11]) + int(stat[12]))  # utime + stime
    return out


def measure(pids: list[int], window: float) -> dict:
    before = {p: thread_counters(p) for p in pids}
    time.sleep(window)  # the measurement window itself, not a synchronisation
    after = {p: thread_counters(p) for p in pids}
    wakeups, ticks = collections.Counter(), collections.Counter()
    for p in pids:
        for tid, (name, switches, cpu) in after[p].items():
            if tid in before[p]:
                wakeups[name] += (switches - before[p][tid][1]) / window / len(pids)
                ticks[name] += (cpu - before[p][tid][2]) / window / len(pids)
    return {
        "wakeups_per_s": round(sum(wakeups.values()), 1),
        "cpu_ms_per_s": round(1000 * sum(ticks.values()) / TICKS, 2),
        "threads": len(after[pids[0]]),
        "wakeups_per_s_by_thread": {k: round(v, 1) for k, v in wakeups.most_common(8)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--actors", type=int, default=4)
    ap.add_argument("--window", type=float, default=10.0, help="seconds to count over")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("idle_actors", tag=args.tag, results_dir=args.results_dir)

    import ray

    from layoutray.runtime import start_local

    @ray.remote(num_cpus=0)
    class Idle:
        def pid(self) -> int:
            return os.getpid()

    start_local(num_cpus=2, dashboard=False)  # a private instance, whatever RAY_ADDRESS says
    actors = [Idle.remote() for _ in range(args.actors)]
    pids = ray.get([a.pid.remote() for a in actors])
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"])
    try:
        per_actor = measure(pids, args.window)
        baseline = measure([plain.pid], args.window)
    finally:
        plain.kill()
        ray.shutdown()
    run.finish(out, config=args_config(args), figures={
        "per_idle_actor": per_actor,
        "baseline_plain_python": baseline,
        "idle_actor_cpu_share_of_one_core": round(per_actor["cpu_ms_per_s"] / 1000, 4),
    })


if __name__ == "__main__":
    main()
