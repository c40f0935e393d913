"""Schedules: exact values from the seed's formulas (computed by hand), limits, monotonicity,
Hugging Face semantics, batch rounding and capping, and the torch LambdaLR adapter."""

import json

import pytest

from layoutray import schedules as S
from cli.main import main
from layoutray.config import ConfigError, ScheduleConfig

PHI = 1.618033988749895
approx = pytest.approx


def lr(name, t, T, W=0, **kw):
    return S.lr_at(name, t, T, 1.0, W, **kw)


def test_phi_constant_matches_seed():
    assert S.PHI == approx(1.618033988749, abs=1e-12)
    assert S.INV_PHI == approx(0.618033988749, abs=1e-12)
    assert S.INV_PHI_SQUARED == approx(0.381966011251, abs=1e-12)


# ---------------------------------------------------------------------------- LR: seed formulas


def test_phi_decay_values_and_limit():
    assert lr("phi_decay", 0, 100) == 1.0
    # phi^-0.5 = 1 / sqrt(1.6180339887) = 1 / 1.2720196495 = 0.7861513778
    assert lr("phi_decay", 50, 100) == approx(0.7861513778, abs=1e-9)
    assert lr("phi_decay", 100, 100) == approx(1 / PHI)  # base/phi at T
    assert S.lr_at("phi_decay", 100, 100, 2e-4) == approx(2e-4 * 0.6180339887)
    assert lr("phi_decay", 500, 100) == lr("phi_decay", 100, 100)  # clamped past T
    vals = [lr("phi_decay", t, 100) for t in range(101)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_phi_warmup_exact_and_reaches_only_0382_at_w():
    assert lr("phi_warmup", 0, 100, 10) == 0.0
    # 1 - phi^-0.5 = 1 - 0.7861513778 = 0.2138486222
    assert lr("phi_warmup", 5, 100, 10) == approx(0.2138486222, abs=1e-9)
    assert lr("phi_warmup", 10, 100, 10) == approx(1 - 1 / PHI)  # 0.381966...
    assert lr("phi_warmup", 10, 100, 10) == approx(0.381966, abs=1e-6)
    # same formula after W: 1 - phi^-2 = 0.618..., 1 - phi^-3 = 0.763932
    assert lr("phi_warmup", 20, 100, 10) == approx(1 / PHI)
    assert lr("phi_warmup", 30, 100, 10) == approx(1 - PHI ** -3)
    vals = [lr("phi_warmup", t, 100, 10) for t in range(101)]
    assert all(a < b for a, b in zip(vals, vals[1:])) and vals[-1] < 1.0
    with pytest.raises(ConfigError):
        lr("phi_warmup", 5, 100, 0)


def test_phi_warmup_normalized_reaches_base_then_phi_decay():
    # t <= W: phi^2 (1 - phi^(-t/W)); t = 5 of 10: 2.6180339887 x 0.2138486222 = 0.5598615
    assert lr("phi_warmup_normalized", 5, 110, 10) == approx(2.6180339887 * 0.2138486222, abs=1e-9)
    assert lr("phi_warmup_normalized", 10, 110, 10) == approx(1.0)
    # after W: phi^(-(t-W)/(T-W)); t = 60 -> phi^-0.5, t = T -> 1/phi
    assert lr("phi_warmup_normalized", 60, 110, 10) == approx(0.7861513778, abs=1e-9)
    assert lr("phi_warmup_normalized", 110, 110, 10) == approx(1 / PHI)
    vals = [lr("phi_warmup_normalized", t, 110, 10) for t in range(111)]
    assert max(vals) == approx(1.0) and vals.index(max(vals)) == 10


def test_phi_cosine_exactly_as_seed():
    assert lr("phi_cosine", 0, 90) == approx(1 / PHI)  # peak is base/phi, not base
    assert lr("phi_cosine", 30, 90) == approx(0.75 / PHI)  # (1 + cos(pi/3)) / 2 = 0.75
    assert lr("phi_cosine", 45, 90) == approx(0.5 / PHI)
    assert lr("phi_cosine", 90, 90) == approx(0.0, abs=1e-15)
    vals = [lr("phi_cosine", t, 90) for t in range(91)]
    assert all(a > b for a, b in zip(vals, vals[1:]))


def test_phi_cosine_cycles_tile_t_and_grow_by_phi():
    # 3 cycles over T = 200: L (1 + phi + phi^2) = 200, 1 + phi + phi^2 = 2 phi^2, so
    # L = 100 / phi^2 = 38.197, and the third cycle starts at L (1 + phi) = L phi^2 = 100.
    b = S.phi_cycle_bounds(200, 3)
    assert b[1] == approx(100 / PHI ** 2) and b[2] == approx(100.0) and b[3] == 200
    lengths = [b[i + 1] - b[i] for i in range(3)]
    assert lengths[1] / lengths[0] == approx(PHI) and lengths[2] / lengths[1] == approx(PHI)
    assert lr("phi_cosine_cycles", 0, 200) == 1.0
    assert lr("phi_cosine_cycles", b[1] / 2, 200) == approx(0.5)  # half way through cycle 0
    assert lr("phi_cosine_cycles", 100, 200) == approx(1.0)  # restart
    assert lr("phi_cosine_cycles", 100, 200, decay_peaks=True) == approx(PHI ** -2)
    assert lr("phi_cosine_cycles", 150, 200, decay_peaks=True) == approx(0.5 * PHI ** -2)
    assert lr("phi_cosine_cycles", 200, 200) == approx(0.0, abs=1e-15)


# ---------------------------------------------------------------------------- LR: baselines


def test_warmup_cosine_hf_semantics():
    # HF get_cosine_schedule_with_warmup(W=10, T=100): step/10 during warmup, then
    # 0.5 (1 + cos(pi (t - 10) / 90)).
    assert lr("warmup_cosine", 0, 100, 10) == 0.0
    assert lr("warmup_cosine", 5, 100, 10) == 0.5
    assert lr("warmup_cosine", 10, 100, 10) == 1.0
    assert lr("warmup_cosine", 40, 100, 10) == approx(0.75)  # p = 1/3, (1 + 0.5) / 2
    assert lr("warmup_cosine", 55, 100, 10) == approx(0.5)
    assert lr("warmup_cosine", 100, 100, 10) == approx(0.0, abs=1e-15)
    # HF min_lr_rate: factor (1 - r) + r
    assert lr("warmup_cosine", 55, 100, 10, min_lr_ratio=0.1) == approx(0.55)
    assert lr("warmup_cosine", 100, 100, 10, min_lr_ratio=0.1) == approx(0.1)
    assert lr("warmup_cosine", 0, 100, 0) == 1.0  # no warmup: starts at base


def test_warmup_linear_constant_and_step():
    assert lr("warmup_linear", 5, 100, 10) == 0.5
    assert lr("warmup_linear", 10, 100, 10) == 1.0
    assert lr("warmup_linear", 55, 100, 10) == approx(0.5)  # (100 - 55) / 90
    assert lr("warmup_linear", 100, 100, 10) == 0.0
    assert lr("constant", 37, 100) == 1.0
    assert lr("constant", 2, 100, 4) == 0.5
    assert [lr("step", t, 100) for t in (0, 49, 50, 74, 75, 99)] == approx([1, 1, .1, .1, .01, .01])
    assert lr("step", 5, 100, 10) == 0.5


@pytest.mark.parametrize("name", ["warmup_cosine", "warmup_linear", "step", "phi_warmup_normalized"])
def test_warmup_then_nonincreasing(name):
    vals = [lr(name, t, 200, 20) for t in range(201)]
    assert all(a <= b + 1e-12 for a, b in zip(vals[:21], vals[1:21]))
    assert all(a >= b - 1e-12 for a, b in zip(vals[20:], vals[21:]))


def test_unknown_schedule_lists_allowed_names():
    with pytest.raises(ConfigError) as e:
        S.lr_at("golden", 0, 10, 1.0)
    assert e.value.key == "schedule.lr"
    for name in S.LR_SCHEDULES:
        assert name in str(e.value)
    with pytest.raises(ConfigError):
        S.lr_at("constant", 0, 0, 1.0)
    with pytest.raises(ConfigError):
        S.lr_at("constant", 0, 10, 1.0, warmup_steps=11)


# ---------------------------------------------------------------------------- torch adapter


def test_lambda_lr_with_real_optimizer():
    import torch

    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=0.1)
    sched = S.make_torch_scheduler(opt, "warmup_cosine", total_steps=10, warmup_steps=2)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [S.lr_at("warmup_cosine", t, 10, 0.1, 2) for t in range(10)]
    assert seen == approx(expected)
    assert seen[:3] == approx([0.0, 0.05, 0.1])

    opt = torch.optim.AdamW([p], lr=1e-3)
    sched = S.make_torch_scheduler(opt, "phi_decay", total_steps=10)
    for _ in range(5):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == approx(1e-3 * 0.7861513778)


def test_lr_lambda_fails_early_and_from_config():
    with pytest.raises(ConfigError):
        S.lr_lambda("phi_warmup", 100, 0)
    f = S.lr_lambda_from_config(ScheduleConfig(lr="warmup_cosine", warmup_fraction=0.1, min_lr_ratio=0.1), 100)
    assert f(5) == 0.5 and f(100) == approx(0.1)
    # phase LR multiplier applies only with phi_phases (defaults are 1.0 in both phases)
    custom = {"exploration": S.PhaseSettings(lr=1.0), "exploitation": S.PhaseSettings(lr=0.5)}
    g = S.lr_lambda("constant", 100, phi_phases=True, phase_settings=custom)
    assert g(37) == 1.0 and g(38) == 0.5


# ---------------------------------------------------------------------------- batch size


def test_phi_batch_size_rounding_and_cap():
    # 4 phi = 6.47 -> 6; 4 phi^2 = 10.47 -> 10 (multiple 1)
    assert [S.phi_batch_size(4, k) for k in range(3)] == [4, 6, 10]
    # multiple 4: 6.47/4 = 1.62 -> 2 -> 8; 10.47/4 = 2.62 -> 3 -> 12
    assert [S.phi_batch_size(4, k, multiple=4) for k in range(3)] == [4, 8, 12]
    # cap 64: 32 phi^2 = 83.8 -> 64
    assert S.phi_batch_size(32, 2, max_batch=64, multiple=8) == 64
    # cap 60 (not a multiple of 8): 60/8 = 7.5 rounds up to 64 > 60 -> 56
    assert S.phi_batch_size(32, 2, max_batch=60, multiple=8) == 56
    # never below one multiple: 8/16 = 0.5 -> 16
    assert S.phi_batch_size(8, 0, multiple=16) == 16
    assert S.phi_batch_size(8, 0, max_batch=4, multiple=16) == 16
    # seed comparison: int(8 phi) = 12 (truncation); we round 12.94 to 13
    assert S.phi_batch_size(8, 1) == 13


def test_batch_schedule_equal_phases_and_resume():
    # T = 90, 3 phases: steps 0-29 k=0, 30-59 k=1, 60-89 k=2
    sizes = [S.batch_schedule(t, 90, 4, 3) for t in range(90)]
    assert sizes[0] == sizes[29] == 4 and sizes[30] == sizes[59] == 6 and sizes[60] == sizes[89] == 10
    assert [S.batch_schedule(t, 90, 4, 3, micro_batch=2, world_size=2) for t in (0, 30, 60)] == [4, 8, 12]
    assert [S.batch_schedule(t, 90, 4, 3, max_batch=8) for t in (0, 30, 60)] == [4, 6, 8]
    assert S.batch_schedule(50, 90, 4, phases=1) == 4
    # pure function of step: a run resumed at step 40 sees what an uninterrupted run sees
    resumed = [S.batch_schedule(t, 90, 4, 3) for t in range(40, 90)]
    assert resumed == sizes[40:]
    assert S.gradient_accumulation_steps(12, 2, 2) == 3
    with pytest.raises(ValueError):
        S.gradient_accumulation_steps(10, 2, 2)


# ---------------------------------------------------------------------------- phases, regularisation, sampler


def test_phi_split_and_training_phase():
    assert S.phi_split(100) == (38, 62)  # int(100 x 0.381966) = 38
    assert S.phi_split(10) == (3, 7)
    assert S.training_phase(37, 100) == "exploration" and S.training_phase(38, 100) == "exploitation"
    assert S.phase_settings_at(0, 100).dropout == 1.0
    assert S.phase_settings_at(50, 100).augmentation == approx(1 / PHI)
    assert S.phase_settings_at(50, 100).lr == 1.0


def test_regularization():
    assert S.phi_regularization(0.3, 0) == 0.3
    assert S.phi_regularization(0.3, 2) == approx(0.3 / PHI ** 2)  # 0.114590
    assert S.regularization_at(0, 90, 0.3, 0.01) == (0.3, 0.01)
    assert S.regularization_at(45, 90, 0.3, 0.01) == approx((0.1854102, 0.00618034), abs=1e-7)
    assert S.regularization_at(89, 90, 0.3, 0.01) == approx((0.1145898, 0.00381966), abs=1e-7)
    assert S.regularization_at(89, 90, 0.3, 0.01, mode="constant") == (0.3, 0.01)
    with pytest.raises(ConfigError):
        S.regularization_at(0, 90, 0.3, 0.01, mode="cosine")


def test_bucket_weights_and_difficulty():
    # 1 + 1/phi + 1/phi^2 = 2 -> 0.5, 0.309017, 0.190983
    assert S.phi_bucket_weights(3) == approx([0.5, 0.309017, 0.190983], abs=1e-6)
    assert S.phi_bucket_weights(2) == approx([1 / PHI, 1 / PHI ** 2])
    assert S.phi_bucket_weights(3, hardest_first=True) == approx([0.190983, 0.309017, 0.5], abs=1e-6)
    assert S.phi_bucket_weights(1) == [1.0]
    assert [S.difficulty_bucket(n) for n in (0, 3, 4, 7, 8, 16)] == [0, 0, 1, 1, 2, 2]
    assert S.difficulty_bucket(5, edges=(2, 5, 10)) == 2


# ---------------------------------------------------------------------------- `schedule show`


def test_schedule_show_table_json_plot(capsys, tmp_path):
    assert main(["schedule", "show", "--lr", "phi_decay", "--steps", "100", "--base-lr", "1e-3",
                 "--batch", "phi", "--base-batch", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["step", "lr", "batch", "phase"]
    assert 18 <= len(lines) - 1 <= 22
    assert lines[-1].split()[0] == "99"
    assert main(["schedule", "show", "--lr", "warmup_cosine", "--steps", "50", "--base-lr", "0.1",
                 "--warmup", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["rows"]) == 50 and out["rows"][5]["lr"] == approx(0.1)
    assert set(out["rows"][0]) == {"step", "lr", "batch_size", "phase"}
    png = tmp_path / "s.png"
    assert main(["schedule", "show", "--lr", "phi_cosine_cycles", "--steps", "60", "--base-lr", "0.1",
                 "--batch", "phi", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_schedule_show_unknown_name(capsys):
    assert main(["schedule", "show", "--lr", "golden", "--steps", "10", "--base-lr", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "schedule.lr" in err and "phi_warmup_normalized" in err and "warmup_cosine" in err


@pytest.mark.parametrize("name", ["phi_warmup", "phi_warmup_normalized", "warmup_cosine"])
def test_a_requested_warmup_survives_a_short_run(name):
    # 5 steps x 0.05 rounds to 0 warmup steps: the phi warmups would divide by zero.
    f = S.lr_lambda_from_config(ScheduleConfig(lr=name, warmup_fraction=0.05), 5)
    assert f(0) == 0.0 and all(f(t) > 0 for t in range(1, 5))
    assert S.lr_lambda_from_config(ScheduleConfig(lr="constant", warmup_fraction=0.0), 5)(0) == 1.0
