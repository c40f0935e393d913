"""`python -m trainables.train ...` (what `ray job submit` runs) and `layoutray train ...`.

    layoutray train --data sections --phase auto
    layoutray train --data synth:1 --set data.synth_per_epoch=4000     # fresh sections every epoch
    layoutray train --data sections --mix synth=0.5                      # half of each epoch fresh
    layoutray train --recipe configs/recipes/quality.yaml [--resume]     # multi-stage
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python -m trainables.train --data /mnt/data/sections --output /mnt/runs

The work is `layoutray.training.driver.run_training`; this module only reads arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
import time

from trainables.entry import add_overrides, add_tracking, module_main

PHASE_CHOICES = ["auto", "phase1", "phase2", "phase3", "phase4"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="DIR|URI|synth[:SEED]",
                   help="a dataset directory or URI (s3://bucket/sections, gs://...), or synth / synth:SEED for fresh synthetic sections every epoch "
                        "(default: data.source of the config or the recipe's data)")
    p.add_argument("--mix", metavar="synth=W", help="make a share W of each epoch fresh synthetic sections")
    p.add_argument("--recipe", metavar="YAML", help="run a multi-stage recipe (configs/recipes/)")
    p.add_argument("--phase", default="auto", choices=PHASE_CHOICES)
    p.add_argument("--config", metavar="YAML", help="a config file instead of configs/phases/<phase>.yaml")
    add_overrides(p)
    add_tracking(p)
    p.add_argument("--name", help="run name (default: <phase>-<timestamp>)")
    p.add_argument("--output", default="runs", metavar="DIR|URI",
                   help="where run directories go: a directory or a URI such as s3://bucket/runs (checkpoints, "
                        "history and the model are written there)")
    p.add_argument("--resume", action="store_true", help="continue the run called --name")
    p.add_argument("--init-from", metavar="MODEL_DIR|URI", help="start from an exported (or upgraded) model")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: RAY_ADDRESS if set, else a new local instance of this run's own)")


def mix_override(text: str | None) -> list[str]:
    """`--mix synth=W` as the config override it stands for."""
    from layoutray.config import ConfigError

    if not text:
        return []
    source, _, weight = text.partition("=")
    try:
        if source != "synth":
            raise ValueError
        return [f"data.synth_mix={float(weight)}"]
    except ValueError:
        raise ConfigError("--mix", f"expected synth=W with W in [0, 0.95], e.g. synth=0.5; got {text!r}") from None


def cmd_train(args: argparse.Namespace) -> int:
    from layoutray.config import ConfigError

    from layoutray.tracking import tracking_overrides

    overrides = [*args.overrides, *mix_override(args.mix), *tracking_overrides(args.tracking)]
    if args.resume and not args.name and not args.recipe:
        raise ConfigError("--name", "--resume needs the --name of the run to continue")
    if args.recipe:
        return _train_recipe(args, overrides)
    return _train_once(args, overrides)


def _train_once(args: argparse.Namespace, overrides: list[str]) -> int:
    from layoutray import storage
    from layoutray.eval.evaluate import format_metrics
    from layoutray.training.driver import resolve_config, run_training

    cfg, why = resolve_config(args.data, args.phase, args.config, overrides)
    name = args.name or f"{cfg.phase}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"[layoutray] {cfg.phase} ({why}); run '{name}' in {storage.absolute(args.output)}", flush=True)
    summary = run_training(cfg, args.data or cfg.data.source, name, args.output, resume=args.resume,
                           init_from=args.init_from, address=args.address)
    if "test" in summary:
        print("[layoutray] test split:\n" + format_metrics(summary["test"]))
    print(f"[layoutray] model: {summary['model']}")
    if summary.get("tracking"):
        t = summary["tracking"]
        print(f"[layoutray] MLflow run {t['run_id']} at {t['uri']}"
              + (f"; registered as {t['registered']['ref']}" if t.get("registered") else ""))
    print(f"[layoutray] metrics history: {summary['run_dir']}/metrics.jsonl; "
          f"TensorBoard: {summary['run_dir']}/tensorboard")
    return 0


def _train_recipe(args: argparse.Namespace, overrides: list[str]) -> int:
    from layoutray import storage
    from layoutray.config import ConfigError
    from layoutray.eval.evaluate import format_metrics
    from layoutray.training.recipe import load_recipe, run_recipe

    if args.config or args.phase != "auto":
        raise ConfigError("--recipe", "a recipe sets the phase and config of each stage; drop --config / --phase")
    recipe = load_recipe(args.recipe, overrides)
    name = args.name or recipe.name
    print(f"[layoutray] recipe {args.recipe}: {len(recipe.stages)} stages; run '{name}' in "
          f"{storage.absolute(args.output)}", flush=True)
    state = run_recipe(recipe, data=args.data, name=name, output=args.output, resume=args.resume,
                       extra=overrides, address=args.address, init_from=args.init_from,
                       progress=lambda s: print(s, flush=True))
    last = state["stages"][recipe.stage_dir_name(len(recipe.stages) - 1)]
    if last.get("test"):
        print("[layoutray] test split:\n" + format_metrics(last["test"]))
    print(f"[layoutray] model: {state['model']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m trainables.train", add_arguments, cmd_train, argv)


if __name__ == "__main__":
    sys.exit(main())
