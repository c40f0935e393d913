"""GPU readiness in one run: matmul peak, Phase 2-4 steps through Ray Train + DeepSpeed at ZeRO 0-3
on one GPU, MFU, peak memory against `layoutray plan`, and decode latency with the KV cache.

    .venv/bin/python bench/gpu_check.py                         # all of it, on a machine with a CUDA GPU
    .venv/bin/python bench/gpu_check.py --phases phase3 --stages 2,3 --steps 20
    .venv/bin/python bench/gpu_check.py --dry-run --results-dir /tmp/r   # CPU smoke run, tiny models

Without a CUDA GPU (and without --dry-run) it exits with status 3 and one line on stderr saying
why. Prints one JSON document and writes bench/results/gpu_check[-TAG].json (bench/jsonout.py);
the file is rewritten after every part (`"partial": true` until the end), so a run cut short
keeps what it measured. Each training configuration is a Ray Train run of its own (worker start,
DeepSpeed set-up, two epochs, a checkpoint per epoch): expect about a minute each, so all 12 take
10-15 minutes; under a shorter time limit run the phases separately (`--phases phase4 --tag p4`).

What each figure is:

  peak          best-of-reps time of an n x n bf16 torch.matmul on the GPU (n 8192), timed with
                CUDA events: 2 n^3 / t. The denominator of every MFU here (not the data sheet's).
  train[phase][stage]
                `run_training` (TorchTrainer + DeepSpeed, the project's loop) with the phase's
                config on one GPU worker: deepspeed.zero_stage = stage, bf16 (or --precision),
                training.epochs 2 of --steps optimizer steps each on the synthetic stream
                (synth:0), no generation during validation. Epoch 1 warms up (CUDA context,
                kernels, Ray Data start); epoch 2 is measured from the loop's metrics.jsonl:
                step_s = train_seconds / steps, compute_step_s = (train_seconds - data_wait_s) / steps
                (the input pipeline excluded: Ray Data renders wireframes on the CPU).
                mfu = model FLOPs per sample x samples / (train_seconds - data_wait_s) / peak, the
                FLOPs from layoutray.model.flops_per_example at the padded lengths of the run's own
                validation batches (training=True: forward + 2x backward; with activation
                checkpointing the recomputation is not counted, as MFU conventions have it).
                gpu_max_memory_gib = torch.cuda.max_memory_allocated on the worker (the loop's
                metric); plan_gib = `layoutray plan`'s per-GPU total for this config on 1 GPU
                minus its fixed runtime overhead (the CUDA context and workspaces that
                max_memory_allocated does not see); memory_vs_plan = measured / plan.
                A configuration that fails (out of memory, ...) is recorded with its error and
                the run goes on.
  decode[phase] greedy constrained generation of one layout with max_elements elements (the
                phase's cap: 1 + 5 E decoder steps) with the KV cache, random fp32 weights (latency
                does not depend on training), batch 1, --decode-reps timed runs: p50 / p95 ms.

Goals (issue 44): Phase 3/4 steps at >= 40% MFU of the measured peak; peak memory within 20% of
the plan's estimate for each ZeRO stage (0.8 <= memory_vs_plan <= 1.2).

--dry-run runs the same code paths on the CPU at a tiny size (a 32-wide model, 2 steps per epoch,
fp32 matmul peak at n 256, no GPU memory figures) to check the script end to end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsonout import BenchRun, add_result_args, args_config, git_commit, loadavg, reserve_stdout  # noqa: E402

NO_GPU_EXIT = 3
PHASES = ("phase2", "phase3", "phase4")
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "model.max_elements=8", "training.batch_size=4"]
GOAL_MFU, GOAL_MEMORY = 0.40, 0.20
WORKER_CPUS = 4


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default=",".join(PHASES), help="comma-separated, of phase2, phase3, phase4")
    ap.add_argument("--stages", default="0,1,2,3", help="ZeRO stages, comma-separated")
    ap.add_argument("--steps", type=int, default=20, help="optimizer steps per epoch (2 epochs; the 2nd is timed)")
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp16", "fp32"])
    ap.add_argument("--decode-reps", type=int, default=20)
    ap.add_argument("--matmul-n", type=int, default=0, help="matmul size (default 8192 on GPU, 256 dry)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every training run (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="CPU smoke run of the same code paths, tiny sizes")
    add_result_args(ap)
    args = ap.parse_args(argv)
    bad = [p for p in args.phases.split(",") if p not in PHASES]
    if bad:
        ap.error(f"--phases: unknown {bad}; allowed: {', '.join(PHASES)}")
    try:
        stages = [int(s) for s in args.stages.split(",")]
    except ValueError:
        stages = [-1]
    if not stages or any(s not in (0, 1, 2, 3) for s in stages):
        ap.error(f"--stages: got {args.stages!r}; allowed: comma-separated 0, 1, 2, 3")
    if args.steps < 1 or args.decode_reps < 1:
        ap.error("--steps and --decode-reps must be >= 1")
    return args


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the GPU check (one line), or None when it can."""
    try:
        import torch
    except ImportError as e:
        return f"torch is not importable ({e})"
    if torch.version.cuda is None:
        return (f"this torch build ({torch.__version__}) has no CUDA support; install a CUDA build of torch "
                f"on a machine with an NVIDIA GPU, or pass --dry-run for the CPU smoke run")
    if not torch.cuda.is_available():
        return (f"no CUDA GPU visible (torch {torch.__version__}, CUDA {torch.version.cuda}, "
                f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); "
                f"pass --dry-run for the CPU smoke run")
    return None


# ---------------------------------------------------------------------------- matmul peak


def matmul_peak(n: int, dry: bool, reps: int = 10) -> dict:
    """Best-of-reps FLOP/s of an n x n matmul: bf16 on the GPU (CUDA events), fp32 on the CPU."""
    import torch

    dev, dtype = ("cpu", torch.float32) if dry else ("cuda", torch.bfloat16)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    c = torch.empty(n, n, device=dev, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b, out=c)  # warm-up (cuBLAS heuristics, clocks)
    best = math.inf
    for _ in range(reps):
        if dry:
            t0 = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - t0)
        else:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            torch.mm(a, b, out=c)
            end.record()
            torch.cuda.synchronize()
            best = min(best, start.elapsed_time(end) / 1000)
    return {"n": n, "dtype": str(dtype).removeprefix("torch."), "device": dev, "best_s": best,
            "tflops": 2 * n ** 3 / best / 1e12}


# ---------------------------------------------------------------------------- training steps


def train_overrides(args, stage: int) -> list[str]:
    """The phase config, changed only as this check needs: one GPU worker, this stage, a short
    run on the synthetic stream, no generation in validation."""
    steps = args.steps
    out = [f"deepspeed.zero_stage={stage}", "scaling.num_workers=1", "training.epochs=2",
           f"training.max_steps_per_epoch={steps}", "validation.generate_examples=0",
           "validation.patience=1000", "data.synth_val=32", "data.synth_test=1", "checkpoint.num_to_keep=1"]
    if args.dry_run:
        out += TINY + ["scaling.use_gpu=false", "scaling.gpus_per_worker=0", "scaling.cpus_per_worker=1",
                       f"deepspeed.precision={'fp32' if args.precision == 'fp16' else args.precision}"]
    else:
        # 4 CPUs (torch threads) for the GPU worker; the rest render the stream's wireframes
        out += ["scaling.use_gpu=true", "scaling.gpus_per_worker=1", f"scaling.cpus_per_worker={WORKER_CPUS}",
                f"deepspeed.precision={args.precision}"]
    return out + list(args.overrides)


def run_config(phase: str, args, stage: int):
    from layoutray.config import load_config

    cfg = load_config(phase=phase, overrides=train_overrides(args, stage))
    rows = cfg.training.batch_size * args.steps  # one epoch of the stream: exactly the steps run
    return load_config(phase=phase, overrides=train_overrides(args, stage) + [f"data.synth_per_epoch={rows}"])


def flops_per_sample(cfg, eval_dir: str, batches: int = 8) -> float:
    """Mean training FLOPs per example at the padded lengths of micro-batches of the run's data."""
    import itertools

    from layoutray.data.batches import iter_local_batches
    from layoutray.model.network import flops_per_example

    total, n = 0, 0
    for b in itertools.islice(iter_local_batches(eval_dir, "val", cfg, cfg.micro_batch_size), batches):
        T, S = b["tokens"].shape[1] - 1, b["spec"].shape[1]
        k, img = b["tokens"].shape[0], int(b["has_image"].sum())
        total += img * flops_per_example(cfg, T, S, with_image=True) + (k - img) * flops_per_example(
            cfg, T, S, with_image=False)
        n += k
    return total / max(1, n)


def plan_memory(cfg, stage: int) -> dict:
    """`layoutray plan`'s per-GPU estimate for this config on one GPU, in GiB."""
    from layoutray.plan import GPUS, make_plan

    from jsonout import gpu_name
    name = (gpu_name() or "").lower()
    key = "h100-80gb" if "h100" in name or "h200" in name else "a100-80gb" if "80" in name else "a100-40gb"
    key = key if key in GPUS else next(iter(GPUS))
    row = make_plan(cfg.phase, gpus=1, gpu=key, cfg=cfg)["stages"][stage]
    return {"plan_gpu": key, "plan_total_gib": row["total_gib"],
            "plan_gib": row["total_gib"] - row["runtime_overhead_gib"],
            "plan_model_states_gib": row["model_states_gib"], "plan_activations_gib": row["activations_gib"]}


def epoch_figures(history: list[dict], fps: float, peak_flops: float, steps: int) -> dict:
    """Figures of the timed (last) epoch from the loop's metrics rows."""
    last = history[-1]
    train_s, wait_s = last["train_seconds"], last.get("data_wait_s", 0.0)
    samples = last["samples_per_s"] * train_s
    compute_s = max(train_s - wait_s, 1e-9)
    out = {"epochs": len(history), "steps": steps, "samples": round(samples), "train_s": train_s,
           "data_wait_s": wait_s, "step_s": train_s / steps, "compute_step_s": compute_s / steps,
           "samples_per_s": samples / train_s, "flops_per_sample": fps,
           "mfu": fps * samples / compute_s / peak_flops, "mfu_with_data_wait": fps * samples / train_s / peak_flops,
           "train_loss": last["train_loss"], "val_loss": last["val_loss"]}
    if "gpu_max_memory_gib" in last:
        out["gpu_max_memory_gib"] = max(r.get("gpu_max_memory_gib", 0.0) for r in history)
    return out


def train_one(phase: str, stage: int, args, peak_flops: float, out_dir: Path) -> dict:
    """One Ray Train + DeepSpeed run; its figures, or its error (the check goes on)."""
    from layoutray.training.driver import run_training

    name = f"{phase}-zero{stage}"
    try:
        cfg = run_config(phase, args, stage)
        t0 = time.time()
        summary = run_training(cfg, "synth:0", name, str(out_dir), evaluate_test=False)
        run_dir = Path(summary["run_dir"])
        history = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        res = {"ok": True, "wall_s": time.time() - t0, "micro_batch": cfg.micro_batch_size,
               "precision": cfg.deepspeed.precision, "activation_checkpointing": cfg.training.activation_checkpointing,
               **epoch_figures(history, flops_per_sample(cfg, str(run_dir / "eval-data")), peak_flops,
                               args.steps),
               **plan_memory(cfg, stage)}
        if "gpu_max_memory_gib" in res:
            res["memory_vs_plan"] = res["gpu_max_memory_gib"] / res["plan_gib"]
        return res
    except Exception as e:  # noqa: BLE001 - one failing configuration must not end the check
        msg = f"{type(e).__name__}: {e}"
        log(f"{name} failed: {msg.splitlines()[0][:300]}")
        return {"ok": False, "error": msg[-2000:]}


# ---------------------------------------------------------------------------- decode latency


def decode_latency(phase: str, args) -> dict:
    """Greedy constrained generation of max_elements elements with the KV cache, batch 1."""
    import torch

    from layoutray.config import load_config
    from layoutray.model.generate import generate
    from layoutray.model.network import build_model
    from layoutray.model.tokenizer import LayoutTokenizer

    cfg = load_config(phase=phase, overrides=TINY if args.dry_run else [])
    dev = "cpu" if args.dry_run else "cuda"
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    torch.manual_seed(0)
    model = build_model(cfg, dropout=0.0).eval().to(dev)
    m, E = cfg.model, cfg.model.max_elements
    types = [tok.element_types[i % len(tok.element_types)] for i in range(E)]
    image = torch.rand(1, m.image_channels, m.image_height, m.image_width, device=dev)
    has_image, spec = torch.tensor([True], device=dev), torch.tensor([tok.encode_spec("hero", types)], device=dev)

    def once() -> float:
        if dev == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.no_grad():
            out = generate(model, tok, image, has_image, spec, max_elements=E, required_types=[types])
        if dev == "cuda":
            torch.cuda.synchronize()
        if len(out[0]) != E:
            raise RuntimeError(f"generated {len(out[0])} elements, expected {E}")
        return (time.perf_counter() - t0) * 1000

    for _ in range(3):
        once()
    ms = sorted(once() for _ in range(args.decode_reps))
    p95 = ms[min(len(ms) - 1, math.ceil(0.95 * len(ms)) - 1)]
    return {"elements": E, "decoder_steps": 1 + 5 * E, "device": dev, "dtype": "fp32", "reps": len(ms),
            "p50_ms": statistics.median(ms), "p95_ms": p95, "min_ms": ms[0],
            "ms_per_step_p50": statistics.median(ms) / (1 + 5 * E)}


# ---------------------------------------------------------------------------- the run


def goals(train: dict) -> dict:
    """The issue's goals over what was measured (None where nothing was)."""
    mfus = [r["mfu"] for ph in ("phase3", "phase4") for r in train.get(ph, {}).values() if r.get("ok")]
    mems = [r["memory_vs_plan"] for ph in train.values() for r in ph.values() if "memory_vs_plan" in r]
    return {"phase3_4_mfu_ge_0.40": (min(mfus) >= GOAL_MFU) if mfus else None,
            "phase3_4_mfu_best": max(mfus) if mfus else None,
            "memory_within_20pct_of_plan": all(abs(x - 1) <= GOAL_MEMORY for x in mems) if mems else None,
            "memory_vs_plan_range": [min(mems), max(mems)] if mems else None}


def write_partial(run: BenchRun, config: dict, figures: dict) -> None:
    """The results file as it stands (a run cut short keeps what it measured)."""
    # (not run.document(): that ends the run's load-average sampling)
    machine = dict(run.machine, loadavg_end=loadavg(), loadavg_1min_max=run._load_max)
    doc = {"name": run.name, "tag": run.tag, "date": run.date, "finished": None, **git_commit(),
           "machine": machine, "command": run.command, "config": config, "figures": figures, "partial": True}
    run.path.parent.mkdir(parents=True, exist_ok=True)
    run.path.write_text(json.dumps(doc, indent=2) + "\n")


def measure(args, run: BenchRun, config: dict, tmp: Path) -> dict:
    from layoutray.runtime import init_ray, local_cpus

    n = args.matmul_n or (256 if args.dry_run else 8192)
    peak = matmul_peak(n, args.dry_run)
    log(f"matmul peak {peak['tflops']:.1f} TFLOP/s ({peak['dtype']}, n {n})")
    figures: dict = {"peak": peak, "train": {}, "decode": {}}
    write_partial(run, config, figures)
    init_ray(None, num_cpus=local_cpus(1, 1 if args.dry_run else WORKER_CPUS))
    for phase in args.phases.split(","):
        figures["decode"][phase] = decode_latency(phase, args)
        log(f"{phase} decode p50 {figures['decode'][phase]['p50_ms']:.1f} ms")
        figures["train"][phase] = {}
        for stage in (int(s) for s in args.stages.split(",")):
            r = train_one(phase, stage, args, peak["tflops"] * 1e12, tmp)
            figures["train"][phase][str(stage)] = r
            if r["ok"]:
                log(f"{phase} ZeRO-{stage}: step {r['compute_step_s'] * 1000:.1f} ms, MFU {r['mfu']:.1%}"
                    + (f", memory {r['gpu_max_memory_gib']:.2f} GiB vs plan {r['plan_gib']:.2f}"
                       if "gpu_max_memory_gib" in r else ""))
            write_partial(run, config, figures)
    figures["goals"] = goals(figures["train"])
    return figures


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run:
        reason = no_gpu_reason()
        if reason:
            print(f"gpu_check: {reason}", file=sys.stderr)
            return NO_GPU_EXIT
    out = reserve_stdout()
    run = BenchRun("gpu_check", tag=args.tag, results_dir=args.results_dir)
    import torch
    config = {**args_config(args), "torch": torch.__version__, "cuda": torch.version.cuda}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        figures = measure(args, run, config, Path(tmp))
    run.finish(out, config=config, figures=figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
