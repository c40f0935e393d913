"""Grow a trained model into a later phase so that it starts where the small one ended.

    layoutray upgrade --model runs/p1/model --to phase2 --out models/p2-init
    layoutray train --data DIR --phase phase2 --init-from models/p2-init

`upgrade_state_dict` grows the weights function-preservingly (layoutray.model.growth: width,
heads, feed-forward units, depth, positions, vocabulary; the vision patch and grid resampled), or,
with method="copy", only copies the weights whose shapes fit into the leading block of each new
tensor and leaves the rest at a fresh initialisation (the earlier behaviour, kept as the baseline
of bench/upgrade.py). `upgrade_artifact` measures the teacher-forced validation loss of both
models on the same examples and refuses to write a grown model whose loss rose beyond the
tolerance (`tolerance_for`) unless forced; the artifact's meta.json records the parent and the
method.
"""

from __future__ import annotations

import math
import re
import tempfile
from pathlib import Path

import torch

from layoutray.config import PHASES, ConfigError, RunConfig, load_config
from layoutray.model.growth import (GrowthError, approximations, grow_state_dict, layer_map,
                                    resample_patch_kernel)
from layoutray.model.network import build_model

__all__ = ["GrowthError", "UpgradeRefused", "layer_map", "resample_patch_kernel", "upgrade_state_dict",
           "partial_copy_state_dict", "validation_loss", "sample_dir", "upgrade_artifact", "tolerance_for",
           "target_config", "VISIONS"]

METHODS = ("preserve", "copy")
EXACT_TOLERANCE = 1e-4  # relative loss rise allowed when the inputs are the same
RESAMPLED_TOLERANCE = 0.01  # ... when the vision tokens are resampled (patch or image size)


class UpgradeRefused(ValueError):
    """The grown model's validation loss rose beyond the tolerance; nothing was written."""


def tolerance_for(old: RunConfig, new: RunConfig, noise: float = 0.0) -> float:
    """Relative loss rise an upgrade may show: EXACT_TOLERANCE when growth is exact, else
    RESAMPLED_TOLERANCE (vision resampled or symmetry-breaking noise)."""
    return RESAMPLED_TOLERANCE if approximations(old.model, new.model, noise) else EXACT_TOLERANCE


# ---------------------------------------------------------------------------- the partial copy

_LAYER = re.compile(r"^(vis_blocks|spec_blocks|dec_blocks)\.(\d+)\.(.+)$")
# Dims made of ("heads", n_chunks) are copied head by head; others are a prefix copy.
_HEAD_DIMS = {
    "attn.qkv.weight": (("heads", 3), "plain"), "attn.qkv.bias": (("heads", 3),),
    "attn.proj.weight": ("plain", ("heads", 1)), "cross.q.weight": (("heads", 1), "plain"),
    "cross.q.bias": (("heads", 1),), "cross.kv.weight": (("heads", 2), "plain"),
    "cross.kv.bias": (("heads", 2),), "cross.proj.weight": ("plain", ("heads", 1)),
}


def _split(shape: tuple[int, ...], kinds, n_heads: int) -> tuple[int, ...]:
    out: list[int] = []
    for size, kind in zip(shape, kinds):
        out += [size] if kind == "plain" else [kind[1], n_heads, size // kind[1] // n_heads]
    return tuple(out)


def _carry(old: torch.Tensor, new: torch.Tensor, kinds, h_old: int, h_new: int) -> int:
    """Copy `old` into the leading block of `new` in place; returns the elements carried."""
    o = old.reshape(_split(tuple(old.shape), kinds, h_old))
    n = new.view(_split(tuple(new.shape), kinds, h_new))
    region = tuple(slice(0, min(a, b)) for a, b in zip(o.shape, n.shape))
    n[region] = o[region]
    return math.prod(min(a, b) for a, b in zip(o.shape, n.shape))


def partial_copy_state_dict(old_sd: dict[str, torch.Tensor], old_cfg: RunConfig,
                            new_cfg: RunConfig) -> tuple[dict[str, torch.Tensor], dict]:
    """The shape-fitting copy: old layer i -> layer_map(L, L')[i], each tensor into the leading
    block of the new one (head by head), new layers and everything else freshly initialised."""
    om, nm = old_cfg.model, new_cfg.model
    torch.manual_seed(new_cfg.training.seed)
    new_sd = {k: v.detach().clone() for k, v in build_model(new_cfg, dropout=0.0).state_dict().items()}
    inv = {j: i for i, j in layer_map(om.n_layers, nm.n_layers).items()}
    carried = 0
    for name, new in new_sd.items():
        m = _LAYER.match(name)
        rest, old_name = name, name
        if m:
            if int(m.group(2)) not in inv:
                continue
            rest, old_name = m.group(3), f"{m.group(1)}.{inv[int(m.group(2))]}.{m.group(3)}"
        old = old_sd.get(old_name)
        if old is None or old.dim() != new.dim():
            continue
        carried += _carry(old.float(), new, _HEAD_DIMS.get(rest, ("plain",) * new.dim()), om.n_heads, nm.n_heads)
    total = sum(v.numel() for v in new_sd.values())
    return new_sd, {"method": "partial_copy", "carried": carried, "total": total,
                    "carried_fraction": round(carried / total, 4)}


# ---------------------------------------------------------------------------- growth


def upgrade_state_dict(old_sd: dict[str, torch.Tensor], old_cfg: RunConfig, new_cfg: RunConfig, *,
                       method: str = "preserve", noise: float = 0.0,
                       units: str = "split") -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict of new_cfg's model grown from old_sd, report); method "preserve" (function-
    preserving growth) or "copy" (the shape-fitting partial copy)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}; allowed: {', '.join(METHODS)}")
    if method == "copy":
        sd, report = partial_copy_state_dict(old_sd, old_cfg, new_cfg)
    else:
        sd, report = grow_state_dict(old_sd, old_cfg.model, new_cfg.model, units=units, noise=noise,
                                     seed=new_cfg.training.seed)
    n_new = sum(v.numel() for v in sd.values())
    report.update(from_phase=old_cfg.phase, to_phase=new_cfg.phase,
                  old_parameters=sum(v.numel() for v in old_sd.values()), parameters=n_new, total=n_new)
    return sd, report


# ---------------------------------------------------------------------------- validation


def sample_dir(root: str | Path, examples: int = 64, seed: int = 0, max_elements: int = 16) -> Path:
    """A seeded synthetic validation split of `examples` sections under root (the sample that
    `upgrade` measures both models on when it is given no --data)."""
    from layoutray.data import dataset
    from layoutray.data.synth import GENERATOR_VERSION, iter_examples

    shards = dataset.write_split(root, "val", iter_examples(range(examples), seed, max_elements))
    dataset.write_manifest(root, shards, generator={"name": "layoutray.data.synth", "version": GENERATOR_VERSION,
                                                    "seed": seed, "max_elements": max_elements})
    return Path(root)


@torch.no_grad()
def validation_loss(model: torch.nn.Module, cfg: RunConfig, data: str | Path, split: str = "val",
                    limit: int = 64, batch_size: int = 16) -> dict:
    """Teacher-forced loss per token on the first `limit` examples of a split, in the three
    modes: {"both": (the validation loss), "image": ..., "spec": ..., "examples": n}."""
    from layoutray.data.batches import iter_local_batches
    from layoutray.eval.evaluate import MODES, condition, teacher_forced

    model.eval()
    sums, n_tok, seen = dict.fromkeys(MODES, 0.0), 0, 0
    for b in iter_local_batches(data, split, cfg, batch_size):
        if seen >= limit:
            break
        b = {k: (v[:limit - seen] if torch.is_tensor(v) and v.dim() else v) for k, v in b.items()}
        seen += b["tokens"].shape[0]
        for mode in MODES:
            spec, has_image = condition(b, mode)
            loss, n, _ = teacher_forced(model, {**b, "spec": spec, "has_image": has_image})
            sums[mode] += loss
        n_tok += n
    if not seen:
        raise ConfigError("--data", f"{data}: no {split} examples to measure the loss on")
    return {**{m: sums[m] / n_tok for m in MODES}, "examples": seen}


# ---------------------------------------------------------------------------- artifacts

# Model settings that choose an architecture rather than a size: the grown model keeps the
# parent's (the phase files do not set them).
ARCHITECTURE_KEYS = ("conv_stem", "decoder")
# What the vision encoder reads. A grown model keeps the parent's by default ("parent"): a new
# patch or image size changes every vision token, and no growth of the weights keeps what a
# model that reads its images computes (+75% validation loss for the quality recipe's model at
# patch 32 -> 16, bench/upgrade.py). vision="phase" takes the phase file's, approximately.
VISION_KEYS = ("patch_size", "image_height", "image_width")
VISIONS = ("parent", "phase")


def target_config(old_cfg: RunConfig, to_phase: str, overrides: list[str] | None = None,
                  vision: str = "parent") -> RunConfig:
    """The config a model grows into: `to_phase`'s, with the parent's architecture choices (and
    with vision="parent" its patch and image size), then `overrides` (KEY=VALUE). A phase that is
    not later than the model's is a ConfigError naming --to."""
    if to_phase not in PHASES or PHASES.index(to_phase) <= PHASES.index(old_cfg.phase):
        later = ", ".join(PHASES[PHASES.index(old_cfg.phase) + 1:]) or "none left"
        raise ConfigError("--to", f"{to_phase}: the model is {old_cfg.phase}; upgrade grows a model into a "
                                  f"later phase ({later})")
    if vision not in VISIONS:
        raise ConfigError("--vision", f"{vision!r}; allowed: {', '.join(VISIONS)}")
    keep = _differing(old_cfg.model, to_phase, ARCHITECTURE_KEYS + (VISION_KEYS if vision == "parent" else ()))
    return load_config(phase=to_phase, overrides=keep + list(overrides or []))


def _differing(model, to_phase: str, keys: tuple[str, ...]) -> list[str]:
    """`model`'s settings among `keys` that differ from `to_phase`'s, as KEY=VALUE."""
    phase = load_config(phase=to_phase).model
    return [f"model.{k}={getattr(model, k)}" for k in keys if getattr(model, k) != getattr(phase, k)]


def _loaded(sd: dict[str, torch.Tensor], cfg: RunConfig) -> torch.nn.Module:
    from layoutray.model.network import load_weights

    model = build_model(cfg, dropout=0.0)
    load_weights(model, sd)
    return model.eval()


def measure(old_sd, old_cfg: RunConfig, new_sd, new_cfg: RunConfig, data: str | Path | None = None,
            examples: int = 64, seed: int = 0) -> dict:
    """Validation loss of both models on the same examples (from `data`'s val split, else a seeded
    synthetic sample): {"old": {...}, "new": {...}, "relative_change": (new - old) / old, "data"}."""
    with tempfile.TemporaryDirectory(prefix="layoutray-upgrade-") as tmp:
        root = Path(data) if data else sample_dir(tmp, examples, seed, old_cfg.model.max_elements)
        old = validation_loss(_loaded(old_sd, old_cfg), old_cfg, root, limit=examples)
        new = validation_loss(_loaded(new_sd, new_cfg), new_cfg, root, limit=examples)
    return {"old": old, "new": new, "relative_change": (new["both"] - old["both"]) / old["both"],
            "data": str(data) if data else f"synthetic (seed {seed}, {examples} sections)"}


def upgrade_artifact(model_dir: str | Path, to_phase: str, out_dir: str | Path, *, data: str | Path | None = None,
                     force: bool = False, noise: float = 0.0, examples: int = 64,
                     overrides: list[str] | None = None, vision: str = "parent") -> dict:
    """Grow the artifact in `model_dir` into `to_phase`, measure both models and export the grown
    one to `out_dir` unless its validation loss rose beyond `tolerance_for` (UpgradeRefused; `force`
    writes it anyway). Returns {"out", "old_phase", "new_phase", "report", "validation",
    "tolerance", "written", "train_settings"}. `overrides` change the target phase's config
    (KEY=VALUE); `vision` is "parent" (keep its patch and image size: exact) or "phase"."""
    from layoutray.model.artifact import export_artifact, read_artifact
    from layoutray.lineage import parent_model

    old_sd, old_cfg, meta = read_artifact(model_dir)
    new_cfg = target_config(old_cfg, to_phase, overrides, vision)
    new_sd, report = upgrade_state_dict(old_sd, old_cfg, new_cfg, noise=noise)
    val = measure(old_sd, old_cfg, new_sd, new_cfg, data, examples)
    tol = tolerance_for(old_cfg, new_cfg, noise)
    res = {"out": out_dir, "old_phase": old_cfg.phase, "new_phase": new_cfg.phase, "report": report,
           "validation": val, "tolerance": tol, "written": False, "vision": vision,
           "train_settings": _differing(new_cfg.model, to_phase, ARCHITECTURE_KEYS + VISION_KEYS)}
    if val["relative_change"] > tol and not force:
        raise UpgradeRefused(f"validation loss rose {100 * val['relative_change']:.3g}% ({val['old']['both']:.5f} -> "
                             f"{val['new']['both']:.5f}), beyond the {100 * tol:.3g}% allowed for this growth "
                             f"({'; '.join(report['approximations']) or 'exact'}); nothing written")
    where = str(model_dir) if "://" in str(model_dir) else str(Path(model_dir).resolve())  # a URI stays as given
    parent = {"path": where, "phase": old_cfg.phase,
              "parameters": report["old_parameters"], "metadata": meta.get("metadata", {})}
    export_artifact(new_sd, new_cfg, out_dir, metadata={
        "parent": parent, "method": report["method"], "vision": vision, "upgrade_report": report,
        "upgrade_validation": val,
        "upgrade_forced": bool(force and val["relative_change"] > tol)},
        # grown from the parent's weights, so trained on the parent's data
        lineage={"parent": parent_model(model_dir), "data": (meta.get("lineage") or {}).get("data")})
    res["written"] = True
    return res
