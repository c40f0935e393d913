"""Schedule sweeps with Ray Tune: arm x seed (x learning rate), each trial a full Ray Train run.

    layoutray sweep --config configs/sweeps/phi_vs_baseline_small.yaml [--resume] [--full-budget]

The Ray 2.60 pattern (shared/notes/ray-2.60.md): a Tune *function* trainable calls
`run_training(...)` (TorchTrainer.fit()) with `TuneReportCallback`, so each epoch's
`ray.train.report` is one Tune iteration and ASHA sees validation loss as it goes. Each trial's
Train run lives in the trial directory under a name unique to the trial.

The experiment is `<storage_path>/<name>/`; the report goes to `<storage_path>/<name>/report/`.
`--resume` restores the experiment with `Tuner.restore(..., resume_errored=True)`: finished trials
keep their results and are not rerun; an interrupted trial continues from its last Train
checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from layoutray.config import PHASES, REPO_ROOT, ConfigError, RunConfig, load_config
from layoutray.data.dataset import count_examples
from layoutray.runtime import check_gpus, init_ray, local_cpus
from layoutray.training.driver import steps_per_epoch

DONE_FILE = "sweep_trial.json"  # written into a trial's directory when its training finished
SPEC_FILE = "sweep_spec.json"  # the sweep config as run, in the experiment directory
PHI_KEYS = {"schedule.batch": "phi", "schedule.regularization": "phi", "schedule.sampler": "phi",
            "schedule.phi_phases": True}


# ---------------------------------------------------------------------------- the sweep file


def _need(key: str, ok: bool, what: str) -> None:
    if not ok:
        raise ConfigError(key, what)


def _strs(key: str, value) -> list[str]:
    _need(key, isinstance(value, list) and all(isinstance(v, str) for v in value), "must be a list of strings")
    return list(value)


def _num(key: str, value, lo: float | None = None, integer: bool = False, lo_open: bool = False):
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    _need(key, ok and not isinstance(value, bool), f"must be {'an integer' if integer else 'a number'}; got {value!r}")
    if lo is not None:
        _need(key, value > lo if lo_open else value >= lo, f"must be {'>' if lo_open else '>='} {lo}; got {value!r}")


@dataclass
class ArmSpec:
    name: str
    overrides: list[str] = field(default_factory=list)
    kind: str | None = None  # "phi" | "baseline"; derived from the resolved schedule when left out

    def __post_init__(self):
        _need("name", isinstance(self.name, str) and bool(self.name.strip()) and "/" not in self.name,
              f"must be a non-empty string without '/'; got {self.name!r}")
        self.overrides = _strs("overrides", self.overrides)
        _need("kind", self.kind in (None, "phi", "baseline"), f"must be 'phi' or 'baseline'; got {self.kind!r}")


@dataclass
class DataSpec:
    dir: str = "data/sweep_sections"
    synthesize_if_missing: bool = True
    examples: int = 400  # when synthesized
    seed: int = 0

    def __post_init__(self):
        _need("dir", isinstance(self.dir, str) and bool(self.dir), "must be a path")
        _need("synthesize_if_missing", isinstance(self.synthesize_if_missing, bool), "must be true or false")
        _num("examples", self.examples, 10, integer=True)
        _num("seed", self.seed, 0, integer=True)


@dataclass
class ResourcesSpec:
    trial_cpus: float = 0.5  # the trial actor (the Train driver); > 0
    workers: int = 1  # Train workers per trial
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        _num("trial_cpus", self.trial_cpus, 0, lo_open=True)
        _num("workers", self.workers, 1, integer=True)
        _num("cpus_per_worker", self.cpus_per_worker, 0, lo_open=True)
        _need("use_gpu", isinstance(self.use_gpu, bool), "must be true or false")
        _num("gpus_per_worker", self.gpus_per_worker, 0)
        _need("gpus_per_worker", not self.use_gpu or self.gpus_per_worker > 0, "must be > 0 when use_gpu is true")

    def overrides(self) -> list[str]:
        return [f"scaling.num_workers={self.workers}", f"scaling.cpus_per_worker={self.cpus_per_worker}",
                f"scaling.use_gpu={str(self.use_gpu).lower()}", f"scaling.gpus_per_worker={self.gpus_per_worker}"]


@dataclass
class AshaSpec:
    enabled: bool = True
    grace_period: int = 2  # epochs before a trial can be stopped
    reduction_factor: int = 3
    metric: str = "val_loss"

    def __post_init__(self):
        _need("enabled", isinstance(self.enabled, bool), "must be true or false")
        _num("grace_period", self.grace_period, 1, integer=True)
        _num("reduction_factor", self.reduction_factor, 2, integer=True)
        _need("metric", self.metric == "val_loss", f"must be 'val_loss' (what the sweep compares); got {self.metric!r}")


@dataclass
class SweepConfig:
    name: str
    arms: list[ArmSpec]
    seeds: list[int]
    target_val_loss: float
    phase: str | None = "phase1"  # base config: a phase name ...
    base_config: str | None = None  # ... or a phase YAML path (wins over phase)
    overrides: list[str] = field(default_factory=list)  # applied to every trial, before the arm's
    data: DataSpec = field(default_factory=DataSpec)
    learning_rates: list[float] = field(default_factory=list)  # empty: the base config's
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    max_concurrent_trials: int = 1
    asha: AshaSpec = field(default_factory=AshaSpec)
    storage_path: str = "runs/sweeps"
    min_seeds: int = 3  # refuse fewer seeds (tests set 1)

    def __post_init__(self):
        _need("name", isinstance(self.name, str) and bool(self.name) and "/" not in self.name,
              "must be a non-empty string without '/'")
        _need("phase", self.phase is None or self.phase in PHASES, f"got {self.phase!r}; allowed: {', '.join(PHASES)}")
        _need("phase", self.phase is not None or self.base_config is not None, "give phase or base_config")
        self.overrides = _strs("overrides", self.overrides)
        _need("arms", isinstance(self.arms, list) and bool(self.arms), "must be a non-empty list of {name, overrides}")
        names = [a.name for a in self.arms]
        _need("arms", len(set(names)) == len(names), f"arm names must be unique; got {names}")
        _num("min_seeds", self.min_seeds, 1, integer=True)
        _need("seeds", isinstance(self.seeds, list) and all(isinstance(s, int) and not isinstance(s, bool)
                                                            for s in self.seeds), "must be a list of integers")
        _need("seeds", len(set(self.seeds)) == len(self.seeds), f"must be distinct; got {self.seeds}")
        _need("seeds", len(self.seeds) >= self.min_seeds,
              f"needs at least {self.min_seeds} seeds for confidence intervals; got {len(self.seeds)}")
        _need("learning_rates", isinstance(self.learning_rates, list), "must be a list of numbers")
        for i, lr in enumerate(self.learning_rates):
            _num(f"learning_rates[{i}]", lr, 0, lo_open=True)
        _num("target_val_loss", self.target_val_loss, 0, lo_open=True)
        _num("max_concurrent_trials", self.max_concurrent_trials, 1, integer=True)
        _need("storage_path", isinstance(self.storage_path, str) and bool(self.storage_path), "must be a path")

    @property
    def experiment_dir(self) -> Path:
        return Path(self.storage_path).resolve() / self.name

    def trial_overrides(self, arm: str, seed: int, lr: float | None) -> list[str]:
        spec = next(a for a in self.arms if a.name == arm)
        out = [*self.overrides, *self.resources.overrides(), *spec.overrides, f"training.seed={seed}"]
        if lr is not None:
            out.append(f"training.learning_rate={lr}")
        return out

    def run_config(self, arm: str, seed: int, lr: float | None) -> RunConfig:
        return load_config(self.base_config, self.trial_overrides(arm, seed, lr),
                           phase=None if self.base_config else self.phase)

    def arm_kind(self, arm: str) -> str:
        spec = next(a for a in self.arms if a.name == arm)
        if spec.kind:
            return spec.kind
        s = self.run_config(arm, self.seeds[0], None).schedule
        phi = (s.lr.startswith("phi_") or s.batch == "phi" or s.regularization == "phi" or s.sampler == "phi"
               or s.phi_phases)
        return "phi" if phi else "baseline"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_SECTIONS = {"data": DataSpec, "resources": ResourcesSpec, "asha": AshaSpec}


def _build(cls, tree: Any, prefix: str):
    if not isinstance(tree, dict):
        raise ConfigError(prefix.rstrip(".") or "(file)", f"must be a mapping; got {tree!r}")
    names = [f.name for f in dataclasses.fields(cls)]
    for k in tree:
        if k not in names:
            raise ConfigError(prefix + str(k), f"unknown key; allowed keys here: {', '.join(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    for k in required:
        if k not in tree:
            raise ConfigError(prefix + k, "is required")
    try:
        return cls(**tree)
    except ConfigError as e:
        raise ConfigError(prefix + e.key, e.problem) from None
    except TypeError as e:
        raise ConfigError(prefix.rstrip(".") or "(file)", str(e)) from None


def sweep_from_dict(tree: dict, source: str = "(dict)") -> SweepConfig:
    """Build and check a SweepConfig; errors name the source file and the dotted key."""
    try:
        if not isinstance(tree, dict):
            raise ConfigError("(file)", "must be a mapping at the top level")
        tree = dict(tree)
        for key, cls in _SECTIONS.items():
            if key in tree:
                tree[key] = _build(cls, tree[key], key + ".")
        if "arms" in tree:
            if not isinstance(tree["arms"], list):
                raise ConfigError("arms", "must be a list of {name, overrides}")
            tree["arms"] = [_build(ArmSpec, a, f"arms[{i}].") for i, a in enumerate(tree["arms"])]
        spec = _build(SweepConfig, tree, "")
        # Every trial's config must load: catch a bad override now, not in trial 7.
        for i, arm in enumerate(spec.arms):
            try:
                cfg = spec.run_config(arm.name, spec.seeds[0], spec.learning_rates[0] if spec.learning_rates else None)
                from layoutray.schedules import check_lr_schedule
                check_lr_schedule(cfg.schedule.lr)
            except ConfigError as e:
                raise ConfigError(f"arms[{i}].overrides ({e.key})", e.problem) from None
    except ConfigError as e:
        raise ConfigError(e.key, e.problem, source=source) from None
    return spec


def load_sweep(path: str | Path) -> SweepConfig:
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("(file)", "file not found", source=str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError("(file)", f"is not valid YAML: {e}", source=str(path)) from None
    if isinstance(tree, dict) and isinstance(tree.get("base_config"), str):
        p = Path(tree["base_config"])
        if not p.is_absolute():  # trials run in their own directory: make it absolute
            tree["base_config"] = str(p.resolve() if p.exists() or not (REPO_ROOT / p).exists() else REPO_ROOT / p)
    return sweep_from_dict(tree, str(path))


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
    cfg = spec.run_config(arm, seed, lr)
    name = f"train_{ctx.get_trial_id()}"
    run_dir = trial_dir / name
    resume = run_dir.is_dir() and any(run_dir.glob("checkpoint_*"))
    t0 = time.time()
    summary = run_training(cfg, config["data_dir"], name, str(trial_dir), resume=resume,
                           callbacks=[TuneReportCallback()], evaluate_test=False)
    history = _read_history(run_dir)
    done.write_text(json.dumps({"arm": arm, "seed": seed, "lr": lr, "run_dir": str(run_dir),
                                "wall_seconds_last_attempt": time.time() - t0, "resumed": resume,
                                "final_metrics": history[-1] if history else summary.get("last_epoch_metrics", {}),
                                "epochs_planned": cfg.training.epochs}, default=str) + "\n")


# ---------------------------------------------------------------------------- the driver


def _ensure_data(spec: SweepConfig) -> str:
    d = Path(spec.data.dir).resolve()
    if not (d.is_dir() and any(d.iterdir())):
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


def _trainable(spec: SweepConfig):
    from ray import tune
    r = spec.resources
    res = {"cpu": r.trial_cpus}
    return tune.with_resources(sweep_trial, res)


def schedule_rows_per_arm(spec: SweepConfig, data_dir: str) -> dict[str, list[dict]]:
    from layoutray.schedules import schedule_rows
    out = {}
    for arm in spec.arms:
        for lr in spec.learning_rates or [None]:
            cfg = spec.run_config(arm.name, spec.seeds[0], lr)
            steps = max(1, steps_per_epoch(cfg, count_examples(data_dir)["train"]) * cfg.training.epochs)
            s = cfg.schedule
            kw = {"min_lr_ratio": s.min_lr_ratio} if s.lr == "warmup_cosine" else {}
            out[_label(arm.name, lr, spec)] = schedule_rows(
                s.lr, steps, cfg.training.learning_rate, round(s.warmup_fraction * steps), s.batch,
                cfg.training.batch_size, s.max_batch_size, s.batch_phases, cfg.micro_batch_size,
                max(1, cfg.scaling.num_workers), **kw)
    return out


def _label(arm: str, lr, spec: SweepConfig) -> str:
    return f"{arm}@lr={lr:g}" if lr is not None and len(spec.learning_rates) > 1 else arm


def trial_records(results, spec: SweepConfig) -> list[dict]:
    """Per-trial records for `report.write_report` from a Tune ResultGrid."""
    kinds = {a.name: spec.arm_kind(a.name) for a in spec.arms}
    records = []
    for res in results:
        c = res.config or {}
        arm, seed, lr = c.get("arm"), c.get("seed"), c.get("lr")
        trial_dir = Path(res.path)
        run_dirs = sorted(trial_dir.glob("train_*"))
        history = _read_history(run_dirs[-1]) if run_dirs else []
        if not history:  # fall back on Tune's own record
            try:
                df = res.metrics_dataframe
                history = df.to_dict("records") if df is not None else []
            except Exception:  # noqa: BLE001 - a trial that never reported
                history = []
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


def run_sweep(spec: SweepConfig, *, resume: bool = False, full_budget: bool = False,
              config_path: str | None = None) -> dict:
    """Run (or resume) the sweep and write its report. Returns {experiment_dir, report_dir, summary}."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from trainables.report import write_report

    exp_dir = spec.experiment_dir
    spec_file = exp_dir / SPEC_FILE
    if resume:
        if not tune.Tuner.can_restore(str(exp_dir)):
            raise ConfigError("--resume", f"nothing to resume: no Tune experiment in {exp_dir}")
        saved = json.loads(spec_file.read_text()) if spec_file.is_file() else {}
        if saved.get("sweep") and saved["sweep"] != spec.to_dict():
            print("[layoutray] warning: the sweep file changed since the run started; "
                  "resuming with the original settings", flush=True)
            spec = sweep_from_dict(saved["sweep"], str(spec_file))
        if full_budget != saved.get("full_budget", full_budget):
            print("[layoutray] warning: --full-budget cannot change on resume; using the original setting", flush=True)
        full_budget = saved.get("full_budget", full_budget)
        data_dir = saved.get("data_dir") or _ensure_data(spec)
    else:
        if exp_dir.exists() and tune.Tuner.can_restore(str(exp_dir)):
            raise ConfigError("name", f"sweep '{spec.name}' already exists in {exp_dir.parent}; "
                                      f"pass --resume to continue it or change name")
        data_dir = _ensure_data(spec)
    asha = spec.asha.enabled and not full_budget

    _start_ray(spec, config_path)
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # keep the experiment state fresh for --resume
    trainable = _trainable(spec)
    if resume:
        print(f"[layoutray] resuming sweep {exp_dir}", flush=True)
        tuner = tune.Tuner.restore(str(exp_dir), trainable=trainable, resume_errored=True)
    else:
        exp_dir.mkdir(parents=True, exist_ok=True)
        spec_file.write_text(json.dumps({"sweep": spec.to_dict(), "full_budget": full_budget,
                                         "data_dir": data_dir, "config_path": config_path}, indent=2) + "\n")
        epochs = max(spec.run_config(a.name, spec.seeds[0], None).training.epochs for a in spec.arms)
        scheduler = None
        if asha:
            scheduler = ASHAScheduler(time_attr="epoch", max_t=epochs, grace_period=min(spec.asha.grace_period, epochs),
                                      reduction_factor=spec.asha.reduction_factor)
        param_space = {"arm": tune.grid_search([a.name for a in spec.arms]),
                       "seed": tune.grid_search(spec.seeds),
                       "lr": tune.grid_search(spec.learning_rates) if spec.learning_rates else None,
                       "sweep": spec.to_dict(), "data_dir": data_dir}
        tuner = tune.Tuner(
            trainable, param_space=param_space,
            tune_config=tune.TuneConfig(metric=spec.asha.metric, mode="min", scheduler=scheduler,
                                        max_concurrent_trials=spec.max_concurrent_trials),
            run_config=tune.RunConfig(name=spec.name, storage_path=str(exp_dir.parent), verbose=1))
    results = tuner.fit()

    records = trial_records(results, spec)
    report_dir = exp_dir / "report"
    cmd = f"layoutray sweep --config {config_path or '<sweep.yaml>'}" + (" --full-budget" if full_budget else "")
    notes = [f"data: {data_dir}; seeds {spec.seeds}; base {spec.base_config or spec.phase} "
             f"with {' '.join(spec.overrides) or 'no overrides'}",
             "Arms: " + "; ".join(f"{a.name} ({spec.arm_kind(a.name)}): {' '.join(a.overrides) or 'base config'}"
                                  for a in spec.arms)]
    summary = write_report(records, report_dir, target_val_loss=spec.target_val_loss,
                           schedules=schedule_rows_per_arm(spec, data_dir), title=f"Sweep {spec.name}",
                           asha=asha, command=cmd, notes=notes)
    return {"experiment_dir": str(exp_dir), "report_dir": str(report_dir), "summary": summary,
            "records": records}


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, metavar="YAML")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--full-budget", action="store_true", help="no early stopping: every trial runs to the end")


def cmd_sweep(args) -> int:
    spec = load_sweep(args.config)
    out = run_sweep(spec, resume=args.resume, full_budget=args.full_budget, config_path=args.config)
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
