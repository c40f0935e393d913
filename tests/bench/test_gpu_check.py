"""bench/gpu_check.py: on a machine without a CUDA GPU it exits with one line saying why; its
--dry-run runs the same code paths (matmul peak, Ray Train + DeepSpeed steps per ZeRO stage, MFU,
plan comparison, KV-cache decode latency) on the CPU at a tiny size and writes its results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))

import gpu_check  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_exits_with_one_line_and_no_traceback(tmp_path):
    p = subprocess.run([sys.executable, "bench/gpu_check.py", "--results-dir", str(tmp_path)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == gpu_check.NO_GPU_EXIT, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("gpu_check: ") and "--dry-run" in lines[0], p.stderr
    assert "CUDA" in lines[0] and "Traceback" not in p.stderr and p.stdout == ""
    assert not list(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize("argv,what", [(["--phases", "phase9"], "--phases"), (["--stages", "4"], "--stages"),
                                       (["--stages", "x"], "--stages"), (["--steps", "0"], "--steps")])
def test_bad_arguments_are_refused(argv, what, capsys):
    with pytest.raises(SystemExit) as e:
        gpu_check.parse_args(argv)
    assert e.value.code == 2 and what in capsys.readouterr().err


def test_run_overrides_keep_the_phase_and_change_only_what_the_check_needs():
    args = gpu_check.parse_args(["--stages", "3", "--steps", "7"])
    cfg = gpu_check.run_config("phase4", args, 3)
    assert cfg.phase == "phase4" and cfg.model.d_model == 384  # the real Phase 4 model
    assert cfg.deepspeed.zero_stage == 3 and cfg.deepspeed.precision == "bf16"
    assert cfg.scaling.num_workers == 1 and cfg.scaling.use_gpu and cfg.scaling.gpus_per_worker == 1
    assert cfg.training.epochs == 2 and cfg.training.max_steps_per_epoch == 7
    assert cfg.training.activation_checkpointing  # phase 4's setting stays on
    assert cfg.data.synth_per_epoch == cfg.training.batch_size * 7 and cfg.validation.generate_examples == 0


def test_goals_over_measured_figures():
    train = {"phase3": {"2": {"ok": True, "mfu": 0.45, "memory_vs_plan": 1.1}},
             "phase4": {"2": {"ok": True, "mfu": 0.41, "memory_vs_plan": 0.85}, "3": {"ok": False, "error": "OOM"}}}
    g = gpu_check.goals(train)
    assert g["phase3_4_mfu_ge_0.40"] is True and g["memory_within_20pct_of_plan"] is True
    train["phase4"]["2"]["mfu"] = 0.3
    train["phase3"]["2"]["memory_vs_plan"] = 1.3
    g = gpu_check.goals(train)
    assert g["phase3_4_mfu_ge_0.40"] is False and g["memory_within_20pct_of_plan"] is False
    assert g["memory_vs_plan_range"] == [0.85, 1.3]
    assert gpu_check.goals({})["phase3_4_mfu_ge_0.40"] is None


@pytest.mark.slow
def test_dry_run_measures_every_part_and_writes_the_results(ray_local, tmp_path):
    """The same code paths as on a GPU, tiny and on the CPU: one phase at ZeRO-3 (the stage whose
    parameters are partitioned and gathered; stages 0-2 train in tests/layoutray/training)."""
    from jsonout import BenchRun

    args = gpu_check.parse_args(["--dry-run", "--phases", "phase2", "--stages", "3", "--steps", "2",
                                 "--decode-reps", "2", "--results-dir", str(tmp_path)])
    run = BenchRun("gpu_check", results_dir=args.results_dir, argv=["gpu_check.py", "--dry-run"])
    figures = gpu_check.measure(args, run, {"dry_run": True}, tmp_path / "runs")
    partial = json.loads((tmp_path / "gpu_check.json").read_text())
    assert partial["partial"] is True and set(partial["figures"]["train"]["phase2"]) == {"3"}
    run.finish(None, config={"dry_run": True}, figures=figures)
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    assert "partial" not in doc and doc["name"] == "gpu_check"
    f = doc["figures"]
    assert f["peak"]["tflops"] > 0 and f["peak"]["device"] == "cpu"
    for stage in ("3",):
        r = f["train"]["phase2"][stage]
        assert r["ok"], r.get("error")
        assert r["epochs"] == 2 and r["steps"] == 2 and r["samples"] == 2 * 4
        assert 0 < r["mfu"] < 1 and r["flops_per_sample"] > 0 and r["compute_step_s"] > 0
        assert r["plan_gib"] > 0 and r["plan_gib"] < r["plan_total_gib"]
        assert "gpu_max_memory_gib" not in r  # no GPU: no measured memory to compare
    d = f["decode"]["phase2"]
    assert d["elements"] == 8 and d["decoder_steps"] == 41 and 0 < d["min_ms"] <= d["p50_ms"] <= d["p95_ms"]
    assert f["goals"]["phase3_4_mfu_ge_0.40"] is None  # no phase 3/4 run measured
