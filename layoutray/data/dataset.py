"""The on-disk dataset format (see docs/data.md).

    DIR/manifest.json
    DIR/{train,val,test}/part-NNNNN.parquet

One row per section; coordinates are normalised to [0, 1] with a top-left origin. DIR is a local
directory or an object-storage URI (`s3://bucket/sections`, layoutray.storage); shard paths of a
local directory are `Path`s, those of a URI are URI strings.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from layoutray import storage
from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

SCHEMA_VERSION = 1
SPLITS = ("train", "val", "test")

ELEMENT_STRUCT = pa.struct([
    ("type", pa.string()),
    ("x", pa.float32()),
    ("y", pa.float32()),
    ("w", pa.float32()),
    ("h", pa.float32()),
])

SCHEMA = pa.schema([
    ("id", pa.string()),
    ("section_type", pa.string()),
    ("canvas_width", pa.int32()),
    ("canvas_height", pa.int32()),
    ("image", pa.binary()),  # PNG bytes, may be null
    ("elements", pa.list_(ELEMENT_STRUCT)),
])


class DatasetError(RuntimeError):
    """A dataset directory or shard cannot be used; the message names the path."""


def unreadable_shard(path: str | Path, e: BaseException) -> DatasetError:
    """The one-line error for a Parquet file pyarrow cannot read (footer or pages)."""
    first_line = (str(e).strip().splitlines() or [""])[0]
    return DatasetError(f"{path}: unreadable Parquet shard ({type(e).__name__}: {first_line})")


def shard_paths(root: str | Path, split: str) -> list[Path] | list[str]:
    if storage.is_uri(root):
        return [storage.join(root, split, n) for n in storage.list_dir(storage.join(root, split))
                if n.startswith("part-") and n.endswith(".parquet")]
    return sorted((Path(root) / split).glob("part-*.parquet"))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_split(root: str | Path, split: str, rows: Iterable[dict], shard_rows: int = 500) -> list[dict]:
    """Write rows (dicts matching SCHEMA) as numbered shards (into a local directory or a URI).
    Returns manifest shard entries."""
    entries, buf = [], []

    def flush():
        name = f"part-{len(entries):05d}.parquet"
        sink = pa.BufferOutputStream()  # a shard is a few MB: hashed and written whole
        pq.write_table(pa.Table.from_pylist(buf, schema=SCHEMA), sink, compression="zstd")
        data = sink.getvalue().to_pybytes()
        storage.write_bytes(storage.join(root, split, name), data)
        entries.append({"path": f"{split}/{name}", "rows": len(buf), "sha256": hashlib.sha256(data).hexdigest()})
        buf.clear()

    for row in rows:
        buf.append(row)
        if len(buf) >= shard_rows:
            flush()
    if buf or not entries:
        flush()
    return entries


def write_manifest(root: str | Path, shards: list[dict], generator: dict | None = None) -> dict:
    counts = {s: sum(e["rows"] for e in shards if e["path"].startswith(s + "/")) for s in SPLITS}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "counts": counts,
        "total": sum(counts.values()),
        "section_types": list(SECTION_TYPES),
        "element_types": list(ELEMENT_TYPES),
        "generator": generator,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "shards": shards,
    }
    storage.write_json(storage.join(root, "manifest.json"), manifest)
    return manifest


def read_manifest(root: str | Path) -> dict:
    path = storage.join(root, "manifest.json")
    try:
        return json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise DatasetError(f"{path}: no manifest; is {root} a layoutray dataset directory?") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"{path}: not valid JSON ({e})") from None


def count_examples(root: str | Path, splits: tuple[str, ...] = SPLITS) -> dict[str, int]:
    """Rows per split from Parquet footers alone: no row data is read."""
    root = root if storage.is_uri(root) else Path(root)
    if not storage.is_dir(root):
        raise DatasetError(f"{root}: no such dataset directory")
    counts = {}
    for split in splits:
        n = 0
        for path in shard_paths(root, split):
            try:
                n += storage.parquet_file(path).metadata.num_rows
            except storage.StorageError:
                raise
            except Exception as e:  # pyarrow raises several types for a damaged footer
                raise unreadable_shard(path, e) from None
        counts[split] = n
    if not any(counts.values()):
        raise DatasetError(f"{root}: no shards found under {', '.join(s + '/' for s in splits)}")
    return counts


def read_rows(root: str | Path, split: str = "train", count: int = 16) -> list[dict]:
    """The first `count` rows of a split, read batch by batch with pyarrow (no Ray)."""

    rows: list[dict] = []
    paths = shard_paths(root, split)
    if not paths:
        raise DatasetError(f"{root}: no shards under {split}/")
    for path in paths:
        try:
            for batch in storage.parquet_file(path).iter_batches(batch_size=max(1, min(count, 256))):
                rows.extend(batch.to_pylist())
                if len(rows) >= count:
                    return rows[:count]
        except storage.StorageError:
            raise
        except Exception as e:  # pyarrow raises several types for a damaged shard
            raise unreadable_shard(path, e) from None
    return rows
