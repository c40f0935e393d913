"""Upgrade carries weights into the next phase's model at the mapped places."""

import torch

from layoutray.config import load_config
from layoutray.model.network import build_model
from layoutray.model.upgrade import layer_map, resample_patch_kernel, upgrade_state_dict

SMALL = ["model.ff_mult=2"]


def test_layer_map_keeps_ends_and_order():
    assert layer_map(4, 6) == {0: 0, 1: 2, 2: 3, 3: 5}
    for lo, hi in ((4, 6), (6, 8), (8, 10), (3, 3)):
        m = layer_map(lo, hi)
        assert m[0] == 0 and m[lo - 1] == hi - 1 and sorted(m.values()) == list(m.values())
        assert len(set(m.values())) == lo


def test_patch_resample_keeps_uniform_response():
    # float64 and a fixed seed: the identities below are exact, but a float32 sum over 1,024
    # random weights can differ from one over 256 by ~1e-5, which failed the default tolerance
    # in one full `make test` run (1.3e-5 off)
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1 * 32 * 32, generator=g, dtype=torch.float64)
    w16 = resample_patch_kernel(w, 1, 32, 16)
    assert w16.shape == (8, 256)
    # a uniform patch of ink 0.7 embeds as before
    torch.testing.assert_close(w16 @ torch.full((256,), 0.7, dtype=torch.float64),
                               w @ torch.full((1024,), 0.7, dtype=torch.float64))
    # and a 16-px patch embeds as the old kernel saw it zoomed 2x (nearest neighbour)
    x16 = torch.rand(16, 16, generator=g, dtype=torch.float64)
    x32 = x16.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(w16 @ x16.flatten(), w @ x32.flatten(), atol=1e-4, rtol=1e-4)


def test_phase1_to_phase2_carries_weights():
    old_cfg, new_cfg = load_config(phase="phase1"), load_config(phase="phase2")
    torch.manual_seed(0)
    old = build_model(old_cfg).state_dict()
    new, report = upgrade_state_dict(old, old_cfg, new_cfg)
    build_model(new_cfg).load_state_dict(new)  # loads strictly
    d, D = 128, 192
    # width: residual dims carried into the leading block; q, k, v head by head
    assert torch.equal(new["tok_emb.weight"][:, :d], old["tok_emb.weight"])
    qkv_o = old["dec_blocks.3.attn.qkv.weight"]
    qkv_n = new["dec_blocks.5.attn.qkv.weight"]  # layer 3 -> 5
    for c in range(3):  # q, k, v chunks: old heads 0..3 are new heads 0..3
        assert torch.equal(qkv_n[c * D:c * D + d, :d], qkv_o[c * d:(c + 1) * d])
    assert torch.equal(new["dec_blocks.2.cross.kv.weight"][D:D + d, :d],
                       old["dec_blocks.1.cross.kv.weight"][d:])  # layer 1 -> 2, the v chunk
    assert torch.equal(new["vis_blocks.3.mlp.fc1.weight"][:512, :d], old["vis_blocks.2.mlp.fc1.weight"])
    assert torch.equal(new["dec_pos"][:256, :d], old["dec_pos"])
    # new layers (1 and 4) start as identity blocks: their residual outputs are zero
    for name in ("attn.proj.weight", "cross.proj.bias", "mlp.fc2.weight"):
        assert not new[f"dec_blocks.1.{name}"].any() and not new[f"dec_blocks.4.{name}"].any()
    assert new["dec_blocks.1.attn.qkv.weight"].std() > 0.01  # the rest is freshly initialised
    # resampled: patch kernel 32 -> 16 and vision positions 6x10 -> 12x20
    assert new["patch_emb.weight"].shape == (D, 256)
    torch.testing.assert_close(new["patch_emb.weight"][:d],
                               resample_patch_kernel(old["patch_emb.weight"], 1, 32, 16))
    assert new["vis_row"].shape == (12, D)
    # counts: everything old was carried except the 32px kernel and the position tables,
    # which were resampled into smaller (kernel) or differently-sized (positions) tensors, and
    # phase 1's training-only dense head, which phase 2 does not have
    resampled_from = old["patch_emb.weight"].numel() + old["vis_row"].numel() + old["vis_col"].numel()
    dense = old["dense_head.weight"].numel() + old["dense_head.bias"].numel()
    assert report["carried"] == sum(v.numel() for v in old.values()) - resampled_from - dense
    assert report["resampled"] == d * 256 + 12 * d + 20 * d
    assert report["total"] == sum(v.numel() for v in new.values())
    assert report["carried_fraction"] == round((report["carried"] + report["resampled"]) / report["total"], 4)


def test_identity_new_layers_keep_the_function_in_depth():
    """Same width, deeper stacks: the upgraded model computes exactly what the old one did."""
    tiny = ["model.d_model=32", "model.n_heads=2", "model.ff_mult=2", "model.image_height=64",
            "model.image_width=96"]
    old_cfg = load_config(phase="phase1", overrides=tiny + ["model.n_layers=2"])
    new_cfg = load_config(phase="phase1", overrides=tiny + ["model.n_layers=5"])
    torch.manual_seed(0)
    old_model = build_model(old_cfg, dropout=0.0).eval()
    new_sd, report = upgrade_state_dict(old_model.state_dict(), old_cfg, new_cfg)
    new_model = build_model(new_cfg, dropout=0.0).eval()
    new_model.load_state_dict(new_sd)
    image = torch.rand(2, 1, 64, 96)
    spec = torch.tensor([[3, 0], [20, 5]])
    tokens = torch.tensor([[1, 40, 50, 60, 70], [1, 41, 51, 61, 71]])
    has = torch.tensor([True, False])
    torch.testing.assert_close(new_model(image, has, spec, tokens), old_model(image, has, spec, tokens))
    assert report["carried"] == sum(v.numel() for v in old_model.state_dict().values())


def test_dense_head_carried_only_onto_the_same_cells():
    dense = ["model.dense_cell=8", "training.dense_weight=1.0"]
    p1, p2, p3 = (load_config(phase=p, overrides=dense) for p in ("phase1", "phase2", "phase3"))
    torch.manual_seed(0)
    old = build_model(p1).state_dict()
    new, report = upgrade_state_dict(old, p1, p2)  # 4x4 cells per 32px patch -> 2x2 per 16px patch
    assert new["dense_head.weight"].shape[0] != old["dense_head.weight"].shape[0]
    assert any(n.startswith("dense_head.weight: not carried") for n in report["notes"])
    new3, _ = upgrade_state_dict(new, p2, p3)  # both cut a 16px patch into 2x2 cells
    assert torch.equal(new3["dense_head.weight"][:, :192], new["dense_head.weight"])
