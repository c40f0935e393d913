"""The diffusion decoder: noise schedule, canvas <-> tokens, known-token conditioning (fixed
tokens never change), step skipping, constraints, the request fields, and a tiny end-to-end train
through the real Ray Train + DeepSpeed loop into evaluate, predict and the CLI."""

import json
import random

import pytest
import torch

from layoutray.config import load_config
from layoutray.model import diffusion as D
from layoutray.model.generate import generate, generate_tokens
from layoutray.model.network import build_model
from layoutray.model.request import ApiError, Limits, validate_payload
from layoutray.model.tokenizer import Box, LayoutTokenizer

NET = ["model.d_model=32", "model.n_heads=2", "model.n_layers=1", "model.image_height=64", "model.image_width=96",
       "model.dense_cell=0", "training.dense_weight=0"]
TINY = NET + ["model.max_elements=8", "model.max_seq_len=42", "model.max_spec_len=16"]


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = load_config(phase="phase1", overrides=TINY + ["model.decoder=diffusion", "model.diffusion_steps=40"])
    return build_model(cfg, dropout=0.0).eval()


@pytest.fixture(scope="module")
def tok(model):
    return LayoutTokenizer(bins=model.cfg.coord_bins)


def spec_of(tok, types, section="hero"):
    return torch.tensor([tok.encode_spec(section, types)])


# ---------------------------------------------------------------------------- the denoiser


def test_the_sampling_pass_gives_the_same_logits_as_forward(model, tok):
    """Sampling runs the blocks as plain tensor calls over memory keys/values computed once
    (network.denoiser_block_pass); it is the same function as the modules' forward, masks too."""
    B, H, W = 2, model.cfg.image_height, model.cfg.image_width
    image = torch.rand(B, 1, H, W)
    spec = torch.cat([spec_of(tok, ["heading", "button"]), spec_of(tok, ["heading", "button"], "footer")])
    memory, mem_mask = model.encode(image, torch.tensor([True, False]), spec)
    canvas = torch.randint(0, model.vocab_size + 1, (B, 5 * model.cfg.max_elements))
    canvas[:, 20:] = D.EMPTY  # slots 4.. empty: out of the typed row's attention
    with torch.no_grad():
        fresh = model.diffusion(canvas, memory, mem_mask, model.tok_emb)
        state = model.diffusion.sampling_state(memory)
        cached = model.diffusion(canvas, memory, mem_mask, model.tok_emb, state=state)
        typed = torch.tensor([True, False])
        fresh_typed = model.diffusion(canvas, memory, mem_mask, model.tok_emb, typed=typed)
        cached_typed = model.diffusion(canvas, memory, mem_mask, model.tok_emb, state=state, typed=typed)
    torch.testing.assert_close(cached, fresh, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cached_typed, fresh_typed, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(fresh_typed, fresh, atol=1e-3)  # the typed row's mask is in play


def test_a_typed_row_cut_after_its_last_typed_slot_gives_the_same_logits(model, tok):
    """The empty slots of a row whose spec lists its types are out of the denoiser's attention, so
    sampling may drop them: the live places' logits are the same with and without them."""
    types = ["heading", "paragraph", "button"]
    spec = spec_of(tok, types)
    memory, mem_mask = model.encode(None, torch.tensor([False]), spec)
    canvas, known = D.initial_canvas(tok, 1, model.cfg.max_elements, model.cfg.max_elements, D.mask_id(model),
                                     [types])
    canvas[0, 3] = tok.coord_offset + 5  # some revealed places besides the types
    typed = torch.tensor([True])
    with torch.no_grad():
        whole = model.diffusion(canvas, memory, mem_mask, model.tok_emb, typed=typed)
        cut = model.diffusion(canvas[:, :15], memory, mem_mask, model.tok_emb, typed=typed)
        seen = model.diffusion(canvas, memory, mem_mask, model.tok_emb)  # the empty slots attended to
    torch.testing.assert_close(cut, whole[:, :15], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(seen[:, :15], whole[:, :15], atol=1e-3)
    n = []
    hook = model.diffusion.register_forward_hook(lambda m, args, out: n.append(args[0].shape[1]))
    try:
        D.sample_tokens(model, tok, None, torch.tensor([False]), spec, max_elements=8, required_types=[types])
    finally:
        hook.remove()
    assert set(n) == {15}, "sampling ran slots the spec leaves empty"


def test_training_holds_a_typed_rows_empty_slots_whole_and_nothing_of_a_free_row(tok):
    layout = [Box("heading", 0.1, 0.1, 0.5, 0.1), Box("button", 0.1, 0.5, 0.2, 0.1)]
    tokens = torch.tensor([tok.encode_layout(layout)] * 2)
    spec = torch.tensor([tok.encode_spec("hero", ["heading", "button"]), tok.encode_spec(None, None) + [0, 0]])
    known = D.spec_known(D.to_canvas(tokens, 8, tok), spec, tok)
    typed_row = [i % 5 == 0 or i >= 10 for i in range(40)]
    assert known[0].tolist() == typed_row
    assert not known[1].any()


# ---------------------------------------------------------------------------- noise schedule


def test_step_times_run_from_T_to_0_strictly_decreasing():
    for T in (1, 7, 100, 1000):
        for K in {k for k in (1, 2, 3, T // 3, T) if 1 <= k <= T}:
            times = D.step_times(T, K)
            assert len(times) == K + 1 and times[0] == T and times[-1] == 0
            assert all(a > b for a, b in zip(times, times[1:]))
    for bad in (0, 101):
        with pytest.raises(ValueError, match=r"steps must be in \[1, 100\]"):
            D.step_times(100, bad)


def test_mask_rate_is_linear_and_corruption_follows_it():
    T, B, L = 100, 400, 40
    assert D.mask_rate(0, T) == 0 and D.mask_rate(T, T) == 1 and D.mask_rate(25, T) == 0.25
    canvas = torch.randint(4, 50, (B, L))
    known = torch.zeros(B, L, dtype=torch.bool)
    known[:, ::5] = True
    g = torch.Generator().manual_seed(0)
    for t in (10, 50, 90):
        noisy, targets = D.corrupt(canvas, known, T, 999, g, torch.full((B,), t))
        masked = noisy == 999
        assert not masked[known].any()  # known places are never noised
        rate = masked[~known].float().mean().item()
        assert abs(rate - t / T) < 0.03, (t, rate)
        assert torch.equal(targets[masked], canvas[masked]) and (targets[~masked] == 0).all()
        assert torch.equal(noisy[~masked], canvas[~masked])


def test_corrupt_masks_at_least_one_unknown_place_per_row():
    canvas = torch.randint(4, 50, (64, 10))
    known = torch.zeros_like(canvas, dtype=torch.bool)
    noisy, _ = D.corrupt(canvas, known, 1000, 999, torch.Generator().manual_seed(1), torch.ones(64, dtype=torch.long))
    assert ((noisy == 999).sum(dim=1) >= 1).all()


def test_still_masked_counts_down_to_zero():
    m0 = torch.tensor([0, 1, 7, 80])
    counts = [D.still_masked(m0, t, 100).tolist() for t in D.step_times(100, 100)]
    assert counts[0] == [0, 1, 7, 80] and counts[-1] == [0, 0, 0, 0]
    assert all(a >= b for prev, nxt in zip(counts, counts[1:]) for a, b in zip(prev, nxt))


# ---------------------------------------------------------------------------- canvas


def random_layout(rng, tok, n):
    boxes = []
    for _ in range(n):
        x, y = rng.uniform(0, 0.8), rng.uniform(0, 0.8)
        boxes.append(Box(rng.choice(tok.element_types), x, y, rng.uniform(0.02, 1 - x), rng.uniform(0.02, 1 - y)))
    return boxes


def test_canvas_round_trip_and_canonical_type_order(tok):
    rng = random.Random(0)
    layouts = [random_layout(rng, tok, rng.randint(1, 8)) for _ in range(20)]
    ids = [tok.encode_layout(b) for b in layouts]
    width = max(map(len, ids))
    tokens = torch.tensor([r + [0] * (width - len(r)) for r in ids])
    canvas = D.to_canvas(tokens, 8, tok)
    for row, boxes in zip(canvas, layouts):
        types = [t for t in row[::5].tolist() if t != D.EMPTY]
        assert types == sorted(tok.type_id(b.type) for b in boxes)  # slots in type order
    back = D.from_canvas(canvas, tok)
    assert [tok.decode_layout(r) for r in back.tolist()] == [tok.decode_layout(r) for r in ids]


# ---------------------------------------------------------------------------- sampling


def test_fixed_tokens_never_change(model, tok):
    """Spec types and caller-fixed boxes are held at every step, greedy and sampled."""
    types = ["heading", "paragraph", "button", "button"]
    fixed = [Box("button", 0.6, 0.7, 0.2, 0.1), Box("heading", 0.1, 0.1, 0.5, 0.1)]
    for temperature in (0.0, 1.0):
        canvas0, known = D.initial_canvas(tok, 1, 8, 8, D.mask_id(model), [types], [fixed])
        states = []
        ids = D.sample_tokens(model, tok, None, torch.tensor([False]), spec_of(tok, types), max_elements=8,
                              temperature=temperature, generator=torch.Generator().manual_seed(3),
                              required_types=[types], fixed=[fixed], on_step=lambda t, c: states.append(c.clone()))
        assert states, "the sampler made no network call"
        for c in states:
            assert torch.equal(c[known], canvas0[known])
        assert not (states[-1] == D.mask_id(model)).any()  # everything revealed at t = 0
        out = tok.decode_layout(ids[0].tolist())
        assert sorted(b.type for b in out) == sorted(types)
        q = lambda b: (b.type, *(tok.quantize(v) for v in (b.x, b.y, b.w, b.h)))  # noqa: E731
        for b in fixed:
            assert q(b) in [q(o) for o in out]


def calls(model, fn) -> int:
    n = [0]
    hook = model.diffusion.register_forward_hook(lambda *a: n.__setitem__(0, n[0] + 1))
    try:
        fn()
    finally:
        hook.remove()
    return n[0]


def test_step_skipping_calls_the_network_at_most_K_times(model, tok):
    types = ["heading", "paragraph", "button"]  # 12 unknown coordinates
    spec = spec_of(tok, types)

    def run(steps):
        return lambda: D.sample_tokens(model, tok, None, torch.tensor([False]), spec, max_elements=8,
                                       steps=steps, required_types=[types])

    m0 = torch.tensor([4 * len(types)])
    for K in (1, 5, 10, 40):
        expected = len({int(D.still_masked(m0, t, 40)) for t in D.step_times(40, K)}) - 1
        assert calls(model, run(K)) == expected <= min(K, 12)
    assert calls(model, run(None)) == 12  # K = T = 40: steps that reveal nothing cost nothing
    assert calls(model, run(1000)) == 12  # above T: T steps
    with pytest.raises(ValueError, match="steps must be in"):
        run(0)()


def test_the_constraint_mask_forbids_exactly_what_leaves_the_canvas(model, tok):
    """Place by place against the rules written out: types on type places (EMPTY too, except a
    free row's first slot), x, y below the last bin, w, h at least one bin, and a known partner
    (w for x, x for w; h for y, y for h) keeps start + size on the canvas."""
    V, mask, co, bins, E = model.vocab_size, D.mask_id(model), tok.coord_offset, tok.bins, 4
    g = torch.Generator().manual_seed(0)
    canvas = torch.full((2, 5 * E), mask)
    coords = torch.rand(2, 5 * E, generator=g) < 0.6
    canvas[coords] = co + torch.randint(0, bins, (int(coords.sum()),), generator=g)
    canvas[:, ::5] = tok.type_id("heading")
    free_rows = torch.tensor([True, False])
    bad = D.forbidden(canvas, mask, D._base_forbidden(tok, V, E, canvas.device), D._past_canvas(tok, V, canvas.device),
                      tok, free_rows)
    for b in range(2):
        for j in range(E):
            for p in range(5):
                for i in range(V):
                    if p == 0:
                        ok = tok.is_type(i) or (i == D.EMPTY and not (j == 0 and bool(free_rows[b])))
                    else:
                        k = i - co
                        partner = int(canvas[b, 5 * j + [3, 4, 1, 2][p - 1]])
                        room = bins - 1 - (partner - co) if partner != mask else bins
                        ok = 0 <= k < bins and (k <= bins - 2 if p < 3 else k >= 1) and k <= room
                    assert bool(bad[b, 5 * j + p, i]) == (not ok), (b, j, p, i)


def test_free_rows_stay_on_the_canvas_and_place_an_element(model, tok):
    spec = torch.tensor([[tok.section_id("hero")]] * 6)
    layouts = generate(model, tok, None, None, spec, max_elements=8, temperature=1.0, seed=5, steps=8)
    for boxes in layouts:
        assert 1 <= len(boxes) <= 8
        for b in boxes:
            assert b.w > 0 and b.h > 0 and b.x + b.w <= 1 + 1e-9 and b.y + b.h <= 1 + 1e-9


def test_autoregressive_models_keep_their_decoder_and_write_fixed_boxes_first(tok):
    cfg = load_config(phase="phase1", overrides=TINY)
    assert cfg.model.decoder == "autoregressive"
    ar = build_model(cfg, dropout=0.0)
    names = [n for n, _ in ar.named_parameters()]
    assert ar.diffusion is None and "dec_pos" in names and not any(n.startswith("diffusion.") for n in names)
    diff = build_model(load_config(phase="phase1", overrides=TINY + ["model.decoder=diffusion"]), dropout=0.0)
    assert not any(n.startswith("dec_") for n, _ in diff.named_parameters())
    fixed = Box("button", 0.5, 0.1, 0.2, 0.1)
    ids = generate_tokens(ar, tok, None, None, spec_of(tok, ["button", "heading"]), max_elements=8,
                          required_types=[["button", "heading"]], fixed=[[fixed]])
    out = tok.decode_layout(ids[0].tolist())
    assert sorted(b.type for b in out) == ["button", "heading"]
    assert tok.encode_layout([fixed])[1:6] in [tok.encode_layout([b])[1:6] for b in out]
    exact = Box("button", 0.503, 0.1, 0.2, 0.1)  # between two coordinate bins
    assert exact not in tok.decode_layout(tok.encode_layout([exact]))
    assert exact in generate(ar, tok, None, None, spec_of(tok, ["button", "heading"]), max_elements=8,
                             required_types=[["button", "heading"]], fixed=[[exact]])[0]


def test_decoder_key_is_validated():
    with pytest.raises(ValueError, match="model.decoder"):
        load_config(phase="phase1", overrides=["model.decoder=gan"])


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize("body,field,needle", [
    ({"elements": ["heading"], "steps": 0}, "steps", "must be in [1, 1000]"),
    ({"elements": ["heading"], "steps": "ten"}, "steps", "must be an integer"),
    ({"elements": ["heading"], "fixed": {"type": "heading"}}, "fixed", "must be a list"),
    ({"fixed": [{"type": "hero", "x": 0, "y": 0, "width": 5, "height": 5}]}, "fixed[0].type", "unknown element type"),
    ({"fixed": [{"type": "button", "x": 0, "y": 0, "width": 5}]}, "fixed[0].height", "missing field"),
    ({"fixed": [{"type": "button", "x": 0, "y": 0, "width": 5, "height": 5, "z": 1}]}, "fixed[0].z", "unknown field"),
    ({"fixed": [{"type": "button", "x": 1400, "y": 0, "width": 100, "height": 5}]}, "fixed[0].width", "[1, 40]"),
    ({"elements": ["heading"], "fixed": [{"type": "button", "x": 0, "y": 0, "width": 5, "height": 5}]},
     "fixed[0].type", "not among `elements`"),
])
def test_bad_steps_and_fixed_are_422_naming_the_field(body, field, needle):
    with pytest.raises(ApiError) as e:
        validate_payload(body, Limits())
    assert e.value.status == 422 and e.value.field == field and needle in e.value.message


def test_fixed_boxes_are_normalised_to_the_canvas():
    req = validate_payload({"elements": ["button", "heading"], "canvas": {"width": 1000, "height": 500},
                            "fixed": [{"type": "button", "x": 100, "y": 50, "width": 200, "height": 100}],
                            "steps": 25}, Limits())
    assert req.fixed == [["button", 0.1, 0.1, 0.2, 0.2]] and req.steps == 25
    alone = validate_payload({"fixed": [{"type": "button", "x": 0, "y": 0, "width": 9, "height": 9}]}, Limits())
    assert alone.fixed and alone.elements is None  # a partial layout alone is a request


# ---------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained(ray_local, tmp_path_factory):
    """A tiny diffusion model trained through Ray Train + DeepSpeed (one worker, a few steps)."""
    from layoutray.data.synth import synthesize
    from layoutray.training.driver import run_training

    data = tmp_path_factory.mktemp("sections")
    synthesize(data, 40, seed=3, shard_rows=40)
    cfg = load_config(phase="phase1", overrides=NET + [  # (the data's element cap: phase 1's 16)
        "model.decoder=diffusion", "model.diffusion_steps=20", "training.epochs=1", "training.batch_size=4",
        "training.max_steps_per_epoch=3", "validation.generate_examples=4", "scaling.num_workers=1"])
    summary = run_training(cfg, str(data), "diff", str(tmp_path_factory.mktemp("runs")))
    return summary, str(data)


@pytest.mark.slow
def test_tiny_diffusion_train_evaluates_predicts_and_completes(trained, tmp_path, capsys):
    from layoutray.model.predictor import load
    from trainables.evaluate import main as evaluate_main

    summary, data = trained
    history = [json.loads(x) for x in open(f"{summary['run_dir']}/metrics.jsonl")]
    assert history[-1]["global_step"] == 3 and history[-1]["val_loss"] > 0 and "val_element_f1@0.5" in history[-1]
    assert summary["test"]["decoder"] == "diffusion" and summary["test"]["steps"] == 20
    meta = json.loads(open(f"{summary['model']}/meta.json").read())
    assert meta["decoder"] == "diffusion"

    assert evaluate_main(["--model", summary["model"], "--data", data, "--limit", "4", "--steps", "5", "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["decoder"] == "diffusion" and m["steps"] == 5 and 0 <= m["element_f1@0.5"] <= 1

    p = load(summary["model"])
    fixed = {"type": "button", "x": 100, "y": 600, "width": 300, "height": 100}
    out = p.predict("hero", ["heading", "button"], steps=4, fixed=[fixed], canvas=(1270, 1270))
    assert sorted(e["type"] for e in out[0]["elements"]) == ["button", "heading"]
    near = [e for e in out[0]["elements"] if e["type"] == "button"][0]
    assert {k: near[k] for k in fixed} == fixed  # as given, though the model holds it to 10 px bins
    with pytest.raises(ApiError, match=r"steps: must be in \[1, 20\]"):
        p.predict("hero", ["heading"], steps=21)


@pytest.mark.slow
def test_cli_predict_completes_a_partial_layout(trained, tmp_path, capsys):
    from cli.main import main as cli_main

    summary, _ = trained
    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps([{"type": "image", "x": 700, "y": 100, "width": 600, "height": 500}]))
    out = tmp_path / "layout.json"
    assert cli_main(["predict", "--model", summary["model"], "--elements", "heading,image", "--steps", "10",
                     "--fixed", str(fixed), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["request"]["steps"] == 10
    assert sorted(e["type"] for e in doc["layouts"][0]["elements"]) == ["heading", "image"]
    assert cli_main(["predict", "--model", summary["model"], "--elements", "heading", "--fixed",
                     '[{"type": "heading", "x": 0, "y": 0, "width": 5}]', "--out", str(out)]) == 2
    assert "'--fixed[0].height': missing field" in capsys.readouterr().err


def test_constraints_refine_diffusion_layouts_and_keep_fixed_boxes(model, tok):
    """A diffusion sampler has no reading order for basic's decode-time masks: basic refines its
    layouts instead (never to a lower aesthetic score), and the caller's fixed box never moves."""
    from layoutray.eval.aesthetic import layout_score

    types = ["heading", "paragraph", "button", "image"]
    spec = torch.cat([spec_of(tok, types)] * 6)
    fixed = [[Box("button", 0.1, 0.7, 0.25, 0.1)]] * 6
    kw = dict(max_elements=8, temperature=1.0, steps=10, required_types=[types] * 6, fixed=fixed)
    off = generate(model, tok, None, None, spec, seed=3, constraints="off", **kw)
    basic = generate(model, tok, None, None, spec, seed=3, constraints="basic", **kw)
    assert [sorted(b.type for b in lay) for lay in basic] == [sorted(b.type for b in lay) for lay in off]
    assert all(layout_score(b) >= layout_score(o) - 1e-9 for b, o in zip(basic, off))
    assert basic != off  # something was refined
    for lay_off, lay in zip(off, basic):  # exactly as given, not as its coordinate bins
        assert [b for b in lay if b.type == "button"] == [b for b in lay_off if b.type == "button"] == fixed[0]
    with pytest.raises(Exception, match="allowed: off, basic, full, advanced"):
        generate(model, tok, None, None, spec, seed=3, constraints="fancy", **kw)
