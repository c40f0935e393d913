"""The per-worker training function: DeepSpeed engine, explicit epoch/step loop,
validation, early stopping, checkpoints. Everything arrives in `config` as plain data.

Every rank runs the same sequence of collective calls (steps, `ray.train.report`), which
is what keeps ZeRO and Ray Train's barriers from hanging: when one rank's data shard
runs out (bad rows can make shards uneven), all ranks stop the epoch together.
"""

from __future__ import annotations

import json
import logging
import math
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CKPT_TAG = "state"  # not "latest": DeepSpeed writes a pointer file of that name


def _ds_config(cfg, world: int) -> dict:
    import yaml

    template = Path(cfg["repo_root"]) / "configs" / "deepspeed" / f"zero{cfg['deepspeed']['zero_stage']}.yaml"
    ds = yaml.safe_load(template.read_text())
    micro = cfg["micro_batch"]
    batch = cfg["training"]["batch_size"]
    if batch % (micro * world):
        raise ValueError(f"training.batch_size {batch} is not a multiple of micro batch {micro} x {world} workers")
    ds.update(train_batch_size=batch, train_micro_batch_size_per_gpu=micro,
              gradient_accumulation_steps=batch // (micro * world),
              gradient_clipping=cfg["training"]["grad_clip"], zero_allow_untested_optimizer=True,
              steps_per_print=10**9, wall_clock_breakdown=False)
    ds["bf16"] = {"enabled": cfg["deepspeed"]["precision"] == "bf16"}
    # (the loss-scaling keys travel in the run config's own deepspeed section)
    ds["fp16"] = fp16_section({**cfg.get("run_config", {}).get("deepspeed", {}), **cfg["deepspeed"]})
    if cfg["deepspeed"]["offload_optimizer"]:
        ds["zero_optimization"]["offload_optimizer"] = {"device": "cpu"}
        # DeepSpeed refuses a client optimizer under offload unless told otherwise, to push its
        # own C++ CPU Adam (an op compiled on first use). Ours is torch's fused AdamW, itself a
        # vectorised CPU kernel (make_optimizer).
        ds["zero_force_ds_cpu_optimizer"] = False
    return ds


def fp16_section(deepspeed: dict) -> dict:
    """DeepSpeed's "fp16" block: loss scaling, so that small fp16 gradients do not flush to zero.
    Dynamic (loss_scale 0): start at 2^initial_scale_power, halve and skip the step on an overflow,
    double after 1000 clean steps; `hysteresis` 2 tolerates one overflow before lowering it."""
    if deepspeed["precision"] != "fp16":
        return {"enabled": False}
    return {"enabled": True, "loss_scale": deepspeed.get("loss_scale", 0.0),
            "initial_scale_power": deepspeed.get("initial_scale_power", 16), "loss_scale_window": 1000,
            "hysteresis": 2, "min_loss_scale": 1}


def _param_groups(model, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        # Norms, biases and embeddings are not decayed: shrinking them only hurts.
        (no_decay if p.dim() < 2 or "emb" in name else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model, training) -> torch.optim.AdamW:
    """AdamW over `_param_groups`. fused=True: without it torch runs AdamW on CPU one tensor at a
    time (hundreds of small ops per Phase 1 step); the fused kernel made the bare loop 3% faster at
    batch 16 (docs/benchmarks.md). It also runs on CUDA, where DeepSpeed moves the params."""
    return torch.optim.AdamW(_param_groups(model, training.weight_decay), lr=training.learning_rate,
                             betas=(0.9, 0.98), eps=1e-8, fused=True)


def _say(line: str) -> None:
    """One progress line. Ray Train V2 patches print() in workers to go through its logger *and*,
    when stdout is redirected, to the stream too, so every line reached the driver twice; writing
    to the process's own stdout once is what a person following the run wants."""
    sys.__stdout__.write(line + "\n")
    sys.__stdout__.flush()


def _all_have(has: bool, world: int, device=None) -> bool:
    if world == 1:
        return has
    import torch.distributed as dist
    t = torch.tensor([1 if has else 0], device=device)  # NCCL (GPU workers) reduces CUDA tensors only
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def _all_sum(values: list[float], world: int, device=None) -> list[float]:
    if world == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _full_state_dict(engine, stage: int, rank: int) -> dict | None:
    """fp32 weights of the whole model on rank 0 (all ranks must call: the gathers are collective).

    Under bf16 the module holds bf16 copies; the fp32 master weights live in the optimizer,
    sharded under ZeRO 1-3 (`safe_get_full_fp32_param` gathers them) and whole at stage 0
    (DeepSpeed's unfused mixed-precision optimizer keeps one fp32 copy per parameter). Those are
    what the artifact gets, not the bf16 copies widened back. In fp32 the module's weights equal
    the masters (or, at stage 0, are the only copy), so nothing extra is gathered.
    """
    import contextlib

    from deepspeed.utils import safe_get_full_fp32_param
    model = engine.module
    masters = {}
    if next(model.parameters()).dtype != torch.float32:  # the same answer on every rank
        stage0 = {}
        if stage == 0:
            opt = engine.optimizer
            for lp_group, hp_group in zip(getattr(opt, "fp16_groups", []), getattr(opt, "fp32_groups", [])):
                for lp, hp in zip(lp_group, hp_group):
                    if torch.is_tensor(hp) and hp.shape == lp.shape:
                        stage0[id(lp)] = hp
        for name, p in model.named_parameters():  # same order on every rank: the gathers are collective
            full = stage0.get(id(p)) if stage == 0 else safe_get_full_fp32_param(p)
            if full is not None and rank == 0:
                masters[name] = full.detach().float().cpu().clone()
    gather = contextlib.nullcontext()
    if stage == 3:
        import deepspeed
        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    with gather:
        if rank != 0:
            return None
        return {k: masters[k] if k in masters else v.detach().float().cpu().clone()
                for k, v in model.state_dict().items()}


def _trim_history(path: Path, last_epoch: int) -> None:
    """Drop metrics rows of epochs after the checkpoint being resumed: they are about to run again."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines()
            if line.strip() and json.loads(line)["epoch"] <= last_epoch]
    path.write_text("".join(line + "\n" for line in keep))


def planned_total_steps(schedule, base_batch: int, steps_per_epoch: int, epochs: int, capped: bool,
                        micro: int, world: int) -> int:
    """Optimizer steps the LR, batch and regularisation schedules span.

    With the phi batch schedule later phases take bigger steps, so the same samples need fewer
    of them: P equal parts of T steps at batch b_k see sum(T/P * b_k) samples, hence
    T = P * samples / sum(b_k). When max_steps_per_epoch caps the epoch, the cap decides.
    """
    from layoutray.schedules import phi_batch_size
    steps = max(1, steps_per_epoch * epochs)
    if schedule.batch != "phi" or capped or schedule.batch_phases <= 1:
        return steps
    sizes = [phi_batch_size(base_batch, k, schedule.max_batch_size, micro * world)
             for k in range(schedule.batch_phases)]
    return max(1, round(steps * base_batch * schedule.batch_phases / sum(sizes)))


def _apply_schedules(engine, cfg, step: int, total: int, micro: int, world: int, base_wd: list[float]) -> dict:
    """Batch size (gradient accumulation), dropout and weight decay for optimizer step `step`.

    Pure functions of the step, so a resumed run (DeepSpeed restores global_steps) continues
    the same schedule.
    """
    from layoutray.model.network import set_dropout
    from layoutray.schedules import (batch_schedule, phase_settings_at, phase_settings_from_config,
                                     regularization_at)
    sch = cfg.schedule
    out = {}
    if sch.batch == "phi":
        size = batch_schedule(step, total, cfg.training.batch_size, sch.batch_phases, sch.max_batch_size, micro, world)
        if size != engine.train_batch_size():
            engine.set_train_batch_size(size)
    if sch.regularization == "phi" or sch.phi_phases:
        dropout, wd_scale = regularization_at(step, total, cfg.training.dropout, 1.0, sch.regularization,
                                              sch.batch_phases)
        if sch.phi_phases:
            dropout *= phase_settings_at(step, total, phase_settings_from_config(sch)).dropout
        set_dropout(engine.module, dropout)
        for group, wd in zip(engine.optimizer.param_groups, base_wd):
            group["weight_decay"] = wd * wd_scale
        out = {"dropout": dropout, "weight_decay": base_wd[0] * wd_scale}
    return out


def _quiet_ray_train_reports() -> None:
    """Ray Train V2 logs every report (the full metrics dict) at INFO from the worker, through a
    logger named after its module's file path, so LoggingConfig cannot reach it; the loop prints
    its own one-line epoch summary instead."""
    try:
        from ray.train.v2._internal.execution import context as train_context
    except ImportError:  # a Ray without that module: nothing to quiet
        return
    logging.getLogger(train_context.__file__).setLevel(logging.WARNING)


@dataclass
class _Worker:
    """One worker's share of the run: its config, its place in the group and its engine."""
    config: dict  # the loop config the driver sent
    cfg: Any  # RunConfig
    rank: int
    world: int
    engine: Any  # deepspeed.DeepSpeedEngine
    scheduler: Any  # the LR scheduler DeepSpeed steps
    device: torch.device
    tokenizer: Any  # LayoutTokenizer
    total_steps: int  # optimizer steps the schedules span
    base_wd: list[float]  # weight decay per param group before any schedule scales it

    @property
    def micro(self) -> int:
        return self.config["micro_batch"]

    @property
    def run_dir(self) -> Path:
        return Path(self.config["run_dir"])

    def apply_schedules(self) -> dict:
        return _apply_schedules(self.engine, self.cfg, self.engine.global_steps, self.total_steps, self.micro,
                                self.world, self.base_wd)

    def all_sum(self, values: list[float]) -> list[float]:
        return _all_sum(values, self.world, self.device)


def _build_model(cfg, config: dict):
    from layoutray.model.artifact import read_artifact
    from layoutray.model.network import build_model, load_weights

    model = build_model(cfg)
    model.activation_checkpointing = cfg.training.activation_checkpointing
    if config.get("init_from"):
        sd, _, _ = read_artifact(config["init_from"])
        load_weights(model, sd)  # (the dense head may be new: it trains from scratch)
    return model


def _setup_worker(config: dict) -> _Worker:
    """Seeds, the model and its DeepSpeed engine, optimizer and LR schedule."""
    import deepspeed
    import ray.train

    from layoutray.config import config_from_dict
    from layoutray.model.tokenizer import LayoutTokenizer
    from layoutray.schedules import lr_lambda_from_config

    cfg = config_from_dict(config["run_config"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(config["threads_per_worker"])))
    torch.manual_seed(cfg.training.seed + rank)
    model = _build_model(cfg, config)
    tokenizer = LayoutTokenizer(bins=cfg.model.coord_bins)

    steps_per_epoch = config["steps_per_epoch"]  # optimizer steps (global batches) per epoch
    total_steps = planned_total_steps(cfg.schedule, cfg.training.batch_size, steps_per_epoch, cfg.training.epochs,
                                      bool(cfg.training.max_steps_per_epoch), config["micro_batch"], world)
    optimizer = make_optimizer(model, cfg.training)
    base_wd = [g["weight_decay"] for g in optimizer.param_groups]
    lr_fn = lr_lambda_from_config(cfg.schedule, total_steps)
    engine, _, _, scheduler = deepspeed.initialize(
        model=model, optimizer=optimizer, config=_ds_config(config, world),
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, lr_fn))
    device = torch.device(engine.device)  # cpu, or the GPU Ray Train gave this worker
    if world == 1 and cfg.deepspeed.zero_stage == 0:
        # One process: DeepSpeed would still flatten every gradient, all-reduce it with itself
        # and copy it back after each backward (1.5% of a Phase 1 step on CPU).
        engine.enable_backward_allreduce = False
    return _Worker(config, cfg, rank, world, engine, scheduler, device, tokenizer, total_steps, base_wd)


def _restore(w: _Worker) -> dict:
    """The loop's state: fresh, or from Ray Train's checkpoint after a restart or --resume."""
    import ray.train

    state = {"epoch": 0, "best_val_loss": math.inf, "bad_epochs": 0, "samples": 0, "restarts": 0}
    ckpt = ray.train.get_checkpoint()
    if ckpt:
        with ckpt.as_directory() as d:
            _, client = w.engine.load_checkpoint(d, tag=CKPT_TAG)
        state.update(client["state"])
        state["restarts"] += 1
        if w.rank == 0:
            _say(f"[layoutray] resumed from checkpoint after epoch {state['epoch']} "
                 f"(step {w.engine.global_steps})")
    if w.rank == 0:  # rows of epochs that will run again (none on a fresh start) go
        _pull_history(w)
        _trim_history(w.run_dir / "metrics.jsonl", state["epoch"])
    return state


def _pull_history(w: _Worker) -> None:
    """A run in object storage (--output s3://...): rank 0 stages the run's history locally, from
    the run's URI when this node has none (a resumed run, or rank 0 on another node)."""
    uri = w.config.get("run_uri")
    if not uri:
        return
    from layoutray import storage

    w.run_dir.mkdir(parents=True, exist_ok=True)
    remote = storage.join(uri, "metrics.jsonl")
    if not (w.run_dir / "metrics.jsonl").exists() and storage.exists(remote):
        storage.copy_file(remote, w.run_dir / "metrics.jsonl")


def _push_history(w: _Worker) -> None:
    """...and uploads it with TensorBoard's files after every epoch, so they outlive the node."""
    uri = w.config.get("run_uri")
    if uri:
        from layoutray import storage

        storage.copy_file(w.run_dir / "metrics.jsonl", storage.join(uri, "metrics.jsonl"))
        storage.copy_dir(w.run_dir / "tensorboard", storage.join(uri, "tensorboard"))


def _open_writer(w: _Worker):
    if w.rank != 0:
        return None
    from torch.utils.tensorboard import SummaryWriter
    return SummaryWriter(str(w.run_dir / "tensorboard"))


def _train_step(w: _Worker, batch: dict) -> tuple[float, float | None, bool]:
    """(token loss, dense loss or None, whether an optimizer step happened) of one micro-batch."""
    from layoutray.model.constraints import aesthetic_objective
    from layoutray.model.network import training_losses

    tokens = batch["tokens"]
    dec_in, targets = tokens[:, :-1], None  # AR: teacher forcing on the next tokens
    if w.cfg.model.decoder == "diffusion":  # a noisy canvas and its masked places (diffusion.py)
        from layoutray.model.diffusion import training_pair
        dec_in, targets = training_pair(w.engine.module, tokens, batch["spec"])
    out = w.engine(batch["image"], batch["has_image"], batch["spec"], dec_in,
                   dense=w.cfg.training.dense_weight > 0)
    objective, loss, dense = training_losses(w.engine.module, out, tokens, batch["has_image"], w.cfg.training,
                                             targets)
    extra = aesthetic_objective(w.cfg, out, tokens, w.tokenizer)  # level full/advanced: soft alignment, overlap
    if extra is not None:
        objective = objective + extra
    dense_loss = None if dense is None else float(dense.detach())
    w.engine.backward(objective)
    step_before = w.engine.global_steps
    w.engine.step()
    return float(loss.detach()), dense_loss, w.engine.global_steps != step_before


def _train_epoch(w: _Worker, shard, epoch: int, live: dict) -> tuple[dict, dict]:
    """One pass over this rank's train shard: (epoch statistics, the schedules' live settings).

    Every rank takes a step only when all of them have a batch (`_all_have`, a collective), so
    an uneven shard ends the epoch for all ranks at once instead of hanging the others."""
    from layoutray.data.batches import BadRowReport, iter_torch_batches, on_device

    cfg, engine = w.cfg, w.engine
    max_steps = cfg.training.max_steps_per_epoch
    t0 = time.perf_counter()
    engine.train()
    report = BadRowReport()
    it = on_device(iter_torch_batches(shard, w.micro, drop_last=True, report=report,
                                      max_bad_fraction=cfg.data.max_bad_fraction,
                                      local_shuffle_buffer_size=256,
                                      local_shuffle_seed=cfg.training.seed + epoch), w.device)
    loss_sum, loss_n, samples, first_step = 0.0, 0, 0, engine.global_steps
    dense_sum, data_wait = 0.0, 0.0
    while True:
        tw = time.perf_counter()
        batch = next(it, None)
        data_wait += time.perf_counter() - tw
        if not _all_have(batch is not None, w.world, w.device):
            break
        loss, dense, stepped = _train_step(w, batch)
        if dense is not None:
            dense_sum += dense
        loss_sum, loss_n = loss_sum + loss, loss_n + 1
        samples += batch["tokens"].shape[0]
        if stepped:  # an optimizer step happened: the schedules move on to the next one
            live = w.apply_schedules()
            if max_steps and engine.global_steps - first_step >= max_steps:
                break
    train_secs = time.perf_counter() - t0
    if batch is not None:
        for _ in it:  # drain so the shard's pass finishes and the bad-row check runs
            pass
    train_loss, samples_all, dense_loss, data_wait, busy_secs = w.all_sum(
        [loss_sum / max(1, loss_n), float(samples), dense_sum / max(1, loss_n), data_wait, train_secs])
    return {"train_loss": train_loss / w.world, "samples_all": samples_all, "dense_loss": dense_loss / w.world,
            "data_wait": data_wait / w.world, "busy_secs": busy_secs / w.world, "train_secs": train_secs,
            "bad_rows": report.bad_rows, "started": t0}, live


def _validate(w: _Worker, shard) -> tuple[float, float]:
    """(loss, token accuracy) over every rank's val shard: each rank evaluates its own, then sums."""
    from layoutray.data.batches import iter_torch_batches, on_device
    from layoutray.eval.evaluate import evaluate_batches

    vs = evaluate_batches(w.engine.module, w.tokenizer, on_device(iter_torch_batches(shard, 32), w.device),
                          max_elements=w.cfg.model.max_elements, modes=(), generate_limit=0)
    tot = w.all_sum([vs["loss"] * vs["examples"], vs["token_accuracy"] * vs["examples"], vs["examples"]])
    return tot[0] / max(1, tot[2]), tot[1] / max(1, tot[2])


def _end_epoch(state: dict, cfg, epoch: int, val_loss: float, samples_all: float) -> bool:
    """Fold the epoch into the state; True when early stopping's patience has run out."""
    state["samples"] += int(samples_all)
    if val_loss < state["best_val_loss"] - cfg.validation.min_delta:
        state["best_val_loss"], state["bad_epochs"] = val_loss, 0
    else:
        state["bad_epochs"] += 1
    state["epoch"] = epoch
    return state["bad_epochs"] >= cfg.validation.patience


def _epoch_metrics(w: _Worker, state: dict, stats: dict, val_loss: float, val_acc: float, stop: bool,
                   live: dict) -> dict:
    """What every rank reports for the epoch (rank 0 adds generation metrics and timing)."""
    engine = w.engine
    metrics = {
        "epoch": state["epoch"], "train_loss": stats["train_loss"], "val_loss": val_loss,
        "val_token_accuracy": val_acc, "lr": w.scheduler.get_last_lr()[0],
        "samples_per_s": stats["samples_all"] / max(stats["train_secs"], 1e-9),
        # Seconds the loop waited for its next batch, and the epoch's training seconds, both means
        # over ranks: a wait near 0 means Ray Data keeps up; a large share means input-bound.
        "train_seconds": stats["busy_secs"], "data_wait_s": stats["data_wait"],
        "global_step": engine.global_steps, "batch_size": engine.train_batch_size(),
        "bad_rows": stats["bad_rows"], "best_val_loss": state["best_val_loss"], "restarts": state["restarts"],
        "early_stop": stop, **live,
    }
    if w.cfg.training.dense_weight:  # train_loss stays the token loss, comparable with val_loss
        metrics["train_dense_loss"] = stats["dense_loss"]
    if w.device.type == "cuda":  # what docs/scaling.md's plan predicts per GPU
        metrics["gpu_max_memory_gib"] = torch.cuda.max_memory_allocated(w.device) / 2**30
    return metrics


def _generation_metrics(w: _Worker, sd: dict) -> dict:
    """Generated-layout metrics on a fixed validation subset, from a plain copy of the consolidated
    weights: generation reads weights directly, which ZeRO-3 shards. On the worker's device: a
    Phase 4 model generating on the CPU would take longer than a GPU epoch."""
    import itertools

    from layoutray.data.batches import iter_local_batches, on_device
    from layoutray.eval.evaluate import evaluate_batches
    from layoutray.model.network import build_model

    cfg = w.cfg
    plain = build_model(cfg, dropout=0.0)
    plain.load_state_dict(sd)
    plain.to(w.device)
    n_batches = math.ceil(cfg.validation.generate_examples / 32)
    val_batches = iter_local_batches(w.config["data_dir"], "val", cfg, 32, train=False)
    gen = evaluate_batches(
        plain, w.tokenizer, on_device(itertools.islice(val_batches, n_batches), w.device),
        max_elements=cfg.model.max_elements, modes=("both",), generate_limit=cfg.validation.generate_examples)
    return {f"val_{k}": gen[k] for k in ("element_f1@0.5", "element_f1@0.75", "mean_iou", "alignment",
                                         "overlap", "validity") if k in gen}


def _say_epoch(w: _Worker, metrics: dict, stats: dict) -> None:
    epoch, epochs, epoch_secs = metrics["epoch"], w.cfg.training.epochs, metrics["epoch_seconds"]
    left = (epochs - epoch) * epoch_secs
    gen_s = (f"  F1@0.5 {metrics['val_element_f1@0.5']:.3f}  mIoU {metrics['val_mean_iou']:.3f}"
             if "val_element_f1@0.5" in metrics else "")
    _say(f"[layoutray] epoch {epoch}/{epochs}  train {stats['train_loss']:.4f}  "
         f"val {metrics['val_loss']:.4f}  acc {metrics['val_token_accuracy']:.3f}{gen_s}  "
         f"{metrics['samples_per_s']:.0f} samples/s  "
         f"(data wait {stats['data_wait'] / max(stats['busy_secs'], 1e-9):.0%})  {epoch_secs:.1f}s  "
         f"~{left / 60:.1f} min left" + ("  (early stop)" if metrics["early_stop"] else ""))


def _write_history(w: _Worker, metrics: dict, writer) -> None:
    # Written before the report so a crash cannot lose an epoch; a resumed run drops rows past
    # its checkpoint (see _trim_history), so none is kept twice.
    with open(w.run_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(metrics) + "\n")
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            writer.add_scalar(k, v, metrics["epoch"])
    writer.flush()
    _push_history(w)


def _checkpoint_and_report(w: _Worker, state: dict, metrics: dict, stats: dict, writer) -> None:
    """Save the checkpoint (with the exported model in it) and report the epoch: every rank
    calls this, since the saves, the weight gathers and `ray.train.report` are collective."""
    import ray.train
    from ray.train import Checkpoint

    from layoutray.model.artifact import export_artifact

    cfg, epoch = w.cfg, state["epoch"]
    with tempfile.TemporaryDirectory() as d:
        w.engine.save_checkpoint(d, tag=CKPT_TAG, client_state={"state": dict(state)})
        sd = _full_state_dict(w.engine, cfg.deepspeed.zero_stage, w.rank)  # collective under ZeRO-3
        if w.rank == 0:
            if cfg.validation.generate_examples and epoch % cfg.validation.every_epochs == 0:
                metrics.update(_generation_metrics(w, sd))
            export_artifact(sd, cfg, Path(d) / "model", metadata={"epoch": epoch, "val_loss": metrics["val_loss"]},
                            lineage=w.config.get("lineage"))  # built by the driver (layoutray.lineage)
            metrics["epoch_seconds"] = time.perf_counter() - stats["started"]
            _say_epoch(w, metrics, stats)
            _write_history(w, metrics, writer)
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(d))


def train_loop_per_worker(config: dict) -> None:
    """Ray Train's entry point on every worker: set up, restore, then per epoch train, validate,
    checkpoint and report, until the epochs run out or early stopping ends the run."""
    import ray.train

    _quiet_ray_train_reports()
    w = _setup_worker(config)
    state = _restore(w)
    live = w.apply_schedules()
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    writer = _open_writer(w)
    while state["epoch"] < w.cfg.training.epochs:
        epoch = state["epoch"] + 1
        stats, live = _train_epoch(w, train_shard, epoch, live)
        val_loss, val_acc = _validate(w, val_shard)
        stop = _end_epoch(state, w.cfg, epoch, val_loss, stats["samples_all"])
        metrics = _epoch_metrics(w, state, stats, val_loss, val_acc, stop, live)
        _checkpoint_and_report(w, state, metrics, stats, writer)
        if stop:
            break
    if writer:
        writer.close()
