"""Dataset checks (`layoutray data validate`) and JSONL export (`layoutray data export-jsonl`).

The validator streams every shard batch by batch, so it runs in constant memory on a
dataset of any size (only the set of ids seen grows). It never raises on bad data: a
missing manifest, a wrong checksum, an unreadable shard or a bad row all end up in the
report, each counted under a named reason with a few examples, so a user can fix their
export instead of reading a stack trace.
"""

from __future__ import annotations

import base64
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from layoutray.data import dataset
from layoutray.data.imaging import ImageError, decode_png
from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

# The largest phase's element cap (configs/phases/phase4.yaml, model.max_elements).
DEFAULT_MAX_ELEMENTS = 48
EPS = 1e-4  # float32 boxes that end on the canvas edge may overshoot 1.0 by a rounding step
MAX_CANVAS = 20_000  # px; a web section wider or taller than this is a unit mistake
BATCH_ROWS = 256

# Every reason a row can be bad, in report order.
ROW_REASONS = (
    "id_missing", "id_duplicate", "section_type_unknown", "canvas_invalid", "elements_missing",
    "too_many_elements", "element_type_unknown", "box_not_finite", "box_out_of_range", "box_empty",
    "image_undecodable",
)

_SECTIONS, _ELEMENTS = frozenset(SECTION_TYPES), frozenset(ELEMENT_TYPES)
_SAME = {pa.large_string(): pa.string(), pa.large_binary(): pa.binary()}


def _norm_type(t: pa.DataType) -> pa.DataType:
    """Treat large_string/large_binary (and large lists) like their small forms."""
    t = _SAME.get(t, t)
    if pa.types.is_large_list(t) or pa.types.is_list(t):
        return pa.list_(_norm_type(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(f.name, _norm_type(f.type)) for f in t])
    return t


def check_schema(schema: pa.Schema) -> list[str]:
    """Problems with a shard's schema against dataset.SCHEMA (empty when it matches)."""
    problems = []
    for field in dataset.SCHEMA:
        idx = schema.get_field_index(field.name)
        if idx < 0:
            problems.append(f"missing column '{field.name}' ({field.type})")
        elif _norm_type(schema.field(idx).type) != field.type:
            problems.append(f"column '{field.name}' is {schema.field(idx).type}, expected {field.type}")
    return problems


def check_row(row: dict, max_elements: int, check_images: bool = True) -> list[tuple[str, str]]:
    """(reason, detail) for everything wrong with one row; empty when the row is good."""
    bad = []
    rid = row.get("id")
    if not rid:
        bad.append(("id_missing", "empty or null id"))
    st = row.get("section_type")
    if st not in _SECTIONS:
        bad.append(("section_type_unknown", f"section_type {st!r}"))
    cw, ch = row.get("canvas_width"), row.get("canvas_height")
    if not (isinstance(cw, int) and isinstance(ch, int) and 0 < cw <= MAX_CANVAS and 0 < ch <= MAX_CANVAS):
        bad.append(("canvas_invalid", f"canvas {cw}x{ch}"))
    els = row.get("elements")
    if not els:
        bad.append(("elements_missing", "no elements"))
        els = []
    elif len(els) > max_elements:
        bad.append(("too_many_elements", f"{len(els)} elements > cap {max_elements}"))
    seen = set()
    for i, e in enumerate(els):
        if e is None:
            reason, detail = "elements_missing", f"element {i} is null"
        elif e.get("type") not in _ELEMENTS:
            reason, detail = "element_type_unknown", f"element {i} type {e.get('type')!r}"
        else:
            x, y, w, h = (e.get(k) for k in ("x", "y", "w", "h"))
            if not all(v is not None and math.isfinite(v) for v in (x, y, w, h)):
                reason, detail = "box_not_finite", f"element {i} box {x},{y},{w},{h}"
            elif w <= 0 or h <= 0:
                reason, detail = "box_empty", f"element {i} w={w:.4g} h={h:.4g}"
            elif x < 0 or y < 0 or x > 1 or y > 1 or x + w > 1 + EPS or y + h > 1 + EPS:
                reason, detail = "box_out_of_range", f"element {i} box x={x:.4g} y={y:.4g} w={w:.4g} h={h:.4g}"
            else:
                continue
        if reason not in seen:  # one count per reason per row; the first detail is enough
            seen.add(reason)
            bad.append((reason, detail))
    img = row.get("image")
    if check_images and img is not None:
        try:
            decode_png(img)
        except ImageError as e:
            bad.append(("image_undecodable", str(e)))
    return bad


class _Report:
    def __init__(self, root: Path, max_elements: int, examples_per_reason: int):
        self.root, self.max_elements, self.keep = root, max_elements, examples_per_reason
        self.errors: list[str] = []  # dataset-level problems (manifest, vocabularies)
        self.shard_errors: list[dict] = []  # a whole shard is unusable or does not match
        self.warnings: list[str] = []
        self.rows = self.bad_rows = 0
        self.by_reason: Counter = Counter()
        self.by_shard: dict[str, dict] = {}
        self.examples: dict[str, list[dict]] = {}
        self.sections: Counter = Counter()
        self.split_rows: Counter = Counter()
        self.n_elements = Counter()
        self.ids: set[str] = set()

    def shard_error(self, shard: str, reason: str, detail: str) -> None:
        self.shard_errors.append({"shard": shard, "reason": reason, "detail": detail})

    def bad(self, shard: str, row_no: int, rid, problems: list[tuple[str, str]]) -> None:
        self.bad_rows += 1
        entry = self.by_shard[shard]
        entry["bad"] += 1
        for reason, detail in problems:
            self.by_reason[reason] += 1
            entry["by_reason"][reason] = entry["by_reason"].get(reason, 0) + 1
            ex = self.examples.setdefault(reason, [])
            if len(ex) < self.keep:
                ex.append({"shard": shard, "row": row_no, "id": rid, "detail": detail})


def _check_shard(rep: _Report, path: Path, rel: str, check_images: bool, batch_rows: int) -> None:
    rep.by_shard[rel] = {"rows": 0, "bad": 0, "by_reason": {}}
    try:
        pf = pq.ParquetFile(path)
        problems = check_schema(pf.schema_arrow)
    except Exception as e:  # pyarrow raises several types for a damaged footer
        rep.shard_error(rel, "unreadable", f"{type(e).__name__}: {e}")
        return
    if problems:
        rep.shard_error(rel, "schema_mismatch", "; ".join(problems))
        rep.by_shard[rel]["rows"] = pf.metadata.num_rows
        return
    columns = [f.name for f in dataset.SCHEMA]
    row_no = 0
    try:
        for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
            for row in batch.to_pylist():
                problems = check_row(row, rep.max_elements, check_images)
                rid = row.get("id")
                if rid:
                    if rid in rep.ids:
                        problems.append(("id_duplicate", f"id {rid!r} seen before"))
                    rep.ids.add(rid)
                if problems:
                    rep.bad(rel, row_no, rid, problems)
                else:
                    rep.sections[row["section_type"]] += 1
                    rep.n_elements[len(row["elements"])] += 1
                row_no += 1
    except Exception as e:  # a damaged page half way through a shard
        rep.shard_error(rel, "unreadable", f"after {row_no} rows: {type(e).__name__}: {e}")
    rep.rows += row_no
    rep.by_shard[rel]["rows"] = row_no
    rep.split_rows[rel.split("/", 1)[0]] += row_no


def validate_dataset(root: str | Path, max_elements: int = DEFAULT_MAX_ELEMENTS, max_bad: float = 0.0,
                     check_images: bool = True, examples_per_reason: int = 3,
                     batch_rows: int = BATCH_ROWS) -> dict:
    """Check a dataset directory; returns a JSON-serialisable report with `ok`.

    `max_bad` is the bad-row limit: a count when >= 1, else a fraction of all rows.
    Dataset- and shard-level problems (manifest, checksums, unreadable shards) always
    make `ok` false, whatever the limit.
    """
    root = Path(root)
    rep = _Report(root, max_elements, examples_per_reason)
    manifest = None
    if not root.is_dir():
        rep.errors.append(f"{root}: no such directory")
    else:
        try:
            manifest = dataset.read_manifest(root)
        except dataset.DatasetError as e:
            rep.errors.append(str(e))
    listed: dict[str, dict] = {}
    if manifest is not None:
        if manifest.get("schema_version") != dataset.SCHEMA_VERSION:
            rep.errors.append(f"manifest schema_version {manifest.get('schema_version')!r}; "
                              f"this layoutray reads version {dataset.SCHEMA_VERSION}")
        for key, vocab in (("section_types", SECTION_TYPES), ("element_types", ELEMENT_TYPES)):
            if manifest.get(key) is not None and list(manifest[key]) != list(vocab):
                rep.errors.append(f"manifest {key} differ from this layoutray's vocabulary")
        listed = {s["path"]: s for s in manifest.get("shards") or [] if isinstance(s, dict) and "path" in s}
    on_disk = {f"{split}/{p.name}": p for split in dataset.SPLITS for p in dataset.shard_paths(root, split)}
    if root.is_dir() and not on_disk:
        rep.errors.append(f"{root}: no shards under {', '.join(s + '/' for s in dataset.SPLITS)}")
    for rel in sorted(set(listed) - set(on_disk)):
        rep.shard_error(rel, "missing", "listed in the manifest but not on disk")
    for rel, path in sorted(on_disk.items()):
        entry = listed.get(rel)
        if manifest is not None and entry is None:
            rep.shard_error(rel, "not_in_manifest", "on disk but not listed in the manifest")
        elif entry is not None and entry.get("sha256") and dataset.sha256_file(path) != entry["sha256"]:
            rep.shard_error(rel, "checksum_mismatch", "sha256 differs from the manifest")
        _check_shard(rep, path, rel, check_images, batch_rows)
        if entry is not None and entry.get("rows") is not None and rep.by_shard[rel]["rows"] != entry["rows"] \
                and not any(e["shard"] == rel for e in rep.shard_errors):
            rep.shard_error(rel, "row_count_mismatch",
                            f"{rep.by_shard[rel]['rows']} rows, manifest says {entry['rows']}")
    if manifest is not None and isinstance(manifest.get("counts"), dict):
        for split in dataset.SPLITS:
            want = manifest["counts"].get(split)
            if want is not None and want != rep.split_rows[split] and not rep.shard_errors:
                rep.errors.append(f"{split}: {rep.split_rows[split]} rows, manifest counts {want}")

    limit = max_bad if max_bad >= 1 else max_bad * rep.rows
    n_el = rep.n_elements  # a histogram: a sorted list of every count would grow with the data
    n_good = sum(n_el.values())
    return {
        "root": str(root),
        "ok": not rep.errors and not rep.shard_errors and rep.bad_rows <= limit,
        "schema_version": manifest.get("schema_version") if manifest else None,
        "generator": manifest.get("generator") if manifest else None,
        "max_elements": max_elements,
        "rows": rep.rows,
        "bad_rows": rep.bad_rows,
        "bad_fraction": rep.bad_rows / rep.rows if rep.rows else 0.0,
        "bad_limit": limit,
        "splits": {s: rep.split_rows[s] for s in dataset.SPLITS},
        "by_reason": {r: rep.by_reason[r] for r in ROW_REASONS if rep.by_reason[r]},
        "by_shard": rep.by_shard,
        "examples": rep.examples,
        "errors": rep.errors,
        "shard_errors": rep.shard_errors,
        "section_types": dict(sorted(rep.sections.items())),
        "elements_per_row": {"min": min(n_el), "max": max(n_el),
                             "mean": round(sum(k * v for k, v in n_el.items()) / n_good, 2)} if n_good else None,
    }


def format_report(rep: dict) -> str:
    lines = [f"dataset {rep['root']}: {'OK' if rep['ok'] else 'FAILED'}",
             f"  rows {rep['rows']:,} (train {rep['splits']['train']:,} / val {rep['splits']['val']:,} / "
             f"test {rep['splits']['test']:,}); bad {rep['bad_rows']:,} ({100 * rep['bad_fraction']:.2f}%), "
             f"limit {rep['bad_limit']:g}; element cap {rep['max_elements']}"]
    if rep["elements_per_row"]:
        e = rep["elements_per_row"]
        lines.append(f"  elements per good row: {e['min']}-{e['max']}, mean {e['mean']}")
    for msg in rep["errors"]:
        lines.append(f"  error: {msg}")
    for se in rep["shard_errors"]:
        lines.append(f"  shard {se['shard']}: {se['reason']} ({se['detail']})")
    if rep["by_reason"]:
        lines.append("  bad rows by reason:")
        for reason, n in rep["by_reason"].items():
            lines.append(f"    {reason:22s} {n:>8,}")
            for ex in rep["examples"].get(reason, []):
                lines.append(f"      e.g. {ex['shard']} row {ex['row']} id={ex['id']!r}: {ex['detail']}")
        bad_shards = {k: v for k, v in rep["by_shard"].items() if v["bad"]}
        lines.append("  bad rows by shard:")
        for shard, v in bad_shards.items():
            lines.append(f"    {shard}: {v['bad']:,} of {v['rows']:,}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- JSONL export


def _f32(v):
    return None if v is None else float(str(np.float32(v)))


def _export_row(split: str, row: dict, include_images: bool) -> dict:
    obj = {
        "split": split,
        "id": row["id"],
        "section_type": row["section_type"],
        "canvas": {"width": row["canvas_width"], "height": row["canvas_height"]},
        # float32 -> the shortest decimal that reads back to the same float32 (numpy's repr)
        "elements": [{"type": e["type"], **{k: _f32(e[k]) for k in ("x", "y", "w", "h")}}
                     for e in row["elements"] or []],
    }
    if include_images and row.get("image") is not None:
        obj["image"] = base64.b64encode(row["image"]).decode("ascii")
    return obj


def export_jsonl(root: str | Path, out: str | Path, include_images: bool = True) -> dict:
    """Write one JSON object per example (all splits, in shard order). Returns counts per split."""
    root, out = Path(root), Path(out)
    counts = {}
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = [f.name for f in dataset.SCHEMA if include_images or f.name != "image"]
    with open(out, "w") as f:
        for split in dataset.SPLITS:
            n = 0
            for path in dataset.shard_paths(root, split):
                try:
                    for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=columns):
                        for row in batch.to_pylist():
                            f.write(json.dumps(_export_row(split, row, include_images), separators=(",", ":")))
                            f.write("\n")
                            n += 1
                except Exception as e:  # pyarrow raises several types for a damaged shard
                    raise dataset.unreadable_shard(path, e) from None
            counts[split] = n
    if not any(counts.values()):
        raise dataset.DatasetError(f"{root}: no rows found under {', '.join(s + '/' for s in dataset.SPLITS)}")
    return counts
