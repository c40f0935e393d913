"""`layoutray data ...`: make, check and look at datasets."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SPLIT_CHOICES = ("train", "val", "test")
SKIPS_SHOWN = 20  # skipped sections / refused records listed in the text report; --json has all


def add_parser(top) -> None:
    data = top.add_parser("data", help="make, check and look at datasets").add_subparsers(
        dest="sub", metavar="SUB", required=True)
    _add_synth(data)
    _add_from_html(data)
    _add_import(data)
    p = _add(data, "validate", cmd_validate, "check schema, value ranges, images, element cap and checksums")
    p.add_argument("dir", metavar="DIR|URI", help="a dataset directory or a URI (s3://bucket/sections)")
    _add_cap(p, "element cap: a phase's model.max_elements (default: the largest phase's)")
    p.add_argument("--max-bad", type=float, default=0.0,
                   help="bad rows allowed before a non-zero exit: a count (>= 1) or a fraction (< 1)")
    p.add_argument("--json", action="store_true")
    p = _add(data, "export-jsonl", cmd_export_jsonl, "write one JSON object per example")
    p.add_argument("dir", metavar="DIR|URI", help="a dataset directory or a URI (s3://bucket/sections)")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--no-images", action="store_true", help="leave out the base64 PNG")
    p = _add(data, "preview", cmd_preview, "draw a contact sheet of examples with their boxes")
    p.add_argument("dir", metavar="DIR|URI", help="a dataset directory or a URI (s3://bucket/sections)")
    p.add_argument("--out", required=True, metavar="PNG")
    p.add_argument("--split", default=None, choices=SPLIT_CHOICES,
                   help="default: the first non-empty of train, val, test")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--offset", type=int, default=0, help="skip this many (matching) rows first")
    p.add_argument("--section-type", default=None, metavar="TYPE", help="only rows of this section type")


def _add(sub, name: str, func, help: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help)
    p.set_defaults(func=func)
    return p


def _add_cap(p: argparse.ArgumentParser, help: str) -> None:
    from layoutray.config import PHASES

    p.add_argument("--phase", default=None, choices=PHASES, help=help)
    p.add_argument("--max-elements", type=int, default=None, metavar="N",
                   help="an explicit element cap (wins over --phase)")


def _add_synth(data) -> None:
    p = _add(data, "synth", cmd_synth, "generate realistic synthetic web sections")
    p.add_argument("--out", required=True, metavar="DIR|URI", help="a directory or a URI (s3://bucket/sections)")
    p.add_argument("--examples", type=int, required=True, metavar="N")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-rows", type=int, default=500, metavar="R")
    p.add_argument("--max-elements", type=int, default=16, help="element cap per section (Phase 1's is 16)")
    p.add_argument("--appearance", choices=("wireframe", "screenshot", "mixed"), default="wireframe",
                   help="images as wireframes, screenshot-like renderings, or either per example")
    p.add_argument("--variety", choices=("base", "wide", "responsive"), default="base",
                   help="wide: also the narrower text and smaller logos/avatars/inputs/badges of real pages; "
                        "responsive: wide, at tablet and phone viewports too")


def _add_writer_args(p: argparse.ArgumentParser) -> None:
    """What from-html and import share: where and how the dataset is written."""
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--split", default="80/10/10", metavar="T/V/T",
                   help="train/val/test shares, stratified by section type (default 80/10/10); "
                        "import also takes keep (each record's own split)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split")
    p.add_argument("--shard-rows", type=int, default=500, metavar="R")
    _add_cap(p, "element cap: a phase's model.max_elements (default: the largest phase's); larger rows are skipped")
    p.add_argument("--no-images", action="store_true", help="write rows without images")
    p.add_argument("--force", action="store_true", help="replace a dataset already in --out")
    p.add_argument("--json", action="store_true", help="print the whole report as JSON")


def _add_from_html(data) -> None:
    p = _add(data, "from-html", cmd_from_html,
             "render HTML pages in headless Chromium and turn their sections into labelled rows")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="HTML files, folders of them, or URLs of pages served on this machine")
    p.add_argument("--widths", default="1440", metavar="W[,W...]",
                   help="viewport widths in CSS px, e.g. 1440,1024,390 (default 1440)")
    p.add_argument("--selector", default=None, metavar="CSS",
                   help="what a section is (default: header, nav, section, footer and landmark roles)")
    p.add_argument("--ignore-data-layout", action="store_true",
                   help="label every element by the rules, even where a data-layout attribute says otherwise")
    p.add_argument("--ignore-data-section", action="store_true",
                   help="classify every section by the rules, even where data-section says otherwise")
    _add_writer_args(p)


def _add_import(data) -> None:
    p = _add(data, "import", cmd_import, "import layouts you already have (JSONL or COCO detection JSON)")
    p.add_argument("inputs", nargs="+", metavar="FILE", help=".jsonl (one section per line) or COCO .json")
    p.add_argument("--format", default="auto", choices=("auto", "jsonl", "coco"),
                   help="default: by file name (.jsonl, .json)")
    p.add_argument("--units", default="norm", choices=("norm", "px"),
                   help="JSONL boxes: normalised to the canvas (default) or canvas px")
    p.add_argument("--section-type", default=None, metavar="TYPE",
                   help="COCO: the section type of images that do not carry one")
    p.add_argument("--images", default=None, metavar="DIR", help="COCO: folder of file_name (default: the file's)")
    p.add_argument("--map", dest="type_map", action="append", default=[], metavar="NAME=TYPE",
                   help="rename an input element type or COCO category to a vocabulary type (repeatable)")
    _add_writer_args(p)


def element_cap(args, what: str = "--max-elements") -> int:
    """--max-elements if given, else --phase's model.max_elements, else the largest phase's."""
    from layoutray.config import PHASES, ConfigError, load_config

    if args.max_elements is not None:
        if args.max_elements < 1:
            raise ConfigError(what, f"must be at least 1; got {args.max_elements}")
        return args.max_elements
    phases = [args.phase] if args.phase else PHASES
    return max(load_config(phase=p).model.max_elements for p in phases)


def cmd_synth(args) -> int:
    from layoutray.config import ConfigError
    from layoutray.data.synth import synthesize

    for name, value, low in (("--examples", args.examples, 1), ("--shard-rows", args.shard_rows, 1),
                             ("--max-elements", args.max_elements, 2)):
        if value < low:
            raise ConfigError(name, f"must be at least {low}; got {value}")
    t0 = time.perf_counter()
    manifest = synthesize(args.out, args.examples, seed=args.seed, shard_rows=args.shard_rows,
                          max_elements=args.max_elements, appearance=args.appearance, variety=args.variety)
    dt = time.perf_counter() - t0
    c = manifest["counts"]
    print(f"wrote {manifest['total']:,} examples to {args.out} "
          f"(train {c['train']:,} / val {c['val']:,} / test {c['test']:,}; {len(manifest['shards'])} shards; "
          f"seed {args.seed}; max {args.max_elements} elements)")
    print(f"took {dt:.1f}s, {manifest['total'] / max(dt, 1e-9):,.0f} examples/s")
    return 0


def _parse_widths(text: str) -> tuple[int, ...]:
    from layoutray.config import ConfigError
    from layoutray.data.web.ingest import check_widths

    try:
        return check_widths(int(w) for w in text.split(",") if w.strip())
    except ValueError:
        raise ConfigError("--widths", f"expected comma-separated px such as 1440,1024,390; got {text!r}") from None


def _check_shard_rows(args) -> None:
    from layoutray.config import ConfigError

    if args.shard_rows < 1:
        raise ConfigError("--shard-rows", f"must be at least 1; got {args.shard_rows}")


def _print_written(doc: dict, out: str, problems: dict, listed: list[str]) -> None:
    m = doc["manifest"]
    c = m["counts"]
    print(f"wrote {m['total']:,} rows to {out} (train {c['train']:,} / val {c['val']:,} / test {c['test']:,})")
    print("  section types: " + ", ".join(f"{k} {v}" for k, v in doc["section_types"].items()))
    if problems:
        print("  " + ", ".join(f"{k} {v}" for k, v in problems.items()))
    for line in listed[:SKIPS_SHOWN]:
        print("    " + line)
    if len(listed) > SKIPS_SHOWN:
        print(f"    ... and {len(listed) - SKIPS_SHOWN} more (--json lists all)")


def cmd_from_html(args) -> int:
    from layoutray.data.web.browser import DEFAULT_SELECTOR
    from layoutray.data.web.ingest import Options, from_html

    _check_shard_rows(args)
    opts = Options(widths=_parse_widths(args.widths), selector=args.selector or DEFAULT_SELECTOR,
                   honour_layout=not args.ignore_data_layout, honour_section=not args.ignore_data_section,
                   max_elements=element_cap(args), images=not args.no_images)
    doc = from_html(args.inputs, args.out, opts, split=args.split, seed=args.seed,
                    shard_rows=args.shard_rows, force=args.force)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"rendered {doc['pages']} pages ({doc['pages_failed']} failed) at {args.widths} px: {doc['sections']} "
          f"sections in {doc['seconds']:.1f}s ({doc['sections_per_s']} sections/s)")
    skipped = {f"skipped {k}": v for k, v in doc["skipped"].items()}
    _print_written(doc, args.out, skipped, [f"{s['id']}: {s['reason']}: {s['detail']}" for s in doc["skips"]])
    return 0


def cmd_import(args) -> int:
    from layoutray.data.importer import import_layouts, parse_type_map

    _check_shard_rows(args)
    doc = import_layouts(args.inputs, args.out, split=args.split, seed=args.seed, max_elements=element_cap(args),
                         fmt=args.format, units=args.units, section_type=args.section_type,
                         images_dir=args.images, type_map=parse_type_map(args.type_map),
                         images=not args.no_images, shard_rows=args.shard_rows, force=args.force)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"read {doc['records']:,} records: imported {doc['rows']:,}, refused {doc['records'] - doc['rows']:,}")
    refused = {f"refused {k}": v for k, v in doc["refused"].items()}
    _print_written(doc, args.out, refused, [f"{r['where']}: {r['reason']}: {r['detail']}" for r in doc["refusals"]])
    return 0


def local_dataset(path: str) -> str:
    """A dataset URI's cached local copy (validation and export read every byte anyway); a
    directory as it is."""
    from layoutray import storage

    return str(storage.local_copy(path, "datasets")) if storage.is_uri(path) else path


def cmd_validate(args) -> int:
    from layoutray.data.validate import format_report, validate_dataset

    rep = validate_dataset(local_dataset(args.dir), max_elements=element_cap(args), max_bad=args.max_bad)
    print(json.dumps(rep, indent=2) if args.json else format_report(rep))
    return 0 if rep["ok"] else 1


def cmd_export_jsonl(args) -> int:
    from layoutray.data.validate import export_jsonl

    counts = export_jsonl(local_dataset(args.dir), args.out, include_images=not args.no_images)
    print(f"wrote {sum(counts.values()):,} examples to {args.out} "
          f"(train {counts['train']:,} / val {counts['val']:,} / test {counts['test']:,})")
    return 0


def preview_split(root: str, split: str | None) -> str:
    """The split asked for, which must hold rows; else the first non-empty one."""
    from layoutray.data.dataset import DatasetError, count_examples

    counts = count_examples(root)  # raises a one-line DatasetError for no shards / a bad footer
    if split is None:
        return next(s for s in SPLIT_CHOICES if counts[s])
    if not counts[split]:
        have = " / ".join(f"{s} {counts[s]}" for s in SPLIT_CHOICES)
        raise DatasetError(f"{root}: split '{split}' has no rows ({have}); pick another --split")
    return split


def select_rows(root: str, split: str, count: int, offset: int = 0, section_type: str | None = None) -> list[dict]:
    """`count` rows of a split after skipping `offset` (of the given section type, if one)."""
    from layoutray.data.dataset import shard_paths, unreadable_shard
    from layoutray.storage import parquet_file

    rows, seen = [], 0
    for path in shard_paths(root, split):
        try:
            for batch in parquet_file(path).iter_batches(batch_size=256):
                for row in batch.to_pylist():
                    if section_type and row["section_type"] != section_type:
                        continue
                    seen += 1
                    if seen > offset:
                        rows.append(row)
                    if len(rows) >= count:
                        return rows
        except Exception as e:  # pyarrow raises several types for a damaged shard
            raise unreadable_shard(path, e) from None
    return rows


def _check_preview_args(args) -> None:
    from layoutray.config import ConfigError
    from layoutray.data.vocab import SECTION_TYPES

    if args.count < 1:
        raise ConfigError("--count", f"must be at least 1; got {args.count}")
    if args.offset < 0:
        raise ConfigError("--offset", f"must be 0 or more; got {args.offset}")
    if args.section_type is not None and args.section_type not in SECTION_TYPES:
        raise ConfigError("--section-type", f"got {args.section_type!r}; allowed: {', '.join(SECTION_TYPES)}")


def cmd_preview(args) -> int:
    from layoutray.data.dataset import DatasetError
    from layoutray.render.sheets import contact_sheet

    _check_preview_args(args)
    t0 = time.perf_counter()
    split = preview_split(args.dir, args.split)
    rows = select_rows(args.dir, split, args.count, args.offset, args.section_type)
    if not rows:
        which = f"{args.section_type} rows" if args.section_type else "rows"
        raise DatasetError(f"{args.dir}: no {which} in split '{split}' after offset {args.offset}")
    sheet = contact_sheet(rows, args.count)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    print(f"wrote {args.out}: {len(rows)} {split} examples, {sheet.width}x{sheet.height} px "
          f"({time.perf_counter() - t0:.1f}s)")
    return 0
