"""Model quality as data: score a trained model and record it in bench/results/quality.json.

    python bench/quality.py --label "make run" --model runs/quickstart/model --data runs/quickstart-data \
        --run-dir runs/quickstart
    python bench/quality.py --label "quality recipe" --model runs/quality/03-polish/model \
        --data runs/quality/03-polish/eval-data --recipe-dir runs/quality

Each model is one entry of `figures.models` (replaced when its label is recorded again): the
metrics of `layoutray evaluate --json` per mode on the clean test split, F1@0.5 on the same split
with the training augmentations applied (robustness), the training time (from the run's
metrics.jsonl or the recipe's recipe.json), and the date, commit and machine of the scoring.
docs/quality.md's table is rendered from this file (bench/render_docs.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, git_commit, machine_info, reserve_stdout, utc_now  # noqa: E402

MODES = ("both", "image", "spec")
KEEP = ("loss", "element_f1@0.5", "element_f1@0.75", "mean_iou", "alignment", "alignment_reference", "overlap",
        "overlap_reference", "validity", "max_iou", "fid")


def train_minutes(run_dir: str | None, recipe_dir: str | None) -> float | None:
    """Training wall time: the sum of a run's epochs, or of a recipe's stages."""
    if recipe_dir:
        stages = json.loads((Path(recipe_dir) / "recipe.json").read_text())["stages"].values()
        return round(sum(s["minutes"] for s in stages), 1)
    if run_dir:
        rows = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines() if x.strip()]
        return round(sum(r["epoch_seconds"] for r in rows) / 60, 1)
    return None


def score(model: str, data: str, limit: int) -> dict:
    from layoutray.eval.evaluate import evaluate_artifact

    clean = evaluate_artifact(model, data, "test", limit)
    aug = evaluate_artifact(model, data, "test", limit, augmented=True)
    metrics = {mode: {k: clean[mode].get(k) for k in KEEP} for mode in MODES if mode in clean}
    for mode in metrics:
        metrics[mode]["augmented_f1@0.5"] = aug[mode].get("element_f1@0.5")
    return {"examples": clean["examples"], "metrics": metrics}


def merged(path: Path, entry: dict) -> list[dict]:
    """The models already recorded, with `entry` in place of any of the same label."""
    old = json.loads(path.read_text())["figures"].get("models", []) if path.exists() else []
    return [m for m in old if m.get("model") != entry["model"]] + [entry]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--label", required=True, help="the row's name in the table, e.g. 'make run'")
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True, help="the dataset whose test split scores it")
    ap.add_argument("--run-dir", help="the training run (for its training time)")
    ap.add_argument("--recipe-dir", help="the recipe run (for its training time)")
    ap.add_argument("--limit", type=int, default=0, help="score at most this many test sections (0: all)")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("quality", tag=args.tag, results_dir=args.results_dir)
    minutes = train_minutes(args.run_dir, args.recipe_dir)
    entry = {"model": args.label, "train_time": f"{minutes} min" if minutes is not None else "",
             "path": args.model, "data": args.data, **score(args.model, args.data, args.limit),
             "scored": utc_now(), **git_commit(), "machine": machine_info()}
    run.finish(out, config={"limit": args.limit}, figures={"models": merged(run.path, entry)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
