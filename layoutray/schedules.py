"""Training schedules: learning rate, batch size, training phases, regularisation, sampler weights.

Everything here is a pure function of training progress (step t of T total steps), so a resumed
run gets exactly the values an uninterrupted run would have had, and `layoutray schedule show`
can print a schedule before any compute is spent. Formulas, and which ones are the seed's (002)
and which are ours, are in docs/schedules.md.

    lr_at("phi_decay", step=50, total_steps=100, base_lr=1e-3)     # 1e-3 * phi^-0.5
    scheduler = make_torch_scheduler(optimizer, "warmup_cosine", total_steps=1000, warmup_steps=50)
    deepspeed.initialize(..., lr_scheduler=lambda opt: make_torch_scheduler(opt, ...))
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Callable, Sequence

from layoutray.config import ConfigError

PHI = (1 + math.sqrt(5)) / 2  # 1.6180339887...; the seed's 1.618033988749 agrees to 1e-12
INV_PHI = 1 / PHI  # 0.618...
INV_PHI_SQUARED = 1 / PHI ** 2  # 0.381966... = 1 - 1/phi


# ---------------------------------------------------------------------------- learning rate
# Every schedule is lr(t, T, base, W, **kw) and linear in `base`, so lr(..., base=1) is the
# multiplier a torch LambdaLR wants. t is clamped to [0, T] by `lr_at`.


def _linear_warmup(t: float, warmup: int) -> float:
    # Hugging Face warmup: step / max(1, warmup), 0 at step 0.
    return t / max(1, warmup)


def constant(t, T, base, warmup=0, **_):
    """base; with warmup, HF get_constant_schedule_with_warmup (linear 0 -> base over W)."""
    return base * _linear_warmup(t, warmup) if t < warmup else base


def phi_decay(t, T, base, warmup=0, **_):
    """Seed: base * phi^(-t/T). Ends at base/phi (0.618 base). Ignores warmup (the seed has none)."""
    return base * PHI ** (-t / T)


def phi_warmup(t, T, base, warmup=0, **_):
    """Seed, exactly: base * (1 - phi^(-t/W)), for every t (no switch at W).

    Reaches only 1 - 1/phi = 0.382 of base at t = W, 0.618 at 2W, 0.764 at 3W, approaching base
    but never reaching it.
    """
    if warmup <= 0:
        raise ConfigError("schedule.warmup_fraction", "phi_warmup needs warmup steps > 0 (it divides by W); set --warmup or schedule.warmup_fraction")
    return base * (1 - PHI ** (-t / warmup))


def phi_warmup_normalized(t, T, base, warmup=0, **_):
    """Ours: the seed's warmup rescaled to reach base at W, then a phi decay over the rest.

        t <= W:  base * (1 - phi^(-t/W)) / (1 - 1/phi)  =  base * phi^2 * (1 - phi^(-t/W))
        t >  W:  base * phi^(-(t - W)/(T - W))          (base at W, base/phi at T)
    """
    if warmup <= 0:
        raise ConfigError("schedule.warmup_fraction", "phi_warmup_normalized needs warmup steps > 0; set --warmup or schedule.warmup_fraction")
    if t <= warmup:
        return base * (1 - PHI ** (-t / warmup)) / INV_PHI_SQUARED
    return base * PHI ** (-(t - warmup) / max(1, T - warmup))


def phi_cosine(t, T, base, warmup=0, **_):
    """Seed, exactly: base * (1 + cos(pi t/T)) / 2 * (1/phi). Peaks at base/phi, ends at 0."""
    return base * (1 + math.cos(math.pi * t / T)) / 2 * INV_PHI


def phi_cycle_bounds(T: float, cycles: int) -> list[float]:
    """Start of each cycle plus T: lengths L, L*phi, L*phi^2 ... with L = T / sum(phi^i)."""
    first = T / sum(PHI ** i for i in range(cycles))
    bounds, at = [0.0], 0.0
    for i in range(cycles):
        at += first * PHI ** i
        bounds.append(at)
    bounds[-1] = float(T)  # the cycles tile T exactly, whatever the rounding
    return bounds


def phi_cosine_cycles(t, T, base, warmup=0, cycles: int = 3, decay_peaks: bool = False, **_):
    """Ours (the seed names "cosine annealing with phi-proportioned cycles" without a formula).

    `cycles` cosine cycles (restart to the peak at each start) whose lengths grow by phi and tile
    T exactly. Cycle c (0-based) with local progress u in [0, 1):
        lr = peak_c * (1 + cos(pi u)) / 2,  peak_c = base (or base * phi^(-c) with decay_peaks)
    Ends at 0 at t = T. No 1/phi factor: the peak is base.
    """
    if cycles < 1:
        raise ConfigError("schedule.lr", "phi_cosine_cycles needs cycles >= 1")
    bounds = phi_cycle_bounds(T, cycles)
    c = min(bisect.bisect_right(bounds, t) - 1, cycles - 1)
    u = (t - bounds[c]) / (bounds[c + 1] - bounds[c])
    peak = base * PHI ** (-c) if decay_peaks else base
    return peak * (1 + math.cos(math.pi * u)) / 2


def warmup_cosine(t, T, base, warmup=0, min_lr_ratio: float = 0.0, **_):
    """HF get_cosine_schedule_with_warmup (num_cycles=0.5), with HF's min_lr_rate option:

        t < W: base * t / max(1, W)
        else:  base * (r + (1 - r) * (1 + cos(pi p)) / 2),  p = (t - W) / max(1, T - W)
    """
    if t < warmup:
        return base * _linear_warmup(t, warmup)
    p = (t - warmup) / max(1, T - warmup)
    factor = 0.5 * (1 + math.cos(math.pi * p))
    return base * max(0.0, factor * (1 - min_lr_ratio) + min_lr_ratio)


def warmup_linear(t, T, base, warmup=0, **_):
    """HF get_linear_schedule_with_warmup: linear 0 -> base over W, then linear to 0 at T."""
    if t < warmup:
        return base * _linear_warmup(t, warmup)
    return base * max(0.0, (T - t) / max(1, T - warmup))


def step(t, T, base, warmup=0, milestones: tuple[float, ...] = (0.5, 0.75), gamma: float = 0.1, **_):
    """Step decay: x gamma (0.1) at each milestone fraction of T (1/2 and 3/4), after an optional
    HF linear warmup: base, then base/10 from T/2, base/100 from 3T/4."""
    if t < warmup:
        return base * _linear_warmup(t, warmup)
    drops = sum(1 for m in milestones if t >= m * T)
    return base * gamma ** drops


def one_cycle(t, T, base, warmup=0, div_factor: float = 25.0, final_div_factor: float = 1e4, **_):
    """The shape of torch's OneCycleLR (anneal_strategy "cos", two phases, pct_start = W / T; torch
    puts the peak at step pct_start * (T + 1) - 1, here it is at W exactly): cosine
    from base/div_factor up to base over W steps, then cosine down to base/(div_factor *
    final_div_factor) at T. With W = 0 it starts at base."""
    start, end = base / div_factor, base / (div_factor * final_div_factor)
    if t < warmup:
        return start + (base - start) * (1 - math.cos(math.pi * t / warmup)) / 2
    p = (t - warmup) / max(1, T - warmup)
    return end + (base - end) * (1 + math.cos(math.pi * p)) / 2


LR_SCHEDULES: dict[str, Callable[..., float]] = {
    "constant": constant,
    "warmup_cosine": warmup_cosine,
    "warmup_linear": warmup_linear,
    "step": step,
    "one_cycle": one_cycle,
    "phi_decay": phi_decay,
    "phi_warmup": phi_warmup,
    "phi_warmup_normalized": phi_warmup_normalized,
    "phi_cosine": phi_cosine,
    "phi_cosine_cycles": phi_cosine_cycles,
}
BASELINES = ("constant", "warmup_cosine", "warmup_linear", "step", "one_cycle")
PHI_SCHEDULES = tuple(n for n in LR_SCHEDULES if n.startswith("phi_"))


def check_lr_schedule(name: str) -> Callable[..., float]:
    fn = LR_SCHEDULES.get(name)
    if fn is None:
        raise ConfigError("schedule.lr", f"unknown schedule {name!r}; allowed: {', '.join(LR_SCHEDULES)}")
    return fn


def _check_steps(total_steps: int, warmup_steps: int) -> None:
    if total_steps < 1:
        raise ConfigError("total_steps", f"must be >= 1; got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ConfigError("schedule.warmup_fraction", f"warmup steps must be in [0, {total_steps}]; got {warmup_steps}")


def lr_at(name: str, step: int, total_steps: int, base_lr: float, warmup_steps: int = 0, **kw) -> float:
    """Learning rate of schedule `name` at `step` (clamped to [0, total_steps])."""
    fn = check_lr_schedule(name)
    _check_steps(total_steps, warmup_steps)
    t = min(max(step, 0), total_steps)  # past T every schedule holds its final value
    return float(fn(t, total_steps, base_lr, warmup_steps, **kw))


def lr_lambda(name: str, total_steps: int, warmup_steps: int = 0, phi_phases: bool = False,
              phase_settings: dict[str, "PhaseSettings"] | None = None, **kw) -> Callable[[int], float]:
    """Multiplier of the optimizer's base LR at each step, for torch LambdaLR.

    With phi_phases the multiplier also includes the training phase's `lr` factor (see
    `PHASE_DEFAULTS`; 1.0 in both phases by default).
    """
    fn = check_lr_schedule(name)
    _check_steps(total_steps, warmup_steps)
    fn(0, total_steps, 1.0, warmup_steps, **kw)  # fail now, not at the first optimizer step

    def multiplier(step: int) -> float:
        m = lr_at(name, step, total_steps, 1.0, warmup_steps, **kw)
        if phi_phases:
            m *= phase_settings_at(step, total_steps, phase_settings).lr
        return m

    return multiplier


def make_torch_scheduler(optimizer, name: str, total_steps: int, warmup_steps: int = 0, **kw):
    """A torch LambdaLR over `optimizer`; fits DeepSpeed's `lr_scheduler=lambda opt: ...`."""
    from torch.optim.lr_scheduler import LambdaLR

    return LambdaLR(optimizer, lr_lambda(name, total_steps, warmup_steps, **kw))


def lr_lambda_from_config(schedule, total_steps: int) -> Callable[[int], float]:
    """lr_lambda for a `config.ScheduleConfig`: warmup = round(warmup_fraction * total_steps).

    A warmup that was asked for never rounds away to 0 steps on a short run: the phi warmups
    divide by it, and a run of 5 steps with warmup_fraction 0.05 still warms up for one."""
    warmup = round(schedule.warmup_fraction * total_steps)
    if schedule.warmup_fraction > 0:
        warmup = min(total_steps, max(1, warmup))
    kw = {"min_lr_ratio": schedule.min_lr_ratio} if schedule.lr == "warmup_cosine" else {}
    return lr_lambda(schedule.lr, total_steps, warmup, phi_phases=schedule.phi_phases,
                     phase_settings=phase_settings_from_config(schedule), **kw)


# ---------------------------------------------------------------------------- batch size


def phase_index(step: int, total_steps: int, phases: int) -> int:
    """Which of `phases` EQUAL parts of training `step` is in: 0 .. phases-1 (0 if phases <= 1).

    Boundaries at k * T / phases. Shared by the batch and regularisation schedules so the
    batch grows by phi exactly where regularisation shrinks by phi.
    """
    if phases <= 1 or total_steps <= 0:
        return 0
    return min(phases - 1, max(0, step) * phases // total_steps)


def phi_batch_size(base: int, k: int, max_batch: int = 0, multiple: int = 1) -> int:
    """base * phi^k, capped at max_batch (0: no cap), rounded to the nearest multiple of `multiple`
    (micro-batch x world size), never below one multiple and never above the cap's multiple.

    The seed truncates (int()); we round to the nearest multiple because DeepSpeed's train batch
    must be micro_batch x gradient-accumulation x world size.
    """
    if base < 1 or multiple < 1:
        raise ConfigError("training.batch_size", f"base batch and multiple must be >= 1; got {base}, {multiple}")
    raw = base * PHI ** k
    if max_batch > 0:
        raw = min(raw, max_batch)
    size = multiple * max(1, math.floor(raw / multiple + 0.5))  # half up, not banker's rounding
    if max_batch > 0 and size > max_batch:
        size = multiple * max(1, max_batch // multiple)  # rounding up must not break the cap
    return size


def batch_schedule(step: int, total_steps: int, base: int, phases: int = 3, max_batch: int = 0,
                   micro_batch: int = 1, world_size: int = 1) -> int:
    """Global batch size at `step`: phi_batch_size(base, k) in the k-th of `phases` equal parts.

    A pure function of step, so a resumed run continues the same batch schedule.
    """
    k = phase_index(step, total_steps, phases)
    return phi_batch_size(base, k, max_batch, micro_batch * world_size)


def gradient_accumulation_steps(batch_size: int, micro_batch: int, world_size: int = 1) -> int:
    """What DeepSpeed's set_train_batch_size implies: batch = micro x accumulation x world."""
    per_step = micro_batch * world_size
    if batch_size % per_step:
        raise ValueError(f"batch {batch_size} is not a multiple of micro_batch x world_size = {per_step}")
    return batch_size // per_step


# ---------------------------------------------------------------------------- training phases

PHASE_NAMES = ("exploration", "exploitation")


def phi_split(total: int) -> tuple[int, int]:
    """Seed: (int(total / phi^2), rest): 38.2% exploration, 61.8% exploitation."""
    first = int(total * INV_PHI_SQUARED)
    return first, total - first


def training_phase(step: int, total: int) -> str:
    return "exploration" if step < phi_split(total)[0] else "exploitation"


@dataclass(frozen=True)
class PhaseSettings:
    """Multipliers applied during one training phase (on data.strength, dropout and the LR)."""

    augmentation: float = 1.0
    dropout: float = 1.0
    lr: float = 1.0


# Default: explore with the configured augmentation and dropout, then exploit with both cut by
# 1/phi. The LR multiplier stays 1.0 in both so a phase split never confounds the LR comparison.
PHASE_DEFAULTS: dict[str, PhaseSettings] = {
    "exploration": PhaseSettings(augmentation=1.0, dropout=1.0, lr=1.0),
    "exploitation": PhaseSettings(augmentation=INV_PHI, dropout=INV_PHI, lr=1.0),
}


def phase_settings_from_config(schedule) -> dict[str, PhaseSettings]:
    """The two phases' multipliers from a `config.ScheduleConfig` (schedule.explore_* / exploit_*)."""
    return {"exploration": PhaseSettings(schedule.explore_augmentation, schedule.explore_dropout, schedule.explore_lr),
            "exploitation": PhaseSettings(schedule.exploit_augmentation, schedule.exploit_dropout, schedule.exploit_lr)}


def phase_settings_at(step: int, total: int, settings: dict[str, PhaseSettings] | None = None) -> PhaseSettings:
    return (settings or PHASE_DEFAULTS)[training_phase(step, total)]


# ---------------------------------------------------------------------------- regularisation


def phi_regularization(base: float, k: int) -> float:
    """base * phi^(-k): dropout or weight decay in the k-th phase."""
    return base * PHI ** (-k)


def regularization_at(step: int, total: int, base_dropout: float, base_wd: float,
                      mode: str = "phi", phases: int = 3) -> tuple[float, float]:
    """(dropout, weight decay) at `step`. "constant": the bases. "phi": both times phi^(-k) in
    the k-th of `phases` equal parts (the batch schedule's boundaries). The phase-split dropout
    multiplier (PhaseSettings.dropout), when enabled, multiplies on top of this."""
    if mode == "constant":
        return base_dropout, base_wd
    if mode != "phi":
        raise ConfigError("schedule.regularization", f"got {mode!r}; allowed: 'constant', 'phi'")
    k = phase_index(step, total, phases)
    return phi_regularization(base_dropout, k), phi_regularization(base_wd, k)


# ---------------------------------------------------------------------------- sampler

DEFAULT_DIFFICULTY_EDGES = (4, 8)  # buckets: 1-3, 4-7, 8+ elements


def phi_bucket_weights(n_buckets: int, hardest_first: bool = False) -> list[float]:
    """Sampling probabilities proportional to phi^(-i), i = bucket index, summing to 1.

    Buckets are ordered easy -> hard (index 0 = fewest elements), so by default the easiest
    bucket is sampled most; hardest_first reverses the weights. n=2: 0.618, 0.382;
    n=3: 0.5, 0.309, 0.191 (1 + 1/phi + 1/phi^2 = 2).
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1; got {n_buckets}")
    w = [PHI ** (-i) for i in range(n_buckets)]
    total = sum(w)
    w = [x / total for x in w]
    return w[::-1] if hardest_first else w


def difficulty_bucket(n_elements: int, edges: tuple[int, ...] = DEFAULT_DIFFICULTY_EDGES) -> int:
    """Difficulty = element count. `edges` are the ascending lowest counts of buckets 1, 2, ...:
    with (4, 8), 0-3 elements -> 0, 4-7 -> 1, 8+ -> 2 (len(edges) + 1 buckets)."""
    return bisect.bisect_right(list(edges), n_elements)


def phi_repeat_rates(shares: Sequence[float], hardest_first: bool = False) -> list[float]:
    """Expected copies per example of each difficulty bucket for the phi sampler.

    `shares[b]` is bucket b's share of the examples (easy -> hard; normalised here, so counts
    work too). The target weights are `phi_bucket_weights(len(shares))` restricted to the
    non-empty buckets and renormalised (an empty bucket's weight goes to the others in
    proportion). Returns `rate_b = w_b / s_b` (0.0 for an empty bucket): repeating every example
    of bucket b Poisson(rate_b) times makes bucket b an expected w_b of the epoch, and the
    epoch's expected size sum_b s_b * rate_b = 1 times the number of examples. Example:
    shares (0.5, 0.5, 0) -> weights (1/phi, 1/phi^2, 0) -> rates (2/phi, 2/phi^2, 0).
    """
    if not shares:
        raise ValueError("shares must name at least one bucket")
    if any(not math.isfinite(s) or s < 0 for s in shares):
        raise ValueError(f"shares must be finite and >= 0; got {list(shares)}")
    total = float(sum(shares))
    if total <= 0:
        raise ValueError("shares are all zero: no examples to sample")
    s = [x / total for x in shares]
    w = phi_bucket_weights(len(s), hardest_first)
    kept = sum(wb for wb, sb in zip(w, s) if sb > 0)
    return [wb / kept / sb if sb > 0 else 0.0 for wb, sb in zip(w, s)]


# ---------------------------------------------------------------------------- `schedule show`


def schedule_rows(lr: str, steps: int, base_lr: float, warmup: int = 0, batch: str = "constant",
                  base_batch: int = 4, max_batch: int = 0, batch_phases: int = 3, micro_batch: int = 1,
                  world_size: int = 1, **lr_kw) -> list[dict]:
    """[{step, lr, batch_size, phase}] for steps 0 .. steps-1 (the optimizer steps of a run)."""
    check_lr_schedule(lr)
    if batch not in ("constant", "phi"):
        raise ConfigError("schedule.batch", f"got {batch!r}; allowed: 'constant', 'phi'")
    rows = []
    for t in range(steps):
        size = (batch_schedule(t, steps, base_batch, batch_phases, max_batch, micro_batch, world_size)
                if batch == "phi" else base_batch)
        rows.append({"step": t, "lr": lr_at(lr, t, steps, base_lr, warmup, **lr_kw),
                     "batch_size": size, "phase": training_phase(t, steps)})
    return rows


def plot_rows(rows_by_name: dict[str, list[dict]], path: str, title: str = "") -> None:
    """Learning rate and batch size against step, one line per schedule, to a PNG (Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lr, ax_b) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, rows in rows_by_name.items():
        steps = [r["step"] for r in rows]
        ax_lr.plot(steps, [r["lr"] for r in rows], label=name)
        ax_b.step(steps, [r["batch_size"] for r in rows], where="post", label=name)
    ax_lr.set_ylabel("learning rate")
    ax_b.set_ylabel("batch size")
    ax_b.set_xlabel("step")
    ax_lr.legend(fontsize=8)
    if title:
        ax_lr.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
