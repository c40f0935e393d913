"""Fresh synthetic sections as a Ray Data source: a new set every epoch, nothing on disk.

    ds = synth_rows(seed=7, rows=1600, cfg=cfg)        # rows in the dataset schema, then
    ds = ds.map_batches(preprocess_task, ...)          # the same preprocessing as Parquet rows

Generation runs in parallel Ray tasks, one per block. Row r of block b in epoch e comes from a
generator seeded with (seed, e, b * rows_per_block + r), so a run never sees an example twice,
two runs with the same seed see the same stream, and the stream never meets the fixed
validation and test sets, which `write_eval_splits` draws from the ordinary generator
(`layoutray.data.synth`, seeds of another namespace). The epoch is Ray Data's execution index
of the dataset (plus `epoch_offset` for a resumed run), as for augmentation.

`parse_source("synth:7")` reads the `--data` value: a directory, or `synth` / `synth:SEED`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from layoutray.data import dataset
from layoutray.data.synth import DEFAULT_MAX_ELEMENTS, drawn_as, generate_example, iter_examples

SYNTH_PREFIX = "synth"
ROWS_PER_BLOCK = 64  # one generation task's rows: ~0.1 s of a core, small enough to stream


@dataclass(frozen=True)
class Source:
    """Where training examples come from: a dataset directory or the synthetic stream."""

    kind: str  # "dir" or "synth"
    path: str | None = None
    seed: int = 0

    @property
    def is_synth(self) -> bool:
        return self.kind == "synth"

    def describe(self) -> str:
        return f"fresh synthetic sections (seed {self.seed})" if self.is_synth else str(self.path)


def parse_source(text: str) -> Source:
    """`synth`, `synth:SEED` or a dataset directory (a local path or a URI such as
    `s3://bucket/sections`). A directory literally named `synth` must be written `./synth`."""
    head, _, seed = str(text).partition(":")
    if head != SYNTH_PREFIX:
        return Source("dir", path=str(text))
    if not seed:
        return Source("synth", seed=0)
    try:
        return Source("synth", seed=int(seed))
    except ValueError:
        from layoutray.config import ConfigError
        raise ConfigError("--data", f"{text!r}: the synthetic stream is 'synth' or 'synth:SEED' with an integer "
                                    f"SEED") from None


def stream_rng(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random(f"layoutray.data.stream:{seed}:{epoch}:{index}")


def generate_block(batch: dict[str, np.ndarray], seed: int, rows_per_block: int, max_elements: int,
                   epoch_offset: int = 0, appearance: str = "wireframe", variety: str = "base") -> pa.Table:
    """`map_batches` function: block indices in, rows of the dataset schema out."""
    from layoutray.data.pipeline import _execution_index

    epoch = epoch_offset + _execution_index()
    rows = []
    for block in batch["id"].tolist():
        for r in range(rows_per_block):
            index = int(block) * rows_per_block + r
            row = generate_example(stream_rng(seed, epoch, index), index, max_elements=max_elements,
                                   seed=seed * 1_000_003 + epoch, appearance=appearance, variety=variety)
            row["id"] = f"stream-{seed}-e{epoch}-{index:07d}"
            rows.append(row)
    table = pa.Table.from_pylist(rows, schema=dataset.SCHEMA)
    # The "shard" of a bad-row report: where a row came from, as a Parquet row's file path does.
    return table.append_column("path", pa.array([f"synth:{seed}"] * len(rows), pa.string()))


def synth_rows(seed: int, rows: int, *, max_elements: int = DEFAULT_MAX_ELEMENTS, epoch_offset: int = 0,
               num_cpus: float = 1.0, appearance: str = "wireframe", variety: str = "base"):
    """A Ray Dataset of about `rows` fresh rows per execution (whole blocks: rounded up)."""
    import ray.data

    blocks = max(1, -(-rows // ROWS_PER_BLOCK))
    ds = ray.data.range(blocks, override_num_blocks=blocks)
    return ds.map_batches(generate_block, batch_size=1, batch_format="numpy", num_cpus=num_cpus,
                          fn_kwargs={"seed": seed, "rows_per_block": ROWS_PER_BLOCK,
                                     "max_elements": max_elements, "epoch_offset": epoch_offset,
                                     "appearance": appearance, "variety": variety})


def stream_size(rows: int) -> int:
    """The rows one execution of `synth_rows(rows=...)` yields."""
    return max(1, -(-rows // ROWS_PER_BLOCK)) * ROWS_PER_BLOCK


def write_eval_splits(out_dir: str | Path, seed: int, val: int, test: int,
                      max_elements: int = DEFAULT_MAX_ELEMENTS, shard_rows: int = 500,
                      appearance: str = "wireframe", variety: str = "base") -> dict:
    """Fixed validation and test sets for a synthetic-stream run, drawn once from `seed` by the
    ordinary generator, as a dataset directory with no train split. Reused when it exists with
    the same sizes. `out_dir` is a local directory or a URI."""
    out = out_dir
    want = {"val": val, "test": test}
    gen = {"name": "layoutray.data.stream.write_eval_splits", "seed": seed, "max_elements": max_elements,
           "appearance": appearance, "variety": variety}
    try:
        m = dataset.read_manifest(out)
        old = drawn_as(m)
        if m.get("counts", {}).get("val") == val and m.get("counts", {}).get("test") == test \
                and all(old.get(k) == v for k, v in gen.items() if k != "name"):
            return m
    except Exception:  # noqa: BLE001 - absent or unreadable: made anew below
        pass
    shards, start = [], 0
    for split, n in want.items():
        idx = range(start, start + n)
        start += n
        shards += dataset.write_split(out, split, iter_examples(idx, seed, max_elements, appearance, variety),
                                      shard_rows)
    return dataset.write_manifest(out, shards, generator=gen)
