"""`python -m trainables.evaluate ...` (for `ray job submit`) and `layoutray evaluate ...`: score
a model on a dataset split.

    layoutray evaluate --model runs/x/model --data sections --split test [--json] [--preview sheet.png]
    layoutray evaluate --model models:/layoutray@champion --data sections --tracking mlflow:http://127.0.0.1:5000
"""

from __future__ import annotations

import argparse
import json

from trainables.entry import add_tracking, module_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR|URI",
                   help="a model directory, s3://, gs:// URI, or models:/NAME@ALIAS | models:/NAME/VERSION (MLflow)")
    p.add_argument("--data", required=True, metavar="DIR|URI", help="a dataset directory or s3://, gs:// URI")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=0, help="score at most this many examples (0: all)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--augmented", action="store_true",
                   help="score with the training augmentations applied (robustness), not the clean split")
    p.add_argument("--preview", metavar="PNG",
                   help="also draw true and generated layouts side by side for a spread of section types")
    p.add_argument("--preview-count", type=int, default=12, metavar="N")
    p.add_argument("--constraints", choices=["off", "basic", "full", "advanced"],
                   help="aesthetic constraint level to generate at (default: the model's model.aesthetic_constraints)")
    p.add_argument("--steps", type=int, metavar="K",
                   help="diffusion models: sampling steps K <= model.diffusion_steps (default: all of them)")
    add_tracking(p)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from layoutray.eval.evaluate import evaluate_artifact, format_metrics

    tracking, model = _tracked_model(args)
    m = evaluate_artifact(model, args.data, args.split, args.limit, augmented=args.augmented, steps=args.steps,
                          constraints=args.constraints)
    if args.preview:
        from layoutray.eval.preview import write_preview
        from layoutray.model.predictor import load

        write_preview(load(model), args.data, args.preview, split=args.split, count=args.preview_count)
        m["preview"] = str(args.preview)
    if tracking.backend == "mlflow":
        from layoutray.tracking import log_evaluation

        m["tracking"] = log_evaluation(tracking, args.model, args.data, args.split, m,
                                       {"limit": args.limit, "augmented": args.augmented, "steps": args.steps},
                                       model_dir=model)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        decoder = m["decoder"] + (f", {m['steps']} steps" if m.get("steps") else "")
        print(f"{args.model} ({decoder}) on {args.data}/{args.split}")
        print(format_metrics(m))
        if args.preview:
            print(f"preview: {args.preview}")
    return 0


def _tracked_model(args: argparse.Namespace):
    """(TrackingConfig of --tracking, the model to load): a registry reference is fetched first,
    and the tracking server is checked before minutes of scoring, not after."""
    from layoutray.tracking import (check_reachable, is_model_ref, registry_cache_dir, resolve_model_ref,
                                    server_uri, tracking_from_flag)

    tracking = tracking_from_flag(args.tracking)
    if tracking.backend == "mlflow":
        check_reachable(server_uri(tracking.uri))
    if is_model_ref(args.model):
        return tracking, resolve_model_ref(args.model, registry_cache_dir(), tracking.uri)[0]
    return tracking, args.model


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m trainables.evaluate", add_arguments, cmd_evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
