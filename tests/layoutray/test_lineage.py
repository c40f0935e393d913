"""Lineage in every artifact's meta.json (layoutray.lineage) and `layoutray model show`."""

import json
from pathlib import Path

import pytest

from conftest import tiny_serving_artifact
from layoutray.config import load_config
from layoutray.data.stream import parse_source
from layoutray.lineage import (complete, config_hash, dataset_fingerprint, format_lineage, git_commit,
                               manifest_fingerprint, parent_model, training_lineage, weights_sha256)


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    from layoutray.data.synth import synthesize

    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 12, seed=5, shard_rows=6)
    return d


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return Path(tiny_serving_artifact(tmp_path_factory.mktemp("model") / "m", seed=4))


def test_config_hash_follows_the_model_settings_not_where_the_run_is_tracked():
    base = load_config(phase="phase1")
    assert config_hash(base) == config_hash(load_config(phase="phase1"))
    tracked = load_config(phase="phase1", overrides=["tracking.backend=mlflow", "tracking.experiment=x"])
    assert config_hash(tracked) == config_hash(base)
    assert config_hash(load_config(phase="phase1", overrides=["training.learning_rate=0.001"])) != config_hash(base)
    assert len(config_hash(base)) == 64


def test_dataset_fingerprint_is_the_manifest_hash(tiny_dataset):
    cfg = load_config(phase="phase1")
    fp = dataset_fingerprint(parse_source(str(tiny_dataset)), cfg)
    manifest = json.loads((tiny_dataset / "manifest.json").read_text())
    assert fp == {"kind": "dataset", "path": str(tiny_dataset), "manifest_sha256": manifest_fingerprint(manifest),
                  "examples": 12}
    # the same shards written at another time: the same fingerprint; other shards: another
    assert manifest_fingerprint({**manifest, "created": "2000-01-01T00:00:00Z"}) == fp["manifest_sha256"]
    changed = {**manifest, "shards": [{**manifest["shards"][0], "sha256": "0" * 64}, *manifest["shards"][1:]]}
    assert manifest_fingerprint(changed) != fp["manifest_sha256"]
    mixed = dataset_fingerprint(parse_source(str(tiny_dataset)),
                                load_config(phase="phase1", overrides=["data.synth_mix=0.5", "training.seed=9"]))
    assert mixed["synth_mix"] == {"share": 0.5, "seed": 9}


def test_synthetic_stream_fingerprint_is_its_seed():
    cfg = load_config(phase="phase1", overrides=["data.synth_per_epoch=300"])
    assert dataset_fingerprint(parse_source("synth:7"), cfg) == {"kind": "synth-stream", "seed": 7, "per_epoch": 300}


def test_git_commit_of_this_checkout_and_from_the_environment(monkeypatch, tmp_path):
    import subprocess

    from layoutray.config import REPO_ROOT

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
    monkeypatch.delenv("LAYOUTRAY_GIT_COMMIT", raising=False)
    got = git_commit()
    assert got["commit"] == head and got["dirty"] in (True, False)
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}  # no repository there
    monkeypatch.setenv("LAYOUTRAY_GIT_COMMIT", "abc123")
    assert git_commit(tmp_path) == {"commit": "abc123", "dirty": None}


def test_every_export_records_lineage(artifact):
    meta = json.loads((artifact / "meta.json").read_text())
    lin = meta["lineage"]
    cfg = load_config(artifact / "config.yaml")
    assert lin["config_hash"] == config_hash(cfg)
    assert lin["code"]["commit"] == git_commit()["commit"]
    assert lin["data"] is None and lin["parent"] is None and lin["tracking_run_id"] is None


def test_training_lineage_names_data_parent_and_run(tiny_dataset, artifact):
    cfg = load_config(artifact / "config.yaml")
    lin = training_lineage(cfg, parse_source(str(tiny_dataset)), str(artifact), "run-42")
    assert lin["tracking_run_id"] == "run-42" and lin["data"]["kind"] == "dataset"
    assert lin["parent"] == parent_model(artifact)
    assert lin["parent"]["weights_sha256"] == weights_sha256(artifact) and lin["parent"]["phase"] == "phase1"
    assert lin["parent"]["config_hash"] == config_hash(cfg)
    full = complete({"data": lin["data"], "tracking_run_id": "run-42"}, cfg)
    assert full["config_hash"] == config_hash(cfg) and full["tracking_run_id"] == "run-42"


def test_an_upgraded_model_names_its_parent(artifact, tmp_path):
    from layoutray.model.upgrade import upgrade_artifact

    grow = ["model.d_model=64", "model.n_heads=4", "model.n_layers=1", "model.ff_mult=2", "model.patch_size=32",
            "model.image_height=64", "model.image_width=96", "model.max_elements=8", "model.max_seq_len=48",
            "model.coord_bins=32", "model.max_spec_len=16"]
    res = upgrade_artifact(artifact, "phase2", tmp_path / "up", examples=4, force=True, overrides=grow)
    lin = json.loads((Path(res["out"]) / "meta.json").read_text())["lineage"]
    assert lin["parent"]["weights_sha256"] == weights_sha256(artifact)
    assert lin["parent"]["path"] == str(artifact) and lin["parent"]["phase"] == "phase1"


def test_format_lineage():
    lines = format_lineage({"config_hash": "f" * 64, "code": {"commit": "c0ffee", "dirty": True},
                            "data": {"kind": "synth-stream", "seed": 3, "per_epoch": 100},
                            "parent": {"path": "/m/p", "phase": "phase1", "weights_sha256": "a" * 64,
                                       "tracking_run_id": "r1"}, "tracking_run_id": "r2"})
    text = "\n".join(lines)
    assert "synthetic stream, seed 3" in text and "ffffffffffff" in text and "c0ffee (uncommitted changes)" in text
    assert "/m/p (phase1, weights aaaaaaaaaaaa, run r1)" in text and "tracking run:  r2" in text
    assert "none recorded" in format_lineage(None)[0]


def test_model_show_prints_lineage(artifact, capsys):
    from cli.main import main

    assert main(["model", "show", str(artifact)]) == 0
    out = capsys.readouterr().out
    assert f"model:     {artifact}" in out and "phase:     phase1" in out
    assert "config hash:" in out and git_commit()["commit"] in out and "trained from scratch" in out
    assert main(["model", "show", str(artifact), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["lineage"]["config_hash"] == config_hash(
        load_config(artifact / "config.yaml"))


def test_model_show_names_a_missing_model(tmp_path, capsys):
    from cli.main import main

    assert main(["model", "show", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nothing/meta.json: missing" in err
