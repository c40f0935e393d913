"""Serving artifacts: a directory that holds everything needed to generate layouts.

    DIR/config.yaml        the resolved RunConfig (layoutray.config.dump_yaml; load_config reads it)
    DIR/model.safetensors  fp32 weights, contiguous, one tensor per parameter (the output head is
                           tied to the token embedding in the model itself, so nothing is shared)
    DIR/golden.json        the golden set: a few requests with the layouts this model gave at export
                           (layoutray.model.golden; what a server checks the model against on load)
    DIR/meta.json          format version, layoutray version, decoder (autoregressive | diffusion),
                           tokenizer (bins + type vocabularies), parameter count, the golden set's
                           size, caller metadata (run name, metrics, upgrade report) and the
                           lineage: data fingerprint, config hash, commit, parent model, tracking
                           run (layoutray.lineage)

Artifacts written before golden.json existed have none; they still load (and a server checks
only that their weights are finite).

Loading needs torch, safetensors and yaml only: never DeepSpeed or Ray, and never pickle (weights
come from safetensors; nothing here calls torch.load).

    export_artifact(model, cfg, "runs/x/model", metadata={"run": "x"})
    state, cfg, meta = read_artifact("runs/x/model")     # layoutray.model.predictor.load() builds a Predictor

DIR may be an object-storage URI (`s3://bucket/runs/x/model`, layoutray.storage): reading fetches
it into a local cache first (again only when the remote files changed); exporting writes a local
copy and uploads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from layoutray import __version__, storage
from layoutray.config import RunConfig, dump_yaml, load_config
from layoutray.lineage import complete as lineage_complete
from layoutray.model.network import LayoutModel, build_model, count_parameters
from layoutray.model.tokenizer import LayoutTokenizer

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, META_FILE = "config.yaml", "model.safetensors", "meta.json"
GOLDEN_FILE = "golden.json"
# Wrappers that prefix parameter names: DeepSpeed/DDP ("module."), torch.compile ("_orig_mod.").
_PREFIXES = ("module.", "_orig_mod.")


class ArtifactError(ValueError):
    """The directory is not a usable model artifact; the message names the file and the problem."""


def clean_state_dict(state: dict[str, torch.Tensor] | torch.nn.Module) -> dict[str, torch.Tensor]:
    """fp32, contiguous, detached CPU copies with wrapper prefixes removed."""
    if isinstance(state, torch.nn.Module):
        state = state.state_dict()
    out = {}
    for name, t in state.items():
        for p in _PREFIXES:
            while name.startswith(p):
                name = name[len(p):]
        t = t.detach().to("cpu")
        out[name] = (t.float() if t.is_floating_point() else t).contiguous().clone()
    return out


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix="." + path.name)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def export_artifact(model_or_state: torch.nn.Module | dict[str, torch.Tensor], cfg: RunConfig,
                    out_dir: str | Path, metadata: dict[str, Any] | None = None, golden: bool = True,
                    lineage: dict[str, Any] | None = None) -> Path:
    """Write a serving artifact. The weights must match cfg's model exactly and be finite (checked
    here, so a bad export fails in the training run rather than in the server). With `golden`
    (the default) the model answers the golden set now and golden.json records its answers.
    `lineage` (layoutray.lineage) is completed with the config hash and the code's commit."""
    if storage.is_uri(out_dir):
        with tempfile.TemporaryDirectory() as d:
            export_artifact(model_or_state, cfg, d, metadata, golden, lineage)
            storage.remove_dir(out_dir)  # no file of an earlier export may survive beside these
            storage.copy_dir(d, out_dir)
        return out_dir
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = clean_state_dict(model_or_state)
    _check_export_state(state, cfg)
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    meta = {
        "format_version": FORMAT_VERSION,
        "layoutray_version": __version__,
        "phase": cfg.phase,
        "decoder": cfg.model.decoder,  # autoregressive | diffusion (then model.diffusion_steps is T)
        "parameters": count_parameters(cfg),
        "tokenizer": {"bins": tok.bins, "element_types": list(tok.element_types),
                      "section_types": list(tok.section_types), "vocab_size": tok.vocab_size},
        "golden": None,
        "metadata": metadata or {},
        "lineage": lineage_complete(lineage, cfg),
    }
    # weights first and meta.json last: a directory with meta.json is complete
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "phase": cfg.phase})
    os.replace(tmp, out / WEIGHTS_FILE)
    _atomic_write(out / CONFIG_FILE, dump_yaml(cfg))
    (out / GOLDEN_FILE).unlink(missing_ok=True)  # a previous export's golden set describes other weights
    if golden:
        from layoutray.model.golden import build_golden  # golden imports the predictor, which imports us

        doc = build_golden(state, cfg)
        _atomic_write(out / GOLDEN_FILE, json.dumps(doc, indent=1) + "\n")
        meta["golden"] = {"file": GOLDEN_FILE, "format_version": doc["format_version"],
                          "requests": len(doc["requests"])}
    _atomic_write(out / META_FILE, json.dumps(meta, indent=2, default=str) + "\n")
    return out


def _check_export_state(state: dict[str, torch.Tensor], cfg: RunConfig) -> None:
    expected = {k: tuple(v.shape) for k, v in build_model_meta(cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        shape = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:5]
        raise ArtifactError(f"weights do not match the config's model (phase {cfg.phase}): "
                            f"missing {missing}, unexpected {extra}, wrong shape {shape}")
    bad = nonfinite_weights(state)
    if bad:
        # A diverged run: exporting it would hand a server a model that answers garbage.
        raise ArtifactError(f"non-finite weights, not exported: {'; '.join(bad[:3])}"
                            + (f" (and {len(bad) - 3} more tensors)" if len(bad) > 3 else ""))


def nonfinite_weights(state: Mapping[str, torch.Tensor]) -> list[str]:
    """'NAME: n NaN, m inf of SIZE' for every floating-point tensor that is not all finite."""
    out = []
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            nan = int(torch.isnan(t).sum())
            out.append(f"{name}: {nan} NaN, {int(torch.isinf(t).sum())} inf of {t.numel()}")
    return out


def check_finite(model_dir: str | Path) -> list[str]:
    """What `nonfinite_weights` says about DIR/model.safetensors, read tensor by tensor (a
    server's memory holds one extra tensor at a time, not a second copy of the model)."""
    bad = []
    with safe_open(str(Path(model_dir) / WEIGHTS_FILE), framework="pt") as f:
        for name in f.keys():
            bad += nonfinite_weights({name: f.get_tensor(name)})
    return bad


def build_model_meta(cfg: RunConfig) -> LayoutModel:
    with torch.device("meta"):
        return build_model(cfg, dropout=0.0)


def fetch_artifact(model_dir: str | Path) -> Path:
    """The local directory of an artifact: `model_dir` itself, or for a URI its cached download
    (the three files checked there first, so a wrong URI is named as such)."""
    if not storage.is_uri(model_dir):
        return Path(model_dir)
    for name in (META_FILE, CONFIG_FILE, WEIGHTS_FILE):
        if not storage.is_file(storage.join(model_dir, name)):
            raise ArtifactError(f"{storage.join(model_dir, name)}: missing (is {model_dir} a model directory "
                                f"written by export_artifact?)")
    return storage.local_copy(model_dir, "models")


def read_artifact(model_dir: str | Path) -> tuple[dict[str, torch.Tensor], RunConfig, dict]:
    """(state_dict, config, meta) of an artifact (a directory or a URI), checked against this
    code's vocabularies. What `train --init-from` and `upgrade` use."""
    d = fetch_artifact(model_dir)
    for name in (META_FILE, CONFIG_FILE, WEIGHTS_FILE):
        if not (d / name).is_file():
            raise ArtifactError(f"{d / name}: missing (is {d} a model directory written by "
                                f"export_artifact?)")
    try:
        meta = json.loads((d / META_FILE).read_text())
    except json.JSONDecodeError as e:
        raise ArtifactError(f"{d / META_FILE}: not valid JSON ({e})") from None
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{d / META_FILE}: format_version {meta.get('format_version')!r}; "
                            f"this layoutray reads {FORMAT_VERSION}")
    cfg = load_config(d / CONFIG_FILE)
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    saved = meta.get("tokenizer", {})
    for key, ours in (("bins", tok.bins), ("element_types", list(tok.element_types)),
                      ("section_types", list(tok.section_types))):
        if saved.get(key) != ours:
            raise ArtifactError(f"{d / META_FILE}: tokenizer.{key} differs from this layoutray's "
                                f"({saved.get(key)!r} vs {ours!r}); the model's ids would mean "
                                f"other things, so it is refused rather than remapped")
    state = load_file(str(d / WEIGHTS_FILE))
    return state, cfg, meta
