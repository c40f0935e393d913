"""layoutray.storage: one set of calls for local paths and object-storage URIs. Local behaviour
on tmp_path; URIs against a real S3-compatible server (moto's, on 127.0.0.1) configured only
through the standard AWS variables."""

import os
import sys
from pathlib import Path

import pytest

from layoutray import storage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ops"))
from s3server import BUCKET, s3_environment  # noqa: E402


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with s3_environment(tmp_path_factory.mktemp("s3")) as server:
        yield server


def test_uri_or_path():
    assert storage.is_uri("s3://b/x") and storage.is_uri("gs://b/x") and storage.is_uri("file:///tmp/x")
    assert not storage.is_uri("runs/x") and not storage.is_uri("/abs/x") and not storage.is_uri(None)
    assert not storage.is_uri("synth:3")  # the synthetic stream is not a URI
    assert storage.join("s3://b/runs/", "x", "model") == "s3://b/runs/x/model"
    assert storage.join("runs", "x") == str(Path("runs", "x"))
    assert storage.absolute("s3://b/x") == "s3://b/x" and storage.absolute("runs") == str(Path("runs").resolve())
    assert storage.basename("s3://b/runs/x/") == "x"


def test_local_round_trip(tmp_path):
    storage.write_json(tmp_path / "a" / "b.json", {"k": 1})  # parents are created
    assert storage.read_json(tmp_path / "a" / "b.json") == {"k": 1}
    assert storage.is_dir(tmp_path / "a") and storage.is_file(tmp_path / "a" / "b.json")
    assert storage.list_dir(tmp_path / "a") == ["b.json"] and storage.list_dir(tmp_path / "none") == []
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(tmp_path / "missing")
    storage.copy_dir(tmp_path / "a", tmp_path / "c")
    assert (tmp_path / "c" / "b.json").read_text() == (tmp_path / "a" / "b.json").read_text()
    assert storage.local_copy(tmp_path / "a") == tmp_path / "a"  # a local directory is used in place


def test_unknown_scheme_names_the_uri_and_the_choices():
    with pytest.raises(storage.StorageError) as e:
        storage.read_bytes("nosuch://bucket/x")
    assert "nosuch://bucket/x" in str(e.value) and "s3" in str(e.value)


def test_s3_round_trip_and_listing(s3):
    root = f"s3://{BUCKET}/unit"
    storage.write_text(f"{root}/d/one.txt", "1")
    storage.write_bytes(f"{root}/d/sub/two.bin", b"\x00\x01")
    assert storage.read_text(f"{root}/d/one.txt") == "1"
    assert storage.list_dir(f"{root}/d") == ["one.txt", "sub"]
    assert storage.is_dir(f"{root}/d") and storage.is_file(f"{root}/d/one.txt") and not storage.exists(f"{root}/e")
    with pytest.raises(FileNotFoundError) as e:
        storage.read_bytes(f"{root}/d/absent")
    assert f"{root}/d/absent" in str(e.value)


def test_copy_up_down_and_cached_local_copy(s3, tmp_path):
    src = tmp_path / "model"
    (src / "inner").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"v1")
    (src / "inner" / "x.txt").write_text("x")
    uri = f"s3://{BUCKET}/unit/model"
    storage.copy_dir(src, uri)
    local = storage.local_copy(uri)
    assert (local / "w.bin").read_bytes() == b"v1" and (local / "inner" / "x.txt").read_text() == "x"
    assert str(local).startswith(os.environ[storage.CACHE_ENV])
    assert storage.local_copy(uri) == local  # unchanged remote: the cached copy
    storage.write_bytes(f"{uri}/w.bin", b"version 2")  # a new export under the same URI is fetched again
    assert (storage.local_copy(uri) / "w.bin").read_bytes() == b"version 2"
    storage.remove_dir(uri)
    assert not storage.exists(uri)
    with pytest.raises(FileNotFoundError):
        storage.local_copy(uri)


def test_parquet_through_a_uri(s3):
    import pyarrow as pa

    from layoutray.data import dataset

    rows = [{"id": "a", "section_type": "hero", "canvas_width": 10, "canvas_height": 10, "image": None,
             "elements": [{"type": "heading", "x": 0.1, "y": 0.1, "w": 0.5, "h": 0.2}]}] * 3
    root = f"s3://{BUCKET}/unit/ds"
    shards = dataset.write_split(root, "train", rows, shard_rows=2)
    assert [s["rows"] for s in shards] == [2, 1]
    dataset.write_manifest(root, shards)
    assert dataset.shard_paths(root, "train") == [f"{root}/train/part-00000.parquet", f"{root}/train/part-00001.parquet"]
    assert dataset.count_examples(root, ("train",)) == {"train": 3}
    assert storage.parquet_file(f"{root}/train/part-00000.parquet").schema_arrow.equals(dataset.SCHEMA)
    assert isinstance(dataset.read_rows(root, "train", 5)[0]["elements"], list)
    with pytest.raises(dataset.DatasetError, match=f"s3://{BUCKET}/unit/nothing: no such dataset directory"):
        dataset.count_examples(f"s3://{BUCKET}/unit/nothing")
    assert pa  # the schema is pyarrow's


def test_unreachable_server_is_a_storage_error_naming_the_uri(s3):
    uri = f"s3://{BUCKET}/unit/outage.txt"
    storage.write_text(uri, "before")
    s3.stop()
    try:
        with pytest.raises(storage.StorageError) as e:
            storage.read_text(uri)
        assert uri in str(e.value) and "AWS_ENDPOINT_URL" in str(e.value)
    finally:
        s3.start()
    assert storage.read_text(uri) == "before"  # the restarted server serves the bucket again
