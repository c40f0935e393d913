"""`layoutray config show`, `layoutray schedule show`, `layoutray plan`: look before you spend compute."""

from __future__ import annotations

import json
import math

PHASES = ["phase1", "phase2", "phase3", "phase4"]


def add_parser(top, add_overrides) -> None:
    cfg = top.add_parser("config", help="inspect phase configs").add_subparsers(dest="sub", metavar="SUB", required=True)
    p = cfg.add_parser("show", help="print a phase's resolved config, or the phase a dataset gets and why")
    p.set_defaults(func=cmd_config_show)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--phase", choices=PHASES)
    g.add_argument("--dataset", metavar="DIR|URI",
                   help="choose the phase from this dataset's size (a directory or an s3://, gs:// URI)")
    g.add_argument("--config", metavar="YAML", help="a config file of your own")
    add_overrides(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    sch = top.add_parser("schedule", help="look at training schedules").add_subparsers(dest="sub", metavar="SUB",
                                                                                       required=True)
    p = sch.add_parser("show", help="print or plot a schedule's per-step values")
    p.set_defaults(func=cmd_schedule_show)
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

    p = top.add_parser("plan", help="memory, step time and cost plan for a phase on GPUs")
    p.set_defaults(func=cmd_plan)
    p.add_argument("--phase", default="phase4", choices=PHASES)
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--gpu", default="a100-80gb", choices=["a100-40gb", "a100-80gb", "h100-80gb"])
    p.add_argument("--price-per-gpu-hour", type=float, default=None)
    p.add_argument("--examples", type=int, default=15000)
    add_overrides(p)  # --set key=value: plan a modified config (e.g. training.activation_checkpointing=false)
    p.add_argument("--json", action="store_true")


def cmd_config_show(args) -> int:
    from layoutray import config as C
    from layoutray.data.dataset import count_examples

    choice = None
    if args.dataset:
        choice = C.choose_phase(sum(count_examples(args.dataset).values()))
        cfg = C.load_config(phase=choice.phase, overrides=args.overrides)
    else:
        cfg = C.load_config(args.config, overrides=args.overrides, phase=args.phase)
    try:
        from layoutray.model.network import count_parameters
        params = count_parameters(cfg)
    except ImportError:  # a data-only install without torch
        params = None
    if args.json:
        out = {"phase": cfg.phase, "parameters": params, "config": cfg.to_dict()}
        if choice:
            out.update(examples=choice.examples, reason=choice.reason, next_phase=choice.next_phase,
                       examples_to_next_phase=choice.examples_to_next)
        print(json.dumps(out, indent=2))
        return 0
    print(_phase_lines(cfg, choice, params) + "\n---\n" + C.dump_yaml(cfg), end="")
    return 0


def _phase_lines(cfg, choice, params) -> str:
    lines = [f"phase: {choice.phase}  ({choice.reason})" if choice else f"phase: {cfg.phase}"]
    if choice:
        lines.append(f"next:  {choice.next_phase} after {choice.examples_to_next:,} more examples"
                     if choice.next_phase else "next:  none; this is the largest phase")
    if params is not None:
        lines.append(f"parameters: {params:,}")
    return "\n".join(lines)


def cmd_schedule_show(args) -> int:
    from layoutray.config import ConfigError
    from layoutray.schedules import plot_rows, schedule_rows

    if args.steps < 1:
        raise ConfigError("--steps", f"must be >= 1; got {args.steps}")
    rows = schedule_rows(args.lr, args.steps, args.base_lr, args.warmup, args.batch, args.base_batch,
                         args.max_batch)
    if args.plot:
        plot_rows({args.lr: rows}, args.plot, title=f"{args.lr}, base lr {args.base_lr:g}, batch {args.batch}")
        print(f"wrote {args.plot}")
    if args.json:
        print(json.dumps({"lr_schedule": args.lr, "steps": args.steps, "base_lr": args.base_lr,
                          "warmup": args.warmup, "batch": args.batch, "rows": rows}))
        return 0
    if args.plot:
        return 0
    every = args.every if args.every > 0 else max(1, math.ceil(args.steps / 20))
    shown = [r for r in rows if r["step"] % every == 0]
    if shown[-1] is not rows[-1]:
        shown.append(rows[-1])
    print(f"{'step':>8}  {'lr':>12}  {'batch':>6}  phase")
    for r in shown:
        print(f"{r['step']:>8}  {r['lr']:>12.6g}  {r['batch_size']:>6}  {r['phase']}")
    return 0


def cmd_plan(args) -> int:
    from layoutray.config import ConfigError
    from layoutray.plan import format_plan, make_plan

    try:
        plan = make_plan(phase=args.phase, gpus=args.gpus, gpu=args.gpu,
                         price_per_gpu_hour=args.price_per_gpu_hour, examples=args.examples,
                         overrides=args.overrides)
    except ValueError as e:
        if isinstance(e, ConfigError):
            raise
        raise ConfigError("plan", str(e)) from None
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))
    return 0
