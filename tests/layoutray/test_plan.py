"""`layoutray plan`: the numbers are internally consistent and come from the documented sources."""

from __future__ import annotations

import json

import pytest

from layoutray import plan as P
from cli.main import main
from layoutray.config import load_config


@pytest.fixture(scope="module")
def phase4_a100():
    return P.make_plan("phase4", gpus=8, gpu="a100-80gb")


def test_json_has_documented_keys(phase4_a100):
    assert set(P.JSON_KEYS) <= set(phase4_a100)
    assert [s["stage"] for s in phase4_a100["stages"]] == [0, 1, 2, 3]
    for s in phase4_a100["stages"]:
        assert set(P.STAGE_KEYS) <= set(s)
    for k in ("zero_stage", "micro_batch", "grad_accumulation", "reason"):
        assert k in phase4_a100["recommended"]
    for k in ("examples", "steps", "time_s", "gpu_hours", "price_per_gpu_hour", "cost_usd"):
        assert k in phase4_a100["epoch"]
    json.dumps(phase4_a100)  # serialisable as is


@pytest.mark.parametrize("gpus", [2, 8, 16])
def test_model_states_shrink_with_each_zero_stage(gpus):
    st = P.make_plan("phase4", gpus=gpus, gpu="a100-40gb")["stages"]
    m = [s["model_states_gib"] for s in st]
    assert m[3] < m[2] < m[1] < m[0]


def test_stage0_and_stage2_match_deepspeeds_formulas(phase4_a100):
    """DeepSpeed's ZeRO-2 estimator without offload is 2P + 18P/N bytes; stage 0 is 20P."""
    n = phase4_a100["parameters"]["count"]
    st = {s["stage"]: s["model_states_gib"] * P.GIB for s in phase4_a100["stages"]}
    assert st[2] == pytest.approx(2 * n + 18 * n / 8, abs=1)
    assert st[0] == pytest.approx(20 * n, abs=1)
    assert st[1] == pytest.approx(4 * n + 16 * n / 8, abs=1)
    assert "estimate_zero2_model_states_mem_needs" in phase4_a100["stages"][2]["model_states_source"]
    assert "estimate_zero3_model_states_mem_needs" in phase4_a100["stages"][3]["model_states_source"]
    # DeepSpeed's printed tables were captured (and cross-checked inside make_plan)
    assert "per GPU" in phase4_a100["deepspeed_estimator_report"]


def test_one_gpu_has_nothing_to_partition():
    st = P.make_plan("phase2", gpus=1, gpu="a100-40gb")
    m = [s["model_states_gib"] for s in st["stages"]]
    assert m[0] == pytest.approx(m[1]) == pytest.approx(m[2])
    assert st["recommended"]["zero_stage"] == 0
    assert all(s["comm_bytes_per_step"] == 0 for s in st["stages"])


@pytest.mark.parametrize("gpu", sorted(P.GPUS))
def test_recommended_stage_fits(gpu):
    p = P.make_plan("phase4", gpus=8, gpu=gpu)
    rec = p["recommended"]
    row = p["stages"][rec["zero_stage"]]
    assert row["fits"] and row["total_gib"] <= P.GPUS[gpu].memory_gib * (1 - P.HEADROOM)
    assert rec["total_gib"] <= P.GPUS[gpu].memory_gib * (1 - P.HEADROOM)
    assert 1 <= rec["micro_batch"] <= row["max_micro_batch"]
    assert rec["micro_batch"] * rec["grad_accumulation"] * 8 == load_config(phase="phase4").training.batch_size


def test_recommends_a_smaller_micro_batch_when_the_configured_one_does_not_fit():
    cfg = load_config(phase="phase4", overrides=["training.batch_size=65536"])
    p = P.make_plan(gpus=8, gpu="a100-40gb", cfg=cfg)
    rec = p["recommended"]
    assert rec["micro_batch"] < 65536 // 8
    assert rec["micro_batch"] * rec["grad_accumulation"] >= 65536 // 8
    assert not p["stages"][rec["zero_stage"]]["fits"]  # at the configured micro-batch
    assert rec["total_gib"] <= 40 * (1 - P.HEADROOM)
    assert P.activation_bytes(cfg, rec["micro_batch"]) < P.activation_bytes(cfg, 2 * rec["micro_batch"])


def test_cost_scales_with_price_and_time_with_utilisation():
    a = P.make_plan("phase4", gpus=8, gpu="h100-80gb", price_per_gpu_hour=2.0)
    b = P.make_plan("phase4", gpus=8, gpu="h100-80gb", price_per_gpu_hour=6.0)
    assert b["epoch"]["cost_usd"] == pytest.approx(3 * a["epoch"]["cost_usd"])
    assert a["epoch"]["time_s"] == b["epoch"]["time_s"]
    assert a["epoch"]["price_source"] == "--price-per-gpu-hour"
    d = P.make_plan("phase4", gpus=8, gpu="h100-80gb")
    assert d["epoch"]["price_per_gpu_hour"] == P.GPUS["h100-80gb"].price_per_gpu_hour
    slow = P.make_plan("phase4", gpus=8, gpu="h100-80gb", utilisation=0.2)
    assert slow["step"]["compute_time_s"] == pytest.approx(2 * d["step"]["compute_time_s"])
    more = P.make_plan("phase4", gpus=8, gpu="h100-80gb", examples=30000)
    assert more["epoch"]["steps"] == 2 * d["epoch"]["steps"]


def test_step_time_from_flops_at_the_stated_utilisation(phase4_a100):
    s = phase4_a100["step"]
    peak = 312e12 * P.DEFAULT_UTILISATION
    assert s["compute_time_s"] == pytest.approx(s["micro_batch"] * s["grad_accumulation"]
                                                * s["flops_per_example"] * s["recompute_factor"] / peak)
    assert s["step_time_s"] == pytest.approx(s["compute_time_s"] + s["comm_time_s"])
    # the model's exact GEMM count and the per-stack 6*N*D rule agree within 2x
    assert 0.5 < s["flops_per_example"] / s["flops_6nd_per_example"] < 2
    assert phase4_a100["epoch"]["time_s"] == pytest.approx(phase4_a100["epoch"]["steps"] * s["step_time_s"])


def test_h100_is_faster_than_a100():
    a = P.make_plan("phase4", gpus=8, gpu="a100-80gb")
    h = P.make_plan("phase4", gpus=8, gpu="h100-80gb")
    assert h["step"]["step_time_s"] < a["step"]["step_time_s"]


@pytest.mark.parametrize("decoder", ["autoregressive", "diffusion"])
@pytest.mark.parametrize("phase", ["phase1", "phase2", "phase3", "phase4"])
def test_analytic_parameter_count_cross_checks_the_model(phase, decoder):
    cfg = load_config(phase=phase, overrides=[f"model.decoder={decoder}"])
    assert P.analytic_parameters(cfg) == P.parameter_count(cfg)[0]


def test_the_diffusion_decoder_reads_its_whole_canvas():
    """A denoiser step reads all max_elements slots whatever the section holds, so its FLOPs per
    example exceed the AR decoder's for a short section and do not shrink with fewer elements."""
    ar, dm = (load_config(phase="phase2", overrides=[f"model.decoder={d}"]) for d in ("autoregressive", "diffusion"))
    assert P.shapes(dm, 3)["layout_tokens"] == P.shapes(dm, 12)["layout_tokens"] == 5 * dm.model.max_elements
    assert P.flops_per_example(dm, 3)[0] > P.flops_per_example(ar, 3)[0]
    assert P.flops_per_example(ar, 3)[0] < P.flops_per_example(ar, 12)[0]


def test_rejects_bad_inputs():
    with pytest.raises(ValueError):
        P.make_plan("phase4", gpus=12)  # more than a node but not whole nodes
    with pytest.raises(ValueError):
        P.make_plan("phase4", gpus=8, gpu="v100")
    with pytest.raises(ValueError):
        P.make_plan("phase4", gpus=8, price_per_gpu_hour=-1)


def test_cli_text_and_json(capsys):
    assert main(["plan", "--phase", "phase4", "--gpus", "8", "--gpu", "a100-80gb"]) == 0
    text = capsys.readouterr().out
    assert "recommended: ZeRO-" in text and "per epoch" in text
    assert main(["plan", "--phase", "phase3", "--gpus", "2", "--gpu", "a100-40gb", "--json",
                 "--price-per-gpu-hour", "1.5"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["phase"] == "phase3" and out["gpus"] == 2 and out["epoch"]["price_per_gpu_hour"] == 1.5


def test_cli_reports_bad_gpu_count(capsys):
    assert main(["plan", "--gpus", "12"]) == 2
    assert "multiple of 8" in capsys.readouterr().err
