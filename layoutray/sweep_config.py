"""Sweep files (configs/sweeps/*.yaml) -> a typed, validated SweepConfig.

A sweep file goes through the same builder as a run config (`layoutray.config.from_dict`):
unknown keys are refused with the allowed ones, values are converted to the annotated types and
checked in `__post_init__`, and a mistake raises `ConfigError` naming the file and the dotted
key. Each trial's run config is a phase config plus --set overrides, so the sweep file also
checks that every arm's overrides load.

    spec = load_sweep("configs/sweeps/phi_vs_baseline_small.yaml")
    spec.run_config("phi_decay", seed=0, lr=None)   # the RunConfig that trial trains
    sweep_from_dict(spec.to_dict()) == spec         # how the spec travels to the Tune trials
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from layoutray.config import (REPO_ROOT, ConfigError, PhaseName, RunConfig, check, from_dict, in_range,
                              load_config, read_yaml)
from layoutray.schedules import BASELINES, check_lr_schedule


@dataclass
class ArmSpec:
    """One arm of the comparison. Its __post_init__ names keys from the arm itself: an item of
    `arms` cannot know its index, and the builder puts the key under arms[i]."""

    name: str
    overrides: list[str] = field(default_factory=list)
    kind: Literal["phi", "baseline"] | None = None  # derived from the resolved schedule when left out
    family: str = ""  # what the arm tests (lr, batch, regularization, phases, full): the report groups by it

    def __post_init__(self):
        # The name ends up in Tune's trial names and in the report's labels (arm@lr=...).
        check("name", bool(self.name.strip()) and "/" not in self.name,
              f"a non-empty string without '/'; got {self.name!r}")


@dataclass
class DataSpec:
    dir: str = "data/sweep_sections"
    synthesize_if_missing: bool = True
    examples: int = 400  # when synthesized
    seed: int = 0
    # Train on the synthetic stream instead (`--data synth:SEED`): fresh sections every epoch
    # (data.synth_per_epoch), validation and test sets fixed by the seed, the same in every trial.
    stream: bool = False

    def __post_init__(self):
        check("data.dir", bool(self.dir), "a path")
        # The validation split gets floor(examples / 10) rows: fewer than 10 leaves it empty.
        in_range("data.examples", self.examples, 10)
        in_range("data.seed", self.seed, 0)


@dataclass
class ResourcesSpec:
    trial_cpus: float = 0.5  # the trial actor (the Train driver)
    workers: int = 1  # Train workers per trial
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        in_range("resources.trial_cpus", self.trial_cpus, 0.0, lo_open=True)
        in_range("resources.workers", self.workers, 1)
        in_range("resources.cpus_per_worker", self.cpus_per_worker, 0.0, lo_open=True)
        in_range("resources.gpus_per_worker", self.gpus_per_worker, 0.0)
        # Each trial's scaling section would refuse these too, but under the arm's key.
        check("resources.gpus_per_worker", not self.use_gpu or self.gpus_per_worker > 0,
              "> 0 when resources.use_gpu is true")
        check("resources.gpus_per_worker", self.use_gpu or self.gpus_per_worker == 0,
              "0 when resources.use_gpu is false")

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
        in_range("asha.grace_period", self.grace_period, 1)
        in_range("asha.reduction_factor", self.reduction_factor, 2)
        check("asha.metric", self.metric == "val_loss", f"'val_loss' (what the sweep compares); got {self.metric!r}")


@dataclass
class BaselineSearchSpec:
    """A Tune grid over baseline LR schedules, learning rates and warmups, each trial with the arms'
    budget, run before the arms: its best setting (by the sweep's metric) becomes the baseline arm
    `name`, so that PHI faces a tuned opponent, not a default."""

    name: str = "tuned_baseline"
    lr_schedules: list[str] = field(default_factory=lambda: ["warmup_cosine", "one_cycle"])
    learning_rates: list[float] = field(default_factory=list)  # empty: the base config's
    warmup_fractions: list[float] = field(default_factory=lambda: [0.05])
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self):
        check("baseline_search.name", bool(self.name.strip()) and "/" not in self.name,
              f"a non-empty string without '/'; got {self.name!r}")
        for i, s in enumerate(self.lr_schedules):
            check(f"baseline_search.lr_schedules[{i}]", s in BASELINES, f"one of {', '.join(BASELINES)}; got {s!r}")
        check("baseline_search.lr_schedules", bool(self.lr_schedules), "a non-empty list")
        check("baseline_search.seeds", bool(self.seeds), "a non-empty list")
        for i, lr in enumerate(self.learning_rates):
            in_range(f"baseline_search.learning_rates[{i}]", lr, 0.0, 1.0, lo_open=True)
        for i, w in enumerate(self.warmup_fractions):
            in_range(f"baseline_search.warmup_fractions[{i}]", w, 0.0, 1.0)

    def arms(self) -> list[ArmSpec]:
        """One arm per (schedule, learning rate, warmup): the search's grid."""
        out = []
        for s in self.lr_schedules:
            for lr in self.learning_rates or [None]:
                for w in self.warmup_fractions:
                    sets = [f"schedule.lr={s}", f"schedule.warmup_fraction={w}"]
                    sets += [f"training.learning_rate={lr}"] if lr is not None else []
                    out.append(ArmSpec(f"{s}_w{w:g}" + (f"_lr{lr:g}" if lr is not None else ""), sets, "baseline"))
        return out


@dataclass
class SweepConfig:
    name: str
    arms: list[ArmSpec]
    seeds: list[int]
    target_val_loss: float
    phase: PhaseName | None = "phase1"  # base config: a phase name ...
    base_config: str | None = None  # ... or a phase YAML path (wins over phase)
    overrides: list[str] = field(default_factory=list)  # applied to every trial, before the arm's
    data: DataSpec = field(default_factory=DataSpec)
    learning_rates: list[float] = field(default_factory=list)  # empty: the base config's
    resources: ResourcesSpec = field(default_factory=ResourcesSpec)
    max_concurrent_trials: int = 1
    asha: AshaSpec = field(default_factory=AshaSpec)
    storage_path: str = "runs/sweeps"
    min_seeds: int = 3  # refuse fewer seeds (tests set 1)
    # What the report compares arms on (the best baseline, the tests, the conclusion): the final
    # validation loss, or the element F1@0.5 of generated layouts (needs validation.generate_examples).
    metric: Literal["val_loss", "val_element_f1@0.5"] = "val_loss"
    baseline_search: BaselineSearchSpec | None = None

    def __post_init__(self):
        # The name is the experiment's directory under storage_path.
        check("name", bool(self.name) and "/" not in self.name, "a non-empty string without '/'")
        if self.phase is None and self.base_config is None:
            raise ConfigError("phase", "give phase or base_config")
        check("arms", bool(self.arms), "a non-empty list of {name, overrides}")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ConfigError("arms", f"arm names must be unique; got {names}")
        in_range("min_seeds", self.min_seeds, 1)
        check("seeds", len(set(self.seeds)) == len(self.seeds), f"distinct; got {self.seeds}")
        if len(self.seeds) < self.min_seeds:
            raise ConfigError("seeds", f"needs at least {self.min_seeds} seeds for confidence intervals; "
                                       f"got {len(self.seeds)}")
        for i, lr in enumerate(self.learning_rates):
            in_range(f"learning_rates[{i}]", lr, 0.0, 1.0, lo_open=True)  # training.learning_rate's range
        in_range("target_val_loss", self.target_val_loss, 0.0, lo_open=True)
        in_range("max_concurrent_trials", self.max_concurrent_trials, 1)
        check("storage_path", bool(self.storage_path), "a path")

    @property
    def experiment_dir(self) -> Path:
        return Path(self.storage_path).resolve() / self.name

    def arm(self, name: str) -> ArmSpec:
        return next(a for a in self.arms if a.name == name)

    def trial_overrides(self, arm: str, seed: int, lr: float | None) -> list[str]:
        out = [*self.overrides, *self.resources.overrides(), *self.arm(arm).overrides, f"training.seed={seed}"]
        if lr is not None:
            out.append(f"training.learning_rate={lr}")
        return out

    def run_config(self, arm: str, seed: int, lr: float | None) -> RunConfig:
        return load_config(self.base_config, self.trial_overrides(arm, seed, lr),
                           phase=None if self.base_config else self.phase)

    def arm_kind(self, arm: str) -> str:
        """"phi" when any part of the arm's resolved schedule is a PHI one, else "baseline"."""
        if self.arm(arm).kind:
            return self.arm(arm).kind
        s = self.run_config(arm, self.seeds[0], None).schedule
        phi = (s.lr.startswith("phi_") or s.batch == "phi" or s.regularization == "phi" or s.sampler == "phi"
               or s.phi_phases)
        return "phi" if phi else "baseline"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_trial_configs(spec: SweepConfig, source: str) -> None:
    """Catch a bad override when the sweep file is read, not when trial 7 starts."""
    lr = spec.learning_rates[0] if spec.learning_rates else None
    for i, arm in enumerate(spec.arms):
        try:
            check_lr_schedule(spec.run_config(arm.name, spec.seeds[0], lr).schedule.lr)
        except ConfigError as e:
            if e.key == "(file)":  # the base config file itself is at fault, not the arm
                raise ConfigError("base_config", f"{e.source}: {e.problem}", source=source) from None
            raise ConfigError(f"arms[{i}].overrides ({e.key})", e.problem, source=source) from None


def sweep_from_dict(tree: dict, source: str = "(dict)") -> SweepConfig:
    """Build and check a SweepConfig; errors name `source` (the file) and the dotted key."""
    spec = from_dict(SweepConfig, tree, source=source)
    _check_trial_configs(spec, source)
    return spec


def _absolute_base(base: str) -> str:
    """Trials run in their own directories, so a relative base_config must become absolute:
    against the working directory where the file is there, else against the repository."""
    p = Path(base)
    if p.is_absolute():
        return base
    return str(p.resolve() if p.exists() or not (REPO_ROOT / p).exists() else REPO_ROOT / p)


def load_sweep(path: str | Path) -> SweepConfig:
    tree = read_yaml(path)
    if isinstance(tree.get("base_config"), str):
        tree["base_config"] = _absolute_base(tree["base_config"])
    return sweep_from_dict(tree, str(path))
