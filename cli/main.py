"""The `layoutray` command: argument parsing and printing only.

Each subcommand's handler is imported here directly; handlers import the library (and torch or
Ray) only when their command runs, so `layoutray --help` stays fast and `layoutray data ...`
never imports torch or Ray. Imports go one way: cli -> trainables / serving -> layoutray.
"""

from __future__ import annotations

import argparse
import sys

from cli import data, models, ops, rollout
from trainables import evaluate, quickstart, sweep, train
from trainables.entry import add_overrides, run_command


def _command(top, name: str, help: str, module) -> None:
    """A subcommand whose arguments and handler live in a trainables module (shared with its
    `python -m trainables.<name>` entry point)."""
    p = top.add_parser(name, help=help, description=help)
    module.add_arguments(p)
    p.set_defaults(func=getattr(module, f"cmd_{name}"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layoutray", description="Train, compare and serve web section layout generators on Ray.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")
    ops.add_parser(top, add_overrides)
    data.add_parser(top)
    _command(top, "train", "train a layout model on Ray Train + DeepSpeed", train)
    _command(top, "evaluate", "score a model on a dataset split", evaluate)
    models.add_parser(top)
    _command(top, "sweep", "compare schedules with a Ray Tune sweep", sweep)
    rollout.add_parser(top)
    _command(top, "quickstart", "the main job: synthetic data, Phase 1 training, evaluation and a prediction",
             quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from layoutray import __version__
        print(__version__)
        return 0
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return run_command(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
