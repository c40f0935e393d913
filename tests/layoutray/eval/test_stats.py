"""Statistics give known answers on synthetic inputs."""

import json
import math

import numpy as np
import pytest
from scipy import stats as sps

from layoutray.eval import stats as St

approx = pytest.approx
A, B = [1.0, 2.0, 3.0], [4.0, 5.0, 6.0]


def test_mean_ci_by_hand():
    # mean 3, s = sqrt(2.5) = 1.581139, se = s / sqrt(5) = 0.707107, t(0.975, 4) = 2.776445
    # half width = 1.963243
    m, lo, hi = St.mean_ci([1, 2, 3, 4, 5])
    assert (m, lo, hi) == approx((3.0, 1.036757, 4.963243), abs=1e-6)
    # 90%: t(0.95, 4) = 2.131847 -> half 1.507443
    assert St.mean_ci([1, 2, 3, 4, 5], 0.90)[2] == approx(4.507443, abs=1e-6)
    assert St.mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    m, lo, hi = St.mean_ci([7.0])
    assert m == 7.0 and math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        St.mean_ci([])


def test_welch_by_hand_and_against_scipy():
    # means 2 and 5, variances 1 and 1: se = sqrt(1/3 + 1/3) = 0.816497, t = -3 / se = -3.674235
    # df = (2/3)^2 / ((1/3)^2/2 + (1/3)^2/2) = 4
    t, p = St.welch_t_test(A, B)
    assert t == approx(-3.674235, abs=1e-6)
    assert p == approx(2 * sps.t.sf(3.674235, 4), rel=1e-5)
    assert St.welch_df(A, B) == approx(4.0)
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, 7), rng.normal(0.5, 2, 9)
    ref = sps.ttest_ind(x, y, equal_var=False)
    assert St.welch_t_test(x, y) == approx((ref.statistic, ref.pvalue))


def test_identical_and_separated_samples():
    assert St.welch_t_test(A, A) == approx((0.0, 1.0))
    assert St.mann_whitney(A, A)[1] == approx(1.0)
    assert St.welch_t_test([1.0, 1.0], [1.0, 1.0]) == (0.0, 1.0)  # scipy alone gives NaN
    assert St.welch_t_test([1.0, 1.0], [2.0, 2.0]) == (-math.inf, 0.0)
    assert St.mann_whitney([1.0, 1.0], [1.0, 1.0]) == (2.0, 1.0)
    low, high = np.arange(20.0), np.arange(20.0) + 100
    assert St.welch_t_test(low, high)[1] < 1e-20
    assert St.mann_whitney(low, high)[1] < 1e-6


def test_mann_whitney_exact_small_samples():
    # 3 vs 3 fully separated: U_a = 0; exact two-sided p = 2 / C(6, 3) = 0.1, the smallest
    # p this test can give with 3 seeds per arm.
    assert St.mann_whitney(A, B) == approx((0.0, 0.1))
    assert St.mann_whitney(B, A) == approx((9.0, 0.1))
    x, y = [0.3, 1.2, 0.7, 2.2], [1.5, 2.9, 0.9, 3.1, 2.0]
    ref = sps.mannwhitneyu(x, y, alternative="two-sided")
    assert St.mann_whitney(x, y) == approx((ref.statistic, ref.pvalue))


def test_effect_sizes_by_hand():
    # pooled SD = sqrt((2 x 1 + 2 x 1) / 4) = 1 -> d = (2 - 5) / 1 = -3
    assert St.cohens_d(A, B) == approx(-3.0)
    # J = 1 - 3 / (4 x 6 - 9) = 0.8 -> g = -2.4
    assert St.hedges_g(A, B) == approx(-2.4)
    # unequal variances: a var 1, b = [0, 4, 8] var 16 -> pooled sqrt((2 + 32) / 4) = 2.915476
    assert St.cohens_d(A, [0.0, 4.0, 8.0]) == approx((2 - 4) / math.sqrt(8.5))
    assert St.cohens_d([1.0, 1.0], [1.0, 1.0]) == 0.0


def test_compare_arms_report_row():
    row = St.compare_arms(A, B)
    assert row["n_a"] == 3 and row["n_b"] == 3
    assert row["mean_a"] == 2.0 and row["mean_b"] == 5.0
    # mean 2, s = 1: half = t(0.975, 2) x 1 / sqrt(3) = 4.302653 x 0.577350 = 2.484138
    assert row["ci_a"] == approx([2 - 2.484138, 2 + 2.484138], abs=1e-6)
    # diff -3, half = t(0.975, 4) x 0.816497 = 2.776445 x 0.816497 = 2.266958
    assert row["diff"] == -3.0
    assert row["diff_ci"] == approx([-5.266958, -0.733042], abs=1e-6)
    assert row["welch_p"] == approx(St.welch_t_test(A, B)[1])
    assert row["mannwhitney_p"] == approx(0.1)
    assert row["cohens_d"] == approx(-3.0) and row["hedges_g"] == approx(-2.4)
    json.dumps(row)  # report-ready


# ----------------------------------------------------------------------------- canary judge


def test_percentile_nearest_rank():
    assert St.percentile([], 95) is None
    assert St.percentile(list(range(1, 101)), 95) == 95
    assert St.percentile([5.0], 50) == 5.0
    # nearest rank: the ceil(q/100 * n)-th smallest, whatever the input order
    vals = [40.0, 10.0, 30.0, 20.0]
    assert [St.percentile(vals, q) for q in (0, 25, 26, 50, 75, 95, 100)] == [10, 10, 20, 20, 30, 40, 40]
    assert St.percentile(iter([3.0, 1.0, 2.0]), 50) == 2.0
    assert vals == [40.0, 10.0, 30.0, 20.0]  # input left alone


def test_two_proportion_z_by_hand():
    # 30/100 vs 2/100: pooled 0.16, se = sqrt(0.16 x 0.84 x 0.02) = 0.0518459, z = 0.28 / se = 5.400617
    z, p = St.two_proportion_z(30, 100, 2, 100)
    assert z == approx(5.400617, abs=1e-5) and p == approx(sps.norm.sf(5.400617), rel=1e-4)
    assert z > 4 and p < 1e-4
    # one-sided: a lower rate is no evidence that a is worse
    z, p = St.two_proportion_z(2, 100, 30, 100)
    assert z == approx(-5.400617, abs=1e-5) and p > 0.999
    z, p = St.two_proportion_z(2, 100, 2, 100)
    assert z == 0 and abs(p - 0.5) < 1e-9
    assert St.two_proportion_z(0, 0, 1, 10) == (0.0, 1.0)
    assert St.two_proportion_z(0, 50, 0, 50) == (0.0, 1.0)
    assert St.two_proportion_z(50, 50, 50, 50) == (0.0, 1.0)
    # against scipy for a grid of counts
    for ea, na, eb, nb in ((5, 60, 1, 200), (12, 80, 9, 90), (0, 30, 3, 30)):
        pool = (ea + eb) / (na + nb)
        want = (ea / na - eb / nb) / math.sqrt(pool * (1 - pool) * (1 / na + 1 / nb))
        z, p = St.two_proportion_z(ea, na, eb, nb)
        assert z == approx(want) and p == approx(sps.norm.sf(want))


def test_judge_statistics_do_not_import_scipy():
    """The serving router imports this module for the two tests above; scipy.stats would slow
    its start, so the module imports it only when a function needs it."""
    import subprocess
    import sys

    code = ("import sys; from layoutray.eval import stats; stats.percentile([1], 50); "
            "stats.two_proportion_z(1, 2, 1, 2); print('scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr
    assert St.mean_ci([1.0, 2.0, 3.0])[1] < 2.0  # scipy is still there when needed


def test_holm_by_hand():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 = 0.02, 0.03, 0.06, 0.04; the running maximum
    # keeps the order of the raw p-values, so the last becomes 0.06 (as statsmodels' "holm")
    assert St.holm([0.01, 0.04, 0.03, 0.005]) == approx([0.03, 0.06, 0.06, 0.02])
    assert St.holm([0.2, 0.9]) == approx([0.4, 0.9])  # capped by the running max, not raised to 1
    assert St.holm([0.6, 0.7]) == approx([1.0, 1.0])  # capped at 1
    assert St.holm([0.03]) == approx([0.03])  # one comparison: nothing to correct
    out = St.holm([0.5, math.nan, 0.01])  # NaN stays NaN and does not count in m
    assert out[0] == approx(0.5) and math.isnan(out[1]) and out[2] == approx(0.02)
    assert St.holm([]) == []
    # Holm rejects everything Bonferroni rejects, and never more than uncorrected testing
    rng = np.random.default_rng(1)
    ps = rng.uniform(0, 0.1, 12)
    adj = np.array(St.holm(ps))
    assert np.all(adj >= ps - 1e-15) and np.all(adj <= np.minimum(1, ps * 12) + 1e-15)


def test_power_and_minimum_detectable_effect_known_cases():
    # G*Power / Cohen (1988), two-sided two-sample t-test at alpha 0.05, power 0.8:
    # n = 5 per group -> d = 2.0244; n = 20 -> d = 0.9091; n = 64 -> d ~ 0.50
    assert St.min_detectable_effect(5, 5) == approx(2.0244, abs=1e-3)
    assert St.min_detectable_effect(20, 20) == approx(0.9091, abs=1e-3)
    assert St.min_detectable_effect(64, 64) == approx(0.4991, abs=1e-3)
    # power at d = 0.5 with 64 per group is 0.80; at d = 0 it is alpha
    assert St.t_test_power(0.5, 64, 64) == approx(0.8015, abs=1e-3)
    assert St.t_test_power(0.0, 5, 5, alpha=0.05) == approx(0.05)
    assert St.t_test_power(-1.0, 10, 10) == approx(St.t_test_power(1.0, 10, 10))
    assert St.t_test_power(30.0, 5, 5) == approx(1.0)  # scipy's NaN tail is handled
    # stricter alpha (Holm's first step over 8 comparisons) or more power -> larger effect
    assert St.min_detectable_effect(5, 5, alpha=0.05 / 8) > St.min_detectable_effect(5, 5)
    assert St.min_detectable_effect(5, 5, power=0.9) > St.min_detectable_effect(5, 5)
    # a simulation agrees: at the MDE, about 80% of studies reject
    d = St.min_detectable_effect(6, 6)
    rng = np.random.default_rng(0)
    p = sps.ttest_ind(rng.normal(d, 1, (4000, 6)), rng.normal(0, 1, (4000, 6)), axis=1).pvalue
    assert float((p < 0.05).mean()) == approx(0.8, abs=0.025)
    assert St.min_detectable_difference(0.05, 5, 5) == approx(0.05 * 2.0244, abs=1e-4)
    with pytest.raises(ValueError):
        St.min_detectable_effect(1, 5)
    with pytest.raises(ValueError):
        St.min_detectable_effect(5, 5, alpha=0.9, power=0.8)


def test_effect_sizes_pooled_sd_and_rank_biserial():
    # A, B: SDs 1 and 1 -> pooled 1; diff -3 -> d = -3; no overlap -> r = -1
    assert St.pooled_sd(A, B) == approx(1.0)
    assert St.cohens_d(A, B) == approx(-3.0)
    assert St.rank_biserial(A, B) == approx(-1.0) and St.rank_biserial(B, A) == approx(1.0)
    # half the pairs each way: r = 0
    assert St.rank_biserial([1, 4], [2, 3]) == approx(0.0)
    c = St.compare_arms(A, B)
    assert c["rank_biserial"] == approx(-1.0)
