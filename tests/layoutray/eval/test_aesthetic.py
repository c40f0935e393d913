"""The aesthetic score: each part on hand-made layouts, the weighted total, and the validation that
true layouts outscore perturbed copies of themselves."""

import math

import numpy as np
import pytest

from layoutray.config import AestheticConfig, ConfigError, load_config
from layoutray.data.synth import synthesize
from layoutray.eval import aesthetic as A
from layoutray.model.tokenizer import Box

CFG = AestheticConfig()


def B(t, x, y, w, h):
    return Box(t, x, y, w, h)


def part(name, layout, cfg=CFG):
    return A.layout_parts(layout, cfg)[name]


# A tidy hero: a centred column of heading, paragraph and two buttons side by side.
TIDY = [B("heading", 0.2, 0.3, 0.6, 0.1), B("paragraph", 0.2, 0.45, 0.6, 0.1),
        B("button", 0.2, 0.6, 0.28, 0.1), B("button", 0.52, 0.6, 0.28, 0.1)]


def test_tidy_layout_scores_high_and_every_part_in_range():
    parts = A.layout_parts(TIDY)
    assert set(parts) == set(A.PARTS)
    assert all(0.0 <= v <= 1.0 for v in parts.values())
    assert A.layout_score(TIDY) > 0.9
    assert A.layout_score([]) == 0.0


def test_alignment_part_by_hand():
    # LayoutGAN++: every element has a line shared with another -> a = 0, and the part counts the
    # shared lines: heading and paragraph share left, centre, right (3 of 6) ...
    assert part("alignment", [B("heading", .2, .1, .6, .1), B("paragraph", .2, .3, .6, .1)]) == pytest.approx((1 + 0.5) / 2)
    # ... a box 0.05 off every line of the other: d = 0.05 for both, a = -log(0.95)
    off = [B("heading", .2, .1, .6, .1), B("paragraph", .25, .3, .3, .05)]
    a = -math.log(1 - 0.05)
    lines = 0.0  # x: 0.25 / 0.40 / 0.55 vs 0.2 / 0.5 / 0.8 (none within 0.004); y apart
    assert part("alignment", off) == pytest.approx((math.exp(-a / CFG.alignment_scale) + lines) / 2, abs=1e-6)
    assert part("alignment", [B("heading", .2, .1, .6, .1)]) == 1.0  # nothing to align with


def test_overlap_part_allows_containers():
    apart = [B("heading", .1, .1, .3, .1), B("button", .1, .3, .2, .1)]
    assert part("overlap", apart) == 1.0
    # a button half over a heading: o = (0.01 / 0.03 + 0.01 / 0.02) / 2
    clash = [B("heading", .1, .1, .3, .1), B("button", .1, .15, .2, .1)]
    o = (0.2 * 0.05 / 0.03 + 0.2 * 0.05 / 0.02) / 2
    assert part("overlap", clash) == pytest.approx(math.exp(-o / CFG.overlap_scale))
    # the same button inside a card is allowed, half out of it is not
    assert part("overlap", [B("card", .1, .1, .5, .5), B("button", .2, .2, .2, .1)]) == 1.0
    assert part("overlap", [B("card", .1, .1, .5, .5), B("button", .5, .2, .2, .1)]) < 0.5
    # a container type is configurable: without cards as containers, the card's child overlaps
    nocard = AestheticConfig(container_types=["image"])
    assert part("overlap", [B("card", .1, .1, .5, .5), B("button", .2, .2, .2, .1)], nocard) < 0.5


def test_summary_reports_the_forbidden_overlap_apart_from_contained_children():
    held = [B("card", .1, .1, .5, .5), B("button", .2, .2, .2, .1)]  # inside its card: allowed
    clash = [B("heading", .1, .1, .3, .1), B("button", .1, .15, .2, .1)]
    summary = A.aesthetic_summary([held, clash], CFG)
    assert summary["forbidden_overlap"] == pytest.approx((0.2 * 0.05 / 0.03 + 0.2 * 0.05 / 0.02) / 2 / 2)
    assert A.aesthetic_summary([held], CFG)["forbidden_overlap"] == 0.0


def test_spacing_part_by_hand():
    # vertical gaps 0.05, 0.05 and the horizontal gap 0.04 between the buttons, 0.01 from the others
    tol = CFG.spacing_tolerance
    assert part("spacing", TIDY) == pytest.approx((2 + math.exp(-0.01 / tol)) / 3)
    even = [B("paragraph", .1, y, .3, .1) for y in (.1, .25, .4, .55)]  # three gaps of 0.05
    uneven = [B("paragraph", .1, y, .3, .1) for y in (.1, .22, .4, .61)]  # 0.02, 0.08, 0.11
    assert part("spacing", even) == pytest.approx(1.0)
    assert part("spacing", uneven) == pytest.approx((math.exp(-0.06 / tol) + 2 * math.exp(-0.03 / tol)) / 3)
    # closer gaps score higher even when no two are within the tolerance
    nearer = [B("paragraph", .1, y, .3, .1) for y in (.1, .22, .4, .595)]  # 0.02, 0.08, 0.095
    assert part("spacing", uneven) < part("spacing", nearer) < 0.5
    assert part("spacing", [B("heading", .1, .1, .3, .1)]) == 1.0  # no gaps to compare


def test_margins_part_by_hand():
    assert part("margins", TIDY) == pytest.approx(1.0)
    high = [B("heading", .2, .1, .6, .1)]  # top 0.1, bottom 0.8: vertical symmetry 1 - 0.7 / 0.9
    assert part("margins", high) == pytest.approx((1.0 + 1 - 0.7 / 0.9) / 2)
    centred = [B("heading", .2, .2, .6, .6)]
    assert part("margins", centred) == pytest.approx(1.0)
    left = [B("heading", .0, .2, .6, .6)]  # left 0, right 0.4: horizontal symmetry 0
    assert part("margins", left) == pytest.approx(0.5)
    outside = [B("heading", .2, .2, .6, .6), B("button", .9, .2, .3, .1)]  # one box off the canvas
    assert part("margins", outside) <= 0.5


def test_margins_part_counts_a_containers_padding():
    # a centred card whose contents sit 0.05 from its left and right, 0.05 from its top and bottom
    padded = [B("card", .2, .2, .6, .6), B("heading", .25, .25, .5, .1), B("button", .25, .65, .2, .1)]
    assert part("margins", padded) == pytest.approx(1.0)
    # the heading moved down: top padding 0.15 against bottom 0.05 inside the card
    low = [B("card", .2, .2, .6, .6), B("heading", .25, .35, .5, .1), B("button", .25, .65, .2, .1)]
    inside = (1.0 + 1 - 0.10 / 0.20) / 2
    assert part("margins", low) == pytest.approx((1.0 + inside) / 2)


def test_reading_order_part_by_hand():
    assert part("reading_order", TIDY) == 1.0
    flipped = [B("paragraph", .2, .1, .6, .1), B("heading", .2, .25, .6, .1)]  # paragraph above its heading
    assert part("reading_order", flipped) == 0.0
    side = [B("paragraph", .1, .1, .3, .1), B("heading", .6, .25, .3, .1)]  # different columns: no rule
    assert part("reading_order", side) == 1.0


def test_rows_part_by_hand():
    # heading row and button row are both centred on 0.5: every element's row shares an axis
    assert part("rows", TIDY) == pytest.approx(1.0)
    # the button row moved 0.05 to the right: its span (0.25 - 0.85) is 0.05 from every axis of
    # the heading's and the paragraph's rows (0.2 - 0.8), which still share theirs
    moved = TIDY[:2] + [B("button", .25, .6, .28, .1), B("button", .57, .6, .28, .1)]
    assert part("rows", moved) == pytest.approx((2 + 2 * math.exp(-0.05 / CFG.row_tolerance)) / 4)
    # a card is not a row member; one row alone has nothing to line up with
    assert part("rows", [B("card", .0, .0, 1, 1), B("button", .1, .6, .2, .1), B("button", .5, .6, .2, .1)]) == 1.0
    # flush-left rows line up by their left edges, whatever their widths
    left = [B("heading", .1, .1, .6, .1), B("paragraph", .1, .3, .3, .1), B("button", .1, .5, .1, .1)]
    assert part("rows", left) == pytest.approx(1.0)


def test_balance_part_by_hand():
    assert part("balance", TIDY) == pytest.approx(1.0)
    assert part("balance", [B("image", 0.0, 0.1, 0.2, 0.2)]) == pytest.approx(0.6)  # centre 0.1


def test_score_is_the_weighted_mean_of_the_parts():
    cfg = AestheticConfig(weight_alignment=1, weight_overlap=0, weight_spacing=0, weight_margins=3,
                          weight_reading_order=0, weight_balance=0, weight_rows=0)
    parts = A.layout_parts(TIDY, cfg)
    assert A.layout_score(TIDY, cfg) == pytest.approx((parts["alignment"] + 3 * parts["margins"]) / 4)
    with pytest.raises(ConfigError, match="model.aesthetics.container_types"):
        load_config(phase="phase1", overrides=["model.aesthetics.container_types=[cardboard]"])
    with pytest.raises(ConfigError, match="model.aesthetics.weight_balance"):
        load_config(phase="phase1", overrides=["model.aesthetics.weight_balance=-1"])


def test_perturbations_keep_types_and_canvas():
    rng = np.random.default_rng(0)
    for name in A.PERTURBATIONS:
        p = A.PERTURB[name](TIDY, rng)
        assert [b.type for b in p] == [b.type for b in TIDY]
        assert all(0 <= b.x and b.x + b.w <= 1 + 1e-9 and 0 <= b.y and b.y + b.h <= 1 + 1e-9 for b in p)
        assert p != TIDY


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("aes") / "sections"
    synthesize(root, 300, seed=7)
    return root


@pytest.fixture(scope="module")
def synthetic_layouts(synthetic_root):
    from layoutray.data.dataset import read_rows
    from layoutray.model.tokenizer import LayoutTokenizer

    root = synthetic_root
    tok = LayoutTokenizer()
    rows = read_rows(root, "train", 300)
    # as the model sees them: quantised to its coordinate bins
    return [tok.decode_layout(tok.encode_layout([Box(e["type"], e["x"], e["y"], e["w"], e["h"])
                                                 for e in r["elements"]])) for r in rows]


def test_true_layouts_beat_perturbed_copies(synthetic_layouts):
    v = A.validate_score(synthetic_layouts, CFG, seed=0)
    assert v["pairs"] >= 400
    assert v["win_rate"] >= 0.9, v["by_perturbation"]  # the benchmark records the figure (docs/aesthetics.md)
    for name, r in v["by_perturbation"].items():
        assert r["win_rate"] >= 0.85, (name, r)
    assert v["reference"] > 0.8
    # the check has teeth: scoring with a constant (balance only, which a row shift barely moves)
    # loses most pairs
    flat = AestheticConfig(weight_alignment=0, weight_overlap=0, weight_spacing=0, weight_margins=0,
                           weight_reading_order=0, weight_balance=1, weight_rows=0)
    assert A.validate_score(synthetic_layouts, flat, seed=0)["win_rate"] < 0.8


def test_validation_pools_its_repeats(synthetic_layouts):
    one, two = (A.validate_score(synthetic_layouts[:60], CFG, seed=s) for s in (0, 1))
    both = A.validate_score(synthetic_layouts[:60], CFG, seed=0, repeats=2)
    assert (both["pairs"], both["wins"]) == (one["pairs"] + two["pairs"], one["wins"] + two["wins"])
    assert both["repeats"] == 2 and both["layouts"] == one["layouts"]
    assert both["ties"] == one["ties"] + two["ties"]


def test_a_tie_is_counted_and_loses():
    """Two lines on one left edge, of one height, trading widths: nothing in the boxes tells the
    copy from the truth, so the pair ties, and a tie is not a win."""
    column = [Box("subheading", 0.1, 0.2, 0.5, 0.04), Box("subheading", 0.1, 0.6, 0.3, 0.04)]
    v = A.validate_score([column], CFG, seed=0)
    r = v["by_perturbation"]["swapped_sizes"]
    assert (r["pairs"], r["wins"], r["ties"]) == (1, 0, 1) and v["ties"] >= 1


def test_evaluation_reports_aesthetic_per_mode(synthetic_root):
    import torch

    from layoutray.config import ModelConfig, RunConfig
    from layoutray.data.batches import iter_local_batches
    from layoutray.eval.evaluate import _limit, evaluate_batches
    from layoutray.model.network import LayoutModel, vocab_size_for
    from layoutray.model.tokenizer import LayoutTokenizer

    mc = ModelConfig(d_model=32, n_heads=2, n_layers=1, ff_mult=2, max_seq_len=82, max_elements=16, coord_bins=32)
    torch.manual_seed(0)
    model = LayoutModel(mc, vocab_size_for(mc)).eval()
    batches = _limit(iter_local_batches(synthetic_root, "test", RunConfig(model=mc), 8, train=False), 8)
    m = evaluate_batches(model, LayoutTokenizer(bins=32), batches, max_elements=16, modes=("both", "spec"),
                         constraints="basic", aesthetics=CFG)
    for mode in ("both", "spec"):
        assert 0.0 <= m[mode]["aesthetic"] <= 1.0 and 0.0 <= m[mode]["aesthetic_reference"] <= 1.0
        assert set(m[mode]["aesthetic_parts"]) == set(A.PARTS)
        assert m[mode]["forbidden_overlap"] >= 0.0 and m[mode]["forbidden_overlap_reference"] >= 0.0
    assert m["aesthetic_reference"] > m["aesthetic"]  # the data beats an untrained model
