"""Serving artifacts: a directory that holds everything needed to generate layouts.

    DIR/config.yaml        the resolved RunConfig (layoutray.config.dump_yaml; load_config reads it)
    DIR/model.safetensors  fp32 weights, contiguous, one tensor per parameter (the output head is
                           tied to the token embedding in the model itself, so nothing is shared)
    DIR/meta.json          format version, layoutray version, tokenizer (bins + type vocabularies),
                           parameter count, and caller metadata (run name, metrics, upgrade report)

Loading needs torch, safetensors and yaml only: never DeepSpeed or Ray, and never pickle (weights
come from safetensors; nothing here calls torch.load).

    export_artifact(model, cfg, "runs/x/model", metadata={"run": "x"})
    predictor = load_artifact("runs/x/model")
    predictor.predict([{"section_type": "hero", "elements": ["heading", "button"], "image": None}])
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from layoutray import __version__
from layoutray.config import RunConfig, dump_yaml, load_config
from layoutray.model.generate import generate
from layoutray.data.imaging import decode_png, to_model_array
from layoutray.model.network import LayoutModel, build_model, count_parameters
from layoutray.model.tokenizer import PAD, Box, LayoutTokenizer

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, META_FILE = "config.yaml", "model.safetensors", "meta.json"
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
                    out_dir: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a serving artifact. The weights must match cfg's model exactly (checked here, so a
    bad export fails in the training run rather than in the server)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = clean_state_dict(model_or_state)
    expected = {k: tuple(v.shape) for k, v in build_model_meta(cfg).state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if got != expected:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        shape = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])[:5]
        raise ArtifactError(f"weights do not match the config's model (phase {cfg.phase}): "
                            f"missing {missing}, unexpected {extra}, wrong shape {shape}")
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    meta = {
        "format_version": FORMAT_VERSION,
        "layoutray_version": __version__,
        "phase": cfg.phase,
        "parameters": count_parameters(cfg),
        "tokenizer": {"bins": tok.bins, "element_types": list(tok.element_types),
                      "section_types": list(tok.section_types), "vocab_size": tok.vocab_size},
        "metadata": metadata or {},
    }
    # weights first and meta.json last: a directory with meta.json is complete
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(state, str(tmp), metadata={"format": "pt", "phase": cfg.phase})
    os.replace(tmp, out / WEIGHTS_FILE)
    _atomic_write(out / CONFIG_FILE, dump_yaml(cfg))
    _atomic_write(out / META_FILE, json.dumps(meta, indent=2, default=str) + "\n")
    return out


def build_model_meta(cfg: RunConfig) -> LayoutModel:
    with torch.device("meta"):
        return build_model(cfg, dropout=0.0)


def read_artifact(model_dir: str | Path) -> tuple[dict[str, torch.Tensor], RunConfig, dict]:
    """(state_dict, config, meta) of an artifact, checked against this code's vocabularies.
    What `train --init-from` and `upgrade` use."""
    d = Path(model_dir)
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


def load_artifact(model_dir: str | Path, device: str = "cpu") -> "Predictor":
    state, cfg, meta = read_artifact(model_dir)
    model = build_model(cfg, dropout=0.0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{Path(model_dir) / WEIGHTS_FILE}: does not match config.yaml: {e}") from None
    model.to(device).eval()
    return Predictor(model=model, cfg=cfg, tokenizer=LayoutTokenizer(bins=cfg.model.coord_bins),
                     meta=meta, path=str(model_dir))


# ---------------------------------------------------------------------------- prediction


@dataclass
class Predictor:
    """A loaded model ready to answer requests (what the Serve deployment and the CLI hold)."""

    model: LayoutModel
    cfg: RunConfig
    tokenizer: LayoutTokenizer
    meta: dict = field(default_factory=dict)
    path: str = ""
    max_batch: int = 64  # rows generated together (requests x samples)

    @property
    def max_elements(self) -> int:
        return self.cfg.model.max_elements

    def validate(self, request: dict, index: int = 0) -> tuple[str | None, list[str] | None, Any]:
        """(section_type, elements, image) of one request, or ValueError naming the field."""
        where = f"requests[{index}]"
        if not isinstance(request, dict):
            raise ValueError(f"{where}: must be a mapping with section_type, elements, image")
        unknown = set(request) - {"section_type", "elements", "image"}
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}; allowed: section_type, "
                             f"elements, image")
        section = request.get("section_type")
        if section is not None and section not in self.tokenizer.section_types:
            raise ValueError(f"{where}.section_type: unknown section type {section!r}; allowed: "
                             f"{', '.join(self.tokenizer.section_types)}")
        elements = request.get("elements")
        if elements is not None:
            if isinstance(elements, str) or not isinstance(elements, (list, tuple)):
                raise ValueError(f"{where}.elements: must be a list of element types")
            bad = [e for e in elements if e not in self.tokenizer.element_types]
            if bad:
                raise ValueError(f"{where}.elements: unknown element type(s) {bad}; allowed: "
                                 f"{', '.join(self.tokenizer.element_types)}")
            if len(elements) > self.max_elements:
                raise ValueError(f"{where}.elements: {len(elements)} elements; this model "
                                 f"({self.cfg.phase}) places at most {self.max_elements}")
            elements = list(elements)
        image = request.get("image")
        if isinstance(image, (bytes, bytearray)):
            image = decode_png(bytes(image))  # ImageError (a ValueError) names the problem
        elif image is not None and not hasattr(image, "convert"):
            raise ValueError(f"{where}.image: must be PNG bytes or a PIL image; got {type(image).__name__}")
        return section, elements, image

    def image_array(self, image) -> np.ndarray:
        m = self.cfg.model
        return to_model_array(image, m.image_height, m.image_width, m.image_channels)

    def predict(self, requests: list[dict], samples: int = 1, temperature: float = 0.0,
                top_p: float = 1.0, seed: int = 0) -> list[list[list[Box]]]:
        """Layouts per request, per sample: result[i][k] is sample k of request i.

        A request is {"section_type": str | None, "elements": [type, ...] | None,
        "image": PIL.Image | PNG bytes | None}. With elements, exactly those types are placed.
        Everything (requests x samples) is generated in batches of up to max_batch rows, from
        one generator seeded with `seed`, so the same call gives the same layouts.
        """
        if samples < 1:
            raise ValueError(f"samples: must be >= 1; got {samples}")
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p: must be in (0, 1]; got {top_p}")
        if temperature < 0.0:
            raise ValueError(f"temperature: must be >= 0; got {temperature}")
        parsed = [self.validate(r, i) for i, r in enumerate(requests)]
        m = self.cfg.model
        rows = [(i, p) for i, p in enumerate(parsed) for _ in range(samples)]
        arrays = {i: self.image_array(p[2]) for i, p in enumerate(parsed) if p[2] is not None}
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        results: list[list[list[Box]]] = [[] for _ in requests]
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start:start + self.max_batch]
            specs = [self.tokenizer.encode_spec(sec, els) for _, (sec, els, _) in chunk]
            S = max(len(s) for s in specs)
            spec = torch.tensor([s + [PAD] * (S - len(s)) for s in specs], dtype=torch.long)
            has_image = torch.tensor([i in arrays for i, _ in chunk])
            image = None
            if bool(has_image.any()):
                zeros = np.zeros((m.image_channels, m.image_height, m.image_width), np.float32)
                image = torch.from_numpy(np.stack([arrays.get(i, zeros) for i, _ in chunk]))
                image = image.to(device)
            layouts = generate(self.model, self.tokenizer, image, has_image.to(device),
                               spec.to(device), max_elements=m.max_elements,
                               temperature=temperature, top_p=top_p, generator=generator,
                               required_types=[els for _, (_, els, _) in chunk])
            for (i, _), layout in zip(chunk, layouts):
                results[i].append(layout)
        return results
