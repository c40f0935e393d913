"""Latency of generating one layout with the Phase 1 model on CPU: KV cache vs full recomputation.

    .venv/bin/python bench/infer_latency.py [--reps 40] [--naive-reps 15] [--threads 1,2]

One request = encode (wireframe image + spec) and greedy constrained decoding of 16 elements
(the spec names 16 element types, so generation always places exactly 16: 81 decoder steps).
Weights are random (latency does not depend on training). Both paths run in the same process,
interleaved round by round so machine noise (the CPU is shared) hits both alike. Prints JSON, also
written to bench/results/infer_latency.json (bench/jsonout.py).
Goals: cache >= 5x faster than recomputation; P50 <= 50 ms on a 2-core machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402

from layoutray.config import load_config  # noqa: E402
from layoutray.model.generate import generate  # noqa: E402
from layoutray.model.network import build_model, count_parameters  # noqa: E402
from layoutray.model.tokenizer import LayoutTokenizer  # noqa: E402

TYPES = ["heading", "subheading", "paragraph", "button", "link", "image", "icon", "logo",
         "navigation", "card", "input", "list", "avatar", "badge", "button", "paragraph"]


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=40, help="timed KV-cache generations per thread count")
    ap.add_argument("--naive-reps", type=int, default=15, help="timed recomputation generations")
    ap.add_argument("--threads", default="1,2")
    add_result_args(ap)
    return ap.parse_args()


def measure_threads(once, n: int, reps: int, naive_reps: int) -> dict:
    """Both paths at `n` torch threads, interleaved round by round."""
    torch.set_num_threads(n)
    for _ in range(3):  # warm up allocator and kernels
        once(True)
    once(False)
    cached, naive = [], []
    for i in range(max(reps, naive_reps)):
        if i < reps:
            cached.append(once(True))
        if i < naive_reps:
            naive.append(once(False))
    p50c, p50n = statistics.median(cached), statistics.median(naive)
    return {
        "threads": n,
        "kv_cache_ms": {"p50": round(p50c, 2), "p95": round(percentile(cached, 0.95), 2),
                        "min": round(min(cached), 2),
                        "reps": len(cached)},
        "recompute_ms": {"p50": round(p50n, 2), "p95": round(percentile(naive, 0.95), 2),
                         "min": round(min(naive), 2),
                         "reps": len(naive)},
        "speedup_p50": round(p50n / p50c, 2),
        "goal_p50_le_50ms": p50c <= 50.0,
        "goal_speedup_ge_5x": p50n / p50c >= 5.0,
    }


def main() -> None:
    args = parse_args()
    out = reserve_stdout()
    run = BenchRun("infer_latency", tag=args.tag, results_dir=args.results_dir)

    cfg = load_config(phase="phase1")
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    torch.manual_seed(0)
    model = build_model(cfg, dropout=0.0).eval()
    image = torch.rand(1, cfg.model.image_channels, cfg.model.image_height, cfg.model.image_width)
    has_image = torch.tensor([True])
    spec = torch.tensor([tok.encode_spec("hero", TYPES)])

    def once(use_cache: bool) -> float:
        t0 = time.perf_counter()
        out = generate(model, tok, image, has_image, spec, max_elements=16,
                       required_types=[TYPES], use_cache=use_cache)
        dt = (time.perf_counter() - t0) * 1000.0
        assert len(out[0]) == 16, len(out[0])
        return dt

    results = [measure_threads(once, int(n), args.reps, args.naive_reps) for n in args.threads.split(",")]
    best = min(results, key=lambda r: r["kv_cache_ms"]["p50"])
    config = {**args_config(args), "phase": "phase1", "parameters": count_parameters(cfg), "elements": 16,
              "decoder_steps": 1 + 5 * 16, "torch": torch.__version__}
    run.finish(out, config=config, figures={"results": results, "best_threads": best["threads"]})


if __name__ == "__main__":
    main()
