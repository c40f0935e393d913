"""The synthetic section generator: determinism, splits, caps, coverage, realism checks."""

from collections import Counter

import pyarrow.parquet as pq
import pytest

from layoutray.data import dataset
from cli.main import main
from layoutray.data.imaging import decode_png
from layoutray.data.synth import (example_rng, generate_example, generate_layout, split_counts,
                             synthesize)
from layoutray.data.validate import validate_dataset
from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize(root, 200, seed=0, shard_rows=64)
    return root


def _rows(root, split=None):
    rows = []
    for s in ([split] if split else dataset.SPLITS):
        for path in dataset.shard_paths(root, s):
            rows += pq.read_table(path).to_pylist()
    return rows


def test_deterministic_for_a_seed_and_different_across_seeds():
    a = [generate_example(example_rng(7, i), i, seed=7) for i in range(20)]
    b = [generate_example(example_rng(7, i), i, seed=7) for i in range(20)]
    c = [generate_example(example_rng(8, i), i, seed=8) for i in range(20)]
    assert a == b  # PNG bytes included
    differ = sum(x["elements"] != y["elements"] for x, y in zip(a, c))
    assert differ >= 18


@pytest.mark.parametrize("n", [1, 7, 10, 23, 101])
def test_split_counts_exact_80_10_10(n):
    c = split_counts(n)
    assert c == {"train": (8 * n) // 10, "val": n // 10, "test": n - (8 * n) // 10 - n // 10}
    assert sum(c.values()) == n


@pytest.mark.parametrize("n", [10, 37])
def test_synthesize_writes_the_splits_and_manifest(tmp_path, n):
    m = synthesize(tmp_path, n, seed=3, shard_rows=8)
    assert m["counts"] == split_counts(n)
    assert dataset.count_examples(tmp_path) == split_counts(n)
    assert m["generator"] == {"name": "layoutray.data.synth", "version": 1, "seed": 3, "max_elements": 16,
                              "appearance": "wireframe", "variety": "base"}
    for entry in m["shards"]:
        assert dataset.sha256_file(tmp_path / entry["path"]) == entry["sha256"]


def test_an_example_does_not_depend_on_dataset_size(tmp_path):
    synthesize(tmp_path / "small", 10, seed=5)
    synthesize(tmp_path / "big", 30, seed=5)
    small = {r["id"]: r for r in _rows(tmp_path / "small")}
    big = {r["id"]: r for r in _rows(tmp_path / "big")}
    for rid, row in small.items():
        assert big[rid] == row


def test_fresh_synth_validates_with_zero_bad_rows(synth_dir):
    rep = validate_dataset(synth_dir, max_elements=16)
    assert rep["ok"], rep
    assert rep["bad_rows"] == 0 and rep["rows"] == 200
    assert not rep["shard_errors"] and not rep["errors"]


def test_rows_are_well_formed(synth_dir):
    rows = _rows(synth_dir)
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["canvas_width"] in (1280, 1440, 1920)
        img = decode_png(r["image"])
        assert img.mode == "L" and img.width == 320
        assert abs(img.height - r["canvas_height"] * 320 / r["canvas_width"]) <= 1
        for e in r["elements"]:
            assert 0 <= e["x"] and 0 <= e["y"] and e["w"] > 0 and e["h"] > 0
            assert e["x"] + e["w"] <= 1 + 1e-6 and e["y"] + e["h"] <= 1 + 1e-6


def test_element_counts_within_cap_and_varied(synth_dir):
    counts = [len(r["elements"]) for r in _rows(synth_dir)]
    assert min(counts) >= 2 and max(counts) <= 16
    assert len(set(counts)) >= 8


@pytest.mark.parametrize("cap", [2, 3, 5, 24, 48])
def test_cap_is_never_exceeded(cap):
    counts = [len(generate_layout(example_rng(1, i), max_elements=cap)[3]) for i in range(150)]
    assert min(counts) >= 2 and max(counts) <= cap


def test_larger_caps_give_larger_sections():
    small = sum(len(generate_layout(example_rng(2, i), max_elements=16)[3]) for i in range(150))
    large = sum(len(generate_layout(example_rng(2, i), max_elements=48)[3]) for i in range(150))
    assert large > small


def test_every_section_and_element_type_occurs():
    sections, elements = Counter(), Counter()
    for i in range(300):
        st, _, _, els = generate_layout(example_rng(0, i))
        sections[st] += 1
        elements.update(e["type"] for e in els)
    assert set(sections) == set(SECTION_TYPES)
    assert set(elements) == set(ELEMENT_TYPES)


@pytest.mark.parametrize("section", SECTION_TYPES)
def test_each_section_type_has_its_signature_elements(section):
    signature = {
        "navbar": {"logo", "navigation"}, "hero": {"heading"}, "pricing": {"card", "list", "button"},
        "team": {"subheading"}, "logo_wall": {"logo"}, "gallery": {"image"}, "faq": {"heading"},
        "contact_form": {"input", "button"}, "footer": {"logo"}, "stats": {"heading", "paragraph"},
        "testimonials": {"paragraph"}, "feature_grid": {"heading", "paragraph"},
        "call_to_action": {"heading"},
    }[section]
    for i in range(10):
        st, W, H, els = generate_layout(example_rng(4, i), section_type=section)
        assert st == section
        assert signature <= {e["type"] for e in els}
        lo, hi = {"navbar": (64, 120), "hero": (600, 1400), "footer": (250, 600)}.get(section, (150, 2000))
        assert lo <= H <= hi, (section, H)


def test_elements_sit_on_a_shared_margin():
    # Content starts at the container's left edge, the same for many elements of a section.
    for i in range(30):
        _, W, _, els = generate_layout(example_rng(6, i), section_type="footer")
        lefts = Counter(round(e["x"] * W) for e in els)
        assert lefts.most_common(1)[0][1] >= 2


def test_cli_synth_prints_a_summary(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--examples", "20", "--seed", "2"]) == 0
    out = capsys.readouterr().out
    assert "20 examples" in out and "examples/s" in out
    assert dataset.read_manifest(tmp_path)["counts"] == {"train": 16, "val": 2, "test": 2}


def test_cli_synth_refuses_bad_arguments(tmp_path, capsys):
    assert main(["data", "synth", "--out", str(tmp_path), "--examples", "0"]) == 2
    assert "--examples" in capsys.readouterr().err


def test_generate_example_accepts_a_numpy_generator_or_seed():
    import numpy as np

    a = generate_example(np.random.default_rng(3), 0)
    b = generate_example(np.random.default_rng(3), 0)
    assert a == b
    assert generate_example(5, 1) == generate_example(5, 1)


def test_undecodable_png_message_carries_no_object_address():
    import struct

    from layoutray.data.imaging import ImageError, decode_png

    data = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDX" + b"\0" * 17
    messages = set()
    for _ in range(2):
        with pytest.raises(ImageError) as e:
            decode_png(data)
        messages.add(str(e.value))
    assert len(messages) == 1 and " at 0x" not in messages.pop()


def test_data_quality_error_survives_pickling():
    import pickle

    from layoutray.data.batches import BadRowReport, DataQualityError

    e = pickle.loads(pickle.dumps(DataQualityError("too many bad rows in s.parquet", "s.parquet", BadRowReport())))
    assert str(e) == "too many bad rows in s.parquet" and e.shard == "s.parquet"
