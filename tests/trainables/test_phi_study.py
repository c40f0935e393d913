"""configs/sweeps/phi_study.yaml: every PHI family against constant, warmup+cosine and a
Tune-searched baseline, on the synthetic stream, compared on F1; and a tiny run of it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from layoutray.sweep_config import load_sweep, sweep_from_dict
from trainables.baseline_search import RESULT_FILE, choose, search_spec, with_tuned_baseline

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "configs" / "sweeps" / "phi_study.yaml"
FAMILIES = {"lr", "batch", "regularization", "phases", "full"}


@pytest.fixture(scope="module")
def study():
    return load_sweep(STUDY)


def test_every_phi_family_and_the_baselines_are_arms(study):
    fam = {a.name: a.family for a in study.arms}
    assert {"constant", "warmup_cosine"} <= {n for n, f in fam.items() if f == "baseline"}
    assert FAMILIES <= set(fam.values())
    lrs = {study.run_config(a.name, 0, None).schedule.lr for a in study.arms if a.family == "lr"}
    assert {"phi_decay", "phi_warmup", "phi_warmup_normalized", "phi_cosine"} <= lrs
    assert study.metric == "val_element_f1@0.5" and study.data.stream and len(study.seeds) >= 5
    assert study.run_config("constant", 0, None).validation.generate_examples >= 32
    assert study.baseline_search is not None and {"warmup_cosine", "one_cycle"} <= set(study.baseline_search.lr_schedules)


def test_non_lr_arms_differ_from_warmup_cosine_in_their_family_only(study):
    base = dataclasses.asdict(study.run_config("warmup_cosine", 0, None).schedule)
    touched = {"batch": {"batch"}, "regularization": {"regularization"}, "phases": {"phi_phases", "sampler"}}
    for arm in study.arms:
        if arm.family in touched:
            sch = dataclasses.asdict(study.run_config(arm.name, 0, None).schedule)
            assert {k for k in sch if sch[k] != base[k]} == touched[arm.family], arm.name
    assert study.arm_kind("phi_batch") == "phi" and study.arm_kind("constant") == "baseline"


def test_batch_growth_keeps_the_samples_and_grows_accumulation(study):
    from layoutray.schedules import batch_schedule
    cfg = study.run_config("phi_batch", 0, None)
    sizes = [batch_schedule(t, 90, cfg.training.batch_size, 3, 0, cfg.micro_batch_size, 1) for t in (0, 30, 60)]
    assert sizes == [8, 16, 24]  # 8 * phi^k rounded to whole micro-batches of 8: accumulation 1, 2, 3
    assert not cfg.training.max_steps_per_epoch  # an epoch is its samples, so the phi arm takes fewer steps


def test_search_grid_and_choice():
    spec = load_sweep(STUDY)
    search = search_spec(spec)
    assert search.name == "phi_study-search" and not search.asha.enabled and search.baseline_search is None
    assert len(search.arms) == 2 * 2 * 2 and all(a.kind == "baseline" for a in search.arms)
    sweep_from_dict(search.to_dict())  # a valid sweep of its own
    recs = [{"arm": a, "kind": "baseline", "seed": 0, "trial_id": a, "status": "completed",
             "history": [{"epoch": 1, "global_step": 5, "val_loss": loss, "val_element_f1@0.5": f1}]}
            for a, loss, f1 in (("one_cycle_w0.2_lr0.001", 2.0, 0.4), ("warmup_cosine_w0.05_lr0.001", 1.5, 0.3))]
    assert choose(recs, "val_element_f1@0.5", 1.0) == ("one_cycle_w0.2_lr0.001", pytest.approx(0.4))
    assert choose(recs, "val_loss", 1.0)[0] == "warmup_cosine_w0.05_lr0.001"


def test_a_recorded_search_winner_becomes_the_tuned_arm(tmp_path):
    tree = yaml.safe_load(STUDY.read_text())
    tree["storage_path"] = str(tmp_path)
    spec = sweep_from_dict(tree, "study")
    d = search_spec(spec).experiment_dir
    d.mkdir(parents=True)
    (d / RESULT_FILE).write_text(json.dumps({"arm": "one_cycle_w0.2_lr0.001", "metric": spec.metric, "value": 0.4,
                                             "overrides": ["schedule.lr=one_cycle", "schedule.warmup_fraction=0.2",
                                                           "training.learning_rate=0.001"]}))
    out, resume = with_tuned_baseline(spec, resume=True, config_path=None)
    assert out.arms[-1].name == "tuned_baseline" and out.arm_kind("tuned_baseline") == "baseline"
    cfg = out.run_config("tuned_baseline", 0, None)
    assert cfg.schedule.lr == "one_cycle" and cfg.training.learning_rate == 0.001
    assert out.baseline_search is None and resume is False  # no arms experiment yet: a fresh start
    assert sweep_from_dict(out.to_dict()) == out  # what the trials receive


@pytest.mark.parametrize("change,key", [({"lr_schedules": ["phi_decay"]}, "baseline_search.lr_schedules[0]"),
                                        ({"warmup_fractions": [1.5]}, "baseline_search.warmup_fractions[0]"),
                                        ({"bogus": 1}, "baseline_search.bogus")])
def test_bad_baseline_search_names_the_key(change, key):
    from layoutray.config import ConfigError
    tree = yaml.safe_load(STUDY.read_text())
    tree["baseline_search"].update(change)
    with pytest.raises(ConfigError) as e:
        sweep_from_dict(tree, "study.yaml")
    assert key in str(e.value) and "study.yaml" in str(e.value)
