"""The training driver: resolve the config, build the Ray datasets and the TorchTrainer,
run it, export the serving artifact and score it on the test split.

    layoutray train --data sections --phase auto
    python -m trainables.train --data sections --phase phase1 --set training.epochs=5
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python -m trainables.train --data /mnt/data/sections --output /mnt/runs

A run directory `<output>/<name>/` holds Ray Train's checkpoints, `metrics.jsonl`,
`tensorboard/`, `config.yaml`, the exported `model/` and `metrics.json` (test split).

`--output` and `--data` may be object-storage URIs (`s3://bucket/runs`, layoutray.storage). Ray
Train then writes its checkpoints there through the pyarrow filesystem; the workers write history
and TensorBoard into a local staging directory (layoutray.storage.cache_dir) that rank 0 uploads
after every epoch, and the driver uploads `config.yaml`, `model/` and `metrics.json`. A run that
stops because the store went away resumes from its last checkpoint there with `--resume`.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from layoutray import storage
from layoutray.config import PHASES, REPO_ROOT, ConfigError, RunConfig, choose_phase, dump_yaml, load_config
from layoutray.data.dataset import count_examples
from layoutray.runtime import check_gpus, init_ray, local_cpus

if TYPE_CHECKING:
    from layoutray.data.stream import Source


def resolve_config(data: str | None, phase: str = "auto", config_path: str | None = None,
                   overrides: list[str] = ()) -> tuple[RunConfig, str]:
    """(config, why this phase). `--phase auto` sizes by the dataset's examples, or, on the
    synthetic stream, by the sections of one epoch (data.synth_per_epoch)."""
    overrides = list(overrides)
    if config_path:
        return load_config(config_path, overrides), f"config file {config_path}"
    if phase != "auto":
        return load_config(phase=phase, overrides=overrides), "chosen with --phase"
    base = load_config(phase="phase1", overrides=overrides)
    source = data_source(data, base)
    examples = base.data.synth_per_epoch if source.is_synth else sum(count_examples(source.path).values())
    choice = choose_phase(examples)
    return load_config(phase=choice.phase, overrides=overrides), choice.reason


def data_source(data: str | None, cfg: RunConfig) -> "Source":
    """`--data`, else the config's data.source; a ConfigError when neither names one."""
    from layoutray.data.stream import parse_source

    text = data or cfg.data.source
    if not text:
        raise ConfigError("--data", "no training data: pass --data DIR (a dataset) or --data synth[:SEED] "
                                    "(fresh synthetic sections), or set data.source")
    return parse_source(text)


def check_local_gpus(cfg: RunConfig, address: str | None = None) -> None:
    if cfg.scaling.use_gpu:
        check_gpus(max(1, cfg.scaling.num_workers), cfg.scaling.gpus_per_worker, key="scaling.use_gpu",
                   what=f"the {cfg.phase} config", address=address,
                   fix="on a CPU machine pass --set scaling.use_gpu=false --set scaling.gpus_per_worker=0 "
                       "--set deepspeed.precision=fp32")


def steps_per_epoch(cfg: RunConfig, train_examples: int) -> int:
    """Optimizer steps in one epoch over `train_examples`, capped by training.max_steps_per_epoch."""
    n = max(1, train_examples // cfg.training.batch_size)
    return min(n, cfg.training.max_steps_per_epoch) if cfg.training.max_steps_per_epoch else n


def check_init_from(model_dir: str, cfg: RunConfig) -> str:
    """The absolute path of an artifact `--init-from` can load into cfg's model.

    Checked in the driver, before Ray starts: the workers run in another directory, where a
    relative path would not resolve, and a failure there would be retried max_failures times."""
    from layoutray.model.artifact import ArtifactError, build_model_meta, read_artifact

    path = storage.absolute(model_dir)
    try:
        state, old_cfg, _ = read_artifact(path)
    except ArtifactError as e:
        raise ConfigError("--init-from", str(e)) from None
    ours = build_model_meta(cfg).state_dict()
    # The training-only dense head may be absent on either side (see model.load_weights).
    differ = sorted(k for k in set(ours) ^ set(state) if not k.startswith("dense_head."))
    differ += sorted(k for k in set(ours) & set(state) if ours[k].shape != state[k].shape)
    if differ:
        k = differ[0]
        shapes = (f"{tuple(state[k].shape) if k in state else 'absent'} in the artifact, "
                  f"{tuple(ours[k].shape) if k in ours else 'absent'} here")
        theirs, mine = old_cfg.model.__dict__, cfg.model.__dict__
        keys = ", ".join(f"model.{f} {theirs[f]} vs {mine[f]}" for f in mine if theirs[f] != mine[f])
        if PHASES.index(cfg.phase) > PHASES.index(old_cfg.phase):
            fix = (f"to grow it, run `layoutray upgrade --model {path} --to {cfg.phase} --out DIR` "
                   f"and pass --init-from DIR")
        else:
            fix = "train with the artifact's model settings"
        raise ConfigError("--init-from", f"{path} holds a {old_cfg.phase} model that does not fit this run's "
                                         f"{cfg.phase} model ({keys}; {len(differ)} tensors differ, e.g. {k}: "
                                         f"{shapes}); {fix}")
    return str(path)


def evaluate_test_split(model_dir: str, data_dir: str, cfg: RunConfig) -> dict:
    """The exported model's metrics on the test split.

    In this process when it has what the run trained on. A GPU run driven from a process without
    CUDA (`ray job submit` onto a cluster whose head node has no GPU) sends the evaluation to a
    GPU node as a Ray task instead: generating a Phase 4 test split on the head's CPU takes
    minutes. Both paths must be readable there, as training already required of them."""
    import torch

    from layoutray.eval.evaluate import evaluate_artifact

    if not cfg.scaling.use_gpu or torch.cuda.is_available():
        return evaluate_artifact(model_dir, data_dir, "test")
    import ray
    print("evaluating the test split on a GPU node (this process has no CUDA)", flush=True)
    task = ray.remote(num_gpus=min(1.0, cfg.scaling.gpus_per_worker))(evaluate_artifact)
    return ray.get(task.remote(model_dir, data_dir, "test"))


@dataclass
class RunPlace:
    """Where a run lives. `run_dir` is the local directory the workers write; with a URI
    `--output`, `uri` is the run's place in object storage (its checkpoints and uploads) and
    `run_dir` a staging copy. `where` names the run to the user either way."""

    run_dir: Path
    storage_path: str  # Ray Train's storage_path: a local directory, or the URI's path in its filesystem
    filesystem: object = None  # Ray Train's storage_filesystem (pyarrow) for a URI, else None
    uri: str | None = None

    @property
    def where(self) -> str:
        return self.uri or str(self.run_dir)


def _prepare_run_dir(cfg: RunConfig, name: str, output: str, resume: bool) -> RunPlace:
    """The run's place, created with the run's config.yaml (local or uploaded)."""
    if storage.is_uri(output):
        return _prepare_remote_run(cfg, name, output, resume)
    root = Path(output).resolve()
    run_dir = root / name
    if run_dir.exists() and any(run_dir.glob("checkpoint_*")) and not resume:
        raise ConfigError("--name", f"run '{name}' already exists in {root}; pass --resume to continue it "
                                    f"or choose another --name")
    if resume and not run_dir.exists():
        raise ConfigError("--name", f"nothing to resume: {run_dir} does not exist")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    return RunPlace(run_dir, str(root))


def _prepare_remote_run(cfg: RunConfig, name: str, output: str, resume: bool) -> RunPlace:
    uri = storage.join(output, name)
    names = storage.list_dir(uri)
    if any(n.startswith("checkpoint_") for n in names) and not resume:
        raise ConfigError("--name", f"run '{name}' already exists in {output}; pass --resume to continue it "
                                    f"or choose another --name")
    if resume and not names:
        raise ConfigError("--name", f"nothing to resume: {uri} does not exist")
    run_dir = storage.cache_dir(uri, "runs")
    shutil.rmtree(run_dir, ignore_errors=True)  # staging only: what counts is at the URI
    run_dir.mkdir(parents=True)
    if "metrics.jsonl" in names:  # the history a resumed run continues (and trims)
        storage.copy_file(storage.join(uri, "metrics.jsonl"), run_dir / "metrics.jsonl")
    (run_dir / "config.yaml").write_text(dump_yaml(cfg))
    storage.write_text(storage.join(uri, "config.yaml"), dump_yaml(cfg))
    fs, path = storage.resolve(output)
    return RunPlace(run_dir, path, fs, uri)


def _done_epochs(run_dir: Path, resume: bool) -> int:
    """Epochs a resumed run already has in metrics.jsonl (0 for a fresh run)."""
    if resume and (run_dir / "metrics.jsonl").exists():
        return sum(1 for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip())
    return 0


@dataclass
class DataPlan:
    """Where a run's rows come from: `eval_dir` holds val and test (a dataset directory, or the
    fixed splits a synthetic-stream run writes), `train_rows` is one epoch's size."""

    source: "Source"
    eval_dir: str
    train_rows: int
    synth_rows: int = 0  # fresh synthetic rows per epoch (all of them on the stream)


def plan_data(source: "Source", cfg: RunConfig, run_dir: Path | str) -> DataPlan:
    """`run_dir`: the run's directory or URI (a stream's fixed splits go there, where every
    worker can read them)."""
    from layoutray.data.stream import stream_size, write_eval_splits

    if source.is_synth:
        eval_dir = storage.join(run_dir, "eval-data")
        write_eval_splits(eval_dir, source.seed, cfg.data.synth_val, cfg.data.synth_test,
                          max_elements=cfg.model.max_elements, appearance=cfg.data.synth_appearance,
                          variety=cfg.data.synth_variety)
        rows = stream_size(cfg.data.synth_per_epoch)
        return DataPlan(source, eval_dir, rows, rows)
    root = storage.absolute(source.path)
    real = count_examples(root)["train"]
    w = cfg.data.synth_mix
    fresh = stream_size(round(real * w / (1 - w))) if w > 0 else 0
    return DataPlan(source, root, real + fresh, fresh)


def _build_datasets(cfg: RunConfig, plan: DataPlan, run_dir: Path, resume: bool) -> dict:
    from layoutray.data.pipeline import build_dataset, build_training_stream

    seed = cfg.training.seed
    # A resumed run continues the per-epoch augmentation and sampling draws (and the phi phase)
    # where it stopped instead of replaying epoch 1's.
    done = _done_epochs(run_dir, resume)
    if plan.synth_rows:
        stream_seed = plan.source.seed if plan.source.is_synth else seed
        train = build_training_stream(cfg, stream_seed=stream_seed, rows=plan.synth_rows, seed=seed, epoch_offset=done,
                                      parquet_root=None if plan.source.is_synth else plan.eval_dir)
    else:
        train = build_dataset(plan.eval_dir, "train", cfg, train=True, seed=seed, epoch_offset=done)
    datasets = {"train": train, "val": build_dataset(plan.eval_dir, "val", cfg, train=False, seed=seed)}
    for ds in datasets.values():  # two lines per dataset per epoch on the console otherwise
        ds.context.print_on_execution_start = False
    return datasets


def _loop_config(cfg: RunConfig, data_dir: str, run_dir: Path, init_from: str | None, n_steps: int,
                 run_uri: str | None = None) -> dict:
    """What `train_loop_per_worker` receives: plain data, since it travels to other processes."""
    return {
        "run_config": cfg.to_dict(), "data_dir": data_dir, "run_dir": str(run_dir), "run_uri": run_uri,
        "repo_root": str(REPO_ROOT), "micro_batch": cfg.micro_batch_size, "steps_per_epoch": n_steps,
        "threads_per_worker": max(1, int(cfg.scaling.cpus_per_worker)), "init_from": init_from,
        "deepspeed": {"zero_stage": cfg.deepspeed.zero_stage, "precision": cfg.deepspeed.precision,
                      "offload_optimizer": cfg.deepspeed.offload_optimizer},
        "training": {"batch_size": cfg.training.batch_size, "grad_clip": cfg.training.grad_clip},
    }


def _build_trainer(cfg: RunConfig, loop_config: dict, datasets: dict, name: str, place: RunPlace,
                   callbacks: list | None):
    import ray.train
    from ray.train import CheckpointConfig, DataConfig, FailureConfig, LoggingConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from layoutray.training.loop import train_loop_per_worker

    workers = max(1, cfg.scaling.num_workers)
    resources = {"CPU": cfg.scaling.cpus_per_worker}
    if cfg.scaling.use_gpu:
        resources["GPU"] = cfg.scaling.gpus_per_worker
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ScalingConfig(num_workers=workers, use_gpu=cfg.scaling.use_gpu,
                                     resources_per_worker=resources),
        datasets=datasets,
        # One worker reads each dataset whole. A streaming split would start a SplitCoordinator
        # actor per dataset, with nothing to split, whose start-up epoch 1 waits out: 18-19% of
        # epoch 1 was data wait at batch 16 against 3% unsplit (docs/benchmarks.md).
        dataset_config=DataConfig(datasets_to_split=["train", "val"] if workers > 1 else []),
        run_config=ray.train.RunConfig(
            name=name, storage_path=place.storage_path, storage_filesystem=place.filesystem,
            callbacks=callbacks or [],
            # The loop prints one progress line per epoch; Ray Train's per-report INFO lines
            # (the whole metrics dict, every checkpoint path) stay in its log files.
            logging_config=LoggingConfig(log_level="WARNING"),
            failure_config=FailureConfig(max_failures=cfg.checkpoint.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.num_to_keep,
                                               checkpoint_score_attribute="val_loss",
                                               checkpoint_score_order="min")),
    )


def _export_best(result, run_dir: Path):
    """Copy the best checkpoint's exported model (lowest val_loss) to `<run_dir>/model`."""
    best = result.get_best_checkpoint(metric="val_loss", mode="min") or result.checkpoint
    model_dir = run_dir / "model"
    with best.as_directory() as d:
        if model_dir.exists():
            shutil.rmtree(model_dir)
        shutil.copytree(Path(d) / "model", model_dir)
    return best, model_dir


def _fit(trainer, place: RunPlace, name: str):
    """`trainer.fit()`; when the run's object store cannot be reached afterwards, the failure is
    reported as that (naming the URI) rather than as a worker's traceback."""
    try:
        return trainer.fit()
    except Exception as e:
        if place.uri:
            try:
                storage.info(place.uri)
            except storage.StorageError as gone:
                raise storage.StorageError(f"training stopped: {gone}; the checkpoints written so far stay "
                                           f"there: pass --resume --name {name} to continue") from e
        raise


def _publish(place: RunPlace, *names: str) -> None:
    """Upload files or directories of the staging run directory to the run's URI."""
    for n in names if place.uri else ():
        local, remote = place.run_dir / n, storage.join(place.uri, n)
        if local.is_dir():
            storage.remove_dir(remote)
            storage.copy_dir(local, remote)
        else:
            storage.copy_file(local, remote)


def run_training(cfg: RunConfig, data: str | None, name: str, output: str = "runs", *, resume: bool = False,
                 init_from: str | None = None, address: str | None = None, callbacks: list | None = None,
                 evaluate_test: bool = True, tracking_tags: dict | None = None) -> dict:
    """Train, export `model/`, evaluate on test. Returns a summary dict.

    `data` is a dataset directory (or URI) or "synth[:SEED]" (None: the config's data.source);
    `output` a directory or a URI such as s3://bucket/runs. With tracking.backend mlflow the run is
    also an MLflow run (`tracking_tags` added to it) and the model a registry version (layoutray.tracking)."""
    from layoutray.tracking import start_training
    source = data_source(data, cfg)
    if init_from:
        init_from = check_init_from(init_from, cfg)
    place = _prepare_run_dir(cfg, name, output, resume)
    tracker, lineage = start_training(cfg, source, init_from, name, place.where, resume, tracking_tags)
    run_dir = place.run_dir
    plan = plan_data(source, cfg, place.where)
    loop_config = _loop_config(cfg, plan.eval_dir, run_dir, init_from, steps_per_epoch(cfg, plan.train_rows),
                               place.uri)
    loop_config["lineage"] = lineage

    init_ray(address, num_cpus=local_cpus(max(1, cfg.scaling.num_workers), cfg.scaling.cpus_per_worker))
    check_local_gpus(cfg, address)
    import ray.data
    ray.data.DataContext.get_current().enable_progress_bars = False  # per-epoch bars drown the progress lines
    datasets = _build_datasets(cfg, plan, run_dir, resume)
    trainer = _build_trainer(cfg, loop_config, datasets, name, place, [*(callbacks or []), *tracker.callbacks()])
    t0 = time.time()
    result = tracker.guard(_fit, trainer, place, name)
    train_secs = time.time() - t0
    if result.error:
        raise result.error

    best, model_dir = _export_best(result, run_dir)
    _publish(place, "model")
    summary = {"run_dir": place.where, "model": storage.join(place.where, "model"), "phase": cfg.phase,
               "data": source.describe(), "train_seconds": round(train_secs, 1), "best_checkpoint": best.path,
               "last_epoch_metrics": result.metrics}
    if evaluate_test and count_examples(plan.eval_dir).get("test"):
        test = tracker.guard(evaluate_test_split, str(model_dir) if not place.uri else summary["model"],
                             plan.eval_dir, cfg)
        (run_dir / "metrics.json").write_text(json.dumps(test, indent=2) + "\n")
        _publish(place, "metrics.json")
        summary["test_metrics"] = storage.join(place.where, "metrics.json")
        summary["test"] = test
    tracker.finish(run_dir, summary)
    return summary
