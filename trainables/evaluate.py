"""`python -m trainables.evaluate ...` (for `ray job submit`) and `layoutray evaluate ...`: score
a model on a dataset split.

    layoutray evaluate --model runs/x/model --data sections --split test [--json] [--preview sheet.png]
"""

from __future__ import annotations

import argparse
import json

from trainables.entry import module_main


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=0, help="score at most this many examples (0: all)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--augmented", action="store_true",
                   help="score with the training augmentations applied (robustness), not the clean split")
    p.add_argument("--preview", metavar="PNG",
                   help="also draw true and generated layouts side by side for a spread of section types")
    p.add_argument("--preview-count", type=int, default=12, metavar="N")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from layoutray.eval.evaluate import evaluate_artifact, format_metrics

    m = evaluate_artifact(args.model, args.data, args.split, args.limit, augmented=args.augmented)
    if args.preview:
        from layoutray.eval.preview import write_preview
        from layoutray.model.predictor import load

        write_preview(load(args.model), args.data, args.preview, split=args.split, count=args.preview_count)
        m["preview"] = str(args.preview)
    if args.json:
        print(json.dumps(m, indent=2))
    else:
        print(f"{args.model} on {args.data}/{args.split}")
        print(format_metrics(m))
        if args.preview:
            print(f"preview: {args.preview}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m trainables.evaluate", add_arguments, cmd_evaluate, argv)


if __name__ == "__main__":
    raise SystemExit(main())
