"""What makes an answer of the layout API valid, and how far two answers agree: the same
definitions for a model's golden set at load time (layoutray/model/golden.py) and for live
answers during a canary rollout (serving/judge.py). No torch here: the Serve router imports it.

Layouts are in the answer format of `Predictor.answer` and `POST /v1/layouts`:
{"elements": [{"type", "x", "y", "width", "height"}, ...], "alignment", "overlap"}, in canvas
pixels (integers).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Optional, Sequence

from layoutray.eval.metrics import match_elements
from layoutray.model.tokenizer import Box


def layout_problems(layout: Any, elements: Optional[Sequence[str]], width: int, height: int) -> list[str]:
    """Why `layout` (one layout of an answer: {"elements": [{"type", "x", "y", "width", "height"}],
    "alignment", "overlap"}, pixels) is not a valid answer to a request for `elements` on a
    width x height canvas; [] when it is. Never raises: a malformed layout is a problem."""
    try:
        els = list(layout["elements"])
        if not els:
            return ["no elements"]
        problems = [p for i, e in enumerate(els) for p in _element_problems(i, e, width, height)]
        if elements:
            want, got = Counter(elements), Counter(e["type"] for e in els)
            if want != got:
                problems.append(f"element types differ from the request: missing "
                                f"{sorted((want - got).elements())}, extra {sorted((got - want).elements())}")
        for key in ("overlap", "alignment"):
            v = layout.get(key)
            if v is not None and not (_is_number(v) and math.isfinite(v)):
                problems.append(f"{key} is {v!r}")
        return problems
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        return [f"malformed layout ({type(e).__name__}: {e})"[:200]]


def _element_problems(i: int, e: dict, width: int, height: int) -> list[str]:
    box = [e[k] for k in ("x", "y", "width", "height")]
    if not all(_is_number(v) and math.isfinite(v) for v in box):
        return [f"element {i}: box {box!r} is not numbers"[:120]]
    x, y, w, h = box
    # A size of 0 px is allowed: on a small canvas the smallest box can round to 0.
    if x < 0 or y < 0 or w < 0 or h < 0 or x + w > width or y + h > height:
        return [f"element {i} ({e.get('type')}) at {box} leaves the {width}x{height} canvas"]
    return []


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def layout_agreement(a: Sequence[dict], b: Sequence[dict]) -> float:
    """How far two layouts of the same request agree, in [0, 1]: same-type elements are paired
    to maximise total IoU (metrics.match_elements) and the IoUs are summed and divided by the
    larger element count, so an element without a counterpart counts as 0. Identical layouts
    give 1.0 (two empty ones too)."""
    pa, pb = _boxes(a), _boxes(b)
    if not pa and not pb:
        return 1.0
    total = sum(iou for _, _, iou in match_elements(pa, pb, 0.0))
    return total / max(len(pa), len(pb))


def _boxes(elements: Sequence[dict]) -> list[Box]:
    # Pixels are integers: a box that rounded to 0 px still covers its pixel, and without the
    # max() two identical 0-px boxes would have IoU 0.
    return [Box(str(e["type"]), float(e["x"]), float(e["y"]), max(float(e["width"]), 1.0),
                max(float(e["height"]), 1.0)) for e in elements]


def mean(values: Sequence[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)
