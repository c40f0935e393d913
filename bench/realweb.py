"""Real-browser sections against the synthetic test: how far a model generalises beyond its generator.

    python bench/realweb.py --model runs/quickstart/model --synth-data runs/quickstart-data
    python bench/realweb.py --model runs/quality/03-polish/model --synth-data runs/quality/03-polish/eval-data \
        --label "quality recipe"

The project's own real-browser pages (realweb/pages, never trained on) are rendered by
`layoutray data from-html` in Debian's Chromium, every section becomes a test row, and the model is
scored three ways on the same sections: with the real screenshot as the image, with a wireframe
drawn from the real boxes by the project's renderer (so the gap between the two is the
appearance gap alone), and against the synthetic test split of the data it was trained on; the
real scores are also given per browser width (a third of the sections are at phone width). The
goals (issue "real web sections in"): real-wireframe F1@0.5 (image+spec) within 0.10 of the
synthetic test's, and image-only F1 on screenshots within 0.05 of image-only on wireframes.

Each model is one entry of `figures.models` (replaced when its label is recorded again), as in
bench/quality.py. Writes bench/results/realweb[-TAG].json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, git_commit, reserve_stdout, utc_now  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MODES = ("both", "image", "spec")
KEEP = ("element_f1@0.5", "mean_iou", "overlap", "overlap_reference", "alignment", "alignment_reference", "max_iou")


def ingest(pages: str, out: Path, widths: tuple[int, ...], max_elements: int) -> dict:
    """Every labelled section of the pages as a test row (screenshots as images)."""
    from layoutray.data.web.ingest import Options, from_html

    report = from_html([pages], out, Options(widths=widths, max_elements=max_elements), split="0/0/100")
    return {"sections": report["manifest"]["counts"]["test"], "skipped": report.get("skipped", {})}


def as_wireframes(screens: Path, out: Path) -> int:
    """The same rows with the image replaced by the renderer's wireframe of the real boxes."""
    from layoutray.data import dataset, importer
    from layoutray.data.imaging import encode_png
    from layoutray.render.wireframe import render_wireframe

    rows = dataset.read_rows(screens, "test", count=1_000_000)
    for i, row in enumerate(rows):
        img = render_wireframe(row["section_type"], row["elements"], row["canvas_width"], row["canvas_height"], i)
        row["image"] = encode_png(img)
    importer.write_dataset(out, rows, None, 0, {"name": "bench.realweb", "from": "wireframes of real boxes"},
                           kept_splits={"test": rows})
    return len(rows)


def score(model: str, data: str) -> dict:
    from layoutray.eval.evaluate import evaluate_artifact

    m = evaluate_artifact(model, data, "test")
    return {"examples": m["examples"], **{mode: {k: m[mode].get(k) for k in KEEP} for mode in MODES if mode in m}}


def viewport(row: dict) -> str:
    """The browser width a row was rendered at (from-html's ids end in @WIDTH)."""
    return row["id"].rsplit("@", 1)[-1] if "@" in row["id"] else str(row["canvas_width"])


def by_viewport(model: str, work: Path) -> dict:
    """Image+spec and image-only F1@0.5 per browser width, on wireframes and on screenshots."""
    from layoutray.data import dataset, importer

    out: dict = {}
    for kind in ("wireframes", "screenshots"):
        rows = dataset.read_rows(work / kind, "test", count=1_000_000)
        for width in sorted({viewport(r) for r in rows}, key=int):
            subset = [r for r in rows if viewport(r) == width]
            d = work / f"{kind}-{width}"
            importer.write_dataset(d, subset, None, 0, {"name": "bench.realweb", "viewport": width},
                                   kept_splits={"test": subset})
            m = score(model, str(d))
            out.setdefault(width, {"sections": len(subset)})[kind] = {
                mode: m[mode]["element_f1@0.5"] for mode in ("both", "image") if mode in m}
    return out


def gaps(synthetic: dict, wire: dict, screen: dict) -> dict:
    """The two figures the goals are about (positive: the real sections score lower)."""
    f1 = "element_f1@0.5"
    return {"both_synthetic_minus_real_wireframe": round(synthetic["both"][f1] - wire["both"][f1], 4),
            "image_wireframe_minus_screenshot": round(wire["image"][f1] - screen["image"][f1], 4)}


def merged(path: Path, entry: dict) -> list[dict]:
    """The recorded models with this one replaced where it stood, or added last."""
    old = json.loads(path.read_text())["figures"].get("models", []) if path.exists() else []
    if any(m.get("model") == entry["model"] for m in old):
        return [entry if m.get("model") == entry["model"] else m for m in old]
    return old + [entry]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--synth-data", required=True, help="the dataset whose synthetic test split is the reference")
    ap.add_argument("--label", default="make run", help="the row's name in the table")
    ap.add_argument("--pages", default=str(REPO / "realweb" / "pages"))
    ap.add_argument("--widths", default="1440", help="comma-separated viewport widths")
    ap.add_argument("--work-dir", default=None, help="where the two real datasets go (default: a temporary directory)")
    add_result_args(ap)
    args = ap.parse_args()
    out = reserve_stdout()
    run = BenchRun("realweb", tag=args.tag, results_dir=args.results_dir)
    from layoutray.model.predictor import load

    max_elements = load(args.model).cfg.model.max_elements
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="realweb-"))
    widths = tuple(int(w) for w in args.widths.split(","))
    found = ingest(args.pages, work / "screenshots", widths, max_elements)
    as_wireframes(work / "screenshots", work / "wireframes")
    results = {"synthetic": score(args.model, args.synth_data),
               "real_wireframe": score(args.model, str(work / "wireframes")),
               "real_screenshot": score(args.model, str(work / "screenshots"))}
    entry = {"model": args.label, "path": args.model, "sections": found, **results,
             "gaps": gaps(results["synthetic"], results["real_wireframe"], results["real_screenshot"]),
             "by_viewport": by_viewport(args.model, work),
             "scored": utc_now(), **git_commit()}
    run.finish(out, config={"pages": args.pages, "widths": list(widths), "max_elements": max_elements},
               figures={"models": merged(run.path, entry)})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
