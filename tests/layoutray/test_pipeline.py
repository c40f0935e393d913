"""The Ray Data pipeline end to end on tiny PIL-drawn shards (real local Ray, no mocks)."""

import io
import shutil

import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image, ImageDraw

from layoutray.config import load_config
from layoutray.dataset import DatasetError, write_manifest, write_split
from layoutray.pipeline import (REASONS, BadRowReport, DataQualityError, build_dataset,
                                iter_local_batches, iter_torch_batches)
from layoutray.tokenizer import PAD

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
    ds = build_dataset(broken, "val", cfg, train=False)
    with pytest.raises(DatasetError, match=r"part-00001\.parquet") as err:
        for _ in iter_torch_batches(ds, 2):
            pass
    assert "Traceback" not in str(err.value) and len(str(err.value).splitlines()) == 1
