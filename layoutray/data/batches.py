"""The consumer side of the data pipeline: rows from `layoutray.data.pipeline` to training batches.

    ds = build_dataset("sections", "train", cfg, train=True, seed=cfg.training.seed)
    for batch in iter_torch_batches(ds, cfg.micro_batch_size,
                                    max_bad_fraction=cfg.data.max_bad_fraction):
        batch["image"], batch["tokens"], ...          # see `collate`

`iter_torch_batches` (a Ray Dataset or a Train worker's shard) and `iter_local_batches` (the
same preprocessing in this process: evaluation and the bare-PyTorch baseline) both strip the
accounting rows that `preprocess_batch` appends, fold them into a `BadRowReport`, cut exact
batches and `collate` them, so both paths produce identical tensors. Why the counts travel in
the data rather than in an actor: `layoutray.data.pipeline`'s docstring, "Bad rows".
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from layoutray import storage
from layoutray.config import RunConfig
from layoutray.data.dataset import DatasetError, unreadable_shard
from layoutray.data.pipeline import (COLUMNS, MAP_BATCH_ROWS, REASONS, as_config, preprocess_batch,
                                sampling_rates, split_shards)


class DataQualityError(DatasetError):
    """Too many corrupted rows; `shard` is the worst one, `report` has the details."""

    def __init__(self, message: str, shard: str | None, report: "BadRowReport"):
        super().__init__(message)
        self.shard, self.report = shard, report

    def __reduce__(self):
        # Rebuilt from its fields when pickled (raised in a Ray worker, read by the driver).
        return (type(self), (self.args[0], self.shard, self.report))


# ---------------------------------------------------------------------------- accounting


@dataclass
class BadRowReport:
    """Rows seen and dropped, per shard and reason, for one pass over the data."""

    rows: Counter = field(default_factory=Counter)  # shard -> rows (good + bad)
    bad: dict = field(default_factory=dict)  # shard -> Counter(reason -> rows)

    def clear(self) -> None:
        self.rows.clear()
        self.bad.clear()

    def add(self, batch: dict[str, np.ndarray]) -> None:
        """Count a batch from `preprocess_batch`: source rows (`seen`; without that column,
        one per valid row) plus the bad rows of its accounting rows."""
        valid, shards = np.asarray(batch["valid"], dtype=bool), batch["shard"]
        seen = batch.get("seen")
        if seen is None:
            self.rows.update(str(s) for s in shards[valid])
        else:
            for i in np.flatnonzero(np.asarray(seen)):
                self.rows[str(shards[i])] += int(seen[i])
        for i in np.flatnonzero(~valid):
            shard, counts = str(shards[i]), batch["bad"][i]
            self.rows[shard] += int(counts.sum())
            per = self.bad.setdefault(shard, Counter())
            for reason, k in zip(REASONS, counts):
                if k:
                    per[reason] += int(k)

    def merge(self, other: "BadRowReport | dict") -> "BadRowReport":
        other = other if isinstance(other, BadRowReport) else BadRowReport.from_dict(other)
        self.rows.update(other.rows)
        for shard, per in other.bad.items():
            self.bad.setdefault(shard, Counter()).update(per)
        return self

    @property
    def total_rows(self) -> int:
        return sum(self.rows.values())

    @property
    def bad_rows(self) -> int:
        return sum(sum(c.values()) for c in self.bad.values())

    @property
    def bad_fraction(self) -> float:
        return self.bad_rows / self.total_rows if self.total_rows else 0.0

    def by_reason(self) -> dict[str, int]:
        total = Counter()
        for per in self.bad.values():
            total.update(per)
        return {r: total.get(r, 0) for r in REASONS}

    def reason_vector(self) -> np.ndarray:
        return np.array(list(self.by_reason().values()), dtype=np.int64)

    def worst_shard(self) -> str | None:
        if not self.bad:
            return None
        return max(self.bad, key=lambda s: (sum(self.bad[s].values()),
                                            sum(self.bad[s].values()) / max(1, self.rows[s])))

    def to_dict(self) -> dict:
        return {"rows": self.total_rows, "bad_rows": self.bad_rows,
                "bad_fraction": round(self.bad_fraction, 6), "by_reason": self.by_reason(),
                "by_shard": {s: {"rows": self.rows[s], "bad": dict(self.bad.get(s, {}))}
                             for s in sorted(self.rows)}}

    @classmethod
    def from_dict(cls, d: dict) -> "BadRowReport":
        rep = cls()
        for s, v in d.get("by_shard", {}).items():
            rep.rows[s] = v["rows"]
            if v["bad"]:
                rep.bad[s] = Counter(v["bad"])
        return rep

    def check(self, max_fraction: float, expected_rows: int | None = None) -> None:
        """Raise DataQualityError when bad rows exceed `max_fraction` of the rows.

        With `expected_rows` (the pass's size), the allowance is known before the pass
        ends, so a hopeless run stops early.
        """
        denom = max(expected_rows or 0, self.total_rows)
        if not denom or self.bad_rows / denom <= max_fraction:
            return
        worst = self.worst_shard()
        per = self.bad[worst]
        raise DataQualityError(
            f"{self.bad_rows} of {denom} rows are corrupted ({self.bad_rows / denom:.1%}), above "
            f"data.max_bad_fraction={max_fraction}; worst shard {worst}: {sum(per.values())} bad "
            f"of {self.rows[worst]} rows ({', '.join(f'{r}={k}' for r, k in per.most_common())})",
            worst, self)


# ---------------------------------------------------------------------------- consumption


def collate(batch: dict[str, np.ndarray]):
    """Good rows -> tensors; sequences trimmed to the longest in the batch.

    Returns image float32 [B,C,H,W], has_image bool [B], spec long [B,S], tokens long
    [B,T], n_elements long [B], task long [B], spec_len long [B], tok_len long [B].
    """
    import torch

    t = int(batch["tok_len"].max()) if len(batch["tok_len"]) else 1
    s = int(batch["spec_len"].max()) if len(batch["spec_len"]) else 1
    # Copies: Ray hands out read-only views of its object store, and tensors must own their data.
    as_long = lambda a: torch.from_numpy(np.array(a, dtype=np.int64))  # noqa: E731
    return {
        # torch widens float16 ~10x faster than numpy's astype (2 ms per batch of 16 at Phase 1).
        # The float16 copy first (~0.1 ms) is what lets torch read Ray's read-only buffer without
        # a warning; .float() then makes the tensor the batch owns.
        "image": torch.from_numpy(np.array(batch["image"])).float(),
        "has_image": torch.from_numpy(np.array(batch["has_image"], dtype=bool)),
        "spec": as_long(batch["spec"][:, :s]),
        "tokens": as_long(batch["tokens"][:, :t]),
        "n_elements": as_long(batch["n_elements"]),
        "task": as_long(batch["task"]),
        "spec_len": as_long(batch["spec_len"]),
        "tok_len": as_long(batch["tok_len"]),
    }


_TENSOR_KEYS = ("image", "has_image", "spec", "tokens", "n_elements", "task", "spec_len", "tok_len")


def _rebatch(raw: Iterable[dict[str, np.ndarray]], batch_size: int, drop_last: bool,
             report: BadRowReport, max_bad_fraction: float,
             expected_rows: int | None) -> Iterator[dict]:
    """Strip accounting rows, count them, and cut exact `batch_size` batches."""
    import torch

    pending: list[dict[str, np.ndarray]] = []
    held = 0

    def emit(rows: dict[str, np.ndarray]) -> dict:
        out = collate(rows)
        out["bad_counts"] = torch.from_numpy(report.reason_vector())
        return out

    for b in raw:
        report.add(b)
        if expected_rows:
            report.check(max_bad_fraction, expected_rows)
        keep = np.asarray(b["valid"], dtype=bool)
        if not keep.any():
            continue
        everything = keep.all()  # the usual case: no copy of the batch's images
        pending.append({k: np.asarray(b[k]) if everything else np.asarray(b[k])[keep] for k in _TENSOR_KEYS})
        held += int(keep.sum())
        while held >= batch_size:
            merged = pending[0] if len(pending) == 1 else {
                k: np.concatenate([p[k] for p in pending]) for k in _TENSOR_KEYS}
            yield emit({k: v[:batch_size] for k, v in merged.items()})
            held -= batch_size
            pending = [{k: v[batch_size:] for k, v in merged.items()}] if held else []
    if held and not drop_last:
        yield emit({k: np.concatenate([p[k] for p in pending]) for k in _TENSOR_KEYS})
    report.check(max_bad_fraction)


def _as_dataset_error(e: Exception) -> DatasetError:
    """Turn an exception from inside Ray into a one-line DatasetError naming the file."""
    err: BaseException | None = e
    while err is not None:  # a DatasetError raised in the map step, wrapped by Ray
        cause = getattr(err, "cause", None)
        if type(err) in (DatasetError, DataQualityError):
            return err if type(err) is DataQualityError else DatasetError(str(err))
        err = cause if isinstance(cause, BaseException) else err.__cause__
    text = str(e)
    lines = [ln.strip() for ln in text.splitlines() if re.match(r"^\s*\w*(Error|Exception)\b", ln)]
    detail = (lines[-1] if lines else text.strip().splitlines()[-1] if text.strip() else type(e).__name__)[:300]
    m = re.search(r"(/[^\s'\"]+?\.parquet)", text)
    if m:
        return DatasetError(f"{m.group(1)}: unreadable Parquet shard ({detail})")
    return DatasetError(f"data pipeline failed ({type(e).__name__}: {detail})")


def iter_torch_batches(ds_or_shard, batch_size: int, *, drop_last: bool = False,
                       max_bad_fraction: float = 0.05, expected_rows: int | None = None,
                       report: BadRowReport | None = None, prefetch_batches: int = 2,
                       local_shuffle_buffer_size: int | None = None,
                       local_shuffle_seed: int | None = None) -> Iterator[dict]:
    """One pass over a Dataset from `build_dataset` or a Train worker's DataIterator.

    Yields `collate` dicts plus `bad_counts` (long [len(REASONS)], this pass so far).
    `report` (cleared first) holds this pass's BadRowReport afterwards. Pass
    cfg.data.max_bad_fraction; the check runs when the pass ends (early with
    `expected_rows`), so a loop that breaks off early skips it.
    """
    report = report if report is not None else BadRowReport()
    report.clear()

    def raw():
        it = iter(ds_or_shard.iter_batches(
            batch_size=batch_size, batch_format="numpy", prefetch_batches=prefetch_batches,
            local_shuffle_buffer_size=local_shuffle_buffer_size,
            local_shuffle_seed=local_shuffle_seed))
        while True:
            try:
                b = next(it)
            except StopIteration:
                return
            except DataQualityError:
                raise
            except Exception as e:
                raise _as_dataset_error(e) from None
            yield b

    yield from _rebatch(raw(), batch_size, drop_last, report, max_bad_fraction, expected_rows)


def on_device(batches: Iterable[dict], device) -> Iterator[dict]:
    """Batches (dicts of CPU tensors) moved to `device`; on the CPU they pass through untouched."""
    import torch

    device = torch.device(device)
    if device.type == "cpu":
        yield from batches
        return
    for b in batches:
        yield {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in b.items()}


def iter_local_batches(root: str | Path, split: str, cfg: RunConfig | dict, batch_size: int,
                       train: bool = False, seed: int = 0, *, epoch: int = 0,
                       drop_last: bool = False, report: BadRowReport | None = None,
                       read_rows: int = MAP_BATCH_ROWS) -> Iterator[dict]:
    """The same batches as `iter_torch_batches(build_dataset(...))`, in this process.

    No Ray: shards are read with pyarrow, in name order (a per-epoch permutation when
    `train`). Bad rows are handled with cfg.data.max_bad_fraction over the split. The phi
    sampler and training phases apply as in `build_dataset`, with `epoch` as given.
    """
    cfg = as_config(cfg)
    paths, total = split_shards(root, split)
    rates = sampling_rates(cfg, paths, train)
    if train:
        paths = [paths[i] for i in np.random.default_rng([seed & 0xFFFFFFFF, epoch]).permutation(len(paths))]
    report = report if report is not None else BadRowReport()
    report.clear()

    def read(path: Path) -> Iterator[pa.Table]:
        try:
            for rb in storage.parquet_file(path).iter_batches(batch_size=read_rows, columns=list(COLUMNS)):
                table = pa.Table.from_batches([rb])
                yield table.append_column("path", pa.array([str(path)] * table.num_rows, pa.string()))
        except (OSError, pa.ArrowException) as e:  # a page damaged behind a good footer
            raise unreadable_shard(path, e) from None

    def raw():
        for path in paths:
            for table in read(path):
                yield preprocess_batch(table, cfg, train=train, seed=seed, epoch=epoch, repeat_rates=rates)

    yield from _rebatch(raw(), batch_size, drop_last, report, cfg.data.max_bad_fraction, total)

