"""`layoutray plan --set key=value` plans a modified config; activation checkpointing and the
precision are part of what is planned."""

from __future__ import annotations

import json

import pytest

from cli.main import main
from layoutray import plan as P
from layoutray.config import load_config


def test_set_changes_the_planned_config(capsys):
    assert main(["plan", "--phase", "phase4", "--gpus", "8", "--json",
                 "--set", "training.batch_size=64", "--set", "deepspeed.precision=fp16"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["shapes"]["config_global_batch"] == 64 and plan["shapes"]["config_micro_batch"] == 8
    assert plan["shapes"]["precision"] == "fp16"
    assert main(["plan", "--phase", "phase4", "--gpus", "8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["shapes"]["config_micro_batch"] == 4


def test_bad_set_is_a_config_error_naming_the_key(capsys):
    assert main(["plan", "--phase", "phase4", "--set", "training.bogus=1"]) == 2
    err = capsys.readouterr().err
    assert "training.bogus" in err and "activation_checkpointing" in err and "Traceback" not in err


def test_activation_checkpointing_cuts_activation_memory_and_adds_a_third_of_compute():
    on = P.make_plan("phase4", gpus=8, gpu="a100-80gb")
    off = P.make_plan("phase4", gpus=8, gpu="a100-80gb", overrides=["training.activation_checkpointing=false"])
    assert on["shapes"]["activation_checkpointing"] and not off["shapes"]["activation_checkpointing"]
    a_on, a_off = on["stages"][2]["activations_gib"], off["stages"][2]["activations_gib"]
    assert a_on < a_off / 3  # 10 layers per stack: keeping inputs only is far smaller
    assert on["stages"][2]["max_micro_batch"] > off["stages"][2]["max_micro_batch"]
    assert on["step"]["recompute_factor"] == pytest.approx(4 / 3) and off["step"]["recompute_factor"] == 1.0
    assert on["step"]["compute_time_s"] == pytest.approx(off["step"]["compute_time_s"] * 4 / 3)
    assert on["step"]["flops_per_example"] == off["step"]["flops_per_example"]  # MFU counts model FLOPs


def test_checkpointed_activations_by_hand():
    """kept inputs per layer + one block recomputed + logits + inputs, from the module's formula."""
    cfg = load_config(phase="phase2", overrides=["training.activation_checkpointing=true"])
    m, b = cfg.model, 3
    d, f, L = m.d_model, m.ff_mult, m.n_layers
    s = P.shapes(cfg, m.max_elements)
    Pn, S, T = s["patches"], s["spec_tokens"], s["layout_tokens"]
    M = Pn + S
    from layoutray.model.tokenizer import LayoutTokenizer
    V = LayoutTokenizer(bins=m.coord_bins).vocab_size
    one = max((18 + 4 * f) * Pn * b * d, (27 + 4 * f) * T * b * d + 6 * M * b * d)
    want = (L * (2 * b * d * (Pn + S + T) + 4 * M * b * d) + one + b * T * V * 10
            + b * Pn * m.image_channels * m.patch_size ** 2 * 2)
    assert P.activation_bytes(cfg, b) == want
