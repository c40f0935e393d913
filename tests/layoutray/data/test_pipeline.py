"""The Ray Data pipeline end to end on tiny PIL-drawn shards (real local Ray, no mocks)."""

import io
import math
import shutil
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageDraw

from layoutray.data.batches import BadRowReport, DataQualityError, iter_local_batches, iter_torch_batches
from layoutray.config import load_config
from layoutray.data.dataset import SCHEMA, DatasetError, shard_paths, write_manifest, write_split
from layoutray.data.pipeline import (REASONS, augment_strength, build_dataset, difficulty_counts,
                                preprocess_batch)
from layoutray.schedules import INV_PHI, PHI, phi_bucket_weights, phi_repeat_rates
from layoutray.model.tokenizer import PAD

H, W = 192, 320


def png(*rects):
    im = Image.new("L", (W, H), 255)
    d = ImageDraw.Draw(im)
    for x, y, w, h in rects:
        if w * W >= 1 and h * H >= 1:
            d.rectangle([x * W, y * H, (x + w) * W - 1, (y + h) * H - 1], fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def row(i, n=1, rects=None, section="hero", types=None, image=True):
    rects = rects or [(0.05 + 0.22 * k, 0.1 + 0.1 * (k % 3), 0.18, 0.2) for k in range(n)]
    types = types or ["button", "heading", "image", "card"][:len(rects)] * 20
    return {"id": f"r{i}", "section_type": section, "canvas_width": W, "canvas_height": H,
            "image": png(*rects) if image else None,
            "elements": [dict(type=t, x=x, y=y, w=w, h=h) for t, (x, y, w, h) in zip(types, rects)]}


def bad_rows(start):
    ok = [(0.1, 0.2, 0.2, 0.3)]
    return [{**row(start, rects=ok), "image": b"\x89PNG\r\n\x1a\nnot really"},
            row(start + 1, rects=[(0.9, 0.2, 0.2, 0.3)]),  # x + w > 1
            row(start + 2, rects=ok, types=["hologram"]),
            row(start + 3, rects=ok, section="carousel"),
            row(start + 4, rects=[(0.05 * k, 0.1, 0.04, 0.04) for k in range(17)])]  # phase1 cap 16


@pytest.fixture(scope="module")
def cfg():
    return load_config(phase="phase1")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("pipeline")
    clean = base / "clean"
    shards = write_split(clean, "train", [row(i, n=1 + i % 4) for i in range(12)], shard_rows=2)
    shards += write_split(clean, "val", [row(100 + i, n=1 + i % 3, image=i != 2) for i in range(5)],
                          shard_rows=3)
    write_manifest(clean, shards)
    dirty = base / "dirty"  # 10 rows: 5 clean in part-00000, 1 clean + 4 bad in part-00001
    write_manifest(dirty, write_split(dirty, "train", [row(i, n=2) for i in range(6)] + bad_rows(6)[:4],
                                      shard_rows=5))
    return {"clean": clean, "dirty": dirty, "base": base}


@pytest.fixture(autouse=True, scope="module")
def quiet(ray_local):
    from ray.data import DataContext
    DataContext.get_current().enable_progress_bars = False


def test_batches_have_shapes_dtypes_and_are_trimmed(ray_local, data, cfg):
    ds = build_dataset(data["clean"], "train", cfg, train=True, seed=0)
    rep = BadRowReport()
    batches = list(iter_torch_batches(ds, 5, report=rep, max_bad_fraction=cfg.data.max_bad_fraction))
    assert [len(b["tokens"]) for b in batches] == [5, 5, 2]
    for b in batches:
        assert b["image"].dtype == torch.float32 and b["image"].shape[1:] == (1, H, W)
        assert b["has_image"].dtype == torch.bool
        assert b["spec"].dtype == b["tokens"].dtype == torch.long
        # padded only to the longest sequence in this batch, which has no padding at all
        assert b["tokens"].shape[1] == int(b["tok_len"].max()) < cfg.model.max_seq_len
        assert b["spec"].shape[1] == int(b["spec_len"].max())
        assert (b["tokens"][:, -1] != PAD).any() and (b["spec"][:, -1] != PAD).any()
        assert b["bad_counts"].tolist() == [0] * len(REASONS)
    assert rep.total_rows == 12 and rep.bad_rows == 0


def raw_pass(ds):
    ids, tokens = [], {}
    for b in ds.iter_batches(batch_format="numpy", batch_size=4):
        for rid, ok, tok in zip(b["id"], b["valid"], b["tokens"]):
            if ok:
                ids.append(str(rid))
                tokens[str(rid)] = tok.tolist()
    return ids, tokens


def test_train_order_and_augmentation_change_every_epoch(ray_local, data, cfg):
    ds = build_dataset(data["clean"], "train", cfg, train=True, seed=5)
    passes = [raw_pass(ds) for _ in range(3)]
    orders = [p[0] for p in passes]
    assert all(sorted(o) == sorted(orders[0]) for o in orders) and len(orders[0]) == 12
    assert len({tuple(o) for o in orders}) > 1  # file order reshuffled per execution
    # jitter moves every box a little, with a fresh draw each epoch
    assert passes[0][1] != passes[1][1] and passes[1][1] != passes[2][1]


def test_eval_is_deterministic_and_matches_in_process_batches(ray_local, data, cfg):
    ds = build_dataset(data["clean"], "val", cfg, train=False, seed=0)
    first = list(iter_torch_batches(ds, 2))
    second = list(iter_torch_batches(ds, 2))
    local = list(iter_local_batches(data["clean"], "val", cfg, 2))
    assert len(first) == len(local) == 3
    for a, b, c in zip(first, second, local):
        for k in ("image", "has_image", "spec", "tokens", "task"):
            assert torch.equal(a[k], b[k]) and torch.equal(a[k], c[k]), k
    assert torch.cat([b["has_image"] for b in first]).tolist() == [True, True, False, True, True]


def test_corrupted_rows_are_dropped_and_counted_per_reason_and_shard(ray_local, data, cfg):
    ds = build_dataset(data["dirty"], "train", cfg, train=True, seed=0)
    rep = BadRowReport()
    batches = list(iter_torch_batches(ds, 4, report=rep, max_bad_fraction=0.5))
    assert sum(len(b["tokens"]) for b in batches) == 6
    assert [len(b["tokens"]) for b in batches] == [4, 2]  # re-batched after dropping
    assert rep.by_reason() == {"undecodable_png": 1, "bad_box": 1, "unknown_section_type": 1,
                               "unknown_element_type": 1, "too_many_elements": 0,
                               "no_elements": 0, "malformed_row": 0}
    assert batches[-1]["bad_counts"].tolist() == list(rep.by_reason().values())
    d = rep.to_dict()
    assert d["rows"] == 10 and d["bad_rows"] == 4
    (bad_shard,) = [s for s, v in d["by_shard"].items() if v["bad"]]
    assert bad_shard.endswith("part-00001.parquet") and d["by_shard"][bad_shard]["rows"] == 5
    assert BadRowReport.from_dict(d).to_dict() == d


def test_too_many_bad_rows_stop_the_run_naming_the_shard(ray_local, data, cfg):
    ds = build_dataset(data["dirty"], "train", cfg, train=True, seed=0)
    with pytest.raises(DataQualityError, match=r"part-00001\.parquet") as err:
        for _ in iter_torch_batches(ds, 4, max_bad_fraction=0.2):
            pass
    assert err.value.shard.endswith("part-00001.parquet")
    assert "4 of 10 rows" in str(err.value)


def test_too_many_bad_rows_in_process(data, cfg):
    with pytest.raises(DataQualityError, match=r"part-00001\.parquet"):
        for _ in iter_local_batches(data["dirty"], "train", cfg, 4):  # phase1 allows 5%
            pass


def test_truncated_shard_is_named(data, cfg):
    broken = data["base"] / "truncated"
    shutil.copytree(data["clean"], broken)
    victim = broken / "train" / "part-00002.parquet"
    victim.write_bytes(victim.read_bytes()[:200])
    with pytest.raises(DatasetError, match=r"part-00002\.parquet: unreadable Parquet shard"):
        build_dataset(broken, "train", cfg, train=True)  # footers are checked before Ray
    with pytest.raises(DatasetError, match=r"part-00002\.parquet"):
        next(iter_local_batches(broken, "train", cfg, 4))
    with pytest.raises(DatasetError, match="no part-"):
        build_dataset(broken, "test", cfg, train=False)


def test_damaged_page_behind_a_good_footer_is_named(ray_local, data, cfg):
    broken = data["base"] / "damaged"
    shutil.copytree(data["clean"], broken)
    victim = broken / "val" / "part-00001.parquet"
    meta = pq.ParquetFile(victim).metadata.row_group(0)
    chunk = next(meta.column(i) for i in range(meta.num_columns) if meta.column(i).path_in_schema == "image")
    raw = bytearray(victim.read_bytes())
    start, size = chunk.data_page_offset, chunk.total_compressed_size
    raw[start:start + size] = bytes(size)  # zero the image pages; the footer stays intact
    victim.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"part-00001\.parquet") as err:
        # Ray's Parquet reader samples rows when the dataset is built, so this may fail
        # before the first batch; either way the error names the file.
        ds = build_dataset(broken, "val", cfg, train=False)
        for _ in iter_torch_batches(ds, 2):
            pass
    assert "Traceback" not in str(err.value) and len(str(err.value).splitlines()) == 1


# ---------------------------------------------------------------------------- phi sampler, training phases


def grid(n):
    """n small valid boxes, 8 per line (row() alone goes off the canvas beyond 4)."""
    return [(0.02 + 0.1 * (k % 8), 0.05 + 0.3 * (k // 8), 0.06, 0.1) for k in range(n)]


SAMPLER_ROWS = 3000
SAMPLER_ELEMENTS = (2, 5, 9)  # one per difficulty bucket (1-3, 4-7, 8+)
SAMPLER_SHARES = (0.6, 0.3, 0.1)


@pytest.fixture(scope="module")
def sampler_data(tmp_path_factory):
    """3,000 spec-only rows (no PNG work), 60/30/10% in the three difficulty buckets,
    interleaved so every shard has all three."""
    root = tmp_path_factory.mktemp("sampler")
    pattern = [0] * 6 + [1] * 3 + [2]
    bucket = {f"r{i}": pattern[i % 10] for i in range(SAMPLER_ROWS)}
    rows = [row(i, rects=grid(SAMPLER_ELEMENTS[bucket[f"r{i}"]]), image=False) for i in range(SAMPLER_ROWS)]
    write_manifest(root, write_split(root, "train", rows, shard_rows=500))
    return root, bucket


def emitted_ids(ds, report=None):
    ids = []
    for b in ds.iter_batches(batch_format="numpy", batch_size=512):
        if report is not None:
            report.add(b)
        ids += [str(i) for i, ok in zip(b["id"], b["valid"]) if ok]
    return ids


def test_phi_repeat_rates_hand_computed():
    # 1 + 1/phi + 1/phi^2 = 2, so phi_bucket_weights(3) = (1/2, 1/(2 phi), 1/(2 phi^2)).
    # shares (1/4, 1/4, 1/2): rates w/s = (2, 2/phi, 1/phi^2)
    assert phi_repeat_rates([0.25, 0.25, 0.5]) == pytest.approx([2.0, 2 / PHI, 1 / PHI ** 2], rel=1e-12)
    assert phi_repeat_rates([1, 1, 2]) == pytest.approx([2.0, 2 / PHI, 1 / PHI ** 2], rel=1e-12)  # counts
    # empty hardest bucket: weights renormalised over the rest, 1/2 : 1/(2 phi) -> 1/phi : 1/phi^2
    assert phi_repeat_rates([0.5, 0.5, 0.0]) == pytest.approx([2 / PHI, 2 / PHI ** 2, 0.0], rel=1e-12)
    # empty middle bucket: 1/2 and 1/(2 phi^2) renormalised by their sum 1/2 + 1/(2 phi^2)
    kept = 0.5 + 0.5 / PHI ** 2
    assert phi_repeat_rates([0.5, 0.0, 0.5]) == pytest.approx([1 / kept, 0.0, 1 / PHI ** 2 / kept], rel=1e-12)
    assert phi_repeat_rates([0.0, 0.0, 3.0]) == [0.0, 0.0, 1.0]
    assert phi_repeat_rates([0.25, 0.25, 0.5], hardest_first=True) == pytest.approx(
        [2 / PHI ** 2, 2 / PHI, 1.0], rel=1e-12)
    # an epoch keeps its expected size: sum_b s_b * rate_b = 1
    for shares in ([0.6, 0.3, 0.1], [0.05, 0.9, 0.05], [0.7, 0.0, 0.3]):
        assert sum(s * r for s, r in zip(shares, phi_repeat_rates(shares))) == pytest.approx(1.0)
    for bad in ([], [0, 0, 0], [0.5, -0.1, 0.6], [float("nan"), 1.0]):
        with pytest.raises(ValueError):
            phi_repeat_rates(bad)


def small_cfg(*overrides):
    """phase1 with 32 x 32 model images: every output row carries an image array (zeros for
    spec-only rows), and at 192 x 320 3,000 rows would move 370 MB through the object store."""
    return load_config(phase="phase1", overrides=["model.image_height=32", "model.image_width=32",
                                                  "model.patch_size=32", *overrides])


def test_phi_sampler_realises_golden_ratio_bucket_shares(ray_local, sampler_data):
    root, bucket = sampler_data
    assert difficulty_counts(shard_paths(root, "train")) == [1800, 900, 300]  # one leaf, no images
    w = np.array(phi_bucket_weights(3))

    phi_cfg = small_cfg("schedule.sampler=phi")
    report = BadRowReport()
    ids = emitted_ids(build_dataset(root, "train", phi_cfg, train=True, seed=1), report)
    m = len(ids)
    got = np.bincount([bucket[i] for i in ids], minlength=3) / m
    # Poisson counts given their total are multinomial: each share is binomial(m, w_b)/m.
    tol = 4 * np.sqrt(w * (1 - w) / m)
    assert (np.abs(got - w) <= tol).all(), (got, w, tol)
    # and the data's own shares would fail that test for the easiest and hardest buckets
    assert abs(SAMPLER_SHARES[0] - w[0]) > tol[0] and abs(SAMPLER_SHARES[2] - w[2]) > tol[2]
    assert abs(m - SAMPLER_ROWS) <= 4 * math.sqrt(SAMPLER_ROWS)  # epoch size ~ Poisson(rows)
    assert max(Counter(ids).values()) > 1 and len(set(ids)) < SAMPLER_ROWS  # repeats and omissions
    # the accounting still counts each source row once
    assert report.total_rows == SAMPLER_ROWS and report.bad_rows == 0

    ids = emitted_ids(build_dataset(root, "train", small_cfg(), train=True, seed=1))  # uniform
    assert sorted(ids) == sorted(bucket)  # every row exactly once
    assert (np.bincount([bucket[i] for i in ids], minlength=3) == [1800, 900, 300]).all()


@pytest.fixture(scope="module")
def phi_dirty(tmp_path_factory):
    """24 rows: 16 good easy (2 elements), 4 good hard (9), 4 bad (1 each, bucket 0)."""
    root = tmp_path_factory.mktemp("phi_dirty")
    rows = [row(i, n=2) for i in range(16)] + [row(16 + i, rects=grid(9)) for i in range(4)]
    rows += bad_rows(20)[:4]
    write_manifest(root, write_split(root, "train", rows[::2] + rows[1::2], shard_rows=12))
    return root


def test_phi_sampler_counts_a_corrupted_row_once(ray_local, phi_dirty):
    phi_cfg = small_cfg("schedule.sampler=phi")
    ds = build_dataset(phi_dirty, "train", phi_cfg, train=True, seed=0)
    once = {"undecodable_png": 1, "bad_box": 1, "unknown_section_type": 1, "unknown_element_type": 1,
            "too_many_elements": 0, "no_elements": 0, "malformed_row": 0}
    report = BadRowReport()
    ids = emitted_ids(ds, report)
    assert report.by_reason() == once
    assert report.total_rows == 24 and report.bad_rows == 4
    assert {s: v["rows"] for s, v in report.to_dict()["by_shard"].items()} == {
        str(p): 12 for p in shard_paths(phi_dirty, "train")}
    counts = Counter(ids)
    assert max(counts.values()) > 1 and len(ids) != 20  # rows really were repeated / left out
    assert all(i in {f"r{k}" for k in range(20)} for i in ids)  # never a bad row

    # through iter_torch_batches, with the early expected_rows check, in the next epoch
    rep = BadRowReport()
    for _ in iter_torch_batches(ds, 4, report=rep, max_bad_fraction=0.2, expected_rows=24):
        pass
    assert rep.by_reason() == once and rep.total_rows == 24
    with pytest.raises(DataQualityError, match="4 of 24 rows"):
        for _ in iter_torch_batches(ds, 4, max_bad_fraction=0.1, expected_rows=24):
            pass

    # the in-process path samples the same rows for the same epoch
    lenient = small_cfg("schedule.sampler=phi", "data.max_bad_fraction=0.5")
    local = BadRowReport()
    n_local = sum(len(b["tokens"]) for b in iter_local_batches(phi_dirty, "train", lenient, 4, train=True,
                                                                 seed=0, epoch=0, report=local))
    assert n_local == len(ids) and local.total_rows == 24 and local.bad_rows == 4


def test_phi_sampler_repeats_get_their_own_augmentation(phi_dirty):
    phi_cfg = load_config(phase="phase1", overrides=["schedule.sampler=phi"])
    t = pa.concat_tables([pq.read_table(p) for p in shard_paths(phi_dirty, "train")])
    out = preprocess_batch(t, phi_cfg, train=True, seed=0, epoch=0,
                           repeat_rates=phi_repeat_rates(difficulty_counts(shard_paths(phi_dirty, "train"))))
    by_id = {}
    for rid, ok, tok, n in zip(out["id"], out["valid"], out["tokens"], out["tok_len"]):
        if ok:
            by_id.setdefault(rid, []).append(tuple(tok[:n]))
    repeated = [v for v in by_id.values() if len(v) > 1]
    assert repeated and all(len(set(v)) > 1 for v in repeated)
    # the first copy is exactly what the uniform path makes of that row
    uniform = preprocess_batch(t, phi_cfg, train=True, seed=0, epoch=0)
    first = {rid: tuple(tok[:n]) for rid, ok, tok, n in
             zip(uniform["id"], uniform["valid"], uniform["tokens"], uniform["tok_len"]) if ok}
    assert all(v[0] == first[rid] for rid, v in by_id.items())


def test_phi_phases_scale_augmentation_by_epoch(cfg):
    # 10 epochs: phi_split(10) = (3, 7), so epochs 0-2 explore and 3-9 exploit
    phased = load_config(phase="phase1", overrides=["schedule.phi_phases=true", "training.epochs=10"])
    weaker = load_config(phase="phase1", overrides=[f"data.strength={INV_PHI!r}", "training.epochs=10"])
    assert [augment_strength(phased, e) for e in (0, 2, 3, 9)] == pytest.approx([1.0, 1.0, INV_PHI, INV_PHI], rel=1e-12)
    assert augment_strength(cfg, 9) == cfg.data.strength  # phases off: unchanged
    t = pa.Table.from_pylist([row(i, n=3) for i in range(6)], schema=SCHEMA)

    def same(a, b):
        return all(np.array_equal(a[k], b[k]) for k in ("image", "tokens", "spec", "task"))

    explore = preprocess_batch(t, phased, train=True, seed=4, epoch=2)
    assert same(explore, preprocess_batch(t, cfg, train=True, seed=4, epoch=2))
    exploit = preprocess_batch(t, phased, train=True, seed=4, epoch=3)
    assert same(exploit, preprocess_batch(t, weaker, train=True, seed=4, epoch=3))
    assert not same(exploit, preprocess_batch(t, cfg, train=True, seed=4, epoch=3))
    # evaluation never augments, phases or not
    assert same(preprocess_batch(t, phased, train=False, epoch=3), preprocess_batch(t, cfg, train=False))


def test_clean_epochs_train_the_last_epochs_without_augmentation():
    # 10 epochs, the last 3 clean: 0-based epochs 7, 8, 9 see exactly the evaluation inputs
    clean = load_config(phase="phase1", overrides=["data.clean_epochs=3", "training.epochs=10"])
    assert [augment_strength(clean, e) for e in (0, 6, 7, 9)] == [1.0, 1.0, 0.0, 0.0]
    both = load_config(phase="phase1", overrides=["data.clean_epochs=3", "training.epochs=10",
                                                  "training.task_mix={image_only: 0.0, spec_only: 0.0, both: 1.0}"])
    t = pa.Table.from_pylist([row(i, n=3) for i in range(6)], schema=SCHEMA)
    plain = preprocess_batch(t, both, train=False)
    for epoch, augmented in ((6, True), (7, False), (9, False)):
        out = preprocess_batch(t, both, train=True, seed=4, epoch=epoch)
        assert np.array_equal(out["image"], plain["image"]) != augmented, epoch
        assert np.array_equal(out["tokens"], plain["tokens"]) != augmented, epoch
    # with phi phases on as well, the clean epochs still win
    phased = load_config(phase="phase1", overrides=["data.clean_epochs=3", "training.epochs=10",
                                                    "schedule.phi_phases=true"])
    assert [augment_strength(phased, e) for e in (6, 7)] == pytest.approx([INV_PHI, 0.0])
    # more clean epochs than epochs: none is augmented
    short = load_config(phase="phase1", overrides=["data.clean_epochs=3", "training.epochs=1"])
    assert augment_strength(short, 0) == 0.0


def test_only_throttling_is_retried_in_place_and_the_patterns_are_regexes():
    import re
    from layoutray.data.pipeline import RETRIED_STORAGE_ERRORS
    throttled = ["When reading information for key 'a/b.parquet': AWS Error SLOW_DOWN during HeadObject",
                 "AWS Error UNKNOWN (HTTP status 503) during GetObject operation: Service Unavailable"]
    down = ["AWS Error NETWORK_CONNECTION during HeadObject operation: curlCode: 7, Couldn't connect",
            "AWS Error UNKNOWN (HTTP status 500) during GetObject operation"]
    for msg in throttled:
        assert any(re.search(p, msg) for p in RETRIED_STORAGE_ERRORS), msg
    for msg in down:
        assert not any(re.search(p, msg) or p in msg for p in RETRIED_STORAGE_ERRORS), msg
