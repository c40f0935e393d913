"""The quality recipe's curve: validation quality against training time, stage by stage.

    .venv/bin/layoutray train --recipe configs/recipes/quality.yaml --name quality --output runs
    python bench/recipe_curve.py --recipe-dir runs/quality

Reads a finished (or unfinished) recipe run: every stage's metrics.jsonl (per epoch: losses, the
fixed validation subset's F1@0.5 and mIoU on generated layouts, samples/s, epoch seconds) and
recipe.json (each finished stage's test metrics), and writes them as one curve against the
cumulative training minutes and samples seen, with a PNG plot next to the results file. The
goal it is read against (issue "a good model in one command"): image-only F1@0.5 >= 0.95 and mIoU
>= 0.85 within 2 hours of wall time; bench/quality.py scores the final model on the test split
(all three modes and the augmented test).

Writes bench/results/recipe_curve[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, reserve_stdout  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
KEEP = ("train_loss", "val_loss", "val_element_f1@0.5", "val_mean_iou", "lr", "samples_per_s")


def stage_rows(stage_dir: Path) -> list[dict]:
    path = stage_dir / "metrics.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


def read_state(recipe_dir: Path) -> dict:
    """recipe.json: written when the first stage finishes."""
    path = recipe_dir / "recipe.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def curve(recipe_dir: Path) -> tuple[list[dict], list[dict]]:
    """Per-epoch points over all stages, and a summary per stage."""
    state = read_state(recipe_dir)
    points, stages, minutes, samples = [], [], 0.0, 0
    for stage_dir in sorted(p for p in recipe_dir.iterdir() if p.is_dir() and p.name[:2].isdigit()):
        rows = stage_rows(stage_dir)
        for row in rows:
            minutes += row["epoch_seconds"] / 60
            samples += round(row["samples_per_s"] * row["train_seconds"])
            points.append({"stage": stage_dir.name, "epoch": row["epoch"], "minutes": round(minutes, 2),
                           "samples": samples, **{k: row.get(k) for k in KEEP}})
        done = state.get("stages", {}).get(stage_dir.name, {})
        stages.append({"stage": stage_dir.name, "epochs": len(rows), "end_minutes": round(minutes, 2),
                       "finished": bool(done), "test": done.get("test", {})})
    return points, stages


def plot(points: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4))
    t = [p["minutes"] for p in points]
    ax.plot(t, [p.get("val_element_f1@0.5") for p in points], marker=".", label="F1@0.5 (val, image+spec)")
    ax.plot(t, [p.get("val_mean_iou") for p in points], marker=".", label="mIoU (val)")
    for a, b in zip(points, points[1:]):
        if a["stage"] != b["stage"]:
            ax.axvline(a["minutes"], color="grey", lw=0.8, ls="--")
    ax.axhline(0.95, color="red", lw=0.6, ls=":")
    ax.set_xlabel("training minutes")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe-dir", required=True, help="the recipe run (runs/NAME)")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("recipe_curve", tag=args.tag, results_dir=args.results_dir)
    recipe_dir = Path(args.recipe_dir)
    points, stages = curve(recipe_dir)
    png = run.path.with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(points, png)
    recipe = read_state(recipe_dir).get("recipe", {})
    best = max(points, key=lambda p: p.get("val_element_f1@0.5") or 0, default={})
    run.finish(out, config={"recipe": recipe, "recipe_dir": str(recipe_dir)},
               figures={"points": points, "stages": stages, "minutes": points[-1]["minutes"] if points else 0,
                        "best_val_f1": best.get("val_element_f1@0.5"), "best_at_minutes": best.get("minutes"),
                        "plot": str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
