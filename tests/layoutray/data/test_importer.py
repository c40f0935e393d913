"""`layoutray data import`: JSONL and COCO in, validated rows and a stratified split out."""

import base64
import io
import json
from collections import Counter

import pytest
from PIL import Image

from layoutray.config import ConfigError
from layoutray.data import dataset, importer
from layoutray.data.synth import synthesize
from layoutray.data.validate import export_jsonl, validate_dataset


def png_bytes(w=64, h=32, color=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), color).save(buf, format="PNG")
    return buf.getvalue()


def record(i, section="pricing", **extra):
    rec = {"id": f"r{i}", "section_type": section, "canvas": {"width": 1440, "height": 600},
           "elements": [{"type": "heading", "x": 0.1, "y": 0.1, "w": 0.5, "h": 0.1},
                        {"type": "button", "x": 0.1, "y": 0.3, "w": 0.1, "h": 0.05}]}
    rec.update(extra)
    return rec


def write_jsonl(path, items):
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in items))
    return path


def all_rows(root):
    return {s: dataset.read_rows(root, s, 10_000) if dataset.shard_paths(root, s) else [] for s in dataset.SPLITS}


def test_export_jsonl_reads_back_as_the_same_dataset(tmp_path):
    synthesize(tmp_path / "a", 40, seed=5, shard_rows=16)
    export_jsonl(tmp_path / "a", tmp_path / "a.jsonl")
    rep = importer.import_layouts([str(tmp_path / "a.jsonl")], tmp_path / "b", split="keep", max_elements=16)
    assert rep["rows"] == 40 and rep["refused"] == {}
    assert validate_dataset(tmp_path / "b", max_elements=16)["ok"]
    a, b = all_rows(tmp_path / "a"), all_rows(tmp_path / "b")
    for split in dataset.SPLITS:
        assert [r["id"] for r in a[split]] == [r["id"] for r in b[split]]
        assert [r["image"] for r in a[split]] == [r["image"] for r in b[split]]
        assert [r["elements"] for r in a[split]] == [r["elements"] for r in b[split]]


@pytest.mark.parametrize("line, reason", [
    ("{not json", "json_invalid"),
    ("[1, 2]", "not_an_object"),
    (json.dumps({"id": "x", "canvas": {"width": 10, "height": 10}, "elements": []}), "field_missing"),
    (json.dumps(record(1, elements=[{"type": "carousel", "x": 0, "y": 0, "w": 0.1, "h": 0.1}])),
     "element_type_unknown"),
    (json.dumps(record(1, elements=[{"type": "button", "x": 0.95, "y": 0, "w": 0.2, "h": 0.1}])),
     "box_out_of_range"),
    (json.dumps(record(1, elements=[{"type": "button", "x": 0.1, "y": 0, "w": 0, "h": 0.1}])), "box_empty"),
    (json.dumps(record(1, elements=[{"type": "button", "x": "left", "y": 0, "w": 0.1, "h": 0.1}])), "field_invalid"),
    (json.dumps(record(1, section="blog")), "section_type_unknown"),
    (json.dumps(record(1, canvas={"width": 0, "height": 10})), "field_invalid"),
    (json.dumps(record(1, image=base64.b64encode(b"\x89PNG\r\n\x1a\nbroken").decode())), "image_undecodable"),
    (json.dumps(record(1, image="@@not base64@@")), "image_undecodable"),
    (json.dumps(record(1, image_path="missing.png")), "image_missing"),
    (json.dumps(record(1, elements=[record(0)["elements"][0]] * 20)), "too_many_elements"),
])
def test_each_bad_record_is_refused_under_its_reason(tmp_path, line, reason):
    src = write_jsonl(tmp_path / "in.jsonl", [record(0), line])
    rep = importer.import_layouts([str(src)], tmp_path / "out", max_elements=16)
    assert rep["rows"] == 1 and rep["refused"] == {reason: 1}
    assert rep["refusals"][0]["where"] == "in.jsonl:2"
    assert validate_dataset(tmp_path / "out")["ok"]


def test_duplicate_ids_and_blank_lines(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [record(0), "", record(0), record(1)])
    rep = importer.import_layouts([str(src)], tmp_path / "out")
    assert rep["rows"] == 2 and rep["refused"] == {"id_duplicate": 1}


def test_images_by_path_and_base64_jpeg_converted_to_png(tmp_path):
    (tmp_path / "shots").mkdir()
    (tmp_path / "shots" / "a.png").write_bytes(png_bytes())
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (0, 90, 200)).save(buf, format="JPEG")
    src = write_jsonl(tmp_path / "in.jsonl", [record(0, image_path="shots/a.png"),
                                              record(1, image=base64.b64encode(buf.getvalue()).decode())])
    importer.import_layouts([str(src)], tmp_path / "out", split="100/0/0")
    rows = {r["id"]: r for r in dataset.read_rows(tmp_path / "out", "train", 10)}
    assert rows["r0"]["image"] == png_bytes()
    assert rows["r1"]["image"].startswith(b"\x89PNG") and Image.open(io.BytesIO(rows["r1"]["image"])).size == (40, 20)


def test_pixel_units_and_type_map(tmp_path):
    rec = {"section_type": "hero", "canvas_width": 1000, "canvas_height": 500, "units": "px",
           "elements": [{"type": "title", "x": 100, "y": 50, "w": 500, "h": 100}]}
    src = write_jsonl(tmp_path / "in.jsonl", [rec])
    importer.import_layouts([str(src)], tmp_path / "out", split="100/0/0", type_map={"title": "heading"})
    (row,) = dataset.read_rows(tmp_path / "out", "train", 1)
    assert row["id"] == "in-1"
    el = row["elements"][0]
    assert el["type"] == "heading" and el["x"] == pytest.approx(0.1) and el["w"] == pytest.approx(0.5)
    assert el["y"] == pytest.approx(0.1) and el["h"] == pytest.approx(0.2)


def test_split_is_stratified_seeded_and_order_free():
    rows = [{"id": f"{t}-{i}", "section_type": t} for t in ("hero", "faq", "team") for i in range(20)]
    rows += [{"id": "gallery-0", "section_type": "gallery"}]
    a = importer.stratified_split(rows, (0.8, 0.1, 0.1), seed=3)
    b = importer.stratified_split(list(reversed(rows)), (0.8, 0.1, 0.1), seed=3)
    c = importer.stratified_split(rows, (0.8, 0.1, 0.1), seed=4)
    assert a == b and a != c
    for t in ("hero", "faq", "team"):
        assert Counter(r["section_type"] for r in a["val"])[t] == 2
        assert Counter(r["section_type"] for r in a["test"])[t] == 2
    assert [r["id"] for r in a["train"] if r["section_type"] == "gallery"] == ["gallery-0"]  # a lone row trains


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 23])
def test_apportion_hands_out_every_row(n):
    counts = importer.apportion(n, (0.8, 0.1, 0.1))
    assert sum(counts) == n and counts[0] >= counts[1] >= 0 and counts[0] >= counts[2] >= 0


@pytest.mark.parametrize("text", ["80/20", "a/b/c", "-1/50/51", "0/0/0", "80,10,10"])
def test_bad_split_is_a_config_error(text):
    with pytest.raises(ConfigError, match="--split"):
        importer.parse_split(text)


def test_keep_needs_a_split_on_every_record(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [record(0, split="val"), record(1), record(2, split="holdout")])
    rep = importer.import_layouts([str(src)], tmp_path / "out", split="keep")
    assert rep["rows"] == 1 and rep["refused"] == {"split_invalid": 2}
    assert rep["manifest"]["counts"] == {"train": 0, "val": 1, "test": 0}


def test_nothing_importable_writes_nothing(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", ["{bad", json.dumps(record(1, section="blog"))])
    with pytest.raises(dataset.DatasetError, match="all refused"):
        importer.import_layouts([str(src)], tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_an_existing_dataset_needs_force(tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [record(0), record(1, section="hero")])
    importer.import_layouts([str(src)], tmp_path / "out")
    with pytest.raises(dataset.DatasetError, match="--force"):
        importer.import_layouts([str(src)], tmp_path / "out")
    rep = importer.import_layouts([str(src)], tmp_path / "out", split="0/0/100", force=True)
    assert rep["manifest"]["counts"]["test"] == 2 and not dataset.shard_paths(tmp_path / "out", "train")
    assert validate_dataset(tmp_path / "out")["ok"]


def coco(tmp_path, images, annotations, categories=None):
    doc = {"images": images, "annotations": annotations,
           "categories": categories or [{"id": 1, "name": "heading"}, {"id": 2, "name": "button"},
                                        {"id": 3, "name": "text"}]}
    path = tmp_path / "layouts.json"
    path.write_text(json.dumps(doc))
    return path


def test_coco_with_images_section_types_and_a_category_map(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(png_bytes(200, 100))
    (tmp_path / "img" / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    images = [{"id": 1, "file_name": "a.png", "width": 200, "height": 100, "section_type": "hero"},
              {"id": 2, "file_name": "a.png", "width": 200, "height": 100},
              {"id": 3, "file_name": "bad.png", "width": 200, "height": 100, "section_type": "faq"},
              {"id": 4, "file_name": "gone.png", "width": 200, "height": 100, "section_type": "faq"},
              {"id": 5, "width": 200, "height": 100, "section_type": "faq"}]
    anns = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [20, 10, 100, 20]},
            {"id": 11, "image_id": 1, "category_id": 3, "bbox": [20, 40, 150, 30]},
            {"id": 12, "image_id": 2, "category_id": 2, "bbox": [20, 10, 40, 20]},
            {"id": 13, "image_id": 3, "category_id": 2, "bbox": [20, 10, 40, 20]},
            {"id": 14, "image_id": 4, "category_id": 2, "bbox": [20, 10, 40, 20]},
            {"id": 15, "image_id": 5, "category_id": 9, "bbox": [20, 10, 40, 20]}]
    path = coco(tmp_path, images, anns)
    rep = importer.import_layouts([str(path)], tmp_path / "out", images_dir=tmp_path / "img",
                                  type_map={"text": "paragraph"}, split="100/0/0")
    assert rep["rows"] == 1
    assert rep["refused"] == {"field_missing": 1, "image_undecodable": 1, "image_missing": 1, "field_invalid": 1}
    (row,) = dataset.read_rows(tmp_path / "out", "train", 5)
    assert row["id"] == "layouts:1:a.png" and row["section_type"] == "hero" and row["image"] == png_bytes(200, 100)
    assert [e["type"] for e in row["elements"]] == ["heading", "paragraph"]
    assert row["elements"][0]["x"] == pytest.approx(0.1) and row["elements"][1]["h"] == pytest.approx(0.3)
    rep = importer.import_layouts([str(path)], tmp_path / "out2", images=False, section_type="stats",
                                  type_map={"text": "paragraph"})
    assert rep["rows"] == 4  # no images read; image 2 takes the file's section type


@pytest.mark.parametrize("text, match", [("{", "not valid JSON"), ('{"images": []}', "not a COCO")])
def test_a_broken_coco_file_is_one_clear_error(tmp_path, text, match):
    (tmp_path / "x.json").write_text(text)
    with pytest.raises(dataset.DatasetError, match=match):
        importer.import_layouts([str(tmp_path / "x.json")], tmp_path / "out")


def test_inputs_named_wrong_are_user_errors(tmp_path):
    with pytest.raises(dataset.DatasetError, match="no such file"):
        importer.import_layouts([str(tmp_path / "none.jsonl")], tmp_path / "out")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(ConfigError, match="--format"):
        importer.import_layouts([str(tmp_path / "x.csv")], tmp_path / "out")
    with pytest.raises(ConfigError, match="NAME=TYPE"):
        importer.parse_type_map(["heading"])
