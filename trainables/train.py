"""`python -m trainables.train ...` (what `ray job submit` runs) and `layoutray train ...`.

    layoutray train --data sections --phase auto
    ray job submit --working-dir . --runtime-env cluster/runtime_env.yaml -- \
        python -m trainables.train --data /mnt/data/sections --output /mnt/runs

The work is `layoutray.training.driver.run_training`; this module only reads arguments and prints.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from trainables.entry import add_overrides, module_main

PHASE_CHOICES = ["auto", "phase1", "phase2", "phase3", "phase4"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--phase", default="auto", choices=PHASE_CHOICES)
    p.add_argument("--config", metavar="YAML", help="a config file instead of configs/phases/<phase>.yaml")
    add_overrides(p)
    p.add_argument("--name", help="run name (default: <phase>-<timestamp>)")
    p.add_argument("--output", default="runs", metavar="DIR", help="where run directories go")
    p.add_argument("--resume", action="store_true", help="continue the run called --name")
    p.add_argument("--init-from", metavar="MODEL_DIR", help="start from an exported (or upgraded) model")
    p.add_argument("--address", default=None,
                   help="Ray cluster to join (default: RAY_ADDRESS if set, else a new local instance of this run's own)")


def cmd_train(args: argparse.Namespace) -> int:
    from layoutray.config import ConfigError
    from layoutray.eval.evaluate import format_metrics
    from layoutray.training.driver import resolve_config, run_training

    cfg, why = resolve_config(args.data, args.phase, args.config, args.overrides)
    if args.resume and not args.name:
        raise ConfigError("--name", "--resume needs the --name of the run to continue")
    name = args.name or f"{cfg.phase}-{time.strftime('%Y%m%d-%H%M%S')}"
    print(f"[layoutray] {cfg.phase} ({why}); run '{name}' in {Path(args.output).resolve()}", flush=True)
    summary = run_training(cfg, args.data, name, args.output, resume=args.resume,
                           init_from=args.init_from, address=args.address)
    if "test" in summary:
        print("[layoutray] test split:\n" + format_metrics(summary["test"]))
    print(f"[layoutray] model: {summary['model']}")
    print(f"[layoutray] metrics history: {summary['run_dir']}/metrics.jsonl; "
          f"TensorBoard: {summary['run_dir']}/tensorboard")
    return 0


def main(argv: list[str] | None = None) -> int:
    return module_main("python -m trainables.train", add_arguments, cmd_train, argv)


if __name__ == "__main__":
    sys.exit(main())
