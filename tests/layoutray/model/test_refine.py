"""The advanced level's refinement: it raises the aesthetic score, keeps every box within the IoU
bound of the generated one, keeps types and element count, and never lowers a layout's score."""

import numpy as np
import pytest
import torch

from layoutray.config import AestheticConfig
from layoutray.eval.aesthetic import layout_score
from layoutray.eval.metrics import alignment, box_iou, overlap
from layoutray.model.refine import bound_iou, box_iou_tensor, refine_layouts
from layoutray.model.tokenizer import Box

CFG = AestheticConfig()


def messy(seed: int) -> list[Box]:
    """A column of text and buttons, each box nudged off its line and some overlapping."""
    rng = np.random.default_rng(seed)
    out = []
    for k, t in enumerate(["heading", "paragraph", "paragraph", "button", "button", "image"]):
        x = 0.15 + rng.uniform(-0.02, 0.02) + (0.3 if t == "button" and k == 4 else 0.0)
        y = 0.1 + 0.13 * k + rng.uniform(-0.03, 0.03)
        w = 0.25 if t == "button" else 0.6
        out.append(Box(t, float(x), float(y), w, 0.12))
    return out


LAYOUTS = [messy(s) for s in range(12)]


@pytest.fixture(scope="module")
def refined():
    return refine_layouts(LAYOUTS, CFG)


def test_refinement_raises_the_score_and_metrics(refined):
    before = [layout_score(layout, CFG) for layout in LAYOUTS]
    after = [layout_score(layout, CFG) for layout in refined]
    assert all(a >= b - 1e-12 for a, b in zip(after, before))  # never lower
    assert np.mean(after) > np.mean(before) + 0.02
    assert alignment(refined) < alignment(LAYOUTS)
    assert overlap(refined) < overlap(LAYOUTS)


def test_refinement_keeps_types_count_and_the_iou_bound(refined):
    for old, new in zip(LAYOUTS, refined):
        assert [b.type for b in new] == [b.type for b in old]
        for a, b in zip(old, new):
            assert box_iou(a, b) >= CFG.refine_min_iou - 1e-6
            assert 0 <= b.x and b.x + b.w <= 1 + 1e-6 and 0 <= b.y and b.y + b.h <= 1 + 1e-6
    tight = AestheticConfig(refine_min_iou=0.97)
    for old, new in zip(LAYOUTS, refine_layouts(LAYOUTS, tight)):
        assert min(box_iou(a, b) for a, b in zip(old, new)) >= 0.97 - 1e-6


def test_bound_iou_pulls_boxes_back_onto_the_bound():
    original = torch.tensor([[0.1, 0.1, 0.2, 0.2], [0.5, 0.5, 0.1, 0.1]])
    refined = torch.tensor([[0.25, 0.1, 0.2, 0.2], [0.505, 0.5, 0.1, 0.1]])  # IoU 0.14 and 0.90
    out = bound_iou(refined, original, 0.8)
    iou = box_iou_tensor(out, original)
    assert iou[0] >= 0.8 and iou[0] < 0.81  # pulled back just far enough
    assert torch.equal(out[1], refined[1])  # within the bound: untouched


def test_refinement_leaves_tidy_and_tiny_layouts_alone():
    tidy = [Box("heading", 0.2, 0.3, 0.6, 0.1), Box("paragraph", 0.2, 0.45, 0.6, 0.1)]
    assert refine_layouts([tidy, [Box("image", 0.1, 0.1, 0.3, 0.3)], []], CFG) == \
        [tidy, [Box("image", 0.1, 0.1, 0.3, 0.3)], []]
    assert refine_layouts(LAYOUTS[:2], AestheticConfig(refine_steps=0)) == LAYOUTS[:2]


def test_held_elements_stay_exactly_where_they_are():
    held = [{0, 3}] * len(LAYOUTS)
    out = refine_layouts(LAYOUTS, CFG, held)
    moved = 0
    for old, new in zip(LAYOUTS, out):
        assert new[0] == old[0] and new[3] == old[3]
        moved += sum(a != b for a, b in zip(old, new))
    assert moved > 0  # the others are still refined
