"""A picture of what a model does: true and generated layouts side by side, for a spread of
section types from a dataset split (`layoutray evaluate --preview`, `make run`'s predictions.png)."""

from __future__ import annotations

from pathlib import Path

from layoutray.data.dataset import read_rows

# What the model is given per mode: (section type and element types, image).
MODES = {"both": (True, True), "image": (False, True), "spec": (True, False)}


def spread(rows: list[dict], count: int) -> list[dict]:
    """Up to `count` rows taking section types in turn (first come, first served), so a sheet
    shows many kinds of section rather than the first few rows' kinds."""
    by_type: dict[str, list[dict]] = {}
    for row in rows:
        by_type.setdefault(row["section_type"], []).append(row)
    out: list[dict] = []
    while len(out) < count and any(by_type.values()):
        for queue in by_type.values():
            if queue and len(out) < count:
                out.append(queue.pop(0))
    return out


def predict_rows(predictor, rows: list[dict], mode: str = "both", seed: int = 0) -> list[list[dict]]:
    """Greedy layouts for `rows` as element dicts with normalised boxes."""
    from layoutray.model.request import LayoutRequest

    spec, image = MODES[mode]
    reqs = [LayoutRequest(section_type=r["section_type"] if spec else None,
                          elements=[e["type"] for e in r["elements"]] if spec else None,
                          image_png=r["image"] if image else None) for r in rows]
    layouts = predictor.generate_layouts(reqs, seed=seed)
    return [[{"type": b.type, "x": b.x, "y": b.y, "w": b.w, "h": b.h} for b in per_request[0]]
            for per_request in layouts]


def write_preview(predictor, data_dir: str | Path, out: str | Path, split: str = "test", count: int = 12,
                  mode: str = "both", pool: int = 400) -> Path:
    """Draw `count` examples of `split` (a spread of section types out of its first `pool` rows)
    as truth | generated pairs into the PNG `out`."""
    from layoutray.render.sheets import truth_and_prediction_sheet

    rows = spread(read_rows(data_dir, split, pool), count)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    truth_and_prediction_sheet(rows, predict_rows(predictor, rows, mode)).save(out)
    return out
