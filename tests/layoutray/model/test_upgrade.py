"""Phase upgrade: function-preserving growth of every kind on small random models, and the
upgraded artifact evaluating, predicting and serving."""

import dataclasses
import json

import pytest
import torch

from conftest import TINY_GROWN, tiny_serving_artifact
from layoutray.config import ModelConfig, load_config
from layoutray.model.growth import GrowthError, grow_state_dict, layer_map, resample_patch_kernel, vocab_map
from layoutray.model.network import LayoutModel, vocab_size_for
from layoutray.model.tokenizer import LayoutTokenizer

BASE = ["model.image_height=64", "model.image_width=96", "model.patch_size=32", "model.max_elements=8",
        "model.max_seq_len=48", "model.max_spec_len=16", "model.d_model=32", "model.n_heads=2",
        "model.n_layers=2", "model.ff_mult=2"]


def mcfg(*overrides: str) -> ModelConfig:
    return load_config(phase="phase1", overrides=BASE + list(overrides)).model


def random_model(cfg: ModelConfig, vocab: int | None = None, seed: int = 1) -> LayoutModel:
    """Every parameter random, norms and biases included (a fresh init has zero biases and unit
    gains, which would hide a rule that mishandles them)."""
    m = LayoutModel(cfg, vocab or vocab_size_for(cfg)).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in m.named_parameters():
            gain = name.endswith(("ln1.weight", "ln2.weight", "ln3.weight", "_ln.weight", "ln.weight"))
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if p.dim() > 1 else 0.5) + (1.0 if gain else 0.0))
    return m


def inputs(seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, 1, 64, 96, generator=g)
    has_image = torch.tensor([True, False, True])
    spec = torch.tensor([[3, 0, 0], [20, 5, 6], [21, 7, 0]])
    tokens = torch.randint(4, 60, (3, 12), generator=g)
    return image, has_image, spec, tokens


def grown(old_cfg, new_cfg, old_model, **kw) -> tuple[LayoutModel, dict]:
    sd, report = grow_state_dict(old_model.state_dict(), old_cfg, new_cfg, **kw)
    new_model = LayoutModel(new_cfg, old_model.vocab_size).eval()
    new_model.load_state_dict(sd)  # strict: every parameter of the new model, right shapes
    return new_model, report


def test_layer_map_keeps_ends_and_order():
    assert layer_map(4, 6) == {0: 0, 1: 2, 2: 3, 3: 5}
    for lo, hi in ((4, 6), (6, 8), (8, 10), (3, 3)):
        m = layer_map(lo, hi)
        assert m[0] == 0 and m[lo - 1] == hi - 1 and sorted(m.values()) == list(m.values())


def test_patch_resample_keeps_uniform_and_zoomed_response():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 1 * 32 * 32, generator=g, dtype=torch.float64)
    w16 = resample_patch_kernel(w, 1, 32, 16)
    torch.testing.assert_close(w16 @ torch.full((256,), 0.7, dtype=torch.float64),
                               w @ torch.full((1024,), 0.7, dtype=torch.float64))
    x16 = torch.rand(16, 16, generator=g, dtype=torch.float64)
    x32 = x16.repeat_interleave(2, 0).repeat_interleave(2, 1)
    torch.testing.assert_close(w16 @ x16.flatten(), w @ x32.flatten())


GROWTHS = {
    "width": ["model.d_model=48", "model.n_heads=3"],  # residual stream, heads, FFN (ff_mult * d)
    "ffn": ["model.ff_mult=4"],
    "depth": ["model.n_layers=5"],
    "element_cap": ["model.max_elements=12", "model.max_seq_len=80", "model.max_spec_len=24"],
    "all": ["model.d_model=64", "model.n_heads=4", "model.n_layers=3", "model.ff_mult=4",
            "model.max_elements=12", "model.max_seq_len=80", "model.dense_cell=8"],
}


@pytest.mark.parametrize("units", ["split", "zero"])
@pytest.mark.parametrize("kind", sorted(GROWTHS))
def test_growth_preserves_outputs(kind, units):
    old_cfg, new_cfg = mcfg("model.dense_cell=8"), mcfg("model.dense_cell=8", *GROWTHS[kind])
    old = random_model(old_cfg)
    new, report = grown(old_cfg, new_cfg, old, units=units)
    x = inputs()
    want = old(*x)
    torch.testing.assert_close(new(*x), want, atol=1e-5, rtol=1e-5)
    assert report["exact"] and report["approximations"] == []
    if kind != "depth":  # the grown model has new parameters that are not copies of old ones
        assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())


def test_grown_model_generates_the_same_layouts():
    """Generation runs the KV-cache step path (decoder_block_step), not forward: the same tokens."""
    from layoutray.model.generate import generate_tokens

    old_cfg, new_cfg = mcfg(), mcfg(*GROWTHS["all"][:-1])
    old = random_model(old_cfg)
    new, _ = grown(old_cfg, new_cfg, old)
    image, has_image, spec, _ = inputs()
    tok = LayoutTokenizer(bins=old_cfg.coord_bins)
    a = generate_tokens(old, tok, image, has_image, spec, max_elements=4)
    b = generate_tokens(new, tok, image, has_image, spec, max_elements=4)
    assert torch.equal(a, b)


def test_new_tokens_leave_existing_predictions_unchanged():
    old_cfg, new_cfg = mcfg(), mcfg(*GROWTHS["width"])
    ot = LayoutTokenizer(bins=old_cfg.coord_bins)
    nt = dataclasses.replace(ot, element_types=ot.element_types[:3] + ("ribbon",) + ot.element_types[3:],
                             section_types=ot.section_types + ("marquee",))
    old = random_model(old_cfg, ot.vocab_size)
    sd, report = grow_state_dict(old.state_dict(), old_cfg, new_cfg, vocab=(ot, nt))
    new = LayoutModel(new_cfg, nt.vocab_size).eval()
    new.load_state_dict(sd)
    src = torch.tensor(vocab_map(ot, nt))
    to_new = torch.zeros(ot.vocab_size, dtype=torch.long)
    to_new[src[src >= 0]] = torch.nonzero(src >= 0).squeeze(1)  # old id -> new id
    image, has_image, spec, tokens = inputs()
    a = torch.log_softmax(old(image, has_image, spec, tokens), -1)
    b = torch.log_softmax(new(image, has_image, to_new[spec], to_new[tokens]), -1)
    assert report["new_tokens"] == 2
    torch.testing.assert_close(b[..., src >= 0], a, atol=1e-5, rtol=1e-5)
    assert b[..., src < 0].max() < -20  # the new tokens are never predicted


def test_diffusion_decoder_grows_by_its_parts():
    if "decoder" not in {f.name for f in dataclasses.fields(ModelConfig)}:
        pytest.skip("this layoutray has no diffusion decoder")
    old_cfg = mcfg("model.decoder=diffusion")
    new_cfg = mcfg("model.decoder=diffusion", *GROWTHS["width"], "model.n_layers=3")
    old = random_model(old_cfg)
    new, report = grown(old_cfg, new_cfg, old)
    image, has_image, spec, _ = inputs()
    canvas = torch.randint(4, old.vocab_size + 1, (3, 5 * old_cfg.max_elements))  # MASK = vocab_size
    torch.testing.assert_close(new(image, has_image, spec, canvas), old(image, has_image, spec, canvas),
                               atol=1e-5, rtol=1e-5)
    assert "diffusion.blocks" in report["layer_maps"]


def test_noise_breaks_symmetry_of_split_copies_only_slightly():
    old_cfg, new_cfg = mcfg(), mcfg(*GROWTHS["width"])
    old = random_model(old_cfg)
    x = inputs()
    new, report = grown(old_cfg, new_cfg, old, noise=0.01)
    head = new.dec_blocks[0].attn.qkv.weight.view(3, 3, 16, -1)  # (q/k/v, head, head dim, in)
    assert not torch.equal(head[:, 2, :, :32], head[:, 0, :, :32])  # head 2 copies head 0, perturbed
    err = (new(*x) - old(*x)).abs().max()
    assert 1e-5 < err < 0.5 and not report["exact"]


def test_vision_resampling_is_reported_approximate():
    for change in (["model.patch_size=16"], ["model.image_height=96", "model.image_width=128"]):
        old_cfg, new_cfg = mcfg(), mcfg(*change)
        _, report = grown(old_cfg, new_cfg, random_model(old_cfg))
        assert not report["exact"] and len(report["approximations"]) == 1


@pytest.mark.parametrize("change, message", [
    (["model.d_model=48"], "head size changes (16 -> 24)"),
    (["model.n_layers=1"], "model.n_layers (2 -> 1)"),
    (["model.conv_stem=8"], "model.conv_stem changes (0 -> 8)"),
])
def test_growth_refuses_what_it_cannot_preserve(change, message):
    old_cfg = mcfg()
    with pytest.raises(GrowthError) as e:
        grow_state_dict(random_model(old_cfg).state_dict(), old_cfg, mcfg(*change))
    assert message in str(e.value)


def test_a_part_without_a_rule_is_refused_by_name():
    old_cfg, new_cfg = mcfg(), mcfg(*GROWTHS["width"])
    sd = random_model(old_cfg).state_dict()
    sd["dec_blocks.0.gate"] = torch.zeros(32)  # not a parameter the new model has: dropped, named
    _, report = grow_state_dict(sd, old_cfg, new_cfg)
    assert report["dropped"] == ["dec_blocks.0.gate"]
    del sd["dec_blocks.0.gate"], sd["modality"]
    with pytest.raises(GrowthError, match="modality: the new model has it and the old one has no modality"):
        grow_state_dict(sd, old_cfg, new_cfg)


# ---------------------------------------------------------------------------- artifacts


@pytest.fixture(scope="module")
def upgraded(tmp_path_factory):
    """A tiny Phase 1 artifact grown into a (small) Phase 2 config, with its validation sample."""
    from layoutray.model.upgrade import sample_dir, upgrade_artifact

    root = tmp_path_factory.mktemp("upgrade")
    parent = tiny_serving_artifact(root / "p1", seed=3)
    data = sample_dir(root / "data", examples=12, seed=5, max_elements=8)
    res = upgrade_artifact(parent, "phase2", root / "p2", data=data, examples=12, overrides=TINY_GROWN)
    return parent, res, data


@pytest.mark.slow
def test_upgraded_artifact_keeps_the_loss_and_records_its_parent(upgraded):
    from layoutray.model.artifact import read_artifact

    parent, res, _ = upgraded
    val = res["validation"]
    assert res["written"] and abs(val["relative_change"]) < 1e-4 and res["tolerance"] == 1e-4
    for mode in ("both", "image", "spec"):
        assert val["new"][mode] == pytest.approx(val["old"][mode], rel=1e-4)
    _, cfg, meta = read_artifact(res["out"])
    assert cfg.phase == "phase2" and cfg.model.d_model == 64
    assert meta["metadata"]["parent"]["path"].endswith("p1") and meta["metadata"]["parent"]["phase"] == "phase1"
    assert meta["metadata"]["method"] == "function_preserving"
    assert meta["metadata"]["upgrade_validation"]["old"]["both"] == val["old"]["both"]


@pytest.mark.slow
def test_upgraded_artifact_evaluates_predicts_and_serves(upgraded):
    from layoutray.eval.evaluate import evaluate_artifact
    from layoutray.model.predictor import load
    from layoutray.model.request import LayoutRequest
    from serving.model_server import ModelCore

    parent, res, data = upgraded
    old, new = (evaluate_artifact(d, str(data), "val", limit=6, device="cpu") for d in (parent, res["out"]))
    assert new["loss"] == pytest.approx(old["loss"], rel=1e-4)
    # greedy generation of the grown model is the parent's (same function)
    a, b = (load(d).predict("hero", ["heading", "button"], None, samples=1, temperature=0.0) for d in (parent, res["out"]))
    assert json.dumps(a) == json.dumps(b)
    # the server's load path: finite weights, golden set answered, a request served
    core = ModelCore(str(res["out"]))
    out = core.predict_many([LayoutRequest("hero", ["heading", "button"], None).to_dict()])
    assert not isinstance(out[0], Exception) and out[0]["layouts"]


@pytest.mark.slow
def test_upgrade_refuses_a_loss_rise_unless_forced(upgraded, tmp_path, monkeypatch):
    from layoutray.model import upgrade

    parent, _, data = upgraded
    grow = ["model.d_model=64", "model.n_heads=4", "model.image_height=64", "model.image_width=96",
            "model.patch_size=32", "model.max_elements=8", "model.max_seq_len=48", "model.coord_bins=32",
            "model.max_spec_len=16", "model.n_layers=1", "model.ff_mult=2"]
    monkeypatch.setattr(upgrade, "tolerance_for", lambda *a: -1.0)  # any loss is a rise beyond this
    with pytest.raises(upgrade.UpgradeRefused, match="nothing written"):
        upgrade.upgrade_artifact(parent, "phase2", tmp_path / "x", data=data, examples=12, overrides=grow)
    assert not (tmp_path / "x").exists()
    res = upgrade.upgrade_artifact(parent, "phase2", tmp_path / "y", data=data, examples=12,
                                   overrides=grow, force=True)
    assert res["written"] and (tmp_path / "y" / "meta.json").is_file()
    assert json.loads((tmp_path / "y" / "meta.json").read_text())["metadata"]["upgrade_forced"]


def test_cli_names_the_flag_of_what_cannot_grow(tmp_path, capsys):
    from cli.main import main

    parent = tiny_serving_artifact(tmp_path / "p1", seed=4)  # head size 16; phase 2's is 32
    assert main(["upgrade", "--model", parent, "--to", "phase2", "--out", str(tmp_path / "p2")]) == 2
    err = capsys.readouterr().err
    assert "key '--to'" in err and "head size changes (16 -> 32)" in err and "Traceback" not in err
    assert not (tmp_path / "p2").exists()
    assert main(["upgrade", "--model", parent, "--to", "phase2", "--out", str(tmp_path / "p2"),
                 "--noise", "2"]) == 2
    assert "key '--noise'" in capsys.readouterr().err


@pytest.mark.slow
def test_the_grown_model_keeps_the_parents_vision_unless_asked(tmp_path):
    """Phase 3's patch (16) and image size differ from a Phase 1 model's; by default the grown model
    reads images as its parent did (exact growth, and the settings a training run of it needs are
    returned); vision="phase" takes the phase's, with the resampled tolerance."""
    from layoutray.model.artifact import read_artifact
    from layoutray.model.upgrade import sample_dir, upgrade_artifact

    parent = tiny_serving_artifact(tmp_path / "p1", seed=6)
    data = sample_dir(tmp_path / "data", examples=8, seed=5, max_elements=8)
    size = [o for o in TINY_GROWN if not o.startswith(("model.patch_size", "model.image_"))]
    res = upgrade_artifact(parent, "phase3", tmp_path / "p3", data=data, examples=8, overrides=size)
    _, old, _ = read_artifact(parent)
    _, new, _ = read_artifact(res["out"])
    vision = ("patch_size", "image_height", "image_width")
    assert [getattr(new.model, k) for k in vision] == [getattr(old.model, k) for k in vision] != [16, 256, 448]
    assert res["report"]["exact"] and abs(res["validation"]["relative_change"]) < 1e-4
    assert set(res["train_settings"]) >= {f"model.{k}={getattr(old.model, k)}" for k in vision}
    assert read_artifact(res["out"])[2]["metadata"]["vision"] == "parent"

    phase = upgrade_artifact(parent, "phase3", tmp_path / "p3v", data=data, examples=8, overrides=size,
                             vision="phase", force=True)
    _, grown, _ = read_artifact(phase["out"])
    assert [getattr(grown.model, k) for k in vision] == [16, 256, 448]
    assert not phase["report"]["exact"] and phase["tolerance"] == 0.01



@pytest.mark.slow
def test_cli_prints_a_train_command_that_accepts_the_grown_model(tmp_path, capsys):
    """The flow a user follows: `upgrade` to the phase's sizes with the parent's vision, then the
    `train --set ... --init-from` line it prints passes train's check of the artifact."""
    import re
    import shlex

    import torch

    from cli.main import main
    from layoutray.model.artifact import export_artifact
    from layoutray.model.network import build_model
    from layoutray.model.upgrade import sample_dir
    from layoutray.training.driver import check_init_from

    cfg = load_config(phase="phase1", overrides=["model.d_model=64", "model.n_heads=2", "model.n_layers=1",
                                                 "model.ff_mult=2", "model.image_height=64", "model.image_width=96"])
    torch.manual_seed(0)
    export_artifact(build_model(cfg), cfg, str(tmp_path / "p1"), {"name": "p1"})
    data = sample_dir(tmp_path / "data", examples=4, seed=1, max_elements=cfg.model.max_elements)
    assert main(["upgrade", "--model", str(tmp_path / "p1"), "--to", "phase2", "--out", str(tmp_path / "p2"),
                 "--data", str(data)]) == 0
    line = re.search(r"train it with: (layoutray train .*)\)", capsys.readouterr().out).group(1)
    words = shlex.split(line)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert {"model.patch_size=32", "model.image_height=64", "model.image_width=96"} <= set(sets)
    assert words[words.index("--init-from") + 1] == str(tmp_path / "p2")
    assert check_init_from(str(tmp_path / "p2"), load_config(phase="phase2", overrides=sets))
