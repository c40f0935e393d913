"""Analysis-window statistics and the canary verdict (pure Python: unit-testable, no Ray).

A window holds, per version, the outcome (ok / error) and latency of every request the router
sent it since the window opened (shadow copies included for the canary), and what the version
answered: how many of its layouts were valid (`answer_quality`), their mean overlap and
alignment, and, for requests shadowed to the canary, how far the canary's layout agreed with
stable's for the same request (`request_agreement`, a mean IoU). Errors and latency alone miss a
model that answers fast and wrong: weights damaged after export still give well-formed layouts.
`analyse` gives one verdict for the canary:

- inconclusive: fewer than `min_requests` canary requests (the step holds; nothing advances on
  no data);
- fail: canary error rate above `max_error_rate`, canary P95 above `max_p95_ms`, canary error rate
  significantly above stable's (one-sided two-proportion z-test at `alpha`), or canary P95 above
  `latency_ratio * stable P95 + latency_slack_ms` (signals `errors`, `latency`); or a share of
  valid canary layouts below `min_valid_share` or more than `max_valid_drop` below stable's, a
  mean canary overlap above `overlap_ratio * stable's + overlap_slack`, the same for alignment
  (lower is better for both), or a mean agreement with stable below `min_agreement` over at
  least `min_agreement_pairs` shadowed requests (signals `quality.valid`, `quality.overlap`,
  `quality.alignment`, `quality.agreement`);
- pass: otherwise.

Every failure reason starts with its signal's group ("errors: ...", "latency: ...",
"quality: overlap 2.10 vs stable 0.41 (> 1.5x + 0.05)"), and the verdict lists the signals.

The comparisons with stable need at least `min_requests` stable requests in the same window
(at 100% canary there are none); when stable has too few, they are skipped and the reason says so.
Agreement needs shadowing (`shadow_share` > 0) and greedy requests: sampled layouts differ by
chance even between identical models.

`Windows` is the router's open window for every slot. The statistics themselves (percentile,
z-test) are layoutray/eval/stats.py's.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable, Optional

from layoutray.eval.stats import percentile, two_proportion_z
from layoutray.model.layout_checks import finite, layout_agreement, layout_problems, mean


def answer_quality(payload: dict, result: Any) -> dict:
    """What one successful answer says about its version's output: {"layouts": n, "valid": k,
    "overlap": [...], "alignment": [...]} (the per-layout scores the model computed, finite ones
    only). `payload` is the request as sent to the version (LayoutRequest.to_dict()). Never
    raises: an answer without layouts counts as one invalid layout."""
    q = {"layouts": 0, "valid": 0, "overlap": [], "alignment": []}
    try:
        layouts = list(result["layouts"])
        W, H = int(payload.get("canvas_width", 1440)), int(payload.get("canvas_height", 800))
    except (KeyError, TypeError, ValueError):
        layouts = []
    if not layouts:
        q["layouts"] = 1
        return q
    for layout in layouts:
        q["layouts"] += 1
        q["valid"] += not layout_problems(layout, payload.get("elements"), W, H)
        for key in ("overlap", "alignment"):
            v = layout.get(key) if isinstance(layout, dict) else None
            if finite(v):
                q[key].append(float(v))
    return q


def request_agreement(payload: dict, stable_result: Any, canary_result: Any) -> Optional[float]:
    """`layout_agreement` of the first layouts two versions gave for the same request; None when
    it says nothing: a sampled request (temperature > 0) or an answer without layouts."""
    if float(payload.get("temperature") or 0.0) > 0.0:
        return None
    try:
        return layout_agreement(stable_result["layouts"][0]["elements"], canary_result["layouts"][0]["elements"])
    except (KeyError, IndexError, TypeError, ValueError):
        return None


# Samples a window keeps per signal: windows close at each rollout decision, but with no rollout
# running nothing closes them, and the router must not grow without bound; counts stay exact.
WINDOW_SAMPLES = 20_000


def _samples() -> deque:
    return deque(maxlen=WINDOW_SAMPLES)


@dataclass
class VersionWindow:
    n: int = 0
    errors: int = 0
    latencies_ms: deque = field(default_factory=_samples)  # of successful requests (the latest)
    layouts: int = 0  # layouts in successful answers
    valid_layouts: int = 0
    overlaps: deque = field(default_factory=_samples)
    alignments: deque = field(default_factory=_samples)
    agreements: deque = field(default_factory=_samples)  # with stable, per shadowed request

    def add(self, ok: bool, latency_ms: float, quality: Optional[dict] = None) -> None:
        self.n += 1
        if ok:
            self.latencies_ms.append(latency_ms)
        else:
            self.errors += 1
        if quality:
            self.layouts += quality["layouts"]
            self.valid_layouts += quality["valid"]
            self.overlaps += quality["overlap"]
            self.alignments += quality["alignment"]

    @property
    def valid_share(self) -> Optional[float]:
        return self.valid_layouts / self.layouts if self.layouts else None

    @property
    def overlap(self) -> Optional[float]:
        return mean(self.overlaps)

    @property
    def alignment(self) -> Optional[float]:
        return mean(self.alignments)

    @property
    def agreement(self) -> Optional[float]:
        return mean(self.agreements)

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.n if self.n else None

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.latencies_ms, 95)

    def summary(self) -> dict:
        p50, p95 = percentile(self.latencies_ms, 50), self.p95_ms
        return {"requests": self.n, "errors": self.errors, "error_rate": _round(self.error_rate, 4),
                "p50_ms": _round(p50, 2), "p95_ms": _round(p95, 2),
                "layouts": self.layouts, "valid_share": _round(self.valid_share, 4),
                "overlap": _round(self.overlap, 4), "alignment": _round(self.alignment, 4),
                "agreement": _round(self.agreement, 4), "agreement_pairs": len(self.agreements)}


def _round(v: Optional[float], digits: int) -> Optional[float]:
    return None if v is None else round(v, digits)


class Windows:
    """The open analysis window of every slot: what the router saw since `opened`."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.by_slot: dict[str, VersionWindow] = {}
        self.opened = self.clock()

    def add(self, slot: str, ok: bool, latency_ms: float, quality: Optional[dict] = None) -> None:
        self.by_slot.setdefault(slot, VersionWindow()).add(ok, latency_ms, quality)

    def add_agreement(self, slot: str, agreement: Optional[float]) -> None:
        """`slot`'s agreement with stable on one request (None: the request says nothing)."""
        if agreement is not None:
            self.by_slot.setdefault(slot, VersionWindow()).agreements.append(float(agreement))

    def of(self, slot: str) -> VersionWindow:
        """The slot's window; an empty one (not kept) when the slot saw nothing yet."""
        return self.by_slot.get(slot, VersionWindow())

    def summary(self, canary: str, stable: str) -> dict:
        return {"age_s": round(self.clock() - self.opened, 1), "canary": self.of(canary).summary(),
                "stable": self.of(stable).summary()}


def measured_by_slot(entry: dict) -> dict[str, dict]:
    """A rollout decision's window measurements (audit entry `measured`), keyed by the slot each
    was taken on. A promotion's entry names the roles after the swap: what it measured as the
    canary is then its `stable` slot."""
    measured = entry.get("measured") or {}
    swapped = entry["decision"] == "promote"
    out = {}
    for role, other in (("canary", "stable"), ("stable", "canary")):
        out[entry[other if swapped else role]] = measured.get(role) or {}
    return out


@dataclass
class Thresholds:
    min_requests: int = 50
    max_error_rate: float = 0.05
    max_p95_ms: float = 2000.0
    alpha: float = 0.05
    latency_ratio: float = 1.5
    latency_slack_ms: float = 50.0
    # Output quality (see the module docstring). The defaults catch a broken model, not a
    # slightly different one: a retrained model may place boxes elsewhere and still be good.
    min_valid_share: float = 0.95
    max_valid_drop: float = 0.02
    overlap_ratio: float = 1.5
    overlap_slack: float = 0.05
    alignment_ratio: float = 1.5
    alignment_slack: float = 0.005
    min_agreement: float = 0.2  # 0 turns the agreement check off
    min_agreement_pairs: int = 20

    def to_dict(self) -> dict:
        return asdict(self)

    def invalid(self) -> Optional[tuple[str, str]]:
        """(field, message) of the first quality threshold out of range, else None."""
        for name in QUALITY_FIELDS:
            v = getattr(self, name)
            if not finite(v):
                return name, f"must be a finite number; got {v!r}"
            if name in ("min_valid_share", "max_valid_drop", "min_agreement") and not 0 <= v <= 1:
                return name, f"must be in [0, 1]; got {v}"
            if name.endswith("_ratio") and not v >= 1:
                return name, f"must be >= 1 (a canary as good as stable must pass); got {v}"
            if (name.endswith("_slack") or name == "min_agreement_pairs") and v < 0:
                return name, f"must be >= 0; got {v}"
        return None


QUALITY_FIELDS = ("min_valid_share", "max_valid_drop", "overlap_ratio", "overlap_slack", "alignment_ratio",
                  "alignment_slack", "min_agreement", "min_agreement_pairs")
QUALITY_DEFAULTS = {f.name: f.default for f in fields(Thresholds) if f.name in QUALITY_FIELDS}


@dataclass
class Verdict:
    result: str  # pass | fail | inconclusive
    reasons: list[str]
    measured: dict
    signals: list[str] = field(default_factory=list)  # the failed ones: errors, latency, quality.*

    def to_dict(self) -> dict:
        return {"result": self.result, "reasons": self.reasons, "measured": self.measured,
                "signals": self.signals}


Failure = tuple[str, str]  # (signal, reason)


def analyse(canary: VersionWindow, stable: VersionWindow, th: Thresholds) -> Verdict:
    measured = {"canary": canary.summary(), "stable": stable.summary()}
    if canary.n < th.min_requests:
        return Verdict("inconclusive", [f"{canary.n} canary requests < min_requests {th.min_requests}; "
                                        "holding the step"], measured)
    fails, notes = _absolute_failures(canary, th), []
    if stable.n >= th.min_requests:
        fails += _errors_and_latency_vs_stable(canary, stable, th, measured)
        fails += _quality_vs_stable(canary, stable, th)
    else:
        notes.append(f"comparison with stable skipped: {stable.n} stable requests < {th.min_requests}")
    fails += _agreement_failures(canary, th, notes)
    if fails:
        signals = sorted({signal for signal, _ in fails})
        return Verdict("fail", [f"{signal.split('.')[0]}: {reason}" for signal, reason in fails] + notes,
                       measured, signals)
    er, p95 = canary.error_rate or 0.0, canary.p95_ms
    return Verdict("pass", [f"canary error rate {er:.3f} <= {th.max_error_rate:.3f}, "
                            f"P95 {p95:.1f} ms <= {th.max_p95_ms:.1f} ms", _quality_note(canary, stable)]
                   + notes, measured)


def _absolute_failures(canary: VersionWindow, th: Thresholds) -> list[Failure]:
    """What the canary fails on its own numbers."""
    fails = []
    er = canary.error_rate or 0.0
    if er > th.max_error_rate:
        fails.append(("errors", f"canary error rate {er:.3f} > max {th.max_error_rate:.3f}"))
    p95 = canary.p95_ms
    if p95 is not None and p95 > th.max_p95_ms:
        fails.append(("latency", f"canary P95 {p95:.1f} ms > max {th.max_p95_ms:.1f} ms"))
    if p95 is None:
        fails.append(("errors", "no successful canary request in the window"))
    valid = canary.valid_share
    if valid is not None and valid < th.min_valid_share:
        fails.append(("quality.valid", f"valid layouts {valid:.3f} < min {th.min_valid_share:.3f} "
                                       f"({canary.layouts - canary.valid_layouts} of {canary.layouts} invalid)"))
    return fails


def _errors_and_latency_vs_stable(canary: VersionWindow, stable: VersionWindow, th: Thresholds,
                                  measured: dict) -> list[Failure]:
    fails = []
    er = canary.error_rate or 0.0
    z, p = two_proportion_z(canary.errors, canary.n, stable.errors, stable.n)
    measured["z"], measured["p_value"] = round(z, 4), round(p, 6)
    if p < th.alpha:
        fails.append(("errors", f"canary error rate {er:.3f} significantly above stable "
                                f"{stable.error_rate:.3f} (z={z:.2f}, p={p:.4f} < {th.alpha})"))
    p95, sp95 = canary.p95_ms, stable.p95_ms
    if p95 is not None and sp95 is not None:
        limit = th.latency_ratio * sp95 + th.latency_slack_ms
        measured["p95_limit_vs_stable_ms"] = round(limit, 2)
        if p95 > limit:
            fails.append(("latency", f"canary P95 {p95:.1f} ms > {th.latency_ratio} x stable P95 {sp95:.1f} ms "
                                     f"+ {th.latency_slack_ms:.0f} ms"))
    return fails


def _quality_vs_stable(canary: VersionWindow, stable: VersionWindow, th: Thresholds) -> list[Failure]:
    """Canary output quality against stable's in the same window (both saw the same traffic mix).
    Lower is better for overlap and alignment; a measure one side lacks is not compared."""
    fails = []
    cv, sv = canary.valid_share, stable.valid_share
    if cv is not None and sv is not None and cv < sv - th.max_valid_drop:
        fails.append(("quality.valid", f"valid layouts {cv:.3f} vs stable {sv:.3f} "
                                       f"(drop > {th.max_valid_drop})"))
    for name, ratio, slack in (("overlap", th.overlap_ratio, th.overlap_slack),
                               ("alignment", th.alignment_ratio, th.alignment_slack)):
        c, s = getattr(canary, name), getattr(stable, name)
        if c is not None and s is not None and c > ratio * s + slack:
            fails.append((f"quality.{name}", f"{name} {c:.3f} vs stable {s:.3f} (> {ratio}x + {slack})"))
    return fails


def _agreement_failures(canary: VersionWindow, th: Thresholds, notes: list[str]) -> list[Failure]:
    pairs = len(canary.agreements)
    if th.min_agreement <= 0 or pairs == 0:
        return []  # off, or nothing shadowed: nothing to say
    if pairs < max(1, th.min_agreement_pairs):
        notes.append(f"agreement with stable skipped: {pairs} shadowed pairs < {th.min_agreement_pairs}")
        return []
    a = canary.agreement
    if a < th.min_agreement:
        return [("quality.agreement", f"agreement with stable {a:.2f} < min {th.min_agreement} "
                                      f"(mean IoU over {pairs} shadowed requests)")]
    return []


def _quality_note(canary: VersionWindow, stable: VersionWindow) -> str:
    """The quality numbers a pass was judged on, for the audit log."""
    def pair(name: str) -> str:
        c, s = getattr(canary, name), getattr(stable, name)
        return f"{name} {_fmt(c)} (stable {_fmt(s)})"

    parts = [pair("valid_share"), pair("overlap"), pair("alignment")]
    if canary.agreements:
        parts.append(f"agreement {canary.agreement:.2f} over {len(canary.agreements)} pairs")
    return "quality: " + ", ".join(parts)


def _fmt(v: Optional[float]) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v:.3f}"
