"""HTML ingestion: labelling accuracy against the pages' own ground truth, and sections/s.

    .venv/bin/python bench/html_ingest.py [--pages realweb/pages] [--widths 1440,1024,390]

Prints one JSON document and writes bench/results/html_ingest.json (bench/jsonout.py); its figures:
  element_accuracy     truth elements (data-layout) the rules label with the same type and a box
                       of IoU >= 0.5, with every data-layout and data-section attribute ignored
                       (layoutray.data.web.score); the issue asks >= 0.95
  element_precision    of the elements the rules find, the share that match a truth element
  section_accuracy     sections whose type the rules get right (a refusal counts as wrong)
  recall_by_type, confusions, section_errors   where the rules go wrong
  sections_per_s       a full `layoutray data from-html` run over the pages at every width: render,
                       screenshot, label, crop, encode and write Parquet (browser start excluded;
                       `sections_per_s_with_start` includes it); the issue asks >= 5 on 2 cores
Timings depend on what else runs on the machine; the results record the load average.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402

from layoutray.data.web.ingest import Options, from_html  # noqa: E402
from layoutray.data.web.score import score_pages  # noqa: E402


def ingest_rate(pages: str, widths: tuple[int, ...]) -> dict:
    """One from-html run into a scratch folder: its own rate, and the rate with the browser start."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        doc = from_html([pages], Path(tmp) / "ds", Options(widths=widths))
        total = time.perf_counter() - t0
    return {"sections": doc["sections"], "rows": doc["rows"], "skipped": doc["skipped"],
            "sections_per_s": doc["sections_per_s"], "seconds": doc["seconds"],
            "sections_per_s_with_start": round(doc["sections"] / total, 2), "seconds_with_start": round(total, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", default=str(REPO / "realweb" / "pages"), help="folder of pages with data-layout truth")
    ap.add_argument("--widths", default="1440,1024,390", help="viewport widths, comma-separated")
    add_result_args(ap)
    args = ap.parse_args(argv)
    out = reserve_stdout()
    run = BenchRun("html_ingest", tag=args.tag, results_dir=args.results_dir)
    widths = tuple(int(w) for w in args.widths.split(","))
    scores = score_pages([args.pages], widths)
    rate = ingest_rate(args.pages, widths)
    figures = {k: scores[k] for k in ("element_accuracy", "element_precision", "section_accuracy",
                                      "elements_truth", "elements_predicted", "elements_correct",
                                      "sections", "sections_correct", "recall_by_type", "confusions",
                                      "section_errors", "pages")}
    figures.update(rate)
    run.finish(out, config={**args_config(args), "widths": list(widths), "match_iou": 0.5}, figures=figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
