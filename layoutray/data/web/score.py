"""The labelling rules measured against pages that carry their own ground truth.

A test page marks every vocabulary element with `data-layout="TYPE"` and every section with
`data-section="TYPE"` (realweb/pages/). `score_pages` renders each page once, labels each
section twice (truth: the attributes alone; prediction: the rules alone, attributes ignored)
and matches the two sets of boxes: a truth element counts as labelled correctly when a predicted
element of the same type covers it with IoU >= `MATCH_IOU` (each prediction matched once,
best overlaps first). Figures: element accuracy (correct / truth, the headline), precision
(correct / predicted: extra elements the rules invent), per-type recall, the most common
confusions, and section-type accuracy (a section the rules refuse to classify counts as wrong).
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Iterable

from layoutray.data.web.elements import Element, label_tree
from layoutray.data.web.ingest import Options, SectionResult, collect_sources, render_sources
from layoutray.data.web.sections import classify

MATCH_IOU = 0.5


def iou(a: list[float], b: list[float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def match(truth: list[Element], pred: list[Element]) -> tuple[int, list[tuple[str, str]]]:
    """(correct, confusions): same-type pairs matched greedily by IoU; each unmatched truth element
    is reported against the best-overlapping prediction of any type ("-" when none overlaps)."""
    pairs = sorted(((iou(t.box, p.box), ti, pi) for ti, t in enumerate(truth) for pi, p in enumerate(pred)
                    if t.type == p.type), reverse=True)
    used_t, used_p = set(), set()
    for score, ti, pi in pairs:
        if score >= MATCH_IOU and ti not in used_t and pi not in used_p:
            used_t.add(ti)
            used_p.add(pi)
    confusions = []
    for ti, t in enumerate(truth):
        if ti in used_t:
            continue
        best = max(((iou(t.box, p.box), p.type) for pi, p in enumerate(pred) if pi not in used_p), default=(0, "-"))
        confusions.append((t.type, best[1] if best[0] >= MATCH_IOU else "-"))
    return len(used_t), confusions


class Tally:
    def __init__(self):
        self.truth = self.pred = self.correct = 0
        self.sections = self.sections_right = 0
        self.by_type: Counter = Counter()
        self.right_by_type: Counter = Counter()
        self.confusions: Counter = Counter()
        self.section_errors: list[dict] = []

    def add(self, res: SectionResult) -> None:
        t = res.tree
        truth = [e for e in label_tree(t, honour_explicit=True) if e.explicit]
        pred = label_tree(t, honour_explicit=False)
        correct, confusions = match(truth, pred)
        self.truth, self.pred, self.correct = self.truth + len(truth), self.pred + len(pred), self.correct + correct
        self.by_type.update(e.type for e in truth)
        self.right_by_type.update(e.type for e in truth)
        self.right_by_type.subtract(c[0] for c in confusions)
        self.confusions.update(f"{a} -> {b}" for a, b in confusions)
        want = (t.nodes[0].get("ds") or "").strip().lower() or None
        got = classify(t, pred, res.index, res.total, honour_explicit=False)
        self.sections += 1
        if got.section_type == want:
            self.sections_right += 1
        else:
            self.section_errors.append({"id": res.id, "truth": want, "got": got.section_type, "why": got.reason})

    def figures(self) -> dict:
        return {
            "elements_truth": self.truth, "elements_predicted": self.pred, "elements_correct": self.correct,
            "element_accuracy": round(self.correct / self.truth, 4) if self.truth else None,
            "element_precision": round(self.correct / self.pred, 4) if self.pred else None,
            "recall_by_type": {k: round(self.right_by_type[k] / n, 3) for k, n in sorted(self.by_type.items())},
            "confusions": dict(self.confusions.most_common(12)),
            "sections": self.sections, "sections_correct": self.sections_right,
            "section_accuracy": round(self.sections_right / self.sections, 4) if self.sections else None,
            "section_errors": self.section_errors,
        }


def score_pages(inputs: Iterable[str], widths: tuple[int, ...] = (1440,)) -> dict:
    """Render the pages once (attributes ignored, so the rendering run is the rules' own) and
    score every section; also reports the rendering rate of that run."""
    tally = Tally()
    opts = Options(widths=widths, honour_layout=False, honour_section=False)
    t0 = time.perf_counter()
    rep = render_sources(collect_sources(inputs), opts, on_result=tally.add)
    doc = rep.as_dict()
    figures = tally.figures()
    figures.update({"pages": doc["pages"], "render_seconds": doc["seconds"], "sections_per_s": doc["sections_per_s"],
                    "rows_written_if_ingested": doc["rows"], "skipped_if_ingested": doc["skipped"],
                    "wall_seconds": round(time.perf_counter() - t0, 3)})
    return figures
