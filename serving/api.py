"""The HTTP side of the API: a size-limited body reader and the OpenAPI schema.

Validation itself is `layoutray.model.request` (re-exported here), the one validator that HTTP,
the model deployment and the Python Predictor share; the router turns its `ApiError` into
`{"error": {"field": ..., "message": ...}}` with that status. The pydantic models below only
document the API (OpenAPI at /docs); parsing is done by hand so the error statuses and messages
are ours and never a 500.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, Field

from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES
from layoutray.model.request import (FIELDS, ApiError, LayoutRequest, Limits, check_content_length,
                                     check_content_type, decode_image, parse_layout_request, to_pixels,
                                     validate_payload)

__all__ = [  # the validator's names are re-exported: the router, the benchmark and tests use them from here
    "FIELDS", "ApiError", "LayoutRequest", "Limits", "check_content_length", "check_content_type", "decode_image",
    "parse_layout_request", "to_pixels", "validate_payload", "read_body_limited", "Canvas", "LayoutRequestModel",
    "LayoutElement", "Layout", "LayoutResponse", "ErrorDetail", "ErrorResponse", "ERROR_RESPONSES"]


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


# ----------------------------------------------------------------------------- OpenAPI docs


class Canvas(BaseModel):
    width: int = Field(1440, ge=16, le=16384, description="canvas width in pixels")
    height: int = Field(800, ge=16, le=16384, description="canvas height in pixels")


class LayoutRequestModel(BaseModel):
    """Body of POST /v1/layouts. Every field is optional, but give at least one of `section_type`,
    `elements` and `image` (a section type alone lets the model choose the elements)."""

    section_type: Optional[str] = Field(None, description="one of: " + ", ".join(SECTION_TYPES),
                                        examples=["hero"])
    elements: Optional[list[str]] = Field(None, description="element types to place; one of: "
                                          + ", ".join(ELEMENT_TYPES), examples=[["heading", "button"]])
    image: Optional[str] = Field(None, description="a wireframe of the section: base64-encoded PNG")
    canvas: Canvas = Field(default_factory=Canvas)
    samples: int = Field(1, ge=1, description="layouts to generate (capped by max_samples)")
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int = Field(0, ge=0)


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


class LayoutResponse(BaseModel):
    version: str = Field(description="the model version that answered")
    layouts: list[Layout]


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


ERROR_RESPONSES = {code: {"model": ErrorResponse, "description": d} for code, d in (
    (400, "invalid JSON"), (413, "body too large"), (415, "wrong content type"),
    (422, "a field has a wrong value (the message names it)"), (503, "no version could answer"),
    (504, "request timed out"))}
