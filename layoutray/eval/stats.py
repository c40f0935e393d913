"""The project's statistics, in one place.

For comparing training arms over seeds: t confidence intervals, Welch's t-test, Mann-Whitney U,
Cohen's d / Hedges' g / rank-biserial r, Holm's correction over many comparisons, and the power
of a study (the smallest difference it could detect). For the canary judge (serving/judge.py): the nearest-rank percentile and
the one-sided two-proportion z-test, in plain Python.

With the few seeds a sweep affords, read the numbers with care: Mann-Whitney's two-sided exact
p-value can never go below 0.1 with 3 vs 3 samples (2 / C(6, 3) = 0.1), and a t-test on 3 seeds
has little power. A CI that includes 0 difference is "no detectable difference", not "equal".
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def _sps():
    """scipy.stats on first use: the serving router imports this module only for `percentile` and
    `two_proportion_z` (plain Python), and importing scipy.stats adds about half a second."""
    from scipy import stats
    return stats


def _arr(values: Sequence[float], name: str = "values") -> np.ndarray:
    a = np.asarray(list(values), dtype=float)
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    return a


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval mean +- t_{(1+c)/2, n-1} * s / sqrt(n).

    One value has no interval: (x, nan, nan). Identical values give a zero-width interval.
    """
    a = _arr(values)
    mean = float(a.mean())
    if a.size < 2:
        return mean, math.nan, math.nan
    half = float(_sps().t.ppf((1 + confidence) / 2, a.size - 1) * a.std(ddof=1) / math.sqrt(a.size))
    return mean, mean - half, mean + half


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test (scipy ttest_ind, equal_var=False).

    When both samples have zero variance scipy returns NaN; we return (0, 1) for equal means and
    (+-inf, 0) for different ones, which is what the limit of the test says.
    """
    x, y = _arr(a, "a"), _arr(b, "b")
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's t-test needs at least 2 values per sample")
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        diff = x[0] - y[0]
        return (0.0, 1.0) if diff == 0 else (math.copysign(math.inf, diff), 0.0)
    res = _sps().ttest_ind(x, y, equal_var=False)
    return float(res.statistic), float(res.pvalue)


def welch_df(a: Sequence[float], b: Sequence[float]) -> float:
    """Welch-Satterthwaite degrees of freedom."""
    x, y = _arr(a, "a"), _arr(b, "b")
    va, vb = x.var(ddof=1) / x.size, y.var(ddof=1) / y.size
    if va + vb == 0:
        return float(x.size + y.size - 2)
    return float((va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1)))


def diff_ci(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean(a) - mean(b), low, high), the Welch interval that matches `welch_t_test`."""
    x, y = _arr(a, "a"), _arr(b, "b")
    diff = float(x.mean() - y.mean())
    se = math.sqrt(x.var(ddof=1) / x.size + y.var(ddof=1) / y.size)
    half = float(_sps().t.ppf((1 + confidence) / 2, welch_df(x, y)) * se)
    return diff, diff - half, diff + half


def mann_whitney(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of a, two-sided p) of the Mann-Whitney U test (scipy, method "auto": exact for small
    samples without ties). All values equal: (n_a * n_b / 2, 1.0)."""
    x, y = _arr(a, "a"), _arr(b, "b")
    if np.ptp(np.concatenate([x, y])) == 0:
        return x.size * y.size / 2, 1.0
    res = _sps().mannwhitneyu(x, y, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean(a) - mean(b)) / pooled SD, pooled SD = sqrt(((na-1) sa^2 + (nb-1) sb^2) / (na+nb-2)).

    Zero pooled SD: 0 for equal means, +-inf otherwise.
    """
    x, y = _arr(a, "a"), _arr(b, "b")
    if x.size + y.size < 3:
        raise ValueError("Cohen's d needs at least 3 values in all")
    diff = float(x.mean() - y.mean())
    ss = (x.size - 1) * (x.var(ddof=1) if x.size > 1 else 0.0) + (y.size - 1) * (y.var(ddof=1) if y.size > 1 else 0.0)
    pooled = math.sqrt(ss / (x.size + y.size - 2))
    if pooled == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / pooled


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Cohen's d times the small-sample correction J = 1 - 3 / (4 (na + nb) - 9)."""
    n = len(list(a)) + len(list(b))
    return cohens_d(a, b) * (1 - 3 / (4 * n - 9))


def compare_arms(a: Sequence[float], b: Sequence[float], confidence: float = 0.95) -> dict:
    """Everything a report row needs to compare arm a with arm b (differences are a - b).

    Keys: n_a, n_b, mean_a, ci_a, mean_b, ci_b (ci as [low, high]), diff, diff_ci, welch_t,
    welch_p, mannwhitney_u, mannwhitney_p, cohens_d, hedges_g, rank_biserial, confidence.
    """
    x, y = _arr(a, "a"), _arr(b, "b")
    ma, la, ha = mean_ci(x, confidence)
    mb, lb, hb = mean_ci(y, confidence)
    t, p_t = welch_t_test(x, y)
    diff, dl, dh = diff_ci(x, y, confidence)
    u, p_u = mann_whitney(x, y)
    return {
        "n_a": int(x.size), "n_b": int(y.size),
        "mean_a": ma, "ci_a": [la, ha], "mean_b": mb, "ci_b": [lb, hb],
        "diff": diff, "diff_ci": [dl, dh],
        "welch_t": t, "welch_p": p_t, "mannwhitney_u": u, "mannwhitney_p": p_u,
        "cohens_d": cohens_d(x, y), "hedges_g": hedges_g(x, y), "rank_biserial": rank_biserial(x, y),
        "confidence": confidence,
    }


def rank_biserial(a: Sequence[float], b: Sequence[float]) -> float:
    """The Mann-Whitney effect size r = 2 U_a / (n_a n_b) - 1, in [-1, 1]: the probability that a
    value of a exceeds one of b, minus the reverse (ties count half). 0: no shift."""
    u, _ = mann_whitney(a, b)
    return 2.0 * u / (len(list(a)) * len(list(b))) - 1.0


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    The k-th smallest of the m p-values is multiplied by (m - k + 1); the running maximum keeps
    the adjusted values in the order of the raw ones, and they are capped at 1. Rejecting where
    the adjusted p < alpha controls the family-wise error rate at alpha across all m comparisons.
    NaN (a comparison that could not be run) stays NaN and does not count in m.
    """
    ps = [float(p) for p in pvalues]
    idx = sorted((i for i, p in enumerate(ps) if math.isfinite(p)), key=lambda i: ps[i])
    m, out, running = len(idx), [math.nan] * len(ps), 0.0
    for k, i in enumerate(idx):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


def t_test_power(effect: float, n_a: int, n_b: int, alpha: float = 0.05) -> float:
    """Power of the two-sided two-sample t-test (pooled, df = n_a + n_b - 2) at a true difference
    of `effect` standard deviations: P(|T| > t_crit) with T non-central t, nc = effect / sqrt(1/n_a + 1/n_b)."""
    if n_a < 2 or n_b < 2:
        raise ValueError(f"power needs at least 2 values per sample; got {n_a} and {n_b}")
    st = _sps()
    df = n_a + n_b - 2
    nc = abs(effect) / math.sqrt(1 / n_a + 1 / n_b)
    crit = st.t.ppf(1 - alpha / 2, df)
    upper, lower = float(st.nct.sf(crit, df, nc)), float(st.nct.cdf(-crit, df, nc))
    # scipy's non-central t returns NaN far in its tails, where the true values are 1 and 0.
    upper = upper if math.isfinite(upper) else 1.0
    lower = lower if math.isfinite(lower) else 0.0
    return min(1.0, upper + lower)


def min_detectable_effect(n_a: int, n_b: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest true difference, in standard deviations (Cohen's d), that the two-sided
    two-sample t-test at `alpha` detects with probability `power` given n_a and n_b values
    (5 vs 5 at 0.05 / 0.8: d = 2.02; 64 vs 64: d = 0.50). Multiply by the SD for the absolute
    difference (`min_detectable_difference`); with Holm over m comparisons pass alpha / m for the
    most strictly judged one."""
    if not 0 < alpha < 1 or not alpha < power < 1:
        raise ValueError(f"need 0 < alpha < power < 1; got alpha {alpha}, power {power}")
    t_test_power(0.0, n_a, n_b, alpha)  # checks the sizes
    return float(_sps_optimize().brentq(lambda d: t_test_power(d, n_a, n_b, alpha) - power, 1e-9, 50.0))


def min_detectable_difference(sd: float, n_a: int, n_b: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """`min_detectable_effect` in the metric's own units: times the (pooled) standard deviation."""
    return float(sd) * min_detectable_effect(n_a, n_b, alpha, power)


def pooled_sd(a: Sequence[float], b: Sequence[float]) -> float:
    """sqrt(((n_a-1) s_a^2 + (n_b-1) s_b^2) / (n_a + n_b - 2)), the denominator of Cohen's d."""
    x, y = _arr(a, "a"), _arr(b, "b")
    if x.size + y.size < 3:
        raise ValueError("a pooled SD needs at least 3 values in all")
    ss = (x.size - 1) * (x.var(ddof=1) if x.size > 1 else 0.0) + (y.size - 1) * (y.var(ddof=1) if y.size > 1 else 0.0)
    return math.sqrt(ss / (x.size + y.size - 2))


def _sps_optimize():
    from scipy import optimize
    return optimize


# ----------------------------------------------------------------------------- canary judge


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in [0, 100]); None for no values."""
    s = sorted(values)
    if not s:
        return None
    k = max(0, min(len(s) - 1, math.ceil(q / 100.0 * len(s)) - 1))
    return s[k]


def two_proportion_z(errors_a: int, n_a: int, errors_b: int, n_b: int) -> tuple[float, float]:
    """z and one-sided p-value for 'rate a > rate b' (pooled two-proportion z-test).

    An empty sample, or a pooled rate of 0 or 1 (no variance), gives (0, 1): no evidence.
    """
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
