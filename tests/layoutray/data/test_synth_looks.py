"""The generator's looks: screenshot-like images and the wide size distributions."""

import io

import pytest
from PIL import Image

from layoutray.config import ConfigError, load_config
from layoutray.data import dataset
from layoutray.data.stream import write_eval_splits
from layoutray.data.synth import example_rng, generate_example, generate_layout, look_rng


def _image(row) -> Image.Image:
    return Image.open(io.BytesIO(row["image"]))


def _row(i, **kw):
    return generate_example(example_rng(3, i), i, seed=3, **kw)


def test_screenshot_mode_draws_colour_images_of_the_same_boxes_and_size():
    for i in range(6):
        wire, shot = _row(i), _row(i, appearance="screenshot")
        assert shot["elements"] == wire["elements"]
        assert _image(shot).size == _image(wire).size
        assert _image(shot).mode == "RGB" and _image(wire).mode == "L"
        colours = _image(shot).getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 64  # anti-aliased glyphs, photographs, themes


def test_screenshot_rendering_is_deterministic_per_example():
    assert _row(5, appearance="screenshot")["image"] == _row(5, appearance="screenshot")["image"]
    assert _row(5, appearance="screenshot")["image"] != _row(6, appearance="screenshot")["image"]


def test_mixed_draws_both_appearances_and_keeps_wireframes_unchanged():
    rows = [(_row(i), _row(i, appearance="mixed")) for i in range(40)]
    same = sum(m["image"] == w["image"] for w, m in rows)
    assert 8 <= same <= 32  # about half stay wireframes, byte for byte
    assert all(_image(m).mode in ("L", "RGB") for _, m in rows)


def test_wide_variety_only_shrinks_elements_inside_their_base_boxes():
    shrunk = 0
    for i in range(60):
        _, _, _, base = generate_layout(example_rng(1, i))
        _, _, _, wide = generate_layout(example_rng(1, i), variety_rng=look_rng("variety", 1, i))
        assert [e["type"] for e in base] == [e["type"] for e in wide]
        for b, w in zip(base, wide):
            eps = 1e-9
            assert w["x"] >= b["x"] - eps and w["y"] >= b["y"] - eps
            assert w["x"] + w["w"] <= b["x"] + b["w"] + eps and w["y"] + w["h"] <= b["y"] + b["h"] + eps
            shrunk += (w["w"] < b["w"] - 1e-6) and b["type"] in ("heading", "subheading", "logo", "avatar", "input")
    assert shrunk > 20


def test_base_variety_draws_nothing_extra():
    assert _row(2, variety="base") == _row(2)


@pytest.mark.parametrize("key,value", [("data.synth_appearance", "photo"), ("data.synth_variety", "huge")])
def test_config_refuses_unknown_looks(key, value):
    with pytest.raises(ConfigError) as e:
        load_config(phase="phase1", overrides=[f"{key}={value}"])
    assert key in str(e.value)


def test_eval_splits_are_made_anew_when_the_look_changes(tmp_path):
    out = tmp_path / "eval"
    write_eval_splits(out, 4, 3, 3)
    before = dataset.read_rows(out, "test", 3)
    write_eval_splits(out, 4, 3, 3, appearance="screenshot")
    after = dataset.read_rows(out, "test", 3)
    assert [r["elements"] for r in before] == [r["elements"] for r in after]
    assert all(_image(r).mode == "RGB" for r in after)
    assert dataset.read_manifest(out)["generator"]["appearance"] == "screenshot"
