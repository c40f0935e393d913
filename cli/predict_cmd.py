"""`layoutray predict`: generate layouts with an exported model and write them as JSON (and PNG).

    layoutray predict --model runs/x/model --image wire.png --out layout.json --render layout.png
    layoutray predict --model runs/x/model --section hero --elements heading,paragraph,button \\
        --samples 3 --temperature 0.8 --out layouts.json

The JSON gives boxes in canvas pixels (--canvas WxH, default 1440x800):
    {"model": DIR, "phase": ..., "request": {...}, "canvas": {"width", "height"},
     "layouts": [{"elements": [{"type", "x", "y", "width", "height"}, ...]}, ...]}
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from layoutray.model.tokenizer import Box


def parse_canvas(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
        if w <= 0 or h <= 0:
            raise ValueError
    except ValueError:
        raise ValueError(f"--canvas: expected WIDTHxHEIGHT in pixels, e.g. 1440x800; got {text!r}") from None
    return w, h


def layout_to_pixels(boxes: list[Box], canvas_w: int, canvas_h: int) -> list[dict]:
    return [{"type": b.type, "x": round(b.x * canvas_w, 1), "y": round(b.y * canvas_h, 1),
             "width": round(b.w * canvas_w, 1), "height": round(b.h * canvas_h, 1)} for b in boxes]


def render_layouts(layouts: list[list[Box]], canvas_w: int, canvas_h: int, background, path: str) -> None:
    """Draw every sample with layoutray.render.draw_layout, side by side, into one PNG."""
    from PIL import Image

    from layoutray.render.wireframe import draw_layout  # lazily: only --render needs it

    tiles = [draw_layout([{"type": b.type, "x": b.x, "y": b.y, "w": b.w, "h": b.h} for b in boxes],
                         canvas_w, canvas_h, background=background) for boxes in layouts]
    gap = 8
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1),
                              max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        sheet.paste(t.convert("RGB"), (x, 0))
        x += t.width + gap
    sheet.save(path)


def cmd_predict(args) -> int:
    from layoutray.model.artifact import ArtifactError, load_artifact
    from layoutray.data.imaging import ImageError, decode_png

    try:
        canvas_w, canvas_h = parse_canvas(args.canvas)
        image = None
        if args.image:
            try:
                image = decode_png(Path(args.image).read_bytes())
            except FileNotFoundError:
                raise ValueError(f"--image: no such file {args.image}") from None
            except ImageError as e:
                raise ValueError(f"--image {args.image}: {e}") from None
        elements = [e.strip() for e in args.elements.split(",") if e.strip()] if args.elements else None
        if image is None and args.section is None and not elements:
            raise ValueError("give --image, or --section and/or --elements (or both)")
        predictor = load_artifact(args.model)
        request = {"section_type": args.section, "elements": elements, "image": image}
        layouts = predictor.predict([request], samples=args.samples, temperature=args.temperature,
                                    top_p=args.top_p, seed=args.seed)[0]
    except (ValueError, ArtifactError) as e:
        # Predictor names request fields; on the command line they are flags
        msg = str(e).replace("requests[0].section_type", "--section").replace("requests[0].elements", "--elements")
        print(f"error: {msg}", file=sys.stderr)
        return 2
    out = {
        "model": str(args.model),
        "phase": predictor.cfg.phase,
        "request": {"image": args.image, "section_type": args.section, "elements": elements,
                    "samples": args.samples, "temperature": args.temperature, "top_p": args.top_p,
                    "seed": args.seed},
        "canvas": {"width": canvas_w, "height": canvas_h},
        "layouts": [{"elements": layout_to_pixels(boxes, canvas_w, canvas_h)} for boxes in layouts],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {len(layouts)} layout(s) to {args.out}")
    if args.render:
        render_layouts(layouts, canvas_w, canvas_h, image, args.render)
        print(f"drew {args.render}")
    return 0
