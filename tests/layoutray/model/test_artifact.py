"""Artifact round trip: export, load in a plain process (no DeepSpeed, no Ray), same outputs; the
load checks (finite weights, the golden set) that keep a damaged artifact from serving."""

import base64
import io
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from layoutray.model.artifact import ArtifactError, export_artifact, read_artifact
from layoutray.model.golden import ArtifactCheckFailed, check_artifact, load_checked
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
    assert {p.name for p in out.iterdir()} == {"config.yaml", "model.safetensors", "meta.json", "golden.json"}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["parameters"] == sum(p.numel() for p in model.parameters())
    assert meta["golden"] == {"file": "golden.json", "format_version": 1, "requests": 7}
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
            assert set(layout) == {"elements", "alignment", "overlap", "aesthetic"}
            assert 0.0 <= layout["aesthetic"] <= 1.0


def test_export_refuses_mismatched_weights(tmp_path):
    cfg = load_config(phase="phase1", overrides=TINY)
    other = build_model(load_config(phase="phase1", overrides=TINY + ["model.d_model=64"]))
    with pytest.raises(ArtifactError, match="wrong shape"):
        export_artifact(other, cfg, tmp_path / "m")
    with pytest.raises(ArtifactError, match="missing"):
        load_predictor(tmp_path / "nothing")


# ----------------------------------------------------------------------------- load checks


def damage_weights(model_dir, n: int = 4096, seed: int = 0) -> None:
    """What the finding did: n bytes of model.safetensors, past its header, overwritten with
    random bytes. The file still parses."""
    path = Path(model_dir) / "model.safetensors"
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little") + 4096
    raw[start:start + n] = random.Random(seed).randbytes(n)
    path.write_bytes(bytes(raw))


def copy_artifact(src, dst) -> Path:
    shutil.copytree(src, dst)
    return Path(dst)


def test_golden_set_replays_as_exported(artifact):
    out, _ = artifact
    doc = json.loads((out / "golden.json").read_text())
    assert doc["format_version"] == 1 and set(doc["tolerances"]) == {
        "overlap_ratio", "overlap_slack", "alignment_ratio", "alignment_slack", "min_agreement"}
    bodies = [it["request"] for it in doc["requests"]]
    assert any("image" not in b and b.get("elements") for b in bodies)  # spec only
    assert any("image" in b and b.get("elements") for b in bodies)  # wireframe + spec
    assert any(set(b) == {"image", "canvas"} for b in bodies)  # wireframe only
    assert all(it["expected"]["valid"] is True for it in doc["requests"])
    p = load_predictor(out)
    for it in (doc["requests"][0], doc["requests"][-1]):  # by hand, through the public API
        body = it["request"]
        image = base64.b64decode(body["image"]) if "image" in body else None
        assert image is None or image.startswith(b"\x89PNG")
        layouts = p.predict(section_type=body.get("section_type"), elements=body.get("elements"), image=image,
                            canvas=(body["canvas"]["width"], body["canvas"]["height"]))
        # greedy decoding is deterministic: the answer is the recorded one (batching aside)
        assert [e["type"] for e in layouts[0]["elements"]] == [e["type"] for e in it["expected"]["layout"]["elements"]]
    assert check_artifact(out) == []
    assert load_checked(out).meta["golden"]["requests"] == len(bodies)


def test_damaged_weights_fail_the_finite_check(artifact, tmp_path):
    bad = copy_artifact(artifact[0], tmp_path / "bad")
    damage_weights(bad)
    from safetensors.torch import load_file
    assert not all(bool(torch.isfinite(t).all()) for t in load_file(str(bad / "model.safetensors")).values())
    load_predictor(bad)  # it still parses: loading alone does not notice
    failures = check_artifact(bad)
    assert len(failures) == 1 and failures[0].startswith("non-finite weights in ") and "NaN" in failures[0]
    with pytest.raises(ArtifactCheckFailed, match="non-finite weights") as ei:
        load_checked(bad)
    assert ei.value.failures == failures and isinstance(ei.value, ArtifactError)


def test_export_refuses_non_finite_weights(artifact, tmp_path):
    cfg = load_config(phase="phase1", overrides=TINY)
    state = {k: v.clone() for k, v in artifact[1].state_dict().items()}
    state["dec_ln.bias"][3] = float("nan")
    with pytest.raises(ArtifactError, match=r"non-finite weights, not exported: dec_ln.bias: 1 NaN"):
        export_artifact(state, cfg, tmp_path / "m")
    assert not (tmp_path / "m" / "meta.json").exists()


def test_finite_damage_fails_the_golden_set(artifact, tmp_path):
    """Weights changed after export but finite (here: the decoder's final norm gain zeroed, so every
    element gets the same box): the golden set notices what the finite check cannot."""
    from safetensors.torch import load_file, save_file

    bad = copy_artifact(artifact[0], tmp_path / "collapsed")
    state = load_file(str(bad / "model.safetensors"))
    state["dec_ln.weight"].zero_()
    save_file(state, str(bad / "model.safetensors"))
    failures = check_artifact(bad)
    assert failures and all(f.startswith("golden: ") for f in failures), failures
    assert any("agreement with the recorded layouts" in f for f in failures), failures


def test_artifacts_without_a_golden_set(artifact, tmp_path):
    cfg = load_config(phase="phase1", overrides=TINY)
    old = export_artifact(artifact[1], cfg, tmp_path / "old", golden=False)
    assert not (old / "golden.json").exists() and json.loads((old / "meta.json").read_text())["golden"] is None
    assert check_artifact(old) == []  # older artifacts: the finite check only
    damage_weights(old)
    assert check_artifact(old)[0].startswith("non-finite weights")
    # a golden set that was listed but went missing, or broke, is a failure, not a pass
    gone = copy_artifact(artifact[0], tmp_path / "gone")
    (gone / "golden.json").unlink()
    assert check_artifact(gone) == [f"golden: meta.json lists golden.json but {gone / 'golden.json'} is missing"]
    broken = copy_artifact(artifact[0], tmp_path / "broken")
    (broken / "golden.json").write_text("{not json")
    assert check_artifact(broken)[0].startswith("golden: ") and "unreadable" in check_artifact(broken)[0]
    # re-exporting without a golden set removes the old one (it described other weights)
    export_artifact(artifact[1], cfg, broken, golden=False)
    assert not (broken / "golden.json").exists()
    assert check_artifact(tmp_path / "nothing")[0].startswith("parse: ")
