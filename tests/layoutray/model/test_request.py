"""The request validator against hostile input (layoutray/model/request.py): every client mistake
is an ApiError with a 4xx status naming the field, and nothing client-chosen reaches a metric label.

The cases come from a fuzz run against `serve run configs/serve.yaml` that got 500s and 503s;
tests/serving/test_hostile.py sends a few of them through a live app as well.
"""

import base64
import io
import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from layoutray.model.request import (METRIC_FIELDS, ApiError, HugeInt, Limits, json_depth, load_json,
                                     metric_field, parse_layout_request, png_size, validate_payload)

LIM = Limits(max_elements=8)
OK = {"section_type": "hero", "elements": ["heading", "button"]}


def parse(obj):
    raw = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
    return parse_layout_request(raw, "application/json", LIM)


def refused(obj) -> ApiError:
    with pytest.raises(ApiError) as ei:
        parse(obj)
    e = ei.value
    assert 400 <= e.status < 500
    json.dumps(e.body()).encode("utf-8")  # the error response itself must encode
    return e


def png_header(w: int, h: int) -> bytes:
    """A PNG with a real IHDR for w x h and no pixel data: what a hostile client sends to make a
    server allocate w*h pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


def real_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h), 255).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- the study's cases


@pytest.mark.parametrize("name", ["fëld", "中文", "emoji😀", "\udc80lone", "a" * 500])
def test_unknown_non_ascii_field_is_422_and_safe_to_echo(name):
    raw = b'{"section_type": "hero", ' + json.dumps(name).encode() + b': 1}'
    e = refused(raw)
    assert e.status == 422 and "unknown field" in e.message
    assert len(e.field) <= 80
    assert metric_field(e.field) == "other"


def test_10000_deep_json_is_400_before_parsing():
    for raw in (b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b"[" * 10_000):
        e = refused(raw)
        assert (e.status, e.field) == (400, "body") and "nested" in e.message, e.body()


def test_deep_json_hidden_behind_brackets_in_a_string():
    # A string of closing brackets must not cancel real nesting out of the depth count.
    raw = b'{"x": "' + b"]" * 200 + b'", "elements": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    e = refused(raw)
    assert (e.status, e.field) == (400, "body")


@pytest.mark.parametrize("field,body", [
    ("seed", {**OK, "seed": "HUGE"}), ("samples", {**OK, "samples": "HUGE"}),
    ("temperature", {**OK, "temperature": "HUGE"}), ("top_p", {**OK, "top_p": "-HUGE"}),
    ("canvas.width", {**OK, "canvas": {"width": "HUGE"}}), ("elements[0]", {"elements": ["HUGE"]}),
])
def test_5000_digit_integer_is_422_naming_the_field(field, body):
    raw = json.dumps(body).replace('"-HUGE"', "-" + "9" * 5000).replace('"HUGE"', "7" * 5000).encode()
    e = refused(raw)
    assert (e.status, e.field) == (422, field), e.body()
    assert "5000 digits" in e.message


@pytest.mark.parametrize("field,value", [("temperature", 1e-300), ("temperature", 0.049), ("temperature", 5.01),
                                         ("top_p", 1e-300), ("top_p", 0.0), ("top_p", 0.049), ("top_p", 1.5)])
def test_sampling_settings_the_sampler_cannot_use_are_422(field, value):
    e = refused({**OK, field: value})
    assert (e.status, e.field) == (422, field)


@pytest.mark.parametrize("body", [{**OK, "temperature": 0}, {**OK, "temperature": 0.05, "top_p": 0.05},
                                  {**OK, "temperature": 5, "top_p": 1}])
def test_sampling_limits_themselves_are_accepted(body):
    parse(body)


def test_huge_png_header_is_413_before_decoding():
    e = refused({"image": base64.b64encode(png_header(6300, 6300)).decode()})
    assert (e.status, e.field) == (413, "image") and "6300x6300" in e.message
    assert png_size(png_header(6300, 6300)) == (6300, 6300)
    e = refused({"image": base64.b64encode(png_header(0, 50)).decode()})
    assert (e.status, e.field) == (422, "image")


def test_pixel_cap_is_configurable():
    png = real_png(64, 64)
    req = validate_payload({"image": png}, Limits(max_image_pixels=64 * 64))
    assert req.image_png == png
    with pytest.raises(ApiError) as ei:
        validate_payload({"image": png}, Limits(max_image_pixels=64 * 64 - 1))
    assert ei.value.status == 413
    assert Limits.from_config({"max_image_pixels": 10, "max_json_depth": 5}, 8).max_image_pixels == 10


# ----------------------------------------------------------------------------- other hostile shapes


@pytest.mark.parametrize("body,field", [
    ({"section_type": ["hero"]}, "section_type"),
    ({"section_type": {"a": 1}}, "section_type"),
    ({"elements": [{"type": "heading"}]}, "elements[0]"),
    ({"elements": [["heading"]]}, "elements[0]"),
    ({**OK, "canvas": {"width": 1e400}}, "canvas.width"),
    ({**OK, "canvas": {"wïdth": 10}}, "canvas.wïdth"),
    ({**OK, "samples": [1] * 100_000}, "samples"),
    ({**OK, "seed": -1}, "seed"),
    ({**OK, "temperature": True}, "temperature"),
    ({"image": 12}, "image"),
    ({"image": "A" * 7}, "image"),
])
def test_wrong_types_are_422_naming_the_field(body, field):
    e = refused(body)
    assert (e.status, e.field) == (422, field), e.body()
    assert len(e.message) <= 500


@pytest.mark.parametrize("raw", [b"NaN", b'{"seed": NaN, "elements": ["heading"]}', b"\xff\xfe{", b"{\"a\": 1",
                                 b"   ", b"\x00", b'{"elements": ["heading"]}garbage'])
def test_malformed_bodies_are_400_or_422(raw):
    e = refused(raw)
    assert e.status in (400, 422)


def test_errors_with_lone_surrogates_still_encode():
    e = ApiError(422, "\ud800x", "bad \udfff value")
    json.dumps(e.body(), ensure_ascii=False).encode("utf-8")


def test_metric_labels_come_from_a_fixed_set():
    assert metric_field("elements[12]") == "elements"
    assert metric_field("canvas.width") == "canvas.width"
    assert metric_field("canvas.wïdth") == "other"
    assert metric_field("body") == "body" and metric_field("content-type") == "content-type"
    assert all(f.isascii() for f in METRIC_FIELDS)


@settings(max_examples=100)
@given(st.text(max_size=30))
def test_any_unknown_field_name_maps_to_a_known_label(name):
    assert metric_field(name) in METRIC_FIELDS


# ----------------------------------------------------------------------------- the depth scan


def _depth(v) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ab,:é'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(alphabet='[]{}"\\a'), inner, max_size=3),
    max_leaves=20)


@settings(max_examples=300)
@given(json_values)
def test_json_depth_matches_the_parsed_structure(value):
    assert json_depth(json.dumps(value).encode()) == _depth(value)


def test_load_json_keeps_small_ints_and_wraps_huge_ones():
    v = load_json(b'{"a": 123, "b": -' + b"1" * 40 + b"}", 1000, 32)
    assert v["a"] == 123 and isinstance(v["b"], HugeInt) and v["b"].digits == 40


def test_python_callers_get_the_same_checks():
    with pytest.raises(ApiError) as ei:
        validate_payload({"image": png_header(6300, 6300)}, LIM)
    assert ei.value.status == 413
    with pytest.raises(ApiError) as ei:
        validate_payload({**OK, "top_p": 1e-300}, LIM)
    assert ei.value.field == "top_p"
