"""Layout FID: the Frechet distance on hand-made Gaussians, the shipped feature network, and FID
on hand-made sets of layouts (identical, jittered by growing amounts)."""

import json
import random

import numpy as np
import pytest
import torch

from layoutray.eval import fid as F
from layoutray.eval.fid_train import main as train_main, train, training_layouts
from layoutray.model.tokenizer import Box


@pytest.fixture
def one_thread():
    """Training runs on one thread (as the training command does); other tests keep theirs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _layouts(n: int, seed: int = 11) -> list[list[Box]]:
    # Another seed than the network's training layouts: FID is measured on layouts it never saw.
    return training_layouts(n, seed=seed)


def _jitter(layouts, std: float, seed: int = 0) -> list[list[Box]]:
    """Every coordinate plus N(0, std), clipped to the canvas."""
    rng = random.Random(seed)

    def c(v):
        return min(max(v + rng.gauss(0.0, std), 0.0), 1.0)

    return [[Box(b.type, c(b.x), c(b.y), c(b.w), c(b.h)) for b in layout] for layout in layouts]


# ---------------------------------------------------------------------------- Frechet distance


def test_frechet_distance_of_hand_made_gaussians():
    one = np.eye(1)
    # 1-D: (0 - 3)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 9 + 5 - 4 = 10
    assert F.frechet_distance(np.zeros(1), one, np.array([3.0]), 4 * one) == pytest.approx(10.0)
    # Diagonal: sum over axes of (mu1 - mu2)^2 + (s1 - s2)^2 with s the standard deviations.
    mu1, mu2 = np.array([0.0, 1.0]), np.array([1.0, 1.0])
    s1, s2 = np.diag([1.0, 9.0]), np.diag([4.0, 1.0])
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(1 + (1 - 2) ** 2 + (3 - 1) ** 2)
    assert F.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0.0, abs=1e-12)


def test_frechet_distance_survives_singular_covariances():
    # 5 points in 16 dimensions: rank-4 covariances, the case of a small evaluation set.
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16)) + 0.5
    da, db = F.gaussian_fit(a), F.gaussian_fit(b)
    assert F.frechet_distance(*da, *da) == pytest.approx(0.0, abs=1e-6)
    value = F.frechet_distance(*da, *db)
    assert np.isfinite(value) and value > 0
    assert F.frechet_distance(*da, np.zeros(16), np.zeros((16, 16))) >= 0.0


def test_fid_needs_two_layouts_a_side():
    two = _layouts(2)
    assert F.fid(two[:1], two) is None and F.fid(two, []) is None
    assert F.fid(two, two) == pytest.approx(0.0, abs=1e-6)


# ---------------------------------------------------------------------------- the shipped network


def test_shipped_weights_load_and_are_small():
    assert F.WEIGHTS.is_file() and F.WEIGHTS.stat().st_size < 1_000_000
    net = F.load_feature_net()
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    recipe = F.recipe()
    assert recipe["steps"] > 0 and recipe["validation"]["disc_acc"] > 0.7, recipe
    assert F.shipped_net() is F.shipped_net()  # loaded once per process


def test_a_file_for_another_vocabulary_is_refused(tmp_path):
    other = F.LayoutFeatureNet(F.FeatureNetConfig(d_model=8, n_heads=2, n_layers=1, ff=8, n_freqs=2),
                               element_types=("heading", "button"))
    F.save_feature_net(other, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="retrain"):
        F.load_feature_net(tmp_path / "other.safetensors")


def test_features_are_deterministic_and_ignore_order_and_padding():
    layouts = _layouts(40)
    net = F.shipped_net()
    a = F.layout_features(layouts)
    assert a.shape == (40, net.cfg.d_model) and np.isfinite(a).all()
    assert np.array_equal(a, F.layout_features(layouts))
    # Elements shuffled, layouts one at a time (no padding): the same features.
    shuffled = [random.Random(i).sample(layout, len(layout)) for i, layout in enumerate(layouts)]
    alone = np.concatenate([F.layout_features([layout]) for layout in shuffled])
    np.testing.assert_allclose(alone, a, atol=1e-4)
    # An empty layout (a generation that failed to parse) still gets a feature.
    assert np.isfinite(F.layout_features([[]])).all()


# ---------------------------------------------------------------------------- FID on layouts


def test_fid_of_a_set_with_itself_is_zero():
    layouts = _layouts(200)
    assert F.fid(layouts, layouts) == pytest.approx(0.0, abs=1e-6)
    # Fewer layouts than feature dimensions: singular covariances, still 0.
    assert F.fid(layouts[:20], layouts[:20]) == pytest.approx(0.0, abs=1e-6)


def test_fid_grows_with_jitter():
    real = _layouts(300)
    values = [F.fid(real, _jitter(real, std)) for std in (0.005, 0.02, 0.08)]
    assert 0 < values[0] < values[1] < values[2], values
    # Another sample of the same generator is closer to the real set than heavy jitter is.
    fresh = _layouts(300, seed=12)
    assert F.fid(real, fresh) < values[2], (F.fid(real, fresh), values)


# ---------------------------------------------------------------------------- training


def test_training_runs_and_its_output_loads(tmp_path, one_thread):
    logged = []
    net, recipe = train(steps=3, batch_size=8, n_layouts=16, n_val=8, log_every=1, log=logged.append)
    assert len(logged) == 3 and recipe["steps"] == 3 and "validation" in recipe
    out = tmp_path / "fid.safetensors"
    F.save_feature_net(net, out, recipe)
    loaded = F.load_feature_net(out)
    layouts = _layouts(4)
    np.testing.assert_allclose(F.layout_features(layouts, loaded), F.layout_features(layouts, net), atol=1e-6)
    assert F.recipe(out)["batch_size"] == 8


def test_the_training_command_writes_a_loadable_file(tmp_path, capsys, one_thread):
    out = tmp_path / "w.safetensors"
    assert train_main(["--steps", "2", "--batch-size", "4", "--layouts", "8", "--out", str(out)]) == 0
    assert "parameters" in capsys.readouterr().out
    assert F.recipe(out)["layouts"] == 8 and json.loads(json.dumps(F.recipe(out)))
    F.load_feature_net(out)
