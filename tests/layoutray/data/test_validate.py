"""The dataset validator and the JSONL export, on real shards with real corruption."""

import base64
import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from layoutray.data import dataset
from cli.main import main
from layoutray.data.synth import example_rng, generate_example, synthesize
from layoutray.data.validate import export_jsonl, validate_dataset


def _good(i, seed=11):
    return generate_example(example_rng(seed, i), i, seed=seed)


def _bad_rows():
    """One row per corruption kind, keyed by the reason the validator must give."""
    out = {}
    r = _good(100)
    r["elements"][0]["x"] = 1.2
    out["box_out_of_range"] = r
    r = _good(101)
    r["elements"][0]["w"] = 0.0
    out["box_empty"] = r
    r = _good(102)
    r["elements"][1]["y"] = float("nan")
    out["box_not_finite"] = r
    r = _good(103)
    r["elements"][0]["type"] = "carousel"
    out["element_type_unknown"] = r
    r = _good(104)
    r["section_type"] = "blog"
    out["section_type_unknown"] = r
    r = _good(105)
    r["image"] = r["image"][:40]  # signature intact, data cut off
    out["image_undecodable"] = r
    r = _good(106)
    r["elements"] = r["elements"] * 10  # far over the cap of 16 used below
    out["too_many_elements"] = r
    r = _good(107)
    r["id"] = ""
    out["id_missing"] = r
    r = _good(108)
    r["elements"] = []
    out["elements_missing"] = r
    r = _good(109)
    r["canvas_width"] = 0
    out["canvas_invalid"] = r
    r = _good(1)  # same id as a good row in train
    out["id_duplicate"] = r
    return out


@pytest.fixture(scope="module")
def corrupt_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("corrupt")
    shards = dataset.write_split(root, "train", [_good(i) for i in range(20)], shard_rows=10)
    shards += dataset.write_split(root, "val", list(_bad_rows().values()), shard_rows=100)
    shards += dataset.write_split(root, "test", [_good(i) for i in range(200, 210)], shard_rows=5)
    dataset.write_manifest(root, shards)
    # Checksum mismatch: the manifest says one thing, the file another (the data itself is fine).
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = "0" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    # A truncated shard: the footer is gone.
    path = root / "test" / "part-00001.parquet"
    path.write_bytes(path.read_bytes()[:300])
    return root


def test_each_corruption_is_counted_under_its_reason(corrupt_dir):
    rep = validate_dataset(corrupt_dir, max_elements=16)
    assert not rep["ok"]
    for reason in _bad_rows():
        assert rep["by_reason"].get(reason) == 1, (reason, rep["by_reason"])
    assert rep["bad_rows"] == len(_bad_rows())
    assert rep["by_shard"]["val/part-00000.parquet"]["bad"] == len(_bad_rows())
    assert rep["by_shard"]["train/part-00000.parquet"]["bad"] == 0
    ex = rep["examples"]["box_out_of_range"][0]
    assert ex["shard"] == "val/part-00000.parquet" and ex["row"] == 0 and "x=1.2" in ex["detail"]


def test_shard_level_problems_are_named(corrupt_dir):
    rep = validate_dataset(corrupt_dir, max_elements=16)
    errs = {(e["shard"], e["reason"]) for e in rep["shard_errors"]}
    assert ("train/part-00001.parquet", "checksum_mismatch") in errs
    assert ("test/part-00001.parquet", "unreadable") in errs
    # The readable shards were still checked in full.
    assert rep["by_shard"]["test/part-00000.parquet"]["rows"] == 5


def test_cli_report_and_exit_code(corrupt_dir, capsys):
    assert main(["data", "validate", str(corrupt_dir), "--max-elements", "16"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "too_many_elements" in out and "test/part-00001.parquet: unreadable" in out
    assert "Traceback" not in out


def test_cli_json_parses(corrupt_dir, capsys):
    assert main(["data", "validate", str(corrupt_dir), "--json", "--max-elements", "16"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["by_reason"]["image_undecodable"] == 1
    assert rep["max_elements"] == 16


def test_default_cap_is_48(tmp_path, capsys):
    rows = [_good(i) for i in range(4)]
    rows[0]["elements"] = (rows[0]["elements"] * 50)[:40]  # over Phase 1's 16, under 48
    dataset.write_manifest(tmp_path, dataset.write_split(tmp_path, "train", rows))
    assert main(["data", "validate", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_elements"] == 48


def test_bad_row_limit_count_and_fraction(tmp_path):
    rows = [_good(i) for i in range(10)]
    rows[3]["elements"][0]["type"] = "widget"
    dataset.write_manifest(tmp_path, dataset.write_split(tmp_path, "train", rows))
    assert not validate_dataset(tmp_path)["ok"]  # default limit: 0 bad rows
    assert validate_dataset(tmp_path, max_bad=1)["ok"]  # a count
    assert validate_dataset(tmp_path, max_bad=0.1)["ok"]  # a fraction: 1 of 10
    assert not validate_dataset(tmp_path, max_bad=0.05)["ok"]
    assert main(["data", "validate", str(tmp_path), "--max-bad", "0.2"]) == 0


def test_missing_manifest_and_schema_mismatch(tmp_path):
    (tmp_path / "train").mkdir()
    table = pa.table({"id": ["a"], "section_type": ["hero"], "canvas_width": [1440]})
    pq.write_table(table, tmp_path / "train" / "part-00000.parquet")
    rep = validate_dataset(tmp_path)
    assert not rep["ok"]
    assert any("no manifest" in e for e in rep["errors"])
    (err,) = rep["shard_errors"]
    assert err["reason"] == "schema_mismatch" and "missing column 'elements'" in err["detail"]


def test_mistyped_column_is_reported(tmp_path):
    rows = [_good(i) for i in range(3)]
    schema = dataset.SCHEMA.set(2, pa.field("canvas_width", pa.string()))
    for r in rows:
        r["canvas_width"] = str(r["canvas_width"])
    (tmp_path / "train").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp_path / "train" / "part-00000.parquet")
    rep = validate_dataset(tmp_path)
    assert "column 'canvas_width' is string, expected int32" in rep["shard_errors"][0]["detail"]


def test_null_images_are_allowed(tmp_path):
    rows = [_good(i) for i in range(3)]
    rows[1]["image"] = None
    dataset.write_manifest(tmp_path, dataset.write_split(tmp_path, "train", rows))
    assert validate_dataset(tmp_path)["ok"]


def test_export_jsonl_round_trip(tmp_path, capsys):
    root = tmp_path / "d"
    synthesize(root, 20, seed=4, shard_rows=7)
    out = tmp_path / "out.jsonl"
    assert main(["data", "export-jsonl", str(root), "--out", str(out)]) == 0
    objs = [json.loads(line) for line in out.read_text().splitlines()]
    rows = {}
    for split in dataset.SPLITS:
        for path in dataset.shard_paths(root, split):
            for r in pq.read_table(path).to_pylist():
                rows[r["id"]] = (split, r)
    assert len(objs) == 20 and {o["id"] for o in objs} == set(rows)
    for o in objs:
        split, r = rows[o["id"]]
        assert o["split"] == split and o["section_type"] == r["section_type"]
        assert o["canvas"] == {"width": r["canvas_width"], "height": r["canvas_height"]}
        assert base64.b64decode(o["image"]) == r["image"]
        assert [e["type"] for e in o["elements"]] == [e["type"] for e in r["elements"]]
        for e, f in zip(o["elements"], r["elements"]):
            for k in "xywh":  # the decimal reads back to the very same float32
                assert np.float32(e[k]) == np.float32(f[k]) and math.isfinite(e[k])

    assert export_jsonl(root, tmp_path / "small.jsonl", include_images=False)["train"] == 16
    main(["data", "export-jsonl", str(root), "--out", str(tmp_path / "n.jsonl"), "--no-images"])
    first = json.loads((tmp_path / "n.jsonl").read_text().splitlines()[0])
    assert "image" not in first


def test_export_names_an_unreadable_shard(tmp_path, capsys):
    synthesize(tmp_path, 10, seed=1)
    path = tmp_path / "train" / "part-00000.parquet"
    path.write_bytes(b"PAR1 not really")
    assert main(["data", "export-jsonl", str(tmp_path), "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "train/part-00000.parquet" in capsys.readouterr().err
