"""A benchmark's output: one JSON document on stdout, and the same document as a results file.

Every script in bench/ does

    ap = argparse.ArgumentParser(...)
    add_result_args(ap)                   # --tag, --results-dir
    args = ap.parse_args()
    out = reserve_stdout()                # stdout for the JSON alone (see below)
    run = BenchRun("train_throughput", tag=args.tag, results_dir=args.results_dir)
    ...                                   # measure
    run.finish(out, config={...}, figures={...})

and `finish` prints the document and writes it to `bench/results/<name>.json`:

    name      the benchmark ("train_throughput"); `tag` the variant, or null
    date      UTC, ISO 8601, when the run started; `finished` when it ended
    commit    `git rev-parse HEAD`; `dirty` true when the work tree had uncommitted changes
              (outside bench/results/)
    machine   cores (os.cpu_count), cpu (model name from /proc/cpuinfo), memory_gib, gpu (the
              torch.cuda device name, or null), loadavg_start / loadavg_end (os.getloadavg) and
              loadavg_1min_max (the highest 1-minute load seen during the run, sampled every 5 s):
              on a shared machine, a load above the core count makes every figure a lower bound;
              python, platform
    command   the argv the benchmark ran with
    config    the settings the figures depend on (the parsed arguments and derived values)
    figures   what it measured

Variants. A run with `--tag T` writes `<name>-T.json` instead of `<name>.json`, so variants of one
benchmark (e.g. train_throughput at batch 16 and 32: `--tag b16`, `--tag b32`) sit side by side;
its document says `"name": "<name>", "tag": "T"`. A rerun with the same tag replaces its file.
bench/render_docs.py renders the tables in README.md and docs/ from these files.

Where the file goes: `--results-dir DIR`, else $LAYOUTRAY_BENCH_RESULTS, else bench/results/.

stdout: Ray's raylet, Ray Train and Serve write warnings to file descriptor 1 from threads and
child processes (even with log_to_driver=False), which would break `python bench/x.py > x.json`;
`reserve_stdout` points fd 1 at stderr and keeps a file on the original stdout for the JSON.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import subprocess
import sys
import threading
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
DEFAULT_RESULTS = BENCH_DIR / "results"
ENV_RESULTS = "LAYOUTRAY_BENCH_RESULTS"
REQUIRED_KEYS = ("name", "date", "commit", "machine", "command", "config", "figures")


def reserve_stdout():
    """Point fd 1 at stderr for the rest of the process; return a file on the original stdout."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def emit(out, doc: dict) -> str:
    """Write `doc` as indented JSON to `out`; return the text written."""
    text = json.dumps(doc, indent=2) + "\n"
    out.write(text)
    out.flush()
    return text


def add_result_args(ap: argparse.ArgumentParser) -> None:
    """The options every benchmark takes for its results file."""
    ap.add_argument("--tag", default=None,
                    help="variant name: writes <name>-TAG.json instead of <name>.json")
    ap.add_argument("--results-dir", default=None,
                    help=f"where to write the results file (default: ${ENV_RESULTS}, else bench/results)")


def resolve_results_dir(given: str | os.PathLike | None = None) -> Path:
    """`given`, else $LAYOUTRAY_BENCH_RESULTS, else bench/results/."""
    return Path(given or os.environ.get(ENV_RESULTS) or DEFAULT_RESULTS)


def result_filename(name: str, tag: str | None = None) -> str:
    """`<name>.json`, or `<name>-<tag>.json` for a variant."""
    if tag and not re.fullmatch(r"[A-Za-z0-9_.+-]+", tag):
        raise ValueError(f"tag {tag!r}: use letters, digits and _ . + - only")
    return f"{name}-{tag}.json" if tag else f"{name}.json"


def git_commit(repo: Path = REPO) -> dict:
    """{"commit": HEAD or None, "dirty": bool or None} of the repository."""
    def git(*args: str) -> str | None:
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    # another benchmark's results file written before this run is not a change to what is measured
    status = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)bench/results")
    return {"commit": head, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo on Linux, else platform.processor())."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Total memory in GiB (/proc/meminfo), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2 ** 20, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def gpu_name() -> str | None:
    """The first CUDA device's name, or None (no torch, or no GPU)."""
    try:
        import torch
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - a broken CUDA set-up means no GPU for this record
        pass
    return None


def loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict:
    """What the figures were measured on (see the module docstring)."""
    return {"cores": os.cpu_count(), "cpu": cpu_model(), "memory_gib": memory_gib(), "gpu": gpu_name(),
            "loadavg_start": loadavg(), "python": platform.python_version(), "platform": platform.platform()}


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


class BenchRun:
    """One benchmark run: what it ran on, noted at the start; its results document at the end."""

    def __init__(self, name: str, tag: str | None = None, results_dir: str | os.PathLike | None = None,
                 argv: list[str] | None = None):
        self.name, self.tag = name, tag
        self.path = resolve_results_dir(results_dir) / result_filename(name, tag)
        self.date = utc_now()
        self.machine = machine_info()
        self.command = ["python", *(sys.argv if argv is None else argv)]
        self._load_max = (self.machine["loadavg_start"] or [None])[0]
        self._stop = threading.Event()
        threading.Thread(target=self._watch_load, name="loadavg-watch", daemon=True).start()

    def _watch_load(self, every: float = 5.0) -> None:
        while not self._stop.wait(every):
            now = loadavg()
            if now and (self._load_max is None or now[0] > self._load_max):
                self._load_max = now[0]

    def document(self, config: dict, figures: dict) -> dict:
        """The results document (see the module docstring)."""
        self._stop.set()
        machine = dict(self.machine, loadavg_end=loadavg(), loadavg_1min_max=self._load_max)
        return {"name": self.name, "tag": self.tag, "date": self.date, "finished": utc_now(),
                **git_commit(), "machine": machine, "command": self.command,
                "config": config, "figures": figures}

    def finish(self, out, config: dict, figures: dict) -> dict:
        """Write the document to the results file and print it to `out` (None: not printed)."""
        doc = self.document(config, figures)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.path)
        if out is not None:
            emit(out, doc)
        print(f"[{self.name}] results written to {self.path}", file=sys.stderr, flush=True)
        return doc


def write_result(name: str, config: dict, figures: dict, *, tag: str | None = None,
                 results_dir: str | os.PathLike | None = None, out=None) -> dict:
    """One call for a benchmark that did not note its start: `BenchRun(...).finish(...)`."""
    return BenchRun(name, tag=tag, results_dir=results_dir).finish(out, config, figures)


def args_config(args: argparse.Namespace, drop: tuple[str, ...] = ("tag", "results_dir")) -> dict:
    """The parsed arguments as a config dict, without the results-file options."""
    return {k: v for k, v in vars(args).items() if k not in drop}
