"""The truth | generated preview sheet (`layoutray evaluate --preview`, make run's predictions.png)."""

from PIL import Image

from conftest import tiny_serving_artifact
from layoutray.data.dataset import read_rows
from layoutray.data.synth import synthesize
from layoutray.eval.preview import predict_rows, spread, write_preview
from layoutray.model.predictor import load
from layoutray.render.sheets import TILE_WIDTH


def test_spread_takes_section_types_in_turn():
    rows = [{"section_type": t, "i": i} for i, t in enumerate("aaaabbc")]
    picked = spread(rows, 5)
    assert [r["section_type"] for r in picked] == ["a", "b", "c", "a", "b"]
    assert [r["i"] for r in picked] == [0, 4, 6, 1, 5]
    assert len(spread(rows, 50)) == len(rows)


def test_preview_draws_pairs_for_each_mode(tmp_path):
    data = tmp_path / "d"
    synthesize(data, 60, seed=5, max_elements=8)
    predictor = load(tiny_serving_artifact(tmp_path / "m", seed=0))
    rows = spread(read_rows(data, "test", 50), 4)
    for mode in ("both", "image", "spec"):
        layouts = predict_rows(predictor, rows, mode)
        assert len(layouts) == len(rows)
        if mode != "image":  # the spec's element types are placed exactly
            for row, layout in zip(rows, layouts):
                assert sorted(e["type"] for e in layout) == sorted(e["type"] for e in row["elements"])
    out = write_preview(predictor, data, tmp_path / "p.png", count=4)
    img = Image.open(out)
    assert img.width > 4 * TILE_WIDTH  # two pairs per row, each pair two tiles wide
