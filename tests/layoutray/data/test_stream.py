"""The synthetic stream: fresh sections every epoch, reproducible by seed, fixed eval splits, mixing."""

import pytest

from layoutray.config import ConfigError, load_config
from layoutray.data.dataset import count_examples, read_rows
from layoutray.data.stream import ROWS_PER_BLOCK, parse_source, stream_size, synth_rows, write_eval_splits
from layoutray.data.synth import synthesize


def test_parse_source():
    assert parse_source("synth").is_synth and parse_source("synth").seed == 0
    assert parse_source("synth:7").seed == 7
    assert parse_source("runs/data").path == "runs/data" and not parse_source("./synth").is_synth
    with pytest.raises(ConfigError, match="synth:SEED"):
        parse_source("synth:seven")


def _epoch(ds):
    return {r["id"]: r["elements"] for r in ds.iter_rows()}


def test_every_epoch_is_new_and_a_seed_repeats_its_stream(ray_local):
    ds = synth_rows(5, 100)
    first, second = _epoch(ds), _epoch(ds)
    assert len(first) == len(second) == stream_size(100) == 2 * ROWS_PER_BLOCK
    assert not set(first) & set(second)  # no example repeats across epochs
    assert not {str(v) for v in first.values()} & {str(v) for v in second.values()}
    again = _epoch(synth_rows(5, 100))
    assert again == first  # the same seed, the same first epoch
    assert not set(_epoch(synth_rows(6, 100))) & set(first)


def test_eval_splits_are_fixed_and_reused(tmp_path):
    m = write_eval_splits(tmp_path / "e", seed=3, val=12, test=20)
    assert count_examples(tmp_path / "e") == {"train": 0, "val": 12, "test": 20} and m["counts"]["test"] == 20
    rows = read_rows(tmp_path / "e", "test", 20)
    before = (tmp_path / "e" / "manifest.json").stat().st_mtime_ns
    write_eval_splits(tmp_path / "e", seed=3, val=12, test=20)  # same request: kept as it is
    assert (tmp_path / "e" / "manifest.json").stat().st_mtime_ns == before
    assert read_rows(tmp_path / "e", "test", 20) == rows


def test_mixing_adds_fresh_rows_by_weight(ray_local, tmp_path):
    from layoutray.data.pipeline import build_training_stream

    synthesize(tmp_path / "d", 80, seed=1, shard_rows=40)  # 64 train rows
    cfg = load_config(phase="phase1", overrides=["data.synth_mix=0.5"])
    fresh = stream_size(64)  # w / (1 - w) = 1: as many fresh rows as real ones
    ds = build_training_stream(cfg, stream_seed=9, rows=fresh, parquet_root=tmp_path / "d")
    shards = [str(s) for s in ds.to_pandas()["shard"] if s]
    assert shards.count("synth:9") == fresh
    assert sum(s.endswith(".parquet") for s in shards) == 64
