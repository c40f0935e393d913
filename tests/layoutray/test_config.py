"""Every config file under configs/ loads and validates; bad configs (run configs and sweep
files, through the one builder `from_dict`) name file, key and what is allowed; --set
overrides; dump_yaml / to_dict round trips; the auto-phase thresholds, both through
choose_phase and through `layoutray config show --dataset DIR --json` on real datasets.

configs/serve.yaml only gets a shape check here: tests/serving validates it deeply
(deployments, user_config fields) against the Serve application that reads it.
"""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml

from layoutray import config as C
from cli.main import main as cli_main
from layoutray.config import ConfigError, choose_phase, dump_yaml, load_config, load_thresholds
from layoutray.data.dataset import write_split
from layoutray.sweep_config import SweepConfig, load_sweep, sweep_from_dict

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"
PHASE1 = CONFIGS / "phases" / "phase1.yaml"
PARAM_RANGES = {"phase1": (2.0e6, 4.5e6), "phase2": (8e6, 13e6), "phase3": (20e6, 35e6), "phase4": (50e6, 80e6)}


# ---------------------------------------------------------------------------- the shipped files


@pytest.mark.parametrize("phase", C.PHASES)
def test_phase_yaml_loads_by_name_and_by_path(phase):
    by_name = load_config(phase=phase)
    by_path = load_config(CONFIGS / "phases" / f"{phase}.yaml")
    assert by_name.phase == phase and by_name.to_dict() == by_path.to_dict()
    assert by_name.model.d_model % by_name.model.n_heads == 0
    assert (CONFIGS / "deepspeed" / f"zero{by_name.deepspeed.zero_stage}.yaml").is_file()


def test_thresholds_yaml():
    rows = load_thresholds()
    assert rows == [("phase1", 2000), ("phase2", 4999), ("phase3", 9999), ("phase4", None)]


@pytest.mark.parametrize("path", sorted((CONFIGS / "deepspeed").glob("*.yaml")), ids=lambda p: p.name)
def test_deepspeed_templates_parse(path):
    tree = yaml.safe_load(path.read_text())
    assert isinstance(tree, dict) and "zero_optimization" in tree
    assert tree["zero_optimization"]["stage"] == int(path.stem.removeprefix("zero"))
    # Batch sizes, clipping and precision come from the phase config, never from the template.
    assert not {"train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"} & set(tree)


def test_all_four_zero_stages_have_templates():
    assert sorted(p.name for p in (CONFIGS / "deepspeed").glob("*.yaml")) == [f"zero{i}.yaml" for i in range(4)]


@pytest.mark.parametrize("path", sorted((CONFIGS / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_sweep_files_parse_and_validate(path):
    tree = yaml.safe_load(path.read_text())
    assert isinstance(tree, dict) and tree
    load_sweep(path)


def test_serve_yaml_shape():
    # Deep validation (deployments, user_config) lives in tests/serving.
    tree = yaml.safe_load((CONFIGS / "serve.yaml").read_text())
    assert {"http_options", "applications"} <= set(tree)
    app = tree["applications"][0]
    assert {"name", "import_path", "deployments"} <= set(app)
    assert app["import_path"] == "serving.app:app"


def test_every_yaml_under_configs_is_covered():
    covered = {CONFIGS / "serve.yaml", *(CONFIGS / "phases").glob("*.yaml"), *(CONFIGS / "deepspeed").glob("*.yaml"),
               *(CONFIGS / "sweeps").glob("*.yaml"),
               *(CONFIGS / "recipes").glob("*.yaml")}  # recipes: tests/layoutray/training/test_recipe.py
    every = set(CONFIGS.rglob("*.yaml")) | set(CONFIGS.rglob("*.yml"))
    assert every <= covered, f"config files no test checks: {sorted(map(str, every - covered))}"


# ---------------------------------------------------------------------------- bad files


def _write_variant(tmp_path, edit) -> Path:
    tree = yaml.safe_load(PHASE1.read_text())
    edit(tree)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


BAD = {
    "unknown key": (lambda t: t["model"].update(d_modle=64), "model.d_modle", ["unknown key", "d_model", "n_heads"]),
    "unknown section": (lambda t: t.update(optimiser={"lr": 1}), "optimiser", ["unknown key", "training"]),
    "wrong type": (lambda t: t["training"].update(epochs="five"), "training.epochs", ["an integer", "'five'"]),
    "bool is not int": (lambda t: t["training"].update(epochs=True), "training.epochs", ["an integer"]),
    "section not mapping": (lambda t: t.update(model=3), "model", ["mapping", "d_model"]),
    "out of range": (lambda t: t["training"].update(dropout=0.95), "training.dropout", ["0.95", "[0.0, 0.9]"]),
    "lr open range": (lambda t: t["training"].update(learning_rate=0.0), "training.learning_rate", ["(0.0, 1.0]"]),
    "bad literal": (lambda t: t["deepspeed"].update(zero_stage=4), "deepspeed.zero_stage", ["4", "0, 1, 2, 3"]),
    "bad literal str": (lambda t: t["deepspeed"].update(precision="fp8"), "deepspeed.precision",
                        ["'fp8'", "'fp32'", "'bf16'", "'fp16'"]),
    "bad phase": (lambda t: t.update(phase="phase9"), "phase", ["'phase9'", "'phase1'", "'phase4'"]),
    "d_model vs heads": (lambda t: t["model"].update(d_model=130), "model.d_model",
                         ["multiple of model.n_heads (4)", "130"]),
    "nested range": (lambda t: t["data"]["augment"].update(mirror_p=2.0), "data.augment.mirror_p", ["[0.0, 1.0]"]),
    "task mix sum": (lambda t: t["training"]["task_mix"].update(both=0.9), "training.task_mix", ["summing to 1.0"]),
    "batch vs workers": (lambda t: t["scaling"].update(num_workers=3), "training.batch_size",
                         ["multiple of scaling.num_workers (3)"]),
    "negative clean epochs": (lambda t: t["data"].update(clean_epochs=-1), "data.clean_epochs", ["[0, inf]"]),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_yaml_names_file_key_and_allowed(tmp_path, case):
    edit, key, fragments = BAD[case]
    path = _write_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert e.value.key == key, msg
    assert str(path) in msg and f"'{key}'" in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_unparseable_and_non_mapping_files(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML") as e:
        load_config(broken)
    assert str(broken) in str(e.value)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(listy)
    with pytest.raises(ConfigError, match="file not found") as e:
        load_config(tmp_path / "missing.yaml")
    assert "missing.yaml" in str(e.value)
    with pytest.raises(ConfigError, match="phase1, phase2, phase3, phase4"):
        load_config(phase="phase7")


@pytest.mark.parametrize("rows, key", [
    ([{"phase": "phase1", "max_examples": 10}, {"phase": "phase2", "max_examples": 5},
      {"phase": "phase3", "max_examples": None}], "phases[1].max_examples"),
    ([{"phase": "phase1", "max_examples": 10}, {"phase": "phase2", "max_examples": 20}], "phases[1].max_examples"),
    ([{"phase": "phase5", "max_examples": None}], "phases[0].phase"),
    ([{"phase": "phase1"}], "phases[0]"),
    ([], "phases"),
])
def test_bad_thresholds_file(tmp_path, rows, key):
    path = tmp_path / "thresholds.yaml"
    path.write_text(yaml.safe_dump({"phases": rows}))
    with pytest.raises(ConfigError) as e:
        load_thresholds(path)
    assert e.value.key == key and str(path) in str(e.value)


# ---------------------------------------------------------------------------- --set


def test_set_overrides_are_typed_by_yaml():
    cfg = load_config(phase="phase1", overrides=[
        "training.epochs=7", "training.learning_rate=3e-4", "scaling.use_gpu=true", "scaling.gpus_per_worker=1",
        "deepspeed.precision=bf16", "training.task_mix={image_only: 0.5, spec_only: 0.0, both: 0.5}",
        "training.dropout=0", "validation.min_delta=1e-3"])
    assert cfg.training.epochs == 7 and isinstance(cfg.training.epochs, int)
    assert cfg.training.learning_rate == pytest.approx(3e-4)
    assert cfg.scaling.use_gpu is True and cfg.scaling.gpus_per_worker == 1.0
    assert cfg.deepspeed.precision == "bf16"
    assert (cfg.training.task_mix.image_only, cfg.training.task_mix.spec_only) == (0.5, 0.0)
    assert isinstance(cfg.training.dropout, float) and cfg.validation.min_delta == pytest.approx(1e-3)
    # Later overrides win; the file is untouched.
    assert load_config(phase="phase1", overrides=["training.epochs=2", "training.epochs=3"]).training.epochs == 3
    assert load_config(phase="phase1").training.epochs == 100


def test_an_unquoted_off_means_the_level_not_a_boolean(tmp_path):
    """YAML 1.1 reads off as False: `--set model.aesthetic_constraints=off` and an unquoted `off` in
    a file still name the level; a boolean where no word fits is still refused."""
    assert load_config(phase="phase1", overrides=["model.aesthetic_constraints=off"]).model.aesthetic_constraints == "off"
    path = tmp_path / "cfg.yaml"
    tree = C.read_yaml(PHASE1)
    tree["model"]["aesthetic_constraints"] = False  # what `aesthetic_constraints: off` parses to
    path.write_text(yaml.safe_dump(tree).replace("aesthetic_constraints: false", "aesthetic_constraints: off"))
    assert "aesthetic_constraints: off" in path.read_text()
    assert load_config(path).model.aesthetic_constraints == "off"
    with pytest.raises(ConfigError, match="allowed: 'fp32'"):
        load_config(phase="phase1", overrides=["deepspeed.precision=off"])


@pytest.mark.parametrize("item, key, fragments", [
    ("model.d_modle=64", "model.d_modle", ["--set", "unknown key", "d_model"]),
    ("training.epochs=five", "training.epochs", ["--set training.epochs=five", "an integer"]),
    ("training.epochs=0", "training.epochs", ["--set", "[1, inf]"]),
    ("deepspeed.zero_stage=5", "deepspeed.zero_stage", ["--set", "0, 1, 2, 3"]),
    ("training.epochs.inner=1", "training.epochs.inner", ["--set", "not a section"]),
    ("training.epochs", "training.epochs", ["--set", "key=value"]),
    # a GPU worker with no GPU reserved would get one anyway from Ray; say it in the config
    ("scaling.use_gpu=true", "scaling.gpus_per_worker", ["--set", "> 0 when scaling.use_gpu is true"]),
    ("deepspeed.offload_optimizer=true", "deepspeed.offload_optimizer", ["--set", "zero_stage 0"]),
])
def test_bad_set_override_names_set_and_key(item, key, fragments):
    with pytest.raises(ConfigError) as e:
        load_config(phase="phase1", overrides=[item])
    msg = str(e.value)
    assert e.value.key == key and f"'{key}'" in msg, msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_cli_set_error_exits_2_naming_the_key(capsys):
    assert cli_main(["config", "show", "--phase", "phase1", "--set", "model.n_heads=3"]) == 2
    err = capsys.readouterr().err
    assert "model.d_model" in err and "--set model.n_heads=3" in err and "multiple of model.n_heads (3)" in err


# ---------------------------------------------------------------------------- round trip


@pytest.mark.parametrize("phase", C.PHASES)
def test_dump_yaml_round_trip(tmp_path, phase):
    cfg = load_config(phase=phase, overrides=["training.epochs=3", "training.learning_rate=2e-4",
                                              "deepspeed.zero_stage=2", "schedule.batch=phi"])
    path = tmp_path / "dumped.yaml"
    path.write_text(dump_yaml(cfg))
    again = load_config(path)
    assert again == cfg
    assert dump_yaml(again) == dump_yaml(cfg)
    assert C.config_from_dict(cfg.to_dict()) == cfg


# ---------------------------------------------------------------------------- the shared builder


@dataclasses.dataclass
class _Item:
    x: int
    tag: Literal["a", "b"] | None = None


@dataclasses.dataclass
class _Tree:
    items: list[_Item]
    rate: float = 0.5
    label: str | None = None

    def __post_init__(self):
        C.in_range("rate", self.rate, 0.0, 1.0)


def test_from_dict_builds_any_dataclass_tree():
    t = C.from_dict(_Tree, {"items": [{"x": 1}, {"x": 2, "tag": "b"}], "rate": 1, "label": None})
    assert t == _Tree([_Item(1), _Item(2, "b")], 1.0) and isinstance(t.rate, float)
    assert C.from_dict(_Tree, dataclasses.asdict(t)) == t


@pytest.mark.parametrize("tree, key, fragments", [
    ({"items": [{"x": 1}, {"x": 2, "y": 3}]}, "items[1].y", ["unknown key", "allowed keys here: x, tag"]),
    ({"items": [{"x": 1}, {"x": "two"}]}, "items[1].x", ["must be an integer", "'two'"]),
    ({"items": [{"tag": "a"}]}, "items[0].x", ["is required"]),
    ({"items": [{"x": 1, "tag": "c"}]}, "items[0].tag", ["'c'", "allowed: 'a', 'b'"]),
    ({"items": {"x": 1}}, "items", ["a list of {x, tag}"]),
    ({"items": [3]}, "items[0]", ["a mapping of x, tag", "got 3"]),
    ({"items": [], "rate": True}, "rate", ["a number", "True"]),
    ({"items": [], "rate": 2.0}, "rate", ["[0.0, 1.0]"]),
    ({"items": [], "label": 5}, "label", ["a string"]),
    ([], "(file)", ["mapping at the top level"]),
])
def test_from_dict_errors_name_source_and_key_path(tree, key, fragments):
    with pytest.raises(ConfigError) as e:
        C.from_dict(_Tree, tree, source="tree.yaml")
    msg = str(e.value)
    assert e.value.key == key and e.value.source == "tree.yaml" and msg.startswith(f"tree.yaml: key '{key}'"), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


# ---------------------------------------------------------------------------- sweep files


SMALL_SWEEP = CONFIGS / "sweeps" / "phi_vs_baseline_small.yaml"


def _sweep_variant(tmp_path, edit) -> Path:
    tree = yaml.safe_load(SMALL_SWEEP.read_text())
    edit(tree)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


BAD_SWEEPS = {
    "unknown top-level key": (lambda t: t.update(seed=[1]), "seed", ["unknown key", "seeds", "learning_rates"]),
    "unknown section key": (lambda t: t["resources"].update(gpus=1), "resources.gpus",
                            ["unknown key", "gpus_per_worker"]),
    "unknown arm key": (lambda t: t["arms"][2].update(override=[]), "arms[2].override",
                        ["unknown key", "name, overrides, kind"]),
    "missing required": (lambda t: t.pop("target_val_loss"), "target_val_loss", ["is required"]),
    "seeds not a list": (lambda t: t.update(seeds=3), "seeds", ["a list of integers", "got 3"]),
    "seed not an integer": (lambda t: t.update(seeds=[0, 1, 2.5]), "seeds[2]", ["an integer", "2.5"]),
    "bool is not a number": (lambda t: t["resources"].update(trial_cpus=True), "resources.trial_cpus",
                             ["a number", "True"]),
    "section not a mapping": (lambda t: t.update(asha=True), "asha", ["a mapping of enabled", "grace_period"]),
    "arms not a list": (lambda t: t.update(arms={"name": "x"}), "arms", ["a list of {name, overrides, kind, family}"]),
    "override not a string": (lambda t: t["arms"][0].update(overrides=[1]), "arms[0].overrides[0]", ["a string"]),
    "bad arm kind": (lambda t: t["arms"][0].update(kind="fancy"), "arms[0].kind", ["'fancy'", "'phi', 'baseline'"]),
    "bad arm name": (lambda t: t["arms"][1].update(name="a/b"), "arms[1].name", ["without '/'", "'a/b'"]),
    "bad phase": (lambda t: t.update(phase="phase9"), "phase", ["'phase9'", "'phase1'"]),
    "out of range": (lambda t: t["asha"].update(reduction_factor=1), "asha.reduction_factor", ["[2, inf]"]),
    "lr out of range": (lambda t: t.update(learning_rates=[1e-3, 0.0]), "learning_rates[1]", ["(0.0, 1.0]"]),
    "gpus without use_gpu": (lambda t: t["resources"].update(gpus_per_worker=1.0), "resources.gpus_per_worker",
                             ["0 when resources.use_gpu is false"]),
    "wrong metric": (lambda t: t["asha"].update(metric="val_f1"), "asha.metric", ["'val_loss'", "'val_f1'"]),
    "bad arm override": (lambda t: t["arms"][0].update(overrides=["schedule.lr=nope"]), "arms[0].overrides (schedule.lr)",
                         ["unknown schedule 'nope'", "phi_decay"]),
    "missing base config": (lambda t: t.update(base_config="/nonexistent/base.yaml"), "base_config",
                            ["/nonexistent/base.yaml", "file not found"]),
}


@pytest.mark.parametrize("case", list(BAD_SWEEPS), ids=list(BAD_SWEEPS))
def test_bad_sweep_file_names_file_key_and_allowed(tmp_path, case):
    edit, key, fragments = BAD_SWEEPS[case]
    path = _sweep_variant(tmp_path, edit)
    with pytest.raises(ConfigError) as e:
        load_sweep(path)
    msg = str(e.value)
    assert e.value.key == key and e.value.source == str(path), msg
    assert msg.startswith(f"{path}: key '{key}'"), msg
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"


def test_sweep_values_take_their_annotated_types(tmp_path):
    path = _sweep_variant(tmp_path, lambda t: (t["resources"].update(trial_cpus=1, cpus_per_worker=2),
                                               t.update(learning_rates=[1, "3e-4"], target_val_loss=4)))
    spec = load_sweep(path)
    assert spec.resources.trial_cpus == 1.0 and isinstance(spec.resources.trial_cpus, float)
    assert spec.learning_rates == [1.0, 3e-4] and all(isinstance(x, float) for x in spec.learning_rates)
    assert isinstance(spec.target_val_loss, float) and spec.arms[0].kind is None


@pytest.mark.parametrize("path", sorted((CONFIGS / "sweeps").glob("*.yaml")), ids=lambda p: p.name)
def test_sweep_round_trip(tmp_path, path):
    spec = load_sweep(path)
    assert isinstance(spec, SweepConfig)
    assert sweep_from_dict(spec.to_dict()) == spec
    assert sweep_from_dict(json.loads(json.dumps(spec.to_dict()))) == spec  # how trials receive it
    dumped = tmp_path / "dumped.yaml"
    dumped.write_text(dump_yaml(spec))
    again = load_sweep(dumped)
    assert again == spec and dump_yaml(again) == dump_yaml(spec)


# ---------------------------------------------------------------------------- auto phase


SIZES = [(1, "phase1"), (2000, "phase1"), (2001, "phase2"), (4999, "phase2"), (5000, "phase3"),
         (9999, "phase3"), (10000, "phase4")]


@pytest.mark.parametrize("examples, phase", SIZES)
def test_choose_phase_boundaries(examples, phase):
    choice = choose_phase(examples)
    assert choice.phase == phase and choice.examples == examples
    assert f"{examples:,}" in choice.reason and phase in choice.reason
    nxt = {"phase1": ("phase2", 2001), "phase2": ("phase3", 5000), "phase3": ("phase4", 10000),
           "phase4": (None, None)}[phase]
    assert choice.next_phase == nxt[0]
    assert choice.examples_to_next == (None if nxt[1] is None else nxt[1] - examples)


def _tiny_rows(n: int, start: int):
    el = [{"type": "heading", "x": 0.1, "y": 0.1, "w": 0.5, "h": 0.1}]
    for i in range(start, start + n):
        yield {"id": f"t{i}", "section_type": "hero", "canvas_width": 1440, "canvas_height": 800,
               "image": None, "elements": el}


@pytest.fixture(scope="module")
def sized_datasets(tmp_path_factory):
    """One real dataset directory per size, split 80/10/10 over several shards (tiny rows)."""
    out = {}
    for n, _ in SIZES[1:]:
        root = tmp_path_factory.mktemp(f"ds{n}")
        train, val = int(n * 0.8), int(n * 0.1)
        write_split(root, "train", _tiny_rows(train, 0), shard_rows=3000)
        write_split(root, "val", _tiny_rows(val, train), shard_rows=3000)
        write_split(root, "test", _tiny_rows(n - train - val, train + val), shard_rows=3000)
        out[n] = root
    return out


@pytest.mark.parametrize("examples, phase", SIZES[1:])
def test_config_show_dataset_json(sized_datasets, capsys, examples, phase):
    assert cli_main(["config", "show", "--dataset", str(sized_datasets[examples]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["examples"] == examples and out["phase"] == phase
    assert out["config"]["phase"] == phase
    assert phase in out["reason"]
    lo, hi = PARAM_RANGES[phase]
    assert lo <= out["parameters"] <= hi


def test_config_show_dataset_via_console_script(sized_datasets):
    """The real `layoutray` command, in its own process, at the 5,000 boundary."""
    exe = Path(sys.executable).parent / "layoutray"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "cli.main"]
    p = subprocess.run(cmd + ["config", "show", "--dataset", str(sized_datasets[5000]), "--json"],
                       capture_output=True, text=True, timeout=120, cwd=REPO,
                       env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert (out["phase"], out["examples"], out["next_phase"], out["examples_to_next_phase"]) == \
        ("phase3", 5000, "phase4", 5000)


def test_config_show_bad_dataset(tmp_path, capsys):
    assert cli_main(["config", "show", "--dataset", str(tmp_path), "--json"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize("phase", C.PHASES)
def test_config_show_phase_parameters_in_seed_ranges(capsys, phase):
    assert cli_main(["config", "show", "--phase", phase, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    lo, hi = PARAM_RANGES[phase]
    assert out["phase"] == phase and lo <= out["parameters"] <= hi, out["parameters"]
    assert out["config"] == load_config(phase=phase).to_dict()


def test_config_error_survives_pickling():
    """A Ray worker's ConfigError reaches the driver pickled: it must arrive with its message, not
    as "ConfigError.__init__() missing 1 required positional argument"."""
    import pickle
    e = pickle.loads(pickle.dumps(C.ConfigError("schedule.warmup_fraction", "needs warmup steps > 0", "x.yaml")))
    assert isinstance(e, C.ConfigError) and (e.key, e.problem, e.source) == ("schedule.warmup_fraction",
                                                                             "needs warmup steps > 0", "x.yaml")
    assert str(e) == "x.yaml: key 'schedule.warmup_fraction': needs warmup steps > 0"

