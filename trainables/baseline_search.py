"""The Tune-searched baseline of a sweep (the sweep file's `baseline_search` section).

Before the arms run, a full-budget Tune grid over baseline LR schedules (cosine, one-cycle),
learning rates and warmup fractions trains each setting with the arms' own budget per trial
(experiment `<name>-search` beside the sweep). The best setting by the sweep's metric becomes
the baseline arm `baseline_search.name`, so PHI faces a tuned opponent rather than a default.
The winner is kept in `<name>-search/tuned_baseline.json`: a resumed sweep reuses it, and a
sweep whose driver died during the search resumes the search first.
"""

from __future__ import annotations

import dataclasses
import json

from layoutray.sweep_config import ArmSpec, SweepConfig
from trainables.report import METRICS, best_arm, summarize

RESULT_FILE = "tuned_baseline.json"


def search_spec(spec: SweepConfig) -> SweepConfig:
    """The search as a sweep of its own: one arm per setting, its seeds, every trial run to the end."""
    bs = spec.baseline_search
    return dataclasses.replace(spec, name=f"{spec.name}-search", arms=bs.arms(), seeds=list(bs.seeds), min_seeds=1,
                               learning_rates=[], baseline_search=None,
                               asha=dataclasses.replace(spec.asha, enabled=False))


def choose(records: list[dict], metric: str, target_val_loss: float) -> tuple[str, float]:
    """(arm, its mean metric) of the best setting over the search's completed trials."""
    field, mode = METRICS[metric]
    arm = best_arm(summarize(records, target_val_loss, metric)["arms"], field, mode)
    if arm is None:
        raise RuntimeError(f"the baseline search finished no trial with a finite {metric}; see its report")
    return arm["arm"], arm[field]["mean"]


def with_tuned_baseline(spec: SweepConfig, *, resume: bool, config_path: str | None) -> tuple[SweepConfig, bool]:
    """(spec with the tuned baseline arm added and the search resolved, whether to resume the
    arms' experiment): runs or resumes the search unless its winner is already recorded."""
    from ray import tune

    from trainables.sweep import run_sweep

    bs = spec.baseline_search
    search = search_spec(spec)
    result = search.experiment_dir / RESULT_FILE
    if result.is_file():
        chosen = json.loads(result.read_text())
    else:
        again = tune.Tuner.can_restore(str(search.experiment_dir))
        print(f"[layoutray] baseline search: {len(search.arms)} settings x {len(search.seeds)} seed(s) "
              f"({'resuming' if again else 'starting'} {search.experiment_dir})", flush=True)
        out = run_sweep(search, resume=again, full_budget=True, config_path=config_path)
        arm, value = choose(out["records"], spec.metric, spec.target_val_loss)
        chosen = {"arm": arm, "metric": spec.metric, "value": value, "overrides": search.arm(arm).overrides,
                  "searched": [a.name for a in search.arms], "seeds": search.seeds}
        result.write_text(json.dumps(chosen, indent=2) + "\n")
    print(f"[layoutray] tuned baseline: {chosen['arm']} ({chosen['metric']} {chosen['value']:.4g})", flush=True)
    tuned = ArmSpec(bs.name, list(chosen["overrides"]), "baseline", family="baseline")
    out_spec = dataclasses.replace(spec, arms=[*spec.arms, tuned], baseline_search=None)
    return out_spec, resume and tune.Tuner.can_restore(str(out_spec.experiment_dir))
