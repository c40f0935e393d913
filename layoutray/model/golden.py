"""The checks a model version passes before it serves: it parses, its weights are finite, and it
still answers its golden set the way it did when it was exported.

A weights file with a few KiB overwritten still parses and still generates layouts (the grammar
in layoutray.model.generate makes every answer well-formed), so neither loading nor serving
errors reveal it. Hence:

- finite weights: every floating-point tensor of model.safetensors, read with safetensors;
- the golden set (DIR/golden.json, written by `export_artifact`): a handful of requests, spec-only
  and with small synthetic wireframes (layoutray.data.synth), each with the layout the model gave
  at export time. On load the model answers them again; every answer must be a valid layout
  (`layout_problems`: on the canvas, exactly the requested element types), the mean overlap and
  alignment must not be worse than recorded beyond the tolerances, and the answers must agree
  with the recorded layouts (`layout_agreement`, a mean IoU) above a floor. Greedy decoding is
  deterministic, so a model that loaded intact agrees fully; the tolerances absorb float
  differences between machines and thread counts, which can flip a near-tie.

golden.json (format_version 1):

    {"format_version": 1, "layoutray_version": "...",
     "tolerances": {"overlap_ratio": 1.25, "overlap_slack": 0.05, "alignment_ratio": 1.25,
                    "alignment_slack": 0.01, "min_agreement": 0.5},
     "summary": {"requests": 7, "valid_share": 1.0, "overlap": 0.41, "alignment": 0.07},
     "requests": [{"id": "spec-hero",
                   "request": {"section_type": "hero", "elements": [...], "canvas": {...}},
                   "expected": {"valid": true, "layout": {"elements": [{"type", "x", "y", "width",
                                "height"}], "alignment": 0.16, "overlap": 0.37}}}, ...]}

`request` is a `POST /v1/layouts` body (images as base64 PNG) and `expected.layout` is the
answer's first layout, in the same format as an HTTP response: the set can be replayed by hand.

What makes an answer valid and how far two answers agree (`layout_problems`,
`layout_agreement`) is in layoutray/model/layout_checks.py, which needs no torch: the Serve router
applies the same definitions to live answers (serving/judge.py).

    failures = check_artifact("runs/x/model")   # [] or ["non-finite weights: ...", "golden: ..."]
    predictor = load_checked("runs/x/model")    # a Predictor, or ArtifactCheckFailed naming them
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any, Sequence

from layoutray.model.artifact import GOLDEN_FILE, WEIGHTS_FILE, ArtifactError, check_finite
from layoutray.model.layout_checks import finite, layout_agreement, layout_problems, mean

GOLDEN_FORMAT = 1
GOLDEN_SEED = "golden"  # synth examples of the golden set: the same for every export
# Worse than recorded by more than ratio x recorded + slack fails. The ratios leave room for
# a near-tie flipped by float differences, the slacks for recorded values near 0.
TOLERANCES = {"overlap_ratio": 1.25, "overlap_slack": 0.05, "alignment_ratio": 1.25,
              "alignment_slack": 0.01, "min_agreement": 0.5}
CANVAS = {"width": 1440, "height": 800}
SPEC_REQUESTS = (
    ("spec-hero", "hero", ["heading", "paragraph", "button"]),
    ("spec-footer", "footer", ["logo", "link", "link", "paragraph"]),
    ("spec-pricing", "pricing", ["heading", "card", "card", "card"]),
    ("section-navbar", "navbar", None),  # the model chooses the elements
)
SYNTH_REQUESTS = 3  # wireframe + spec, wireframe + spec, wireframe only


class ArtifactCheckFailed(ArtifactError):
    """The artifact loads but must not serve; `failures` lists the failed checks."""

    def __init__(self, failures: list[str]):
        super().__init__("failed load checks: " + "; ".join(failures))
        self.failures = list(failures)


# ----------------------------------------------------------------------------- the golden set


def golden_requests(max_elements: int) -> list[tuple[str, dict]]:
    """(id, /v1/layouts body) of the golden set of a model that places up to `max_elements`."""
    from layoutray.data.synth import example_rng, generate_example

    out = []
    for rid, section, elements in SPEC_REQUESTS:
        body = {"section_type": section, "canvas": dict(CANVAS)}
        if elements:
            body["elements"] = elements[:max_elements]
        out.append((rid, body))
    for i in range(SYNTH_REQUESTS):
        ex = generate_example(example_rng(GOLDEN_SEED, i), i, max_elements=max(2, max_elements))
        body = {"image": base64.b64encode(ex["image"]).decode("ascii"),
                "canvas": {"width": ex["canvas_width"], "height": ex["canvas_height"]}}
        if i < SYNTH_REQUESTS - 1:
            body.update(section_type=ex["section_type"],
                        elements=[e["type"] for e in ex["elements"]][:max_elements])
            out.append((f"synth-{i}-{ex['section_type']}", body))
        else:
            out.append((f"synth-{i}-image-only", body))
    return out


def _answer(predictor, bodies: Sequence[dict]) -> list[Any]:
    """The predictor's answer to each body ({"layouts": [...]}), or the exception it raised.
    All bodies go in one call, so a check batches them exactly as the export did."""
    from layoutray.model.request import validate_payload

    out: list[Any] = [None] * len(bodies)
    reqs = []
    for i, body in enumerate(bodies):
        try:
            reqs.append((i, validate_payload(body, predictor.limits())))
        except (ValueError, TypeError) as e:
            out[i] = e
    for (i, _), answer in zip(reqs, predictor.answer([r for _, r in reqs])):
        out[i] = answer
    return out


def _body_problems(body: dict, layout: Any) -> list[str]:
    canvas = body.get("canvas") or CANVAS
    return layout_problems(layout, body.get("elements"), canvas.get("width", 1440), canvas.get("height", 800))


def golden_document(predictor) -> dict:
    """The golden set answered by `predictor`: what export_artifact writes to golden.json."""
    from layoutray import __version__

    items = []
    for (rid, body), answer in zip(*_requests_and_answers(predictor)):
        if isinstance(answer, Exception):
            raise ArtifactError(f"golden set: the model could not answer {rid}: "
                                f"{type(answer).__name__}: {answer}")
        layout = answer["layouts"][0]
        items.append({"id": rid, "request": body,
                      "expected": {"valid": not _body_problems(body, layout), "layout": layout}})
    layouts = [it["expected"]["layout"] for it in items]
    summary = {"requests": len(items),
               "valid_share": sum(it["expected"]["valid"] for it in items) / max(1, len(items)),
               "overlap": mean([x["overlap"] for x in layouts if finite(x.get("overlap"))]),
               "alignment": mean([x["alignment"] for x in layouts if finite(x.get("alignment"))])}
    return {"format_version": GOLDEN_FORMAT, "layoutray_version": __version__,
            "tolerances": dict(TOLERANCES), "summary": summary, "requests": items}


def _requests_and_answers(predictor) -> tuple[list[tuple[str, dict]], list[Any]]:
    items = golden_requests(predictor.max_elements)
    return items, _answer(predictor, [body for _, body in items])


def build_golden(state: dict, cfg) -> dict:
    """`golden_document` of the model with weights `state` and config `cfg` (export time)."""
    from layoutray.model.network import build_model
    from layoutray.model.predictor import Predictor
    from layoutray.model.tokenizer import LayoutTokenizer

    model = build_model(cfg, dropout=0.0)
    model.load_state_dict(state, strict=True)
    model.eval()
    return golden_document(Predictor(model=model, cfg=cfg, tokenizer=LayoutTokenizer(bins=cfg.model.coord_bins)))


# ----------------------------------------------------------------------------- checking


def check_golden(predictor, doc: Any) -> list[str]:
    """The failed checks of `predictor` against a golden document ([] when it passes)."""
    if not isinstance(doc, dict) or doc.get("format_version") != GOLDEN_FORMAT:
        version = doc.get("format_version") if isinstance(doc, dict) else None
        return [f"golden: {GOLDEN_FILE} format_version {version!r}; this layoutray reads {GOLDEN_FORMAT}"]
    try:
        items = list(doc["requests"])
        bodies = [it["request"] for it in items]
        expected = [it["expected"]["layout"] for it in items]
        tol = dict(TOLERANCES, **(doc.get("tolerances") or {}))
    except (KeyError, TypeError) as e:
        return [f"golden: {GOLDEN_FILE} is malformed ({type(e).__name__}: {e})"]
    failures, now, then = [], [], []
    for it, body, answer, recorded in zip(items, bodies, _answer(predictor, bodies), expected):
        rid = it.get("id", "?")
        if isinstance(answer, Exception):
            failures.append(f"golden: {rid}: no answer ({type(answer).__name__}: {answer})"[:300])
            continue
        layout = answer["layouts"][0]
        problems = _body_problems(body, layout)
        if problems and it["expected"].get("valid", True):
            failures.append(f"golden: {rid}: invalid layout ({'; '.join(problems[:3])})")
        now.append(layout)
        then.append(recorded)
    return failures + _quality_failures(now, then, tol)


def _quality_failures(now: list[dict], then: list[dict], tol: dict) -> list[str]:
    """Mean overlap and alignment against the recorded ones; agreement with the recorded layouts."""
    if not now:
        return []
    failures = []
    for name in ("overlap", "alignment"):
        pairs = [(a[name], b[name]) for a, b in zip(now, then) if finite(a.get(name)) and finite(b.get(name))]
        if not pairs:
            continue
        got, ref = mean([p[0] for p in pairs]), mean([p[1] for p in pairs])
        ratio, slack = tol[f"{name}_ratio"], tol[f"{name}_slack"]
        if got > ratio * ref + slack:
            failures.append(f"golden: {name} {got:.3f} vs recorded {ref:.3f} (> {ratio}x + {slack})")
    try:
        agreement = mean([layout_agreement(a["elements"], b["elements"]) for a, b in zip(now, then)])
    except (KeyError, TypeError, ValueError) as e:
        return failures + [f"golden: recorded layouts are malformed ({type(e).__name__}: {e})"]
    if agreement < tol["min_agreement"]:
        failures.append(f"golden: agreement with the recorded layouts {agreement:.2f} "
                        f"< {tol['min_agreement']} (mean IoU over {len(now)} requests)")
    return failures


def check_artifact(model_dir: str | Path, predictor=None) -> list[str]:
    """The failed load checks of an artifact, each naming its check ("parse: ...", "non-finite
    weights: ...", "golden: ..."); [] when it may serve. `predictor`: the artifact already loaded
    (a server has it; otherwise it is loaded here). Without golden.json (artifacts exported
    before it existed) only the weights are checked."""
    d = Path(model_dir)
    if predictor is None:
        from layoutray.model.predictor import load

        try:
            predictor = load(d)
        except Exception as e:  # noqa: BLE001 - ArtifactError, or safetensors' own on a broken file
            return [f"parse: {e}"[:500]]
    try:
        bad = check_finite(d)
    except Exception as e:  # noqa: BLE001 - the weights file changed or broke since it was loaded
        return [f"parse: {d / WEIGHTS_FILE}: {e}"[:500]]
    if bad:
        # The golden set would only fail too: NaN weights answer nothing meaningful.
        more = f" (and {len(bad) - 3} more tensors)" if len(bad) > 3 else ""
        return [f"non-finite weights in {d / WEIGHTS_FILE}: {'; '.join(bad[:3])}{more}"]
    return _check_golden_file(d, predictor)


def _check_golden_file(d: Path, predictor) -> list[str]:
    path = d / GOLDEN_FILE
    if not path.is_file():
        listed = (getattr(predictor, "meta", None) or {}).get("golden")
        return [f"golden: meta.json lists {GOLDEN_FILE} but {path} is missing"] if listed else []
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        return [f"golden: {path} is unreadable ({e})"[:300]]
    return check_golden(predictor, doc)


def load_checked(model_dir: str | Path):
    """`predictor.load(model_dir)` once `check_artifact` passes; ArtifactError otherwise (an
    ArtifactCheckFailed listing the failed checks when it parses but must not serve)."""
    from layoutray.model.predictor import load

    predictor = load(model_dir)
    failures = check_artifact(model_dir, predictor)
    if failures:
        raise ArtifactCheckFailed(failures)
    return predictor
