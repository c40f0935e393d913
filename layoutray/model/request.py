"""The one validator of a layout request, used by HTTP (serving/), the model deployment and the
Python `Predictor` alike (no Ray, no torch: unit-testable).

`parse_layout_request(raw_body, content_type, limits)` turns the bytes of a `POST /v1/layouts`
into a `LayoutRequest` or raises `ApiError(status, field, message)`; `validate_payload(obj,
limits)` does the same for an already parsed mapping (the Python API passes its keyword
arguments through it). Every bad input is a 4xx naming the field, never a 5xx:

    400 body   not JSON, empty, or nested deeper than `Limits.max_depth` (checked on the raw bytes
               before parsing: a 10,000-deep body would otherwise exhaust Python's recursion limit)
    413 body   body over `max_body_bytes`
    413 image  a PNG whose header (IHDR) claims more than `max_image_pixels` pixels: refused before
               any pixel is decoded, so a small file cannot make the server allocate gigabytes
    415        wrong content type
    422 FIELD  a field with a wrong type or value, including integers with more digits than any
               field allows (parsed as `HugeInt`, never converted) and sampling settings the
               sampler cannot use (temperature in (0, 0.05), top_p < 0.05)

`ApiError.field` may echo a client's unknown field name (readable errors); `metric_field` maps any
field to a fixed set, so metric labels never carry client text.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import struct
from dataclasses import asdict, dataclass
from typing import Any, Optional

from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

FIELDS = ("section_type", "elements", "image", "canvas", "samples", "temperature", "top_p", "seed", "steps",
          "fixed", "constraints")
# The aesthetic constraint levels a request may ask for (model.aesthetic_constraints; model/constraints.py).
CONSTRAINT_LEVELS = ("off", "basic", "full", "advanced")
# Everything else an error can name besides FIELDS; metric labels use only these and "other".
METRIC_FIELDS = FIELDS + ("body", "content-type", "content-length", "canvas.width", "canvas.height", "other")
# No field takes an integer this long (seed < 2**31 has 10 digits); longer ones are not even
# converted: int() of thousands of digits is slow, and over 4,300 it raises ValueError.
MAX_INT_DIGITS = 30


def _safe_text(s: str, limit: int) -> str:
    """Client text fit to echo in a JSON error: truncated, lone surrogates escaped (they cannot be
    encoded as UTF-8 and would turn the error response itself into a 500)."""
    return str(s)[:limit].encode("utf-8", "backslashreplace").decode("utf-8")


def metric_field(field: str) -> str:
    """An ApiError field as a metric label: one of METRIC_FIELDS. `elements[3]` -> `elements`;
    unknown names (client text: unbounded and possibly not ASCII) -> `other`."""
    head = str(field).split("[", 1)[0]
    return head if head in METRIC_FIELDS else "other"


class HugeInt:
    """A JSON integer with more than MAX_INT_DIGITS digits, kept unconverted: every field check
    rejects it with a 422 naming the field."""

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<an integer of {self.digits} digits>"


class ApiError(ValueError):
    """A client error: HTTP status, the offending field, a readable message."""

    def __init__(self, status: int, field: str, message: str):
        field, message = _safe_text(field, 80), _safe_text(message, 500)
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
    # Below these the sampler divides logits by ~0 (or keeps ~no mass): softmax gives NaN and
    # torch.multinomial fails, a client's mistake that used to count as a model failure (503).
    min_temperature: float = 0.05  # 0 itself is allowed: greedy decoding, no division
    min_top_p: float = 0.05
    max_depth: int = 32  # JSON nesting; a valid request nests 2 levels
    max_steps: int = 1000  # diffusion sampling steps: the largest T of any phase (a model runs min(steps, T))
    max_image_pixels: int = 16_000_000  # width x height from the PNG header
    # False: an image is checked up to its PNG header (base64, signature, pixel cap) and decoded
    # by whoever uses it. The Serve router sets it: decoding a 16-megapixel PNG costs ~0.4 s of
    # CPU, which on the router's event loop would stall every other request; the model replica
    # decodes it off its loop and answers 422 for pixels that do not decode.
    decode_images: bool = True

    @classmethod
    def from_config(cls, cfg: dict, max_elements: int) -> "Limits":
        return cls(max_body_bytes=int(cfg.get("max_body_bytes", cls.max_body_bytes)),
                   max_elements=int(max_elements),
                   max_samples=int(cfg.get("max_samples", cls.max_samples)),
                   min_canvas=int(cfg.get("min_canvas", cls.min_canvas)),
                   max_canvas=int(cfg.get("max_canvas", cls.max_canvas)),
                   max_temperature=float(cfg.get("max_temperature", cls.max_temperature)),
                   max_depth=int(cfg.get("max_json_depth", cls.max_depth)),
                   max_image_pixels=int(cfg.get("max_image_pixels", cls.max_image_pixels)))


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
    steps: Optional[int] = None  # diffusion sampling steps K (None: the model's T; AR models have none)
    fixed: Optional[list] = None  # boxes held as given: [type, x, y, w, h] normalised to the canvas
    constraints: Optional[str] = None  # aesthetic constraint level (None: the model's own)

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
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    # A Python caller's int beyond float range (10**400) makes isfinite raise: not a usable number.
    return (abs(v) < 2**1000) if isinstance(v, int) else math.isfinite(v)


def _int_field(obj: dict, key: str, default: int, lo: int, hi: int, name: Optional[str] = None) -> int:
    """An integer in [lo, hi]. 3.0 counts: JSON has one number type, and JSON Schema's "integer"
    (the published OpenAPI document) accepts it, so schema-valid bodies must pass here too."""
    name = name or key
    v = obj.get(key, default)
    if isinstance(v, HugeInt):
        raise ApiError(422, name, f"must be in [{lo}, {hi}]; got {v!r}")
    if not (_is_int(v) or (_is_num(v) and float(v).is_integer())):
        raise ApiError(422, name, f"must be an integer; got {_short_repr(v)}")
    if not lo <= v <= hi:
        raise ApiError(422, name, f"must be in [{lo}, {hi}]; got {_short_repr(v)}")
    return int(v)


def _num_field(obj: dict, key: str, default: float, lo: float, hi: float, zero_ok: bool = False) -> float:
    """A finite number in [lo, hi]; with zero_ok, 0 too (temperature: 0 is greedy decoding)."""
    v = obj.get(key, default)
    allowed = f"0 or in [{lo}, {hi}]" if zero_ok else f"in [{lo}, {hi}]"
    if isinstance(v, HugeInt):
        raise ApiError(422, key, f"must be {allowed}; got {v!r}")
    if not _is_num(v):
        raise ApiError(422, key, f"must be a finite number; got {_short_repr(v)}")
    if not ((zero_ok and v == 0) or lo <= v <= hi):
        raise ApiError(422, key, f"must be {allowed}; got {_short_repr(v)}")
    return float(v)


def _short_repr(v: Any) -> str:
    """repr of a client value for a message, without building the repr of a huge structure."""
    if isinstance(v, (list, dict)):
        return f"a JSON {'array' if isinstance(v, list) else 'object'} of {len(v)} items"
    if isinstance(v, int) and v.bit_length() > 128:  # repr of over 4,300 digits raises ValueError
        return f"an integer of about {int(v.bit_length() * 0.30103)} digits"
    return repr(v)[:100]


# ----------------------------------------------------------------------------- images

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) from a PNG's IHDR chunk (bytes 8..24), or None when the bytes do not start
    like a PNG (decode_png then says what is wrong). Reads 24 bytes: no decoding."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def check_image_pixels(data: bytes, max_pixels: int) -> None:
    """413 before decoding when the header claims more pixels than we serve: PNG compresses a
    blank 6300x6300 image (40 M pixels, 40-120 MB decoded) into a few kilobytes."""
    size = png_size(data)
    if size is None:
        return
    w, h = size
    if w == 0 or h == 0:
        raise ApiError(422, "image", f"PNG header says {w}x{h} pixels: an empty image")
    if w * h > max_pixels:
        raise ApiError(413, "image", f"PNG header says {w}x{h} = {w * h:,} pixels; the limit is "
                                     f"{max_pixels:,} pixels")


def _image_bytes(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):  # Python callers pass PNG bytes; JSON cannot
        return bytes(value)
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("data:"):  # tolerate a data URL prefix
            s = s.split(",", 1)[-1]
        try:
            return base64.b64decode(s, validate=True)
        except (binascii.Error, ValueError) as e:
            raise ApiError(422, "image", f"is not valid base64 ({e})") from None
    raise ApiError(422, "image", f"must be a base64 string (or PNG bytes); got {type(value).__name__}")


def decode_image(value: Any, max_pixels: int = Limits.max_image_pixels, decode: bool = True) -> bytes:
    """base64 PNG (or PNG bytes) -> PNG bytes (checked to decode unless `decode` is False), or
    ApiError naming `image`."""
    from layoutray.data.imaging import ImageError, decode_png

    data = _image_bytes(value)
    if not data:
        raise ApiError(422, "image", "is empty")
    check_image_pixels(data, max_pixels)
    if not data.startswith(PNG_SIGNATURE):
        raise ApiError(422, "image", "not a PNG (bad signature)")
    if decode:
        try:
            decode_png(data)
        except ImageError as e:
            raise ApiError(422, "image", str(e)) from None
    return data


def _section(obj: dict) -> Optional[str]:
    section = obj.get("section_type")
    if section is not None and not (isinstance(section, str) and section in SECTION_TYPES):
        raise ApiError(422, "section_type", f"unknown section type {_short_repr(section)}; "
                                            f"allowed: {', '.join(SECTION_TYPES)}")
    return section


def _elements(obj: dict, limits: Limits) -> Optional[list]:
    elements = obj.get("elements")
    if elements is None:
        return None
    if not isinstance(elements, list):
        raise ApiError(422, "elements", f"must be a list of element types; got {type(elements).__name__}")
    if len(elements) > limits.max_elements:
        raise ApiError(422, "elements", f"{len(elements)} elements is more than the model's cap of "
                                        f"{limits.max_elements}")
    for i, e in enumerate(elements):
        if not (isinstance(e, str) and e in ELEMENT_TYPES):
            raise ApiError(422, f"elements[{i}]", f"unknown element type {_short_repr(e)}; "
                                                  f"allowed: {', '.join(ELEMENT_TYPES)}")
    return elements


def _canvas(obj: dict, limits: Limits) -> tuple[int, int]:
    canvas = obj.get("canvas", {})
    if canvas is None:
        canvas = {}
    if not isinstance(canvas, dict):
        raise ApiError(422, "canvas", "must be an object {\"width\": W, \"height\": H}")
    extra = [k for k in canvas if k not in ("width", "height")]
    if extra:
        raise ApiError(422, f"canvas.{str(extra[0])[:40]}", "unknown field; allowed: width, height")
    return (_int_field(canvas, "width", 1440, limits.min_canvas, limits.max_canvas, "canvas.width"),
            _int_field(canvas, "height", 800, limits.min_canvas, limits.max_canvas, "canvas.height"))


FIXED_KEYS = ("type", "x", "y", "width", "height")


def _fixed_box(item: Any, i: int, W: int, H: int) -> list:
    """One `fixed` box in canvas pixels -> [type, x, y, w, h] normalised; on the canvas, >= 1 px."""
    name = f"fixed[{i}]"
    if not isinstance(item, dict):
        raise ApiError(422, name, "must be an object {\"type\", \"x\", \"y\", \"width\", \"height\"} in "
                                  "canvas pixels")
    extra = [k for k in item if k not in FIXED_KEYS]
    missing = [k for k in FIXED_KEYS if k not in item]
    if extra or missing:
        key = str(extra[0])[:40] if extra else missing[0]
        raise ApiError(422, f"{name}.{key}", f"{'unknown' if extra else 'missing'} field; allowed: "
                                             f"{', '.join(FIXED_KEYS)}")
    t = item["type"]
    if not (isinstance(t, str) and t in ELEMENT_TYPES):
        raise ApiError(422, f"{name}.type", f"unknown element type {_short_repr(t)}; allowed: {', '.join(ELEMENT_TYPES)}")
    x = _int_field(item, "x", 0, 0, W - 1, f"{name}.x")
    y = _int_field(item, "y", 0, 0, H - 1, f"{name}.y")
    w = _int_field(item, "width", 1, 1, W - x, f"{name}.width")
    h = _int_field(item, "height", 1, 1, H - y, f"{name}.height")
    return [t, x / W, y / H, w / W, h / H]


def _fixed(obj: dict, limits: Limits, W: int, H: int, elements: Optional[list]) -> Optional[list]:
    """`fixed`: boxes of the layout the caller places (completion). Each is one of `elements` when
    those are given (the layout holds exactly `elements`); at most the model's element cap."""
    items = obj.get("fixed")
    if items is None:
        return None
    if not isinstance(items, list):
        raise ApiError(422, "fixed", f"must be a list of boxes; got {type(items).__name__}")
    if len(items) > limits.max_elements:
        raise ApiError(422, "fixed", f"{len(items)} boxes is more than the model's cap of {limits.max_elements}")
    boxes = [_fixed_box(item, i, W, H) for i, item in enumerate(items)]
    if elements:
        left = list(elements)
        for i, b in enumerate(boxes):
            if b[0] not in left:
                raise ApiError(422, f"fixed[{i}].type", f"{b[0]!r} is not among `elements` (or more fixed boxes "
                                                        f"of it than `elements` lists): fixed boxes are part of "
                                                        f"the layout, so `elements` names each of them")
            left.remove(b[0])
    return boxes or None


def validate_payload(obj: Any, limits: Limits) -> LayoutRequest:
    if not isinstance(obj, dict):
        raise ApiError(422, "body", f"must be a JSON object; got {type(obj).__name__}")
    unknown = [k for k in obj if k not in FIELDS]
    if unknown:
        raise ApiError(422, str(unknown[0])[:60], f"unknown field; allowed: {', '.join(FIELDS)}")
    section, elements = _section(obj), _elements(obj, limits)
    image = obj.get("image")
    png = decode_image(image, limits.max_image_pixels, limits.decode_images) if image is not None else None
    if not elements and png is None and section is None and not obj.get("fixed"):
        raise ApiError(422, "elements", "give at least one of `section_type`, `elements` (non-empty), `image` "
                                        "and `fixed`")
    w, h = _canvas(obj, limits)
    return LayoutRequest(
        section_type=section, elements=list(elements) if elements else None, image_png=png,
        canvas_width=w, canvas_height=h,
        samples=_int_field(obj, "samples", 1, 1, limits.max_samples),
        temperature=_num_field(obj, "temperature", 0.0, limits.min_temperature, limits.max_temperature,
                               zero_ok=True),
        top_p=_num_field(obj, "top_p", 1.0, limits.min_top_p, 1.0),
        seed=_int_field(obj, "seed", 0, 0, 2**31 - 1),
        steps=None if obj.get("steps") is None else _int_field(obj, "steps", None, 1, limits.max_steps),
        fixed=_fixed(obj, limits, w, h, elements),
        constraints=_constraints(obj),
    )


def _constraints(obj: dict) -> Optional[str]:
    level = obj.get("constraints")
    if level is not None and not (isinstance(level, str) and level in CONSTRAINT_LEVELS):
        raise ApiError(422, "constraints", f"unknown level {_short_repr(level)}; allowed: {', '.join(CONSTRAINT_LEVELS)}")
    return level


# ----------------------------------------------------------------------------- JSON


def json_depth(raw: bytes) -> int:
    """Deepest nesting of arrays and objects in a JSON text, brackets inside strings excluded.

    Vectorised (numpy), so a 4 MiB body costs milliseconds whatever its shape; a per-byte Python
    loop would let a client buy a second of router CPU per request."""
    import numpy as np

    b = np.frombuffer(raw, dtype=np.uint8)
    if b.size == 0:
        return 0
    quote = b == 0x22
    if b"\\" in raw:  # a quote is escaped when an odd number of backslashes precedes it
        pos = np.arange(b.size, dtype=np.int32)
        last_plain = np.maximum.accumulate(np.where(b != 0x5C, pos, -1))  # last non-backslash <= i
        before = np.concatenate((np.array([-1], np.int32), last_plain[:-1]))  # ... < i
        quote &= (pos - 1 - before) % 2 == 0
        del pos, last_plain, before
    in_string = (np.cumsum(quote, dtype=np.int32) - quote) % 2 == 1  # odd number of quotes before i
    step = np.isin(b, (0x5B, 0x7B)).astype(np.int32) - np.isin(b, (0x5D, 0x7D))
    step[in_string] = 0
    return int(np.cumsum(step, dtype=np.int32).max(initial=0))


def _bounded_int(text: str):
    """json's parse_int: an int, or HugeInt past MAX_INT_DIGITS (no quadratic conversion)."""
    digits = len(text) - text.startswith("-")
    return HugeInt(digits) if digits > MAX_INT_DIGITS else int(text)


def load_json(raw: bytes, max_body_bytes: int, max_depth: int) -> Any:
    """Bytes -> a JSON value, or ApiError: 413 too large, 400 empty, not JSON or too deep."""
    if len(raw) > max_body_bytes:
        raise ApiError(413, "body", f"{len(raw)} bytes is over the limit of {max_body_bytes} bytes")
    if not raw.strip():
        raise ApiError(400, "body", "empty body; expected a JSON object")
    # Fewer opening brackets than the limit cannot nest deeper: the usual request skips the scan.
    depth = json_depth(raw) if raw.count(b"[") + raw.count(b"{") > max_depth else 0
    if depth > max_depth:
        raise ApiError(400, "body", f"JSON nested {depth} levels deep; the limit is {max_depth}")
    try:
        return json.loads(raw, parse_int=_bounded_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ApiError(400, "body", f"invalid JSON: {e}"[:300]) from None
    except (RecursionError, ValueError) as e:  # a safety net: the depth scan should have caught it
        raise ApiError(400, "body", f"JSON the parser refused: {type(e).__name__}") from None


def parse_layout_request(raw: bytes, content_type: Optional[str], limits: Limits) -> LayoutRequest:
    check_content_type(content_type)
    return validate_payload(load_json(raw, limits.max_body_bytes, limits.max_depth), limits)


def to_pixels(boxes, width: int, height: int) -> list[dict]:
    """Normalised Boxes -> elements in the canvas's pixel coordinates (integers)."""
    out = []
    for b in boxes:
        x, y = int(round(b.x * width)), int(round(b.y * height))
        out.append({"type": b.type, "x": x, "y": y,
                    "width": max(0, min(width - x, int(round(b.w * width)))),
                    "height": max(0, min(height - y, int(round(b.h * height))))})
    return out
