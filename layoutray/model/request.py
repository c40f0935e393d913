"""The one validator of a layout request, used by HTTP (serving/), the model deployment and the
Python `Predictor` alike (no Ray, no torch: unit-testable).

`parse_layout_request(raw_body, content_type, limits)` turns the bytes of a `POST /v1/layouts`
into a `LayoutRequest` or raises `ApiError(status, field, message)`; `validate_payload(obj,
limits)` does the same for an already parsed mapping (the Python API passes its keyword
arguments through it). Every bad input is a 4xx naming the field: 400 invalid JSON, 413 body too
large, 415 wrong content type, 422 a field with a wrong value.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import asdict, dataclass
from typing import Any, Optional

from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

FIELDS = ("section_type", "elements", "image", "canvas", "samples", "temperature", "top_p", "seed")


class ApiError(ValueError):
    """A client error: HTTP status, the offending field, a readable message."""

    def __init__(self, status: int, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.status, self.field, self.message = status, field, message

    def body(self) -> dict:
        return {"error": {"field": self.field, "message": self.message}}


@dataclass
class Limits:
    max_body_bytes: int = 4 * 1024 * 1024
    max_elements: int = 16  # the smallest element cap of the versions being served
    max_samples: int = 8
    min_canvas: int = 16
    max_canvas: int = 16384
    max_temperature: float = 5.0

    @classmethod
    def from_config(cls, cfg: dict, max_elements: int) -> "Limits":
        return cls(max_body_bytes=int(cfg.get("max_body_bytes", cls.max_body_bytes)),
                   max_elements=int(max_elements),
                   max_samples=int(cfg.get("max_samples", cls.max_samples)),
                   min_canvas=int(cfg.get("min_canvas", cls.min_canvas)),
                   max_canvas=int(cfg.get("max_canvas", cls.max_canvas)),
                   max_temperature=float(cfg.get("max_temperature", cls.max_temperature)))


@dataclass
class LayoutRequest:
    section_type: Optional[str]
    elements: Optional[list[str]]
    image_png: Optional[bytes]
    canvas_width: int = 1440
    canvas_height: int = 800
    samples: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain dict for a DeploymentHandle call (bytes travel fine)."""
        return asdict(self)


# ----------------------------------------------------------------------------- parsing


def check_content_type(content_type: Optional[str]) -> None:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "content-type", f"must be application/json; got {content_type or 'none'!r}")


def check_content_length(header: Optional[str], limit: int) -> None:
    if header is None:
        return
    try:
        n = int(header)
    except ValueError:
        raise ApiError(400, "content-length", f"not an integer: {header[:40]!r}") from None
    if n > limit:
        raise ApiError(413, "body", f"{n} bytes is over the limit of {limit} bytes")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int_field(obj: dict, key: str, default: int, lo: int, hi: int, name: Optional[str] = None) -> int:
    name = name or key
    v = obj.get(key, default)
    if not _is_int(v):
        raise ApiError(422, name, f"must be an integer; got {v!r}"[:200])
    if not lo <= v <= hi:
        raise ApiError(422, name, f"must be in [{lo}, {hi}]; got {v}")
    return v


def _num_field(obj: dict, key: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
    v = obj.get(key, default)
    if not _is_num(v):
        raise ApiError(422, key, f"must be a finite number; got {v!r}"[:200])
    if (v <= lo if lo_open else v < lo) or v > hi:
        raise ApiError(422, key, f"must be in {'(' if lo_open else '['}{lo}, {hi}]; got {v}")
    return float(v)


def decode_image(value: Any) -> bytes:
    """base64 PNG (or PNG bytes) -> PNG bytes (checked to decode), or ApiError naming `image`."""
    from layoutray.data.imaging import ImageError, decode_png

    if isinstance(value, (bytes, bytearray)):  # Python callers pass PNG bytes; JSON cannot
        data = bytes(value)
    elif isinstance(value, str):
        s = value.strip()
        if s.startswith("data:"):  # tolerate a data URL prefix
            s = s.split(",", 1)[-1]
        try:
            data = base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ApiError(422, "image", f"is not valid base64 ({e})") from None
    else:
        raise ApiError(422, "image", f"must be a base64 string (or PNG bytes); got {type(value).__name__}")
    if not data:
        raise ApiError(422, "image", "is empty")
    try:
        decode_png(data)
    except ImageError as e:
        raise ApiError(422, "image", str(e)) from None
    return data


def validate_payload(obj: Any, limits: Limits) -> LayoutRequest:
    if not isinstance(obj, dict):
        raise ApiError(422, "body", f"must be a JSON object; got {type(obj).__name__}")
    unknown = [k for k in obj if k not in FIELDS]
    if unknown:
        raise ApiError(422, str(unknown[0])[:60], f"unknown field; allowed: {', '.join(FIELDS)}")

    section = obj.get("section_type")
    if section is not None and section not in SECTION_TYPES:
        raise ApiError(422, "section_type", f"unknown section type {str(section)[:60]!r}; "
                                            f"allowed: {', '.join(SECTION_TYPES)}")

    elements = obj.get("elements")
    if elements is not None:
        if not isinstance(elements, list):
            raise ApiError(422, "elements", f"must be a list of element types; got {type(elements).__name__}")
        if len(elements) > limits.max_elements:
            raise ApiError(422, "elements", f"{len(elements)} elements is more than the model's cap of "
                                            f"{limits.max_elements}")
        for i, e in enumerate(elements):
            if not isinstance(e, str) or e not in ELEMENT_TYPES:
                raise ApiError(422, f"elements[{i}]", f"unknown element type {str(e)[:60]!r}; "
                                                      f"allowed: {', '.join(ELEMENT_TYPES)}")

    image = obj.get("image")
    png = decode_image(image) if image is not None else None
    if not elements and png is None and section is None:
        raise ApiError(422, "elements", "give at least one of `section_type`, `elements` (non-empty) and `image`")

    canvas = obj.get("canvas", {})
    if canvas is None:
        canvas = {}
    if not isinstance(canvas, dict):
        raise ApiError(422, "canvas", "must be an object {\"width\": W, \"height\": H}")
    extra = [k for k in canvas if k not in ("width", "height")]
    if extra:
        raise ApiError(422, f"canvas.{str(extra[0])[:40]}", "unknown field; allowed: width, height")
    w = _int_field(canvas, "width", 1440, limits.min_canvas, limits.max_canvas, "canvas.width")
    h = _int_field(canvas, "height", 800, limits.min_canvas, limits.max_canvas, "canvas.height")

    return LayoutRequest(
        section_type=section, elements=list(elements) if elements else None, image_png=png,
        canvas_width=w, canvas_height=h,
        samples=_int_field(obj, "samples", 1, 1, limits.max_samples),
        temperature=_num_field(obj, "temperature", 0.0, 0.0, limits.max_temperature),
        top_p=_num_field(obj, "top_p", 1.0, 0.0, 1.0, lo_open=True),
        seed=_int_field(obj, "seed", 0, 0, 2**31 - 1),
    )


def parse_layout_request(raw: bytes, content_type: Optional[str], limits: Limits) -> LayoutRequest:
    check_content_type(content_type)
    if len(raw) > limits.max_body_bytes:
        raise ApiError(413, "body", f"{len(raw)} bytes is over the limit of {limits.max_body_bytes} bytes")
    if not raw.strip():
        raise ApiError(400, "body", "empty body; expected a JSON object")
    try:
        obj = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, "body", f"invalid JSON: {e}"[:300]) from None
    return validate_payload(obj, limits)


def to_pixels(boxes, width: int, height: int) -> list[dict]:
    """Normalised Boxes -> elements in the canvas's pixel coordinates (integers)."""
    out = []
    for b in boxes:
        x, y = int(round(b.x * width)), int(round(b.y * height))
        out.append({"type": b.type, "x": x, "y": y,
                    "width": max(0, min(width - x, int(round(b.w * width)))),
                    "height": max(0, min(height - y, int(round(b.h * height))))})
    return out
