"""Decode-time constraints (level basic): boxes stay on the canvas, no forbidden overlap with placed
elements, snapping to placed lines; level off decodes exactly as before; the `full` training loss
has gradients that move soft coordinates the right way."""

import numpy as np
import pytest
import torch

from layoutray.config import AestheticConfig, ModelConfig
from layoutray.data.vocab import ELEMENT_TYPES
from layoutray.eval.aesthetic import allowed_pairs, padded
from layoutray.model.constraints import (DecodeConstraints, aesthetic_losses, aesthetic_objective, check_level,
                                         soft_boxes)
from layoutray.model.generate import generate, generate_tokens
from layoutray.model.network import LayoutModel, vocab_size_for
from layoutray.model.tokenizer import BOS, EOS, PAD, LayoutTokenizer

CFG = ModelConfig(d_model=32, n_heads=2, n_layers=2, ff_mult=2, patch_size=32, image_height=64,
                  image_width=96, max_seq_len=82, max_elements=16, coord_bins=32)
TOK = LayoutTokenizer(bins=CFG.coord_bins)
AES = AestheticConfig()
SPECS = [("hero", ["heading", "paragraph", "button", "button", "image"]),
         ("feature_grid", ["card", "card", "heading", "paragraph", "icon", "icon"]),
         ("pricing", ["card", "heading", "list", "button", "badge", "paragraph", "link"]),
         (None, ["paragraph"] * 8)]


def make_model(seed, scale=30.0):
    torch.manual_seed(seed)
    model = LayoutModel(CFG, vocab_size_for(CFG)).eval()
    with torch.no_grad():  # sharp random logits: boxes land all over the canvas and collide
        model.tok_emb.weight.mul_(scale)
    return model


def spec_batch(specs):
    ids = [TOK.encode_spec(sec, els) for sec, els in specs]
    S = max(len(s) for s in ids)
    return torch.tensor([s + [PAD] * (S - len(s)) for s in ids]), [els for _, els in specs]


def forbidden_pairs(layout):
    """Pairs of elements that overlap although neither is a container holding the other."""
    boxes, types, mask = padded([layout])
    x, y, w, h = (boxes[0, :, k] for k in range(4))
    allowed = allowed_pairs(boxes, types, AES)[0]
    out = []
    for i in range(len(layout)):
        for j in range(i + 1, len(layout)):
            iw = min(x[i] + w[i], x[j] + w[j]) - max(x[i], x[j])
            ih = min(y[i] + h[i], y[j] + h[j]) - max(y[i], y[j])
            if iw > 1e-9 and ih > 1e-9 and not allowed[i, j]:
                out.append((layout[i], layout[j]))
    return out


@pytest.mark.parametrize("seed,temperature", [(0, 0.0), (1, 0.0), (2, 1.0)])
def test_basic_masks_keep_boxes_on_canvas_and_apart(seed, temperature):
    model = make_model(seed)
    spec, required = spec_batch(SPECS)
    off = generate(model, TOK, None, None, spec, max_elements=16, required_types=required,
                   temperature=temperature, seed=seed)
    basic = generate(model, TOK, None, None, spec, max_elements=16, required_types=required,
                     temperature=temperature, seed=seed, constraints="basic", aesthetics=AES)
    for layout, req in zip(basic, required):
        assert sorted(b.type for b in layout) == sorted(req)  # the spec is still placed exactly
        for b in layout:
            assert b.x >= 0 and b.y >= 0 and b.w > 0 and b.h > 0
            assert b.x + b.w <= 1 + 1e-9 and b.y + b.h <= 1 + 1e-9
        # Content elements never overlap; a container may hold what is inside it. (Overlaps a
        # container makes with earlier content are left to the score and the refinement.)
        content = [p for p in forbidden_pairs(layout) if all(b.type not in AES.container_types for b in p)]
        assert content == []
    # the random model does produce forbidden overlaps unconstrained: the masks did the work
    assert any(forbidden_pairs(layout) for layout in off)


def test_off_is_todays_decoding_bit_for_bit():
    model = make_model(1)
    spec, required = spec_batch(SPECS)
    plain = generate_tokens(model, TOK, None, None, spec, max_elements=16, required_types=required)
    off = generate_tokens(model, TOK, None, None, spec, max_elements=16, required_types=required,
                          constraints="off")
    assert torch.equal(plain, off)
    basic = generate_tokens(model, TOK, None, None, spec, max_elements=16, required_types=required,
                            constraints="basic")
    assert not torch.equal(plain, basic)
    with pytest.raises(ValueError, match="allowed: off, basic, full, advanced"):
        generate_tokens(model, TOK, None, None, spec, max_elements=16, constraints="fancy")
    assert check_level("full") == "full"


def _placed(boxes_bins, types):
    """A DecodeConstraints with one row and the given boxes (x, y, w, h in bins) placed."""
    dc = DecodeConstraints(TOK, 1, 8, AES, "cpu")
    step = 0
    for (x, y, w, h), t in zip(boxes_bins, types):
        for v in (TOK.type_id(t), *(TOK.coord_offset + c for c in (x, y, w, h))):
            dc.advance(step, torch.tensor([v]))
            step += 1
    return dc, step


def test_masks_by_hand():
    co = TOK.coord_offset
    dc, step = _placed([(4, 2, 10, 4)], ["heading"])  # heading covers x 4..13, y 2..5
    for v in (TOK.type_id("paragraph"), co + 8):  # a paragraph starting at x = 8 (under the heading)
        dc.advance(step, torch.tensor([v]))
        step += 1
    none = torch.zeros(1, TOK.vocab_size, dtype=torch.bool)
    bad_y = dc.forbidden(step, none)[0, co:co + TOK.bins]  # y: rows 2..5 are inside the heading
    assert bad_y.nonzero().flatten().tolist() == [2, 3, 4, 5]
    dc.advance(step, torch.tensor([co + 1]))  # y = 1: above the heading
    bad_w = dc.forbidden(step + 1, none)[0, co:co + TOK.bins]
    assert not bad_w.any()  # in row 1 nothing stands to the right
    dc.advance(step + 1, torch.tensor([co + 10]))
    bad_h = dc.forbidden(step + 2, none)[0, co:co + TOK.bins]
    assert bad_h.nonzero().flatten().min().item() == 2  # h <= 1: the heading starts at y = 2


def test_content_inside_a_card_stays_inside():
    co = TOK.coord_offset
    dc, step = _placed([(2, 2, 12, 12)], ["card"])  # card covers x 2..13, y 2..13
    for v in (TOK.type_id("button"), co + 4, co + 5):
        dc.advance(step, torch.tensor([v]))
        step += 1
    none = torch.zeros(1, TOK.vocab_size, dtype=torch.bool)
    bad_w = dc.forbidden(step, none)[0, co:co + TOK.bins]
    assert bad_w.nonzero().flatten().min().item() == 11  # x 4 + w 10 = 14, the card's right edge
    dc.advance(step, torch.tensor([co + 3]))
    bad_h = dc.forbidden(step + 1, none)[0, co:co + TOK.bins]
    assert bad_h.nonzero().flatten().min().item() == 10  # y 5 + h 9 = 14, the card's bottom


def test_snapping_within_tolerance_only():
    co = TOK.coord_offset
    dc, step = _placed([(6, 2, 10, 3)], ["heading"])
    dc.advance(step, torch.tensor([TOK.type_id("paragraph")]))
    none = torch.zeros(1, TOK.vocab_size, dtype=torch.bool)
    # x: 7 is within 2 bins of the heading's left edge 6 and snaps; 10 does not
    assert dc.snap(step + 1, torch.tensor([co + 7]), none).item() == co + 6
    assert dc.snap(step + 1, torch.tensor([co + 10]), none).item() == co + 10
    # a snap target the mask forbids is not taken
    bad = none.clone()
    bad[0, co + 6] = True
    assert dc.snap(step + 1, torch.tensor([co + 7]), bad).item() == co + 7
    dc.advance(step + 1, torch.tensor([co + 6]))
    dc.advance(step + 2, torch.tensor([co + 8]))
    # w: right edge 6 + 9 = 15 is one bin from the heading's 16: snaps to w = 10
    assert dc.snap(step + 3, torch.tensor([co + 9]), none).item() == co + 10


def test_a_small_width_is_not_snapped_out_of_shape():
    co = TOK.coord_offset
    dc, step = _placed([(6, 2, 10, 3)], ["heading"])  # right edge at 16
    none = torch.zeros(1, TOK.vocab_size, dtype=torch.bool)
    for v in (TOK.type_id("icon"), co + 13, co + 8):
        dc.advance(step, torch.tensor([v]))
        step += 1
    # w 2 ends at 15, one bin from 16: snapping would make it 3, a change of half its size
    assert dc.snap(step, torch.tensor([co + 2]), none).item() == co + 2
    dc, step = _placed([(6, 2, 10, 3)], ["heading"])
    for v in (TOK.type_id("icon"), co + 11, co + 8):
        dc.advance(step, torch.tensor([v]))
        step += 1
    assert dc.snap(step, torch.tensor([co + 4]), none).item() == co + 4  # w 4: a move of a quarter
    # the same one-bin move is within snap_size_share (1/8) of a width of 8 or more
    dc, step = _placed([(6, 2, 20, 3)], ["heading"])  # right edge at 26
    for v in (TOK.type_id("paragraph"), co + 17, co + 8):
        dc.advance(step, torch.tensor([v]))
        step += 1
    assert dc.snap(step, torch.tensor([co + 8]), none).item() == co + 9


def test_rows_of_a_batch_are_constrained_independently():
    """A batch of rows gives each row the masks and snaps it gets alone, at every step; rows that
    leave the batch (select) take nothing of the others with them."""
    g = np.random.default_rng(0)
    co, B = TOK.coord_offset, 4
    types = [TOK.type_id(t) for t in ("heading", "card", "paragraph", "image", "button")]
    steps = [[int(g.choice(types)) if k % 5 == 0 else co + int(g.integers(1, 12)) for k in range(40)] for _ in range(B)]
    batch = DecodeConstraints(TOK, B, 8, AestheticConfig(snap_tolerance=2), "cpu")
    alone = [DecodeConstraints(TOK, 1, 8, AestheticConfig(snap_tolerance=2), "cpu") for _ in range(B)]
    grammar = torch.zeros(1, TOK.vocab_size, dtype=torch.bool)
    grammar[0, co + TOK.bins - 1] = True
    rows = list(range(B))
    for k in range(40):
        if k == 20:  # rows 1 and 3 leave the batch
            batch.select(torch.tensor([0, 2]))
            rows = [0, 2]
        bad = batch.forbidden(k, grammar)
        ids = torch.tensor([steps[r][k] for r in rows])
        snapped = batch.snap(k, ids, bad)
        for i, r in enumerate(rows):
            own = alone[r].forbidden(k, grammar)
            assert torch.equal(bad.expand(len(rows), -1)[i], own[0])
            assert snapped[i].item() == alone[r].snap(k, ids[i:i + 1], own).item()
            alone[r].advance(k, snapped[i:i + 1])
        batch.advance(k, snapped)


def test_basic_improves_alignment_and_overlap_of_random_model():
    from layoutray.eval.metrics import alignment, overlap

    spec, required = spec_batch(SPECS * 2)
    off, basic = [], []
    for seed in range(2):
        model = make_model(seed)
        off += generate(model, TOK, None, None, spec, max_elements=16, required_types=required)
        basic += generate(model, TOK, None, None, spec, max_elements=16, required_types=required,
                          constraints="basic")
    assert overlap(basic) < overlap(off)
    assert alignment(basic) < alignment(off)


# ---------------------------------------------------------------------------- training loss


def _one_layout_logits(boxes_bins, types, sharp=8.0):
    """Logits [1, T, V] peaked at the given boxes' coordinate bins (teacher-forced targets too)."""
    tokens = [BOS]
    for (x, y, w, h), t in zip(boxes_bins, types):
        tokens += [TOK.type_id(t)] + [TOK.coord_offset + v for v in (x, y, w, h)]
    tokens.append(EOS)
    targets = torch.tensor([tokens[1:]])
    bins = torch.arange(TOK.bins, dtype=torch.float32)
    logits = torch.zeros(1, targets.shape[1], TOK.vocab_size)
    for t, tok in enumerate(targets[0].tolist()):
        if TOK.is_coord(tok):  # a Gaussian bump around the target bin
            logits[0, t, TOK.coord_offset:] = -((bins - (tok - TOK.coord_offset)) ** 2) / 2 * sharp / 8
        else:
            logits[0, t, tok] = 10.0
    return logits.requires_grad_(True), targets


def test_soft_boxes_follow_the_distributions():
    logits, targets = _one_layout_logits([(4, 2, 10, 4), (20, 10, 6, 6)], ["heading", "button"], sharp=80)
    boxes, mask, _ = soft_boxes(logits, targets, TOK)
    assert mask[0].tolist() == [True, True]  # two elements (the EOS target starts no third)
    want = torch.tensor([[4, 2, 10, 4], [20, 10, 6, 6]]) / (TOK.bins - 1)
    torch.testing.assert_close(boxes[0, :2], want, atol=1e-3, rtol=0)


def _step(logits, targets, cfg):
    """(losses before, losses after one normalised gradient step on the logits, boxes before, after)."""
    loss, before = aesthetic_losses(logits, targets, TOK, cfg)
    loss.backward()
    moved = logits.detach() - 0.5 * logits.grad / logits.grad.abs().max()
    _, after = aesthetic_losses(moved, targets, TOK, cfg)
    return before, after, soft_boxes(logits.detach(), targets, TOK)[0], soft_boxes(moved, targets, TOK)[0]


def test_training_loss_gradient_aligns_boxes():
    # two content boxes apart, their left edges 2 bins from each other
    logits, targets = _one_layout_logits([(4, 2, 10, 3), (6, 8, 14, 3)], ["paragraph", "button"])
    before, after, b0, b1 = _step(logits, targets, AestheticConfig(loss_overlap=0.0))
    assert before["overlap"].item() == 0.0 and before["alignment"] > 0
    assert after["alignment"] < before["alignment"]
    assert (b1[0, 1, 0] - b1[0, 0, 0]).abs() < (b0[0, 1, 0] - b0[0, 0, 0]).abs()  # left edges closer


def test_training_loss_gradient_separates_overlapping_boxes():
    logits, targets = _one_layout_logits([(4, 2, 10, 6), (4, 6, 10, 4)], ["paragraph", "button"])
    before, after, b0, b1 = _step(logits, targets, AestheticConfig(loss_alignment=0.0))
    assert before["overlap"] > 0 and after["overlap"] < before["overlap"]
    # the paragraph's bottom rises or the button's top falls
    assert (b1[0, 1, 1] - (b1[0, 0, 1] + b1[0, 0, 3])) > (b0[0, 1, 1] - (b0[0, 0, 1] + b0[0, 0, 3]))
    # a card holding a button is no overlap to remove
    logits, targets = _one_layout_logits([(2, 2, 20, 20), (6, 6, 10, 4)], ["card", "button"])
    assert aesthetic_losses(logits, targets, TOK, AES)[1]["overlap"].item() == 0.0
    # and the weights scale the loss
    logits, targets = _one_layout_logits([(4, 2, 10, 6), (4, 6, 10, 4)], ["paragraph", "button"])
    one = aesthetic_losses(logits, targets, TOK, AestheticConfig(loss_alignment=0.0, loss_overlap=1.0))[0]
    two = aesthetic_losses(logits, targets, TOK, AestheticConfig(loss_alignment=0.0, loss_overlap=2.0))[0]
    torch.testing.assert_close(two, 2 * one)


def test_training_objective_only_at_full_and_advanced():
    from layoutray.config import RunConfig

    logits, targets = _one_layout_logits([(4, 2, 10, 6), (4, 6, 10, 4)], ["paragraph", "button"])
    tokens = torch.cat([torch.tensor([[BOS]]), targets], dim=1)
    for level, has in (("off", False), ("basic", False), ("full", True), ("advanced", True)):
        cfg = RunConfig(model=ModelConfig(aesthetic_constraints=level))
        extra = aesthetic_objective(cfg, logits, tokens, TOK)
        assert (extra is not None) == has, level
        if has:
            assert extra.item() > 0 and extra.requires_grad


# ---------------------------------------------------------------------------- the API


def test_predictor_takes_constraints_and_scores_each_layout():
    from layoutray.config import RunConfig
    from layoutray.model.predictor import Predictor
    from layoutray.model.request import ApiError

    p = Predictor(model=make_model(4), cfg=RunConfig(model=CFG), tokenizer=TOK)
    spec = dict(section_type="hero", elements=["heading", "paragraph", "button", "button"])
    off = p.predict(**spec)
    adv = p.predict(**spec, constraints="advanced")
    for layouts in (off, adv):
        assert 0.0 <= layouts[0]["aesthetic"] <= 1.0
    assert adv[0]["aesthetic"] >= off[0]["aesthetic"]  # basic masks, then a refinement that never lowers it
    with pytest.raises(ApiError, match="allowed: off, basic, full, advanced"):
        p.predict(**spec, constraints="pretty")
