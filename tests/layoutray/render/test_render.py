"""Wireframes, box overlays, contact sheets and `layoutray data preview`."""

import hashlib
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


# sha256 of raw pixels (not PNG bytes, which depend on the zlib build). Synthetic datasets are
# reproducible by seed only while the renderer draws the same pixels from the same rng: a change
# in what a drawer draws, or in the order of its random draws, changes these. A Pillow upgrade
# that rasterises differently changes them too, and with them every regenerated dataset.
GOLDEN_LAYOUTS = "dc7df01554291807dd597a61232e7423ff5b03dc8d11d0fbc5c9583aceed7a1a"
GOLDEN_ELEMENTS = {
    "heading": "22a8171618975b4afd2bf9aca6a580f58dc39022bf0e6c2e16118562b7501caf",
    "subheading": "06f3d333cb829e79eb26d8b167b4192e1a1fbe0dd4a50a45f7c4b56da73fedf6",
    "paragraph": "b1bb4849d027bd7a28c9a8733262469a21ff990eea19d604204a587b828736a0",
    "link": "e9748be9a7e783bfe9734960dc329c9e3664d3d7f3c53341aee415385983ea11",
    "button": "d2f0c268c9f771c18bae8776d3fb35dc6283270052edd33c42bd1b934066ebd0",
    "image": "fdba9a288e768cf8099e8cc0d46467c7f455fb395c24357c66a55186e1dc20d5",
    "icon": "e0cb01744748f4d4d25d136f39f02a9403c128a51c978bd9cb808f458e70b700",
    "logo": "71b51074c6c6220ebcab861eca3505d7cef7006c0c6d40063d815de0afdc9433",
    "navigation": "1fd1a3476dbf2edf9d07eca82026695c0c05938b32411a626f57125cdc1333f2",
    "card": "2c5ca9ef57b4c1a4c6bec1822e1b0dc48df9994414a9461952f19e319a3fc44a",
    "input": "7c4c2307aeb3ddebd4f880d8ac391a3f2a60f5c8d1bda35633e1920a06ba43f2",
    "list": "66b788ae8121244152995d96649cad52d9a7e7cbfc3944efa6108980de99c3d0",
    "avatar": "9110d7cc93e514b7e229c9637840c7b9e75050514bff7b0939cf599a97fded5e",
    "badge": "584c7f73c8831da41d03763f3082cb613348f201bea1ed2ef7161da791895340",
    "unknown": "2d5c490e35566fef7d858be7b4c3709fd7d8b7305f3b699e86f2ac4cfc89aaf6",  # the outline fallback
}


def test_golden_wireframes_of_synthetic_layouts():
    h = hashlib.sha256()
    for i in range(24):
        st, W, H, els = generate_layout(example_rng(11, i))
        h.update(wireframe.render_wireframe(st, els, W, H, random.Random(i)).tobytes())
    assert h.hexdigest() == GOLDEN_LAYOUTS


@pytest.mark.parametrize("kind", sorted(GOLDEN_ELEMENTS))
def test_golden_wireframe_of_each_element_type(kind):
    # Light and dark themes, every style hint a drawer reads, a large box and a small one.
    h = hashlib.sha256()
    for seed in range(6):
        for style in ("", "secondary", "featured", "plain"):
            for x, y, w, bh in ((0.1, 0.2, 0.5, 0.5), (0.3, 0.1, 0.03, 0.06)):
                el = {"type": kind, "x": x, "y": y, "w": w, "h": bh}
                if style:
                    el["style"] = style
                img = wireframe.render_wireframe(("hero", "footer")[seed % 2], [el], 1440, 480,
                                                 random.Random(seed))
                h.update(img.tobytes())
    assert h.hexdigest() == GOLDEN_ELEMENTS[kind]


def test_every_element_type_has_a_drawer():
    assert set(wireframe.DRAWERS) == set(ELEMENT_TYPES)
    assert set(GOLDEN_ELEMENTS) == set(ELEMENT_TYPES) | {"unknown"}


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
