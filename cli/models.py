"""`layoutray predict`, `layoutray upgrade` and `layoutray model show`: use, grow and inspect exported models."""

from __future__ import annotations

import json
from pathlib import Path

from layoutray.config import ConfigError


def add_parser(top) -> None:
    p = top.add_parser("predict", help="generate layouts with a model", description="generate layouts with a model")
    p.set_defaults(func=cmd_predict)
    p.add_argument("--model", required=True, metavar="DIR|URI", help="a model directory or s3://, gs:// URI")
    p.add_argument("--image", metavar="PNG", help="a wireframe or screenshot of the section")
    p.add_argument("--section", metavar="TYPE", help="section type, e.g. hero")
    p.add_argument("--elements", metavar="A,B,C", help="element types to place, e.g. heading,paragraph,button")
    p.add_argument("--samples", type=int, default=1, metavar="K")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", default="1440x800", metavar="WxH", help="canvas size in pixels for the output")
    p.add_argument("--steps", type=int, metavar="K",
                   help="diffusion models: sampling steps K <= model.diffusion_steps (default: all of them)")
    p.add_argument("--fixed", metavar="JSON",
                   help="complete a partial layout (diffusion models): a JSON file, or inline JSON, holding a list "
                        "of boxes {\"type\", \"x\", \"y\", \"width\", \"height\"} in canvas pixels that stay as given")
    p.add_argument("--constraints", choices=["off", "basic", "full", "advanced"],
                   help="aesthetic constraint level (default: the model's model.aesthetic_constraints)")
    p.add_argument("--out", required=True, metavar="JSON")
    p.add_argument("--render", metavar="PNG", help="also draw the layouts, side by side")

    p = top.add_parser("upgrade", help="grow a model into a later phase, keeping what it computes",
                       description="grow a model into a later phase, keeping what it computes (docs/upgrade.md)")
    p.set_defaults(func=cmd_upgrade)
    p.add_argument("--model", required=True, metavar="DIR|URI", help="a model directory or s3://, gs:// URI")
    p.add_argument("--to", required=True, choices=["phase2", "phase3", "phase4"])
    p.add_argument("--out", required=True, metavar="DIR|URI")
    p.add_argument("--data", metavar="DIR", help="dataset whose val split both models are measured on "
                                                 "(default: a seeded synthetic sample)")
    p.add_argument("--force", action="store_true", help="write the grown model even if its loss rose "
                                                         "beyond the tolerance")
    p.add_argument("--noise", type=float, default=0.0, metavar="X",
                   help="symmetry-breaking noise on duplicated units, relative to each tensor's std (default 0)")
    p.add_argument("--vision", choices=["parent", "phase"], default="parent",
                   help="patch and image size of the grown model: the parent's (exact, the default) or the "
                        "phase's (vision tokens resampled: the loss of a model that reads images rises)")

    sub = top.add_parser("model", help="inspect an exported model").add_subparsers(dest="sub", metavar="SUB",
                                                                                   required=True)
    p = sub.add_parser("show", help="what a model is and what made it (data, config, commit, parent, run)",
                       description="what a model is and what made it: its meta.json and lineage")
    p.set_defaults(func=cmd_model_show)
    p.add_argument("model", metavar="DIR|URI|models:/NAME@ALIAS")
    p.add_argument("--json", action="store_true", help="print meta.json as it is")
    p.add_argument("--tracking-uri", default="", metavar="URI",
                   help="the MLflow server of a models:/ reference (default: MLFLOW_TRACKING_URI)")


def parse_canvas(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise ConfigError("--canvas", f"expected WIDTHxHEIGHT in pixels, e.g. 1440x800; got {text!r}") from None
    return w, h


# The validator names request fields; on the command line they are flags.
_FLAGS = {"section_type": "--section", "elements": "--elements", "image": "--image", "samples": "--samples",
          "temperature": "--temperature", "top_p": "--top-p", "seed": "--seed", "canvas": "--canvas",
          "steps": "--steps", "fixed": "--fixed", "constraints": "--constraints"}


def _as_flag(field: str) -> str:
    head = field.split("[")[0].split(".")[0]
    return _FLAGS.get(head, head) + field[len(head):]


def parse_fixed(text: str | None) -> list | None:
    """--fixed: a JSON file's path or the JSON itself (a list of boxes); the validator checks the boxes."""
    if text is None:
        return None
    source = Path(text).read_text() if not text.lstrip().startswith("[") and Path(text).is_file() else text
    try:
        value = json.loads(source)
    except json.JSONDecodeError as e:
        raise ConfigError("--fixed", f"not a JSON list of boxes nor a file holding one ({e})") from None
    if not isinstance(value, list):
        raise ConfigError("--fixed", f"must be a JSON list of boxes; got {type(value).__name__}")
    return value


def cmd_predict(args) -> int:
    from layoutray.model.predictor import load
    from layoutray.model.request import ApiError

    canvas = parse_canvas(args.canvas)
    image = None
    if args.image:
        if not Path(args.image).is_file():
            raise ConfigError("--image", f"no such file {args.image}")
        image = Path(args.image).read_bytes()
    elements = [e.strip() for e in args.elements.split(",") if e.strip()] if args.elements else None
    fixed = parse_fixed(args.fixed)
    predictor = load(args.model)
    try:
        layouts = predictor.predict(args.section, elements, image, samples=args.samples, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed, canvas=canvas, steps=args.steps, fixed=fixed,
                                    constraints=args.constraints)
    except ApiError as e:
        raise ConfigError(_as_flag(e.field), e.message) from None
    out = {"model": str(args.model), "phase": predictor.cfg.phase,
           "request": {"image": args.image, "section_type": args.section, "elements": elements,
                       "samples": args.samples, "temperature": args.temperature, "top_p": args.top_p,
                       "seed": args.seed, "steps": args.steps, "fixed": fixed, "constraints": args.constraints},
           "canvas": {"width": canvas[0], "height": canvas[1]}, "layouts": layouts}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {len(layouts)} layout(s) to {args.out}")
    if args.render:
        _render(layouts, canvas, image, args.render)
        print(f"drew {args.render}")
    return 0


def _render(layouts: list[dict], canvas: tuple[int, int], image: bytes | None, path: str) -> None:
    from layoutray.data.imaging import decode_png
    from layoutray.render.sheets import side_by_side

    W, H = canvas
    normalised = [[{"type": e["type"], "x": e["x"] / W, "y": e["y"] / H, "w": e["width"] / W, "h": e["height"] / H}
                   for e in layout["elements"]] for layout in layouts]
    side_by_side(normalised, W, H, background=decode_png(image) if image else None).save(path)


def cmd_upgrade(args) -> int:
    from layoutray.model.upgrade import GrowthError, UpgradeRefused, upgrade_artifact

    if not 0.0 <= args.noise <= 1.0:
        raise ConfigError("--noise", f"expected a number in [0, 1]; got {args.noise}")
    try:
        res = upgrade_artifact(args.model, args.to, args.out, data=args.data, force=args.force, noise=args.noise,
                               vision=args.vision)
    except GrowthError as e:
        raise ConfigError("--to", str(e)) from None
    except UpgradeRefused as e:
        raise ConfigError("--force", f"{e} (--force writes it anyway)") from None
    report, val, out = res["report"], res["validation"], res["out"]
    print(f"upgraded {res['old_phase']} -> {res['new_phase']}: {report['old_parameters']:,} -> "
          f"{report['parameters']:,} parameters, every old weight carried function-preservingly "
          f"({report['units']} heads and units)")
    print(f"layers (each stack): old -> new {report['layer_maps']}; new layers start as identity blocks")
    for note in report["approximations"]:
        print(f"  approximate: {note}")
    print(f"validation loss on {val['data']} ({val['old']['examples']} sections): "
          f"{val['old']['both']:.5f} -> {val['new']['both']:.5f} ({100 * val['relative_change']:+.4f}%, "
          f"allowed {100 * res['tolerance']:.3g}%)")
    keep = "".join(f" --set {kv}" for kv in res["train_settings"])
    print(f"wrote {out}  (train it with: layoutray train --phase {res['new_phase']}{keep} --init-from {out})")
    return 0


def cmd_model_show(args) -> int:
    from layoutray.lineage import format_meta, read_meta
    from layoutray.tracking import is_model_ref, registry_cache_dir, resolve_model_ref

    where = args.model
    if is_model_ref(where):
        where, info = resolve_model_ref(where, registry_cache_dir(), args.tracking_uri)
        if not args.json:
            print(f"registry:  {args.model} -> version {info['version']} (run {info['run_id']})", flush=True)
    meta = read_meta(where)
    print(json.dumps(meta, indent=2) if args.json else "\n".join(format_meta(args.model, meta)))
    return 0
