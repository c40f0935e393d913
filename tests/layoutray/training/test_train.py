"""End-to-end training through TorchTrainer + DeepSpeed (2 CPU workers) on tiny data.

Every test here runs real Ray Train workers, so the model and data are tiny: the point is the
plumbing (ZeRO stages, checkpoints, metrics history, the exported artifact, early stopping and
config errors), not what the model learns.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import metrics_rows
from layoutray.config import ConfigError, load_config
from layoutray.data.synth import synthesize

REPO = Path(__file__).resolve().parents[3]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.epochs=2", "training.batch_size=4",
        "validation.generate_examples=4", "training.max_steps_per_epoch=3",
        "scaling.num_workers=2", "scaling.cpus_per_worker=1"]
TEST_KEYS = ("token_accuracy", "element_precision@0.5", "element_recall@0.5", "element_f1@0.5",
             "element_f1@0.75", "mean_iou", "alignment", "overlap", "validity", "alignment_reference")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("sections")
    synthesize(d, 80, seed=3, shard_rows=40)
    return str(d)


def split_coordinators() -> int:
    """SplitCoordinator actors this Ray instance has started, alive or dead (one per split dataset per run)."""
    import ray
    from ray.util.state import list_actors
    # This instance's address: without it the state API looks for Ray instances on the machine
    # and refuses to pick one when another process runs its own.
    return len(list_actors(address=ray.get_runtime_context().gcs_address,
                           filters=[("class_name", "=", "SplitCoordinator")], limit=10_000))


@pytest.mark.parametrize("stage", [1, 3])
def test_two_workers_deepspeed_zero(ray_local, data_dir, tmp_path, stage):
    from layoutray.model.predictor import load as load_predictor
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=TINY + [f"deepspeed.zero_stage={stage}"])
    coordinators = split_coordinators()
    summary = run_training(cfg, data_dir, f"zero{stage}", str(tmp_path))
    run_dir = Path(summary["run_dir"])
    assert split_coordinators() - coordinators == 2  # train and val each split between the 2 workers

    history = metrics_rows(run_dir)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(r["restarts"] == 0 for r in history)
    assert all(r["global_step"] > 0 and r["val_loss"] > 0 for r in history)
    assert all(0 < r["data_wait_s"] <= r["train_seconds"] for r in history)
    assert "val_element_f1@0.5" in history[-1]
    assert (run_dir / "config.yaml").is_file()
    assert list((run_dir / "tensorboard").iterdir())

    model_dir = run_dir / "model"
    assert (model_dir / "config.yaml").is_file()
    predictor = load_predictor(model_dir)
    assert predictor.cfg.deepspeed.zero_stage == stage and predictor.cfg.model.d_model == 32
    out = predictor.predict(section_type="hero", elements=["heading", "button"])
    assert sorted(e["type"] for e in out[0]["elements"]) == ["button", "heading"]

    metrics = json.loads((run_dir / "metrics.json").read_text())
    missing = [k for k in TEST_KEYS if k not in metrics]
    assert not missing, f"metrics.json lacks {missing}; has {sorted(metrics)}"
    for k in ("token_accuracy", "element_f1@0.5", "validity"):
        assert 0.0 <= metrics[k] <= 1.0


def test_one_worker_reads_each_dataset_whole(ray_local, data_dir, tmp_path):
    """With one worker there is nothing to split: no SplitCoordinator actors (whose start-up
    epoch 1 would wait out), and the worker still trains on every batch of the train split."""
    from layoutray.data.pipeline import split_shards
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=TINY + ["scaling.num_workers=1", "training.epochs=1",
                                                         "training.max_steps_per_epoch=0",
                                                         "validation.generate_examples=0"])
    coordinators = split_coordinators()
    run_training(cfg, data_dir, "one", str(tmp_path), evaluate_test=False)
    assert split_coordinators() == coordinators
    (row,) = metrics_rows(tmp_path / "one")
    assert row["global_step"] == split_shards(Path(data_dir), "train")[1] // cfg.training.batch_size
    assert row["val_loss"] > 0


@pytest.mark.parametrize("stage,workers,offload", [(1, 1, False), (2, 2, False), (2, 1, True)])
def test_bf16_trains_and_exports_the_fp32_master_weights(ray_local, data_dir, tmp_path, stage, workers, offload):
    """The GPU phases' precision (phase2: ZeRO-1 bf16, phase3/4: ZeRO-2 bf16), run on CPU, where
    DeepSpeed supports bf16 too: float32 images into bf16 weights, losses in float32, and an
    artifact holding the optimizer's fp32 masters rather than the module's bf16 copies. With
    deepspeed.offload_optimizer the masters and the optimizer step live on the CPU."""
    import torch
    from safetensors.torch import load_file

    from layoutray.model.predictor import load as load_predictor
    from layoutray.training.driver import run_training

    overrides = TINY + [f"scaling.num_workers={workers}", f"deepspeed.zero_stage={stage}",
                        "deepspeed.precision=bf16", f"deepspeed.offload_optimizer={str(offload).lower()}"]
    cfg = load_config(phase="phase1", overrides=overrides)
    summary = run_training(cfg, data_dir, f"bf16z{stage}w{workers}", str(tmp_path), evaluate_test=False)
    run_dir = Path(summary["run_dir"])

    history = metrics_rows(run_dir)
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(0 < r["train_loss"] < 20 and 0 < r["val_loss"] < 20 for r in history)

    (weights,) = (run_dir / "model").glob("*.safetensors")
    sd = load_file(str(weights))
    assert {v.dtype for v in sd.values()} == {torch.float32}
    # bf16 copies widened to float32 would all round-trip through bf16 exactly; the masters,
    # updated in fp32 for 6 steps, almost never do.
    total = sum(v.numel() for v in sd.values())
    exact = sum(int((v.bfloat16().float() == v).sum()) for v in sd.values())
    assert exact / total < 0.5, f"{exact} of {total} exported values are bf16 values"

    out = load_predictor(run_dir / "model").predict(section_type="hero", elements=["heading", "button"])
    assert sorted(e["type"] for e in out[0]["elements"]) == ["button", "heading"]


def test_gpu_config_on_a_cpu_only_local_ray_is_a_config_error(ray_local, data_dir, tmp_path, monkeypatch):
    """Ray Train would retry starting a GPU worker group on this GPU-less instance without end;
    the driver refuses it first, naming the key and the overrides that run it on CPU."""
    from layoutray.training.driver import run_training

    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cfg = load_config(phase="phase2", overrides=["training.epochs=1"])
    assert ray_local.cluster_resources().get("GPU", 0) == 0
    with pytest.raises(ConfigError) as e:
        run_training(cfg, data_dir, "gpu", str(tmp_path), evaluate_test=False)
    assert e.value.key == "scaling.use_gpu"
    assert "has 0" in str(e.value) and "--set scaling.use_gpu=false --set scaling.gpus_per_worker=0" in str(e.value)


def test_early_stopping_and_name_reuse(ray_local, data_dir, tmp_path):
    from layoutray.training.driver import run_training

    # No epoch can improve the best loss by 100, so patience=1 stops after epoch 2
    # (epoch 1 always improves on +inf).
    cfg = load_config(phase="phase1", overrides=TINY + ["training.epochs=5", "validation.patience=1",
                                                         "validation.min_delta=100",
                                                         "validation.generate_examples=0"])
    run_training(cfg, data_dir, "early", str(tmp_path), evaluate_test=False)
    history = metrics_rows(tmp_path / "early")
    assert [r["epoch"] for r in history] == [1, 2]
    assert history[-1]["early_stop"] is True and history[0]["early_stop"] is False
    assert (tmp_path / "early" / "model").is_dir()

    with pytest.raises(ConfigError) as e:
        run_training(cfg, data_dir, "early", str(tmp_path), evaluate_test=False)
    assert "--name" in str(e.value) and "--resume" in str(e.value)
    assert len(metrics_rows(tmp_path / "early")) == 2  # the refused run wrote nothing


def test_bad_config_through_module_entrypoint(data_dir, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run([sys.executable, "-m", "trainables.train", "--data", data_dir, "--output", str(tmp_path),
                        "--phase", "phase1", "--set", "training.epochs=0"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "training.epochs" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not list(tmp_path.iterdir())  # refused before any run directory was made


def test_init_from_a_relative_path_trains_from_that_model(ray_local, data_dir, tmp_path, monkeypatch):
    import torch
    from layoutray.model.artifact import clean_state_dict, export_artifact, read_artifact
    from layoutray.model.network import build_model
    from layoutray.training.driver import run_training

    # One step at a learning rate too small to move any weight visibly: the exported model must
    # then be the one given to --init-from, not the run's own seed-0 initialisation.
    cfg = load_config(phase="phase1", overrides=TINY + [
        "scaling.num_workers=1", "training.epochs=1", "training.max_steps_per_epoch=1",
        "training.learning_rate=1e-9", "validation.generate_examples=0"])
    torch.manual_seed(123)
    start = clean_state_dict(build_model(cfg))
    export_artifact(start, cfg, tmp_path / "start")
    torch.manual_seed(cfg.training.seed)
    fresh = clean_state_dict(build_model(cfg))
    assert not torch.allclose(fresh["dec_blocks.0.attn.qkv.weight"], start["dec_blocks.0.attn.qkv.weight"])

    monkeypatch.chdir(tmp_path)  # the workers run elsewhere: the driver must resolve "start"
    summary = run_training(cfg, data_dir, "warm", "runs", init_from="start", evaluate_test=False)
    trained, _, _ = read_artifact(summary["model"])
    far = [k for k in start if not torch.allclose(trained[k], start[k], atol=1e-6)]
    assert not far, f"tensors not carried from --init-from: {far[:5]}"


def test_init_from_refuses_a_model_that_does_not_fit(data_dir, tmp_path):
    from layoutray.model.artifact import export_artifact
    from layoutray.model.network import build_model
    from layoutray.training.driver import check_init_from

    small = load_config(phase="phase1", overrides=TINY)
    export_artifact(build_model(small), small, tmp_path / "small")
    wider = load_config(phase="phase1", overrides=TINY + ["model.d_model=64"])
    with pytest.raises(ConfigError) as e:
        check_init_from(str(tmp_path / "small"), wider)
    assert e.value.key == "--init-from" and "model.d_model 32 vs 64" in str(e.value)
    assert "upgrade" not in str(e.value)  # the same phase: nothing to grow into
    with pytest.raises(ConfigError) as e:
        check_init_from(str(tmp_path / "small"), load_config(phase="phase2"))
    assert f"layoutray upgrade --model {tmp_path / 'small'} --to phase2" in str(e.value)

    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    p = subprocess.run([sys.executable, "-m", "trainables.train", "--data", data_dir, "--output",
                        str(tmp_path / "runs"), "--phase", "phase1", "--init-from", str(tmp_path / "nothing")],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    assert "--init-from" in p.stderr and "meta.json: missing" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "runs").exists()  # refused before any run directory was made
