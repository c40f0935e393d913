"""Metrics on small hand-computed layouts (boxes are top-left x, y, w, h)."""

import math

import pytest
import torch

from layoutray.eval import metrics as M
from layoutray.model.tokenizer import Box


def B(x, y, w, h, t="button"):
    return Box(t, x, y, w, h)


# ---------------------------------------------------------------------------- token accuracy


def test_token_accuracy_ignores_pad_ids_and_logits():
    targets = torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]])
    pred = torch.tensor([[5, 9, 7, 3], [8, 1, 1, 1]])
    # non-PAD targets: 5,6,7 | 8 -> 4 tokens; correct: 5, 7, 8 -> 3/4 (wrong guesses at PAD ignored)
    assert M.token_accuracy(pred, targets) == pytest.approx(0.75)
    logits = torch.nn.functional.one_hot(pred, 12).float()
    assert M.token_accuracy(logits, targets) == pytest.approx(0.75)
    assert M.token_accuracy_counts(logits, targets) == (3, 4)
    assert M.token_accuracy(pred, torch.zeros_like(targets)) == 0.0  # nothing to count


# ---------------------------------------------------------------------------- IoU and matching


def test_box_iou_by_hand():
    # inter = 0.25 x 0.5 = 0.125; union = 0.25 + 0.25 - 0.125 = 0.375 -> 1/3
    assert M.box_iou(B(0, 0, .5, .5), B(.25, 0, .5, .5)) == pytest.approx(1 / 3)
    assert M.box_iou(B(0, 0, .5, .5), B(.5, 0, .5, .5)) == 0.0  # touching edges
    assert M.box_iou(B(.1, .2, .3, .4), B(.1, .2, .3, .4)) == pytest.approx(1.0)


def test_matching_stays_within_element_type():
    pred = [B(0, 0, .5, .5, "heading")]
    gt = [B(0, 0, .5, .5, "button")]
    assert M.match_elements(pred, gt, 0.5) == []
    assert M.element_prf([pred], [gt], 0.5) == (0.0, 0.0, 0.0)


def test_matching_maximises_number_of_pairs_above_threshold():
    # All boxes on y=0, h=0.1, so IoU is the 1-D interval IoU.
    gt = [B(0, 0, 1.0, .1), B(0, 0, .5, .1)]          # g0 = [0, 1], g1 = [0, .5]
    pred = [B(0, 0, .9, .1), B(.4, 0, .6, .1)]        # p0 = [0, .9], p1 = [.4, 1]
    # IoU: p0-g0 .9, p0-g1 .5/.9 = .556, p1-g0 .6, p1-g1 .1/1 = .1
    # Max total IoU would pick p0-g1 + p1-g0 (1.156 > 1.0): at 0.75 that keeps NO pair.
    at75 = M.match_elements(pred, gt, 0.75)
    assert [(i, j) for i, j, _ in at75] == [(0, 0)]
    assert at75[0][2] == pytest.approx(0.9)
    # At 0.5 two pairs are possible (p0-g1 .556, p1-g0 .6); p0-g0 alone would be only one.
    at50 = M.match_elements(pred, gt, 0.5)
    assert [(i, j) for i, j, _ in at50] == [(0, 1), (1, 0)]


def test_element_prf_micro_averaged():
    head = B(0, 0, .5, .5, "heading")
    layouts_pred = [[head], [B(0, 0, .2, .2), B(.5, .5, .2, .2)]]
    layouts_gt = [[head], [B(0, 0, .2, .2)]]
    # TP = 1 + 1 = 2; predicted 3; ground truth 2 -> P = 2/3, R = 1, F1 = 2 (2/3) / (5/3) = 0.8
    p, r, f = M.element_prf(layouts_pred, layouts_gt, 0.5)
    assert (p, r, f) == pytest.approx((2 / 3, 1.0, 0.8))
    # an invalid generation passed as [] costs recall: TP 1 of gt 2, pred 1 -> P 1, R .5, F1 2/3
    assert M.element_prf([[head], []], layouts_gt, 0.5) == pytest.approx((1.0, 0.5, 2 / 3))


def test_element_prf_threshold_075():
    # IoU 1/3 pair: a match at neither threshold; IoU 0.8 pair: at 0.5 and 0.75.
    pred = [[B(0, 0, .5, .5), B(0, .6, .5, .4, "heading")]]
    gt = [[B(.25, 0, .5, .5), B(0, .6, .4, .4, "heading")]]  # heading IoU = .16 / .2 = 0.8
    assert M.element_prf(pred, gt, 0.5) == pytest.approx((.5, .5, .5))
    assert M.element_prf(pred, gt, 0.75) == pytest.approx((.5, .5, .5))
    assert M.element_prf(pred, gt, 0.85) == (0.0, 0.0, 0.0)


def test_mean_matched_iou_counts_zero_iou_pairs():
    preds = [[B(0, 0, .5, .5)], [B(0, 0, .2, .2, "heading")], [B(.1, .1, .1, .1, "image")]]
    gts = [[B(.25, 0, .5, .5)], [B(.5, .5, .2, .2, "heading")], [B(.1, .1, .1, .1, "image")]]
    # pairs: 1/3, 0 (same type, disjoint), 1 -> mean 4/9
    assert M.mean_matched_iou(preds, gts) == pytest.approx(4 / 9)
    assert M.mean_matched_iou([[]], [[B(0, 0, .1, .1)]]) == 0.0


# ---------------------------------------------------------------------------- alignment


A = B(.1, .1, .2, .2)     # lines: left .1, xc .2, right .3 | top .1, yc .2, bottom .3
Bx = B(.15, .5, .4, .2)   # lines: left .15, xc .35, right .55 | top .5, yc .6, bottom .7
C = B(.7, .1, .1, .1)     # lines: left .7, xc .75, right .8 | top .1, yc .15, bottom .2


def test_alignment_two_elements_by_hand():
    # A vs B per line: .05 .15 .25 .4 .4 .4 -> d_A = d_B = .05
    # alignment = (1/2)(-log .95 - log .95) = -log .95 = 0.0512933
    assert M.layout_alignment([A, Bx]) == pytest.approx(-math.log(0.95))
    assert M.layout_alignment([A, Bx]) == pytest.approx(0.0512933, abs=1e-7)


def test_alignment_three_elements_by_hand():
    # d_A = 0 (top of A = top of C), d_C = 0, d_B = .05 (left vs A; vs C min is .25)
    # alignment = (0 + -log .95 + 0) / 3 = 0.0170978
    assert M.layout_alignment([A, Bx, C]) == pytest.approx(-math.log(0.95) / 3)


def test_alignment_single_element_has_no_term_and_is_not_averaged():
    assert M.layout_alignment([A]) is None
    assert M.layout_alignment([]) is None
    assert M.alignment([[A], [A, Bx]]) == pytest.approx(-math.log(0.95))
    assert M.alignment([[A]]) == 0.0


def test_alignment_masks_padding_on_both_axes():
    # L: e1 lines left 0, xc .15, right .3, top .2, yc .25, bottom .3
    #    e2 lines left .5, xc .6, right .7, top .6, yc .75, bottom .9
    # diffs .5 .45 .4 .4 .5 .6 -> d = .4 for both -> -log .6 = 0.5108
    L = [B(0, .2, .3, .1), B(.5, .6, .2, .3)]
    assert M.layout_alignment(L) == pytest.approx(-math.log(0.6))
    # Batched with a 3-element layout, L gets a padding box (0,0,0,0) whose left line (0) equals
    # e1's: masking only one axis would give e1 d = 0 and L (0 + .5108)/2.
    expected = (-math.log(0.6) + -math.log(0.95) / 3) / 2
    assert M.alignment([L, [A, Bx, C]]) == pytest.approx(expected)


# ---------------------------------------------------------------------------- overlap


def test_overlap_by_hand():
    # P, Q: area .25 each, intersection .25 x .25 = .0625 -> ratios .25 + .25, / n=2 -> 0.25
    P, Q = B(0, 0, .5, .5), B(.25, .25, .5, .5)
    assert M.layout_overlap([P, Q]) == pytest.approx(0.25)
    # Big (area 1) and Small (area .25) inside it: .25/1 + .25/.25 = 1.25, / 2 -> 0.625
    big, small = B(0, 0, 1, 1), B(0, 0, .5, .5)
    assert M.layout_overlap([big, small]) == pytest.approx(0.625)
    # a third, disjoint element only grows n: .5 / 3
    assert M.layout_overlap([P, Q, B(.8, .8, .1, .1)]) == pytest.approx(1 / 6)
    assert M.layout_overlap([P]) == 0.0
    assert M.layout_overlap([]) is None
    # dataset: mean over non-empty layouts (.25 + .625 + 0) / 3
    assert M.overlap([[P, Q], [big, small], [P], []]) == pytest.approx(0.875 / 3)


def test_overlap_touching_and_zero_area():
    assert M.layout_overlap([B(0, 0, .5, .5), B(.5, 0, .5, .5)]) == 0.0
    # a zero-area element contributes 0 (its own ratio would be 0/0)
    assert M.layout_overlap([B(.1, .1, 0, .2), B(0, 0, .5, .5)]) == 0.0


# ---------------------------------------------------------------------------- validity and all


def test_validity():
    assert M.validity([True, False, True, True]) == 0.75
    assert M.validity([]) == 0.0


def test_layout_metrics_keys_and_perfect_prediction():
    gts = [[A, Bx, C], [B(0, 0, .5, .5, "heading"), B(.25, .25, .5, .5)]]
    out = M.layout_metrics(gts, gts)
    assert set(out) == {
        "element_precision@0.5", "element_recall@0.5", "element_f1@0.5",
        "element_precision@0.75", "element_recall@0.75", "element_f1@0.75",
        "mean_iou", "alignment", "overlap", "alignment_reference", "overlap_reference"}
    for k in ("element_f1@0.5", "element_f1@0.75", "mean_iou"):
        assert out[k] == pytest.approx(1.0)
    assert out["alignment"] == out["alignment_reference"]
    assert out["overlap"] == out["overlap_reference"]
    assert all(isinstance(v, float) for v in out.values())
    with_validity = M.layout_metrics([gts[0], []], gts, parsed_ok=[True, False])
    assert with_validity["validity"] == 0.5
    assert with_validity["element_recall@0.5"] == pytest.approx(3 / 5)


def test_element_prf_by_type_by_hand():
    # layout 1: two cards found exactly; an icon 0.02 wide predicted 0.01 to the right (IoU 1/3)
    gt1 = [B(0, 0, .4, .5, "card"), B(.5, 0, .4, .5, "card"), B(.1, .6, .02, .02, "icon")]
    pr1 = [B(0, 0, .4, .5, "card"), B(.5, 0, .4, .5, "card"), B(.11, .6, .02, .02, "icon")]
    # layout 2: one card missed (predicted as a link), nothing else
    gt2 = [B(0, 0, .5, .5, "card")]
    pr2 = [B(0, 0, .5, .5, "link")]
    out = M.element_prf_by_type([pr1, pr2], [gt1, gt2], 0.5)
    assert list(out) == ["card", "icon", "link"]  # most frequent true type first, then by name
    assert out["card"] == pytest.approx({"precision": 1.0, "recall": 2 / 3, "f1": 0.8, "true": 3, "predicted": 2})
    assert out["icon"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "true": 1, "predicted": 1}
    assert out["link"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "true": 0, "predicted": 1}
    # the per-type true positives add up to the overall micro-averaged figure
    p, r, _ = M.element_prf([pr1, pr2], [gt1, gt2], 0.5)
    tp = sum(v["precision"] * v["predicted"] for v in out.values())
    assert tp == pytest.approx(p * 4) == pytest.approx(r * 4) == 2


def test_miss_analysis_bands_and_near_miss_errors_by_hand():
    gt = [B(0, 0, .4, .5, "card"), B(.5, 0, .4, .5, "card"),    # found exactly; shifted by .2 of .4
          B(.1, .6, .02, .02, "icon"), B(.5, .6, .1, .1, "image"),  # IoU 1/3; disjoint
          B(.8, .8, .1, .1, "button"),                           # no button predicted
          B(0, .7, .4, .1, "heading")]                           # IoU .6: found, not a near miss
    pr = [B(0, 0, .4, .5, "card"), B(.7, 0, .4, .5, "card"),     # second card: IoU .2/.6 = 1/3
          B(.11, .6, .02, .02, "icon"), B(0, 0, .1, .1, "image"), B(.8, .8, .1, .1, "link"),
          B(0, .7, .24, .1, "heading")]
    out = M.miss_analysis([pr], [gt])
    assert out["bands"] == pytest.approx({">=0.75": 1 / 6, "0.5-0.75": 1 / 6, "0.25-0.5": 2 / 6,
                                          "0-0.25": 0.0, "none": 2 / 6})
    assert sum(out["bands"].values()) == pytest.approx(1.0)
    # the two near misses (card and icon, IoU 1/3 each) are off along x only: .2 and .01
    assert out["abs_error_pairs"] == 2
    assert out["abs_error"] == pytest.approx({"x": .105, "y": 0.0, "w": 0.0, "h": 0.0})
    # a box overlapping a little (IoU 1/7) is in the lowest band
    low = M.miss_analysis([[B(0, 0, .4, .4)]], [[B(.3, 0, .4, .4)]])
    assert low["bands"]["0-0.25"] == 1.0 and low["abs_error_pairs"] == 1
    with pytest.raises(ValueError):
        M.miss_analysis([[]], [])
