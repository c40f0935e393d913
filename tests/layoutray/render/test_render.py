"""Wireframes, box overlays, contact sheets and `layoutray data preview`."""

import io
import random

import numpy as np
import pytest
from PIL import Image

from layoutray.data.dataset import read_rows
from layoutray.render import sheets, wireframe
from cli.main import main
from layoutray.data.imaging import encode_png
from layoutray.data.synth import example_rng, generate_example, generate_layout, synthesize
from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES


@pytest.mark.parametrize("section", SECTION_TYPES)
def test_wireframe_size_and_mode(section):
    st, W, H, els = generate_layout(example_rng(0, 1), section_type=section)
    img = wireframe.render_wireframe(st, els, W, H, random.Random(1))
    assert img.mode == "L" and img.width == 320 and img.height == round(H * 320 / W)
    assert np.asarray(img).std() > 5  # something is drawn


def test_wireframe_is_deterministic_for_an_rng_and_works_without_hints():
    st, W, H, els = generate_layout(example_rng(3, 3))
    a = wireframe.render_wireframe(st, els, W, H, random.Random(5))
    b = wireframe.render_wireframe(st, els, W, H, random.Random(5))
    assert a.tobytes() == b.tobytes()
    plain = [{k: e[k] for k in ("type", "x", "y", "w", "h")} for e in els]  # user rows carry no hints
    c = wireframe.render_wireframe(st, plain, W, H, 5, width_px=200)
    assert c.width == 200


def _single(kind, seed=0):
    el = {"type": kind, "x": 0.1, "y": 0.2, "w": 0.5, "h": 0.5}
    img = wireframe.render_wireframe("hero", [el], 1440, 480, random.Random(seed))
    return np.asarray(img, dtype=np.float32)[20:90, 28:190]


def test_every_element_type_has_its_own_look():
    # Same box, different type -> clearly different pixels inside the box.
    looks = {k: _single(k) for k in ELEMENT_TYPES}
    for i, a in enumerate(ELEMENT_TYPES):
        for b in ELEMENT_TYPES[i + 1:]:
            diff = np.abs(looks[a] - looks[b]).mean()
            assert diff > 3, (a, b, diff)


def test_boxes_cannot_be_read_off_flat_colours():
    # Element grey levels are jittered and speckle sits on top: two renders of the same
    # layout with different rngs differ, and a heading has more than one grey level.
    a, b = _single("heading", 1), _single("heading", 2)
    assert np.abs(a - b).mean() > 0.5
    st, W, H, els = generate_layout(example_rng(0, 9), section_type="gallery")
    arr = np.asarray(wireframe.render_wireframe(st, els, W, H, random.Random(0)))
    assert len(np.unique(arr)) > 10


def test_pngs_stay_small():
    sizes = [len(generate_example(example_rng(1, i), i)["image"]) for i in range(60)]
    assert np.mean(sizes) < 15_000


def test_draw_layout_with_and_without_background():
    st, W, H, els = generate_layout(example_rng(2, 2))
    wf = wireframe.render_wireframe(st, els, W, H, random.Random(0))
    img = sheets.draw_layout(els, W, H, background=wf, width_px=480)
    assert img.mode == "RGB" and img.size == (480, round(H * 480 / W))
    blank = sheets.draw_layout(els, W, H)
    colours = {tuple(c) for c in np.asarray(blank).reshape(-1, 3)}
    for e in els:
        assert wireframe.TYPE_COLORS[e["type"]] in colours


def _expected_sheet_size(rows):
    cols = min(sheets.SHEET_COLS, len(rows))
    heights = []
    for i in range(0, len(rows), cols):
        heights.append(max(round(r["canvas_height"] * sheets.TILE_WIDTH / r["canvas_width"])
                           for r in rows[i:i + cols]) + sheets.CAPTION_H)
    return (cols * sheets.TILE_WIDTH + (cols + 1) * sheets.TILE_PAD,
            sum(heights) + (len(heights) + 1) * sheets.TILE_PAD)


def test_contact_sheet_size_and_null_images():
    rows = [generate_example(example_rng(0, i), i) for i in range(6)]
    rows[2]["image"] = None  # drawn on a blank tile
    sheet = sheets.contact_sheet(rows, 5)
    assert sheet.mode == "RGB" and sheet.size == _expected_sheet_size(rows[:5])


def test_preview_cli_writes_the_sheet(tmp_path, capsys):
    synthesize(tmp_path / "d", 30, seed=2, shard_rows=10)
    out = tmp_path / "sheet.png"
    assert main(["data", "preview", str(tmp_path / "d"), "--out", str(out), "--count", "12"]) == 0
    img = Image.open(out)
    rows = read_rows(tmp_path / "d", "train", 12)
    assert len(rows) == 12  # read across shard boundaries
    assert img.size == _expected_sheet_size(rows)
    assert main(["data", "preview", str(tmp_path / "d"), "--out", str(tmp_path / "v.png"),
                 "--split", "val", "--count", "16"]) == 0
    assert Image.open(tmp_path / "v.png").size == _expected_sheet_size(read_rows(tmp_path / "d", "val", 16))


def test_encoded_wireframe_decodes():
    st, W, H, els = generate_layout(example_rng(0, 0))
    png = encode_png(wireframe.render_wireframe(st, els, W, H, random.Random(0)))
    assert Image.open(io.BytesIO(png)).size[0] == 320
