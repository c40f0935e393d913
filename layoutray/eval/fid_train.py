"""Training the layout FID network (`layoutray.eval.fid`) on synthetic layouts, the way
LayoutGAN++ trains its FID network (Kikuchi et al., ACM MM 2021; const_layout
`model/layoutnet.py`, and LayoutDM's `fid/train.py`): self-supervised, with two tasks on top of
the layout feature

* tell real layouts from noised ones: half of each batch gets Gaussian noise on every box
  coordinate (BCE on a linear head), which makes the feature sensitive to the small
  misplacements that separate a plausible layout from a sloppy one;
* reconstruct the layout from the feature alone: a one-layer transformer over per-element rank
  queries (the feature plus a learned embedding of the element's place in reading order)
  predicts each element's type (cross-entropy) and box (10 x squared error, as LayoutDM), which
  makes the feature keep the types and geometry of the whole layout.

Only the feature network is shipped; the heads exist only here.

    python -m layoutray.eval.fid_train          # rewrites layoutray/eval/assets/layout_fid.safetensors
    python -m layoutray.eval.fid_train --steps 20 --layouts 200 --out /tmp/fid.safetensors

Data: fresh layouts from `layoutray.data.synth.generate_layout` (all section types, element caps
of every phase), which costs well under a millisecond each. Deterministic for a seed and a thread
count. Changing the recipe changes every FID value: scores are comparable only under one file.
"""

from __future__ import annotations

import argparse
import math
import random
import time
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from layoutray.data.synth import example_rng, generate_layout
from layoutray.eval.fid import WEIGHTS, FeatureNetConfig, LayoutFeatureNet, save_feature_net
from layoutray.model.tokenizer import Box

ELEMENT_CAPS = (16, 24, 32, 48)  # the phases' max_elements: the network sees every layout size
DATA_SEED = 7001  # layouts of their own, not the seeds datasets are usually synthesised with
NOISE_STD = (0.005, 0.1)  # log-uniform per layout: from a bin or two of jitter to a visible mess
BINS = (0, 32, 64, 128, 256)  # 0: unquantised; real and noised layouts of a batch share one level
MAX_RANK = 64
BOX_WEIGHT = 10.0


def training_layouts(n: int, seed: int = DATA_SEED, start: int = 0) -> list[list[Box]]:
    """Layouts `start`..`start + n - 1` of the synthetic generator at `seed`, in reading order
    (top to bottom, then left to right: the order the reconstruction ranks refer to)."""
    out = []
    for i in range(start, start + n):
        _, _, _, els = generate_layout(example_rng(seed, i), max_elements=ELEMENT_CAPS[i % len(ELEMENT_CAPS)])
        boxes = [Box(e["type"], e["x"], e["y"], e["w"], e["h"]) for e in els]
        out.append(sorted(boxes, key=lambda b: (b.y, b.x)))
    return out


class FIDTrainer(nn.Module):
    """The feature network plus its training heads (see the module docstring)."""

    def __init__(self, net: LayoutFeatureNet):
        super().__init__()
        cfg = net.cfg
        self.net = net
        self.disc = nn.Linear(cfg.d_model, 1)
        self.rank = nn.Embedding(MAX_RANK, cfg.d_model)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ff, dropout=0.0, batch_first=True)
        self.decoder = nn.TransformerEncoder(layer, 1, enable_nested_tensor=False)
        self.out_type = nn.Linear(cfg.d_model, len(net.element_types))
        self.out_box = nn.Linear(cfg.d_model, 4)

    def forward(self, types, boxes, pad):
        """(real/noised logit [B], type logits [B, N, T], boxes [B, N, 4] in [0, 1])."""
        feat = self.net(types, boxes, pad)
        n = types.shape[1]
        if n > MAX_RANK:
            raise ValueError(f"training layouts have at most {MAX_RANK} elements; got {n}")
        h = self.decoder(feat[:, None, :] + self.rank.weight[:n][None], src_key_padding_mask=pad)
        return self.disc(feat).squeeze(-1), self.out_type(h), torch.sigmoid(self.out_box(h))


def make_batch(net: LayoutFeatureNet, layouts: Sequence[Sequence[Box]], gen: torch.Generator) -> dict:
    """Tensors of `layouts` with a random half noised (`noised` True), all quantised alike."""
    types, boxes, pad = net.tensors(layouts)
    b = len(layouts)
    noised = torch.rand(b, generator=gen) < 0.5
    lo, hi = math.log(NOISE_STD[0]), math.log(NOISE_STD[1])
    std = torch.exp(lo + (hi - lo) * torch.rand(b, generator=gen))
    noisy = (boxes + torch.randn(boxes.shape, generator=gen) * std[:, None, None]).clamp(0.0, 1.0)
    boxes = torch.where(noised[:, None, None], noisy, boxes)
    # Generated and true layouts are read from quantised tokens; quantising both halves alike keeps
    # the bin grid from being a cue for "real".
    bins = BINS[int(torch.randint(len(BINS), (1,), generator=gen))]
    if bins:
        boxes = torch.round(boxes * (bins - 1)) / (bins - 1)
    return {"types": types, "boxes": boxes.masked_fill(pad[..., None], 0.0), "pad": pad, "noised": noised}


def losses(model: FIDTrainer, batch: dict) -> dict[str, torch.Tensor]:
    """{"loss", "bce", "type_ce", "box_se"} and the accuracies of both heads, for one batch."""
    logit, type_logits, box_pred = model(batch["types"], batch["boxes"], batch["pad"])
    keep = ~batch["pad"]
    target = batch["noised"].float()
    bce = F.binary_cross_entropy_with_logits(logit, target)
    type_ce = F.cross_entropy(type_logits[keep], batch["types"][keep])
    box_se = ((box_pred[keep] - batch["boxes"][keep]) ** 2).sum(-1).mean()
    return {"loss": bce + type_ce + BOX_WEIGHT * box_se, "bce": bce, "type_ce": type_ce, "box_se": box_se,
            "disc_acc": ((logit > 0).float() == target).float().mean(),
            "type_acc": (type_logits[keep].argmax(-1) == batch["types"][keep]).float().mean()}


@torch.no_grad()
def validate(model: FIDTrainer, layouts: Sequence[Sequence[Box]], seed: int, batch_size: int = 256) -> dict:
    """Mean of `losses` over held-out layouts (noise drawn from `seed`, so repeatable)."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {}
    n_batches = 0
    for start in range(0, len(layouts), batch_size):
        parts = losses(model, make_batch(model.net, layouts[start:start + batch_size], gen))
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n_batches += 1
    model.train()
    return {k: v / max(1, n_batches) for k, v in sums.items()}


def train(steps: int = 4000, batch_size: int = 64, n_layouts: int = 8000, n_val: int = 512, seed: int = 0,
          lr: float = 1e-3, cfg: FeatureNetConfig = FeatureNetConfig(), log_every: int = 250,
          log: Callable[[str], None] = print) -> tuple[LayoutFeatureNet, dict]:
    """Train a feature network; returns it (eval mode) and its recipe with held-out scores."""
    t0 = time.perf_counter()
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    layouts = training_layouts(n_layouts)
    val_layouts = training_layouts(n_val, start=n_layouts)
    model = FIDTrainer(LayoutFeatureNet(cfg))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, min(100, steps // 10))
    # Linear warm-up, then cosine decay to 0: a short schedule that ends settled.
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warmup, 0.5 * (
        1 + math.cos(math.pi * min(1.0, s / max(1, steps))))))
    order = random.Random(seed)
    perm: list[int] = []
    model.train()
    for step in range(1, steps + 1):
        if len(perm) < batch_size:
            perm += order.sample(range(len(layouts)), len(layouts))
        idx, perm = perm[:batch_size], perm[batch_size:]
        parts = losses(model, make_batch(model.net, [layouts[i] for i in idx], gen))
        opt.zero_grad()
        parts["loss"].backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and step % log_every == 0:
            log(f"step {step}/{steps}  " + "  ".join(f"{k} {float(v.detach()):.4f}" for k, v in parts.items())
                + f"  {time.perf_counter() - t0:.0f}s")
    val = validate(model, val_layouts, seed + 1)
    recipe = {"steps": steps, "batch_size": batch_size, "layouts": n_layouts, "data_seed": DATA_SEED,
              "seed": seed, "lr": lr, "noise_std": list(NOISE_STD), "bins": list(BINS),
              "element_caps": list(ELEMENT_CAPS), "threads": torch.get_num_threads(),
              "seconds": round(time.perf_counter() - t0, 1), "validation": {k: round(v, 5) for k, v in val.items()}}
    return model.net.eval().requires_grad_(False), recipe


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m layoutray.eval.fid_train", description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--layouts", type=int, default=8000, help="training layouts (512 more are held out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (results depend on it)")
    p.add_argument("--out", default=str(WEIGHTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    net, recipe = train(args.steps, args.batch_size, args.layouts, seed=args.seed, lr=args.lr)
    save_feature_net(net, args.out, recipe)
    n_params = sum(t.numel() for t in net.state_dict().values())
    print(f"wrote {args.out}: {n_params} parameters, {recipe['seconds']}s; held out: {recipe['validation']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
