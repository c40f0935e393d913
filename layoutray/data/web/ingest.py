"""`layoutray data from-html`: real pages -> dataset rows (screenshot + labelled boxes).

    report = from_html(["realweb/pages"], "web_sections", widths=(1440,))

Each page is loaded once in headless Chromium and captured at every width asked for; each
section found (see `browser.DEFAULT_SELECTOR`, or the caller's selector) is labelled
(`elements.label_tree`), classified (`sections.classify`) and becomes one row whose image is
the section's crop of the real screenshot and whose id names the page:
`<page path>#<section index>@<width>`. A section that cannot be labelled with confidence is
skipped and reported with its reason (`SKIP_REASONS`); nothing is guessed silently.
"""

from __future__ import annotations

import io
import time
from collections import Counter
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, NamedTuple

from PIL import Image

from layoutray.config import ConfigError
from layoutray.data.dataset import DatasetError
from layoutray.data.validate import MAX_CANVAS
from layoutray.data.web.browser import DEFAULT_SELECTOR, Browser, is_local_url
from layoutray.data.web.elements import Element, LayoutAttributeError, label_tree, unlabelled_content
from layoutray.data.web.sections import SectionAttributeError, classify
from layoutray.data.web.tree import Tree

DEFAULT_WIDTHS = (1440,)
HTML_SUFFIXES = (".html", ".htm", ".xhtml")
MIN_SECTION_PX = 16
PNG_LEVEL = 3
MAX_UNLABELLED = 0.1  # share of a section's visible content that may stay unlabelled
GENERATOR_VERSION = 1

# Why a page or a section produced no row, in report order.
SKIP_REASONS = ("page_failed", "screenshot_failed", "no_sections", "too_small", "too_tall", "bad_data_layout", "bad_data_section",
                "no_elements", "unlabelled_content", "section_type_uncertain", "too_many_elements")


class Source(NamedTuple):
    name: str  # goes into row ids: the file's path relative to the folder given, or the URL
    url: str


class Options(NamedTuple):
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    selector: str = DEFAULT_SELECTOR
    honour_layout: bool = True  # data-layout attributes decide element types
    honour_section: bool = True  # data-section attributes decide section types
    max_elements: int = 48
    images: bool = True


class SectionResult(NamedTuple):
    id: str
    tree: Tree
    elements: list[Element]
    row: dict | None  # None when skipped
    reason: str | None  # a SKIP_REASONS entry when skipped
    detail: str
    index: int = 0  # the section's place on its page, of `total`
    total: int = 1


# ---------------------------------------------------------------------------- sources


def _url_source(arg: str) -> Source:
    if not is_local_url(arg):
        raise ConfigError("source", f"{arg}: only pages served on this machine (localhost, 127.0.0.1) "
                                    "or local files can be rendered")
    return Source(arg, arg)


def _dir_sources(root: Path) -> list[Source]:
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in HTML_SUFFIXES and p.is_file())
    if not files:
        raise DatasetError(f"{root}: no .html files found")
    return [Source(p.relative_to(root).as_posix(), p.resolve().as_uri()) for p in files]


def collect_sources(inputs: Iterable[str]) -> list[Source]:
    """HTML files, folders of them (searched recursively) and local URLs, in the order given."""
    out: list[Source] = []
    for arg in inputs:
        if "://" in arg:
            out.append(_url_source(arg))
            continue
        path = Path(arg)
        if path.is_dir():
            out += _dir_sources(path)
        elif not path.exists():
            raise DatasetError(f"{arg}: no such file or directory")
        elif path.suffix.lower() not in HTML_SUFFIXES:
            raise ConfigError("source", f"{arg}: not an HTML file (expected {', '.join(HTML_SUFFIXES)})")
        else:
            out.append(Source(path.name, path.resolve().as_uri()))
    if not out:
        raise ConfigError("source", "give at least one HTML file, folder or local URL")
    return _unique_names(out)


def _unique_names(sources: list[Source]) -> list[Source]:
    """Row ids must be unique: a second page of the same name gets a `~2` suffix."""
    seen: Counter = Counter()
    out = []
    for s in sources:
        seen[s.name] += 1
        out.append(s if seen[s.name] == 1 else Source(f"{s.name}~{seen[s.name]}", s.url))
    return out


def check_widths(widths: Iterable[int]) -> tuple[int, ...]:
    widths = tuple(int(w) for w in widths)
    if not widths or any(not 240 <= w <= 3840 for w in widths):
        raise ConfigError("--widths", f"each width must be 240..3840 CSS px; got {list(widths)}")
    return widths


# ---------------------------------------------------------------------------- one section


def _normalise(box: list[float], canvas: list[float]) -> dict:
    cx, cy, cw, ch = canvas
    x, y = min(max((box[0] - cx) / cw, 0.0), 1.0), min(max((box[1] - cy) / ch, 0.0), 1.0)
    return {"x": x, "y": y, "w": min(box[2] / cw, 1.0 - x), "h": min(box[3] / ch, 1.0 - y)}


def crop_pngs(png: bytes, canvases: list[list[float]]) -> list[bytes]:
    """Each section's crop of a page screenshot, as PNG (zlib level 3: twice as fast as the
    default 6 for a quarter more bytes; these run in a thread beside the browser)."""
    shot = Image.open(io.BytesIO(png)).convert("RGB")
    out = []
    for canvas in canvases:
        x, y, w, h = (round(v) for v in canvas)
        buf = io.BytesIO()
        shot.crop((x, y, x + w, y + h)).save(buf, format="PNG", compress_level=PNG_LEVEL)
        out.append(buf.getvalue())
    return out


def _labelled(sid: str, t: Tree, opts: Options, index: int, total: int):
    """(elements, section type, None) or (elements, None, (reason, detail))."""
    try:
        els = label_tree(t, opts.honour_layout)
    except LayoutAttributeError as e:
        return [], None, ("bad_data_layout", str(e))
    if not els:
        return els, None, ("no_elements", "no vocabulary element found")
    loose = unlabelled_content(t, els)
    leaves = t.counts[0]["leaves"] or 1
    if len(loose) > MAX_UNLABELLED * leaves:
        what = ", ".join(f"<{t.nodes[i]['tag']}> {(t.nodes[i].get('own') or '')[:24]!r}" for i in loose[:3])
        return els, None, ("unlabelled_content", f"{len(loose)} of {leaves} visible items unlabelled: {what}")
    try:
        verdict = classify(t, els, index, total, opts.honour_section)
    except SectionAttributeError as e:
        return els, None, ("bad_data_section", str(e))
    if verdict.section_type is None:
        return els, None, ("section_type_uncertain", verdict.reason)
    if len(els) > opts.max_elements:
        return els, None, ("too_many_elements", f"{len(els)} elements > cap {opts.max_elements}")
    return els, verdict.section_type, None


def section_result(sid: str, t: Tree, opts: Options, index: int, total: int) -> SectionResult:
    """One section: its row (image still None), or why it has none."""
    canvas = list(t.root_box)
    if canvas[2] < MIN_SECTION_PX or canvas[3] < MIN_SECTION_PX:
        return SectionResult(sid, t, [], None, "too_small", f"{canvas[2]:.0f}x{canvas[3]:.0f} px", index, total)
    if canvas[3] > MAX_CANVAS or canvas[2] > MAX_CANVAS:
        return SectionResult(sid, t, [], None, "too_tall", f"{canvas[2]:.0f}x{canvas[3]:.0f} px", index, total)
    els, kind, skip = _labelled(sid, t, opts, index, total)
    if skip:
        return SectionResult(sid, t, els, None, *skip, index, total)
    row = {"id": sid, "section_type": kind, "canvas_width": round(canvas[2]), "canvas_height": round(canvas[3]),
           "image": None,
           "elements": [{"type": e.type, **_normalise(e.box, canvas)} for e in els]}
    return SectionResult(sid, t, els, row, None, "", index, total)


def capture_results(source: Source, cap: dict, opts: Options) -> list[SectionResult]:
    """Every section of one capture (one page at one width); rows without their images."""
    page = cap["page"]
    bg = page["bg"] if not page["bg"].endswith(", 0)") else page["htmlbg"]
    sections = cap["sections"]
    out = []
    for k, sec in enumerate(sections):
        t = Tree(sec["nodes"], page_bg=bg, base_font=page["fs"])
        out.append(section_result(f"{source.name}#{k}@{cap['width']}", t, opts, k, len(sections)))
    return out


# ---------------------------------------------------------------------------- pages


class Report:
    """What a run did: counts, and every skip with its reason."""

    def __init__(self):
        self.pages = self.pages_failed = self.sections = 0
        self.rows: list[dict] = []
        self.skips: list[dict] = []
        self.pending: list[tuple[list[dict], Future]] = []  # rows waiting for their image crops
        self.t0 = time.perf_counter()

    def count(self, res: SectionResult, on_result=None) -> bool:
        """Note one section's outcome; True when it made a row."""
        self.sections += 1
        if on_result:
            on_result(res)
        if res.row is None:
            self.skip(res.id, res.reason, res.detail)
            return False
        self.rows.append(res.row)
        return True

    def finish_images(self) -> None:
        """Put each row's crop in place; rows whose screenshot could not be cut become skips."""
        for rows, crops in self.pending:
            try:
                for row, png in zip(rows, crops.result()):
                    row["image"] = png
            except Exception as e:  # PIL raises many types (a decompression bomb, a damaged PNG)
                dropped = {id(r) for r in rows}
                self.rows = [r for r in self.rows if id(r) not in dropped]
                for row in rows:
                    self.skip(row["id"], "screenshot_failed", f"{type(e).__name__}: {e}"[:200])
        self.pending.clear()

    def skip(self, sid: str, reason: str, detail: str) -> None:
        self.skips.append({"id": sid, "reason": reason, "detail": detail})

    def as_dict(self) -> dict:
        dt = time.perf_counter() - self.t0
        by_reason = Counter(s["reason"] for s in self.skips)
        return {"pages": self.pages, "pages_failed": self.pages_failed, "sections": self.sections,
                "rows": len(self.rows), "skipped": {r: by_reason[r] for r in SKIP_REASONS if by_reason[r]},
                "skips": self.skips,
                "section_types": dict(sorted(Counter(r["section_type"] for r in self.rows).items())),
                "seconds": round(dt, 3), "sections_per_s": round(self.sections / dt, 2) if dt else None}


def _page(browser: Browser, source: Source, opts: Options, rep: Report, images: Executor | None,
          on_result=None) -> None:
    from playwright.sync_api import Error

    rep.pages += 1
    try:
        captures = browser.capture(source.url, opts.widths, opts.selector)
    except Error as e:
        rep.pages_failed += 1
        rep.skip(source.name, "page_failed", (str(e).strip().splitlines() or ["?"])[0][:200])
        return
    for cap in captures:
        if not cap["sections"]:
            rep.skip(f"{source.name}@{cap['width']}", "no_sections",
                     f"no element matches {opts.selector!r}")
            continue
        done = [res for res in capture_results(source, cap, opts) if rep.count(res, on_result)]
        if images and done:
            crops = images.submit(crop_pngs, cap["png"], [list(res.tree.root_box) for res in done])
            rep.pending.append(([res.row for res in done], crops))


def render_sources(sources: list[Source], opts: Options, on_result=None) -> Report:
    """Render and label every page; rows and skips in the report (nothing written)."""
    check_widths(opts.widths)
    rep = Report()
    with Browser() as browser, ThreadPoolExecutor(1) as images:
        if opts.selector != DEFAULT_SELECTOR and not browser.check_selector(opts.selector):
            raise ConfigError("--selector", f"{opts.selector!r} is not a valid CSS selector")
        rep.t0 = time.perf_counter()  # the rate counts pages, not the browser's start
        for source in sources:
            _page(browser, source, opts, rep, images if opts.images else None, on_result)
        rep.finish_images()
    return rep


def from_html(inputs: Iterable[str], out_dir: str | Path, opts: Options = Options(), split: str = "80/10/10",
              seed: int = 0, shard_rows: int = 500, force: bool = False) -> dict:
    """Render, label and write a dataset; returns the report (with the manifest under "manifest").
    Raises DatasetError when no section could be labelled."""
    from layoutray.data import importer

    fractions = importer.parse_split(split)
    if fractions is None:
        raise ConfigError("--split", "keep needs records that carry their split; pages do not: give shares")
    importer.check_out_dir(out_dir, force)
    sources = collect_sources(inputs)
    rep = render_sources(sources, opts)
    doc = rep.as_dict()
    if not rep.rows:
        reasons = ", ".join(f"{k} {v}" for k, v in doc["skipped"].items()) or "nothing found"
        raise DatasetError(f"no section could be labelled ({reasons}); nothing written to {out_dir}")
    generator = {"name": "layoutray.data.web", "version": GENERATOR_VERSION, "widths": list(opts.widths),
                 "selector": opts.selector, "data_layout": opts.honour_layout, "data_section": opts.honour_section,
                 "pages": len(sources), "split": split, "seed": seed}
    doc["manifest"] = importer.write_dataset(out_dir, rep.rows, fractions, seed, generator, shard_rows)
    return doc
