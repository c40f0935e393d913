"""Render the results tables in README.md and docs/*.md from bench/results/*.json.

    .venv/bin/python bench/render_docs.py            # rewrite every results block
    .venv/bin/python bench/render_docs.py --check    # exit 1 if any file would change

A results block is everything between

    <!-- BEGIN RESULTS <key> -->
    <!-- END RESULTS <key> -->

and is replaced by a Markdown table generated from the results files, with the date, machine and
commit of each run, so that no figure in the docs is typed by hand. Keys (RENDERERS below):

    summary          README: one row per benchmark (headline figures, in-run baseline, when, where)
    data_throughput, train_throughput, infer_latency, serve_latency, localize_probe, idle_actors,
    ray_presence     docs/benchmarks.md: one block per benchmark, from bench/results/<key>*.json
                     (every variant: <key>.json and <key>-<tag>.json, see bench/jsonout.py)
    quality          docs/quality.md: from bench/results/quality.json (figures.models: a list of
                     {"model", "train_time", "metrics"}, metrics as `layoutray evaluate --json`
                     prints them, one dict per mode: both, image, spec)
    phi              docs/phi.md: from the sweep report in docs/phi/ (trials.csv; summary.json for
                     the target loss, else the sweep's config)

A key with no results file gets "no result recorded yet". A block with an unknown key is left as
it is, with a warning.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from pathlib import Path
from typing import Callable

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BENCHES = ("quality", "html_ingest", "data_throughput", "train_throughput", "infer_latency", "serve_latency",
           "localize_probe", "idle_actors", "ray_presence")
DOC_OF = {"quality": "docs/quality.md#results", "html_ingest": "docs/data.md"}  # else docs/benchmarks.md
PHI_SWEEP_CONFIG = REPO / "configs" / "sweeps" / "phi_vs_baseline_small.yaml"
NO_RESULT = "no result recorded yet"
BLOCK = re.compile(r"(<!-- BEGIN RESULTS (\S+) -->\n)(.*?)(<!-- END RESULTS \2 -->)", re.DOTALL)
BEGIN = re.compile(r"<!-- BEGIN RESULTS (\S+) -->")
RISKY_START = re.compile(r"[-+*>#|=]|\d+[.)]")


class Sources:
    """Where the renderers read from: the results files, and the PHI study's report."""

    def __init__(self, results_dir: Path, phi_dir: Path):
        self.results_dir, self.phi_dir = Path(results_dir), Path(phi_dir)
        self.docs: dict[str, list[dict]] = {}
        for path in sorted(self.results_dir.glob("*.json")):
            doc = json.loads(path.read_text())
            self.docs.setdefault(doc.get("name", path.stem), []).append(doc)
        for docs in self.docs.values():  # the untagged run first, then the variants by tag
            docs.sort(key=lambda d: (d.get("tag") is not None, d.get("tag") or ""))

    def of(self, name: str) -> list[dict]:
        return self.docs.get(name, [])


# ---------------------------------------------------------------------------- formatting


def num(x, digits: int = 3) -> str:
    """A figure as text: `digits` significant digits, thousands unseparated; "n/a" for none."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int) or (isinstance(x, float) and abs(x) >= 10 ** digits):
        return f"{x:.0f}"
    return f"{x:.{digits}g}"


def wrap(text: str, indent: str = "", width: int = 100) -> str:
    """A paragraph wrapped at `width` columns, as the docs' prose is (`indent` for list items).
    A line never starts with what Markdown would read as a list, quote, heading or table."""
    lines: list[str] = []
    cur = ""
    for word in text.split():
        if cur and len(cur) + 1 + len(word) > width and not RISKY_START.match(word):
            lines.append(cur)
            cur = indent + word
        else:
            cur = f"{cur} {word}" if cur else word
    return "\n".join(lines + [cur])


def pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def met(flag) -> str:
    return {True: "met", False: "not met"}.get(flag, "n/a")


def table(headers: list[str], rows: list[list]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return (["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
            + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def machine_summary(doc: dict) -> str:
    m = doc.get("machine", {})
    load = (m.get("loadavg_start") or [None])[0]
    parts = [f"{m.get('cores', '?')} cores ({m.get('cpu', 'CPU unknown')})"]
    if m.get("memory_gib"):
        parts.append(f"{num(m['memory_gib'])} GiB")
    parts.append(m.get("gpu") or "no GPU")
    if load is not None:
        parts.append(f"load {load:.1f} at start" + load_after(m, ", {:.1f} at end", ", up to {:.1f} during the run"))
    return ", ".join(parts)


def load_after(m: dict, end_fmt: str, peak_fmt: str) -> str:
    """The run's highest 1-minute load where it was recorded, else the load at its end."""
    if m.get("loadavg_1min_max") is not None:
        return peak_fmt.format(m["loadavg_1min_max"])
    end = (m.get("loadavg_end") or [None])[0]
    return "" if end is None else end_fmt.format(end)


def commit_summary(doc: dict) -> str:
    c = doc.get("commit")
    return (c[:7] if c else "unknown") + (" (uncommitted changes)" if doc.get("dirty") else "")


def measured_line(doc: dict, command: bool = True) -> str:
    """"measured <date> on <machine>, commit <short>" and the command that produced it."""
    line = f"measured {str(doc.get('date', '?'))[:10]} on {machine_summary(doc)}, commit {commit_summary(doc)}"
    cmd = doc.get("command")
    if command and cmd:
        line += "; `" + " ".join(cmd if isinstance(cmd, list) else [cmd]) + "`"
    return line


def variant(doc: dict) -> str:
    return f"`{doc['tag']}`" if doc.get("tag") else "default"


def per_doc_table(docs: list[dict], headers: list[str], row: Callable[[dict], list]) -> str:
    """One row per run (a variant column when there are several), then when and where each ran."""
    if not docs:
        return NO_RESULT
    if len(docs) == 1:
        return "\n".join(table(headers, [row(docs[0])]) + ["", wrap(measured_line(docs[0]))])
    lines = table(["variant"] + headers, [[variant(d)] + row(d) for d in docs]) + [""]
    return "\n".join(lines + [wrap(f"- {variant(d)}: {measured_line(d)}", "  ") for d in docs])


def per_doc_blocks(docs: list[dict], render: Callable[[dict], list[str]]) -> str:
    """A table of several rows per run: each run's table under its own measured line."""
    if not docs:
        return NO_RESULT
    out: list[str] = []
    for d in docs:
        head = measured_line(d) if len(docs) == 1 else f"{variant(d)}: {measured_line(d)}"
        out += ([""] if out else []) + [wrap(head), ""] + render(d)
    return "\n".join(out)


# ---------------------------------------------------------------------------- one renderer per key


def data_throughput_row(d: dict) -> list:
    f, c = d["figures"], d["config"]
    return [c.get("examples"), c.get("epochs"), c.get("preprocess_concurrency"), num(f.get("generator_examples_per_s")),
            num(f.get("local_samples_per_s")), num(f.get("ray_samples_per_s_steady")), num(f.get("ray_vs_local")),
            ", ".join(num(x) for x in f.get("ray_first_batch_s", [])), num(f.get("phase1_train_samples_per_s")),
            f"{num(f.get('headroom'))}x ({met(f.get('meets_target'))})"]


def render_data_throughput(src: Sources) -> str:
    return per_doc_table(src.of("data_throughput"), [
        "examples", "epochs", "preprocess tasks", "generator examples/s", "in-process samples/s",
        "Ray Data samples/s (steady)", "Ray / in-process", "first batch s (per epoch)",
        "Phase 1 training samples/s", "headroom (goal >= 5x)"], data_throughput_row)


def train_throughput_row(d: dict) -> list:
    f, c = d["figures"], d["config"]
    a, b, cc = f.get("a_bare_pytorch", {}), f.get("b_ray_1_worker", {}), f.get("c_ray_2_workers", {})
    mfu, goals = f.get("mfu", {}), f.get("goals", {})
    ray_b = b.get("error") or f"{num(b.get('samples_per_s_steady'))} (first {num(b.get('samples_per_s_first'))})"
    ray_c = cc.get("error") or num(cc.get("samples_per_s_steady"))
    return [c.get("batch_size"), "excluded" if c.get("materialize") else "streamed",
            f"{num(a.get('samples_per_s_bracket', a.get('samples_per_s')))} ({a.get('chosen_threads')} thr)",
            ray_b, ray_c, f"{num(f.get('ratio_b_over_a'))} ({met(goals.get('b_over_a_ge_0.9'))})",
            " / ".join(pct(mfu.get(k)) for k in ("a", "b", "c")),
            num(goals.get("epoch_1500_examples_s_at_a"))]


def render_train_throughput(src: Sources) -> str:
    return per_doc_table(src.of("train_throughput"), [
        "batch", "data in b/c", "a samples/s", "b samples/s steady", "c samples/s steady",
        "b / a (goal >= 0.9)", "MFU a / b / c (goal a >= 50%)", "1,500-example epoch at a, s (goal < 15)"],
        train_throughput_row)


def infer_latency_table(d: dict) -> list[str]:
    rows = [[r["threads"], num(r["kv_cache_ms"]["p50"]), num(r["kv_cache_ms"]["p95"]),
             num(r["recompute_ms"]["p50"]), num(r["recompute_ms"]["p95"]), f"{num(r['speedup_p50'])}x",
             met(r.get("goal_p50_le_50ms")), met(r.get("goal_speedup_ge_5x"))]
            for r in d["figures"].get("results", [])]
    return table(["torch threads", "KV cache P50 ms", "KV cache P95 ms", "recompute P50 ms", "recompute P95 ms",
                  "speedup (P50)", "P50 <= 50 ms", "speedup >= 5x"], rows)


def render_infer_latency(src: Sources) -> str:
    return per_doc_blocks(src.of("infer_latency"), infer_latency_table)


def serve_latency_table(d: dict) -> list[str]:
    f = d["figures"]
    rows = []
    for path in ("router", "direct", "in_process"):
        for mode in ("batching", "no_batching"):
            for conc, r in f.get("results", {}).get(path, {}).get(mode, {}).items():
                rows.append([path.replace("_", "-"), mode.replace("_", " "), conc, num(r.get("p50_ms")),
                             num(r.get("p95_ms")), num(r.get("p99_ms")), num(r.get("rps"))])
    g = f.get("goals", {})
    p95, over, speed = (g.get("p95_at_16_vs_2x_single_p50", {}), g.get("router_p50_overhead_vs_direct", {}),
                        g.get("batching_rps_speedup_at_16", {}))
    cpu = f.get("router_path_cpu_at_16", {})
    return table(["path", "batching", "concurrency", "P50 ms", "P95 ms", "P99 ms", "requests/s"], rows) + [
        "",
        wrap(f"Goals: P95 at 16 concurrent {num(p95.get('p95_ms'))} ms against 2x the single P50 "
        f"{num(p95.get('limit_ms'))} ms ({met(p95.get('met'))}); router P50 {num(over.get('router_p50_ms'))} ms "
        f"against direct {num(over.get('direct_p50_ms'))} ms, +{pct(over.get('overhead'))} (goal <= 10%: "
        f"{met(over.get('met'))}); batching {num(speed.get('speedup'))}x requests/s at 16 concurrent "
        f"(goal >= 2x: {met(speed.get('met'))}). CPU per request on the router path at 16 concurrent: "
        + ", ".join(f"{k} {num(v)} ms" for k, v in cpu.get("cpu_ms_per_request", {}).items())
        + f" (total {num(cpu.get('cpu_ms_per_request_total'))} ms)."),
    ]


def render_serve_latency(src: Sources) -> str:
    return per_doc_blocks(src.of("serve_latency"), serve_latency_table)


def localize_probe_row(d: dict) -> list:
    f, c = d["figures"], d["config"]
    fin, prior = f.get("final", {}), f.get("prior_baseline", {})
    return [", ".join(c.get("set") or []) or "phase 1", c.get("steps"), num(c.get("dense_weight")),
            num(fin.get("mean_abs_error")), num(prior.get("mean_abs_error")), num(f.get("ratio_error_vs_prior")),
            num(fin.get("within_1_bin")), num(fin.get("iou@0.5")), num(fin.get("iou@0.75")),
            num(fin.get("seconds"))]


def render_localize_probe(src: Sources) -> str:
    return per_doc_table(src.of("localize_probe"), [
        "overrides", "steps", "dense weight", "error, bins", "constant answer, bins", "error / constant",
        "within 1 bin", "IoU >= 0.5", "IoU >= 0.75", "seconds"], localize_probe_row)


def idle_actors_row(d: dict) -> list:
    f, c = d["figures"], d["config"]
    a, base = f.get("per_idle_actor", {}), f.get("baseline_plain_python", {})
    top = ", ".join(f"{k} {num(v)}" for k, v in list(a.get("wakeups_per_s_by_thread", {}).items())[:3])
    return [c.get("actors"), num(c.get("window")), num(a.get("wakeups_per_s")), num(a.get("cpu_ms_per_s")),
            a.get("threads"), top, num(base.get("wakeups_per_s")), num(base.get("cpu_ms_per_s"))]


def render_idle_actors(src: Sources) -> str:
    return per_doc_table(src.of("idle_actors"), [
        "actors", "window s", "wake-ups/s per actor", "CPU ms/s per actor", "threads", "top threads (wake-ups/s)",
        "sleeping process wake-ups/s", "sleeping process CPU ms/s"], idle_actors_row)


def ray_presence_row(d: dict) -> list:
    f, c = d["figures"], d["config"]
    med = lambda cond: num(median(f.get(cond, {}).get("samples_per_s", [])))  # noqa: E731
    return [c.get("threads"), "yes" if c.get("dashboard") else "no", f.get("instance_processes"),
            med("no_ray_before"), med("running"), med("stopped"), med("no_ray_after"),
            num(f.get("ratio_running_over_stopped_median")),
            ", ".join(num(x) for x in f.get("ratio_running_over_stopped_per_pair", [])),
            num(f.get("running", {}).get("other_cores_median"))]


def median(xs: list[float]) -> float | None:
    s = sorted(xs)
    if not s:
        return None
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2


def render_ray_presence(src: Sources) -> str:
    return per_doc_table(src.of("ray_presence"), [
        "torch threads", "dashboard", "instance processes", "no Ray before, samples/s", "running", "stopped",
        "no Ray after", "running / stopped (median)", "per pair", "other cores while running"], ray_presence_row)


QUALITY_MODES = ("both", "image", "spec")


def quality_rows(model: dict) -> list[list]:
    m = model.get("metrics", {})
    rows = []
    for i, mode in enumerate(q for q in QUALITY_MODES if q in m):
        r = m[mode]
        rows.append([model.get("model", "?") if i == 0 else "", model.get("train_time", "") if i == 0 else "",
                     mode, num(r.get("loss"), 4), num(r.get("element_f1@0.5")), num(r.get("element_f1@0.75")),
                     num(r.get("mean_iou")), num(r.get("alignment"), 2), num(r.get("overlap")),
                     num(r.get("validity")), num(r.get("max_iou")), num(r.get("fid")),
                     num(r.get("augmented_f1@0.5"))])
    return rows


def render_html_ingest(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        f = d["figures"]
        return table(["pages", "sections", "elements (truth)", "elements labelled right", "section types right",
                      "sections/s (with browser start)"],
                     [[f.get("pages"), f.get("sections"), f.get("elements_truth"), num(f.get("element_accuracy")),
                       num(f.get("section_accuracy")),
                       f"{num(f.get('sections_per_s'))} ({num(f.get('sections_per_s_with_start'))})"]])
    return per_doc_blocks(src.of("html_ingest"), one)


def render_quality(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        models = d["figures"].get("models", [])
        ref = next((m.get("metrics", {}).get("both", {}) for m in models), {})
        lines = table(["model", "train time", "mode", "loss", "F1@0.5", "F1@0.75", "mIoU", "alignment",
                       "overlap", "validity", "maxIoU", "FID", "F1@0.5 augmented"],
                      [r for m in models for r in quality_rows(m)])
        if ref.get("alignment_reference") is not None:
            lines += ["", f"Test data's own alignment {num(ref['alignment_reference'], 2)}, "
                          f"overlap {num(ref.get('overlap_reference'))}."]
        return lines
    return per_doc_blocks(src.of("quality"), one)


def phi_target(phi_dir: Path) -> float | None:
    """The sweep's target validation loss: its summary.json, else its config."""
    summary = phi_dir / "summary.json"
    if summary.exists():
        return json.loads(summary.read_text()).get("target_val_loss")
    if PHI_SWEEP_CONFIG.exists():
        import yaml
        return yaml.safe_load(PHI_SWEEP_CONFIG.read_text()).get("target_val_loss")
    return None


def phi_measured_line(records: list[dict]) -> str:
    dates = sorted(m.group(1) for r in records if (m := re.search(r"_(\d{4}-\d\d-\d\d)_", r.get("trial_id", ""))))
    when = (dates[0] if dates[0] == dates[-1] else f"{dates[0]} to {dates[-1]}") if dates else "on a date not recorded"
    wall = sum(float(r["wall_seconds"]) for r in records if r.get("wall_seconds"))
    return (f"measured {when}, {len(records)} trials, {wall / 60:.1f} min of trial wall time in all; the machine "
            f"and commit are not recorded in docs/phi/trials.csv")


def phi_tables(summary: dict) -> list[str]:
    from trainables.report import _fmt, _p
    arms = [[arm, a["kind"], f"{a['n_trials']} ({a['n_completed']}/{a['n_stopped']}/{a['n_error']})",
             _fmt(a["final_val_loss"]), _fmt(a["final_val_f1"], 3),
             f"{_fmt(a['steps_to_target'], 4)} ({a['n_reached_target']}/{a['n_completed']})",
             _fmt(a["wall_seconds"], 3)] for arm, a in summary["arms"].items()]
    comps = []
    for c in summary["comparisons"]:
        f1 = c.get("f1")
        comps.append([c["arm"], c["error"]] + [""] * 6 if "error" in c else [
            c["arm"], f"{c['diff']:+.4g}", f"[{c['diff_ci'][0]:+.3g}, {c['diff_ci'][1]:+.3g}]", _p(c["welch_p"]),
            f"{c['mannwhitney_u']:g}", _p(c["mannwhitney_p"]), f"{c['hedges_g']:.2f}",
            f"{f1['diff']:+.3g} ({_p(f1['welch_p'])})" if f1 else "n/a"])
    return (table(["arm", "kind", "trials (completed/stopped/error)", "final val loss", "val F1@0.5",
                   "steps to target (reached)", "wall time s"], arms)
            + ["", wrap(f"PHI arms against the best baseline (`{summary['best_baseline']}`), final validation "
                        "loss; difference = PHI arm - baseline (negative is better); effect size Hedges' g (Cohen's d "
                        "with small-sample correction):"), ""]
            + table(["PHI arm", "diff", "95% CI of diff", "Welch p", "Mann-Whitney U", "Mann-Whitney p",
                     "Hedges' g", "F1 diff (Welch p)"], comps))


def render_phi(src: Sources) -> str:
    trials = src.phi_dir / "trials.csv"
    if not trials.exists():
        return NO_RESULT
    from trainables.report import summarize
    with open(trials, newline="") as f:
        records = list(csv.DictReader(f))
    target = phi_target(src.phi_dir)
    summary = summarize(records, float(target) if target is not None else math.nan)
    intro = wrap("Each value is the mean ± half-width of the 95% Student-t confidence interval over seeds "
             "(completed trials only). Steps to target = first optimizer step whose validation loss is "
             f"<= {num(target)} (mean over the trials that reached it); {phi_measured_line(records)}.")
    return "\n".join([intro, ""] + phi_tables(summary))


# ---------------------------------------------------------------------------- summary


def headline_data_throughput(f: dict) -> tuple[str, str]:
    return (f"Ray Data {num(f.get('ray_samples_per_s_steady'))} samples/s steady, {num(f.get('headroom'))}x "
            f"what training consumes (goal >= 5x)",
            f"in-process {num(f.get('local_samples_per_s'))} samples/s; training "
            f"{num(f.get('phase1_train_samples_per_s'))} samples/s")


def headline_train_throughput(f: dict) -> tuple[str, str]:
    a, b, mfu = f.get("a_bare_pytorch", {}), f.get("b_ray_1_worker", {}), f.get("mfu", {})
    return (f"batch {f.get('batch_size')}: Ray Train + DeepSpeed {num(b.get('samples_per_s_steady'))} samples/s, "
            f"{num(f.get('ratio_b_over_a'))} of bare PyTorch (goal >= 0.9); MFU {pct(mfu.get('a'))}",
            f"bare PyTorch {num(a.get('samples_per_s_bracket', a.get('samples_per_s')))} samples/s")


def headline_infer_latency(f: dict) -> tuple[str, str]:
    best = next((r for r in f.get("results", []) if r["threads"] == f.get("best_threads")), None)
    if best is None:
        return "n/a", "n/a"
    return (f"P50 {num(best['kv_cache_ms']['p50'])} ms per layout with the KV cache, {best['threads']} threads "
            f"(goal <= 50 ms)",
            f"recomputation P50 {num(best['recompute_ms']['p50'])} ms: {num(best['speedup_p50'])}x (goal >= 5x)")


def headline_serve_latency(f: dict) -> tuple[str, str]:
    g = f.get("goals", {})
    p95, over, speed = (g.get("p95_at_16_vs_2x_single_p50", {}), g.get("router_p50_overhead_vs_direct", {}),
                        g.get("batching_rps_speedup_at_16", {}))
    single = f.get("results", {}).get("router", {}).get("batching", {}).get("1", {})
    return (f"router P50 {num(single.get('p50_ms'))} ms single, P95 {num(p95.get('p95_ms'))} ms at 16 concurrent; "
            f"batching {num(speed.get('speedup'))}x requests/s",
            f"direct HTTP P50 {num(over.get('direct_p50_ms'))} ms (router +{pct(over.get('overhead'))})")


def headline_localize_probe(f: dict) -> tuple[str, str]:
    fin = f.get("final", {})
    return (f"coordinate error {num(fin.get('mean_abs_error'))} bins after {fin.get('step')} steps, "
            f"IoU >= 0.5 for {pct(fin.get('iou@0.5'))}",
            f"constant answer {num(f.get('prior_baseline', {}).get('mean_abs_error'))} bins "
            f"(ratio {num(f.get('ratio_error_vs_prior'))})")


def headline_idle_actors(f: dict) -> tuple[str, str]:
    a, base = f.get("per_idle_actor", {}), f.get("baseline_plain_python", {})
    return (f"an idle actor wakes {num(a.get('wakeups_per_s'))} times/s, {num(a.get('cpu_ms_per_s'))} ms CPU/s",
            f"sleeping process {num(base.get('wakeups_per_s'))} wake-ups/s")


def headline_quality(f: dict) -> tuple[str, str]:
    models = f.get("models", [])
    m = next((x for x in models if x.get("model") == "make run"), models[0] if models else {})
    r = m.get("metrics", {})
    f1 = " / ".join(num(r.get(k, {}).get("element_f1@0.5")) for k in QUALITY_MODES)
    both = r.get("both", {})
    return (f"{m.get('model', '?')} model: F1@0.5 {f1} (image+spec / image / spec)",
            f"overlap {num(both.get('overlap'))}, alignment {num(both.get('alignment'), 2)}; the data's own "
            f"{num(both.get('overlap_reference'))}, {num(both.get('alignment_reference'), 2)}")


def headline_html_ingest(f: dict) -> tuple[str, str]:
    return (f"from-html labels {num(f.get('element_accuracy'))} of the test pages' elements, "
            f"{num(f.get('sections_per_s'))} sections/s",
            f"the pages' data-layout truth ({f.get('elements_truth', '?')} elements)")


def headline_ray_presence(f: dict) -> tuple[str, str]:
    return (f"training loop at {num(f.get('ratio_running_over_stopped_median'))}x its speed beside a running "
            f"Ray instance",
            f"the instance SIGSTOPped: {num(median(f.get('stopped', {}).get('samples_per_s', [])))} samples/s")


HEADLINES: dict[str, Callable[[dict], tuple[str, str]]] = {
    "quality": headline_quality, "html_ingest": headline_html_ingest,
    "data_throughput": headline_data_throughput, "train_throughput": headline_train_throughput,
    "infer_latency": headline_infer_latency, "serve_latency": headline_serve_latency,
    "localize_probe": headline_localize_probe, "idle_actors": headline_idle_actors,
    "ray_presence": headline_ray_presence,
}


def summary_when_where(d: dict) -> str:
    m = d.get("machine", {})
    load = (m.get("loadavg_start") or [None])[0]
    return (f"{str(d.get('date', '?'))[:10]}, {m.get('cores', '?')} cores, {m.get('gpu') or 'no GPU'}"
            + (f", load {load:.1f}" + load_after(m, " (end {:.1f})", " (max {:.1f})") if load is not None else "")
            + f", {commit_summary(d)}")


def render_summary(src: Sources) -> str:
    rows = []
    for name in BENCHES:
        docs = src.of(name)
        link = f"[{name}]({DOC_OF.get(name, f'docs/benchmarks.md#{name}')})"
        if not docs:
            rows.append([link, NO_RESULT, "", ""])
            continue
        d = docs[0]  # the untagged run when there is one
        head, base = HEADLINES[name](d.get("figures", {}))
        rows.append([link + (f" ({variant(d)})" if d.get("tag") else ""), head, base, summary_when_where(d)])
    return "\n".join(table(["benchmark", "headline", "baseline (same run)", "measured (date, machine, commit)"], rows))


RENDERERS: dict[str, Callable[[Sources], str]] = {
    "summary": render_summary,
    "data_throughput": render_data_throughput,
    "train_throughput": render_train_throughput,
    "infer_latency": render_infer_latency,
    "serve_latency": render_serve_latency,
    "localize_probe": render_localize_probe,
    "idle_actors": render_idle_actors,
    "ray_presence": render_ray_presence,
    "quality": render_quality,
    "html_ingest": render_html_ingest,
    "phi": render_phi,
}


# ---------------------------------------------------------------------------- files


def render_text(text: str, src: Sources, where: str = "") -> str:
    """`text` with every known results block regenerated; unknown keys left alone, with a warning."""
    cache: dict[str, str] = {}

    def replace(m: re.Match) -> str:
        key = m.group(2)
        if key not in RENDERERS:
            print(f"warning: {where}: unknown results key {key!r}, block left as it is", file=sys.stderr)
            return m.group(0)
        if key not in cache:
            cache[key] = RENDERERS[key](src).strip("\n")
        return f"{m.group(1)}{cache[key]}\n{m.group(4)}"

    out = BLOCK.sub(replace, text)
    closed = {m.group(2) for m in BLOCK.finditer(text)}
    for key in sorted(set(BEGIN.findall(text)) - closed):
        print(f"warning: {where}: BEGIN RESULTS {key} has no END RESULTS {key}; left as it is", file=sys.stderr)
    return out


def default_files(root: Path) -> list[Path]:
    return [p for p in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if p.exists()]


def render_files(files: list[Path], src: Sources, check: bool = False) -> list[Path]:
    """Rewrite `files` (or, with check, only compare); return the files that change."""
    changed = []
    for path in files:
        text = path.read_text()
        new = render_text(text, src, str(path))
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="Markdown files (default: README.md and docs/*.md)")
    ap.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file would change")
    ap.add_argument("--root", type=Path, default=REPO, help="repository root for the default files")
    ap.add_argument("--results-dir", type=Path, default=BENCH_DIR / "results")
    ap.add_argument("--phi-dir", type=Path, default=None, help="the PHI sweep's report (default: ROOT/docs/phi)")
    args = ap.parse_args(argv)
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    src = Sources(args.results_dir, args.phi_dir or args.root / "docs" / "phi")
    changed = render_files(args.files or default_files(args.root), src, check=args.check)
    for path in changed:
        print(f"{'out of date' if args.check else 'rendered'}: {path}", file=sys.stderr)
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
