"""The sweep report: a pure function over per-trial records, so it is testable without Tune.

A record is a dict (one per trial) with at least:

    arm        the arm's label (e.g. "phi_decay", or "phi_decay@lr=0.001" when lrs are swept)
    kind       "phi" or "baseline"
    seed       int
    status     "completed" (ran its full budget or stopped by its own patience), "stopped"
               (early-stopped by ASHA), or "error"
    history    [{epoch, global_step, val_loss, ...}] per epoch, in order

and optionally lr, trial_id, wall_seconds, final_val_loss, final_val_f1 (taken from the last
history row when missing). `write_report(records, out_dir, ...)` writes

    trials.csv     every trial with its final metrics
    records.json   every trial with its history (what `report_from_records` regenerates from)
    report.md      per-arm means with 95% CIs, each PHI arm against the best baseline (Holm-corrected
                   p-values, effect sizes, the smallest detectable difference), a conclusion per arm,
                   ASHA replayed on a full-budget grid
    curves.png     element F1@0.5 and validation loss against step: mean and 95% CI band per arm
    schedules.png  learning rate and batch size per arm (when `schedules` rows are given)
    summary.json   the same numbers, machine-readable
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from layoutray.eval.stats import compare_arms, holm, mean_ci, min_detectable_difference, pooled_sd

ALPHA = 0.05
POWER = 0.8
F1_KEY = "val_element_f1@0.5"
# The sweep's metric -> (the record field compared, which direction is better)
METRICS = {"val_loss": ("final_val_loss", "min"), F1_KEY: ("final_val_f1", "max")}
CSV_FIELDS = ("trial_id", "arm", "kind", "seed", "lr", "status", "epochs", "final_global_step",
              "final_val_loss", "best_val_loss", "final_val_f1", "steps_to_target", "wall_seconds")


def _f(x) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return math.nan
    return v


def steps_to_target(history: Sequence[dict], target: float) -> float:
    """global_step of the first epoch whose val_loss <= target; nan if never reached."""
    for row in history:
        if _f(row.get("val_loss")) <= target:
            return float(row.get("global_step", math.nan))
    return math.nan


def normalize_record(rec: dict, target: float) -> dict:
    """Fill the derived fields of a trial record from its history (a copy; input untouched)."""
    r = dict(rec)
    hist = list(r.get("history") or [])
    last = hist[-1] if hist else {}
    r.setdefault("trial_id", "")
    r.setdefault("lr", None)
    r.setdefault("status", "completed")
    r["history"] = hist
    r["epochs"] = r.get("epochs", last.get("epoch", len(hist)))
    r["final_global_step"] = r.get("final_global_step", last.get("global_step", math.nan))
    r["final_val_loss"] = _f(r.get("final_val_loss", last.get("val_loss")))
    r["best_val_loss"] = _f(r.get("best_val_loss", min((_f(h.get("val_loss")) for h in hist), default=math.nan)))
    r["final_val_f1"] = _f(r.get("final_val_f1", last.get(F1_KEY)))
    r["steps_to_target"] = _f(r.get("steps_to_target", steps_to_target(hist, target)))
    r["wall_seconds"] = _f(r.get("wall_seconds", sum(_f(h.get("epoch_seconds", 0)) for h in hist)))
    return r


def _finite(values) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(_f(v))]


def _stat(values) -> dict:
    vals = _finite(values)
    if not vals:
        return {"n": 0, "mean": math.nan, "low": math.nan, "high": math.nan}
    m, lo, hi = mean_ci(vals)
    return {"n": len(vals), "mean": m, "low": lo, "high": hi}


def min_exact_mannwhitney_p(n_a: int, n_b: int) -> float:
    """Smallest two-sided exact Mann-Whitney p-value possible with n_a vs n_b samples."""
    return min(1.0, 2 / math.comb(n_a + n_b, n_a)) if n_a and n_b else 1.0


def summarize(records: Sequence[dict], target_val_loss: float, metric: str = "val_loss",
              families: dict[str, str] | None = None) -> dict:
    """Per-arm statistics and PHI-vs-best-baseline comparisons (the numbers behind report.md).

    `metric` (a key of METRICS) picks the best baseline and the primary comparison; the other
    metric is compared too, as secondary. p-values get Holm's correction across all comparisons
    (`welch_p_holm`, `mannwhitney_p_holm`), and each comparison its power: `mde`, the smallest true
    difference the Welch/t test detects with probability POWER at the Holm-strictest alpha
    (ALPHA / number of comparisons), from the pooled SD of the two arms."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r}; allowed: {', '.join(METRICS)}")
    field, mode = METRICS[metric]
    recs = [normalize_record(r, target_val_loss) for r in records]
    arms: dict[str, dict] = {}
    for r in recs:
        a = arms.setdefault(r["arm"], {"arm": r["arm"], "kind": r.get("kind", "baseline"), "trials": [],
                                       "family": (families or {}).get(r["arm"], r.get("family", ""))})
        a["trials"].append(r)
    for a in arms.values():
        ok = [r for r in a["trials"] if r["status"] == "completed"]
        a["n_trials"] = len(a["trials"])
        a["n_completed"] = len(ok)
        a["n_stopped"] = sum(r["status"] == "stopped" for r in a["trials"])
        a["n_error"] = sum(r["status"] == "error" for r in a["trials"])
        a["final_val_loss"] = _stat(r["final_val_loss"] for r in ok)
        a["final_val_f1"] = _stat(r["final_val_f1"] for r in ok)
        a["steps_to_target"] = _stat(r["steps_to_target"] for r in ok)
        a["n_reached_target"] = a["steps_to_target"]["n"]
        a["wall_seconds"] = _stat(r["wall_seconds"] for r in ok)
        a["_losses"] = _finite(r["final_val_loss"] for r in ok)
        a["_f1"] = _finite(r["final_val_f1"] for r in ok)
        a["_values"] = a["_f1"] if field == "final_val_f1" else a["_losses"]

    best = best_arm(arms, field, mode, kind="baseline")
    comparisons = [_compare(a, best, field) for a in arms.values() if a["kind"] == "phi" and best is not None]
    _correct_and_power(comparisons)
    return {"target_val_loss": target_val_loss, "records": recs, "arms": arms, "metric": metric, "field": field,
            "mode": mode, "best_baseline": best["arm"] if best else None, "comparisons": comparisons}


def best_arm(arms: dict, field: str, mode: str, kind: str | None = None) -> dict | None:
    """The arm (of `kind`, if given) with the best mean `field` over its completed trials."""
    pool = [a for a in arms.values() if (kind is None or a["kind"] == kind) and a[field]["n"]]
    if not pool:
        return None
    key = lambda a: a[field]["mean"]  # noqa: E731
    return min(pool, key=key) if mode == "min" else max(pool, key=key)


def _compare(a: dict, best: dict, field: str) -> dict:
    """One PHI arm against the best baseline on the primary metric, the other one secondary."""
    c = {"arm": a["arm"], "family": a["family"], "baseline": best["arm"], "metric": field}
    if len(a["_values"]) < 2 or len(best["_values"]) < 2:
        c["error"] = "needs at least 2 completed seeds per arm"
        return c
    c.update(compare_arms(a["_values"], best["_values"]))
    c["min_mannwhitney_p"] = min_exact_mannwhitney_p(len(a["_values"]), len(best["_values"]))
    c["pooled_sd"] = pooled_sd(a["_values"], best["_values"])
    other, key = ("_f1", "f1") if field == "final_val_loss" else ("_losses", "loss")
    if len(a[other]) >= 2 and len(best[other]) >= 2:
        sec = compare_arms(a[other], best[other])
        c[key] = {k: sec[k] for k in ("diff", "diff_ci", "welch_p", "mannwhitney_p", "hedges_g")}
    return c


def _correct_and_power(comparisons: list[dict]) -> None:
    """Holm across all comparisons (each test separately), and each comparison's detectable difference."""
    ok = [c for c in comparisons if "error" not in c]
    for test in ("welch_p", "mannwhitney_p"):
        for c, p in zip(ok, holm([c[test] for c in ok])):
            c[test + "_holm"] = p
    m = max(1, len(ok))
    for c in ok:
        c["mde"] = min_detectable_difference(c["pooled_sd"], c["n_a"], c["n_b"], ALPHA / m, POWER)
        c["mde_alpha"] = ALPHA / m


def _fmt(s: dict, digits: int = 4) -> str:
    if not s["n"]:
        return "n/a"
    if s["n"] < 2 or not math.isfinite(s["low"]):
        return f"{s['mean']:.{digits}g} (n={s['n']})"
    half = (s["high"] - s["low"]) / 2
    return f"{s['mean']:.{digits}g} ± {half:.2g}"


def _p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else (f"{p:.3g}" if p >= 0.001 else "<0.001")


METRIC_NAMES = {"final_val_loss": "final validation loss", "final_val_f1": "final element F1@0.5"}


def _direction(c: dict, mode: str) -> str:
    better = c["diff"] < 0 if mode == "min" else c["diff"] > 0
    return "better" if better else "worse"


def _comparison_line(c: dict, best: str, mode: str) -> str:
    """One sentence per PHI arm: better/worse by X +- Y (p_Holm), or no difference larger than D."""
    what = METRIC_NAMES.get(c["metric"], c["metric"])
    arm = c["arm"] + (f" ({c['family']})" if c.get("family") else "")
    half = (c["diff_ci"][1] - c["diff_ci"][0]) / 2
    ci = f"95% CI [{c['diff_ci'][0]:+.3g}, {c['diff_ci'][1]:+.3g}]"
    wp, mp = c["welch_p_holm"], c["mannwhitney_p_holm"]
    by = f"by {abs(c['diff']):.3g} ± {half:.2g} {what}"
    if wp < ALPHA and mp < ALPHA:
        return (f"- {arm}: {_direction(c, mode)} than {best} {by} ({ci}; p_Holm = {_p(wp)} Welch, "
                f"{_p(mp)} Mann-Whitney; Hedges' g {c['hedges_g']:.2f}, rank-biserial r {c['rank_biserial']:.2f}).")
    if wp < ALPHA:
        return (f"- {arm}: {_direction(c, mode)} than {best} {by} by Welch's t-test (p_Holm = {_p(wp)}; {ci}, "
                f"Hedges' g {c['hedges_g']:.2f}), but Mann-Whitney does not confirm it (p_Holm = {_p(mp)}; its "
                f"smallest possible exact p with these seeds is {c['min_mannwhitney_p']:.2g}). Suggestive, not "
                f"established.")
    return (f"- {arm}: no difference from {best} larger than {c['mde']:.3g} ({what}) detectable with this "
            f"budget (observed {c['diff']:+.3g}, {ci}; p_Holm = {_p(wp)} Welch, {_p(mp)} Mann-Whitney; "
            f"{POWER:.0%} power at alpha {c['mde_alpha']:.2g}). This is not evidence that they are equal.")


def conclusion_lines(summary: dict, asha: bool = False) -> list[str]:
    """Plain sentences that claim only what the Holm-corrected tests support, one per PHI arm,
    grouped by family."""
    best = summary["best_baseline"]
    if best is None:
        return ["No baseline arm completed, so no PHI arm could be compared."]
    mode = summary.get("mode", "min")
    lines = []
    for c in sorted(summary["comparisons"], key=lambda c: (c.get("family", ""), c["arm"])):
        if "error" in c:
            lines.append(f"- {c['arm']} vs {best}: not tested ({c['error']}).")
        else:
            lines.append(_comparison_line(c, best, mode))
    if not summary["comparisons"]:
        lines.append("No PHI arm completed, so nothing was compared.")
    tested = [c for c in summary["comparisons"] if "n_a" in c]
    if tested:
        n = min(min(c["n_a"], c["n_b"]) for c in tested)
        lines.append(f"- p-values are Holm-corrected across all {len(tested)} comparisons (family-wise error "
                     f"{ALPHA}). With {n} seeds per arm the exact two-sided Mann-Whitney p cannot go below "
                     f"{min_exact_mannwhitney_p(n, n):.2g} (for 3 vs 3 seeds: 0.1) before correction.")
    if asha:
        lines.append("- ASHA early stopping was on: arms were not all given the same budget, and stopped trials "
                     "are left out of the statistics. Rerun with --full-budget for the fair comparison.")
    return lines


def _curve(a: dict, key: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """(mean step, mean, CI low, CI high) per epoch of metric `key` over an arm's trials."""
    by_epoch: dict[int, list[tuple[float, float]]] = {}
    for r in a["trials"]:
        if r["status"] == "error":
            continue
        for i, h in enumerate(r["history"]):
            if math.isfinite(_f(h.get(key))):
                by_epoch.setdefault(int(h.get("epoch", i + 1)), []).append((_f(h.get("global_step", i + 1)),
                                                                            _f(h.get(key))))
    xs, ms, los, his = [], [], [], []
    for e in sorted(by_epoch):
        pts = by_epoch[e]
        xs.append(sum(p[0] for p in pts) / len(pts))
        m, lo, hi = mean_ci([p[1] for p in pts])
        ms.append(m)
        los.append(lo if math.isfinite(lo) else m)
        his.append(hi if math.isfinite(hi) else m)
    return xs, ms, los, his


def _plot_curves(summary: dict, path: Path) -> None:
    """Element F1@0.5 and validation loss against step: mean and 95% CI band per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_f1, ax_loss) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for arm, a in summary["arms"].items():
        for ax, key in ((ax_f1, F1_KEY), (ax_loss, "val_loss")):
            xs, ms, los, his = _curve(a, key)
            if not xs:
                continue
            line, = ax.plot(xs, ms, marker="o", ms=3, label=f"{arm} (n={a['n_trials']})",
                            linestyle="--" if a["kind"] == "baseline" else "-")
            ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.2)
    target = summary["target_val_loss"]
    if target is not None and math.isfinite(target):
        ax_loss.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:g}")
    ax_f1.set_ylabel("element F1@0.5 (validation)")
    ax_loss.set_ylabel("validation loss")
    ax_loss.set_xlabel("optimizer step")
    ax_f1.set_title("mean and 95% CI over seeds")
    for ax in (ax_f1, ax_loss):
        if ax.lines:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---------------------------------------------------------------------------- ASHA against the grid


def asha_replay(records: Sequence[dict], grace_period: int, reduction_factor: int, max_t: int,
                key: str = "val_loss", mode: str = "min") -> dict[str, int]:
    """Epochs each trial would run under Ray Tune's ASHA (one bracket, trials one at a time in the
    records' order), replayed on full-budget histories: ray.tune.schedulers.AsyncHyperBandScheduler's
    rule. Rungs at grace * rf^k up to max_t; a trial reaching a rung is stopped when its metric is
    below the (1 - 1/rf) percentile of the values recorded there before it (the first passes).
    Returns {trial_id: epochs run}."""
    import numpy as np

    n_rungs = int(math.log(max_t / grace_period) / math.log(reduction_factor) + 1)
    rungs = [grace_period * reduction_factor ** k for k in reversed(range(n_rungs))]
    recorded: dict[int, list[float]] = {m: [] for m in rungs}
    sign = -1.0 if mode == "min" else 1.0
    out = {}
    for r in records:
        seen: set[int] = set()
        ran = 0
        for h in r["history"]:
            ran = int(h.get("epoch", ran + 1))
            stop = False
            for m in rungs:  # highest first; one rung per report, as Ray does
                if ran >= m and m not in seen:
                    seen.add(m)
                    value = sign * _f(h.get(key))
                    values = recorded[m]
                    cutoff = float(np.nanpercentile(values, (1 - 1 / reduction_factor) * 100)) if values else None
                    values.append(value)
                    stop = cutoff is not None and value < cutoff
                    break
            if stop:
                break
        out[r["trial_id"]] = ran
    return out


def asha_vs_grid(summary: dict, grace_period: int, reduction_factor: int) -> dict | None:
    """Whether ASHA, replayed on this full grid, picks the grid's winner, and its share of the
    trial-epochs. ASHA's winner: the best arm by mean `metric` over the trials it let finish, at
    their final epoch (what an ASHA sweep reports)."""
    recs = [r for r in summary["records"] if r["status"] == "completed" and r["history"]]
    if not recs:
        return None
    max_t = max(int(r["history"][-1].get("epoch", len(r["history"]))) for r in recs)
    ran = asha_replay(recs, min(grace_period, max_t), reduction_factor, max_t, "val_loss", "min")
    field, mode = summary.get("field", "final_val_loss"), summary.get("mode", "min")
    finished: dict[str, list[float]] = {}
    for r in recs:
        if ran[r["trial_id"]] >= int(r["history"][-1].get("epoch", len(r["history"]))) and math.isfinite(r[field]):
            finished.setdefault(r["arm"], []).append(r[field])
    pick = min if mode == "min" else max
    asha_best = pick(finished, key=lambda k: sum(finished[k]) / len(finished[k])) if finished else None
    grid_best = best_arm(summary["arms"], field, mode)
    full = sum(int(r["history"][-1].get("epoch", len(r["history"]))) for r in recs)
    return {"grace_period": grace_period, "reduction_factor": reduction_factor, "max_t": max_t,
            "n_trials": len(recs), "trials_finished_under_asha": sum(len(v) for v in finished.values()),
            "trial_epochs_grid": full, "trial_epochs_asha": sum(ran.values()),
            "trial_epochs_fraction": sum(ran.values()) / full, "grid_winner": grid_best["arm"] if grid_best else None,
            "asha_winner": asha_best, "same_winner": asha_best is not None and grid_best is not None
            and asha_best == grid_best["arm"]}


def _csv_value(v):
    if isinstance(v, float) and not math.isfinite(v):
        return ""
    return "" if v is None else v


def _write_trials_csv(summary: dict, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(summary["records"], key=lambda r: (r["arm"], r.get("seed", 0))):
            w.writerow({k: _csv_value(r.get(k)) for k in CSV_FIELDS})


def _arm_table(summary: dict) -> list[str]:
    md = ["| arm | kind | trials (completed/stopped/error) | final val loss | val F1@0.5 | "
          "steps to target (reached) | wall time s |",
          "|---|---|---|---|---|---|---|"]
    for arm, a in summary["arms"].items():
        md.append(f"| {arm} | {a['kind']} | {a['n_trials']} ({a['n_completed']}/{a['n_stopped']}/{a['n_error']}) | "
                  f"{_fmt(a['final_val_loss'])} | {_fmt(a['final_val_f1'], 3)} | "
                  f"{_fmt(a['steps_to_target'], 4)} ({a['n_reached_target']}/{a['n_completed']}) | "
                  f"{_fmt(a['wall_seconds'], 3)} |")
    return md


def _comparison_table(summary: dict) -> list[str]:
    what = METRIC_NAMES.get(summary.get("field", "final_val_loss"), "final validation loss")
    better = "negative" if summary.get("mode", "min") == "min" else "positive"
    other = "F1 diff (Welch p)" if summary.get("field", "final_val_loss") == "final_val_loss" else "loss diff (Welch p)"
    md = [f"## PHI arms against the best baseline ({summary['best_baseline'] or 'none'})", "",
          f"{what[0].upper() + what[1:]}; difference = PHI arm - baseline ({better} is better). p_Holm: "
          "Holm-corrected across all comparisons. Effect sizes: Hedges' g (Cohen's d with small-sample "
          "correction) and the rank-biserial r of Mann-Whitney. Detectable: the smallest true difference "
          f"found with {POWER:.0%} power at the Holm-strictest alpha.", "",
          "| PHI arm | family | diff | 95% CI of diff | Welch p | p_Holm | Mann-Whitney U | Mann-Whitney p | "
          f"p_Holm | Hedges' g | r | detectable | {other} |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        if "error" in c:
            md.append(f"| {c['arm']} | {c.get('family', '')} | {c['error']} |" + " |" * 10)
            continue
        sec = c.get("f1") or c.get("loss")
        secs = f"{sec['diff']:+.3g} ({_p(sec['welch_p'])})" if sec else "n/a"
        md.append(f"| {c['arm']} | {c.get('family', '')} | {c['diff']:+.4g} | [{c['diff_ci'][0]:+.3g}, "
                  f"{c['diff_ci'][1]:+.3g}] | {_p(c['welch_p'])} | {_p(c.get('welch_p_holm'))} | "
                  f"{c['mannwhitney_u']:g} | {_p(c['mannwhitney_p'])} | {_p(c.get('mannwhitney_p_holm'))} | "
                  f"{c['hedges_g']:.2f} | {c.get('rank_biserial', math.nan):.2f} | {c.get('mde', math.nan):.3g} | "
                  f"{secs} |")
    return md


def _asha_lines(cmp_: dict | None) -> list[str]:
    if not cmp_:
        return []
    verdict = "the same winner" if cmp_["same_winner"] else "a different winner"
    return ["## ASHA against the full grid", "",
            f"ASHA (grace period {cmp_['grace_period']}, reduction factor {cmp_['reduction_factor']}, on validation "
            f"loss), replayed on this grid's histories in trial order, lets {cmp_['trials_finished_under_asha']} of "
            f"{cmp_['n_trials']} trials finish and uses {cmp_['trial_epochs_asha']} of {cmp_['trial_epochs_grid']} "
            f"trial-epochs ({cmp_['trial_epochs_fraction']:.0%}); it picks {cmp_['asha_winner']}, the grid "
            f"{cmp_['grid_winner']}: {verdict}."]


def report_markdown(summary: dict, *, title: str, asha: bool, command: str | None,
                    notes: Sequence[str], schedules: bool) -> str:
    """report.md for `summary`; `schedules`: whether schedules.png was written beside it."""
    target = summary["target_val_loss"]
    md = [f"# {title}", ""]
    if command:
        md += ["Reproduce with:", "", "```", command, "```", ""]
    md += [f"Each value is the mean ± half-width of the 95% Student-t confidence interval over seeds "
           f"(completed trials only). Steps to target = first optimizer step whose validation loss "
           f"is <= {target:g} (mean over the trials that reached it).", ""]
    md += _arm_table(summary) + [""] + _comparison_table(summary)
    md += ["", "## Conclusion", ""] + conclusion_lines(summary, asha=asha)
    if summary.get("asha_vs_grid"):
        md += [""] + _asha_lines(summary["asha_vs_grid"])
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md += ["", "Files: `trials.csv` (every trial), `records.json` (every trial with its history), `curves.png` "
           "(element F1@0.5 and validation loss vs step)"
           + (", `schedules.png` (learning rate and batch size per arm)" if schedules else "") + "."]
    return "\n".join(md) + "\n"


def _json_clean(x):
    """JSON has no NaN; per-trial lists and private (_-prefixed) working values stay out."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_clean(v) for k, v in x.items() if not k.startswith("_") and k != "trials"}
    if isinstance(x, (list, tuple)):
        return [_json_clean(v) for v in x]
    return x


def write_report(records: Sequence[dict], out_dir: str | Path, *, target_val_loss: float,
                 schedules: dict[str, list[dict]] | None = None, title: str = "Sweep report",
                 asha: bool = False, command: str | None = None, notes: Sequence[str] = (),
                 metric: str = "val_loss", families: dict[str, str] | None = None,
                 asha_rungs: tuple[int, int] | None = None) -> dict:
    """Write trials.csv, records.json, report.md, curves.png, schedules.png (if given) and
    summary.json into out_dir; return the summary (see `summarize`). `asha_rungs` (grace period,
    reduction factor): on a full-budget grid, also replay ASHA on it (`asha_vs_grid`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, target_val_loss, metric, families)
    if asha_rungs and not asha:
        summary["asha_vs_grid"] = asha_vs_grid(summary, *asha_rungs)
    _write_trials_csv(summary, out / "trials.csv")
    (out / "records.json").write_text(json.dumps(_json_clean(
        {"target_val_loss": target_val_loss, "metric": metric, "families": families or {},
         "asha_rungs": list(asha_rungs) if asha_rungs else None, "asha": asha, "title": title, "command": command,
         "notes": list(notes), "records": [{k: v for k, v in r.items()} for r in summary["records"]]}),
        default=str) + "\n")
    _plot_curves(summary, out / "curves.png")
    if schedules:
        from layoutray.schedules import plot_rows
        plot_rows(schedules, str(out / "schedules.png"), title="learning rate and batch size per arm")
    (out / "report.md").write_text(report_markdown(summary, title=title, asha=asha, command=command,
                                                   notes=notes, schedules=bool(schedules)))
    (out / "summary.json").write_text(json.dumps(_json_clean(
        {"target_val_loss": target_val_loss, "metric": metric, "best_baseline": summary["best_baseline"],
         "arms": summary["arms"], "comparisons": summary["comparisons"],
         "asha_vs_grid": summary.get("asha_vs_grid")}), indent=2) + "\n")
    return summary


def report_from_records(records_json: str | Path, out_dir: str | Path) -> dict:
    """Regenerate a report (e.g. docs/phi/study/) from a stored records.json, without Tune."""
    d = json.loads(Path(records_json).read_text())
    return write_report(d["records"], out_dir, target_val_loss=d["target_val_loss"], metric=d["metric"],
                        families=d.get("families"), asha=d.get("asha", False), title=d.get("title") or "Sweep report",
                        command=d.get("command"), notes=d.get("notes", []),
                        asha_rungs=tuple(d["asha_rungs"]) if d.get("asha_rungs") else None)


def study_markdown(records_json: str | Path) -> str:
    """The results block of a stored study (docs/phi.md): arm table, comparisons with Holm,
    effect sizes and detectable differences, the conclusion per arm, ASHA against the grid."""
    d = json.loads(Path(records_json).read_text())
    summary = summarize(d["records"], d["target_val_loss"], d["metric"], d.get("families"))
    if d.get("asha_rungs") and not d.get("asha"):
        summary["asha_vs_grid"] = asha_vs_grid(summary, *d["asha_rungs"])
    ends = [r.get("trial_id", "") for r in summary["records"]]
    md = [f"{len(ends)} trials; each value is the mean ± half-width of the 95% Student-t confidence interval "
          "over seeds (completed trials only).", ""]
    md += _arm_table(summary) + [""] + _comparison_table(summary)[2:]
    md += ["", "Conclusion:", ""] + conclusion_lines(summary, asha=bool(d.get("asha")))
    if summary.get("asha_vs_grid"):
        md += [""] + _asha_lines(summary["asha_vs_grid"])[2:]
    return "\n".join(md) + "\n"


def main(argv: list[str] | None = None) -> int:
    """`python -m trainables.report --records DIR/records.json --out DIR`: the report from stored results."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--records", required=True, help="a report's records.json")
    ap.add_argument("--out", required=True, help="where to write the report")
    args = ap.parse_args(argv)
    report_from_records(args.records, args.out)
    print(f"wrote {Path(args.out) / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
