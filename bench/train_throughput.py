"""Training throughput: bare PyTorch vs Ray Train + DeepSpeed (1 and 2 workers), with MFU.

    .venv/bin/python bench/train_throughput.py                      # batch 4 (Phase 1 seed)
    .venv/bin/python bench/train_throughput.py --batch-size 16
    .venv/bin/python bench/train_throughput.py --quick              # smoke run, ~1-2 min

Prints one JSON document (progress goes to stderr), also written to
bench/results/train_throughput[-TAG].json (bench/jsonout.py). Same Phase 1 model, same synthetic
dataset (layoutray.data.synth, --examples, seed 0), same global batch size, same number of
optimizer steps (--epochs x steps per epoch) in every configuration:

  a  bare PyTorch in this process: LayoutModel, the training loop's AdamW (make_optimizer: fused,
     its parameter groups and betas) and LR schedule, LayoutModel.loss, clip_grad_norm_.
     Batches are built up front with iter_local_batches(train=True) -- one augmentation epoch
     per training epoch -- and held in memory, so DATA LOADING IS EXCLUDED from (a). Run with
     1 and with 2 torch threads, interleaved in chunks of steps so both see the same background
     load; the faster one is chosen ("a_threads") and (b) gets the same thread count.
  b  run_training(...) (TorchTrainer + DeepSpeed ZeRO-0 fp32, the project's loop) with
     1 worker, scaling.cpus_per_worker = a_threads (the loop sets that many torch threads).
  c  the same with 2 workers, cpus_per_worker=1 each (micro batch = batch / 2).
  a  is run again at a_threads after b and c; the ratios use the mean of the two (this VM's
     speed drifts by ~10% over minutes); "ratio_b_over_a_before_only" uses the first alone.
  For b and c samples/s is read from <run_dir>/metrics.jsonl (the loop's per-epoch
  samples_per_s: training steps only, validation and checkpointing excluded, but waiting for the
  Ray Data pipeline INCLUDED unless --materialize). "first" is epoch 1 (Ray Data start-up,
  DeepSpeed warm-up), "steady" the mean over the later epochs; the ratio b/a uses steady.
  With --materialize the Ray datasets are preprocessed once before fit() (monkeypatched
  build_dataset -> .materialize()), which excludes data loading as in (a).

MFU = model FLOP/s / peak FLOP/s. Model FLOPs per batch = sum over its examples of
layoutray.model.flops_per_example(cfg, T-1, S, has_image) with the batch's actual padded lengths
(T tokens, S spec tokens), training=True (fwd + 2x bwd). For (c), whose workers pad micro
batches of batch/2, the same batches are split in halves and each half re-trimmed. Peak = best
time of a 2048x2048 fp32 torch.matmul at the same thread count, measured in this run (before
and after the training runs); for (c), two 1-thread processes: 2 x the 1-thread peak. b and c
train on Ray's own shuffle/augmentation of the same data: their FLOPs per sample are taken from
(a)'s batches (same distribution, not the same batches).

Where b and c lose against a (Linux): "cores_used" is a's CPU time over its wall time;
"cpu_while_training" is, for b and c, the cores each group of processes used while the workers
trained (scanned from /proc every --cpu-sample s by bench/proc_cpu.py): the workers, Ray's
other processes (controller, data coordinators, raylet, GCS, ...), this driver, the rest;
"data_wait_share_per_epoch" is the share of each epoch's training time the loop spent waiting
for its next batch (the loop's data_wait_s / train_seconds).

The machine is shared: os.getloadavg() is recorded before and after each part. With the load
above the core count, every number here is a lower bound and 2 threads suffer most.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402
from proc_cpu import ProcSampler  # noqa: E402

import torch  # noqa: E402

from layoutray.config import load_config  # noqa: E402
from layoutray.data.batches import iter_local_batches  # noqa: E402
from layoutray.data.pipeline import split_shards  # noqa: E402


def log(msg: str) -> None:
    print(f"[train_throughput {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------------- FLOPs and peak


def batch_flops(cfg, b: dict) -> int:
    """Training matmul FLOPs of one collated batch at its padded lengths."""
    from layoutray.model.network import flops_per_example
    T, S = b["tokens"].shape[1] - 1, b["spec"].shape[1]
    n_img = int(b["has_image"].sum())
    n = b["tokens"].shape[0]
    return (n_img * flops_per_example(cfg, T, S, with_image=True)
            + (n - n_img) * flops_per_example(cfg, T, S, with_image=False))


def halves(b: dict) -> list[dict]:
    """A batch as the two workers of (c) see it: two micro batches, each trimmed to its longest."""
    n = b["tokens"].shape[0]
    out = []
    for lo, hi in ((0, n // 2), (n // 2, n)):
        t, s = int(b["tok_len"][lo:hi].max()), int(b["spec_len"][lo:hi].max())
        out.append({"tokens": b["tokens"][lo:hi, :t], "spec": b["spec"][lo:hi, :s],
                    "has_image": b["has_image"][lo:hi]})
    return out


def matmul_peak(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best-of-reps fp32 GEMM FLOP/s at `threads` torch threads."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up
        best = math.inf
        for _ in range(reps):
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            best = min(best, time.perf_counter() - t)
        return 2 * n ** 3 / best
    finally:
        torch.set_num_threads(old)


# ---------------------------------------------------------------------------- (a) bare PyTorch


class Bare:
    """One model + optimizer trained with plain PyTorch at a fixed thread count."""

    def __init__(self, cfg, threads: int, total_steps: int):
        from layoutray.model.network import build_model
        from layoutray.schedules import lr_lambda_from_config
        from layoutray.training.loop import make_optimizer

        torch.manual_seed(cfg.training.seed)
        self.cfg, self.threads = cfg, threads
        self.model = build_model(cfg)
        self.model.train()
        self.opt = make_optimizer(self.model, cfg.training)  # the training loop's own
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda_from_config(cfg.schedule, total_steps))
        self.seconds, self.samples, self.chunk_rates, self.losses = 0.0, 0, [], []
        self.cpu_seconds = 0.0  # this process's CPU time (all threads) in the timed steps

    def step(self, b: dict) -> float:
        from layoutray.model.network import training_losses

        tokens, t = b["tokens"], self.cfg.training
        out = self.model(b["image"], b["has_image"], b["spec"], tokens[:, :-1], dense=t.dense_weight > 0)
        objective, loss, _ = training_losses(self.model, out, tokens, b["has_image"], t)  # as layoutray/training/loop.py
        self.opt.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.training.grad_clip)
        self.opt.step()
        self.sched.step()
        return loss.detach().item()

    def run(self, batches: list[dict], timed: bool = True) -> None:
        torch.set_num_threads(self.threads)
        t, cpu = time.perf_counter(), time.process_time()
        n = 0
        for b in batches:
            self.losses.append(self.step(b))
            n += b["tokens"].shape[0]
        dt = time.perf_counter() - t
        if timed:
            self.cpu_seconds += time.process_time() - cpu
            self.seconds += dt
            self.samples += n
            self.chunk_rates.append(n / dt)


def profile_steps(bare: Bare, batches: list[dict], top: int = 12) -> dict:
    """torch.profiler over a few steps of (a): top ops by self CPU time, and time by kind."""
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(bare.threads)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for b in batches:
            bare.step(b)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)

    def kind(name: str) -> str:
        n = name.lower()
        if "scaled_dot_product" in n or "flash_attention" in n:
            return "attention (SDPA fwd/bwd)"
        if n in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear"):
            return "gemm (mm/addmm/bmm)"
        if "_foreach" in n or "adam" in n or "clip" in n or ("norm" in n and "layer" not in n):
            return "optimizer + grad clip (foreach)"
        if "layer_norm" in n or "gelu" in n or "dropout" in n or "softmax" in n or "cross_entropy" in n \
                or "nll" in n or "bernoulli" in n:
            return "norm/activation/dropout/loss"
        if n in ("aten::copy_", "aten::clone", "aten::contiguous", "aten::cat", "aten::index_select",
                 "aten::index_copy", "aten::embedding_dense_backward", "aten::index_add_", "aten::sum",
                 "aten::fill_", "aten::zero_", "aten::empty", "aten::empty_strided", "aten::to",
                 "aten::_to_copy"):
            return "copies/reductions/alloc"
        if n.startswith("aten::"):
            return "other aten (elementwise, views)"
        return "autograd/python/profiler overhead"

    by_kind: dict[str, float] = {}
    for e in events:
        by_kind[kind(e.key)] = by_kind.get(kind(e.key), 0.0) + e.self_cpu_time_total
    ops = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    per = 1000.0 * len(batches)  # us -> ms per step
    return {
        "steps": len(batches), "threads": bare.threads,
        "self_cpu_ms_per_step": round(total / per, 1),
        "top_ops": [{"op": e.key, "self_ms_per_step": round(e.self_cpu_time_total / per, 2),
                     "share": round(e.self_cpu_time_total / total, 3), "calls_per_step": e.count // len(batches)}
                    for e in ops],
        "share_by_kind": {k: round(v / total, 3) for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1])},
    }


# ---------------------------------------------------------------------------- (b), (c) Ray Train


def ray_run(cfg_overrides: list[str], data: Path, out: Path, name: str) -> dict:
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=cfg_overrides)
    t = time.perf_counter()
    run_training(cfg, str(data), name, str(out), evaluate_test=False)
    wall = time.perf_counter() - t
    rows = [json.loads(x) for x in (out / name / "metrics.jsonl").read_text().splitlines() if x.strip()]
    rates = [r["samples_per_s"] for r in rows]
    steady = rates[1:] or rates
    return {
        "workers": cfg.scaling.num_workers, "cpus_per_worker": cfg.scaling.cpus_per_worker,
        "threads_per_worker": max(1, int(cfg.scaling.cpus_per_worker)), "micro_batch": cfg.micro_batch_size,
        "epochs": len(rows), "global_steps": rows[-1]["global_step"] if rows else 0,
        "samples_per_s_per_epoch": [round(x, 2) for x in rates],
        "samples_per_s_first": round(rates[0], 2) if rates else None,
        "samples_per_s_steady": round(sum(steady) / len(steady), 2) if steady else None,
        "samples_per_s_all": round(sum(rates) / len(rates), 2) if rates else None,
        "epoch_seconds": [round(r["epoch_seconds"], 2) for r in rows],
        "data_wait_share_per_epoch": [round(r["data_wait_s"] / r["train_seconds"], 3) for r in rows],
        "train_loss": [round(r["train_loss"], 4) for r in rows],
        "fit_wall_s": round(wall, 1),
    }


def patch_materialize() -> None:
    """Make run_training's datasets preprocess once, up front (data loading excluded)."""
    import layoutray.data.pipeline as pipeline
    original = pipeline.build_dataset

    def materialized(*args, **kwargs):
        return original(*args, **kwargs).materialize()

    pipeline.build_dataset = materialized


# ---------------------------------------------------------------------------- the steps of main


def parse_args() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=600, help="synthetic sections (train split = 80%%)")
    ap.add_argument("--batch-size", type=int, default=4, help="global batch (Phase 1 seed: 4)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs for every configuration (>= 2: "
                                                          "epoch 1 is the warm-up of b and c)")
    ap.add_argument("--steps", type=int, default=None,
                    help="total optimizer steps per configuration (default: epochs x a full pass "
                         "over the train split); split evenly over --epochs")
    ap.add_argument("--threads", default="1,2", help="torch thread counts to try for (a)")
    ap.add_argument("--chunk", type=int, default=None, help="steps per interleaved chunk in (a)")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--skip-ray", action="store_true", help="only (a), peak and profile")
    ap.add_argument("--skip-two-workers", action="store_true")
    ap.add_argument("--materialize", action="store_true",
                    help="b/c: preprocess the Ray datasets before fit() (data loading excluded)")
    ap.add_argument("--data", default=None, help="existing dataset dir (skips generation)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 120 examples, 2 epochs, 6 steps/epoch")
    ap.add_argument("--cpu-sample", type=float, default=2.0,
                    help="b/c: seconds between /proc scans of every process's CPU time (0: off; Linux)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    add_result_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.examples, args.epochs = min(args.examples, 120), 2
        args.steps = args.steps or 12
        args.profile_steps = 2
    if args.epochs < 1:
        ap.error("--epochs must be >= 1")
    return ap, args


def prepare_data(args, tmp: Path) -> Path:
    """--data, or --examples synthetic sections (seed 0) under `tmp`."""
    if args.data:
        return Path(args.data)
    from layoutray.data.synth import synthesize
    data = tmp / "sections"
    t = time.perf_counter()
    synthesize(data, args.examples, seed=0)
    log(f"synthesized {args.examples} sections in {time.perf_counter() - t:.1f}s")
    return data


def plan_steps(ap, args, data: Path, res: dict) -> tuple[int, int]:
    """Steps per epoch and in all, the same for every configuration; noted in `res`."""
    bs = args.batch_size
    _, train_rows = split_shards(data, "train")
    full = train_rows // bs
    if full < 1:
        ap.error(f"train split has {train_rows} rows, fewer than one batch of {bs}")
    spe = min(full, math.ceil(args.steps / args.epochs)) if args.steps else full
    total = spe * args.epochs
    res.update(train_rows=train_rows, steps_per_epoch=spe, optimizer_steps=total)
    if spe < full:
        res["note_partial_epochs"] = (
            f"{spe} of {full} steps per epoch: the Ray loop drains the rest of its shard inside "
            f"its timed epoch, which lowers b/c samples/s; use the default --steps for a clean ratio")
    return spe, total


def collate(cfg, data: Path, args, spe: int) -> tuple[list[dict], list[dict]]:
    """(a)'s batches, pre-collated in memory (data loading excluded from the timing), and the
    few warm-up batches."""
    bs = args.batch_size
    t = time.perf_counter()
    epochs_batches = []
    for e in range(args.epochs):
        it = iter_local_batches(data, "train", cfg, bs, train=True, seed=cfg.training.seed,
                                epoch=e, drop_last=True)
        epochs_batches.append([b for _, b in zip(range(spe), it)])
    batches = [b for ep in epochs_batches for b in ep]
    log(f"collated {len(batches)} batches of {bs} in {time.perf_counter() - t:.1f}s (not timed)")
    return batches, epochs_batches[0][:min(3, spe)]


def flops_summary(cfg, batches: list[dict], bs: int) -> tuple[float, float, dict]:
    """FLOPs per sample for (a)/(b) and for (c)'s micro batches, and their summary."""
    flops = [batch_flops(cfg, b) for b in batches]
    samples = sum(b["tokens"].shape[0] for b in batches)
    fps_a = sum(flops) / samples
    fps_c = sum(batch_flops(cfg, h) for b in batches for h in halves(b)) / samples if bs >= 2 else fps_a
    return fps_a, fps_c, {
        "per_sample_a_b": round(fps_a / 1e6, 2), "per_sample_c_micro_batches": round(fps_c / 1e6, 2),
        "unit": "MFLOP (training: fwd + 2x bwd, matmuls only, at each batch's padded lengths)",
        "mean_padded_T": round(sum(b["tokens"].shape[1] - 1 for b in batches) / len(batches), 1),
        "mean_padded_S": round(sum(b["spec"].shape[1] for b in batches) / len(batches), 1),
        "image_share": round(sum(int(b["has_image"].sum()) for b in batches) / samples, 3),
    }


def run_bare(cfg, args, thread_list: list[int], warm: list[dict], batches: list[dict], total: int,
             res: dict) -> tuple[dict, int]:
    """(a) at every thread count over the same steps, interleaved in chunks; profiled at the
    faster one. Returns its figures by thread count and that thread count."""
    res["loadavg_before_a"] = load()
    runners = {th: Bare(cfg, th, total) for th in thread_list}
    for r in runners.values():
        r.run(warm, timed=False)  # allocator / MKL warm-up; not counted, same for all
    chunk = args.chunk or max(1, min(20, total // 6))
    t = time.perf_counter()
    for lo in range(0, total, chunk):
        for r in runners.values():
            r.run(batches[lo:lo + chunk])
    log(f"(a) {total} steps x {len(runners)} thread counts in {time.perf_counter() - t:.1f}s")
    res["loadavg_after_a"] = load()
    a = {}
    for th, r in runners.items():
        rate = r.samples / r.seconds
        a[str(th)] = {"samples_per_s": round(rate, 2), "step_ms": round(1000 * r.seconds / total, 1),
                      "samples_per_s_best_chunk": round(max(r.chunk_rates), 2),
                      "cores_used": round(r.cpu_seconds / r.seconds, 3),
                      "final_loss": round(sum(r.losses[-5:]) / len(r.losses[-5:]), 4)}
    best_th = max(runners, key=lambda th: runners[th].samples / runners[th].seconds)
    res["a_bare_pytorch"] = {
        "by_threads": a, "chosen_threads": best_th,
        "samples_per_s": a[str(best_th)]["samples_per_s"],
        "data_loading": "excluded (batches from iter_local_batches(train=True) pre-collated in memory)",
        "interleaved_chunk_steps": chunk,
    }
    if args.profile_steps:
        res["a_profile"] = profile_steps(runners[best_th], batches[:args.profile_steps])
    return a, best_th


def ray_configs(args, best_th: int, spe: int) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Overrides common to (b) and (c), and each one's own."""
    common = [f"training.batch_size={args.batch_size}", f"training.epochs={args.epochs}",
              f"training.max_steps_per_epoch={spe}", "validation.generate_examples=0",
              "validation.patience=1000", "checkpoint.num_to_keep=1"]
    runs = [("b_ray_1_worker", ["scaling.num_workers=1", f"scaling.cpus_per_worker={best_th}"])]
    if not args.skip_two_workers:
        runs.append(("c_ray_2_workers", ["scaling.num_workers=2", "scaling.cpus_per_worker=1"]))
    return common, runs


def run_one_ray(key: str, overrides: list[str], args, data: Path, tmp: Path, best_th: int, res: dict) -> None:
    """(b) or (c): one run_training, with the cores each group of processes used meanwhile."""
    res[f"loadavg_before_{key[0]}"] = load()
    t = time.perf_counter()
    sample_cpu = args.cpu_sample > 0 and os.path.exists("/proc/self/stat")
    sampler = ProcSampler(args.cpu_sample).start() if sample_cpu else None
    try:
        res[key] = ray_run(overrides, data, tmp / "runs", key)
    except Exception as e:  # report what failed, keep the other figures
        res[key] = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
    if sampler:
        sampler.stop()
        # Cores per group while the workers trained (their threads >= 75% busy).
        threads = best_th if key.startswith("b") else 2
        res[key]["cpu_while_training"] = sampler.summary(
            busy=lambda name: name.startswith("ray::RayTrainWorker"), min_cores=0.75 * threads)
    log(f"({key[0]}) done in {time.perf_counter() - t:.1f}s: "
        f"{res[key].get('samples_per_s_per_epoch', res[key].get('error'))}")
    res[key]["data_loading"] = ("excluded (datasets materialized before fit)" if args.materialize
                                else "included: Ray Data streams and preprocesses during the epoch")


def run_ray(args, data: Path, tmp: Path, best_th: int, spe: int, res: dict) -> None:
    """(b) and (c) on a private local Ray instance."""
    import ray
    import ray.data

    from layoutray.runtime import start_local
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
    # b reserves a_threads CPUs, c 2 x 1; +2 logical CPUs for Ray Data's read tasks
    # (layoutray.runtime.local_cpus).
    start_local(num_cpus=max(4, best_th + 2), dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    if args.materialize:
        patch_materialize()
    common, runs = ray_configs(args, best_th, spe)
    for key, extra in runs:
        run_one_ray(key, common + extra, args, data, tmp, best_th, res)
    ray.shutdown()


def bare_again(cfg, best_th: int, total: int, warm: list[dict], batches: list[dict], res: dict) -> None:
    """(a) again after the Ray runs: this VM's speed drifts by 10% over minutes, so b and c are
    compared with the mean of a measured before and after them."""
    again = Bare(cfg, best_th, total)
    again.run(warm, timed=False)
    again.run(batches)
    a_after = again.samples / again.seconds
    a_before = res["a_bare_pytorch"]["samples_per_s"]
    res["a_bare_pytorch"].update(
        samples_per_s_before_ray=a_before, samples_per_s_after_ray=round(a_after, 2),
        samples_per_s_bracket=round((a_before + a_after) / 2, 2))
    log(f"(a) again after the Ray runs: {a_after:.1f} samples/s (before: {a_before:.1f})")


def mfu_and_ratios(res: dict, a: dict, best_th: int, peaks: dict, fps_a: float, fps_c: float) -> dict:
    """MFU of a, b, c; the ratios b/a and c/b (noted in `res`); returns the MFUs."""
    mfu: dict = {}
    for th, v in a.items():
        v["mfu"] = round(v["samples_per_s"] * fps_a / peaks[int(th)], 3)
    mfu["a"] = a[str(best_th)]["mfu"]
    b = res.get("b_ray_1_worker", {})
    if b.get("samples_per_s_steady"):
        pb = peaks.get(b["threads_per_worker"]) or matmul_peak(b["threads_per_worker"])
        b["mfu_steady"] = round(b["samples_per_s_steady"] * fps_a / pb, 3)
        mfu["b"] = b["mfu_steady"]
        a_ref = res["a_bare_pytorch"].get("samples_per_s_bracket", a[str(best_th)]["samples_per_s"])
        res["ratio_b_over_a"] = round(b["samples_per_s_steady"] / a_ref, 3)
        res["ratio_b_over_a_before_only"] = round(b["samples_per_s_steady"] / a[str(best_th)]["samples_per_s"], 3)
        res["ratio_b_over_a_first_epoch"] = round(b["samples_per_s_first"] / a_ref, 3)
    c = res.get("c_ray_2_workers", {})
    if c.get("samples_per_s_steady"):
        c["mfu_steady"] = round(c["samples_per_s_steady"] * fps_c / (2 * peaks[1]), 3)
        c["mfu_peak_note"] = "peak = 2 x the 1-thread matmul peak (two 1-thread workers)"
        mfu["c"] = c["mfu_steady"]
        if b.get("samples_per_s_steady"):
            res["ratio_c_over_b"] = round(c["samples_per_s_steady"] / b["samples_per_s_steady"], 3)
    return mfu


def goals(res: dict, mfu: dict, a_rate: float) -> dict:
    return {
        "b_over_a_ge_0.9": (res["ratio_b_over_a"] >= 0.9) if "ratio_b_over_a" in res else None,
        "mfu_a_ge_0.5": mfu["a"] >= 0.5,
        "epoch_1500_examples_s_at_a": round(1500 / a_rate, 1),
        "epoch_1500_under_15s_at_a": 1500 / a_rate < 15,
    }


# ---------------------------------------------------------------------------- main


def measure(ap, args, cfg, thread_list: list[int], tmp: Path, res: dict) -> None:
    """Every part of the benchmark, in order; the figures go into `res`."""
    data = prepare_data(args, tmp)
    spe, total = plan_steps(ap, args, data, res)
    batches, warm = collate(cfg, data, args, spe)
    fps_a, fps_c, res["flops"] = flops_summary(cfg, batches, args.batch_size)

    # matmul peak at each thread count (again after the runs; the best is kept)
    peaks = {th: matmul_peak(th) for th in sorted(set(thread_list) | {1})}
    log("matmul peak GFLOP/s: " + ", ".join(f"{th} thr {p / 1e9:.1f}" for th, p in peaks.items()))

    a, best_th = run_bare(cfg, args, thread_list, warm, batches, total, res)
    if not args.skip_ray:
        run_ray(args, data, tmp, best_th, spe, res)
        bare_again(cfg, best_th, total, warm, batches, res)

    res["loadavg_end"] = load()
    for th in peaks:  # peak again after the runs; keep the better measurement
        peaks[th] = max(peaks[th], matmul_peak(th))
    res["matmul_peak_gflops"] = {str(th): round(p / 1e9, 2) for th, p in peaks.items()}
    res["matmul_peak_note"] = "2048x2048 fp32 torch.mm, best of 8, before and after the runs"
    res["mfu"] = mfu_and_ratios(res, a, best_th, peaks, fps_a, fps_c)
    res["goals"] = goals(res, res["mfu"], a[str(best_th)]["samples_per_s"])


def main() -> None:
    ap, args = parse_args()
    json_out = reserve_stdout()
    run = BenchRun("train_throughput", tag=args.tag, results_dir=args.results_dir)

    t_start = time.perf_counter()
    bs = args.batch_size
    cfg = load_config(phase="phase1", overrides=[f"training.batch_size={bs}"])
    thread_list = [int(x) for x in args.threads.split(",") if x.strip()]
    res: dict = {
        "what": "Phase 1 training throughput: (a) bare PyTorch, (b) Ray Train + DeepSpeed 1 worker, "
                "(c) 2 workers",
        "command": "python bench/train_throughput.py " + " ".join(sys.argv[1:]),
        "cpus": os.cpu_count(), "torch": torch.__version__, "loadavg_start": load(),
        "batch_size": bs, "examples": args.examples, "epochs": args.epochs,
    }
    with tempfile.TemporaryDirectory(prefix="layoutray-train-bench-") as tmp:
        measure(ap, args, cfg, thread_list, Path(tmp), res)
    res["total_seconds"] = round(time.perf_counter() - t_start, 1)

    config = {**args_config(args), "torch": torch.__version__}
    doc = run.finish(json_out, config=config, figures=res)
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
