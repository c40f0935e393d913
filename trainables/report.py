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
    report.md      per-arm means with 95% CIs, each PHI arm against the best baseline, a conclusion
    curves.png     validation loss against step: mean and 95% CI band per arm
    schedules.png  learning rate and batch size per arm (when `schedules` rows are given)
    summary.json   the same numbers, machine-readable
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Sequence

from layoutray.eval.stats import compare_arms, mean_ci

ALPHA = 0.05
F1_KEY = "val_element_f1@0.5"
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


def summarize(records: Sequence[dict], target_val_loss: float) -> dict:
    """Per-arm statistics and PHI-vs-best-baseline comparisons (the numbers behind report.md)."""
    recs = [normalize_record(r, target_val_loss) for r in records]
    arms: dict[str, dict] = {}
    for r in recs:
        a = arms.setdefault(r["arm"], {"arm": r["arm"], "kind": r.get("kind", "baseline"), "trials": []})
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

    baselines = [a for a in arms.values() if a["kind"] == "baseline" and a["_losses"]]
    best = min(baselines, key=lambda a: a["final_val_loss"]["mean"]) if baselines else None
    comparisons = []
    for a in arms.values():
        if a["kind"] != "phi" or best is None:
            continue
        c = {"arm": a["arm"], "baseline": best["arm"], "metric": "final_val_loss"}
        if len(a["_losses"]) < 2 or len(best["_losses"]) < 2:
            c["error"] = "needs at least 2 completed seeds per arm"
        else:
            c.update(compare_arms(a["_losses"], best["_losses"]))
            c["min_mannwhitney_p"] = min_exact_mannwhitney_p(len(a["_losses"]), len(best["_losses"]))
            if len(a["_f1"]) >= 2 and len(best["_f1"]) >= 2:
                f1 = compare_arms(a["_f1"], best["_f1"])
                c["f1"] = {k: f1[k] for k in ("diff", "diff_ci", "welch_p", "mannwhitney_p", "hedges_g")}
        comparisons.append(c)
    return {"target_val_loss": target_val_loss, "records": recs, "arms": arms,
            "best_baseline": best["arm"] if best else None, "comparisons": comparisons}


def _fmt(s: dict, digits: int = 4) -> str:
    if not s["n"]:
        return "n/a"
    if s["n"] < 2 or not math.isfinite(s["low"]):
        return f"{s['mean']:.{digits}g} (n={s['n']})"
    half = (s["high"] - s["low"]) / 2
    return f"{s['mean']:.{digits}g} ± {half:.2g}"


def _p(p: float) -> str:
    return "n/a" if p is None or not math.isfinite(p) else (f"{p:.3g}" if p >= 0.001 else "<0.001")


def conclusion_lines(summary: dict, asha: bool = False) -> list[str]:
    """Plain sentences that claim only what the tests support."""
    lines = []
    best = summary["best_baseline"]
    if best is None:
        return ["No baseline arm completed, so no PHI arm could be compared."]
    for c in summary["comparisons"]:
        arm = c["arm"]
        if "error" in c:
            lines.append(f"- {arm} vs {best}: not tested ({c['error']}).")
            continue
        wp, mp = c["welch_p"], c["mannwhitney_p"]
        direction = "lower (better)" if c["diff"] < 0 else "higher (worse)"
        ci = f"difference {c['diff']:+.4g}, 95% CI [{c['diff_ci'][0]:+.3g}, {c['diff_ci'][1]:+.3g}]"
        if wp < ALPHA and mp < ALPHA:
            lines.append(f"- {arm}: final validation loss significantly {direction} than {best} "
                         f"({ci}; Welch p={_p(wp)}, Mann-Whitney p={_p(mp)}, Hedges' g={c['hedges_g']:.2f}).")
        elif wp < ALPHA:
            lines.append(f"- {arm}: final validation loss {direction} than {best} by Welch's t-test "
                         f"(p={_p(wp)}; {ci}, Hedges' g={c['hedges_g']:.2f}), but Mann-Whitney does not confirm it "
                         f"(p={_p(mp)}; its smallest possible exact p with these seeds is "
                         f"{c['min_mannwhitney_p']:.2g}). Treat as suggestive, not established.")
        else:
            lines.append(f"- {arm}: no significant difference from {best} in final validation loss "
                         f"({ci}; Welch p={_p(wp)}, Mann-Whitney p={_p(mp)}, Hedges' g={c['hedges_g']:.2f}). "
                         f"This is not evidence that they are equal; the seeds give little power.")
    if not summary["comparisons"]:
        lines.append("No PHI arm completed, so nothing was compared.")
    ns = sorted({c["n_a"] for c in summary["comparisons"] if "n_a" in c} |
                {c["n_b"] for c in summary["comparisons"] if "n_b" in c})
    if ns:
        n = min(ns)
        lines.append(f"- With {n} seeds per arm the exact two-sided Mann-Whitney p cannot go below "
                     f"{min_exact_mannwhitney_p(n, n):.2g} (for 3 vs 3 seeds: 0.1), so it can never reach 0.05 "
                     f"there; Welch's t-test on so few seeds has little power too.")
    if asha:
        lines.append("- ASHA early stopping was on: arms were not all given the same budget, and stopped trials "
                     "are left out of the statistics. Rerun with --full-budget for the fair comparison.")
    return lines


def _plot_curves(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for arm, a in summary["arms"].items():
        by_epoch: dict[int, list[tuple[float, float]]] = {}
        for r in a["trials"]:
            if r["status"] == "error":
                continue
            for i, h in enumerate(r["history"]):
                e = int(h.get("epoch", i + 1))
                by_epoch.setdefault(e, []).append((_f(h.get("global_step", e)), _f(h.get("val_loss"))))
        if not by_epoch:
            continue
        xs, ms, los, his = [], [], [], []
        for e in sorted(by_epoch):
            pts = by_epoch[e]
            xs.append(sum(p[0] for p in pts) / len(pts))
            m, lo, hi = mean_ci([p[1] for p in pts])
            ms.append(m)
            los.append(lo if math.isfinite(lo) else m)
            his.append(hi if math.isfinite(hi) else m)
        line, = ax.plot(xs, ms, marker="o", ms=3, label=f"{arm} (n={a['n_trials']})",
                        linestyle="--" if a["kind"] == "baseline" else "-")
        ax.fill_between(xs, los, his, color=line.get_color(), alpha=0.2)
    target = summary["target_val_loss"]
    if target is not None and math.isfinite(target):
        ax.axhline(target, color="grey", lw=0.8, ls=":", label=f"target {target:g}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("validation loss")
    ax.set_title("validation loss: mean and 95% CI over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
    md = [f"## PHI arms against the best baseline ({summary['best_baseline'] or 'none'})", "",
          "Final validation loss; difference = PHI arm - baseline (negative is better). "
          "Effect size: Hedges' g (Cohen's d with small-sample correction).", "",
          "| PHI arm | diff | 95% CI of diff | Welch p | Mann-Whitney U | Mann-Whitney p | Hedges' g | F1 diff (Welch p) |",
          "|---|---|---|---|---|---|---|---|"]
    for c in summary["comparisons"]:
        if "error" in c:
            md.append(f"| {c['arm']} | {c['error']} | | | | | | |")
            continue
        f1 = c.get("f1")
        f1s = f"{f1['diff']:+.3g} ({_p(f1['welch_p'])})" if f1 else "n/a"
        md.append(f"| {c['arm']} | {c['diff']:+.4g} | [{c['diff_ci'][0]:+.3g}, {c['diff_ci'][1]:+.3g}] | "
                  f"{_p(c['welch_p'])} | {c['mannwhitney_u']:g} | {_p(c['mannwhitney_p'])} | "
                  f"{c['hedges_g']:.2f} | {f1s} |")
    return md


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
    if notes:
        md += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    md += ["", "Files: `trials.csv` (every trial), `curves.png` (validation loss vs step)"
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
                 asha: bool = False, command: str | None = None, notes: Sequence[str] = ()) -> dict:
    """Write trials.csv, report.md, curves.png, schedules.png (if given) and summary.json into
    out_dir; return the summary (see `summarize`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(records, target_val_loss)
    _write_trials_csv(summary, out / "trials.csv")
    _plot_curves(summary, out / "curves.png")
    if schedules:
        from layoutray.schedules import plot_rows
        plot_rows(schedules, str(out / "schedules.png"), title="learning rate and batch size per arm")
    (out / "report.md").write_text(report_markdown(summary, title=title, asha=asha, command=command,
                                                   notes=notes, schedules=bool(schedules)))
    (out / "summary.json").write_text(json.dumps(_json_clean(
        {"target_val_loss": target_val_loss, "best_baseline": summary["best_baseline"],
         "arms": summary["arms"], "comparisons": summary["comparisons"]}), indent=2) + "\n")
    return summary
