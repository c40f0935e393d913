"""Schedule sweeps with Ray Tune: arm x seed (x learning rate), each trial a full Ray Train run.

    layoutray sweep --config configs/sweeps/phi_vs_baseline_small.yaml [--resume] [--full-budget]

The sweep file is parsed by layoutray/sweep_config.py; this module holds the Tune side. The
Ray 2.60 pattern: a Tune *function* trainable calls `run_training(...)` (TorchTrainer.fit())
with `TuneReportCallback`, so each epoch's `ray.train.report` is one Tune iteration and ASHA sees
validation loss as it goes. Each trial's Train run lives in the trial directory under a name
unique to the trial.

The experiment is `<storage_path>/<name>/`; the report goes to `<storage_path>/<name>/report/`.
`--resume` restores the experiment with `Tuner.restore(..., resume_errored=True)`: finished trials
keep their results and are not rerun; an interrupted trial continues from its last Train
checkpoint.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from layoutray import storage
from layoutray.config import ConfigError
from layoutray.data.dataset import count_examples
from layoutray.runtime import check_gpus, init_ray, local_cpus
from layoutray.sweep_config import SweepConfig, load_sweep, sweep_from_dict
from layoutray.training.driver import steps_per_epoch
from trainables.entry import add_tracking

DONE_FILE = "sweep_trial.json"  # written into a trial's directory when its training finished
SPEC_FILE = "sweep_spec.json"  # the sweep config as run, in the experiment directory


# ---------------------------------------------------------------------------- the trial


def _read_history(run_dir: Path) -> list[dict]:
    """metrics.jsonl of a Train run, one row per epoch (a resumed run may repeat an epoch: keep the last)."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    rows: dict[int, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            rows[int(r.get("epoch", len(rows) + 1))] = r
    return [rows[e] for e in sorted(rows)]


def sweep_trial(config: dict) -> None:
    """The Tune function trainable: one Ray Train run for (arm, seed, lr)."""
    import ray.tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from layoutray.training.driver import run_training

    spec = sweep_from_dict(config["sweep"], "(trial config)")
    arm, seed, lr = config["arm"], int(config["seed"]), config.get("lr")
    ctx = ray.tune.get_context()
    trial_dir = Path(ctx.get_trial_dir())
    done = trial_dir / DONE_FILE
    if done.is_file():  # finished before the driver died, but Tune had not recorded it: don't retrain
        final = json.loads(done.read_text())
        ray.tune.report(final["final_metrics"])
        return
    cfg, tags = spec.run_config(arm, seed, lr), None
    if config.get("tracking"):  # a child run of the sweep's MLflow run
        from layoutray.tracking import trial_tracking
        cfg, tags = trial_tracking(config["tracking"], cfg, arm, seed, lr)
    name = f"train_{ctx.get_trial_id()}"
    run_dir = trial_dir / name
    resume = run_dir.is_dir() and any(run_dir.glob("checkpoint_*"))
    t0 = time.time()
    summary = run_training(cfg, config["data_dir"], name, str(trial_dir), resume=resume,
                           callbacks=[TuneReportCallback()], evaluate_test=False, tracking_tags=tags)
    history = _read_history(run_dir)
    done.write_text(json.dumps({"arm": arm, "seed": seed, "lr": lr, "run_dir": str(run_dir),
                                "wall_seconds_last_attempt": time.time() - t0, "resumed": resume,
                                "final_metrics": history[-1] if history else summary.get("last_epoch_metrics", {}),
                                "epochs_planned": cfg.training.epochs}, default=str) + "\n")


# ---------------------------------------------------------------------------- the driver


def _ensure_data(spec: SweepConfig) -> str:
    if spec.data.stream:  # fresh synthetic sections every epoch; val/test fixed by the seed
        return f"synth:{spec.data.seed}"
    d = storage.absolute(spec.data.dir)  # a directory or a URI (s3://bucket/sections)
    if not (storage.is_dir(d) and storage.list_dir(d)):
        if not spec.data.synthesize_if_missing:
            raise ConfigError("data.dir", f"{d} does not exist (set data.synthesize_if_missing: true to make it)")
        from layoutray.data.synth import synthesize
        print(f"[layoutray] synthesizing {spec.data.examples} examples into {d}", flush=True)
        synthesize(d, spec.data.examples, seed=spec.data.seed)
    return str(d)


def _start_ray(spec: SweepConfig, config_path: str | None) -> None:
    """Start (or join) Ray and refuse a GPU sweep a local instance cannot run, before any trial."""
    r = spec.resources
    per_trial = r.trial_cpus + r.workers * r.cpus_per_worker
    # The dashboard must run, or ASHA-stopped trials leak their placement groups.
    init_ray(num_cpus=local_cpus(1, spec.max_concurrent_trials * per_trial), log_to_driver=True)
    if r.use_gpu:
        check_gpus(r.workers, r.gpus_per_worker, key="resources.use_gpu", what="one trial", source=config_path,
                   fix="set resources.use_gpu: false and resources.gpus_per_worker: 0 "
                       "(configs/sweeps/phi_vs_baseline_small.yaml is the CPU sweep)")


def schedule_rows_per_arm(spec: SweepConfig, data_dir: str) -> dict[str, list[dict]]:
    """Learning rate and batch size over each arm's (and learning rate's) run, for schedules.png."""
    from layoutray.schedules import schedule_rows
    out = {}
    from layoutray.data.stream import stream_size
    train_examples = None if spec.data.stream else count_examples(data_dir)["train"]
    for arm in spec.arms:
        for lr in spec.learning_rates or [None]:
            cfg = spec.run_config(arm.name, spec.seeds[0], lr)
            rows = stream_size(cfg.data.synth_per_epoch) if train_examples is None else train_examples
            steps = max(1, steps_per_epoch(cfg, rows) * cfg.training.epochs)
            s = cfg.schedule
            kw = {"min_lr_ratio": s.min_lr_ratio} if s.lr == "warmup_cosine" else {}
            out[_label(arm.name, lr, spec)] = schedule_rows(
                s.lr, steps, cfg.training.learning_rate, round(s.warmup_fraction * steps), s.batch,
                cfg.training.batch_size, s.max_batch_size, s.batch_phases, cfg.micro_batch_size,
                max(1, cfg.scaling.num_workers), **kw)
    return out


def _label(arm: str, lr, spec: SweepConfig) -> str:
    return f"{arm}@lr={lr:g}" if lr is not None and len(spec.learning_rates) > 1 else arm


def _trial_history(res) -> list[dict]:
    """A trial's epochs from its Train run's metrics.jsonl, else from Tune's own record."""
    run_dirs = sorted(Path(res.path).glob("train_*"))
    history = _read_history(run_dirs[-1]) if run_dirs else []
    if history:
        return history
    try:
        df = res.metrics_dataframe
        return df.to_dict("records") if df is not None else []
    except Exception:  # noqa: BLE001 - a trial that never reported
        return []


def trial_records(results, spec: SweepConfig) -> list[dict]:
    """Per-trial records for `report.write_report` from a Tune ResultGrid."""
    kinds = {a.name: spec.arm_kind(a.name) for a in spec.arms}
    records = []
    for res in results:
        c = res.config or {}
        arm, seed, lr = c.get("arm"), c.get("seed"), c.get("lr")
        trial_dir = Path(res.path)
        history = _trial_history(res)
        done = trial_dir / DONE_FILE
        planned = spec.run_config(arm, seed, lr).training.epochs if arm else 0
        if res.error is not None and not done.is_file():
            status = "error"
        elif done.is_file() and (len(history) >= planned or (history and history[-1].get("early_stop"))):
            status = "completed"
        else:
            status = "stopped"
        records.append({"arm": _label(arm, lr, spec), "kind": kinds.get(arm, "baseline"), "seed": seed, "lr": lr,
                        "trial_id": trial_dir.name, "status": status, "history": history,
                        "error": repr(res.error) if res.error is not None else ""})
    return records


def _resumed_settings(spec: SweepConfig, full_budget: bool) -> tuple[SweepConfig, bool, str]:
    """(spec, full_budget, data_dir) as the sweep was started: a resumed sweep must not change."""
    from ray import tune

    exp_dir = spec.experiment_dir
    if not tune.Tuner.can_restore(str(exp_dir)):
        raise ConfigError("--resume", f"nothing to resume: no Tune experiment in {exp_dir}")
    spec_file = exp_dir / SPEC_FILE
    saved = json.loads(spec_file.read_text()) if spec_file.is_file() else {}
    if saved.get("sweep") and saved["sweep"] != spec.to_dict():
        print("[layoutray] warning: the sweep file changed since the run started; "
              "resuming with the original settings", flush=True)
        spec = sweep_from_dict(saved["sweep"], str(spec_file))
    if full_budget != saved.get("full_budget", full_budget):
        print("[layoutray] warning: --full-budget cannot change on resume; using the original setting", flush=True)
    return spec, saved.get("full_budget", full_budget), saved.get("data_dir") or _ensure_data(spec)


def _new_tuner(spec: SweepConfig, trainable, asha: bool, data_dir: str, tracking: dict | None = None):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    epochs = max(spec.run_config(a.name, spec.seeds[0], None).training.epochs for a in spec.arms)
    scheduler = None
    if asha:
        scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=min(spec.asha.grace_period, epochs),
                                  reduction_factor=spec.asha.reduction_factor)
    param_space = {"arm": tune.grid_search([a.name for a in spec.arms]),
                   "seed": tune.grid_search(spec.seeds),
                   "lr": tune.grid_search(spec.learning_rates) if spec.learning_rates else None,
                   "sweep": spec.to_dict(), "data_dir": data_dir, "tracking": tracking}
    return tune.Tuner(
        trainable, param_space=param_space,
        tune_config=tune.TuneConfig(metric=spec.asha.metric, mode="min", scheduler=scheduler,
                                    max_concurrent_trials=spec.max_concurrent_trials),
        run_config=tune.RunConfig(name=spec.name, storage_path=str(spec.experiment_dir.parent), verbose=1))


def _write_sweep_report(spec: SweepConfig, records: list[dict], report_dir: Path, data_dir: str, *,
                        asha: bool, full_budget: bool, config_path: str | None) -> dict:
    from trainables.report import write_report

    cmd = f"layoutray sweep --config {config_path or '<sweep.yaml>'}" + (" --full-budget" if full_budget else "")
    notes = [f"data: {data_dir}; seeds {spec.seeds}; base {spec.base_config or spec.phase} "
             f"with {' '.join(spec.overrides) or 'no overrides'}",
             "Arms: " + "; ".join(f"{a.name} ({spec.arm_kind(a.name)}): {' '.join(a.overrides) or 'base config'}"
                                  for a in spec.arms)]
    return write_report(records, report_dir, target_val_loss=spec.target_val_loss,
                        schedules=schedule_rows_per_arm(spec, data_dir), title=f"Sweep {spec.name}",
                        asha=asha, command=cmd, notes=notes, metric=spec.metric,
                        families={a.name: a.family for a in spec.arms},
                        asha_rungs=(spec.asha.grace_period, spec.asha.reduction_factor))


def _sweep_run(spec: SweepConfig, tracking: str | None, resume: bool):
    """With --tracking mlflow: the sweep's parent MLflow run (resumed with the sweep) and what
    each trial needs to open its child run; else (None, None)."""
    from layoutray.tracking import TrackedRun, tracking_from_flag

    cfg = tracking_from_flag(tracking)
    if cfg.backend != "mlflow":
        return None, None
    run = TrackedRun.open(cfg, f"sweep {spec.name}", f"sweep:{spec.experiment_dir}", {"layoutray.kind": "sweep"},
                          resume)
    return run, {"uri": run.uri, "experiment": cfg.experiment, "parent_run_id": run.run_id}


def _finish_sweep_run(run, report_dir: Path, records: list[dict]) -> None:
    if run is None:
        return
    run.log_path(report_dir, "report")
    statuses = [r["status"] for r in records]
    run.log_metrics({f"trials_{s}": statuses.count(s) for s in ("completed", "stopped", "error")})
    run.end(ok="error" not in statuses)


def run_sweep(spec: SweepConfig, *, resume: bool = False, full_budget: bool = False,
              config_path: str | None = None, tracking: str | None = None) -> dict:
    """Run (or resume) the sweep and write its report. Returns {experiment_dir, report_dir, summary, records}."""
    from ray import tune

    if storage.is_uri(spec.storage_path):
        return _run_sweep_staged(spec, resume=resume, full_budget=full_budget, config_path=config_path,
                                 tracking=tracking)
    if spec.baseline_search is not None:  # first the search whose winner is the tuned baseline arm
        from trainables.baseline_search import with_tuned_baseline
        spec, resume = with_tuned_baseline(spec, resume=resume, config_path=config_path)
    exp_dir = spec.experiment_dir
    if resume:
        spec, full_budget, data_dir = _resumed_settings(spec, full_budget)
    else:
        if exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
            raise ConfigError("name", f"sweep '{spec.name}' already exists in {exp_dir.parent}; "
                                      f"pass --resume to continue it or change name")
        data_dir = _ensure_data(spec)
    asha = spec.asha.enabled and not full_budget

    parent, trial_tracking = _sweep_run(spec, tracking, resume)
    _start_ray(spec, config_path)  # before the experiment directory exists: a refused sweep leaves none
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # keep the experiment state fresh for --resume
    # The trial reserves only its driver; TorchTrainer reserves the Train workers itself.
    trainable = tune.with_resources(sweep_trial, {"cpu": spec.resources.trial_cpus})
    if resume:
        print(f"[layoutray] resuming sweep {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        (exp_dir / SPEC_FILE).write_text(json.dumps({"sweep": spec.to_dict(), "full_budget": full_budget,
                                                     "data_dir": data_dir, "config_path": config_path},
                                                    indent=2) + "\n")
        tuner = _new_tuner(spec, trainable, asha, data_dir, trial_tracking)
    records = trial_records(tuner.fit(), spec)
    report_dir = exp_dir / "report"
    summary = _write_sweep_report(spec, records, report_dir, data_dir, asha=asha, full_budget=full_budget,
                                  config_path=config_path)
    _finish_sweep_run(parent, report_dir, records)
    return {"experiment_dir": str(exp_dir), "report_dir": str(report_dir), "summary": summary,
            "records": records}


def _run_sweep_staged(spec: SweepConfig, *, resume: bool, **kw) -> dict:
    """A sweep whose storage_path is a URI (s3://bucket/sweeps): it runs in a local staging copy of
    the experiment (fetched from `<storage_path>/<name>` first when resuming), uploaded there when
    it ends, also when it fails, so that --resume continues from what the bucket holds. Trials
    must run on this node's filesystem (one node, or Tune's own limits for a local storage_path)."""
    import dataclasses
    import shutil

    uri = storage.join(spec.storage_path, spec.name)
    staging = storage.cache_dir(uri, "sweeps")
    shutil.rmtree(staging, ignore_errors=True)
    local = dataclasses.replace(spec, storage_path=str(staging))
    if resume:
        storage.copy_dir(uri, local.experiment_dir)
    elif storage.list_dir(uri):
        raise ConfigError("name", f"sweep '{spec.name}' already exists in {spec.storage_path}; "
                                  f"pass --resume to continue it or change name")
    try:
        out = run_sweep(local, resume=resume, **kw)
    finally:
        if local.experiment_dir.is_dir():
            storage.copy_dir(local.experiment_dir, uri)
    return {**out, "experiment_dir": uri, "report_dir": storage.join(uri, "report")}


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, metavar="YAML")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--full-budget", action="store_true", help="no early stopping: every trial runs to the end")
    add_tracking(p)


def cmd_sweep(args) -> int:
    spec = load_sweep(args.config)
    out = run_sweep(spec, resume=args.resume, full_budget=args.full_budget, config_path=args.config,
                    tracking=args.tracking)
    print(f"[layoutray] report: {out['report_dir']}/report.md", flush=True)
    statuses = [r["status"] for r in out["records"]]
    print(f"[layoutray] trials: {len(statuses)} ({statuses.count('completed')} completed, "
          f"{statuses.count('stopped')} stopped, {statuses.count('error')} errored)", flush=True)
    return 1 if statuses.count("error") else 0


def main(argv: list[str] | None = None) -> int:
    """`python -m trainables.sweep ...` == `layoutray sweep ...` (for `ray job submit`)."""
    from trainables.entry import module_main
    return module_main("python -m trainables.sweep", add_arguments, cmd_sweep, argv)


if __name__ == "__main__":
    raise SystemExit(main())
