"""The Python API: what the `layoutray` command does, as functions that return data.

    import layoutray
    layoutray.synth("sections", examples=2000)                      # -> the manifest
    summary = layoutray.train("sections", overrides=["training.epochs=5"], name="demo")
    metrics = layoutray.evaluate(summary["model"], "sections")      # -> the metrics dict
    p = layoutray.load(summary["model"])
    p.predict(section_type="hero", elements=["heading", "button"])  # -> [{"elements": [...], ...}]
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def load(model_dir: str | Path, device: str = "cpu"):
    """The exported model in `model_dir` as a `Predictor` (see `Predictor.predict`)."""
    from layoutray.model.predictor import load as _load
    return _load(model_dir, device=device)


def synth(out_dir: str | Path, examples: int, *, seed: int = 0, shard_rows: int = 500,
          max_elements: int = 16) -> dict:
    """Generate `examples` synthetic sections into `out_dir` (80/10/10 train/val/test shards).
    Returns the dataset's manifest (counts per split, shards, checksums)."""
    from layoutray.data.synth import synthesize
    return synthesize(out_dir, examples, seed=seed, shard_rows=shard_rows, max_elements=max_elements)


def train(data_dir: str | Path, *, phase: str = "auto", config: str | None = None,
          overrides: Sequence[str] = (), name: str | None = None, output: str | Path = "runs",
          resume: bool = False, init_from: str | None = None, address: str | None = None) -> dict:
    """Train on Ray Train + DeepSpeed exactly as `layoutray train` does (a local Ray instance of
    this run's own unless `address` or RAY_ADDRESS names a cluster).

    Returns the run summary: run_dir, model (the exported artifact), phase, train_seconds,
    best_checkpoint, last_epoch_metrics and, when the dataset has a test split, test (metrics)."""
    import time

    from layoutray.config import ConfigError
    from layoutray.training.driver import resolve_config, run_training

    cfg, _ = resolve_config(str(data_dir), phase, config, list(overrides))
    if resume and not name:
        raise ConfigError("name", "resume=True needs the name of the run to continue")
    name = name or f"{cfg.phase}-{time.strftime('%Y%m%d-%H%M%S')}"
    return run_training(cfg, str(data_dir), name, str(output), resume=resume, init_from=init_from,
                        address=address)


def evaluate(model_dir: str | Path, data_dir: str | Path, *, split: str = "test", limit: int = 0) -> dict:
    """Score an exported model on a dataset split; the same dict `layoutray evaluate --json` prints."""
    from layoutray.eval.evaluate import evaluate_artifact
    return evaluate_artifact(str(model_dir), str(data_dir), split, limit)
