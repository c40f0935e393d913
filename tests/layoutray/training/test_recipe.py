"""Recipes: parsing and checking the stages (fast); running and resuming them is in test_train.py."""

from pathlib import Path

import pytest

from layoutray.config import ConfigError
from layoutray.training.recipe import load_recipe

GOOD = """\
# layoutray train --recipe THIS
name: two
phase: phase1
data: synth:5
set: [training.batch_size=8]
stages:
  - {name: learn, epochs: 3, learning_rate: 2.0e-3}
  - {name: polish, epochs: 1, learning_rate: 2.0e-4, clean_epochs: 1, data: synth:6, set: [training.dropout=0.0]}
"""


def write(tmp_path, text):
    p = tmp_path / "r.yaml"
    p.write_text(text)
    return p


def test_stages_resolve_to_configs(tmp_path):
    recipe = load_recipe(write(tmp_path, GOOD))
    first, second = recipe.stage_config(0), recipe.stage_config(1, ["training.seed=3"])
    assert (first.training.epochs, first.training.learning_rate, first.training.batch_size) == (3, 2e-3, 8)
    assert (second.training.epochs, second.data.clean_epochs, second.training.dropout) == (1, 1, 0.0)
    assert second.training.seed == 3 and second.training.batch_size == 8
    assert [recipe.stage_dir_name(i) for i in range(2)] == ["01-learn", "02-polish"]
    assert recipe.stages[1].data == "synth:6" and recipe.data == "synth:5"


@pytest.mark.parametrize("change, key", [
    (("epochs: 3,", "epochs: 0,"), "epochs"),
    (("learning_rate: 2.0e-3", "learning_rate: 7"), "training.learning_rate"),
    (("name: polish, epochs: 1,", "name: polish, epochs: 1, epoch: 2,"), "stages[1].epoch"),
    (("set: [training.dropout=0.0]", "set: [training.droput=0.0]"), "training.droput"),
    (("phase: phase1", "phase: phase9"), "phase"),
    (("name: polish", "name: learn"), "stages"),
])
def test_bad_recipes_name_the_file_and_key(tmp_path, change, key):
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as e:
        load_recipe(path)
    assert str(path) in str(e.value) and key in str(e.value)


def test_shipped_recipes_parse():
    recipes = sorted((Path(__file__).resolve().parents[3] / "configs" / "recipes").glob("*.yaml"))
    assert recipes
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.stages and path.read_text().startswith("# layoutray train")


TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "training.batch_size=8",
        "data.synth_per_epoch=64", "data.synth_val=16", "data.synth_test=16", "validation.generate_examples=8",
        "scaling.cpus_per_worker=1"]


def _recipe(tmp_path, stages: str):
    return write(tmp_path, f"# layoutray train --recipe THIS\nname: r\ndata: synth:4\nset: {TINY}\nstages:\n{stages}")


@pytest.mark.slow
def test_recipe_runs_stages_in_order_and_resumes(ray_local, tmp_path, capsys):
    import json

    from cli.main import main
    from conftest import metrics_rows

    one = "  - {name: a, epochs: 1, learning_rate: 2.0e-3}\n"
    two = one + "  - {name: b, epochs: 2, learning_rate: 5.0e-4, clean_epochs: 1}\n"
    out = tmp_path / "runs"
    assert main(["train", "--recipe", str(_recipe(tmp_path, one)), "--output", str(out)]) == 0
    first_model = json.loads((out / "r" / "recipe.json").read_text())["stages"]["01-a"]["model"]
    # Interrupted after stage 1: --resume skips it and trains stage 2 from stage 1's model.
    assert main(["train", "--recipe", str(_recipe(tmp_path, two)), "--output", str(out), "--resume"]) == 0
    text = capsys.readouterr().out
    assert "stage 1/2 'a': done earlier, skipped" in text and "stage 2/2 'b'" in text
    state = json.loads((out / "r" / "recipe.json").read_text())
    assert state["stages"]["01-a"]["model"] == first_model and state["model"].endswith("02-b/model")
    assert [r["epoch"] for r in metrics_rows(out / "r" / "02-b")] == [1, 2]
    assert state["stages"]["02-b"]["test"]["examples"] == 16
    # Starting a finished recipe again without --resume is refused, naming the run.
    assert main(["train", "--recipe", str(_recipe(tmp_path, two)), "--output", str(out)]) == 2
    assert "'r' already exists" in capsys.readouterr().err
    # --init-from: the first stage fine-tunes a trained model.
    assert main(["train", "--recipe", str(_recipe(tmp_path, one)), "--output", str(out), "--name", "r2",
                 "--init-from", state["model"]]) == 0
    assert f"from {state['model']}" in capsys.readouterr().out
    tuned = json.loads((out / "r2" / "recipe.json").read_text())
    assert tuned["init_from"] == state["model"]
    meta = json.loads((Path(tuned["model"]) / "meta.json").read_text())
    assert meta["lineage"]["parent"]["path"] == state["model"]
