"""Artifact round trip: export, load in a plain process (no DeepSpeed, no Ray), same outputs."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from layoutray.model.artifact import ArtifactError, export_artifact, read_artifact
from layoutray.model.predictor import load as load_predictor
from layoutray.model.request import LayoutRequest
from layoutray.config import load_config
from layoutray.model.network import build_model

REPO = Path(__file__).resolve().parents[3]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=2", "model.ff_mult=2",
        "model.image_height=64", "model.image_width=96", "model.coord_bins=32"]


def wireframe_png() -> bytes:
    img = Image.new("L", (300, 200), 255)
    d = ImageDraw.Draw(img)
    d.rectangle([20, 20, 200, 50], outline=0, width=3)
    d.rectangle([20, 120, 90, 150], fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


REQUESTS = [
    {"section_type": "hero", "elements": ["heading", "paragraph", "button"], "image": None},
    {"section_type": None, "elements": None, "image": "PNG"},
    {"section_type": "footer", "elements": ["link", "link", "logo"], "image": "PNG"},
]


def as_json(results):
    return [[[[b.type, round(b.x, 6), round(b.y, 6), round(b.w, 6), round(b.h, 6)] for b in s]
             for s in req] for req in results]


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    cfg = load_config(phase="phase1", overrides=TINY)
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.tok_emb.weight.mul_(20)  # sharper logits: outputs that differ between models
    # a DeepSpeed-style prefixed state dict is accepted
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    out = export_artifact(sd, cfg, tmp_path_factory.mktemp("a") / "model", metadata={"run": "t"})
    return out, model


def requests():
    png = wireframe_png()
    return [LayoutRequest(section_type=r["section_type"], elements=r["elements"],
                          image_png=png if r["image"] == "PNG" else None) for r in REQUESTS]


def test_files_and_meta(artifact):
    out, model = artifact
    assert {p.name for p in out.iterdir()} == {"config.yaml", "model.safetensors", "meta.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["tokenizer"]["bins"] == 32 and meta["metadata"] == {"run": "t"}
    sd, cfg, _ = read_artifact(out)
    assert cfg.model.d_model == 32
    for k, v in model.state_dict().items():
        assert sd[k].dtype == torch.float32 and torch.equal(sd[k], v)


def test_round_trip_in_plain_process(artifact):
    out, _ = artifact
    here = as_json(load_predictor(out).generate_layouts(requests(), samples=2, temperature=0.8, seed=3))
    code = f"""
import json, sys
sys.path.insert(0, {str(REPO)!r})
sys.path.insert(0, {str(Path(__file__).parent)!r})
from layoutray.model.predictor import load as load_predictor
from test_artifact import requests, as_json
res = load_predictor({str(out)!r}).generate_layouts(requests(), samples=2, temperature=0.8, seed=3)
assert 'deepspeed' not in sys.modules and 'ray' not in sys.modules, 'heavy imports'
print(json.dumps(as_json(res)))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == here
    # the greedy layouts respect the requests
    greedy = load_predictor(out).generate_layouts(requests())
    assert sorted(b.type for b in greedy[0][0]) == ["button", "heading", "paragraph"]
    assert sorted(b.type for b in greedy[2][0]) == ["link", "link", "logo"]


def test_predict_validates_requests(artifact):
    p = load_predictor(artifact[0])
    with pytest.raises(ValueError, match=r"section_type: unknown section type"):
        p.predict(section_type="nope")
    with pytest.raises(ValueError, match=r"elements\[1\]: unknown element type"):
        p.predict(elements=["heading", "blink"])
    with pytest.raises(ValueError, match=r"elements: 17 elements"):
        p.predict(elements=["heading"] * 17)
    with pytest.raises(ValueError, match="PNG"):
        p.predict(image=b"not a png")
    with pytest.raises(ValueError, match="give at least one"):
        p.predict()
    with pytest.raises(ValueError, match="temperature"):
        p.predict(elements=["heading"], temperature=-1)


def test_predict_returns_plain_dicts(artifact, tmp_path):
    p = load_predictor(artifact[0])
    png = tmp_path / "w.png"
    png.write_bytes(wireframe_png())
    for image in (None, png, str(png), png.read_bytes(), Image.open(png)):
        layouts = p.predict(section_type="hero", elements=["heading", "button"], image=image, samples=2,
                            temperature=0.7, canvas=(1000, 500))
        assert len(layouts) == 2
        json.dumps(layouts)  # plain data all the way down
        for layout in layouts:
            assert sorted(e["type"] for e in layout["elements"]) == ["button", "heading"]
            assert all(e["x"] + e["width"] <= 1000 and e["y"] + e["height"] <= 500 for e in layout["elements"])
            assert set(layout) == {"elements", "alignment", "overlap"}


def test_export_refuses_mismatched_weights(tmp_path):
    cfg = load_config(phase="phase1", overrides=TINY)
    other = build_model(load_config(phase="phase1", overrides=TINY + ["model.d_model=64"]))
    with pytest.raises(ArtifactError, match="wrong shape"):
        export_artifact(other, cfg, tmp_path / "m")
    with pytest.raises(ArtifactError, match="missing"):
        load_predictor(tmp_path / "nothing")
