"""The consumer side of the pipeline without Ray: collate, bad-row accounting, re-batching.
(The same code over a real Ray Dataset: tests/layoutray/test_pipeline.py.)"""

import warnings

import numpy as np
import pytest
import torch

from layoutray.data.batches import BadRowReport, DataQualityError, _rebatch, collate, on_device
from layoutray.data.pipeline import REASONS


def rows(n, start=0, valid=None, shard="a.parquet", bad=None):
    """n rows as preprocess_batch emits them (tiny tensors); `valid` False marks accounting rows."""
    valid = np.ones(n, bool) if valid is None else np.asarray(valid, bool)
    counts = np.zeros((n, len(REASONS)), np.int64)
    for i, per in (bad or {}).items():
        for reason, k in per.items():
            counts[i, REASONS.index(reason)] = k
    seen = valid.astype(np.int32)
    return {"image": np.full((n, 1, 2, 2), 0.25, np.float16), "has_image": np.ones(n, bool),
            "spec": np.arange(start, start + n)[:, None].repeat(3, 1).astype(np.int16),
            "tokens": np.arange(start, start + n)[:, None].repeat(4, 1), "n_elements": np.ones(n, np.int64),
            "task": np.full(n, 2), "spec_len": np.full(n, 3), "tok_len": np.full(n, 4),
            "valid": valid, "shard": np.array([shard] * n, object), "bad": counts, "seen": seen}


def test_collate_copies_read_only_inputs_into_tensors_that_own_their_data():
    # Ray hands out read-only views of its object store; a tensor over one would be written
    # through by any in-place op (torch warns "not writable" and calls it undefined behaviour).
    rows = {"image": np.full((2, 1, 4, 6), 0.5, np.float16), "has_image": np.array([True, False]),
            "spec": np.array([[3, 4, 0], [3, 0, 0]], np.int16), "tokens": np.array([[1, 2, 2, 0], [1, 2, 0, 0]], np.int64),
            "n_elements": np.array([1, 0]), "task": np.array([2, 1]), "spec_len": np.array([2, 1]),
            "tok_len": np.array([3, 2])}
    for a in rows.values():
        a.setflags(write=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the "non-writable NumPy array" warning fails the test
        out = collate(rows)
    assert out["image"].dtype == torch.float32 and float(out["image"].max()) == 0.5
    assert out["tokens"].tolist() == [[1, 2, 2], [1, 2, 0]] and out["spec"].shape == (2, 2)
    for k, t in out.items():
        assert not np.shares_memory(t.numpy(), rows[k]), k
        t.add_(1) if t.dtype != torch.bool else t.logical_not_()  # in place: must not reach the input
    assert rows["tokens"][0].tolist() == [1, 2, 2, 0] and float(rows["image"].max()) == 0.5


def test_report_counts_good_and_bad_rows_per_shard_and_reason():
    rep = BadRowReport()
    rep.add(rows(3, shard="a"))  # three good rows
    rep.add(rows(2, shard="b", valid=[True, False], bad={1: {"bad_box": 2, "undecodable_png": 1}}))
    assert rep.total_rows == 3 + 1 + 3 and rep.bad_rows == 3
    assert rep.by_reason()["bad_box"] == 2 and rep.by_reason()["undecodable_png"] == 1
    assert rep.worst_shard() == "b" and rep.bad_fraction == pytest.approx(3 / 7)
    # to_dict / from_dict round trip, and merging two workers' reports adds them up
    again = BadRowReport.from_dict(rep.to_dict())
    assert again.to_dict() == rep.to_dict()
    merged = BadRowReport().merge(rep).merge(rep.to_dict())
    assert merged.total_rows == 14 and merged.bad["b"]["bad_box"] == 4


def test_report_check_names_the_worst_shard_and_stops_early_with_expected_rows():
    rep = BadRowReport()
    rep.add(rows(2, shard="good.parquet"))
    rep.add(rows(1, shard="bad.parquet", valid=[False], bad={0: {"no_elements": 2}}))
    rep.check(0.5)  # 2 bad of 4: at the limit, allowed
    with pytest.raises(DataQualityError, match=r"2 of 4 rows.*worst shard bad\.parquet: 2 bad of 2 rows") as err:
        rep.check(0.25)
    assert err.value.shard == "bad.parquet" and err.value.report is rep
    # with the pass's size known, 2 bad rows of an expected 100 are within 5%, and of 20 are not
    rep.check(0.05, expected_rows=100)
    with pytest.raises(DataQualityError, match="2 of 20 rows"):
        rep.check(0.05, expected_rows=20)


def test_rebatch_strips_accounting_rows_and_cuts_exact_batches():
    stream = [rows(3, 0), rows(3, 3, valid=[True, False, True], bad={1: {"bad_box": 1}}), rows(4, 6)]
    rep = BadRowReport()
    out = list(_rebatch(stream, batch_size=4, drop_last=False, report=rep, max_bad_fraction=0.5,
                        expected_rows=None))
    assert [len(b["tokens"]) for b in out] == [4, 4, 1]
    kept = [int(t) for b in out for t in b["tokens"][:, 0]]
    assert kept == [0, 1, 2, 3, 5, 6, 7, 8, 9]  # row 4, the accounting row, is gone; order kept
    assert out[-1]["bad_counts"][REASONS.index("bad_box")] == 1 and rep.bad_rows == 1
    dropped = list(_rebatch(stream, 4, drop_last=True, report=BadRowReport(), max_bad_fraction=0.5,
                            expected_rows=None))
    assert [len(b["tokens"]) for b in dropped] == [4, 4]


def test_on_device_moves_tensors_and_leaves_cpu_batches_untouched():
    batch = {"tokens": torch.zeros(2, 3, dtype=torch.long), "image": torch.ones(2, 1, 4, 4), "split": "val"}
    (same,) = on_device([batch], "cpu")
    assert same is batch  # no copy per batch on a CPU worker
    # "meta" stands in for a GPU here: any non-CPU device takes the moving branch
    (moved,) = on_device([batch], "meta")
    assert {k: v.device.type for k, v in moved.items() if torch.is_tensor(v)} == {"tokens": "meta", "image": "meta"}
    assert moved["split"] == "val" and moved["tokens"].dtype == torch.long
    assert batch["tokens"].device.type == "cpu"
