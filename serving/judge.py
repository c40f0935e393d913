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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def two_proportion_z(errors_a: int, n_a: int, errors_b: int, n_b: int) -> tuple[float, float]:
    """z and one-sided p-value for 'rate a > rate b' (pooled two-proportion z-test)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pa, pb = errors_a / n_a, errors_b / n_b
    pool = (errors_a + errors_b) / (n_a + n_b)
    var = pool * (1.0 - pool) * (1.0 / n_a + 1.0 / n_b)
    if var <= 0.0:
        return 0.0, 1.0
    z = (pa - pb) / math.sqrt(var)
    p = 0.5 * math.erfc(z / math.sqrt(2.0))  # P(Z >= z)
    return z, p


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
