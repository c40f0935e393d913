"""The main job (`make run`): synthetic sections -> validation and preview -> Phase 1
training on a local Ray instance -> evaluation on the test split -> one prediction
rendered to PNG -> a summary of where everything went.

The phase config is the seed's Phase 1 (configs/phases/phase1.yaml). To fit a 2-core
machine in about 10 minutes the quickstart overrides only the budget-bound values
(QUICKSTART_OVERRIDES below); pass --set to change any of them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from trainables.entry import add_overrides, module_main

# Budget-bound values only (the rest is configs/phases/phase1.yaml). Batch 16 with 2 threads and a
# learning rate raised to match is the fastest setting on 2 cores (bench/train_throughput.py).
# 16 epochs leave the model underfit (validation loss below training loss), so dropout only slows
# learning here; a larger learning rate without dropout gives lower validation loss (docs/quality.md).
QUICKSTART_OVERRIDES = [
    "training.epochs=16",
    "training.batch_size=16",
    "training.learning_rate=2.0e-3",
    "training.dropout=0.0",
    "scaling.cpus_per_worker=2",
    "validation.generate_examples=64",
    # The last 3 of the 16 epochs without augmentation: lower test loss and higher F1 in every mode
    # (docs/quality.md). The clean epochs come out of the 16, so the budget is unchanged.
    "data.clean_epochs=3",
]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", metavar="DIR")
    p.add_argument("--examples", type=int, default=2000)
    add_overrides(p)


def _step(msg: str) -> float:
    print(f"\n== {msg}", flush=True)
    return time.perf_counter()


def make_data(data: Path, examples: int) -> None:
    """The synthetic dataset, reused when an earlier run made the same one (same generator, size,
    seed and looks: a dataset a user drew into this folder with other settings is made anew)."""
    from layoutray.data.dataset import read_manifest
    from layoutray.data.synth import drawn_as, generator_info, synthesize

    try:
        m = read_manifest(data)
        reuse = m.get("total") == examples and drawn_as(m) == generator_info(seed=0)
    except Exception:
        reuse = False
    if reuse:
        print("   reusing the dataset made by an earlier run (same generator, size and seed)")
        return
    shutil.rmtree(data, ignore_errors=True)
    synthesize(data, examples, seed=0)


def check_and_preview(data: Path, preview: Path) -> bool:
    from layoutray.data.dataset import read_rows
    from layoutray.data.validate import format_report, validate_dataset
    from layoutray.render.sheets import contact_sheet

    report = validate_dataset(data, max_elements=16)
    print(format_report(report))
    if report.get("bad_rows", 0):
        print("error: the synthetic dataset has bad rows; see the report above")
        return False
    contact_sheet(read_rows(data, "train", 16)).save(preview)
    print(f"   wrote {preview}")
    return True


def clear_run(out: Path) -> None:
    """A quickstart run always starts fresh: stale checkpoints would be resumed from."""
    for stale in list(out.glob("checkpoint_*")) + [out / "metrics.jsonl", out / "tensorboard", out / "model"]:
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    (out / "checkpoint_manager_snapshot.json").unlink(missing_ok=True)


def predict_one(model_dir: str, data: Path, out: Path) -> tuple[Path, Path]:
    """One test section through the exported model: JSON of the layout and a PNG of it."""
    from layoutray.data.dataset import read_rows
    from layoutray.data.imaging import decode_png
    from layoutray.model.predictor import load
    from layoutray.render.sheets import side_by_side

    row = read_rows(data, "test", 1)[0]
    (out / "prediction_input.png").write_bytes(row["image"])
    W, H = row["canvas_width"], row["canvas_height"]
    layouts = load(model_dir).predict(row["section_type"], [e["type"] for e in row["elements"]], row["image"],
                                      canvas=(W, H))
    pred_json, pred_png = out / "prediction.json", out / "prediction.png"
    pred_json.write_text(json.dumps({"model": model_dir, "section_type": row["section_type"],
                                     "canvas": {"width": W, "height": H}, "layouts": layouts}, indent=2) + "\n")
    boxes = [[{"type": e["type"], "x": e["x"] / W, "y": e["y"] / H, "w": e["width"] / W, "h": e["height"] / H}
              for e in layout["elements"]] for layout in layouts]
    side_by_side([row["elements"]] + boxes, W, H, background=decode_png(row["image"])).save(pred_png)
    return pred_json, pred_png


def cmd_quickstart(args) -> int:
    from layoutray.eval.evaluate import format_metrics
    from layoutray.eval.preview import write_preview
    from layoutray.model.predictor import load
    from layoutray.training.driver import resolve_config, run_training

    out = Path(args.out).resolve()
    data = out.parent / f"{out.name}-data"
    t_all = t = _step(f"1/5 synthetic sections: {args.examples} examples -> {data}")
    make_data(data, args.examples)
    print(f"   {time.perf_counter() - t:.1f}s")

    _step("2/5 validate and preview")
    out.mkdir(parents=True, exist_ok=True)
    preview = out / "preview.png"
    if not check_and_preview(data, preview):
        return 1

    _step("3/5 Phase 1 training on a local Ray instance (Ray Train + DeepSpeed ZeRO-0, CPU)")
    overrides = QUICKSTART_OVERRIDES + list(args.overrides)
    cfg, why = resolve_config(str(data), "auto", None, overrides)
    print(f"   {cfg.phase}: {why}; overrides: {' '.join(overrides)}")
    clear_run(out)
    summary = run_training(cfg, str(data), out.name, str(out.parent))
    print(f"   trained in {summary['train_seconds']:.0f}s")

    _step("4/5 evaluation on the test split")
    print(format_metrics(summary["test"]))

    _step("5/5 predictions, rendered (truth on the left)")
    pred_json, pred_png = predict_one(summary["model"], data, out)
    sheet = write_preview(load(summary["model"]), data, out / "predictions.png", split="test", count=12)

    m = summary["test"]
    print(f"\n== done in {(time.perf_counter() - t_all) / 60:.1f} min")
    print(f"   dataset        {data}")
    print(f"   preview        {preview}")
    print(f"   run directory  {out}  (checkpoints, metrics.jsonl, tensorboard/)")
    print(f"   model          {summary['model']}  (serve it: configs/serve.yaml)")
    print(f"   test metrics   {out / 'metrics.json'}: F1@0.5 {m['element_f1@0.5']:.3f}, "
          f"mean IoU {m['mean_iou']:.3f}, validity {m['validity']:.3f}")
    print(f"   predictions    {sheet}  (12 test sections: truth | generated)")
    print(f"   prediction     {pred_json} and {pred_png}")
    (out / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "test"},
                                                 indent=2, default=str) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m trainables.quickstart", add_arguments, cmd_quickstart, argv)


if __name__ == "__main__":
    sys.exit(main())
