"""Aesthetic constraint levels (off / basic / full / advanced): quality, aesthetic score and latency
per level, on the synthetic test split and on the real-browser pages.

    python bench/aesthetic.py --model runs/quality/03-polish/model --data runs/quality/03-polish/eval-data
    python bench/aesthetic.py --model runs/quickstart/model --data runs/quickstart-data --limit 100 \
        [--real-data DIR]   # a from-html dataset of realweb/pages (default: ingested here, at the model's cap)

One model generates every level on the same sections (greedy): F1@0.5 and mIoU with image and spec,
overlap, alignment and aesthetic score of spec-only layouts (the data's own beside them), and the
latency per layout (one spec-only request at a time, levels taken in turn, median). `full` differs
from `basic` only in training, so on a model trained at another level its decoding is `basic`'s;
the results name the level the model was trained at. The score itself is validated on both sets:
true layouts against perturbed copies (eval/aesthetic.py `validate_score`). Goals (docs/aesthetics.md)
are checked in `figures.goals`. Writes bench/results/aesthetic[-TAG].json.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, reserve_stdout  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LEVELS = ("off", "basic", "full", "advanced")
VALIDATION_REPEATS = 3  # draws of the perturbations per layout: about 600 pairs per set
KEEP = ("element_f1@0.5", "mean_iou", "overlap", "overlap_reference", "alignment", "alignment_reference",
        "aesthetic", "aesthetic_reference", "aesthetic_parts", "aesthetic_reference_parts", "validity",
        "forbidden_overlap", "forbidden_overlap_reference")


def score_level(predictor, data: str, level: str, limit: int) -> dict:
    """Metrics of image+spec ("both") and spec-only generation at one level."""
    from layoutray.data.batches import iter_local_batches, on_device
    from layoutray.eval.evaluate import _limit, evaluate_batches

    cfg = predictor.cfg
    batches = iter_local_batches(data, "test", cfg, 32, train=False)
    if limit:
        batches = _limit(batches, limit)
    m = evaluate_batches(predictor.model, predictor.tokenizer, on_device(batches, "cpu"),
                         max_elements=cfg.model.max_elements, modes=("both", "spec"), constraints=level,
                         aesthetics=cfg.model.aesthetics)
    return {"examples": m["generated_examples"], **{mode: {k: m[mode].get(k) for k in KEEP} for mode in ("both", "spec")}}


def true_layouts(data: str, limit: int, tokenizer) -> tuple[list, list]:
    """(the test split's layouts as the model sees them (quantised to its bins), its rows)."""
    from layoutray.data.dataset import read_rows
    from layoutray.model.tokenizer import Box

    rows = read_rows(data, "test", limit or 1_000_000)
    return [tokenizer.decode_layout(tokenizer.encode_layout([Box(e["type"], e["x"], e["y"], e["w"], e["h"])
                                                             for e in r["elements"]])) for r in rows], rows


def latency(predictor, rows: list, repeats: int) -> dict:
    """Median ms per spec-only layout at each level: one request at a time, levels in turn."""
    from layoutray.model.request import validate_payload

    reqs = [validate_payload({"section_type": r["section_type"], "elements": [e["type"] for e in r["elements"]]},
                             predictor.limits()) for r in rows[:repeats]]
    times = {level: [] for level in LEVELS}
    predictor.generate_layouts(reqs[:1])  # warm-up
    for req in reqs:
        for level in LEVELS:
            t0 = time.perf_counter()
            predictor.generate_layouts([req], constraints=level)
            times[level].append(1000 * (time.perf_counter() - t0))
    off = statistics.median(times["off"])
    return {level: {"p50_ms": statistics.median(t), "mean_ms": statistics.fmean(t), "n": len(t),
                    "vs_off": statistics.median(t) / off} for level, t in times.items()}


def one_set(predictor, data: str, limit: int, repeats: int) -> dict:
    from layoutray.eval.aesthetic import validate_score

    _, rows = true_layouts(data, limit, predictor.tokenizer)
    every, _ = true_layouts(data, 0, predictor.tokenizer)  # the score's validation: every test layout
    out = {"data": str(data), "sections": len(rows), "levels": {},
           "validation": validate_score(every, predictor.cfg.model.aesthetics, seed=0, repeats=VALIDATION_REPEATS)}
    for level in LEVELS:
        t0 = time.perf_counter()
        out["levels"][level] = score_level(predictor, data, level, limit)
        out["levels"][level]["seconds"] = time.perf_counter() - t0
        print(f"[aesthetic] {Path(data).name} {level}: {out['levels'][level]['both']['element_f1@0.5']:.3f} F1, "
              f"aesthetic {out['levels'][level]['spec']['aesthetic']:.3f}", file=sys.stderr, flush=True)
    out["latency"] = latency(predictor, rows, repeats)
    return out


def goals(s: dict, training_level: str) -> dict:
    """The issue's goals on one set (spec-only aesthetics, image+spec F1, latency, score validation)."""
    off, adv = s["levels"]["off"], s["levels"]["advanced"]
    spec = adv["spec"]
    lat = s["latency"]
    out = {
        "advanced_overlap_vs_data": spec["overlap"] / max(spec["overlap_reference"], 1e-9),
        "advanced_alignment_vs_data": spec["alignment"] / max(spec["alignment_reference"], 1e-9),
        "advanced_f1_minus_off": adv["both"]["element_f1@0.5"] - off["both"]["element_f1@0.5"],
        "advanced_aesthetic_minus_data": spec["aesthetic"] - spec["aesthetic_reference"],
        "off_aesthetic": off["spec"]["aesthetic"],
        "basic_latency_vs_off": lat["basic"]["vs_off"], "advanced_latency_vs_off": lat["advanced"]["vs_off"],
        "validation_win_rate": s["validation"]["win_rate"], "model_trained_at": training_level,
    }
    out["met"] = {
        "advanced_overlap_within_1.1x": out["advanced_overlap_vs_data"] <= 1.1,
        "advanced_alignment_within_1.1x": out["advanced_alignment_vs_data"] <= 1.1,
        "advanced_f1_within_0.02": out["advanced_f1_minus_off"] >= -0.02,
        "advanced_aesthetic_within_0.05": out["advanced_aesthetic_minus_data"] >= -0.05,
        "phase1_aesthetic_at_least_0.6": out["off_aesthetic"] >= 0.6,
        "basic_latency_at_most_1.2x": out["basic_latency_vs_off"] <= 1.2,
        "advanced_latency_at_most_2x": out["advanced_latency_vs_off"] <= 2.0,
        "validation_at_least_0.95": out["validation_win_rate"] >= 0.95,
    }
    return out


def capped(src: str, out: Path, max_elements: int) -> dict:
    """The test rows of a dataset that the model can place (at most its element cap), as a dataset."""
    from layoutray.data import dataset, importer

    rows = dataset.read_rows(src, "test", count=1_000_000)
    keep = [r for r in rows if len(r["elements"]) <= max_elements]
    importer.write_dataset(out, keep, None, 0, {"name": "bench.aesthetic", "from": str(src)},
                           kept_splits={"test": keep})
    return {"sections": len(keep), "over_cap": len(rows) - len(keep)}


def real_dataset(args, predictor, tmp: Path) -> str:
    """The real-browser sections within the model's element cap: from --real-data, or ingested here."""
    if args.real_data:
        capped(args.real_data, tmp / "real", predictor.cfg.model.max_elements)
        return str(tmp / "real")
    from realweb import ingest

    widths = tuple(int(w) for w in args.widths.split(","))
    ingest(args.pages, tmp / "real", widths, predictor.cfg.model.max_elements)
    return str(tmp / "real")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--model-note", default="", help="what the model is, for the table (e.g. 'make run')")
    ap.add_argument("--data", required=True, help="synthetic dataset whose test split is scored")
    ap.add_argument("--real-data", help="a from-html dataset of the real pages (test split)")
    ap.add_argument("--pages", default=str(REPO / "realweb" / "pages"))
    ap.add_argument("--widths", default="1440,1024,390")
    ap.add_argument("--limit", type=int, default=0, help="sections per set (0: all)")
    ap.add_argument("--latency-requests", type=int, default=20)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override the model's config for this run, e.g. model.aesthetics.snap_tolerance=1 "
                         "(an artifact keeps the aesthetics it was trained with)")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("aesthetic", tag=args.tag, results_dir=args.results_dir)
    import torch

    from layoutray.model.predictor import load

    torch.set_num_threads(2)
    predictor = load(args.model)
    if args.set:
        from layoutray.config import _set_dotted, config_from_dict, parse_override

        tree = predictor.cfg.to_dict()
        for item in args.set:
            _set_dotted(tree, *parse_override(item))
        predictor.cfg = config_from_dict(tree)
    level = predictor.cfg.model.aesthetic_constraints
    with tempfile.TemporaryDirectory() as tmp:
        real = real_dataset(args, predictor, Path(tmp))
        sets = {"synthetic": one_set(predictor, args.data, args.limit, args.latency_requests),
                "real": one_set(predictor, real, args.limit, args.latency_requests)}
    figures = {"model": args.model, "model_note": args.model_note, "model_trained_at": level,
               "phase": predictor.cfg.phase, "sets": sets,
               "goals": {name: goals(s, level) for name, s in sets.items()}}
    run.finish(out, config={"limit": args.limit, "latency_requests": args.latency_requests, "set": args.set,
                            "aesthetics": dataclasses.asdict(predictor.cfg.model.aesthetics)}, figures=figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
