"""Generation: KV cache equals full recomputation; constrained output is always valid."""

from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layoutray.config import ModelConfig
from layoutray.model.generate import generate, generate_tokens
from layoutray.model.network import LayoutModel, vocab_size_for
from layoutray.model.tokenizer import PAD, LayoutTokenizer
from layoutray.data.vocab import ELEMENT_TYPES, SECTION_TYPES

CFG = ModelConfig(d_model=32, n_heads=2, n_layers=2, ff_mult=2, patch_size=32, image_height=64,
                  image_width=96, max_seq_len=82, max_elements=16, coord_bins=32)
TOK = LayoutTokenizer(bins=CFG.coord_bins)


def make_model(seed=0, scale=1.0):
    torch.manual_seed(seed)
    model = LayoutModel(CFG, vocab_size_for(CFG)).eval()
    if scale != 1.0:  # sharper random logits: more varied, less uniform choices
        with torch.no_grad():
            model.tok_emb.weight.mul_(scale)
    return model


def inputs(specs, with_image, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = [TOK.encode_spec(sec, els) for sec, els in specs]
    S = max(len(s) for s in ids)
    spec = torch.tensor([s + [PAD] * (S - len(s)) for s in ids])
    B = len(specs)
    image = torch.rand(B, 1, CFG.image_height, CFG.image_width, generator=g)
    return image, torch.tensor(with_image), spec


def check_valid(layouts, required, max_elements):
    for boxes, req in zip(layouts, required):
        assert len(boxes) <= max_elements
        if req:
            assert Counter(b.type for b in boxes) == Counter(req)
        else:
            assert len(boxes) >= 1
        for b in boxes:
            assert 0 <= b.x and 0 <= b.y and b.w > 0 and b.h > 0
            assert b.x + b.w <= 1 + 1e-9 and b.y + b.h <= 1 + 1e-9


def test_kv_cache_equals_full_recomputation():
    model = make_model(seed=3, scale=30.0)
    specs = [("hero", ["heading", "button", "button"]), (None, None), ("footer", None),
             (None, ["image"] * 5 + ["paragraph"] * 4)]
    req = [els for _, els in specs]
    image, has_image, spec = inputs(specs, [True, True, False, False])
    a = generate_tokens(model, TOK, image, has_image, spec, max_elements=12, required_types=req)
    b = generate_tokens(model, TOK, image, has_image, spec, max_elements=12, required_types=req,
                        use_cache=False)
    assert torch.equal(a, b)
    # and sampling from the same seed takes the same path both ways
    a = generate_tokens(model, TOK, image, has_image, spec, max_elements=12, required_types=req,
                        temperature=1.0, top_p=0.9, seed=5)
    b = generate_tokens(model, TOK, image, has_image, spec, max_elements=12, required_types=req,
                        temperature=1.0, top_p=0.9, seed=5, use_cache=False)
    assert torch.equal(a, b)


def test_cache_step_logits_match_forward():
    model = make_model(seed=1)
    image, has_image, spec = inputs([("hero", ["heading"])], [True])
    tokens = torch.tensor([[1] + [TOK.coord_offset + i for i in range(9)]])
    with torch.no_grad():
        full = model(image, has_image, spec, tokens)[0]
        memory, mask = model.encode(image, has_image, spec)
        cache = model.init_cache(memory, mask, 16)
        steps = torch.stack([model.decode_step(tokens[:, t:t + 1], cache)[0] for t in range(10)])
    torch.testing.assert_close(steps, full, atol=1e-5, rtol=1e-4)


def test_unconstrained_rows_stop_at_max_elements():
    model = make_model(seed=2)
    with torch.no_grad():  # make EOS never attractive: generation must stop at the cap anyway
        model.tok_emb.weight[2].fill_(-5.0)
    image, has_image, spec = inputs([(None, None)] * 2, [True, True])
    layouts = generate(model, TOK, image, has_image, spec, max_elements=3)
    assert [len(b) for b in layouts] == [3, 3]


def test_sampling_is_seeded():
    model = make_model(seed=4, scale=5.0)
    image, has_image, spec = inputs([("hero", None)] * 3, [True] * 3)
    a = generate(model, TOK, image, has_image, spec, max_elements=6, temperature=1.0, seed=11)
    b = generate(model, TOK, image, has_image, spec, max_elements=6, temperature=1.0, seed=11)
    c = generate(model, TOK, image, has_image, spec, max_elements=6, temperature=1.0, seed=12)
    assert a == b and a != c


def test_required_types_errors():
    model = make_model()
    image, has_image, spec = inputs([(None, None)], [True])
    with pytest.raises(ValueError, match="required_types\\[0\\]"):
        generate(model, TOK, image, has_image, spec, max_elements=2,
                 required_types=[["heading"] * 3])
    with pytest.raises(ValueError, match="unknown element type"):
        generate(model, TOK, image, has_image, spec, max_elements=4, required_types=[["nope"]])


ROW = st.tuples(st.one_of(st.none(), st.sampled_from(SECTION_TYPES)),
                st.one_of(st.none(), st.lists(st.sampled_from(ELEMENT_TYPES), min_size=1, max_size=6)),
                st.booleans())


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, min_size=1, max_size=4), model_seed=st.integers(0, 3),
       temperature=st.sampled_from([0.0, 0.7, 1.5]), top_p=st.sampled_from([1.0, 0.8]),
       max_elements=st.integers(1, 8), seed=st.integers(0, 2**16))
def test_constrained_generation_always_valid(rows, model_seed, temperature, top_p, max_elements, seed):
    model = MODELS[model_seed]
    rows = [(sec, els[:max_elements] if els else els, img) for sec, els, img in rows]
    image, has_image, spec = inputs([(s, e) for s, e, _ in rows], [i for _, _, i in rows], seed)
    required = [e for _, e, _ in rows]
    ids = generate_tokens(model, TOK, image, has_image, spec, max_elements=max_elements,
                          temperature=temperature, top_p=top_p, seed=seed, required_types=required)
    layouts = [TOK.decode_layout(r) for r in ids.tolist()]  # raises if anything is malformed
    check_valid(layouts, required, max_elements)
    for r in ids.tolist():  # BOS ... EOS then only PAD
        body = r[:r.index(2) + 1]
        assert r[0] == 1 and all(t == PAD for t in r[len(body):])


MODELS = [make_model(seed=s, scale=[1.0, 20.0, 60.0, 5.0][s]) for s in range(4)]


@pytest.mark.parametrize("decoder", ["autoregressive", "diffusion"])
def test_generation_runs_in_eval_mode_and_leaves_the_mode_as_it_was(decoder):
    """Dropout is off while generating (the same tokens from a model left in training mode), and
    a model in training mode is back in it after."""
    from dataclasses import replace

    cfg = replace(CFG, decoder=decoder, diffusion_steps=20)
    torch.manual_seed(0)
    model = LayoutModel(cfg, vocab_size_for(cfg), dropout=0.5)
    image, has_image, spec = inputs([("hero", ["heading", "button"])], [True])
    runs = [generate_tokens(model, TOK, image, has_image, spec, max_elements=4, required_types=[["heading", "button"]])
            for _ in range(2)]
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(runs[0], runs[1])  # dropout at 0.5 would change them
    model.eval()
    assert torch.equal(generate_tokens(model, TOK, image, has_image, spec, max_elements=4,
                                       required_types=[["heading", "button"]]), runs[0])
    assert not model.training
