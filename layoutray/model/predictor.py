"""A loaded model that answers layout requests: what the Python API, the CLI and the Serve
deployment hold.

    from layoutray.model.predictor import load
    p = load("runs/quickstart/model")
    p.predict(section_type="hero", elements=["heading", "paragraph", "button"])
    # -> [{"elements": [{"type": "heading", "x": 184, "y": 96, "width": 620, "height": 64}, ...],
    #      "alignment": 0.0012, "overlap": 0.0}]

Every request, from Python or over HTTP, goes through the one validator
(`layoutray.model.request.validate_payload`), so a bad field reads the same everywhere.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from layoutray import storage
from layoutray.config import RunConfig
from layoutray.data.imaging import decode_png, to_model_array
from layoutray.model.artifact import WEIGHTS_FILE, ArtifactError, read_artifact
from layoutray.model.generate import generate
from layoutray.model.network import LayoutModel, build_model
from layoutray.model.request import LayoutRequest, Limits, to_pixels, validate_payload
from layoutray.model.tokenizer import PAD, Box, LayoutTokenizer


def load(model_dir: str | Path, device: str = "cpu") -> "Predictor":
    """The artifact in `model_dir` (written by training, `export_artifact` or `upgrade`; a local
    directory or a URI such as s3://bucket/runs/x/model) as a Predictor.

    Weights come from safetensors (never pickle); the config and vocabularies are checked."""
    state, cfg, meta = read_artifact(model_dir)
    model = build_model(cfg, dropout=0.0)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ArtifactError(f"{storage.join(model_dir, WEIGHTS_FILE)}: does not match config.yaml: {e}") from None
    model.to(device).eval()
    return Predictor(model=model, cfg=cfg, tokenizer=LayoutTokenizer(bins=cfg.model.coord_bins),
                     meta=meta, path=str(model_dir))


def layout_scores(boxes: Sequence[Box], aesthetics=None) -> dict:
    """Per-layout alignment, overlap (None where undefined, e.g. one box) and aesthetic score
    (eval/aesthetic.py, with the settings `aesthetics`; None: the defaults)."""
    from layoutray.eval.aesthetic import layout_score
    from layoutray.eval.metrics import layout_alignment, layout_overlap

    out = {}
    for name, fn in (("alignment", layout_alignment), ("overlap", layout_overlap),
                     ("aesthetic", lambda b: layout_score(b, aesthetics) if b else None)):
        try:
            v = fn(list(boxes))
            out[name] = None if v is None or not math.isfinite(v) else round(float(v), 6)
        except Exception:  # noqa: BLE001 - a score must never fail a request
            out[name] = None
    return out


def _png_bytes(image: Any) -> bytes | None:
    """PNG bytes from what a Python caller may hand over: bytes, a path, or a PIL image."""
    if image is None or isinstance(image, (bytes, bytearray)):
        return image
    if isinstance(image, (str, Path)):
        try:
            return Path(image).read_bytes()
        except OSError as e:
            raise ValueError(f"image: cannot read {image}: {e.strerror}") from None
    if hasattr(image, "save"):
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return buf.getvalue()
    raise ValueError(f"image: must be PNG bytes, a path or a PIL image; got {type(image).__name__}")


@dataclass
class Predictor:
    """A model ready to answer requests."""

    model: LayoutModel
    cfg: RunConfig
    tokenizer: LayoutTokenizer
    meta: dict = field(default_factory=dict)
    path: str = ""
    max_batch: int = 64  # rows generated together (requests x samples)

    @property
    def max_elements(self) -> int:
        return self.cfg.model.max_elements

    def limits(self, **overrides) -> Limits:
        return Limits(max_elements=self.max_elements, max_steps=self.cfg.model.diffusion_steps, **overrides)

    def predict(self, section_type: str | None = None, elements: Sequence[str] | None = None,
                image: Any = None, *, samples: int = 1, temperature: float = 0.0, top_p: float = 1.0,
                seed: int = 0, canvas: tuple[int, int] = (1440, 800), steps: int | None = None,
                fixed: Sequence[dict] | None = None, constraints: str | None = None) -> list[dict]:
        """Layouts for one request, one dict per sample, boxes in canvas pixels.

        `image` is a wireframe or screenshot (PNG bytes, a path or a PIL image). With `elements`,
        exactly those types are placed. `fixed` boxes ({"type", "x", "y", "width", "height"} in
        canvas pixels, each one of `elements` when given) stay as they are and the model completes
        the layout around them. A diffusion model samples with `steps` (K <= its T; None: T); an
        autoregressive one ignores it. `constraints` is an aesthetic level (off, basic, full, advanced;
        None: the model's model.aesthetic_constraints). Bad values raise ValueError naming the field."""
        obj = {"section_type": section_type, "elements": list(elements) if elements is not None else None,
               "image": _png_bytes(image), "canvas": {"width": canvas[0], "height": canvas[1]},
               "samples": samples, "temperature": temperature, "top_p": top_p, "seed": seed,
               "steps": steps, "fixed": list(fixed) if fixed is not None else None, "constraints": constraints}
        req = validate_payload({k: v for k, v in obj.items() if v is not None},
                               self.limits(max_samples=max(8, samples)))
        answer = self.answer([req])[0]
        if isinstance(answer, Exception):
            raise answer
        return answer["layouts"]

    def answer(self, reqs: Sequence[LayoutRequest]) -> list[Any]:
        """Validated requests -> {"layouts": [...]} each (or the exception for that request).
        Requests with the same sampling settings share one generation call."""
        out: list[Any] = [None] * len(reqs)
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(reqs):
            level = r.constraints or self.cfg.model.aesthetic_constraints
            groups.setdefault((r.samples, r.temperature, r.top_p, r.seed, r.steps, level), []).append(i)
        for (samples, temperature, top_p, seed, steps, level), idx in groups.items():
            try:
                results = self.generate_layouts([reqs[i] for i in idx], samples=samples,
                                                temperature=temperature, top_p=top_p, seed=seed, steps=steps,
                                                constraints=level)
            except Exception as e:  # noqa: BLE001 - reported per request
                for i in idx:
                    out[i] = e
                continue
            for i, per_sample in zip(idx, results):
                W, H = reqs[i].canvas_width, reqs[i].canvas_height
                out[i] = {"layouts": [dict(elements=to_pixels(boxes, W, H), **layout_scores(boxes, self.cfg.model.aesthetics))
                                      for boxes in per_sample]}
        return out

    def image_array(self, png: bytes) -> np.ndarray:
        m = self.cfg.model
        return to_model_array(decode_png(png), m.image_height, m.image_width, m.image_channels)

    def generate_layouts(self, reqs: Sequence[LayoutRequest], samples: int = 1, temperature: float = 0.0,
                         top_p: float = 1.0, seed: int = 0, steps: int | None = None,
                         constraints: str | None = None) -> list[list[list[Box]]]:
        """Normalised boxes per request, per sample: result[i][k] is sample k of request i.

        Everything (requests x samples) is generated in batches of up to max_batch rows, from one
        generator seeded with `seed`, so the same call gives the same layouts."""
        rows = [(i, r) for i, r in enumerate(reqs) for _ in range(samples)]
        arrays = {i: self.image_array(r.image_png) for i, r in enumerate(reqs) if r.image_png is not None}
        device = next(self.model.parameters()).device
        generator = torch.Generator(device=device).manual_seed(seed)
        results: list[list[list[Box]]] = [[] for _ in reqs]
        for start in range(0, len(rows), self.max_batch):
            chunk = rows[start:start + self.max_batch]
            layouts = self._generate_chunk(chunk, arrays, device, temperature, top_p, generator, steps,
                                           constraints or self.cfg.model.aesthetic_constraints)
            for (i, _), layout in zip(chunk, layouts):
                results[i].append(layout)
        return results

    def _generate_chunk(self, chunk, arrays, device, temperature, top_p, generator,
                        steps: int | None = None, constraints: str = "off") -> list[list[Box]]:
        m = self.cfg.model
        specs = [self.tokenizer.encode_spec(r.section_type, r.elements) for _, r in chunk]
        S = max(len(s) for s in specs)
        spec = torch.tensor([s + [PAD] * (S - len(s)) for s in specs], dtype=torch.long)
        has_image = torch.tensor([i in arrays for i, _ in chunk])
        image = None
        if bool(has_image.any()):
            zeros = np.zeros((m.image_channels, m.image_height, m.image_width), np.float32)
            image = torch.from_numpy(np.stack([arrays.get(i, zeros) for i, _ in chunk])).to(device)
        return generate(self.model, self.tokenizer, image, has_image.to(device), spec.to(device),
                        max_elements=m.max_elements, temperature=temperature, top_p=top_p,
                        generator=generator, required_types=[r.elements for _, r in chunk], steps=steps,
                        fixed=[[Box(*b) for b in r.fixed] if r.fixed else None for _, r in chunk],
                        constraints=constraints, aesthetics=m.aesthetics)
