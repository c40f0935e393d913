"""`layoutray data ...` through the real command's entry point: preview, validate, import, from-html."""

import json
from pathlib import Path

import pytest
from PIL import Image

from cli.main import main
from layoutray.data import dataset
from layoutray.data.synth import example_rng, generate_example

REPO = Path(__file__).resolve().parents[2]


def rows(n, seed=7, max_elements=16):
    return [generate_example(example_rng(seed, i), i, seed=seed, max_elements=max_elements) for i in range(n)]


def write(root, **splits):
    shards = []
    for split, items in splits.items():
        shards += dataset.write_split(root, split, items)
    dataset.write_manifest(root, shards)
    return root


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def test_preview_of_a_test_only_dataset_picks_the_split_that_exists(tmp_path, capsys):
    root = write(tmp_path / "d", test=rows(5))
    assert main(["data", "preview", str(root), "--out", str(tmp_path / "s.png"), "--count", "3"]) == 0
    assert "3 test examples" in capsys.readouterr().out
    assert Image.open(tmp_path / "s.png").width > 0
    assert main(["data", "preview", str(root), "--out", str(tmp_path / "s.png"), "--split", "val"]) == 2
    assert "split 'val' has no rows" in one_error_line(capsys)


def test_preview_offset_and_section_type(tmp_path, capsys):
    items = rows(30)
    root = write(tmp_path / "d", train=items)
    kind = items[3]["section_type"]
    same = [r["id"] for r in items if r["section_type"] == kind]
    argv = ["data", "preview", str(root), "--out", str(tmp_path / "s.png")]
    assert main([*argv, "--section-type", kind, "--count", "1", "--offset", "1"]) == 0
    assert "1 train examples" in capsys.readouterr().out
    from cli.data import select_rows
    assert [r["id"] for r in select_rows(str(root), "train", 1, 1, kind)] == same[1:2]
    assert [r["id"] for r in select_rows(str(root), "train", 2, 28)] == [items[28]["id"], items[29]["id"]]
    assert main([*argv, "--offset", "30"]) == 2
    assert "after offset 30" in one_error_line(capsys)
    assert main([*argv, "--section-type", "blog"]) == 2
    assert "--section-type" in one_error_line(capsys)
    assert main(["data", "preview", str(tmp_path / "none"), "--out", str(tmp_path / "s.png")]) == 2
    one_error_line(capsys)


def test_validate_takes_its_cap_from_the_phase(tmp_path, capsys):
    big = rows(3, max_elements=48)
    big[0]["elements"] = (big[0]["elements"] * 10)[:20]  # over phase1's 16, under phase2's 24
    root = write(tmp_path / "d", train=big)
    assert main(["data", "validate", str(root), "--phase", "phase1", "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["max_elements"] == 16 and rep["by_reason"] == {"too_many_elements": 1}
    assert main(["data", "validate", str(root), "--phase", "phase2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_elements"] == 24
    assert main(["data", "validate", str(root), "--phase", "phase2", "--max-elements", "8", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["max_elements"] == 8  # the explicit cap wins
    assert main(["data", "validate", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["max_elements"] == 48  # default: the largest phase's


def test_import_cli_reports_refusals_and_writes_a_valid_dataset(tmp_path, capsys):
    good = {"section_type": "faq", "canvas": {"width": 800, "height": 400},
            "elements": [{"type": "subheading", "x": 0.1, "y": 0.1, "w": 0.5, "h": 0.1}]}
    bad = dict(good, elements=[{"type": "subheading", "x": 0.9, "y": 0.1, "w": 0.5, "h": 0.1}])
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(x) for x in [good, good, bad, good]) + "\n{oops\n")
    out = tmp_path / "ds"
    assert main(["data", "import", str(src), "--out", str(out), "--split", "50/25/25", "--seed", "2"]) == 0
    text = capsys.readouterr().out
    assert "imported 3, refused 2" in text and "refused box_out_of_range 1" in text and "in.jsonl:3" in text
    assert main(["data", "validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "import", str(src), "--out", str(out)]) == 2
    assert "--force" in one_error_line(capsys)
    assert main(["data", "import", str(src), "--out", str(tmp_path / "x"), "--split", "80/20"]) == 2
    assert "--split" in one_error_line(capsys)


@pytest.mark.slow
def test_from_html_cli_end_to_end(tmp_path, capsys):
    pages = [str(REPO / "realweb" / "pages" / p) for p in ("flex-app.html", "bulma-style.html")]
    out = tmp_path / "web"
    argv = ["data", "from-html", *pages, "--out", str(out), "--widths", "1440,390", "--ignore-data-layout",
            "--ignore-data-section", "--phase", "phase4", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["pages"] == 2 and doc["rows"] + sum(doc["skipped"].values()) == doc["sections"] == 30
    assert doc["manifest"]["total"] == doc["rows"] >= 28
    assert main(["data", "validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["data", "from-html", pages[0], "--out", str(tmp_path / "o"), "--widths", "1440,abc"]) == 2
    assert "--widths" in one_error_line(capsys)
    assert main(["data", "from-html", str(tmp_path / "missing.html"), "--out", str(tmp_path / "o")]) == 2
    assert "no such file" in one_error_line(capsys)
