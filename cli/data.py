"""`layoutray data ...`: make, check and look at datasets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def add_parser(top) -> None:
    data = top.add_parser("data", help="make, check and look at datasets").add_subparsers(
        dest="sub", metavar="SUB", required=True)
    p = _add(data, "synth", cmd_synth, "generate realistic synthetic web sections")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--examples", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-rows", type=int, default=500, metavar="R")
    p.add_argument("--max-elements", type=int, default=16, help="element cap per section (Phase 1's is 16)")
    p = _add(data, "validate", cmd_validate, "check schema, value ranges, images, element cap and checksums")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--max-elements", type=int, default=None, help="element cap (default: the largest phase's)")
    p.add_argument("--max-bad", type=float, default=0.0,
                   help="bad rows allowed before a non-zero exit: a count (>= 1) or a fraction (< 1)")
    p.add_argument("--json", action="store_true")
    p = _add(data, "export-jsonl", cmd_export_jsonl, "write one JSON object per example")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--no-images", action="store_true", help="leave out the base64 PNG")
    p = _add(data, "preview", cmd_preview, "draw a contact sheet of examples with their boxes")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--split", default="train", choices=["train", "val", "test"])
    p.add_argument("--count", type=int, default=16)


def _add(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(func=func)
    return p


def cmd_synth(args) -> int:
    from layoutray.config import ConfigError
    from layoutray.data.synth import synthesize

    for name, value, low in (("--examples", args.examples, 1), ("--shard-rows", args.shard_rows, 1),
                             ("--max-elements", args.max_elements, 2)):
        if value < low:
            raise ConfigError(name, f"must be at least {low}; got {value}")
    t0 = time.perf_counter()
    manifest = synthesize(args.out, args.examples, seed=args.seed, shard_rows=args.shard_rows,
                          max_elements=args.max_elements)
    dt = time.perf_counter() - t0
    c = manifest["counts"]
    print(f"wrote {manifest['total']:,} examples to {args.out} "
          f"(train {c['train']:,} / val {c['val']:,} / test {c['test']:,}; {len(manifest['shards'])} shards; "
          f"seed {args.seed}; max {args.max_elements} elements)")
    print(f"took {dt:.1f}s, {manifest['total'] / max(dt, 1e-9):,.0f} examples/s")
    return 0


def cmd_validate(args) -> int:
    from layoutray.data.validate import DEFAULT_MAX_ELEMENTS, format_report, validate_dataset

    max_elements = args.max_elements if args.max_elements is not None else DEFAULT_MAX_ELEMENTS
    rep = validate_dataset(args.dir, max_elements=max_elements, max_bad=args.max_bad)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0 if rep["ok"] else 1


def cmd_export_jsonl(args) -> int:
    from layoutray.data.validate import export_jsonl

    counts = export_jsonl(args.dir, args.out, include_images=not args.no_images)
    print(f"wrote {sum(counts.values()):,} examples to {args.out} "
          f"(train {counts['train']:,} / val {counts['val']:,} / test {counts['test']:,})")
    return 0


def cmd_preview(args) -> int:
    from layoutray.data.dataset import read_rows
    from layoutray.render.sheets import contact_sheet

    t0 = time.perf_counter()
    rows = read_rows(args.dir, args.split, args.count)
    sheet = contact_sheet(rows, args.count)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}: {len(rows)} {args.split} examples, {sheet.width}x{sheet.height} px "
          f"({time.perf_counter() - t0:.1f}s)")
    return 0
