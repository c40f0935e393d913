"""Examples from Parquet shards to training tensors, with Ray Data or in-process.

    ds = build_dataset("sections", "train", cfg, train=True, seed=cfg.training.seed)
    for batch in iter_torch_batches(ds, cfg.micro_batch_size,          # layoutray.data.batches
                                    max_bad_fraction=cfg.data.max_bad_fraction):
        batch["image"], batch["tokens"], ...          # see `batches.collate`

Stages: `read_parquet` (streaming, file order reshuffled every execution for training)
-> `map_batches(preprocess_task)` (validate, decode, augment, tokenize: `preprocess_batch`)
-> `batches.iter_torch_batches` (drop accounting rows, re-batch, trim, tensors). The same
`preprocess_batch` and `collate` run in-process in `batches.iter_local_batches` (evaluation
and the bare-PyTorch baseline), so both paths produce identical tensors. This module is the
producer side (rows, preprocessing, shards, the Dataset); `layoutray.data.batches` the consumer.

Shuffling. Training reads the shard files in a new order on every execution (one
execution = one epoch) through `FileShuffleConfig(seed, reseed_after_execution=True)`.
That keeps the pipeline streaming; `randomize_block_order` would do the same at block
level but is an all-to-all barrier that waits for the whole read. Rows are mixed
further by `local_shuffle_buffer_size` in `iter_torch_batches`. Augmentation draws from
a per-row generator seeded with (seed, crc32(row id), epoch); the epoch is Ray Data's
per-dataset execution index, which the map task sees in its DataContext.

Bad rows. A row that fails validation is dropped and counted by reason (`REASONS`).
The map step runs in other processes (tasks, maybe on other nodes), so counts cannot live
in a Python object there. Instead they travel *in the data*: `preprocess_batch` appends
one accounting row per (input batch, shard) that had bad rows, with `valid=False`, the
shard path in `shard` and per-reason counts in `bad`. Every good row carries its shard
too. The consumer (`iter_torch_batches` / `iter_local_batches`) strips accounting rows
out of the batches and folds them into a `BadRowReport` (rows and bad rows per shard and
reason). This needs no actor, survives task retries (a retried task re-emits its rows
once) and works for each Train worker's shard: each worker's report covers the rows it
consumed, and reports merge with `BadRowReport.merge` or through `to_dict`. At the end
of a pass, a bad fraction above `max_bad_fraction` raises `DataQualityError` naming the
shard with the most bad rows; with `expected_rows` (from Parquet footers) the error is
raised as soon as the count alone exceeds the allowance. The per-batch tallies are also
in every yielded batch as `bad_counts`, and the report object is filled in place.

Phi sampler (`schedule.sampler = "phi"`, training only). Difficulty is a row's element
count, bucketed by `schedules.DEFAULT_DIFFICULTY_EDGES`. The driver reads only the list
lengths of `elements` (one leaf column, no images) to get each bucket's share s_b of the
split, and `schedules.phi_repeat_rates` turns the shares into rates w_b / s_b. The map step
then emits every *valid* row k ~ Poisson(rate of its bucket) times (k from the row's own
generator, so it changes every epoch), each copy with its own task and augmentation draw.
Bucket b is then an expected w_b (`phi_bucket_weights`) of the epoch, and the epoch's
expected size is the split's row count. Resampling happens after validation, so a bad row
is counted once whatever its k. The accounting counts *source* rows: every output row has
`seen` (1 for a row's first copy, 0 for further copies; accounting rows carry the number
of rows drawn 0 times), so a report's `rows` still equals the rows read from the shards
and `expected_rows` keeps working.

Training phases (`schedule.phi_phases`, training only): augmentation strength is
`data.strength` times `phase_settings_at(epoch, training.epochs).augmentation`, epoch being
the execution index (plus `build_dataset(epoch_offset=...)`): 1.0 in exploration (the
first int(epochs / phi^2) epochs), 1/phi in exploitation (see docs/schedules.md). The last
`data.clean_epochs` epochs are not augmented at all.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from layoutray.data.augment import AugmentParams, augment
from layoutray.config import RunConfig, config_from_dict
from layoutray import storage
from layoutray.data.dataset import DatasetError, shard_paths, unreadable_shard
from layoutray.data.imaging import ImageError, decode_png, to_model_array
from layoutray.schedules import (DEFAULT_DIFFICULTY_EDGES, difficulty_bucket, phase_settings_at,
                                 phase_settings_from_config, phi_repeat_rates)
from layoutray.model.tokenizer import NULL, PAD, Box, LayoutTokenizer
from layoutray.data.vocab import ELEMENT_INDEX, SECTION_INDEX

TASKS = ("image_only", "spec_only", "both")
IMAGE_ONLY, SPEC_ONLY, BOTH = range(3)
REASONS = ("undecodable_png", "bad_box", "unknown_section_type", "unknown_element_type",
           "too_many_elements", "no_elements", "malformed_row")
REASON_INDEX = {r: i for i, r in enumerate(REASONS)}
COLUMNS = ("id", "section_type", "image", "elements")  # what preprocessing reads
BOX_TOL = 1e-4  # float32 rounding of x + w may overshoot 1 by a hair
MAP_BATCH_ROWS = 64  # rows per map call: blocks of decoded images stay a few MB
OUTPUT_BLOCK_BYTES = 16 * 1024 * 1024
# Throttling only; regexes (Ray Data matches retried_io_errors as substrings or patterns).
RETRIED_STORAGE_ERRORS = (r"AWS Error SLOW_DOWN", r"AWS Error UNKNOWN \(HTTP status 503\)")


class BadRow(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def as_config(cfg: RunConfig | dict) -> RunConfig:
    return cfg if isinstance(cfg, RunConfig) else config_from_dict(cfg)


@functools.lru_cache(maxsize=8)
def _tokenizer(bins: int) -> LayoutTokenizer:
    return LayoutTokenizer(bins=bins)


# ---------------------------------------------------------------------------- rows


def parse_row(section_type: Any, elements: Any, image: Any, max_elements: int) -> tuple[list[Box], Any]:
    """Validate one row; returns (boxes, decoded PIL image or None) or raises BadRow.

    Cheap checks run first so that a bad row rarely costs a PNG decode.
    """
    if section_type not in SECTION_INDEX:
        raise BadRow("unknown_section_type", repr(section_type))
    elements = [] if elements is None else list(elements)
    if not elements:
        raise BadRow("no_elements")
    if len(elements) > max_elements:
        raise BadRow("too_many_elements", f"{len(elements)} > {max_elements}")
    boxes = []
    for e in elements:
        e = dict(e)
        if e.get("type") not in ELEMENT_INDEX:
            raise BadRow("unknown_element_type", repr(e.get("type")))
        vals = [e.get(k) for k in ("x", "y", "w", "h")]
        if any(v is None for v in vals):
            raise BadRow("bad_box", "missing coordinate")
        x, y, w, h = (float(v) for v in vals)
        if not all(np.isfinite((x, y, w, h))) or w <= 0 or h <= 0 or x < 0 or y < 0 \
                or x + w > 1 + BOX_TOL or y + h > 1 + BOX_TOL:
            raise BadRow("bad_box", f"{(x, y, w, h)}")
        boxes.append(Box(e["type"], x, y, min(w, 1.0 - x), min(h, 1.0 - y)))
    img = None
    if image is not None:
        try:
            img = decode_png(bytes(image))
        except ImageError as err:
            raise BadRow("undecodable_png", str(err)) from None
    return boxes, img


def row_rng(seed: int, row_id: str, epoch: int) -> np.random.Generator:
    # crc32, not hash(): Python salts str hashes per process, and rows are processed in
    # whichever process Ray picks.
    key = zlib.crc32(str(row_id).encode("utf-8"))
    return np.random.default_rng([seed & 0xFFFFFFFFFFFFFFFF, key, epoch & 0xFFFFFFFF])


def _column(batch: Any, name: str) -> list | None:
    if isinstance(batch, pa.Table):
        return batch.column(name).to_pylist() if name in batch.column_names else None
    col = batch.get(name)
    if col is None:
        return None
    if isinstance(col, (pa.Array, pa.ChunkedArray)):
        return col.to_pylist()
    return list(col)


def _num_rows(batch: Any) -> int:
    if isinstance(batch, pa.Table):
        return batch.num_rows
    return len(next(iter(batch.values()))) if batch else 0


# ---------------------------------------------------------------------------- preprocessing


def augment_strength(cfg: RunConfig, epoch: int) -> float:
    """data.strength, times the training phase's augmentation multiplier with schedule.phi_phases
    (phase of 0-based `epoch` out of training.epochs; see schedules.PHASE_DEFAULTS); 0 in the
    last data.clean_epochs epochs."""
    if cfg.data.clean_epochs and epoch >= cfg.training.epochs - cfg.data.clean_epochs:
        return 0.0
    strength = cfg.data.strength
    if cfg.schedule.phi_phases:
        strength *= phase_settings_at(epoch, cfg.training.epochs,
                                      phase_settings_from_config(cfg.schedule)).augmentation
    return strength


def _input_columns(batch: Any) -> tuple[int, dict[str, list], list]:
    """(rows, the COLUMNS as lists, each row's shard path); DatasetError when a column is missing."""
    n = _num_rows(batch)
    cols = {c: _column(batch, c) for c in COLUMNS}
    paths = _column(batch, "path") or ["<memory>"] * n
    missing = [c for c, v in cols.items() if v is None]
    if missing:
        raise DatasetError(f"{paths[0] if n else '<batch>'}: missing column(s) {', '.join(missing)}")
    return n, cols, paths


def _augment_params(cfg: RunConfig, train: bool, epoch: int) -> AugmentParams | None:
    """None: no augmentation (evaluation, or a training epoch at strength 0)."""
    strength = augment_strength(cfg, epoch) if train else 0.0
    if strength > 0:
        return AugmentParams.from_config(dataclasses.replace(cfg.data, strength=strength))
    return None


def _parse_or_reason(cols: dict[str, list], i: int, max_elements: int) -> tuple[tuple | None, str | None]:
    """(parse_row's result, None) for a good row, (None, the REASONS entry) for a bad one."""
    try:
        return parse_row(cols["section_type"][i], cols["elements"][i], cols["image"][i], max_elements), None
    except BadRow as e:
        return None, e.reason
    except Exception:  # a row shaped wrong in a way the schema allows (e.g. null fields)
        return None, "malformed_row"


def _draw_copies(rng: np.random.Generator, n_boxes: int, repeat_rates: Sequence[float] | None,
                 edges: tuple[int, ...]) -> list:
    """(task, augmentation) generator pairs, one per copy of the row; [] when the sampler drew 0."""
    copies = [rng.spawn(2)]
    if repeat_rates is not None:
        # Children 0, 1 above are what the uniform path draws from; the count is child 2
        # and further copies take 3, 4, then 5, 6 ...
        k = int(rng.spawn(1)[0].poisson(repeat_rates[difficulty_bucket(n_boxes, edges)]))
        if k == 0:
            return []
        copies += [rng.spawn(2) for _ in range(k - 1)]
    return copies


class _Example(NamedTuple):
    image: np.ndarray | None
    task: int
    tokens: list[int]
    spec: list[int]
    n_elements: int
    id: str
    shard: str
    seen: int


@dataclasses.dataclass(frozen=True)
class _Encoder:
    """Turns one valid row into its examples: task, image array, augmentation, tokens."""
    model: Any  # cfg.model
    train: bool
    augment: AugmentParams | None
    mix_p: np.ndarray  # probabilities of TASKS in training

    @classmethod
    def of(cls, cfg: RunConfig, train: bool, epoch: int) -> "_Encoder":
        mix = cfg.training.task_mix
        mix_p = np.array([mix.image_only, mix.spec_only, mix.both], dtype=np.float64)
        return cls(cfg.model, train, _augment_params(cfg, train, epoch), mix_p / mix_p.sum())

    def task(self, img, task_rng: np.random.Generator) -> int:
        if img is None:
            return SPEC_ONLY
        if self.train:
            return int(task_rng.choice(3, p=self.mix_p))
        return BOTH  # evaluation is deterministic: the richest input available

    def examples(self, copies: list, boxes: list[Box], img, section_type: str, row_id: Any,
                 shard: str) -> list[_Example]:
        m, tok = self.model, _tokenizer(self.model.coord_bins)
        model_array = None  # resized once per row, on the first copy that needs it
        out = []
        for c, (task_rng, aug_rng) in enumerate(copies):
            task = self.task(img, task_rng)
            array = None
            if task != SPEC_ONLY:
                if model_array is None:
                    model_array = to_model_array(img, m.image_height, m.image_width, m.image_channels)
                array = model_array
            row_boxes = boxes
            if self.augment is not None:
                array, row_boxes = augment(array, boxes, aug_rng, self.augment)  # copies the array
            tokens = tok.encode_layout(row_boxes)
            spec = [NULL] if task == IMAGE_ONLY else tok.encode_spec(section_type, [b.type for b in row_boxes])
            out.append(_Example(array, task, tokens, spec, len(row_boxes), str(row_id), shard, 1 if c == 0 else 0))
        return out


def _empty_columns(m, rows: int) -> dict[str, np.ndarray]:
    return {
        "image": np.zeros((rows, m.image_channels, m.image_height, m.image_width), np.float16),
        "has_image": np.zeros(rows, bool),
        "task": np.zeros(rows, np.int8),
        "n_elements": np.zeros(rows, np.int32),
        "tokens": np.full((rows, m.max_seq_len), PAD, np.int32),
        "tok_len": np.zeros(rows, np.int32),
        "spec": np.full((rows, m.max_spec_len), PAD, np.int32),
        "spec_len": np.zeros(rows, np.int32),
        "valid": np.zeros(rows, bool),
        "bad": np.zeros((rows, len(REASONS)), np.int32),
        "seen": np.zeros(rows, np.int32),
    }


def _output_columns(m, good: list[_Example], tallies: dict[str, np.ndarray],
                    unsampled: Counter) -> dict[str, np.ndarray]:
    """The good rows, then one accounting row per shard with bad or unsampled rows."""
    accounting = list(tallies) + [s for s in unsampled if s not in tallies]
    out = _empty_columns(m, len(good) + len(accounting))
    for r, ex in enumerate(good):
        if ex.image is not None:
            out["image"][r] = ex.image
            out["has_image"][r] = True
        out["task"][r] = ex.task
        out["n_elements"][r] = ex.n_elements
        out["tokens"][r, :len(ex.tokens)] = ex.tokens
        out["tok_len"][r] = len(ex.tokens)
        out["spec"][r, :len(ex.spec)] = ex.spec
        out["spec_len"][r] = len(ex.spec)
        out["valid"][r] = True
        out["seen"][r] = ex.seen
    for r, shard in enumerate(accounting, start=len(good)):
        if shard in tallies:
            out["bad"][r] = tallies[shard]
        out["seen"][r] = unsampled[shard]
    out["id"] = np.array([ex.id for ex in good] + [""] * len(accounting), dtype=object)
    out["shard"] = np.array([ex.shard for ex in good] + accounting, dtype=object)
    return out


def preprocess_batch(batch: Any, cfg: RunConfig | dict, *, train: bool, seed: int = 0,
                     epoch: int = 0, repeat_rates: Sequence[float] | None = None,
                     edges: tuple[int, ...] = DEFAULT_DIFFICULTY_EDGES) -> dict[str, np.ndarray]:
    """Rows of dataset.SCHEMA (+ optional "path") -> model-ready numpy columns.

    With `repeat_rates` (training; one rate per difficulty bucket of `edges`, from
    `sampling_rates`) each valid row appears k ~ Poisson(rate of its bucket) times, every
    copy with its own task and augmentation draw; bad rows are counted once regardless.

    Output columns (N good rows, then one accounting row per shard with bad or unsampled rows):
      image float16 [N, C, H, W] (ink 1, paper 0; zeros when has_image is false)
      has_image bool [N]; task int8 [N] (index into TASKS); n_elements int32 [N]
      tokens int32 [N, max_seq_len], tok_len int32 [N]   (PAD after tok_len)
      spec int32 [N, max_spec_len], spec_len int32 [N]  (PAD after spec_len)
      id str [N]; shard str [N]; valid bool [N]; bad int32 [N, len(REASONS)]
      seen int32 [N]: source rows this row stands for in a BadRowReport (1 for a row's
        first copy, 0 for its repeats; on an accounting row, the rows sampled 0 times)
    """
    cfg = as_config(cfg)
    n, cols, paths = _input_columns(batch)
    encoder = _Encoder.of(cfg, train, epoch)
    if repeat_rates is not None and len(repeat_rates) != len(edges) + 1:
        raise ValueError(f"{len(repeat_rates)} repeat rates for {len(edges) + 1} difficulty buckets")

    good: list[_Example] = []
    tallies: dict[str, np.ndarray] = {}  # shard -> bad rows per reason
    unsampled: Counter = Counter()  # shard -> valid rows drawn 0 times by the sampler
    for i in range(n):
        shard = str(paths[i])
        parsed, reason = _parse_or_reason(cols, i, cfg.model.max_elements)
        if reason is not None:
            tallies.setdefault(shard, np.zeros(len(REASONS), np.int32))[REASON_INDEX[reason]] += 1
            continue
        boxes, img = parsed
        copies = _draw_copies(row_rng(seed, cols["id"][i], epoch), len(boxes), repeat_rates, edges)
        if not copies:
            unsampled[shard] += 1
            continue
        good += encoder.examples(copies, boxes, img, cols["section_type"][i], cols["id"][i], shard)
    return _output_columns(cfg.model, good, tallies, unsampled)


def _execution_index() -> int:
    """Ray Data's count of finished executions of this dataset, i.e. the epoch.

    Private attribute, read defensively: without it augmentation still works, it just
    repeats across epochs.
    """
    try:
        from ray.data import DataContext
        return int(getattr(DataContext.get_current(), "_execution_idx", 0))
    except Exception:
        return 0


@functools.lru_cache(maxsize=8)
def _parsed_config(cfg_json: str) -> RunConfig:
    """A worker process parses each run's config once, not once per map call."""
    return as_config(json.loads(cfg_json))


def preprocess_task(batch: Any, cfg_json: str, train: bool, seed: int,
                    repeat_rates: list[float] | None = None, epoch_offset: int = 0) -> dict[str, np.ndarray]:
    """`map_batches` function: `preprocess_batch` with the epoch from Ray Data (plus
    `epoch_offset`, for a run that resumes with a freshly built dataset).

    A function (Ray tasks), not a callable class (an actor pool): Ray Data builds an actor
    pool anew for every execution, i.e. every epoch, and its start-up stalled each epoch's
    first batch by 1.4-1.9 s on a 2-core machine; pooled task workers are already warm."""
    return preprocess_batch(batch, _parsed_config(cfg_json), train=train, seed=seed,
                            epoch=epoch_offset + _execution_index(), repeat_rates=repeat_rates)


# ---------------------------------------------------------------------------- shards


def check_shards(paths: list[Path]) -> int:
    """Open every footer up front: a damaged file fails here, by name. Returns rows."""
    rows = 0
    for path in paths:
        try:
            f = storage.parquet_file(path)
            names = set(f.schema_arrow.names)
            rows += f.metadata.num_rows
        except storage.StorageError:
            raise
        except Exception as e:  # pyarrow raises several types for a damaged footer
            raise unreadable_shard(path, e) from None
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise DatasetError(f"{path}: not a layoutray shard (missing column(s) {', '.join(missing)})")
    return rows


def _find_unreadable_shard(paths: list[Path], error: Exception) -> DatasetError:
    """Name the shard behind a read error that Ray reports without a path: read each one
    whole, locally, until one fails (only on this failure path)."""
    for path in paths:
        try:
            storage.parquet_file(path).read()
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types
            return unreadable_shard(path, e)
    from layoutray.data.batches import _as_dataset_error  # batches imports this module
    return _as_dataset_error(error)


def difficulty_counts(paths: Iterable[Path], edges: tuple[int, ...] = DEFAULT_DIFFICULTY_EDGES) -> list[int]:
    """Rows per difficulty bucket (element count, `schedules.difficulty_bucket`) over shards.

    Reads one leaf of the `elements` lists (their lengths are all it needs): no images, so
    it costs a small fraction of a pass. A null list counts as 0 elements. Every row counts,
    including ones preprocessing will reject, so the shares are off by at most the bad share.
    """
    counts = np.zeros(len(edges) + 1, np.int64)
    for path in paths:
        try:
            f = storage.parquet_file(path)
            leaf = next((f.schema.column(i).path for i in range(f.metadata.num_columns)
                         if f.schema.column(i).path.startswith("elements.")), "elements")
            for rb in f.iter_batches(batch_size=65536, columns=[leaf]):
                n = pc.list_value_length(rb.column(0)).fill_null(0).to_numpy(zero_copy_only=False)
                counts += np.bincount(np.searchsorted(edges, n, side="right"), minlength=len(counts))
        except (OSError, pa.ArrowException) as e:
            raise unreadable_shard(path, e) from None
    return counts.tolist()


def sampling_rates(cfg: RunConfig, paths: Iterable[Path], train: bool) -> list[float] | None:
    """Per-bucket repeat rates for preprocess_batch: None (every row once) unless training
    with schedule.sampler == "phi" (see `schedules.phi_repeat_rates`)."""
    if not train or cfg.schedule.sampler != "phi":
        return None
    counts = difficulty_counts(paths)
    return phi_repeat_rates(counts) if sum(counts) else None


def split_shards(root: str | Path, split: str) -> tuple[list[Path], int]:
    paths = shard_paths(root, split)
    if not paths:
        raise DatasetError(f"{storage.join(root, split)}: no part-*.parquet shards")
    return paths, check_shards(paths)


def build_dataset(root: str | Path, split: str, cfg: RunConfig | dict, *, train: bool,
                  seed: int = 0, num_cpus: float = 1.0, epoch_offset: int = 0):
    """A streaming Ray Dataset of preprocessed rows (never materialised).

    Raises DatasetError naming the file when a shard's footer is unreadable. Consume
    with `iter_torch_batches`; the dataset's row count is in `split_shards(...)[1]` (with
    the phi sampler that is the expected count of a pass; the BadRowReport still counts
    exactly the source rows). `epoch_offset` is added to Ray Data's execution index (the
    epoch seen by augmentation, the sampler and the training phases), for a resumed run.
    """
    cfg = as_config(cfg)
    paths, _ = split_shards(root, split)
    ds = _read_parquet(paths, train, seed)
    return preprocess(ds, cfg, train=train, seed=seed, rates=sampling_rates(cfg, paths, train),
                      epoch_offset=epoch_offset, num_cpus=num_cpus)


def _read_parquet(paths: list[Path], train: bool, seed: int):
    import ray.data
    from ray.data import DataContext, FileShuffleConfig

    # Ray Data's V1 Parquet reader. The V2 default starts 32 footer-reader actors on every
    # pass (every epoch): 1.9-3.2 s before the first batch and both cores of a small machine,
    # to read footers that check_shards already read. V1 starts the first batch in < 0.1 s.
    context = DataContext.get_current()
    use_v2, context.use_datasource_v2 = context.use_datasource_v2, False
    # Ray Data retries "connection failed" inside nested retry loops (10 x 10 attempts with
    # backoff up to 32 s): a store that is down stalls a run for hours without a word. Only
    # throttling is retried in place; an unreachable store fails the attempt, Ray Train
    # restarts from the last checkpoint (checkpoint.max_failures), then the run stops naming
    # the URI and --resume.
    retried = _set_retried_io_errors(context, list(RETRIED_STORAGE_ERRORS))
    try:
        # URIs are read by the workers themselves, with the filesystem (and its endpoint) given here.
        fs = storage.resolve(paths[0])[0] if storage.is_uri(paths[0]) else None
        return ray.data.read_parquet(
            [str(p) for p in paths], include_paths=True, filesystem=fs,
            # A fixed integer seed would replay one order; this reseeds per execution.
            shuffle=FileShuffleConfig(seed=seed, reseed_after_execution=True) if train else None)
    except Exception as e:  # V1 samples rows of the shards here: a damaged page fails now
        raise _find_unreadable_shard(paths, e) from None
    finally:
        context.use_datasource_v2 = use_v2
        _set_retried_io_errors(context, retried)


def _set_retried_io_errors(context, patterns: list[str]) -> list[str]:
    """Set the context's retried error patterns; returns the previous ones. Ray Data warns on any
    non-default value (it moves to regex matching); ours are valid regexes."""
    previous = context.retried_io_errors
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.retried_io_errors = patterns
    return previous


def preprocess(ds, cfg: RunConfig, *, train: bool, seed: int, rates: list[float] | None = None,
               epoch_offset: int = 0, num_cpus: float = 1.0):
    """Rows of the dataset schema (from Parquet or the synthetic stream) -> preprocessed rows."""
    import ray.data

    ds = ds.map_batches(
        preprocess_task, fn_kwargs={"cfg_json": json.dumps(cfg.to_dict(), sort_keys=True), "train": train,
                                    "seed": seed, "repeat_rates": rates, "epoch_offset": epoch_offset},
        batch_size=MAP_BATCH_ROWS, batch_format="pyarrow", zero_copy_batch=True,
        compute=ray.data.TaskPoolStrategy(size=cfg.data.preprocess_concurrency), num_cpus=num_cpus)
    # The executor reads the last dataset's context. Small output blocks let the first
    # batch leave a map task after MAP_BATCH_ROWS rows instead of after a whole shard
    # (Ray's default merges outputs up to 128 MiB, i.e. ~1,000 decoded images).
    ds.context.target_max_block_size = OUTPUT_BLOCK_BYTES
    if not train:
        ds.context.execution_options.preserve_order = True  # evaluation is repeatable
    return ds


def build_training_stream(cfg: RunConfig, *, stream_seed: int, rows: int, seed: int = 0,
                          epoch_offset: int = 0, parquet_root: str | Path | None = None):
    """The training dataset with fresh synthetic sections: `rows` of them per epoch, alone or
    (with `parquet_root`) added to that directory's train split. Each part is preprocessed on
    its own and the outputs joined, since their input schemas differ."""
    from layoutray.data.stream import synth_rows

    cfg = as_config(cfg)
    fresh = preprocess(synth_rows(stream_seed, rows, max_elements=cfg.model.max_elements,
                                  epoch_offset=epoch_offset, appearance=cfg.data.synth_appearance,
                                  variety=cfg.data.synth_variety), cfg, train=True, seed=seed,
                       epoch_offset=epoch_offset)
    if parquet_root is None:
        return fresh
    return build_dataset(parquet_root, "train", cfg, train=True, seed=seed, epoch_offset=epoch_offset).union(fresh)
