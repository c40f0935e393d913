"""`layoutray data import`: layouts a user already has -> the dataset format.

Two inputs:

- JSONL, one section per line (what `layoutray data export-jsonl` writes reads back as is):
  `{"id": "...", "section_type": "pricing", "canvas": {"width": 1440, "height": 900},
    "elements": [{"type": "button", "x": 0.1, "y": 0.2, "w": 0.1, "h": 0.05}, ...],
    "image": "<base64 PNG>" | "image_path": "shots/p1.png", "split": "train"}`
  `canvas_width`/`canvas_height` may replace `canvas`; boxes are normalised unless `units="px"`.
- COCO-style detection JSON: `images` (id, file_name, width, height, and a `section_type` per
  image or one for the whole file), `annotations` (image_id, category_id, bbox [x, y, w, h] px)
  and `categories` (id, name: an element type, or renamed to one with `type_map`).

Every row is checked on the way in with the validator's own row check
(`layoutray.data.validate.check_row`); a row that fails is refused, counted under its reason
and named in the report, never repaired silently. Rows are split `train/val/test` by the
fractions given (default 80/10/10), stratified by section type and seeded (`stratified_split`).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

from PIL import Image, UnidentifiedImageError

from layoutray.config import ConfigError
from layoutray.data import dataset
from layoutray.data.imaging import MAX_PIXELS, ImageError, decode_png, encode_png
from layoutray.data.validate import check_row

IMPORTER_VERSION = 1
EXAMPLES_PER_REASON = 5
# Why an input record was refused, beyond the validator's row reasons (validate.ROW_REASONS).
INPUT_REASONS = ("json_invalid", "not_an_object", "field_missing", "field_invalid", "image_missing",
                 "image_undecodable", "id_duplicate", "split_invalid")


class Record(NamedTuple):
    where: str  # "file:line" or "file:image <id>": how the report points at the input
    row: dict | None  # a dataset row, or None when refused
    reason: str | None
    detail: str
    split: str | None = None  # a split the input asked for (JSONL "split")


class RefusedError(ValueError):
    """A record that cannot become a row: (reason, detail)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# ---------------------------------------------------------------------------- splits


def parse_split(text: str) -> tuple[float, float, float] | None:
    """"80/10/10" -> (0.8, 0.1, 0.1); "keep" -> None (each record's own `split`)."""
    if text == "keep":
        return None
    parts = text.split("/")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        nums = []
    if len(nums) != 3 or any(not math.isfinite(n) or n < 0 for n in nums) or sum(nums) <= 0:
        raise ConfigError("--split", f"expected TRAIN/VAL/TEST shares such as 80/10/10, or keep; got {text!r}")
    total = sum(nums)
    return tuple(n / total for n in nums)  # type: ignore[return-value]


def apportion(n: int, fractions: tuple[float, float, float]) -> list[int]:
    """n items over the splits: floors first, then the largest remainders (ties to train first)."""
    exact = [n * f for f in fractions]
    counts = [math.floor(x) for x in exact]
    order = sorted(range(3), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in order[:n - sum(counts)]:
        counts[k] += 1
    return counts


def stratified_split(rows: list[dict], fractions: tuple[float, float, float], seed: int) -> dict[str, list[dict]]:
    """Each section type split on its own by `fractions`, in a seeded order, so every split gets
    its share of every type; the same rows and seed give the same split whatever their order."""
    by_type: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_type[row["section_type"]].append(row)
    out: dict[str, list[dict]] = {s: [] for s in dataset.SPLITS}
    for kind in sorted(by_type):
        group = sorted(by_type[kind], key=lambda r: r["id"])
        random.Random(f"layoutray.data.importer:{seed}:{kind}").shuffle(group)
        start = 0
        for split, n in zip(dataset.SPLITS, apportion(len(group), fractions)):
            out[split] += group[start:start + n]
            start += n
    for split in out:
        out[split].sort(key=lambda r: r["id"])
    return out


# ---------------------------------------------------------------------------- writing


def _old_files(out: Path) -> list[Path]:
    old = [out / "manifest.json", *(p for s in dataset.SPLITS for p in dataset.shard_paths(out, s))]
    return [p for p in old if p.exists()]


def check_out_dir(out_dir: str | Path, force: bool) -> None:
    """Refuse to mix a new dataset into an old one (checked before any work is done)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise dataset.DatasetError(f"{out}: exists and is not a directory")
    if _old_files(out) and not force:
        raise dataset.DatasetError(f"{out}: already holds a dataset; "
                                   "choose another --out or pass --force to replace it")


def write_dataset(out_dir: str | Path, rows: list[dict], fractions, seed: int, generator: dict,
                  shard_rows: int = 500, kept_splits: dict[str, list[dict]] | None = None) -> dict:
    """Split (or keep the given splits), write shards and the manifest; returns the manifest."""
    splits = kept_splits if fractions is None else stratified_split(rows, fractions, seed)
    for old in _old_files(Path(out_dir)):  # only once there is a new dataset to take its place
        old.unlink()
    shards = []
    for split in dataset.SPLITS:
        if splits.get(split):
            shards += dataset.write_split(out_dir, split, splits[split], shard_rows)
    return dataset.write_manifest(out_dir, shards, generator=generator)


# ---------------------------------------------------------------------------- images


def load_image(data: bytes, where: str) -> bytes:
    """PNG bytes for the dataset: PNGs as they are, other formats (JPEG, WebP...) converted."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        try:
            decode_png(data)
        except ImageError as e:
            raise RefusedError("image_undecodable", f"{where}: {e}") from None
        return data
    try:
        import io
        img = Image.open(io.BytesIO(data))
        if img.width * img.height > MAX_PIXELS:
            raise RefusedError("image_undecodable", f"{where}: image too large ({img.width}x{img.height})")
        img.load()
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise RefusedError("image_undecodable", f"{where}: not an image ({type(e).__name__})") from None
    return encode_png(img.convert("RGB") if img.mode not in ("L", "RGB", "RGBA") else img)


def image_from_path(path: Path) -> bytes:
    try:
        return load_image(path.read_bytes(), str(path))
    except FileNotFoundError:
        raise RefusedError("image_missing", f"{path}: no such image file") from None
    except IsADirectoryError:
        raise RefusedError("image_missing", f"{path}: a directory, not an image") from None


def image_from_base64(text: str) -> bytes:
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RefusedError("image_undecodable", "image: not valid base64 (use image_path for a file)") from None
    return load_image(data, "image")


# ---------------------------------------------------------------------------- records -> rows


def _number(obj: dict, key: str, where: str) -> float:
    v = obj.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        reason = "field_invalid" if key in obj else "field_missing"
        raise RefusedError(reason, f"{where}: {key} must be a number; got {v!r}")
    return float(v)


def _whole(v) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) and v == int(v)


def _canvas(obj: dict) -> tuple[int, int]:
    c = obj.get("canvas")
    if isinstance(c, dict):
        w, h = c.get("width"), c.get("height")
    else:
        w, h = obj.get("canvas_width"), obj.get("canvas_height")
    if w is None or h is None:
        raise RefusedError("field_missing", "canvas: give canvas {width, height} or canvas_width and canvas_height")
    if not all(_whole(v) for v in (w, h)):
        raise RefusedError("field_invalid", f"canvas: width and height must be whole px; got {w!r} x {h!r}")
    return int(w), int(h)


def element_from(obj, i: int, canvas: tuple[int, int], px: bool, type_map: dict[str, str]) -> dict:
    """One element dict (normalised box); `px` boxes are divided by the canvas."""
    if not isinstance(obj, dict):
        raise RefusedError("field_invalid", f"element {i}: not an object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RefusedError("field_missing", f"element {i}: no type")
    x, y, w, h = (_number(obj, k, f"element {i}") for k in ("x", "y", "w", "h"))
    if px:
        W, H = canvas
        x, y, w, h = x / W, y / H, w / W, h / H
    return {"type": type_map.get(kind, kind), "x": x, "y": y, "w": w, "h": h}


def row_from_json(obj, rid: str, base: Path, px: bool, type_map: dict[str, str]) -> dict:
    if not isinstance(obj, dict):
        raise RefusedError("not_an_object", f"expected a JSON object, got {type(obj).__name__}")
    st = obj.get("section_type")
    if not isinstance(st, str):
        raise RefusedError("field_missing", "no section_type")
    canvas = _canvas(obj)
    if min(canvas) <= 0:
        raise RefusedError("field_invalid", f"canvas {canvas[0]}x{canvas[1]}: must be positive")
    els = obj.get("elements")
    if not isinstance(els, list):
        raise RefusedError("field_missing" if els is None else "field_invalid", "elements must be a list")
    image = None
    if obj.get("image_path") is not None:
        image = image_from_path(base / str(obj["image_path"]))
    elif isinstance(obj.get("image"), str):
        image = image_from_base64(obj["image"])
    return {"id": rid, "section_type": st, "canvas_width": canvas[0], "canvas_height": canvas[1], "image": image,
            "elements": [element_from(e, i, canvas, px, type_map) for i, e in enumerate(els)]}


def checked(where: str, make, max_elements: int, split: str | None = None) -> Record:
    """Build a row with `make()` and run the validator's row check on it."""
    try:
        row = make()
    except RefusedError as e:
        return Record(where, None, e.reason, e.detail)
    problems = check_row(row, max_elements)
    if problems:
        reason, detail = problems[0]
        return Record(where, None, reason, detail)
    if split is not None and split not in dataset.SPLITS:
        return Record(where, None, "split_invalid", f"split {split!r}: use train, val or test")
    return Record(where, row, None, "", split)


def jsonl_records(path: Path, max_elements: int, units: str = "norm",
                  type_map: dict[str, str] | None = None) -> Iterator[Record]:
    """One Record per non-blank line of a JSONL file."""
    type_map = type_map or {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path.name}:{no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                yield Record(where, None, "json_invalid", f"{e.msg} at column {e.colno}")
                continue
            rid = str(obj.get("id") or f"{path.stem}-{no}") if isinstance(obj, dict) else where
            px = (obj.get("units") if isinstance(obj, dict) and obj.get("units") else units) == "px"
            split = obj.get("split") if isinstance(obj, dict) else None
            yield checked(where, lambda: row_from_json(obj, rid, path.parent, px, type_map), max_elements, split)


def _read_coco(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise dataset.DatasetError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    except UnicodeDecodeError:
        raise dataset.DatasetError(f"{path}: not UTF-8 text") from None
    keys = ("images", "annotations", "categories")
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list) for k in keys):
        raise dataset.DatasetError(f"{path}: not a COCO detection file (needs lists images, annotations, categories)")
    return doc


def _coco_row(img: dict, anns: list, cats: dict, opts: dict) -> dict:
    if not isinstance(img, dict) or "id" not in img:
        raise RefusedError("field_missing", "an images entry without an id")
    st = img.get("section_type") or opts["section_type"]
    if not isinstance(st, str):
        raise RefusedError("field_missing", "no section_type on the image and no --section-type for the file")
    W, H = _canvas({"canvas_width": img.get("width"), "canvas_height": img.get("height")})
    if min(W, H) <= 0:
        raise RefusedError("field_invalid", f"image size {W}x{H}: must be positive")
    els = []
    for i, a in enumerate(anns):
        bbox = a.get("bbox") if isinstance(a, dict) else None
        if a.get("category_id") not in cats:
            raise RefusedError("field_invalid",
                               f"annotation {a.get('id', i)}: unknown category_id {a.get('category_id')!r}")
        if not (isinstance(bbox, list) and len(bbox) == 4):
            raise RefusedError("field_invalid", f"annotation {a.get('id', i)}: bbox must be [x, y, w, h]")
        box = dict(zip(("x", "y", "w", "h"), bbox), type=cats[a["category_id"]])
        els.append(element_from(box, i, (W, H), True, opts["type_map"]))
    image = None
    if opts["images"] and img.get("file_name"):
        image = image_from_path(opts["images_dir"] / str(img["file_name"]))
    rid = f"{opts['stem']}:{img['id']}" + (f":{img['file_name']}" if img.get("file_name") else "")
    return {"id": rid, "section_type": st, "canvas_width": W, "canvas_height": H, "image": image, "elements": els}


def coco_records(path: Path, max_elements: int, section_type: str | None = None, images_dir: Path | None = None,
                 type_map: dict[str, str] | None = None, images: bool = True) -> Iterator[Record]:
    """One Record per COCO image: its annotations are its elements, in image px."""
    doc = _read_coco(path)
    cats = {c.get("id"): c.get("name") for c in doc["categories"] if isinstance(c, dict)}
    anns: dict = defaultdict(list)
    for a in doc["annotations"]:
        if isinstance(a, dict):
            anns[a.get("image_id")].append(a)
    opts = {"section_type": section_type, "type_map": type_map or {}, "images": images,
            "images_dir": images_dir or path.parent, "stem": path.stem}
    for img in doc["images"]:
        iid = img.get("id") if isinstance(img, dict) else None
        yield checked(f"{path.name}:image {iid}", lambda: _coco_row(img, anns.get(iid, []), cats, opts), max_elements)


# ---------------------------------------------------------------------------- the command


def input_format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if path.suffix.lower() == ".json":
        return "coco"
    raise ConfigError("--format", f"{path}: cannot tell the format from the name; pass --format jsonl or coco")


def parse_type_map(items: Iterable[str]) -> dict[str, str]:
    """["text=paragraph", ...] -> {"text": "paragraph"}: input names renamed to element types."""
    out = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise ConfigError("--map", f"expected NAME=TYPE; got {item!r}")
        out[src] = dst
    return out


def records(inputs: Iterable[str], opts: dict) -> Iterator[Record]:
    for arg in inputs:
        path = Path(arg)
        if not path.is_file():
            raise dataset.DatasetError(f"{arg}: no such file")
        if input_format(path, opts["format"]) == "jsonl":
            yield from jsonl_records(path, opts["max_elements"], opts["units"], opts["type_map"])
        else:
            yield from coco_records(path, opts["max_elements"], opts["section_type"], opts["images_dir"],
                                    opts["type_map"], opts["images"])


class ImportReport:
    def __init__(self):
        self.rows: list[dict] = []
        self.kept: dict[str, list[dict]] = {s: [] for s in dataset.SPLITS}
        self.refused: list[dict] = []
        self.ids: set[str] = set()

    def add(self, rec: Record, keep_splits: bool) -> None:
        if rec.row is not None and rec.row["id"] in self.ids:
            rec = Record(rec.where, None, "id_duplicate", f"id {rec.row['id']!r} seen before")
        elif rec.row is not None and keep_splits and rec.split is None:
            rec = Record(rec.where, None, "split_invalid", "--split keep, but the record has no split")
        if rec.row is None:
            self.refused.append({"where": rec.where, "reason": rec.reason, "detail": rec.detail})
            return
        self.ids.add(rec.row["id"])
        self.rows.append(rec.row)
        if keep_splits:
            self.kept[rec.split].append(rec.row)

    def as_dict(self) -> dict:
        by_reason = Counter(r["reason"] for r in self.refused)
        return {"records": len(self.rows) + len(self.refused), "rows": len(self.rows),
                "refused": dict(by_reason.most_common()), "refusals": self.refused,
                "section_types": dict(sorted(Counter(r["section_type"] for r in self.rows).items()))}


def import_layouts(inputs: list[str], out_dir: str | Path, split: str = "80/10/10", seed: int = 0,
                   max_elements: int = 48, fmt: str = "auto", units: str = "norm", section_type: str | None = None,
                   images_dir: str | Path | None = None, type_map: dict[str, str] | None = None,
                   images: bool = True, shard_rows: int = 500, force: bool = False) -> dict:
    """Read, check, split and write; returns the report with the manifest under "manifest".
    Raises DatasetError when no record could be imported (nothing is written then)."""
    if not inputs:
        raise ConfigError("input", "give at least one JSONL or COCO file")
    fractions = parse_split(split)
    check_out_dir(out_dir, force)
    opts = {"format": fmt, "max_elements": max_elements, "units": units, "section_type": section_type,
            "images_dir": Path(images_dir) if images_dir else None, "type_map": type_map or {}, "images": images}
    rep = ImportReport()
    for rec in records(inputs, opts):
        rep.add(rec, keep_splits=fractions is None)
    doc = rep.as_dict()
    if not rep.rows:
        reasons = ", ".join(f"{k} {v}" for k, v in doc["refused"].items()) or "the input is empty"
        raise dataset.DatasetError(f"nothing to import: {doc['records']} records, all refused ({reasons})")
    generator = {"name": "layoutray.data.importer", "version": IMPORTER_VERSION,
                 "inputs": [Path(p).name for p in inputs], "split": split, "seed": seed}
    doc["manifest"] = write_dataset(out_dir, rep.rows, fractions, seed, generator, shard_rows, rep.kept)
    return doc
