"""The autoregressive decoder against the diffusion decoder at several sampling steps K, at an
equal training budget on the same data; results in bench/results/decoders.json.

    nice -n 10 python bench/decoders.py --train-steps 5000 --ks 10,25,50,100

Both models are Phase 1 configs with the training settings of `--recipe` (its `set` and its first
stage's learning rate; default the quality recipe's) that differ only in model.decoder; each
trains for the same number of optimizer steps (training.epochs x training.max_steps_per_epoch)
on `--data synth:0` through the real Ray Train + DeepSpeed loop, and is scored on the same fixed
test split (the run's eval-data). Per decoder and K:

    quality     F1@0.5, mIoU, maxIoU, FID, overlap, alignment, validity per mode (image+spec,
                image, spec), greedy, from layoutray.eval.evaluate
    latency     P50 / P95 ms per layout, one request at a time on the CPU (spec-only requests of
                the test split's element lists), torch at --threads threads; AR and every K
                take turns request by request, so a change in the machine's load reaches all alike
    diversity   mean pairwise IoU between --samples samples of one spec (temperature 1, top_p
                0.9; matched elements, layoutray.eval.metrics.mean_matched_iou): lower is more varied

`goals` compares the best diffusion K <= 50 with AR on the issue's terms (spec-only maxIoU, FID,
overlap, alignment; image+spec F1@0.5 within 0.03; K = 25 latency within 2x AR) and says by how
much each is met or missed. The default decoder stays autoregressive unless every goal is met.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, reserve_stdout  # noqa: E402

DECODERS = ("autoregressive", "diffusion")
MODES = ("both", "image", "spec")
KEEP = ("element_f1@0.5", "mean_iou", "max_iou", "fid", "overlap", "alignment", "validity", "loss")


def train(decoder: str, args) -> dict:
    """Train one decoder for the shared budget; the summary and the model directory."""
    from layoutray.config import load_config
    from layoutray.training.driver import run_training
    from layoutray.training.recipe import load_recipe

    recipe = load_recipe(args.recipe)
    settings = [*recipe.set, f"training.learning_rate={recipe.stages[0].learning_rate}"]
    epochs = max(1, args.train_steps // args.steps_per_epoch)
    cfg = load_config(phase=recipe.phase, overrides=[
        *settings, f"model.decoder={decoder}", f"training.epochs={epochs}",
        f"training.max_steps_per_epoch={args.steps_per_epoch}", f"validation.patience={epochs + 1}",
        "validation.generate_examples=0"])
    name = f"{decoder}"
    model_dir = Path(args.out_dir) / name / "model"
    if args.reuse and (model_dir / "meta.json").is_file():
        rows = [json.loads(x) for x in (model_dir.parent / "metrics.jsonl").read_text().splitlines() if x]
        return {"model": str(model_dir), "reused": True, "history": rows}
    t0 = time.time()
    summary = run_training(cfg, args.data, name, args.out_dir, evaluate_test=False)
    rows = [json.loads(x) for x in (Path(summary["run_dir"]) / "metrics.jsonl").read_text().splitlines() if x]
    return {"model": summary["model"], "reused": False, "wall_s": round(time.time() - t0, 1), "history": rows}


def training_figures(run: dict) -> dict:
    h = run["history"]
    return {"optimizer_steps": h[-1]["global_step"] if h else 0,
            "train_seconds": round(sum(r["train_seconds"] for r in h), 1),
            "samples_per_s": round(statistics.mean(r["samples_per_s"] for r in h), 2) if h else None,
            "final_train_loss": h[-1]["train_loss"] if h else None, "final_val_loss": h[-1]["val_loss"] if h else None,
            "wall_s": run.get("wall_s")}


def quality(model: str, data: str, limit: int, steps: int | None) -> dict:
    from layoutray.eval.evaluate import evaluate_artifact

    m = evaluate_artifact(model, data, "test", limit, device="cpu", steps=steps)
    return {mode: {k: m[mode].get(k) for k in KEEP} for mode in MODES if mode in m}


def test_specs(data: str, n: int) -> list[tuple[str, list[str]]]:
    """(section type, element types) of the first n test sections."""
    from layoutray.data.dataset import read_rows

    return [(r["section_type"], [e["type"] for e in r["elements"]]) for r in read_rows(data, "test", n)]


def latencies(variants: dict, specs, repeats: int) -> dict:
    """{name: P50 / P95 ms per layout} for variants {name: (predictor, steps or None)}: one
    spec-only request at a time, the variants in turn for each spec (one warm-up request each)."""
    def ask(predictor, steps, section, elements):
        kw = {} if steps is None else {"steps": steps}
        t0 = time.perf_counter()
        predictor.predict(section_type=section, elements=elements, **kw)
        return (time.perf_counter() - t0) * 1000

    for predictor, steps in variants.values():
        ask(predictor, steps, *specs[0])
    ms = {name: [] for name in variants}
    for section, elements in itertools.islice(itertools.cycle(specs), repeats):
        for name, (predictor, steps) in variants.items():
            ms[name].append(ask(predictor, steps, section, elements))
    return {name: _percentiles(sorted(v)) for name, v in ms.items()}


def _percentiles(ms: list[float]) -> dict:
    return {"p50_ms": round(ms[len(ms) // 2], 2), "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 2),
            "requests": len(ms)}


def diversity(predictor, specs, steps: int | None, samples: int) -> float:
    """Mean pairwise matched IoU between `samples` samples of each spec (lower: more varied)."""
    from layoutray.eval.metrics import mean_matched_iou
    from layoutray.model.tokenizer import Box

    kw = {} if steps is None else {"steps": steps}
    values = []
    for i, (section, elements) in enumerate(specs):
        outs = predictor.predict(section_type=section, elements=elements, samples=samples, temperature=1.0,
                                 top_p=0.9, seed=i, canvas=(1000, 1000), **kw)
        boxes = [[Box(e["type"], e["x"] / 1000, e["y"] / 1000, e["width"] / 1000, e["height"] / 1000)
                  for e in o["elements"]] for o in outs]
        values += [mean_matched_iou([a], [b]) for a, b in itertools.combinations(boxes, 2)]
    return round(statistics.mean(values), 4) if values else None


def score_variant(predictor, model: str, data: str, steps: int | None, args, specs) -> dict:
    return {"steps": steps, "quality": quality(model, data, args.eval_limit, steps),
            "diversity_pairwise_iou": diversity(predictor, specs[:args.diversity_specs], steps, args.samples)}


def _gap(ar: float | None, diff: float | None, higher_better: bool) -> float | None:
    """How far diffusion is ahead of AR (positive: ahead) on a metric."""
    if ar is None or diff is None:
        return None
    return round((diff - ar) if higher_better else (ar - diff), 4)


def goals(ar: dict, variants: list[dict]) -> dict:
    """The issue's goals, with the best diffusion K <= 50 (by spec-only maxIoU) against AR."""
    cands = [v for v in variants if v["steps"] <= 50]
    best = max(cands, key=lambda v: v["quality"]["spec"]["max_iou"] or 0.0)
    a, d = ar["quality"], best["quality"]
    out = {"best_k": best["steps"]}
    for key, higher in (("max_iou", True), ("fid", False), ("overlap", False), ("alignment", False)):
        gap = _gap(a["spec"][key], d["spec"][key], higher)
        out[f"spec_{key}"] = {"ar": a["spec"][key], "diffusion": d["spec"][key], "ahead_by": gap,
                              "met": gap is not None and gap >= 0}
    f1_gap = _gap(a["both"]["element_f1@0.5"], d["both"]["element_f1@0.5"], True)
    out["both_f1@0.5"] = {"ar": a["both"]["element_f1@0.5"], "diffusion": d["both"]["element_f1@0.5"],
                          "ahead_by": f1_gap, "met": f1_gap is not None and f1_gap >= -0.03}
    k25 = next((v for v in variants if v["steps"] == 25), None)
    if k25:
        ratio = round(k25["latency"]["p50_ms"] / ar["latency"]["p50_ms"], 2)
        out["latency_k25_vs_ar"] = {"ratio_p50": ratio, "met": ratio <= 2.0}
    out["all_met"] = all(v["met"] for v in out.values() if isinstance(v, dict))
    out["default_decoder"] = "diffusion" if out["all_met"] else "autoregressive"
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synth:0")
    ap.add_argument("--recipe", default="configs/recipes/quality.yaml",
                    help="training settings: the recipe's `set` and first stage's learning rate")
    ap.add_argument("--train-steps", type=int, default=5000, help="optimizer steps per decoder (the budget)")
    ap.add_argument("--steps-per-epoch", type=int, default=250)
    ap.add_argument("--ks", default="10,25,50,100", help="diffusion sampling steps to score")
    ap.add_argument("--eval-limit", type=int, default=128, help="test sections scored per variant")
    ap.add_argument("--latency-requests", type=int, default=60)
    ap.add_argument("--diversity-specs", type=int, default=16)
    ap.add_argument("--samples", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", default="runs/bench-decoders")
    ap.add_argument("--reuse", action="store_true", help="score models an earlier run trained")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    import torch

    from layoutray.model.predictor import load

    run = BenchRun("decoders", tag=args.tag, results_dir=args.results_dir)
    ks = [int(k) for k in args.ks.split(",")]
    runs = {d: train(d, args) for d in DECODERS}
    data = str(Path(runs["autoregressive"]["model"]).parent / "eval-data")
    specs = test_specs(data, max(args.diversity_specs, 32))
    torch.set_num_threads(args.threads)
    predictors = {d: load(r["model"]) for d, r in runs.items()}
    ar = {"decoder": "autoregressive",
          **score_variant(predictors["autoregressive"], runs["autoregressive"]["model"], data, None, args, specs)}
    variants = [{"decoder": "diffusion", **score_variant(predictors["diffusion"], runs["diffusion"]["model"],
                                                          data, k, args, specs)} for k in ks]
    timed = latencies({"ar": (predictors["autoregressive"], None),
                       **{k: (predictors["diffusion"], k) for k in ks}}, specs, args.latency_requests)
    ar["latency"] = timed["ar"]
    for v in variants:
        v["latency"] = timed[v["steps"]]
    figures = {"training": {d: training_figures(r) for d, r in runs.items()}, "autoregressive": ar,
               "diffusion": variants, "goals": goals(ar, variants)}
    run.finish(out, config={**vars(args), "ks": ks, "eval_data": data, "phase": "phase1"}, figures=figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
