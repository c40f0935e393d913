"""The `layoutray` command. Each subcommand's handler lives in the module that owns the work;
this file only declares arguments and imports a handler when its command runs (so
`layoutray --help` stays fast and `layoutray data ...` never imports torch or Ray)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys


def _handler(path: str):
    def run(args):
        module, fn = path.split(":")
        return getattr(importlib.import_module(module), fn)(args)
    return run


def _add(sub, name: str, handler: str, help: str, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, **kw)
    p.set_defaults(func=_handler(handler))
    return p


def _overrides(p: argparse.ArgumentParser) -> None:
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value by its dotted key, e.g. --set training.epochs=5 (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="layoutray", description="Train, compare and serve web section layout generators on Ray.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    top = parser.add_subparsers(dest="command", metavar="COMMAND")

    # --- config ------------------------------------------------------------------
    cfg = top.add_parser("config", help="inspect phase configs").add_subparsers(dest="sub", metavar="SUB", required=True)
    p = _add(cfg, "show", "cli.main:cmd_config_show",
             "print a phase's resolved config, or the phase a dataset gets and why")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--phase", choices=["phase1", "phase2", "phase3", "phase4"])
    g.add_argument("--dataset", metavar="DIR", help="choose the phase from this dataset's size")
    g.add_argument("--config", metavar="YAML", help="a config file of your own")
    _overrides(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    # --- data --------------------------------------------------------------------
    data = top.add_parser("data", help="make, check and look at datasets").add_subparsers(
        dest="sub", metavar="SUB", required=True)
    p = _add(data, "synth", "layoutray.data.synth:cmd_synth", "generate realistic synthetic web sections")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--examples", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-rows", type=int, default=500, metavar="R")
    p.add_argument("--max-elements", type=int, default=16, help="element cap per section (Phase 1's is 16)")
    p = _add(data, "validate", "layoutray.data.validate:cmd_validate",
             "check schema, value ranges, images, element cap and checksums")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--max-elements", type=int, default=None, help="element cap (default: the largest phase's)")
    p.add_argument("--max-bad", type=float, default=0.0,
                   help="bad rows allowed before a non-zero exit: a count (>= 1) or a fraction (< 1)")
    p.add_argument("--json", action="store_true")
    p = _add(data, "export-jsonl", "layoutray.data.validate:cmd_export_jsonl", "write one JSON object per example")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--no-images", action="store_true", help="leave out the base64 PNG")
    p = _add(data, "preview", "layoutray.render.wireframe:cmd_preview", "draw a contact sheet of examples with their boxes")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--count", type=int, default=16)

    # --- training and models -----------------------------------------------------
    p = _add(top, "train", "layoutray.training.driver:cmd_train", "train a layout model on Ray Train + DeepSpeed")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--phase", default="auto", choices=["auto", "phase1", "phase2", "phase3", "phase4"])
    p.add_argument("--config", metavar="YAML", help="a config file instead of configs/phases/<phase>.yaml")
    _overrides(p)
    p.add_argument("--name", help="run name (default: <phase>-<timestamp>)")
    p.add_argument("--output", default="runs", metavar="DIR", help="where run directories go")
    p.add_argument("--resume", action="store_true", help="continue the run called --name")
    p.add_argument("--init-from", metavar="MODEL_DIR", help="start from an exported (or upgraded) model")
    p.add_argument("--address", default=None, help="Ray address (default: start or join a local instance)")

    p = _add(top, "evaluate", "layoutray.eval.evaluate:cmd_evaluate", "score a model on a dataset split")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--split", default="test", choices=["train", "val", "test"])
    p.add_argument("--limit", type=int, default=0, help="score at most this many examples (0: all)")
    p.add_argument("--json", action="store_true")

    p = _add(top, "predict", "cli.predict_cmd:cmd_predict", "generate layouts with a model")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--image", metavar="PNG", help="a wireframe of the section")
    p.add_argument("--section", metavar="TYPE", help="section type, e.g. hero")
    p.add_argument("--elements", metavar="A,B,C", help="element types to place, e.g. heading,paragraph,button")
    p.add_argument("--samples", type=int, default=1, metavar="K")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", default="1440x800", metavar="WxH", help="canvas size in pixels for the output")
    p.add_argument("--out", required=True, metavar="JSON")
    p.add_argument("--render", metavar="PNG", help="also draw the layout")

    p = _add(top, "upgrade", "layoutray.model.upgrade:cmd_upgrade", "grow a model into the next phase, carrying its weights")
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--to", required=True, choices=["phase2", "phase3", "phase4"])
    p.add_argument("--out", required=True, metavar="DIR")

    # --- schedules and sweeps ----------------------------------------------------
    sch = top.add_parser("schedule", help="look at training schedules").add_subparsers(dest="sub", metavar="SUB", required=True)
    p = _add(sch, "show", "layoutray.schedules:cmd_schedule_show", "print or plot a schedule's per-step values")
    p.add_argument("--lr", required=True, metavar="SCHEDULE")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--base-lr", type=float, required=True)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--batch", default="constant", choices=["constant", "phi"])
    p.add_argument("--base-batch", type=int, default=4)
    p.add_argument("--max-batch", type=int, default=0)
    p.add_argument("--every", type=int, default=0, help="print every N-th step (default: about 20 rows)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="PNG")

    p = _add(top, "sweep", "trainables.sweep:cmd_sweep", "compare schedules with a Ray Tune sweep")
    p.add_argument("--config", required=True, metavar="YAML")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--full-budget", action="store_true", help="no early stopping: every trial runs to the end")

    # --- serving -----------------------------------------------------------------
    ro = top.add_parser("rollout", help="canary rollout of a new model version").add_subparsers(
        dest="sub", metavar="SUB", required=True)
    p = _add(ro, "start", "serving.rollout:cmd_start", "start a canary rollout")
    p.add_argument("--canary", required=True, metavar="MODEL_DIR")
    p.add_argument("--steps", default="10,25,50,100")
    p.add_argument("--interval", type=float, default=60.0, metavar="SECONDS")
    p.add_argument("--min-requests", type=int, default=50)
    p.add_argument("--max-error-rate", type=float, default=0.05)
    p.add_argument("--max-p95-ms", type=float, default=2000.0)
    for name, help_ in (("status", "show the rollout state and its decisions"), ("pause", "hold the current step"),
                        ("resume", "continue a paused rollout"), ("promote", "make the canary the stable version"),
                        ("rollback", "send all traffic back to the stable version")):
        p = _add(ro, name, f"serving.rollout:cmd_{name}", help_)
    for p in ro.choices.values():
        p.add_argument("--url", default="http://127.0.0.1:8000", help="the Serve HTTP address")
        p.add_argument("--json", action="store_true")

    # --- operations --------------------------------------------------------------
    p = _add(top, "plan", "layoutray.plan:cmd_plan", "memory, step time and cost plan for a phase on GPUs")
    p.add_argument("--phase", default="phase4", choices=["phase1", "phase2", "phase3", "phase4"])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu", default="a100-80gb", choices=["a100-40gb", "a100-80gb", "h100-80gb"])
    p.add_argument("--price-per-gpu-hour", type=float, default=None)
    p.add_argument("--examples", type=int, default=15000)
    p.add_argument("--json", action="store_true")

    p = _add(top, "quickstart", "trainables.quickstart:cmd_quickstart",
             "the main job: synthetic data, Phase 1 training, evaluation and a prediction")
    p.add_argument("--out", default="runs/quickstart", metavar="DIR")
    p.add_argument("--examples", type=int, default=2000)
    _overrides(p)
    return parser


def cmd_config_show(args) -> int:
    from layoutray import config as C

    choice = None
    if args.dataset:
        from layoutray.data.dataset import count_examples
        counts = count_examples(args.dataset)
        choice = C.choose_phase(sum(counts.values()))
        cfg = C.load_config(phase=choice.phase, overrides=args.overrides)
    else:
        cfg = C.load_config(args.config, overrides=args.overrides, phase=args.phase)
    try:
        from layoutray.model.network import count_parameters
        params = count_parameters(cfg)
    except ImportError:
        params = None
    if args.json:
        out = {"phase": cfg.phase, "parameters": params, "config": cfg.to_dict()}
        if choice:
            out.update(examples=choice.examples, reason=choice.reason, next_phase=choice.next_phase,
                       examples_to_next_phase=choice.examples_to_next)
        print(json.dumps(out, indent=2))
        return 0
    if choice:
        print(f"phase: {choice.phase}  ({choice.reason})")
        if choice.next_phase:
            print(f"next:  {choice.next_phase} after {choice.examples_to_next:,} more examples")
        else:
            print("next:  none; this is the largest phase")
    else:
        print(f"phase: {cfg.phase}")
    if params is not None:
        print(f"parameters: {params:,}")
    print("---")
    print(C.dump_yaml(cfg), end="")
    return 0


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
    from layoutray.config import ConfigError
    from layoutray.data.dataset import DatasetError
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `layoutray ... | head` closed the pipe: not an error
        sys.stderr.close()
        return 0
    except Exception as e:
        # Errors whose message already names the file, key or field are printed without a
        # traceback. ArtifactError's module imports torch, so it is looked up only if loaded.
        artifact = sys.modules.get("layoutray.model.artifact")
        if not isinstance(e, (ConfigError, DatasetError) + ((artifact.ArtifactError,) if artifact else ())):
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
