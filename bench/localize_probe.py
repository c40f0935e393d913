"""How fast does the layout model learn to read ONE box's position from a wireframe?

    .venv/bin/python bench/localize_probe.py [--steps 2000] [--every 250] [--set model.patch_size=16 ...]
    .venv/bin/python bench/localize_probe.py --set training.dense_weight=0   # without the dense head

The diagnostic behind docs/quality.md's "Model choices that matter for quality": strip the task
to one outlined box on a blank canvas, image only, a fresh random box every example (no data
prior to lean on, no overfitting), and watch the coordinate error fall. A model that cannot do
this quickly cannot reach F1@0.5 >= 0.95 on real sections either, whatever the data.

Scored on 256 held-out boxes, teacher-forced: the argmax of each coordinate given the true
preceding tokens, in coordinate bins (1/127 of the canvas), and the IoU of the box so read.
Baseline in the same run: the best constant answer (the median of each coordinate over the
held-out boxes), which is what a model that ignores the image converges to.
Prints JSON and writes bench/results/localize_probe.json (bench/jsonout.py);
`ratio_error_vs_prior` < 1 means the model reads the image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from jsonout import BenchRun, add_result_args, args_config, reserve_stdout  # noqa: E402

from layoutray.config import load_config  # noqa: E402
from layoutray.eval.metrics import box_iou  # noqa: E402
from layoutray.model.network import build_model, count_parameters, training_losses  # noqa: E402
from layoutray.model.tokenizer import NULL, Box, LayoutTokenizer  # noqa: E402

LINE = 2  # outline width in model pixels (the synthetic renderer's card borders are ~1-2 px)


def boxes_batch(rng: np.random.Generator, tok: LayoutTokenizer, n: int, height: int, width: int):
    """n images [n, 1, H, W] with one outlined box each, and their layout tokens [n, 7]."""
    images = np.zeros((n, 1, height, width), np.float32)
    tokens = []
    for i in range(n):
        w, h = rng.uniform(0.05, 0.5, size=2)
        x, y = rng.uniform(0, 1 - w), rng.uniform(0, 1 - h)
        x0, x1, y0, y1 = int(x * width), int((x + w) * width), int(y * height), int((y + h) * height)
        img = images[i, 0]
        img[y0:y1, x0:x0 + LINE] = img[y0:y1, x1 - LINE:x1] = 1.0
        img[y0:y0 + LINE, x0:x1] = img[y1 - LINE:y1, x0:x1] = 1.0
        tokens.append(tok.encode_layout([Box("card", x0 / width, y0 / height, (x1 - x0) / width,
                                             (y1 - y0) / height)]))
    return torch.from_numpy(images), torch.tensor(tokens)


def score(pred_bins: np.ndarray, true_bins: np.ndarray, tok: LayoutTokenizer) -> dict:
    err = np.abs(pred_bins - true_bins)
    ious = np.array([box_iou(Box("card", *(p / (tok.bins - 1))), Box("card", *(t / (tok.bins - 1))))
                     for p, t in zip(pred_bins, true_bins)])
    return {"mean_abs_error_bins": dict(zip("xywh", np.round(err.mean(0), 2).tolist())),
            "mean_abs_error": round(float(err.mean()), 2),
            "within_1_bin": round(float((err <= 1).mean()), 3),
            "iou@0.5": round(float((ious >= 0.5).mean()), 3), "iou@0.75": round(float((ious >= 0.75).mean()), 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--every", type=int, default=250, help="score every N steps")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="Phase 1 config override, e.g. model.patch_size=16")
    add_result_args(ap)
    args = ap.parse_args()
    json_out = reserve_stdout()
    run = BenchRun("localize_probe", tag=args.tag, results_dir=args.results_dir)

    torch.set_num_threads(args.threads)
    # Plain token targets (coord_sigma 0) whatever the phase config says, so that every result of
    # the probe is measured the same way; the dense head follows the phase config.
    cfg = load_config(phase="phase1", overrides=["training.dropout=0.0", "training.coord_sigma=0", *args.set])
    m = cfg.model
    tok = LayoutTokenizer(bins=m.coord_bins)
    torch.manual_seed(args.seed)
    model = build_model(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    train_rng, eval_rng = np.random.default_rng([args.seed, 0]), np.random.default_rng([args.seed, 1])
    eval_img, eval_tok = boxes_batch(eval_rng, tok, 256, m.image_height, m.image_width)
    true_bins = (eval_tok[:, 2:6] - tok.coord_offset).numpy()
    prior = score(np.broadcast_to(np.median(true_bins, axis=0).round(), true_bins.shape), true_bins, tok)

    def evaluate() -> dict:
        model.eval()
        with torch.no_grad():
            spec = torch.full((len(eval_tok), 1), NULL)
            logits = model(eval_img, torch.ones(len(eval_tok), dtype=torch.bool), spec, eval_tok[:, :-1])
            coord = logits[:, 1:5, tok.coord_offset:]  # positions predicting x, y, w, h
            loss = float(model.loss(logits, eval_tok[:, 1:]))
        model.train()
        return {"loss": round(loss, 4), **score(coord.argmax(-1).numpy(), true_bins, tok)}

    curve, t0 = [], time.perf_counter()
    model.train()
    for step in range(args.steps + 1):
        if step % args.every == 0:
            curve.append({"step": step, "seconds": round(time.perf_counter() - t0, 1), **evaluate()})
            print(json.dumps(curve[-1]), file=sys.stderr, flush=True)
        if step == args.steps:
            break
        images, tokens = boxes_batch(train_rng, tok, args.batch_size, m.image_height, m.image_width)
        spec, has_image = torch.full((args.batch_size, 1), NULL), torch.ones(args.batch_size, dtype=torch.bool)
        t = cfg.training  # with phase 1's dense head unless --set training.dense_weight=0
        out = model(images, has_image, spec, tokens[:, :-1], dense=t.dense_weight > 0)
        objective, _, _ = training_losses(model, out, tokens, has_image, t)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()

    last = curve[-1]
    config = {**args_config(args), "parameters": count_parameters(cfg), "patch_size": m.patch_size,
              "coord_bins": m.coord_bins, "image": [m.image_height, m.image_width],
              "dense_weight": cfg.training.dense_weight}
    run.finish(json_out, config=config, figures={
        "what": "one outlined box on a blank canvas, image only: teacher-forced coordinate error",
        "prior_baseline": prior, "final": last,
        "ratio_error_vs_prior": round(last["mean_abs_error"] / max(prior["mean_abs_error"], 1e-9), 3),
        "curve": curve,
    })

if __name__ == "__main__":
    main()
