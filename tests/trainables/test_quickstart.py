"""The main job (`make run` = `layoutray quickstart`) end to end, shrunk: the same command and
code path with a tiny dataset, model and budget, checked for every output it promises."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.image_height=64",
        "model.image_width=96", "training.epochs=1", "validation.generate_examples=4"]

pytestmark = pytest.mark.slow


def test_quickstart_writes_every_output(tmp_path):
    out = tmp_path / "quickstart"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    cmd = [sys.executable, "-m", "cli.main", "quickstart", "--out", str(out), "--examples", "60",
           *[a for kv in TINY for a in ("--set", kv)]]
    p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]

    data = tmp_path / "quickstart-data"
    assert json.loads((data / "manifest.json").read_text())["total"] == 60
    for f in ("preview.png", "metrics.json", "metrics.jsonl", "prediction.json", "prediction.png",
              "prediction_input.png", "predictions.png", "summary.json", "model/config.yaml"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    assert json.loads((out / "metrics.json").read_text())["examples"] > 0
    layout = json.loads((out / "prediction.json").read_text())
    assert layout  # one predicted layout, rendered above
    # The progress line reaches the user once per epoch, and the closing summary names the outputs.
    assert p.stdout.count("[layoutray] epoch 1/1") == 1, p.stdout[-3000:]
    for what in ("dataset", "preview", "run directory", "model", "test metrics", "predictions", "prediction"):
        assert f"   {what} " in p.stdout, p.stdout[-2000:]

    # The Python API on the model the main job made.
    import layoutray
    predictor = layoutray.load(out / "model")
    layouts = predictor.predict(section_type="hero", elements=["heading", "button"], samples=2, temperature=0.5)
    assert len(layouts) == 2
    assert all(sorted(e["type"] for e in lay["elements"]) == ["button", "heading"] for lay in layouts)
    assert layoutray.evaluate(out / "model", data, limit=4)["examples"] == 4


@pytest.mark.parametrize("drawn", [{}, {"variety": "responsive"}, {"appearance": "mixed"}, {"seed": 1}])
def test_the_main_job_reuses_only_the_dataset_it_would_make(tmp_path, drawn):
    from layoutray.data.dataset import read_manifest
    from layoutray.data.synth import synthesize
    from trainables.quickstart import make_data

    data = tmp_path / "quickstart-data"
    synthesize(data, 20, **{"seed": 0, **drawn})
    made = (data / "manifest.json").stat().st_mtime_ns
    make_data(data, 20)
    generator = read_manifest(data)["generator"]
    assert (generator["variety"], generator["appearance"], generator["seed"]) == ("base", "wireframe", 0)
    assert ((data / "manifest.json").stat().st_mtime_ns == made) == (not drawn)  # reused only when the same
