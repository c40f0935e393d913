"""Time to quality: how fast two training configurations reach good layouts, side by side.

    python bench/time_to_quality.py --arm base= --arm stem=model.conv_stem=true --epochs 16
    python bench/time_to_quality.py --arm quickstart=@quickstart --arm recipe=@quickstart,training.epochs=24

Each arm is one ordinary training run (`layoutray.training.driver.run_training`, Ray Train +
DeepSpeed on a local Ray) on the same data with every epoch's checkpoint kept. Afterwards every
`--eval-every`-th epoch's exported model is scored on the same test sections: F1@0.5 in the three
modes (image+spec, image only, spec only), mIoU, overlap and alignment (with the data's own),
maxIoU and FID where the evaluation reports them. The curve is quality against the training
wall-clock time and the samples seen; arms run one after the other (each with the whole
machine, as a user's run would), so the results record the load average too.

`@quickstart` stands for the overrides of `make run` (trainables.quickstart.QUICKSTART_OVERRIDES).
Writes bench/results/time_to_quality[-TAG].json and a PNG plot next to it (--plot).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, reserve_stdout  # noqa: E402

MODES = ("both", "image", "spec")
KEYS = ("element_f1@0.5", "mean_iou", "overlap", "alignment", "max_iou", "fid")


def parse_arm(text: str) -> tuple[str, list[str]]:
    """NAME=KEY=VALUE,KEY=VALUE,... ; `@quickstart` expands to make run's overrides."""
    from trainables.quickstart import QUICKSTART_OVERRIDES

    name, _, rest = text.partition("=")
    out: list[str] = []
    for item in filter(None, rest.split(",")):
        out += QUICKSTART_OVERRIDES if item == "@quickstart" else [item]
    return name, out


def train_arm(name: str, overrides: list[str], args, root: Path) -> Path:
    from layoutray.config import load_config
    from layoutray.training.driver import run_training

    cfg = load_config(phase="phase1", overrides=[*overrides, f"training.epochs={args.epochs}",
                                                 f"checkpoint.num_to_keep={args.epochs}",
                                                 f"validation.patience={10 * args.epochs}"])
    summary = run_training(cfg, args.data, name, str(root), evaluate_test=False)
    return Path(summary["run_dir"])


def checkpoints_by_epoch(run_dir: Path) -> dict[int, Path]:
    """Each kept checkpoint's exported model, by the epoch recorded in its metadata."""
    out = {}
    for meta in run_dir.glob("checkpoint_*/model/meta.json"):
        epoch = json.loads(meta.read_text()).get("metadata", {}).get("epoch")
        if epoch is not None:
            out[int(epoch)] = meta.parent
    return dict(sorted(out.items()))


def curve(run_dir: Path, eval_dir: str, args) -> list[dict]:
    """Quality at every eval_every-th epoch (and the last), against time and samples seen."""
    from layoutray.eval.evaluate import evaluate_artifact

    history = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    models = checkpoints_by_epoch(run_dir)
    points, seconds, samples = [], 0.0, 0
    for row in history:
        seconds += row["epoch_seconds"]
        samples += round(row["samples_per_s"] * row["train_seconds"])
        epoch = row["epoch"]
        if epoch in models and (epoch % args.eval_every == 0 or epoch == history[-1]["epoch"]):
            m = evaluate_artifact(str(models[epoch]), eval_dir, "test", args.eval_examples)
            points.append({"epoch": epoch, "train_minutes": round(seconds / 60, 2), "samples": samples,
                           **{f"{mode}.{k}": m[mode].get(k) for mode in MODES for k in KEYS if mode in m}})
            print(f"[time_to_quality] {run_dir.name} epoch {epoch}: "
                  + "  ".join(f"{mode} F1 {m[mode]['element_f1@0.5']:.3f}" for mode in MODES if mode in m),
                  file=sys.stderr, flush=True)
    return points


def eval_dir_of(run_dir: Path, data: str) -> str:
    """Where the run's test split lives: its fixed synthetic eval splits, or the dataset."""
    return str(run_dir / "eval-data") if (run_dir / "eval-data").is_dir() else data


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4), sharey=True)
    for ax, mode in zip(axes, MODES):
        for name, points in results.items():
            ax.plot([p["train_minutes"] for p in points], [p.get(f"{mode}.element_f1@0.5") for p in points],
                    marker="o", label=name)
        ax.set_title(f"F1@0.5, {mode}")
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("F1@0.5 (test)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arm", action="append", required=True, metavar="NAME=OVERRIDES")
    ap.add_argument("--data", default="synth:0", help="a dataset directory or synth[:SEED]")
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--eval-every", type=int, default=4)
    ap.add_argument("--eval-examples", type=int, default=200)
    ap.add_argument("--plot", default=None, help="PNG path (default: next to the results file)")
    ap.add_argument("--work-dir", default=None, help="where the runs go (default: a temporary directory)")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("time_to_quality", tag=args.tag, results_dir=args.results_dir)
    arms = dict(parse_arm(a) for a in args.arm)
    root = Path(args.work_dir or tempfile.mkdtemp(prefix="ttq-"))
    results = {}
    for name, overrides in arms.items():
        run_dir = train_arm(name, overrides, args, root)
        results[name] = curve(run_dir, eval_dir_of(run_dir, args.data), args)
    png = Path(args.plot) if args.plot else run.path.with_suffix(".png")
    plot(results, png)
    run.finish(out, config={"arms": arms, "data": args.data, "epochs": args.epochs,
                            "eval_every": args.eval_every, "eval_examples": args.eval_examples},
               figures={"curves": results, "plot": str(png.relative_to(Path(__file__).resolve().parents[1]))
                        if png.is_relative_to(Path(__file__).resolve().parents[1]) else str(png)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
