"""fp16 with DeepSpeed's loss scaling beside bf16, and activation checkpointing as a switch.

The DeepSpeed config is checked as data (fast); one tiny run through Ray Train + DeepSpeed
trains in fp16 with activation checkpointing on this CPU (DeepSpeed runs fp16 on CPUs whose
oneDNN has fp16 kernels; elsewhere that test is skipped with the reason).
"""

from pathlib import Path

import pytest
import torch

from conftest import metrics_rows
from layoutray.config import ConfigError, load_config
from layoutray.data.synth import synthesize
from layoutray.model.network import build_model
from layoutray.training.loop import _ds_config, fp16_section

REPO = Path(__file__).resolve().parents[3]
TINY = ["model.d_model=32", "model.n_heads=2", "model.n_layers=2", "model.patch_size=32",
        "model.image_height=64", "model.image_width=96", "training.epochs=2", "training.batch_size=4",
        "validation.generate_examples=4", "training.max_steps_per_epoch=3"]


def _loop_cfg(cfg) -> dict:
    return {"repo_root": str(REPO), "micro_batch": cfg.micro_batch_size, "run_config": cfg.to_dict(),
            "training": {"batch_size": cfg.training.batch_size, "grad_clip": cfg.training.grad_clip},
            "deepspeed": {"zero_stage": cfg.deepspeed.zero_stage, "precision": cfg.deepspeed.precision,
                          "offload_optimizer": cfg.deepspeed.offload_optimizer}}


@pytest.mark.parametrize("precision,bf16,fp16", [("fp32", False, False), ("bf16", True, False),
                                                 ("fp16", False, True)])
def test_deepspeed_precision_sections(precision, bf16, fp16):
    cfg = load_config(phase="phase1", overrides=[f"deepspeed.precision={precision}", "deepspeed.zero_stage=2"])
    ds = _ds_config(_loop_cfg(cfg), world=1)
    assert ds["bf16"]["enabled"] is bf16 and ds["fp16"]["enabled"] is fp16
    assert ds["zero_optimization"]["stage"] == 2
    if fp16:  # dynamic loss scaling from 2^16, as configured
        assert ds["fp16"]["loss_scale"] == 0 and ds["fp16"]["initial_scale_power"] == 16


def test_fp16_loss_scale_settings_reach_deepspeed():
    cfg = load_config(phase="phase2", overrides=["deepspeed.precision=fp16", "deepspeed.loss_scale=128",
                                                 "deepspeed.initial_scale_power=12"])
    ds = _ds_config(_loop_cfg(cfg), world=1)
    assert ds["fp16"] == fp16_section({"precision": "fp16", "loss_scale": 128.0, "initial_scale_power": 12})
    assert ds["fp16"]["loss_scale"] == 128.0 and ds["fp16"]["initial_scale_power"] == 12


@pytest.mark.parametrize("override,key", [("deepspeed.precision=fp8", "deepspeed.precision"),
                                          ("deepspeed.loss_scale=-1", "deepspeed.loss_scale"),
                                          ("deepspeed.initial_scale_power=40", "deepspeed.initial_scale_power"),
                                          ("training.activation_checkpointing=maybe",
                                           "training.activation_checkpointing")])
def test_bad_precision_settings_name_the_key(override, key):
    with pytest.raises(ConfigError) as e:
        load_config(phase="phase1", overrides=[override])
    assert key in str(e.value)
    if "precision" in key:
        assert all(v in str(e.value) for v in ("'fp32'", "'bf16'", "'fp16'"))


def test_phase4_checkpoints_activations_and_the_others_do_not():
    assert load_config(phase="phase4").training.activation_checkpointing is True
    assert not any(load_config(phase=p).training.activation_checkpointing for p in ("phase1", "phase2", "phase3"))


def _grads(checkpointing: bool, dropout: float) -> tuple[torch.Tensor, dict]:
    cfg = load_config(phase="phase1", overrides=TINY + ["model.dense_cell=8", "training.dense_weight=1.0"])
    torch.manual_seed(0)
    model = build_model(cfg, dropout=dropout)
    model.activation_checkpointing = checkpointing
    model.train()
    g = torch.Generator().manual_seed(1)
    B = 3
    image = torch.rand(B, 1, 64, 96, generator=g)
    spec = torch.randint(1, 20, (B, 5), generator=g)
    tokens = torch.randint(1, model.vocab_size, (B, 12), generator=g)
    has_image = torch.tensor([True, False, True])
    torch.manual_seed(2)  # the same dropout masks in both runs
    logits, dense = model(image, has_image, spec, tokens[:, :-1], dense=True)
    loss = model.loss(logits, tokens[:, 1:]) + model.dense_loss(dense, tokens, has_image)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(dropout):
    """Recomputation must reproduce the forward exactly, dropout masks included (the RNG state is
    restored), or the gradients would belong to a different network than the loss."""
    loss0, g0 = _grads(False, dropout)
    loss1, g1 = _grads(True, dropout)
    assert torch.equal(loss0, loss1)
    assert g0.keys() == g1.keys() and len(g0) > 10
    for k in g0:
        assert torch.allclose(g0[k], g1[k], atol=1e-6, rtol=1e-5), k


@pytest.mark.parametrize("decoder", ["autoregressive", "diffusion"])
def test_activation_checkpointing_recomputes_the_blocks(decoder):
    """It is really on: each block's forward runs twice per training step (forward + recompute),
    the diffusion denoiser's blocks as the AR decoder's."""
    cfg = load_config(phase="phase1", overrides=TINY + [f"model.decoder={decoder}", "model.max_elements=8"])
    model = build_model(cfg, dropout=0.0)
    calls = []
    blocks = model.diffusion.blocks if decoder == "diffusion" else model.dec_blocks
    for blk in blocks:  # (forward hooks do not fire during torch's recomputation)
        def counted(*args, _orig=blk.forward):
            calls.append(1)
            return _orig(*args)
        blk.forward = counted
    tokens = torch.randint(1, model.vocab_size, (2, 10))  # (a diffusion canvas is whole slots of 5)
    for on, want in ((False, 2), (True, 4)):
        calls.clear()
        model.activation_checkpointing = on
        out = model(torch.rand(2, 1, 64, 96), torch.tensor([True, True]), torch.randint(1, 9, (2, 4)), tokens)
        out.float().sum().backward()
        assert len(calls) == want, (on, len(calls))
    model.eval()
    with torch.no_grad():  # never in evaluation: nothing to recompute for
        calls.clear()
        model(torch.rand(2, 1, 64, 96), torch.tensor([True, True]), torch.randint(1, 9, (2, 4)), tokens)
        assert len(calls) == 2


@pytest.mark.slow
def test_fp16_with_activation_checkpointing_trains_through_deepspeed(ray_local, tmp_path):
    from deepspeed.accelerator import get_accelerator

    from layoutray.training.driver import run_training

    if not get_accelerator().is_fp16_supported():
        pytest.skip(f"DeepSpeed's {get_accelerator().device_name()} accelerator has no fp16 on this machine")
    data = tmp_path / "data"
    synthesize(data, 60, seed=5, shard_rows=30)
    cfg = load_config(phase="phase1", overrides=TINY + ["deepspeed.precision=fp16", "deepspeed.zero_stage=1",
                                                        "training.activation_checkpointing=true"])
    summary = run_training(cfg, str(data), "fp16", str(tmp_path), evaluate_test=False)
    history = metrics_rows(Path(summary["run_dir"]))
    assert [r["epoch"] for r in history] == [1, 2]
    assert all(0 < r["train_loss"] < 20 and 0 < r["val_loss"] < 20 for r in history)
    from safetensors.torch import load_file
    (weights,) = (Path(summary["run_dir"]) / "model").glob("*.safetensors")
    sd = load_file(str(weights))
    assert {v.dtype for v in sd.values()} == {torch.float32}
    # the exported weights are the fp32 masters, not fp16 copies widened back
    total = sum(v.numel() for v in sd.values())
    exact = sum(int((v.half().float() == v).sum()) for v in sd.values())
    assert exact / total < 0.5, f"{exact} of {total} exported values are fp16 values"
