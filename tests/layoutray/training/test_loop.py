"""The per-worker loop's pieces that can be checked without Ray (the loop itself: test_train.py)."""

import copy

import torch

from layoutray.config import load_config
from layoutray.model.network import build_model
from layoutray.training.loop import make_optimizer


def test_make_optimizer_is_fused_adamw_with_the_reference_update():
    cfg = load_config(phase="phase1", overrides=["model.d_model=32", "model.n_heads=2", "model.n_layers=1",
                                                 "training.weight_decay=0.1"])
    torch.manual_seed(0)
    model = build_model(cfg)
    ref_model = copy.deepcopy(model)
    opt = make_optimizer(model, cfg.training)
    assert opt.defaults["fused"] is True
    # norms, biases and embeddings are not decayed; every matrix is
    decayed = {id(p) for g in opt.param_groups if g["weight_decay"] > 0 for p in g["params"]}
    for name, p in model.named_parameters():
        assert (id(p) in decayed) == (p.dim() >= 2 and "emb" not in name), name
    # the same update as torch's unfused AdamW on the same groups
    name_of = {id(p): n for n, p in model.named_parameters()}
    ref_params = dict(ref_model.named_parameters())
    ref = torch.optim.AdamW([{"params": [ref_params[name_of[id(p)]] for p in g["params"]],
                              "weight_decay": g["weight_decay"]} for g in opt.param_groups],
                            lr=cfg.training.learning_rate, betas=(0.9, 0.98), eps=1e-8, foreach=False)
    for step in range(3):
        for m, o in ((model, opt), (ref_model, ref)):
            torch.manual_seed(step)
            loss = sum((p * torch.randn_like(p)).sum() for p in m.parameters())
            o.zero_grad()
            loss.backward()
            o.step()
    for (name, p), q in zip(model.named_parameters(), ref_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
