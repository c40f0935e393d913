"""Maximum IoU (LayoutGAN++ / LayoutDM) on hand-computed sets of layouts.

Boxes are top-left (x, y, w, h). Most cases put every box on y = 0 with h = 0.1, so the IoU of
two boxes is the 1-D IoU of their x intervals and can be checked by eye.
"""

import itertools
import random

import pytest

from layoutray.eval.generative import generative_metrics, maximum_iou, maximum_iou_scores
from layoutray.eval.metrics import box_iou
from layoutray.model.tokenizer import Box


def S(x0, x1, t="image"):
    """A box spanning [x0, x1] horizontally on the top strip."""
    return Box(t, x0, 0.0, x1 - x0, 0.1)


def test_identical_sets_score_one_whatever_the_order():
    real = [[S(0, .4, "heading"), S(0, .2, "button"), S(.6, .8, "button")],
            [S(.1, .9, "image")],
            [Box("card", .1, .2, .3, .4), Box("card", .5, .2, .3, .4), Box("icon", .0, .0, .05, .05)]]
    # Same layouts, listed in another order and with their elements shuffled.
    generated = [list(reversed(layout)) for layout in reversed(real)]
    assert maximum_iou(generated, real) == pytest.approx(1.0)
    assert maximum_iou_scores(generated, real) == pytest.approx([1.0, 1.0, 1.0])


def test_disjoint_boxes_score_zero():
    real = [[S(0, .4, "heading"), S(0, .2, "button")], [S(0, .5)]]
    generated = [[S(.5, .9, "heading"), S(.6, 1.0, "button")], [S(.5, 1.0)]]  # [.5, 1] only touches [0, .5]
    assert maximum_iou(generated, real) == 0.0
    assert len(maximum_iou_scores(generated, real)) == 2  # both pairs are made, each scoring 0


def test_pair_score_is_the_mean_iou_of_the_best_type_respecting_matching():
    real = [[S(0, .4, "heading"), S(0, .2, "button"), S(.6, .8, "button")]]
    # heading [.2, .6] vs [0, .4]: inter .2, union .6 -> 1/3. The buttons come in the other order;
    # the per-type Hungarian matching pairs them crosswise, IoU 1 each (in list order: 0 and 0).
    generated = [[S(.2, .6, "heading"), S(.6, .8, "button"), S(0, .2, "button")]]
    assert maximum_iou(generated, real) == pytest.approx((1 / 3 + 1 + 1) / 3)


def test_layouts_are_matched_one_to_one_for_the_largest_total():
    r1, r2 = [S(0, 1)], [S(.45, .9)]
    g1, g2 = [S(0, .9)], [S(0, .45)]
    # IoU: g1-r1 .9, g1-r2 .45/.9 = .5, g2-r1 .45, g2-r2 0 (touching).
    # Greedy (g1 takes its best, r1) totals .9 + 0; the optimal one-to-one matching takes
    # g1-r2 + g2-r1 = .5 + .45. Each real layout is used once, so not (.9 + .45) / 2.
    assert maximum_iou([g1, g2], [r1, r2]) == pytest.approx(0.95 / 2)
    # A third generated layout identical to r1: g3-r1 1 + g1-r2 .5 is now best; g2 stays unpaired
    # and does not count (the mean is over matched pairs).
    g3 = [S(0, 1)]
    assert sorted(maximum_iou_scores([g1, g2, g3], [r1, r2])) == pytest.approx([0.5, 1.0])
    assert maximum_iou([g1, g2, g3], [r1, r2]) == pytest.approx(0.75)


def test_different_type_multisets_never_match():
    box = (0.1, 0.1, 0.5, 0.5)
    assert maximum_iou([[Box("heading", *box)]], [[Box("button", *box)]]) == 0.0
    # {heading, button} against {heading} and {button, button}: same boxes, no shared multiset.
    real = [[Box("heading", *box), Box("button", *box)]]
    generated = [[Box("heading", *box)], [Box("button", *box), Box("button", *box)]]
    assert maximum_iou_scores(generated, real) == []
    assert maximum_iou(generated, real) == 0.0
    assert maximum_iou([], real) == 0.0


def test_the_mean_pools_pairs_over_groups():
    # Group "image": one pair scoring 1. Group "card": two pairs scoring 1/3 and 0 (or 0 and 1/3).
    real = [[S(0, .5)], [S(0, .5, "card")], [S(.5, 1, "card")]]
    generated = [[S(0, .5)], [S(.25, .75, "card")], [S(.25, .5, "card")]]
    # card IoUs: [.25,.75]-[0,.5] 1/3, [.25,.75]-[.5,1] 1/3, [.25,.5]-[0,.5] .5, [.25,.5]-[.5,1] 0.
    # Best total: [.25,.5]-[0,.5] (.5) + [.25,.75]-[.5,1] (1/3).
    assert sorted(maximum_iou_scores(generated, real)) == pytest.approx([1 / 3, 0.5, 1.0])
    # Pooled over all three pairs, not the mean of the group means ((1 + 5/12) / 2).
    assert maximum_iou(generated, real) == pytest.approx((1 + .5 + 1 / 3) / 3)


def test_empty_layouts_are_left_out():
    real = [[S(0, .5)], []]
    assert maximum_iou([[S(0, .5)], []], real) == pytest.approx(1.0)
    assert maximum_iou([[]], [[]]) == 0.0


def _brute_force(generated, real) -> float:
    """The definition spelled out: every element permutation within a type, every one-to-one
    pairing of layouts within a group (small cases only)."""
    def pair(a, b):
        best = 0.0
        types = sorted({x.type for x in a})
        ai = {t: [x for x in a if x.type == t] for t in types}
        bi = {t: [x for x in b if x.type == t] for t in types}
        for perms in itertools.product(*(itertools.permutations(bi[t]) for t in types)):
            total = sum(box_iou(x, y) for t, p in zip(types, perms) for x, y in zip(ai[t], p))
            best = max(best, total / len(a))
        return best

    def key(layout):
        return tuple(sorted(b.type for b in layout))

    scores = []
    for k in {key(l) for l in generated} & {key(l) for l in real}:
        g = [l for l in generated if key(l) == k]
        r = [l for l in real if key(l) == k]
        small, large, flip = (g, r, False) if len(g) <= len(r) else (r, g, True)
        best = max(itertools.permutations(range(len(large)), len(small)),
                   key=lambda p: sum(pair(*((large[j], small[i]) if flip else (small[i], large[j])))
                                     for i, j in enumerate(p)))
        scores += [pair(*((large[j], small[i]) if flip else (small[i], large[j]))) for i, j in enumerate(best)]
    return sum(scores) / len(scores) if scores else 0.0


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_definition_by_brute_force(seed):
    rng = random.Random(seed)

    def layout():
        out = []
        for _ in range(rng.randint(1, 3)):
            x, y = rng.random() * .6, rng.random() * .6
            out.append(Box(rng.choice(["card", "icon"]), x, y, rng.uniform(.05, .4), rng.uniform(.05, .4)))
        return out

    generated = [layout() for _ in range(rng.randint(2, 5))]
    real = [layout() for _ in range(rng.randint(2, 5))]
    real += [list(generated[0])]  # at least one shared multiset
    assert maximum_iou(generated, real) == pytest.approx(_brute_force(generated, real), abs=1e-12)


def test_generative_metrics_reports_both():
    real = [[S(0, .5)], [S(0, .5, "card"), S(.5, 1, "button")], [S(.2, .4, "heading")]]
    out = generative_metrics(real, real)
    assert set(out) == {"max_iou", "fid"}
    assert out["max_iou"] == pytest.approx(1.0)
    assert out["fid"] == pytest.approx(0.0, abs=1e-6)
    assert generative_metrics(real[:1], real)["fid"] is None  # one layout: no covariance
