"""The sweep report on synthetic trial records: no Tune, no training."""

import csv
import json
import math

import pytest
from scipy import stats as sps

from trainables.report import min_exact_mannwhitney_p, steps_to_target, summarize, write_report


def _history(final: float, steps=(3, 6, 9), f1: float = 0.5) -> list[dict]:
    # val loss falls linearly to `final`: 3*final, 2*final, final
    return [{"epoch": i + 1, "global_step": s, "val_loss": final * (len(steps) - i), "epoch_seconds": 2.0,
             "val_element_f1@0.5": f1} for i, s in enumerate(steps)]


def _records(arms: dict[str, tuple[str, list[float]]]) -> list[dict]:
    out = []
    for arm, (kind, finals) in arms.items():
        for seed, v in enumerate(finals):
            out.append({"arm": arm, "kind": kind, "seed": seed, "trial_id": f"{arm}_{seed}",
                        "status": "completed", "history": _history(v)})
    return out


def test_known_means_and_cis():
    recs = _records({"constant": ("baseline", [1.0, 2.0, 3.0]), "phi_decay": ("phi", [1.5, 1.5, 1.5])})
    s = summarize(recs, target_val_loss=3.0)
    c = s["arms"]["constant"]["final_val_loss"]
    half = sps.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)  # sd of 1,2,3 is 1
    assert c["mean"] == pytest.approx(2.0)
    assert (c["low"], c["high"]) == pytest.approx((2.0 - half, 2.0 + half))
    p = s["arms"]["phi_decay"]["final_val_loss"]
    assert (p["mean"], p["low"], p["high"]) == pytest.approx((1.5, 1.5, 1.5))
    # steps to reach val loss <= 3: constant seed0 (1,2,3 -> 3.0 at step 3), seed1 (6,4,2 -> step 9),
    # seed2 (9,6,3 -> step 9); phi (4.5, 3.0, 1.5 -> step 6 each)
    assert s["arms"]["constant"]["steps_to_target"]["mean"] == pytest.approx(7.0)
    assert s["arms"]["phi_decay"]["steps_to_target"]["mean"] == pytest.approx(6.0)
    assert s["arms"]["constant"]["wall_seconds"]["mean"] == pytest.approx(6.0)
    assert s["best_baseline"] == "constant"
    (cmp_,) = s["comparisons"]
    assert cmp_["diff"] == pytest.approx(-0.5)
    assert cmp_["welch_p"] == pytest.approx(sps.ttest_ind([1.5] * 3, [1, 2, 3], equal_var=False).pvalue)


def test_steps_to_target_never_reached():
    assert math.isnan(steps_to_target(_history(10.0), 1.0))
    assert steps_to_target(_history(1.0), 2.0) == 6


def test_min_mannwhitney_p():
    assert min_exact_mannwhitney_p(3, 3) == pytest.approx(0.1)
    assert min_exact_mannwhitney_p(5, 5) == pytest.approx(2 / 252)


def test_best_baseline_and_files(tmp_path):
    recs = _records({"constant": ("baseline", [2.0, 2.1, 2.2]), "warmup_cosine": ("baseline", [1.0, 1.1, 1.2]),
                     "phi_decay": ("phi", [0.5, 0.52, 0.54]), "phi_cosine": ("phi", [1.0, 1.1, 1.2])})
    recs.append({"arm": "phi_cosine", "kind": "phi", "seed": 9, "status": "stopped", "history": _history(9.0)[:1]})
    rows = {"constant": [{"step": i, "lr": 1e-3, "batch_size": 4} for i in range(5)],
            "phi_decay": [{"step": i, "lr": 1e-3 * 0.618 ** i, "batch_size": 4} for i in range(5)]}
    s = write_report(recs, tmp_path / "rep", target_val_loss=2.0, schedules=rows, asha=True, command="layoutray sweep")
    assert s["best_baseline"] == "warmup_cosine"
    for f in ("trials.csv", "report.md", "curves.png", "schedules.png", "summary.json"):
        assert (tmp_path / "rep" / f).stat().st_size > 0, f
    with open(tmp_path / "rep" / "trials.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 13 and {r["status"] for r in table} == {"completed", "stopped"}
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "phi_decay: final validation loss significantly lower (better) than warmup_cosine" in md \
        or "phi_decay: final validation loss lower (better) than warmup_cosine by Welch" in md
    assert "phi_cosine: no significant difference from warmup_cosine" in md
    assert "cannot go below 0.1" in md
    assert "ASHA" in md and "--full-budget" in md
    # the stopped trial is listed but not counted
    assert s["arms"]["phi_cosine"]["n_completed"] == 3 and s["arms"]["phi_cosine"]["n_stopped"] == 1
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["best_baseline"] == "warmup_cosine" and len(summary["comparisons"]) == 2


def test_identical_arms_say_no_significant_difference(tmp_path):
    same = [1.0, 1.2, 1.1]
    recs = _records({"warmup_cosine": ("baseline", same), "phi_decay": ("phi", same)})
    s = write_report(recs, tmp_path, target_val_loss=1.0)
    (c,) = s["comparisons"]
    assert c["diff"] == pytest.approx(0.0) and c["welch_p"] == pytest.approx(1.0)
    md = (tmp_path / "report.md").read_text()
    assert "no significant difference" in md
    assert "significantly" not in md
    assert not (tmp_path / "schedules.png").exists()  # no schedule rows given


def test_too_few_seeds_is_reported_not_tested(tmp_path):
    recs = _records({"constant": ("baseline", [1.0]), "phi_decay": ("phi", [0.5])})
    s = write_report(recs, tmp_path, target_val_loss=1.0)
    assert "error" in s["comparisons"][0]
    assert "not tested" in (tmp_path / "report.md").read_text()
