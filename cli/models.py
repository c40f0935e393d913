"""`layoutray predict` and `layoutray upgrade`: use and grow exported models."""

from __future__ import annotations

import json
from pathlib import Path

from layoutray.config import ConfigError


def add_parser(top) -> None:
    p = top.add_parser("predict", help="generate layouts with a model", description="generate layouts with a model")
    p.set_defaults(func=cmd_predict)
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--image", metavar="PNG", help="a wireframe or screenshot of the section")
    p.add_argument("--section", metavar="TYPE", help="section type, e.g. hero")
    p.add_argument("--elements", metavar="A,B,C", help="element types to place, e.g. heading,paragraph,button")
    p.add_argument("--samples", type=int, default=1, metavar="K")
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--canvas", default="1440x800", metavar="WxH", help="canvas size in pixels for the output")
    p.add_argument("--out", required=True, metavar="JSON")
    p.add_argument("--render", metavar="PNG", help="also draw the layouts, side by side")

    p = top.add_parser("upgrade", help="grow a model into a later phase, carrying its weights",
                       description="grow a model into a later phase, carrying its weights")
    p.set_defaults(func=cmd_upgrade)
    p.add_argument("--model", required=True, metavar="DIR")
    p.add_argument("--to", required=True, choices=["phase2", "phase3", "phase4"])
    p.add_argument("--out", required=True, metavar="DIR")


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
          "temperature": "--temperature", "top_p": "--top-p", "seed": "--seed", "canvas": "--canvas"}


def _as_flag(field: str) -> str:
    head = field.split("[")[0].split(".")[0]
    return _FLAGS.get(head, head) + field[len(head):]


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
    predictor = load(args.model)
    try:
        layouts = predictor.predict(args.section, elements, image, samples=args.samples, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed, canvas=canvas)
    except ApiError as e:
        raise ConfigError(_as_flag(e.field), e.message) from None
    out = {"model": str(args.model), "phase": predictor.cfg.phase,
           "request": {"image": args.image, "section_type": args.section, "elements": elements,
                       "samples": args.samples, "temperature": args.temperature, "top_p": args.top_p,
                       "seed": args.seed},
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
    from layoutray.model.upgrade import upgrade_artifact

    res = upgrade_artifact(args.model, args.to, args.out)
    report, out = res["report"], res["out"]
    kept = report["carried"] + report["resampled"]
    print(f"upgraded {res['old_phase']} -> {res['new_phase']}: carried {kept:,} of {report['total']:,} "
          f"parameters ({100 * report['carried_fraction']:.1f}%; {report['resampled']:,} resampled); "
          f"the old model had {report['old_total']:,}")
    print(f"layers (each stack): old -> new {report['layer_map']['dec_blocks']}; new layers start "
          f"as identity blocks")
    for note in report["notes"]:
        print(f"  {note}")
    print(f"wrote {out}  (train it with: layoutray train --phase {res['new_phase']} --init-from {out})")
    return 0
