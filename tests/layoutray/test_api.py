"""The Python API (`import layoutray`): the same work as the CLI, returning data."""

import json
import subprocess
import sys

import pytest

import layoutray

TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.epochs=1", "training.batch_size=4",
        "validation.generate_examples=4", "training.max_steps_per_epoch=3", "scaling.cpus_per_worker=1"]


def test_import_is_cheap():
    """`import layoutray` alone pulls in neither torch nor Ray (notebooks and CLIs import it first)."""
    code = "import sys, layoutray; print(layoutray.__version__, 'torch' in sys.modules, 'ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]


def test_synth_returns_the_manifest(tmp_path):
    manifest = layoutray.synth(tmp_path / "d", examples=30, seed=4, shard_rows=10)
    assert manifest["total"] == 30 and manifest["counts"] == {"train": 24, "val": 3, "test": 3}
    assert json.loads((tmp_path / "d" / "manifest.json").read_text()) == manifest


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        layoutray.nope  # noqa: B018


@pytest.mark.slow
def test_train_evaluate_load_predict(ray_local, tmp_path):
    data = tmp_path / "d"
    layoutray.synth(data, examples=60, seed=1, shard_rows=20)
    summary = layoutray.train(data, phase="phase1", overrides=TINY, name="api", output=tmp_path / "runs")
    assert summary["phase"] == "phase1" and (tmp_path / "runs" / "api" / "model" / "config.yaml").is_file()
    metrics = layoutray.evaluate(summary["model"], data, split="test")
    assert metrics["examples"] == 6 and metrics == json.loads((tmp_path / "runs" / "api" / "metrics.json").read_text()) | {
        "seconds": metrics["seconds"]}
    predictor = layoutray.load(summary["model"])
    assert isinstance(predictor, layoutray.Predictor)
    layouts = predictor.predict(section_type="footer", elements=["logo", "link", "link"])
    assert sorted(e["type"] for e in layouts[0]["elements"]) == ["link", "link", "logo"]
