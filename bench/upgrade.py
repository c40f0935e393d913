"""Phase upgrade: does a grown Phase 2 model start where the Phase 1 model ended, and train faster?

    python bench/upgrade.py --shrink 2 --threads 1 --parent-steps 500 --steps 300 --eval-every 20 \
        --examples 480 --val-batches 3 --noise-arm 0.1 --plot bench/results/upgrade.png \
        --trained-model runs/quality/03-polish/model

A Phase 1 model (the parent) is trained for --parent-steps on synthetic sections. Then the same
Phase 2 model is trained for --steps on the same batches, in the same order, from each start:
(a) scratch: a fresh initialisation; (b) copy: the parent's weights copied where shapes fit, the
rest fresh (`upgrade_state_dict(method="copy")`); (c) preserve: function-preserving growth
(layoutray.model.growth) with split heads and units (the default); (c') the same with
zero-initialised new heads and units (`units="zero"`); with --noise-arm X, (c'') split units with
symmetry-breaking noise X. Every --eval-every steps each arm's teacher-forced validation loss is
measured on the same validation sections. Figures: each arm's loss right after the upgrade (vs the
parent's), the steps and training seconds each arm needs to reach (a)'s final validation loss, the
loss right after growth at several noise levels, and the preserved error: phase1 -> phase2 as
`layoutray upgrade` grows it by default (the parent's patch and image size: exact), and where the
vision tokens are resampled (`--vision phase`): phase1 -> phase2 (patch 32 -> 16) and phase2 ->
phase3 (image size). --trained-model DIR adds the same two measurements for a trained Phase 1
artifact at its full size (on `layoutray upgrade`'s own sample), where resampling costs most.

The phase ladder is used as the phase files give it (element caps, the ratios of widths, heads and
depths; the Phase 2 arms keep the parent's patch, as the upgrade does), scaled for a CPU: --shrink
K divides every phase's d_model, heads and layers by K (head size kept), images are smaller (96x160
for Phases 1-2, 128x224 for Phase 3), and the learning rate and dropout suit a run of a few hundred
steps; all recorded under `config`.
Writes bench/results/upgrade[-TAG].json; --plot draws the validation curves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jsonout import BenchRun, add_result_args, reserve_stdout  # noqa: E402

COMMON = ["training.dropout=0.1", "model.image_height=96", "model.image_width=160"]
PARENT = ["training.learning_rate=1e-3"]
CHILD = ["training.learning_rate=5e-4"]
PHASE3 = ["model.image_height=128", "model.image_width=224"]  # the same 4:7-ish step as 192x320 -> 256x448
NOISE_LEVELS = (0.0, 0.001, 0.01, 0.1)


def log(msg: str) -> None:
    print(f"[upgrade] {msg}", file=sys.stderr, flush=True)


def shrink(phase: str, k: int) -> list[str]:
    """Overrides dividing a phase's d_model, heads and layers by k (head size and the ratios
    between phases kept): a CPU-sized copy of the phase ladder."""
    from layoutray.config import load_config

    m = load_config(phase=phase).model
    return [] if k == 1 else [f"model.d_model={m.d_model // k}", f"model.n_heads={m.n_heads // k}",
                              f"model.n_layers={max(1, m.n_layers // k)}"]


def configs(args):
    from layoutray.config import load_config

    p1 = load_config(phase="phase1", overrides=COMMON + PARENT + shrink("phase1", args.shrink) + args.set)
    p2v = load_config(phase="phase2", overrides=COMMON + CHILD + shrink("phase2", args.shrink) + args.set)
    patch = [f"model.patch_size={p1.model.patch_size}"]  # the parent's, as `layoutray upgrade` keeps it
    p2 = load_config(phase="phase2", overrides=COMMON + CHILD + shrink("phase2", args.shrink) + patch + args.set)
    p3 = load_config(phase="phase3", overrides=COMMON + CHILD + PHASE3 + shrink("phase3", args.shrink) + patch
                     + args.set)
    return p1, p2, p2v, p3


def batches(cfg, data: Path, split: str, n: int, bs: int, train: bool) -> list[dict]:
    """n batches of `split` (train: reshuffled and augmented per epoch, as training sees them)."""
    from layoutray.data.batches import iter_local_batches

    out, epoch = [], 0
    while len(out) < n:
        before = len(out)
        for b in iter_local_batches(data, split, cfg, bs, train=train, seed=cfg.training.seed, epoch=epoch,
                                    drop_last=train):
            out.append(b)
            if len(out) == n:
                break
        if not train or len(out) == before:
            break
        epoch += 1
    return out


def val_loss(model, val: list[dict]) -> float:
    from layoutray.eval.evaluate import teacher_forced

    model.eval()
    tot = n = 0
    for b in val:
        loss, k, _ = teacher_forced(model, b)
        tot, n = tot + loss, n + k
    return tot / n


def train(model, cfg, train_b: list[dict], val: list[dict], every: int, name: str) -> list[dict]:
    """Train on train_b (bare loop, the training loop's optimiser, schedule and loss); the curve
    [{"step", "seconds" (training only), "val_loss"}], measured every `every` steps."""
    import torch

    from layoutray.model.network import training_losses
    from layoutray.schedules import lr_lambda_from_config
    from layoutray.training.loop import make_optimizer

    opt = make_optimizer(model, cfg.training)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda_from_config(cfg.schedule, len(train_b)))
    t = cfg.training
    curve, seconds = [{"step": 0, "seconds": 0.0, "val_loss": val_loss(model, val)}], 0.0
    for step, b in enumerate(train_b, 1):
        model.train()
        t0 = time.perf_counter()
        tokens = b["tokens"]
        out = model(b["image"], b["has_image"], b["spec"], tokens[:, :-1], dense=t.dense_weight > 0)
        objective, _, _ = training_losses(model, out, tokens, b["has_image"], t)
        opt.zero_grad(set_to_none=True)
        objective.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
        opt.step()
        sched.step()
        seconds += time.perf_counter() - t0
        if step % every == 0 or step == len(train_b):
            curve.append({"step": step, "seconds": round(seconds, 2), "val_loss": val_loss(model, val)})
            log(f"{name}: step {step} val {curve[-1]['val_loss']:.4f} ({seconds:.0f}s)")
    return curve


def reach(curve: list[dict], target: float) -> dict:
    """First measured point at or below target: its step and training seconds (None: never)."""
    hit = next((p for p in curve if p["val_loss"] <= target), None)
    return {"steps": hit and hit["step"], "seconds": hit and hit["seconds"]}


def grown_model(sd_cfg_pairs, method: str, noise: float = 0.0, units: str = "split"):
    from layoutray.model.network import build_model, load_weights
    from layoutray.model.upgrade import upgrade_state_dict

    (old_sd, old_cfg), new_cfg = sd_cfg_pairs
    sd, report = upgrade_state_dict(old_sd, old_cfg, new_cfg, method=method, noise=noise, units=units)
    model = build_model(new_cfg)
    load_weights(model, sd)
    return model, report


def preserved(old_sd, old_cfg, new_cfg, data: Path, args) -> dict:
    """Validation loss of a model and its growth into new_cfg, each on the same sections at its
    own input size."""
    from layoutray.model.network import build_model, load_weights

    old = build_model(old_cfg, dropout=0.0)
    load_weights(old, old_sd)
    new, report = grown_model(((old_sd, old_cfg), new_cfg), "preserve")
    a = val_loss(old, batches(old_cfg, data, "val", args.val_batches, args.batch_size, False))
    b = val_loss(new, batches(new_cfg, data, "val", args.val_batches, args.batch_size, False))
    return {"old": a, "new": b, "relative_change": (b - a) / a, "approximations": report["approximations"]}


def trained_errors(model_dir: str) -> dict:
    """`layoutray upgrade`'s own measurement of a trained artifact grown into Phase 2, with the
    parent's vision (the default) and with the phase's."""
    from layoutray.model.artifact import read_artifact
    from layoutray.model.upgrade import approximations, measure, target_config, upgrade_state_dict

    sd, cfg, _ = read_artifact(model_dir)
    out = {}
    for vision in ("parent", "phase"):
        new_cfg = target_config(cfg, "phase2", vision=vision)
        grown, _ = upgrade_state_dict(sd, cfg, new_cfg)
        m = measure(sd, cfg, grown, new_cfg)
        out[f"trained model, phase1 to phase2, {vision}'s vision"] = {
            "old": m["old"]["both"], "new": m["new"]["both"], "relative_change": m["relative_change"],
            "modes": {k: (m["new"][k] - m["old"][k]) / m["old"][k] for k in ("both", "image", "spec")},
            "approximations": approximations(cfg.model, new_cfg.model, 0.0), "model": model_dir}
        log(f"trained model, {vision}'s vision: {100 * m['relative_change']:+.3f}%")
    return out


def plot(curves: dict[str, list[dict]], parent: float, target: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for name, curve in curves.items():
        ax.plot([p["step"] for p in curve], [p["val_loss"] for p in curve], marker=".", label=name)
    ax.axhline(parent, color="grey", ls=":", label="Phase 1 parent")
    ax.axhline(target, color="black", ls="--", lw=0.8, label="scratch final")
    ax.set_xlabel("Phase 2 training steps")
    ax.set_ylabel("validation loss (teacher-forced)")
    ax.set_title("Phase 1 -> Phase 2: scratch vs partial copy vs function-preserving growth")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--parent-steps", type=int, default=400, help="Phase 1 training steps of the parent")
    ap.add_argument("--steps", type=int, default=240, help="Phase 2 training steps of each arm")
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--examples", type=int, default=800, help="synthetic sections (80/10/10 split)")
    ap.add_argument("--val-batches", type=int, default=8, help="validation batches measured")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--noise-arm", type=float, default=0.0, help="also train from growth with this noise")
    ap.add_argument("--shrink", type=int, default=1, help="divide every phase's d_model, heads and layers by this")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    ap.add_argument("--plot", metavar="PNG", help="draw the validation curves")
    ap.add_argument("--trained-model", metavar="DIR", help="also measure the growth of this Phase 1 artifact")
    add_result_args(ap)
    return ap.parse_args()


def run_arms(args, p1, p2, parent_sd, data: Path) -> tuple[dict, dict]:
    import torch

    from layoutray.model.network import build_model

    train_b = batches(p2, data, "train", args.steps, args.batch_size, True)
    val = batches(p2, data, "val", args.val_batches, args.batch_size, False)
    starts = {"scratch": None, "copy": ("copy", 0.0, "split"), "preserve": ("preserve", 0.0, "split"),
              "preserve-zero-units": ("preserve", 0.0, "zero")}
    if args.noise_arm:
        starts[f"preserve+noise{args.noise_arm:g}"] = ("preserve", args.noise_arm, "split")
    curves, reports = {}, {}
    for name, how in starts.items():
        torch.manual_seed(p2.training.seed)
        if how is None:
            model = build_model(p2)
        else:
            model, reports[name] = grown_model(((parent_sd, p1), p2), *how)
        curves[name] = train(model, p2, train_b, val, args.eval_every, name)
        if name == "preserve":
            reports["preserve_final_sd"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return curves, reports


def summarise(curves: dict, steps: int, parent_curve: list[dict], reports: dict, errors: dict, noise: dict,
              load_arms: list[float]) -> dict:
    """The figures: each arm against the scratch arm's final validation loss, and the rest."""
    target = curves["scratch"][-1]["val_loss"]
    arms = {}
    for name, c in curves.items():
        hit = reach(c, target)
        arms[name] = {"start_val_loss": c[0]["val_loss"], "final_val_loss": c[-1]["val_loss"],
                      "to_scratch_final": hit, "steps_fraction": None if hit["steps"] is None else hit["steps"] / steps,
                      "seconds_total": c[-1]["seconds"], "curve": c}
    keep = ("method", "units", "carried_fraction", "exact", "approximations")
    fraction = arms["preserve"]["steps_fraction"]
    return {"parent": {"val_loss": parent_curve[-1]["val_loss"], "curve": parent_curve}, "target_val_loss": target,
            "arms": arms, "reports": {k: {kk: v[kk] for kk in keep if kk in v} for k, v in reports.items()},
            "preserved_error": errors, "noise_start_val_loss": noise, "goal_steps_fraction_max": 0.6,
            "goal_met": fraction is not None and fraction <= 0.6, "loadavg_arms": load_arms}


def main() -> int:
    import os

    import torch

    from layoutray.data.synth import synthesize
    from layoutray.model.network import build_model

    args = parse_args()
    out = reserve_stdout()
    run = BenchRun("upgrade", tag=args.tag, results_dir=args.results_dir)
    torch.set_num_threads(args.threads)
    p1, p2, p2v, p3 = configs(args)
    with tempfile.TemporaryDirectory(prefix="bench-upgrade-") as tmp:
        data = Path(tmp) / "data"
        synthesize(data, args.examples, seed=0)
        torch.manual_seed(p1.training.seed)
        parent = build_model(p1)
        val1 = batches(p1, data, "val", args.val_batches, args.batch_size, False)
        parent_curve = train(parent, p1, batches(p1, data, "train", args.parent_steps, args.batch_size, True),
                             val1, args.parent_steps // 4 or 1, "parent")
        parent_sd = {k: v.detach().clone() for k, v in parent.state_dict().items()}
        load_arms = [os.getloadavg()[0]]
        curves, reports = run_arms(args, p1, p2, parent_sd, data)
        load_arms.append(os.getloadavg()[0])
        errors = {"phase1 to phase2, parent's vision (the default)": preserved(parent_sd, p1, p2, data, args),
                  "phase1 to phase2, --vision phase": preserved(parent_sd, p1, p2v, data, args),
                  "phase2 to phase3, --vision phase": preserved(reports.pop("preserve_final_sd"), p2, p3, data, args)}
        if args.trained_model:
            errors.update(trained_errors(args.trained_model))
        val2 = batches(p2, data, "val", args.val_batches, args.batch_size, False)
        noise = {str(x): val_loss(grown_model(((parent_sd, p1), p2), "preserve", x)[0], val2)
                 for x in NOISE_LEVELS}
    figures = summarise(curves, args.steps, parent_curve, reports, errors, noise, load_arms)
    if args.plot:
        plot(curves, figures["parent"]["val_loss"], figures["target_val_loss"], Path(args.plot))
    run.finish(out, config={**{k: v for k, v in vars(args).items() if k not in ("tag", "results_dir")},
                            "overrides": {"common": COMMON, "parent": PARENT, "child": CHILD, "phase3": PHASE3,
                                          "shrink": {p: shrink(p, args.shrink) for p in ("phase1", "phase2", "phase3")}},
                            "models": {c.phase: {k: getattr(c.model, k) for k in ("d_model", "n_heads", "n_layers",
                                       "ff_mult", "patch_size", "image_height", "image_width", "max_elements")}
                                       for c in (p1, p2, p3)} | {"phase2 --vision phase": {
                                       k: getattr(p2v.model, k) for k in ("patch_size", "image_height", "image_width")}},
                            "device": "cpu", "torch_threads": args.threads}, figures=figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
