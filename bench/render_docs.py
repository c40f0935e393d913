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
    phi_study        docs/phi.md: the PHI study, from docs/phi/study/records.json (trainables/report.py)
    phi              docs/phi.md: from the sweep report in docs/phi/ (trials.csv; summary.json for
                     the target loss, else the sweep's config)
    slow_clients     docs/serving.md: stalled-client probes (Serve alone and through nginx) and
                     the huge-image memory figures, from bench/results/slow_clients.json

    aesthetic        docs/aesthetics.md: per constraint level and test set, F1, mIoU, overlap, alignment,
                     aesthetic score and latency, the score's validation and the goals (bench/aesthetic.py)
    upgrade          docs/upgrade.md: bench/upgrade.py's arms (scratch, partial copy, growth), the
                     preserved error per growth and the noise levels

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
BENCHES = ("quality", "recipe_curve", "realweb", "html_ingest", "data_throughput", "train_throughput", "infer_latency", "serve_latency",
           "localize_probe", "idle_actors", "ray_presence", "decoders", "slow_clients", "aesthetic", "upgrade")
DOC_OF = {"quality": "docs/quality.md#results", "recipe_curve": "docs/quality.md#the-quality-recipe",
          "realweb": "docs/quality.md#real-web-sections", "html_ingest": "docs/data.md",
          "decoders": "docs/decoders.md#results", "aesthetic": "docs/aesthetics.md#results",
          "slow_clients": "docs/serving.md#proxy-limits-and-timeouts", "upgrade": "docs/upgrade.md"}  # else docs/benchmarks.md
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


def pct(x, digits: int = 1) -> str:
    return "n/a" if x is None else f"{100 * x:.{digits}f}%"


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


def slow_clients_tables(d: dict) -> list[str]:
    f, c = d["figures"], d["config"]
    probes = [[s.get("target"), s.get("stalled"), kind, f"{s[kind]['ok']}/{s[kind]['probes']}",
               f"{s[kind]['within_goal']}/{s[kind]['probes']}", num(s[kind]["p50_s"]), num(s[kind]["max_s"])]
              for s in f.get("slow_clients", []) for kind in ("healthz", "layout") if kind in s]
    images = [[i.get("decode_concurrency"), f"{i.get('ok')}/{c.get('images')}", num(i.get("seconds")),
               num(i.get("rss_before_mib")), num(i.get("rss_peak_mib")), num(i.get("rss_after_mib")),
               num(i.get("healthz_max_s"))] for i in f.get("huge_images", [])]
    return (table(["through", "stalled connections", "probe", "answered 200", f"within {num(c.get('goal_s'))} s",
                   "P50 s", "max s"], probes) + [""]
            + table(["decode_concurrency", f"{c.get('images')} concurrent 16-Mpx images: 200s", "seconds",
                     "replica RSS before MiB", "peak MiB", "after MiB", "/healthz max s"], images))


def render_slow_clients(src: Sources) -> str:
    return per_doc_blocks(src.of("slow_clients"), slow_clients_tables)


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


def decoders_row(v: dict) -> list:
    q, lat = v.get("quality", {}), v.get("latency", {})
    both, spec = q.get("both", {}), q.get("spec", {})
    return [v.get("decoder", "?"), v.get("steps") or "-", num(both.get("element_f1@0.5")), num(both.get("mean_iou")),
            num(spec.get("element_f1@0.5")), num(spec.get("max_iou")), num(spec.get("fid")), num(spec.get("overlap")),
            num(spec.get("alignment"), 2), f"{num(lat.get('p50_ms'))} / {num(lat.get('p95_ms'))}",
            num(v.get("diversity_pairwise_iou"))]


def decoders_goal_lines(g: dict) -> list[str]:
    names = {"spec_max_iou": "spec-only maxIoU", "spec_fid": "spec-only FID", "spec_overlap": "spec-only overlap",
             "spec_alignment": "spec-only alignment", "both_f1@0.5": "image+spec F1@0.5 (within 0.03)"}
    lines = [wrap(f"- {label}: AR {num(g[k]['ar'])}, diffusion {num(g[k]['diffusion'])}; diffusion ahead by "
                  f"{num(g[k]['ahead_by'])}: {met(g[k]['met'])}", "  ") for k, label in names.items() if k in g]
    if "latency_k25_vs_ar" in g:
        lines.append(f"- K = 25 latency: {num(g['latency_k25_vs_ar']['ratio_p50'])}x AR's P50 (goal <= 2x): "
                     f"{met(g['latency_k25_vs_ar']['met'])}")
    return lines + [f"- default decoder: {g.get('default_decoder', '?')}"]


def render_decoders(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        f = d["figures"]
        rows = [decoders_row(f["autoregressive"])] + [decoders_row(v) for v in f.get("diffusion", [])]
        lines = table(["decoder", "K", "F1@0.5 image+spec", "mIoU image+spec", "F1@0.5 spec", "maxIoU spec",
                       "FID spec", "overlap spec", "alignment spec", "latency P50 / P95 ms",
                       "diversity (pairwise IoU)"], rows)
        tr = f.get("training", {})
        lines += ["", wrap("Training, each decoder: " + "; ".join(
            f"{k} {t.get('optimizer_steps')} steps in {num(t.get('train_seconds'))} s "
            f"({num(t.get('samples_per_s'))} samples/s)" for k, t in tr.items()) + ".")]
        g = f.get("goals", {})
        return lines + ["", f"Goals, best diffusion K <= 50 (K = {g.get('best_k')}) against AR:"] + \
            decoders_goal_lines(g)
    return per_doc_blocks(src.of("decoders"), one)


def upgrade_tables(d: dict) -> list[str]:
    f = d["figures"]
    arms = [[name, num(a.get("start_val_loss"), 4), num(a.get("final_val_loss"), 4),
             num(a["to_scratch_final"].get("steps")), pct(a.get("steps_fraction")),
             num(a["to_scratch_final"].get("seconds")), num(a.get("seconds_total"))]
            for name, a in f.get("arms", {}).items()]
    errs = [[k.replace("_", " "), num(e.get("old"), 5), num(e.get("new"), 5), f"{100 * e['relative_change']:+.4g}%",
             "; ".join(e.get("approximations", [])) or "exact"] for k, e in f.get("preserved_error", {}).items()]
    base = f.get("noise_start_val_loss", {}).get("0.0")
    noise = [[k, num(v, 7), "n/a" if not base else f"{100 * (v - base) / base:+.3g}%"]
             for k, v in f.get("noise_start_val_loss", {}).items()]
    goal = f"<= {pct(f.get('goal_steps_fraction_max'))} of the steps: {met(f.get('goal_met'))}"
    return (table(["start", "val loss at step 0", "final val loss", "steps to scratch's final",
                   "share of steps", "seconds to it", "seconds in all"], arms)
            + ["", f"Phase 1 parent's validation loss {num(f.get('parent', {}).get('val_loss'), 4)}; scratch's "
                   f"final {num(f.get('target_val_loss'), 4)}; goal (preserve reaches it in {goal})", ""]
            + table(["growth", "parent's val loss", "grown model's val loss", "change", "what is approximate"], errs)
            + [""] + table(["noise (x tensor std)", "val loss right after growth", "vs no noise"], noise))


def render_upgrade(src: Sources) -> str:
    return per_doc_blocks(src.of("upgrade"), upgrade_tables)


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


def render_recipe_curve(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        f = d["figures"]
        rows = [[s["stage"], s["epochs"], num(s["end_minutes"]), "yes" if s["finished"] else "no",
                 *[num(s.get("test", {}).get(m, {}).get("element_f1@0.5")) for m in QUALITY_MODES],
                 num(s.get("test", {}).get("image", {}).get("mean_iou"))] for s in f.get("stages", [])]
        lines = table(["stage", "epochs", "ends at (min)", "finished", "test F1@0.5 image+spec", "image", "spec",
                       "image mIoU"], rows)
        return lines + ["", f"Best validation F1@0.5 (image+spec) {num(f.get('best_val_f1'))} at "
                            f"{num(f.get('best_at_minutes'))} training minutes; curve: `{f.get('plot', '')}`."]
    return per_doc_blocks(src.of("recipe_curve"), one)


def realweb_rows(model: dict) -> list[list]:
    sets = (("synthetic test", "synthetic"), ("real, wireframes of the real boxes", "real_wireframe"),
            ("real, screenshots", "real_screenshot"))
    return [[model.get("model", "?") if i == 0 else "", name,
             *[num(model.get(key, {}).get(m, {}).get("element_f1@0.5")) for m in QUALITY_MODES],
             num(model.get(key, {}).get("both", {}).get("mean_iou"))] for i, (name, key) in enumerate(sets)]


AESTHETIC_SETS = (("synthetic", "synthetic test"), ("real", "real-browser pages"))


def aesthetic_rows(f: dict) -> list[list]:
    rows = []
    for key, name in AESTHETIC_SETS:
        s = f.get("sets", {}).get(key)
        for i, (level, r) in enumerate((s or {}).get("levels", {}).items()):
            both, spec = r.get("both", {}), r.get("spec", {})
            lat = s.get("latency", {}).get(level, {})
            rows.append([name if i == 0 else "", level, num(both.get("element_f1@0.5")), num(both.get("mean_iou")),
                         f"{num(spec.get('overlap'))} ({num(spec.get('overlap_reference'))})",
                         f"{num(spec.get('forbidden_overlap'), 2)} ({num(spec.get('forbidden_overlap_reference'), 2)})",
                         f"{num(spec.get('alignment'), 2)} ({num(spec.get('alignment_reference'), 2)})",
                         f"{num(spec.get('aesthetic'))} ({num(spec.get('aesthetic_reference'))})",
                         f"{num(lat.get('p50_ms'))} ({num(lat.get('vs_off'))}x)"])
    return rows


def aesthetic_goal_lines(f: dict) -> list[str]:
    lines = []
    for key, name in AESTHETIC_SETS:
        g, s = f.get("goals", {}).get(key), f.get("sets", {}).get(key, {})
        if not g:
            continue
        v = s.get("validation", {})
        by = ", ".join(f"{k.replace('_', ' ')} {pct(r.get('win_rate'))}" for k, r in v.get("by_perturbation", {}).items())
        draws = f", {v['repeats']} draws each" if v.get("repeats", 1) > 1 else ""
        lines.append(f"- {name} ({v.get('layouts', s.get('sections', '?'))} layouts{draws}): the true layout outscores a "
                     f"perturbed copy in {pct(v.get('win_rate'), 2)} of {v.get('pairs', '?')} pairs ({by}"
                     + (f"; {v['ties']} ties, counted as losses" if v.get("ties") is not None else "") + "); goals: "
                     + "; ".join(f"{k.replace('_', ' ')} {met(ok)}" for k, ok in g.get("met", {}).items()))
    return lines


def render_aesthetic(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        f = d["figures"]
        lines = [f"Model: `{f.get('model', '?')}` ({f.get('model_note') or f.get('phase', '?')}; trained at level "
                 f"`{f.get('model_trained_at', '?')}`).", ""]
        lines += table(["test set", "level", "F1@0.5 image+spec", "mIoU image+spec", "overlap spec (data)",
                        "forbidden overlap spec (data)", "alignment spec (data)", "aesthetic spec (data)",
                        "latency ms per layout (x off)"],
                       aesthetic_rows(f))
        return lines + [""] + aesthetic_goal_lines(f)
    return per_doc_blocks(src.of("aesthetic"), one)


def render_realweb(src: Sources) -> str:
    def one(d: dict) -> list[str]:
        models = d["figures"].get("models", [])
        lines = table(["model", "test set", "F1@0.5 image+spec", "image", "spec", "mIoU image+spec"],
                      [r for m in models for r in realweb_rows(m)])
        for m in models:
            g, n = m.get("gaps", {}), m.get("sections", {})
            lines += ["", f"{m.get('model')}: {n.get('sections', '?')} real sections; synthetic minus real-wireframe "
                          f"F1 (image+spec) {num(g.get('both_synthetic_minus_real_wireframe'))} (goal <= 0.10), "
                          f"image-only wireframe minus screenshot {num(g.get('image_wireframe_minus_screenshot'))} "
                          f"(goal <= 0.05)."]
        widths = sorted({w for m in models for w in m.get("by_viewport", {})}, key=int)
        if widths:
            lines += ["", "By browser width, F1@0.5 image+spec on wireframes / screenshots (image-only in brackets):", ""]
            lines += table(["model", *[f"{w} px" for w in widths]],
                           [[m.get("model"), *[viewport_cell(m.get("by_viewport", {}).get(w)) for w in widths]]
                            for m in models if m.get("by_viewport")])
        return lines
    return per_doc_blocks(src.of("realweb"), one)


def viewport_cell(v: dict | None) -> str:
    if not v:
        return ""
    w, s = v.get("wireframes", {}), v.get("screenshots", {})
    return f"{num(w.get('both'))} / {num(s.get('both'))} ({num(w.get('image'))} / {num(s.get('image'))})"


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


def render_phi_study(src: Sources) -> str:
    """docs/phi.md's study block, from the stored study report (docs/phi/study/records.json)."""
    records = src.phi_dir / "study" / "records.json"
    if not records.exists():
        return NO_RESULT
    from trainables.report import study_markdown
    return study_markdown(records)


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


def headline_recipe_curve(f: dict) -> tuple[str, str]:
    last = (f.get("stages") or [{}])[-1]
    image = last.get("test", {}).get("image", {})
    return (f"quality recipe: image F1@0.5 {num(image.get('element_f1@0.5'))}, mIoU {num(image.get('mean_iou'))} "
            f"after {num(f.get('minutes'))} min", "goal: 0.95 / 0.85 within 120 min")


def headline_realweb(f: dict) -> tuple[str, str]:
    m = (f.get("models") or [{}])[0]
    real = m.get("real_screenshot", {}).get("both", {}).get("element_f1@0.5")
    return (f"{m.get('model', '?')} model on real sections: F1@0.5 {num(real)} (screenshots, image+spec)",
            f"synthetic test {num(m.get('synthetic', {}).get('both', {}).get('element_f1@0.5'))}")


def headline_upgrade(f: dict) -> tuple[str, str]:
    errors = f.get("preserved_error", {})
    same = errors.get("phase1 to phase2, parent's vision (the default)", errors.get("phase1_to_phase2_same_inputs", {}))
    arms = f.get("arms", {})
    best = min((a for a in arms if a != "scratch"), key=lambda a: arms[a].get("final_val_loss") or math.inf, default="")
    return (f"phase1 -> phase2 growth (default) changes the loss by {num(same.get('relative_change'))} (relative); "
            f"best upgraded arm `{best}` ends at val loss {num(arms.get(best, {}).get('final_val_loss'))}",
            f"from scratch, same steps: {num(arms.get('scratch', {}).get('final_val_loss'))}")


def headline_html_ingest(f: dict) -> tuple[str, str]:
    return (f"from-html labels {pct(f.get('element_accuracy'))} of the test pages' elements correctly, "
            f"{num(f.get('sections_per_s'))} sections/s",
            f"the pages' data-layout truth ({f.get('elements_truth', '?')} elements)")


def headline_ray_presence(f: dict) -> tuple[str, str]:
    return (f"training loop at {num(f.get('ratio_running_over_stopped_median'))}x its speed beside a running "
            f"Ray instance",
            f"the instance SIGSTOPped: {num(median(f.get('stopped', {}).get('samples_per_s', [])))} samples/s")


def headline_decoders(f: dict) -> tuple[str, str]:
    g = f.get("goals", {})
    best = next((v for v in f.get("diffusion", []) if v.get("steps") == g.get("best_k")), {})
    spec = best.get("quality", {}).get("spec", {})
    ar = f.get("autoregressive", {})
    return (f"diffusion K = {g.get('best_k')}: spec-only maxIoU {num(spec.get('max_iou'))}, P50 "
            f"{num(best.get('latency', {}).get('p50_ms'))} ms; default decoder: {g.get('default_decoder', '?')}",
            f"autoregressive at the same training budget: maxIoU "
            f"{num(ar.get('quality', {}).get('spec', {}).get('max_iou'))}, P50 {num(ar.get('latency', {}).get('p50_ms'))} ms")


def headline_aesthetic(f: dict) -> tuple[str, str]:
    s = f.get("sets", {}).get("synthetic", {})
    lv, lat = s.get("levels", {}), s.get("latency", {})
    spec = lambda level: lv.get(level, {}).get("spec", {})  # noqa: E731
    return (f"aesthetic score (spec-only) off {num(spec('off').get('aesthetic'))}, basic "
            f"{num(spec('basic').get('aesthetic'))}, advanced {num(spec('advanced').get('aesthetic'))}; "
            f"latency x{num(lat.get('basic', {}).get('vs_off'))} / x{num(lat.get('advanced', {}).get('vs_off'))}",
            f"the data's own {num(spec('off').get('aesthetic_reference'))}")


def headline_slow_clients(f: dict) -> tuple[str, str]:
    by = {s.get("target"): s for s in f.get("slow_clients", [])}
    ng, sv = by.get("nginx", {}).get("healthz", {}), by.get("serve", {}).get("healthz", {})
    img = {str(i.get("decode_concurrency")): i for i in f.get("huge_images", [])}
    d, u = img.get("default", {}), img.get("16", {})
    return (f"300 stalled clients, through nginx: /healthz max {num(ng.get('max_s'))} s; 16 huge images: replica "
            f"RSS +{num((d.get('rss_peak_mib') or 0) - (d.get('rss_before_mib') or 0))} MiB at peak",
            f"Serve alone: /healthz max {num(sv.get('max_s'))} s ({sv.get('ok')}/{sv.get('probes')} answered); "
            f"no decode bound: +{num((u.get('rss_peak_mib') or 0) - (u.get('rss_before_mib') or 0))} MiB")


HEADLINES: dict[str, Callable[[dict], tuple[str, str]]] = {
    "quality": headline_quality, "html_ingest": headline_html_ingest,
    "recipe_curve": headline_recipe_curve, "realweb": headline_realweb,
    "data_throughput": headline_data_throughput, "train_throughput": headline_train_throughput,
    "infer_latency": headline_infer_latency, "serve_latency": headline_serve_latency,
    "localize_probe": headline_localize_probe, "idle_actors": headline_idle_actors,
    "ray_presence": headline_ray_presence, "decoders": headline_decoders,
    "slow_clients": headline_slow_clients, "aesthetic": headline_aesthetic, "upgrade": headline_upgrade,
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
    "decoders": render_decoders,
    "slow_clients": render_slow_clients,
    "html_ingest": render_html_ingest,
    "recipe_curve": render_recipe_curve,
    "realweb": render_realweb,
    "phi": render_phi,
    "phi_study": render_phi_study,
    "upgrade": render_upgrade,
    "aesthetic": render_aesthetic,
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
