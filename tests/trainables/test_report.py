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
    # 3 vs 3 seeds: Mann-Whitney's exact p is at least 0.1, so only Welch can find phi_decay better
    assert "- phi_decay: better than warmup_cosine by 0.58" in md and "by Welch's t-test (p_Holm = " in md
    assert "- phi_cosine: no difference from warmup_cosine larger than" in md
    assert "cannot go below 0.1" in md and "Holm-corrected across all 2 comparisons" in md
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
    assert "no difference from warmup_cosine larger than" in md and "detectable with this budget" in md
    assert "better than" not in md and "worse than" not in md
    assert not (tmp_path / "schedules.png").exists()  # no schedule rows given


def test_too_few_seeds_is_reported_not_tested(tmp_path):
    recs = _records({"constant": ("baseline", [1.0]), "phi_decay": ("phi", [0.5])})
    s = write_report(recs, tmp_path, target_val_loss=1.0)
    assert "error" in s["comparisons"][0]
    assert "not tested" in (tmp_path / "report.md").read_text()


def _f1_records(arms: dict[str, tuple[str, list[float]]], loss: float = 1.0) -> list[dict]:
    return [{"arm": arm, "kind": kind, "seed": seed, "trial_id": f"{arm}_{seed}", "status": "completed",
             "history": _history(loss, f1=v)} for arm, (kind, vals) in arms.items() for seed, v in enumerate(vals)]


def test_f1_is_the_primary_metric_higher_is_better_and_holm_corrects_across_arms(tmp_path):
    base = [0.50, 0.52, 0.48, 0.51, 0.49]
    recs = _f1_records({"constant": ("baseline", base), "warmup_cosine": ("baseline", [0.3, 0.32, 0.28, 0.31, 0.29]),
                        "phi_good": ("phi", [0.60, 0.62, 0.58, 0.61, 0.59]),
                        "phi_same": ("phi", [0.51, 0.49, 0.50, 0.52, 0.48]),
                        "phi_bad": ("phi", [0.40, 0.42, 0.38, 0.41, 0.39])})
    s = write_report(recs, tmp_path, target_val_loss=1.0, metric="val_element_f1@0.5",
                     families={"phi_good": "lr", "phi_same": "batch", "phi_bad": "phases"})
    assert s["best_baseline"] == "constant"  # the highest F1, not the lowest
    by = {c["arm"]: c for c in s["comparisons"]}
    assert by["phi_good"]["diff"] == pytest.approx(0.1) and by["phi_good"]["family"] == "lr"
    raw = [by[a]["welch_p"] for a in ("phi_good", "phi_same", "phi_bad")]
    from layoutray.eval.stats import holm
    assert [by[a]["welch_p_holm"] for a in ("phi_good", "phi_same", "phi_bad")] == pytest.approx(holm(raw))
    assert by["phi_same"]["welch_p_holm"] == pytest.approx(1.0)
    # the power note: 5 vs 5 at alpha 0.05/3 and 80% power, in F1 units from the pooled SD
    from layoutray.eval.stats import min_detectable_effect, pooled_sd
    want = pooled_sd([0.51, 0.49, 0.50, 0.52, 0.48], base) * min_detectable_effect(5, 5, 0.05 / 3)
    assert by["phi_same"]["mde"] == pytest.approx(want)
    md = (tmp_path / "report.md").read_text()
    assert "- phi_good (lr): better than constant by 0.1" in md
    assert "- phi_bad (phases): worse than constant by 0.1" in md
    assert f"- phi_same (batch): no difference from constant larger than {want:.3g}" in md
    assert "p_Holm" in md and "rank-biserial" in md
    stored = json.loads((tmp_path / "records.json").read_text())
    assert stored["metric"] == "val_element_f1@0.5" and len(stored["records"]) == 25


def test_report_regenerates_from_stored_records(tmp_path):
    from trainables.report import main as report_main
    recs = _f1_records({"constant": ("baseline", [0.5, 0.52, 0.48]), "phi": ("phi", [0.6, 0.62, 0.58])})
    first = write_report(recs, tmp_path / "a", target_val_loss=1.0, metric="val_element_f1@0.5",
                         asha_rungs=(1, 3))
    assert report_main(["--records", str(tmp_path / "a" / "records.json"), "--out", str(tmp_path / "b")]) == 0
    assert (tmp_path / "b" / "report.md").read_text() == (tmp_path / "a" / "report.md").read_text()
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["comparisons"] == \
        json.loads((tmp_path / "a" / "summary.json").read_text())["comparisons"]
    assert first["asha_vs_grid"]["n_trials"] == 6


def test_asha_replay_follows_rays_rule():
    """Rungs at 1, 3, 9 (grace 1, factor 3, max 9): a trial worse than the 2/3 percentile of those
    recorded before it at a rung stops there; the first trial always passes."""
    from trainables.report import asha_replay

    def rec(tid, losses):
        return {"trial_id": tid, "history": [{"epoch": i + 1, "val_loss": v} for i, v in enumerate(losses)]}
    recs = [rec("a", [5.0] * 9), rec("b", [6.0] * 9), rec("c", [4.0] * 9), rec("d", [4.5, 4.5, 9.0] + [1.0] * 6)]
    ran = asha_replay(recs, 1, 3, 9)
    # b at rung 1: worse than a (the only value) -> stops after epoch 1; c is better -> continues to
    # rung 3 (a's 5.0 the only value there) and 9; d passes rung 1 (4.5 < percentile of 5, 6, 4)
    # but its 9.0 at rung 3 is worse than a's and c's -> stops at 3
    assert ran == {"a": 9, "b": 1, "c": 9, "d": 3}


def test_asha_vs_grid_winner_and_trial_epochs(tmp_path):
    from trainables.report import asha_vs_grid
    good = [{"epoch": e, "global_step": e, "val_loss": 5 - e * 0.4, "val_element_f1@0.5": 0.1 * e} for e in range(1, 10)]
    bad = [{"epoch": e, "global_step": e, "val_loss": 6 - e * 0.1, "val_element_f1@0.5": 0.02 * e} for e in range(1, 10)]
    recs = [{"arm": "constant", "kind": "baseline", "seed": 0, "trial_id": "t0", "history": good},
            {"arm": "phi", "kind": "phi", "seed": 0, "trial_id": "t1", "history": bad},
            {"arm": "phi", "kind": "phi", "seed": 1, "trial_id": "t2", "history": bad}]
    s = summarize(recs, 1.0, "val_element_f1@0.5")
    cmp_ = asha_vs_grid(s, 1, 3)
    assert cmp_["grid_winner"] == "constant" and cmp_["asha_winner"] == "constant" and cmp_["same_winner"]
    assert cmp_["trial_epochs_grid"] == 27 and cmp_["trial_epochs_asha"] == 9 + 1 + 1
    assert cmp_["trial_epochs_fraction"] == pytest.approx(11 / 27)


def test_docs_block_renders_from_the_stored_records(tmp_path):
    """docs/phi.md's study block (bench/render_docs.py key phi_study) comes from records.json alone."""
    import sys
    from pathlib import Path

    from trainables.report import study_markdown
    recs = _f1_records({"constant": ("baseline", [0.5, 0.52, 0.48]), "phi_lr": ("phi", [0.6, 0.62, 0.58])})
    write_report(recs, tmp_path / "study", target_val_loss=1.0, metric="val_element_f1@0.5",
                 families={"phi_lr": "lr"}, asha_rungs=(1, 3))
    md = study_markdown(tmp_path / "study" / "records.json")
    assert "| phi_lr | phi |" in md and "p_Holm" in md and "- phi_lr (lr): " in md and "trial-epochs" in md
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
    import render_docs
    src = render_docs.Sources(tmp_path, tmp_path)
    assert render_docs.render_phi_study(src).strip() == md.strip()
    assert render_docs.render_phi_study(render_docs.Sources(tmp_path, tmp_path / "none")) == render_docs.NO_RESULT


def test_summary_json_keeps_the_asha_comparison(tmp_path):
    recs = _f1_records({"constant": ("baseline", [0.5, 0.52]), "phi": ("phi", [0.6, 0.62])})
    write_report(recs, tmp_path, target_val_loss=1.0, metric="val_element_f1@0.5", asha_rungs=(1, 3))
    stored = json.loads((tmp_path / "summary.json").read_text())["asha_vs_grid"]
    assert stored["n_trials"] == 4 and stored["trial_epochs_grid"] == 12 and "same_winner" in stored
