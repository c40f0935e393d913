"""The HTTP side of the API: a size-limited body reader, the admin start body's checks, the public
view of /v1/models and the OpenAPI schema.

Validation itself is `layoutray.model.request` (re-exported here), the one validator that HTTP,
the model deployment and the Python Predictor share; the router turns its `ApiError` into
`{"error": {"field": ..., "message": ...}}` with that status. The pydantic models below only
document the API (OpenAPI at /docs); parsing is done by hand so the error statuses and messages
are ours and never a 500. The published request schemas are inlined (`inline_refs`): FastAPI
copies an `openapi_extra` schema verbatim, and a `$ref` to pydantic's `$defs` would point at
nothing in the OpenAPI document.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES
from layoutray.model.request import (FIELDS, METRIC_FIELDS, ApiError, HugeInt, LayoutRequest, Limits,
                                     check_content_length, check_content_type, decode_image, load_json,
                                     metric_field, parse_layout_request, to_pixels, validate_payload)

__all__ = [  # the validator's names are re-exported: the router, the benchmark and tests use them from here
    "FIELDS", "METRIC_FIELDS", "ApiError", "LayoutRequest", "Limits", "check_content_length", "check_content_type",
    "decode_image", "load_json", "metric_field", "parse_layout_request", "to_pixels", "validate_payload",
    "read_body_limited", "parse_start_body", "safe_is_dir", "public_models", "PUBLIC_VERSION_FIELDS",
    "layout_request_schema", "start_body_schema", "inline_refs", "Canvas", "LayoutRequestModel",
    "StartBody", "LayoutElement", "Layout", "LayoutResponse", "ErrorDetail", "ErrorResponse", "ERROR_RESPONSES"]

ADMIN_MAX_BODY_BYTES = 64 * 1024  # a start body is a few hundred bytes
PUBLIC_VERSION_FIELDS = ("id", "slot", "weight")


async def read_body_limited(request, limit: int) -> bytes:
    """Read a Starlette request body, refusing (413) as soon as it passes `limit` bytes."""
    check_content_length(request.headers.get("content-length"), limit)
    chunks, total = [], 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise ApiError(413, "body", f"over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# ----------------------------------------------------------------------------- /v1/models


def public_models(full: dict) -> dict:
    """What /v1/models shows without the admin token: which models serve and their shares. The
    rest (artifact paths, PIDs, replica ids, chaos settings, load errors) helps an attacker more
    than a client."""
    return {"versions": [{k: v.get(k) for k in PUBLIC_VERSION_FIELDS} for v in full.get("versions", [])]}


# ----------------------------------------------------------------------------- admin start body


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(name: str, v: Any, lo: float, hi: float, lo_open: bool = False, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    if isinstance(v, HugeInt) or not _finite(v) or (integer and float(v) != int(v)):
        raise ApiError(422, name, f"must be {kind}; got {_type_name(v)}")
    if (v <= lo if lo_open else v < lo) or v > hi:
        raise ApiError(422, name, f"must be in {'(' if lo_open else '['}{lo}, {hi}]; got {v}")


def _type_name(v: Any) -> str:
    if isinstance(v, HugeInt):
        return repr(v)
    return {bool: "a boolean", str: "a string", list: "an array", dict: "an object",
            type(None): "null"}.get(type(v), repr(v)[:40])


def _check_canary(v: Any) -> None:
    """A path the router can stat: no NUL, encodable, no component over 255 bytes (an over-long
    name makes os.stat raise ENAMETOOLONG, which Path.is_dir does not swallow)."""
    if v is None:
        return
    if not isinstance(v, str) or not v.strip():
        raise ApiError(422, "canary", f"must be a model directory path (a non-empty string); got {_type_name(v)}")
    try:
        encoded = v.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(422, "canary", "is not valid UTF-8 text") from None
    if b"\x00" in encoded or len(encoded) > 4096 or any(len(p) > 255 for p in encoded.split(b"/")):
        raise ApiError(422, "canary", "is not a usable path (NUL byte, or over 4096 bytes, or a name over 255)")


def _check_steps(v: Any) -> None:
    from serving.rollout import RolloutError, parse_steps

    items = [s for s in v.split(",") if s.strip()] if isinstance(v, str) else v  # as parse_steps reads it
    if not isinstance(items, list) or not 0 < len(items) <= 100 or (isinstance(v, str) and len(v) > 1000):
        raise ApiError(422, "steps", "must be comma-separated percentages (\"10,25,50,100\") or a list of "
                                     f"at most 100 numbers; got {_type_name(v)}")
    for item in items:
        num = _float_or_none(item.strip()) if isinstance(item, str) else item
        if not _finite(num):
            raise ApiError(422, "steps", f"must hold finite numbers; got {str(item)[:40]!r}")
    try:
        parse_steps(v)
    except RolloutError as e:  # its order / range checks, named after the field
        raise ApiError(422, "steps", str(e)) from None


def _float_or_none(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


# name -> check; fields not listed here (a newer START_FIELDS entry) are left to rollout.py.
_START_CHECKS = {
    "canary": _check_canary,
    "steps": _check_steps,
    "interval": lambda v: _number("interval", v, 0, 7 * 86400, lo_open=True),
    "min_requests": lambda v: _number("min_requests", v, 1, 10**9, integer=True),
    "max_error_rate": lambda v: _number("max_error_rate", v, 0, 1),
    "max_p95_ms": lambda v: _number("max_p95_ms", v, 0, 3_600_000, lo_open=True),
    "max_failed_windows": lambda v: _number("max_failed_windows", v, 1, 1000, integer=True),
}


def parse_start_body(raw: bytes) -> dict:
    """The body of POST /admin/rollout/start: JSON read by the layouts validator's parser (size,
    depth and integer limits), then each known field's type and range; 422 names the field.
    The allowed names are rollout.START_FIELDS; fields this module has no check for are left to
    rollout.start_options."""
    from serving.rollout import START_FIELDS

    body = load_json(raw, ADMIN_MAX_BODY_BYTES, Limits.max_depth)
    if not isinstance(body, dict):
        raise ApiError(422, "body", f"must be a JSON object; got {_type_name(body)}")
    unknown = sorted(k for k in body if k not in START_FIELDS)
    if unknown:  # refused here: ApiError makes the echoed name safe to encode
        raise ApiError(422, unknown[0][:60], f"unknown field; allowed: {', '.join(sorted(START_FIELDS))}")
    for name, check in _START_CHECKS.items():
        if name in body:
            check(body[name])
    for name, default in _numeric_start_defaults().items():  # the quality thresholds: numbers
        if name in body and name not in _START_CHECKS:
            _number(name, body[name], -1e12, 1e12, integer=isinstance(default, int))
    return body


def _numeric_start_defaults() -> dict:
    """Start fields beyond _START_CHECKS whose defaults are numbers (rollout's quality thresholds);
    their ranges are the controller's to check."""
    from serving import rollout
    return {k: v for k, v in getattr(rollout, "QUALITY_DEFAULTS", {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def safe_is_dir(path: str) -> bool:
    """Path.is_dir that answers False instead of raising (EACCES, ENAMETOOLONG, ...). A URI
    (s3://...) passes: the model slot that loads it names what is wrong with it."""
    from layoutray import storage

    if storage.is_uri(path):
        return True
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


# ----------------------------------------------------------------------------- OpenAPI docs


def inline_refs(schema: dict) -> dict:
    """A pydantic JSON schema with every `#/$defs/X` replaced by X itself and `$defs` dropped:
    self-contained, so it stays valid wherever it is pasted (the models here are not recursive)."""
    defs = schema.get("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(copy.deepcopy(defs[ref[len("#/$defs/"):]]))
            return {k: walk(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)


SectionType = Literal[SECTION_TYPES]  # type: ignore[valid-type]
ElementType = Literal[ELEMENT_TYPES]  # type: ignore[valid-type]


class Canvas(BaseModel):
    model_config = ConfigDict(extra="forbid")
    width: int = Field(1440, ge=16, le=16384, description="canvas width in pixels")
    height: int = Field(800, ge=16, le=16384, description="canvas height in pixels")


class FixedBox(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: ElementType
    x: int = Field(ge=0, le=Limits.max_canvas, description="left edge in canvas pixels (< canvas width)")
    y: int = Field(ge=0, le=Limits.max_canvas, description="top edge in canvas pixels (< canvas height)")
    width: int = Field(ge=1, le=Limits.max_canvas, description="x + width <= canvas width")
    height: int = Field(ge=1, le=Limits.max_canvas, description="y + height <= canvas height")


class LayoutRequestModel(BaseModel):
    """Body of POST /v1/layouts. Every field is optional, but give at least one of `section_type`,
    `elements` and `image` (a section type alone lets the model choose the elements)."""

    model_config = ConfigDict(extra="forbid")
    section_type: Optional[SectionType] = Field(None, examples=["hero"])
    elements: Optional[list[ElementType]] = Field(
        None, max_length=Limits.max_elements, examples=[["heading", "button"]],
        description="element types to place; at most the served models' element cap")
    image: Optional[str] = Field(None, description="a wireframe of the section: base64-encoded PNG, at most "
                                 f"{Limits.max_image_pixels:,} pixels (413 over that)",
                                 json_schema_extra={"contentEncoding": "base64", "contentMediaType": "image/png"})
    canvas: Optional[Canvas] = None
    samples: int = Field(1, ge=1, le=Limits.max_samples, description="layouts to generate")
    temperature: float = Field(
        0.0, description=f"0 means greedy; else sampling temperature in [{Limits.min_temperature}, "
                         f"{Limits.max_temperature}]")
    top_p: float = Field(1.0, ge=Limits.min_top_p, le=1.0, description="nucleus sampling mass")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    steps: Optional[int] = Field(None, ge=1, le=Limits.max_steps,
                                 description="diffusion models: sampling steps K (default and above the model's "
                                             "T: T); autoregressive models have no steps and ignore it")
    fixed: Optional[list[FixedBox]] = Field(
        None, max_length=Limits.max_elements,
        description="boxes of a partial layout in canvas pixels, held as given while the rest is generated "
                    "(each one of `elements` when those are given)")
    constraints: Optional[Literal["off", "basic", "full", "advanced"]] = Field(
        None, description="aesthetic constraint level (docs/aesthetics.md); default: the model's own")


def layout_request_schema() -> dict:
    """The published request schema: inlined, with the rules pydantic cannot say (temperature 0 or
    in range; at least one of section_type, elements and image)."""
    schema = inline_refs(LayoutRequestModel.model_json_schema())
    schema["properties"]["temperature"] = {
        "anyOf": [{"const": 0}, {"type": "number", "minimum": Limits.min_temperature,
                                 "maximum": Limits.max_temperature}],
        "default": 0.0, "description": schema["properties"]["temperature"]["description"]}
    schema["anyOf"] = [{"required": ["section_type"], "properties": {"section_type": {"type": "string"}}},
                       {"required": ["elements"], "properties": {"elements": {"type": "array", "minItems": 1}}},
                       {"required": ["image"], "properties": {"image": {"type": "string"}}}]
    return schema


class StartBody(BaseModel):
    """Body of POST /admin/rollout/start (all optional)."""

    model_config = ConfigDict(extra="forbid")
    canary: Optional[str] = Field(None, description="model directory on the serving host, object-storage URI "
                                  "or MLflow registry reference (models:/NAME@ALIAS, models:/NAME/VERSION) to load "
                                  "into the canary slot; omitted: the slot's current model")
    steps: Union[str, list[float]] = Field("10,25,50,100", description="increasing canary percentages ending at 100")
    interval: float = Field(60.0, gt=0, le=7 * 86400, description="seconds per analysis window")
    min_requests: int = Field(50, ge=1, le=10**9)
    max_error_rate: float = Field(0.05, ge=0, le=1)
    max_p95_ms: float = Field(2000.0, gt=0, le=3_600_000)
    max_failed_windows: int = Field(2, ge=1, le=1000)


def start_body_schema() -> dict:
    """StartBody's schema plus the numeric quality thresholds rollout.py accepts."""
    schema = inline_refs(StartBody.model_json_schema())
    for name, default in _numeric_start_defaults().items():
        schema["properties"].setdefault(name, {"type": "integer" if isinstance(default, int) else "number",
                                               "default": default})
    return schema


class LayoutElement(BaseModel):
    type: str
    x: int
    y: int
    width: int
    height: int


class Layout(BaseModel):
    elements: list[LayoutElement]
    alignment: Optional[float] = Field(None, description="alignment score of this layout")
    overlap: Optional[float] = Field(None, description="overlap score of this layout")
    aesthetic: Optional[float] = Field(None, description="aesthetic score of this layout in [0, 1] (docs/aesthetics.md)")


class LayoutResponse(BaseModel):
    version: str = Field(description="the model that answered: `<name>@<12 hex digits of its weights' sha256>`")
    slot: str = Field(description="the deployment (slot) that answered: blue or green")
    layouts: list[Layout]


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES = {code: {"model": ErrorResponse, "description": d} for code, d in (
    (400, "invalid JSON, or nested deeper than 32 levels"), (413, "body too large, or an image over the pixel cap"),
    (415, "wrong content type"), (422, "a field has a wrong value (the message names it)"),
    (503, "no version could answer"), (504, "request timed out"))}
