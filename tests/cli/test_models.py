"""`layoutray predict` and `layoutray upgrade` through the real command's entry point."""

import io
import json

import pytest
import torch
from PIL import Image, ImageDraw

from cli.main import main
from layoutray.config import load_config
from layoutray.model.artifact import export_artifact, read_artifact
from layoutray.model.network import build_model

TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=2", "model.ff_mult=2",
        "model.image_height=64", "model.image_width=96", "model.coord_bins=32"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    cfg = load_config(phase="phase1", overrides=TINY)
    torch.manual_seed(0)
    return export_artifact(build_model(cfg), cfg, tmp_path_factory.mktemp("m") / "model")


def wireframe(path):
    img = Image.new("L", (300, 200), 255)
    ImageDraw.Draw(img).rectangle([20, 20, 200, 50], outline=0, width=3)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    path.write_bytes(buf.getvalue())
    return path


def test_predict_writes_json_and_png(model_dir, tmp_path, capsys):
    png = wireframe(tmp_path / "w.png")
    argv = ["predict", "--model", str(model_dir), "--image", str(png), "--section", "hero", "--elements",
            "heading,button", "--samples", "2", "--temperature", "0.5", "--top-p", "0.9", "--seed", "1",
            "--canvas", "1000x500", "--out", str(tmp_path / "l.json"), "--render", str(tmp_path / "l.png")]
    assert main(argv) == 0
    out = json.loads((tmp_path / "l.json").read_text())
    assert len(out["layouts"]) == 2 and out["model"] == str(model_dir)
    for layout in out["layouts"]:
        els = layout["elements"]
        assert sorted(e["type"] for e in els) == ["button", "heading"]
        assert all(e["x"] + e["width"] <= 1000 and e["y"] + e["height"] <= 500 for e in els)
    assert Image.open(tmp_path / "l.png").width > 0


@pytest.mark.parametrize("flags, message", [
    (["--elements", "heading,blink"], "'--elements[1]': unknown element type 'blink'"),
    (["--section", "nope"], "'--section': unknown section type 'nope'"),
    (["--elements", "heading", "--canvas", "wide"], "'--canvas'"),
    (["--elements", "heading", "--temperature", "-1"], "'--temperature'"),
    (["--image", "/nonexistent.png"], "'--image'"),
    ([], "give at least one of"),
])
def test_predict_names_the_flag_of_a_bad_value(model_dir, tmp_path, capsys, flags, message):
    assert main(["predict", "--model", str(model_dir), "--out", str(tmp_path / "l.json"), *flags]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err
    assert not (tmp_path / "l.json").exists()


def test_upgrade_exports_next_phase_and_refuses_a_non_growth(tmp_path, capsys):
    cfg = load_config(phase="phase1")
    torch.manual_seed(0)
    model = build_model(cfg)
    export_artifact(model, cfg, tmp_path / "p1")
    assert main(["upgrade", "--model", str(tmp_path / "p1"), "--to", "phase2", "--out", str(tmp_path / "p2")]) == 0
    sd, new_cfg, meta = read_artifact(tmp_path / "p2")
    assert new_cfg.phase == "phase2" and new_cfg.model.d_model == 192
    rep = meta["metadata"]["upgrade_report"]
    assert rep["from_phase"] == "phase1" and rep["total"] == meta["parameters"]
    assert "carried" in capsys.readouterr().out
    # Growth keeps the function: the last norm's gains are divided by the width ratio 192/128.
    torch.testing.assert_close(sd["dec_ln.weight"][:128] * 1.5, model.state_dict()["dec_ln.weight"])
    assert main(["upgrade", "--model", str(tmp_path / "p2"), "--to", "phase2", "--out", str(tmp_path / "x")]) == 2
    assert "key '--to'" in capsys.readouterr().err and not (tmp_path / "x").exists()
