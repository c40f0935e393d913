"""Multi-stage training as one file: `layoutray train --recipe configs/recipes/NAME.yaml`.

A recipe is a list of stages run in order; each stage is an ordinary training run (same driver,
checkpoints and artifact) that starts from the previous stage's exported model (`--init-from`)
with a fresh optimizer and schedule: a warm restart. `--init-from MODEL` starts the first stage
from a trained model: a recipe that fine-tunes. A stage may change the data source, the
learning rate and its schedule, augmentation, clean epochs, or any config key (`set`).

    runs/NAME/recipe.json          the recipe and, per finished stage, its model and test metrics
    runs/NAME/01-<stage>/          the stage's run directory (checkpoints, metrics.jsonl, model/)

`--resume` skips finished stages and continues an unfinished one from its last checkpoint, so a
crash costs at most one epoch.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from layoutray import storage
from layoutray.config import PHASES, ConfigError, RunConfig, check, from_dict, in_range, load_config, read_yaml


@dataclass
class Stage:
    name: str
    epochs: int
    learning_rate: float | None = None
    lr_schedule: str | None = None  # schedule.lr for this stage
    data: str | None = None  # a dataset directory or synth[:SEED]; default: the recipe's
    synth_mix: float | None = None
    strength: float | None = None  # augmentation strength
    clean_epochs: int | None = None
    set: list[str] = field(default_factory=list)  # any other KEY=VALUE

    def __post_init__(self):
        check("stages[].name", bool(self.name) and "/" not in self.name, "a non-empty name without '/'")
        in_range(f"stages[{self.name}].epochs", self.epochs, 1)

    def overrides(self) -> list[str]:
        keys = {"training.epochs": self.epochs, "training.learning_rate": self.learning_rate,
                "schedule.lr": self.lr_schedule, "data.synth_mix": self.synth_mix,
                "data.strength": self.strength, "data.clean_epochs": self.clean_epochs}
        return [f"{k}={v}" for k, v in keys.items() if v is not None] + list(self.set)


@dataclass
class Recipe:
    name: str
    stages: list[Stage]
    phase: str = "phase1"
    data: str = ""  # default data for every stage (overridden by --data, then by a stage's own)
    set: list[str] = field(default_factory=list)  # KEY=VALUE for every stage

    def __post_init__(self):
        check("phase", self.phase in PHASES, f"one of {', '.join(PHASES)}")
        check("stages", bool(self.stages), "a non-empty list")
        names = [s.name for s in self.stages]
        check("stages", len(set(names)) == len(names), "stages with distinct names")

    def stage_config(self, index: int, extra: list[str] = ()) -> RunConfig:
        return load_config(phase=self.phase, overrides=[*self.set, *self.stages[index].overrides(), *extra])

    def stage_dir_name(self, index: int) -> str:
        return f"{index + 1:02d}-{self.stages[index].name}"

    def to_dict(self) -> dict:
        return asdict(self)


def load_recipe(path: str | Path, extra: list[str] = ()) -> Recipe:
    """Parse and check a recipe file, including every stage's resolved config."""
    recipe = from_dict(Recipe, read_yaml(path), source=str(path))
    for i, stage in enumerate(recipe.stages):
        try:
            recipe.stage_config(i, list(extra))
        except ConfigError as e:
            raise ConfigError(f"stages[{i}] ({stage.name}): {e.key}", e.problem, source=str(path)) from None
    return recipe


def _stage_data(recipe: Recipe, stage: Stage, data: str | None) -> str:
    chosen = stage.data or data or recipe.data
    if not chosen:
        raise ConfigError("--data", f"recipe {recipe.name}: stage {stage.name} has no data; pass --data DIR or "
                                    f"--data synth[:SEED], or set `data` in the recipe")
    return chosen


def _read_state(path: str) -> dict:
    return storage.read_json(path) if storage.is_file(path) else {"stages": {}}


def _write_state(path: str, state: dict) -> None:
    storage.write_text(path, json.dumps(state, indent=2, default=str) + "\n")


def run_recipe(recipe: Recipe, *, data: str | None, name: str, output: str, resume: bool = False,
               extra: list[str] = (), address: str | None = None, init_from: str | None = None,
               progress: Callable[[str], None] = print) -> dict:
    """Run every stage in order (skipping finished ones on resume); returns the recipe state.
    init_from: a model the first stage starts from (fine-tuning a trained model on new data)."""
    from layoutray.training.driver import run_training

    # `output` may be a directory or an object-store URI (s3://, gs://): every path goes through storage.
    parent = storage.absolute(output)
    root = storage.join(parent, name)
    state_path = storage.join(root, "recipe.json")
    if storage.list_dir(root) and not resume:
        raise ConfigError("--name", f"recipe run '{name}' already exists in {parent}; pass --resume to "
                                    f"continue it or choose another --name")
    state = _read_state(state_path)
    state["recipe"] = recipe.to_dict()
    if init_from:
        state["init_from"] = init_from
    previous, previous_dir = (init_from, init_from) if init_from else (None, None)
    for i, stage in enumerate(recipe.stages):
        dir_name = recipe.stage_dir_name(i)
        done = state["stages"].get(dir_name)
        if done:
            previous, previous_dir = done["model"], dir_name
            progress(f"[recipe] stage {i + 1}/{len(recipe.stages)} '{stage.name}': done earlier, skipped")
            continue
        stage_data = _stage_data(recipe, stage, data)
        cfg = recipe.stage_config(i, list(extra))
        progress(f"[recipe] stage {i + 1}/{len(recipe.stages)} '{stage.name}': {stage.epochs} epochs on "
                 f"{stage_data}, lr {cfg.training.learning_rate:g} ({cfg.schedule.lr})"
                 + (f", from {previous_dir}" if previous else ""))
        t0 = time.time()
        summary = run_training(cfg, stage_data, dir_name, root, address=address, init_from=previous,
                               resume=resume and bool(storage.list_dir(storage.join(root, dir_name))))
        previous, previous_dir = summary["model"], dir_name
        test = summary.get("test", {})
        state["stages"][dir_name] = {"model": previous, "minutes": round((time.time() - t0) / 60, 2),
                                     "test": test}
        _write_state(state_path, state)
        progress(f"[recipe] stage {i + 1}/{len(recipe.stages)} '{stage.name}' done in "
                 f"{(time.time() - t0) / 60:.1f} min" + _headline(test))
    state["model"] = previous
    _write_state(state_path, state)
    return state


def _headline(test: dict) -> str:
    parts = [f"{mode} {test[mode]['element_f1@0.5']:.3f}" for mode in ("both", "image", "spec")
             if isinstance(test.get(mode), dict) and "element_f1@0.5" in test[mode]]
    return f": test F1@0.5 {', '.join(parts)}" if parts else ""
