"""Scoring a model: teacher-forced loss and token accuracy, and generated-layout metrics
in the three uses the model serves (image + spec, image only, spec only).

Used by the training loop (validation every epoch) and by `layoutray evaluate`; neither
path needs Ray or DeepSpeed.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable

import torch

from layoutray.model.generate import generate_tokens
from layoutray.eval.fid import layout_features
from layoutray.eval.generative import generative_metrics
from layoutray.eval.metrics import element_prf_by_type, layout_metrics, miss_analysis, token_accuracy_counts
from layoutray.model.tokenizer import NULL, PAD, Box, LayoutTokenizer
from layoutray.model.constraints import REFINE_LEVELS, check_level
from layoutray.model.refine import refine_layouts

MODES = ("both", "image", "spec")
AUGMENT_SEED = 1234  # the augmented test is the same draw for every model  # what conditions the generation
HEADLINE_MODE = "both"  # top-level keys of metrics.json come from this mode


def ground_truth(tokenizer: LayoutTokenizer, tokens: torch.Tensor) -> list[list[Box]]:
    return [tokenizer.decode_layout(row) for row in tokens.tolist()]


@torch.no_grad()
def teacher_forced(model, batch: dict) -> tuple[float, int, int]:
    """(summed loss, counted tokens, correct tokens) for one batch (a diffusion model: on its
    masked places at a fixed draw of the noise, diffusion.teacher_forced)."""
    if getattr(model, "diffusion", None) is not None:
        from layoutray.model.diffusion import teacher_forced as diffusion_teacher_forced
        return diffusion_teacher_forced(model, batch)
    tokens = batch["tokens"]
    logits = model(batch["image"], batch["has_image"], batch["spec"], tokens[:, :-1])
    targets = tokens[:, 1:]
    n = int((targets != PAD).sum())
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             targets.reshape(-1), ignore_index=PAD, reduction="sum")
    correct, counted = token_accuracy_counts(logits, targets, pad_id=PAD)
    assert counted == n
    return float(loss), n, correct


def condition(batch: dict, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(spec, has_image) of a batch seen as `mode`: "image" drops the spec (a lone NULL, as the
    pipeline's image-only task), "spec" hides the image, "both" keeps the batch as it is."""
    spec, has_image = batch["spec"], batch["has_image"]
    if mode == "image":
        spec = torch.full((spec.shape[0], 1), NULL, dtype=torch.long, device=spec.device)
    elif mode == "spec":
        has_image = torch.zeros_like(has_image)
    elif mode != "both":
        raise ValueError(f"mode must be one of {MODES}; got {mode!r}")
    return spec, has_image


@torch.no_grad()
def generate_for_mode(model, tokenizer: LayoutTokenizer, batch: dict, mode: str,
                      max_elements: int, steps: int | None = None, constraints: str = "off",
                      aesthetics=None) -> tuple[list[list[Box]], list[bool]]:
    """Greedy layouts for a batch conditioned as `mode`; (layouts, parsed_ok). `steps`: a diffusion
    model's sampling steps (None: its T). `constraints`: the aesthetic level (model/constraints.py),
    `aesthetics` its settings (config.AestheticConfig; None: the defaults)."""
    spec, has_image = condition(batch, mode)
    required = None if mode == "image" else [tokenizer.spec_types(row) or None for row in spec.tolist()]
    ids = generate_tokens(model, tokenizer, batch["image"], has_image, spec, max_elements=max_elements,
                          required_types=required, steps=steps, constraints=constraints, aesthetics=aesthetics)
    layouts, ok = [], []
    for row in ids.tolist():
        try:
            layouts.append(tokenizer.decode_layout(row))
            ok.append(True)
        except ValueError:
            layouts.append([])  # an unparseable sequence counts against recall
            ok.append(False)
    if constraints in REFINE_LEVELS:
        layouts = refine_layouts(layouts, aesthetics)
    return layouts, ok


def evaluate_batches(model, tokenizer: LayoutTokenizer, batches: Iterable[dict], *, max_elements: int,
                     modes: tuple[str, ...] = MODES, generate_limit: int | None = None,
                     steps: int | None = None, constraints: str = "off", aesthetics=None) -> dict:
    """Metrics over batches. Generation runs on the first `generate_limit` examples (None: all),
    at aesthetic level `constraints` with settings `aesthetics` (see generate_for_mode)."""
    was_training = model.training
    model.eval()
    loss_sum, n_tok, n_correct, seen = 0.0, 0, 0, 0
    # Teacher-forced loss per conditioning: the gap between "spec" and "both" is how much the
    # model takes from the wireframe (zero: it ignores the image whenever a spec is given).
    mode_tf = {m: [0.0, 0] for m in modes}
    preds = {m: [] for m in modes}
    oks = {m: [] for m in modes}
    gts: list[list[Box]] = []
    t0 = time.perf_counter()
    try:
        for batch in batches:
            ls, n, c = teacher_forced(model, batch)
            loss_sum, n_tok, n_correct = loss_sum + ls, n_tok + n, n_correct + c
            for m in modes:
                if m == "both":  # the batch as given: the pass above
                    ls_m, c_m = ls, c
                else:
                    spec, has_image = condition(batch, m)
                    ls_m, _, c_m = teacher_forced(model, {**batch, "spec": spec, "has_image": has_image})
                mode_tf[m][0] += ls_m
                mode_tf[m][1] += c_m
            take = batch["tokens"].shape[0]
            if generate_limit is not None:
                take = max(0, min(take, generate_limit - seen))
            if take:
                sub = {k: v[:take] for k, v in batch.items() if torch.is_tensor(v) and v.dim() > 0}
                gts.extend(ground_truth(tokenizer, sub["tokens"]))
                for m in modes:
                    layouts, ok = generate_for_mode(model, tokenizer, sub, m, max_elements, steps,
                                                    constraints, aesthetics)
                    preds[m].extend(layouts)
                    oks[m].extend(ok)
            seen += batch["tokens"].shape[0]
    finally:
        model.train(was_training)
    out: dict = {"examples": seen, "loss": loss_sum / max(1, n_tok),
                 "token_accuracy": n_correct / max(1, n_tok), "generated_examples": len(gts)}
    if gts:
        # Set metrics (max_iou, fid): does each mode's SET of generated layouts look like the set
        # of true layouts of the same examples, the question that fits spec-only and sampled
        # generation, where many layouts are right for one spec. The true side's FID features
        # are the same for every mode.
        real_features = layout_features(gts)
        for m in modes:
            out[m] = layout_metrics(preds[m], gts, parsed_ok=oks[m])
            out[m]["per_type@0.5"] = element_prf_by_type(preds[m], gts, 0.5)
            out[m]["misses"] = miss_analysis(preds[m], gts)
            out[m].update(generative_metrics(preds[m], gts, real_features=real_features))
            out[m].update(aesthetic_metrics(preds[m], gts, aesthetics))
        headline = HEADLINE_MODE if HEADLINE_MODE in modes else modes[0]
        out.update(out[headline])
        out["headline_mode"] = headline
    for m in modes:  # after the headline copy: the top-level loss stays the batches' own
        out.setdefault(m, {}).update(loss=mode_tf[m][0] / max(1, n_tok),
                                     token_accuracy=mode_tf[m][1] / max(1, n_tok))
    out["seconds"] = time.perf_counter() - t0
    return out


def aesthetic_metrics(preds: list[list[Box]], gts: list[list[Box]], aesthetics=None) -> dict:
    """`aesthetic` (mean score of the generated layouts, eval/aesthetic.py), `aesthetic_reference`
    (the same for the true layouts), both scores' parts, and `forbidden_overlap` (and its
    `_reference`): the overlap between elements that may not overlap (`overlap` counts every pair,
    a child inside its card too)."""
    from layoutray.eval.aesthetic import aesthetic_summary

    gen, ref = aesthetic_summary(preds, aesthetics), aesthetic_summary(gts, aesthetics)
    return {"aesthetic": gen["score"], "aesthetic_reference": ref["score"],
            "aesthetic_parts": gen["parts"], "aesthetic_reference_parts": ref["parts"],
            "forbidden_overlap": gen["forbidden_overlap"], "forbidden_overlap_reference": ref["forbidden_overlap"]}


def evaluate_artifact(model_dir: str, data_dir: str, split: str = "test", limit: int = 0,
                      batch_size: int = 32, device: str = "auto", augmented: bool = False,
                      steps: int | None = None, constraints: str | None = None) -> dict:
    """device "auto": the GPU when this process has one (generating a test split of a Phase 4
    model on the CPU takes minutes), else the CPU.

    augmented=True scores the split with the training augmentations applied (mirror, jitter, noise,
    blur, element dropout at the model config's data.strength; fixed seed): how robust the model is
    to wireframes drawn less exactly than the synthetic test's.

    steps: a diffusion model's sampling steps K (None: model.diffusion_steps). The result names
    the `decoder` and the `steps` used (None for an autoregressive model).

    constraints: the aesthetic level to generate at (off, basic, full, advanced; None: the model's
    model.aesthetic_constraints); the result names it as `constraints`."""
    from layoutray.model.predictor import load as load_predictor
    from layoutray.data.batches import BadRowReport, iter_local_batches, on_device

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = load_predictor(model_dir, device=device)
    cfg = predictor.cfg
    T = cfg.model.diffusion_steps
    if steps is not None and cfg.model.decoder == "diffusion" and not 1 <= steps <= T:
        from layoutray.config import ConfigError
        raise ConfigError("steps", f"must be in [1, {T}] (the model's diffusion_steps); got {steps}")
    report = BadRowReport()
    if augmented:  # every epoch augmented, whatever clean epochs the model trained with
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, clean_epochs=0))
    batches = iter_local_batches(data_dir, split, cfg, batch_size, train=augmented, seed=AUGMENT_SEED,
                                 report=report)
    if limit:
        batches = _limit(batches, limit)
    level = check_level(constraints or cfg.model.aesthetic_constraints, "--constraints")
    out = evaluate_batches(predictor.model, predictor.tokenizer, on_device(batches, device),
                           max_elements=cfg.model.max_elements, steps=steps, constraints=level,
                           aesthetics=cfg.model.aesthetics)
    out["constraints"] = level
    diffusion = cfg.model.decoder == "diffusion"
    out.update(decoder=cfg.model.decoder,
               steps=min(steps or cfg.model.diffusion_steps, cfg.model.diffusion_steps) if diffusion else None)
    out.update(model=str(model_dir), data=str(data_dir), split=split, phase=cfg.phase, device=str(device),
               bad_rows=report.to_dict(), augmented=augmented)
    return out


def _limit(batches: Iterable[dict], limit: int):
    seen = 0
    for b in batches:
        if seen >= limit:
            return
        n = min(b["tokens"].shape[0], limit - seen)
        yield {k: (v[:n] if torch.is_tensor(v) and v.dim() > 0 else v) for k, v in b.items()}
        seen += n


def format_metrics(m: dict) -> str:
    lines = [f"examples {m['examples']}  loss {m['loss']:.4f}  token_accuracy {m['token_accuracy']:.4f}"]
    for mode in MODES:
        if mode in m:
            r, parts = m[mode], []
            if "loss" in r:  # teacher-forced, conditioned as this mode
                parts.append(f"loss {r['loss']:.4f}")
            if "element_f1@0.5" in r:
                parts.append(f"F1@0.5 {r['element_f1@0.5']:.3f}  F1@0.75 {r['element_f1@0.75']:.3f}  "
                             f"mIoU {r['mean_iou']:.3f}  align {r['alignment']:.4f} (data {r['alignment_reference']:.4f})  "
                             f"overlap {r['overlap']:.4f} (data {r['overlap_reference']:.4f})  validity {r['validity']:.3f}")
            if "aesthetic" in r:
                parts.append(f"aesthetic {r['aesthetic']:.3f} (data {r['aesthetic_reference']:.3f})")
            if "max_iou" in r:
                fid = "n/a" if r.get("fid") is None else f"{r['fid']:.3f}"
                parts.append(f"maxIoU {r['max_iou']:.3f}  FID {fid}")
            lines.append(f"  {mode:>5}: " + "  ".join(parts))
    headline = m.get("headline_mode")
    per_type = m.get(headline, {}).get("per_type@0.5") if headline else None
    if per_type:
        lines.append(f"  F1@0.5 per element type ({headline}; true count): "
                     + ", ".join(f"{t} {r['f1']:.2f} ({r['true']})" for t, r in per_type.items()))
    misses = m.get(headline, {}).get("misses") if headline else None
    if misses:
        err = misses["abs_error"]
        lines.append(f"  true elements by IoU of their match ({headline}): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in misses["bands"].items())
                     + f"; misses that overlap are off by x {err['x']:.3f} y {err['y']:.3f} "
                       f"w {err['w']:.3f} h {err['h']:.3f} of the canvas")
    return "\n".join(lines)
