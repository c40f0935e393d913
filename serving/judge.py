"""Analysis-window statistics and the canary verdict (pure Python: unit-testable, no Ray).

A window holds, per version, the outcome (ok / error) and latency of every request the router
sent it since the window opened (shadow copies included for the canary). `analyse` gives one
verdict for the canary:

- inconclusive: fewer than `min_requests` canary requests (the step holds; nothing advances on
  no data);
- fail: canary error rate above `max_error_rate`, canary P95 above `max_p95_ms`, canary error rate
  significantly above stable's (one-sided two-proportion z-test at `alpha`), or canary P95 above
  `latency_ratio * stable P95 + latency_slack_ms`;
- pass: otherwise.

The comparisons with stable need at least `min_requests` stable requests in the same window
(at 100% canary there are none); when stable has too few, they are skipped and the reason says so.

`Windows` is the router's open window for every slot. The statistics themselves (percentile,
z-test) are layoutray/eval/stats.py's.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

from layoutray.eval.stats import percentile, two_proportion_z


@dataclass
class VersionWindow:
    n: int = 0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # of successful requests

    def add(self, ok: bool, latency_ms: float) -> None:
        self.n += 1
        if ok:
            self.latencies_ms.append(latency_ms)
        else:
            self.errors += 1

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.n if self.n else None

    @property
    def p95_ms(self) -> float | None:
        return percentile(self.latencies_ms, 95)

    def summary(self) -> dict:
        p50, p95 = percentile(self.latencies_ms, 50), self.p95_ms
        return {"requests": self.n, "errors": self.errors,
                "error_rate": None if self.error_rate is None else round(self.error_rate, 4),
                "p50_ms": None if p50 is None else round(p50, 2),
                "p95_ms": None if p95 is None else round(p95, 2)}


class Windows:
    """The open analysis window of every slot: what the router saw since `opened`."""

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self.by_slot: dict[str, VersionWindow] = {}
        self.opened = self.clock()

    def add(self, slot: str, ok: bool, latency_ms: float) -> None:
        self.by_slot.setdefault(slot, VersionWindow()).add(ok, latency_ms)

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

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Verdict:
    result: str  # pass | fail | inconclusive
    reasons: list[str]
    measured: dict

    def to_dict(self) -> dict:
        return {"result": self.result, "reasons": self.reasons, "measured": self.measured}


def analyse(canary: VersionWindow, stable: VersionWindow, th: Thresholds) -> Verdict:
    measured = {"canary": canary.summary(), "stable": stable.summary()}
    if canary.n < th.min_requests:
        return Verdict("inconclusive", [f"{canary.n} canary requests < min_requests {th.min_requests}; "
                                        "holding the step"], measured)
    fails, notes = [], []
    er = canary.error_rate or 0.0
    if er > th.max_error_rate:
        fails.append(f"canary error rate {er:.3f} > max {th.max_error_rate:.3f}")
    p95 = canary.p95_ms
    if p95 is not None and p95 > th.max_p95_ms:
        fails.append(f"canary P95 {p95:.1f} ms > max {th.max_p95_ms:.1f} ms")
    if p95 is None:
        fails.append("no successful canary request in the window")
    if stable.n >= th.min_requests:
        z, p = two_proportion_z(canary.errors, canary.n, stable.errors, stable.n)
        measured["z"], measured["p_value"] = round(z, 4), round(p, 6)
        if p < th.alpha:
            fails.append(f"canary error rate {er:.3f} significantly above stable "
                         f"{stable.error_rate:.3f} (z={z:.2f}, p={p:.4f} < {th.alpha})")
        sp95 = stable.p95_ms
        if p95 is not None and sp95 is not None:
            limit = th.latency_ratio * sp95 + th.latency_slack_ms
            measured["p95_limit_vs_stable_ms"] = round(limit, 2)
            if p95 > limit:
                fails.append(f"canary P95 {p95:.1f} ms > {th.latency_ratio} x stable P95 {sp95:.1f} ms "
                             f"+ {th.latency_slack_ms:.0f} ms")
    else:
        notes.append(f"comparison with stable skipped: {stable.n} stable requests < {th.min_requests}")
    if fails:
        return Verdict("fail", fails + notes, measured)
    return Verdict("pass", [f"canary error rate {er:.3f} <= {th.max_error_rate:.3f}, "
                            f"P95 {p95:.1f} ms <= {th.max_p95_ms:.1f} ms"] + notes, measured)
