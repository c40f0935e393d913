"""The router's traffic policy (serving/traffic.py): the split, stickiness, shadow copies and
fallback, without Ray. test_serve.py checks the same through real HTTP."""

import math
import random
from types import SimpleNamespace

import pytest

from serving.rollout import RolloutController
from serving.traffic import TrafficPolicy, check_roles, rendezvous_choice

USERS = [f"user-{i}" for i in range(20000)]


def roles(blue=100, green=0, stable="blue", canary="green"):
    return SimpleNamespace(stable=stable, canary=canary, weights={"blue": blue, "green": green})


def policy(*args, shadow_share=0.0, seed=0, **kw):
    return TrafficPolicy(roles(*args, **kw), shadow_share=shadow_share, rng=random.Random(seed))


def within(count, n, p, sds=4.0):
    """count is within `sds` binomial standard deviations of n * p."""
    return abs(count - n * p) <= sds * math.sqrt(n * p * (1 - p))


# ----------------------------------------------------------------------------- configuration


def test_check_roles_rescales_to_percent():
    assert check_roles({"stable": "blue", "canary": "green", "weights": {"blue": 3, "green": 1}}) == (
        "blue", "green", {"blue": 75.0, "green": 25.0})
    # a slot left out has weight 0
    assert check_roles({"stable": "green", "canary": "blue", "weights": {"green": 5}}) == (
        "green", "blue", {"blue": 0.0, "green": 100.0})


@pytest.mark.parametrize("cfg,words", [
    ({"stable": "blue", "canary": "blue", "weights": {"blue": 100}}, "two different slots"),
    ({"stable": "red", "canary": "green", "weights": {"green": 100}}, "two different slots"),
    ({"stable": "blue", "canary": "green", "weights": {"blue": 50, "red": 50}}, "weights must map"),
    ({"stable": "blue", "canary": "green", "weights": {"blue": -1, "green": 2}}, "weights must map"),
    ({"stable": "blue", "canary": "green", "weights": {"blue": float("nan")}}, "weights must map"),
    ({"stable": "blue", "canary": "green", "weights": {"blue": "50"}}, "weights must map"),
    ({"stable": "blue", "canary": "green", "weights": [100, 0]}, "weights must map"),
    ({"stable": "blue", "canary": "green", "weights": {"blue": 0, "green": 0}}, "must not all be 0"),
])
def test_check_roles_refuses(cfg, words):
    with pytest.raises(ValueError, match=words):
        check_roles(cfg)


# ----------------------------------------------------------------------------- the split


@pytest.mark.parametrize("green", [10, 30, 50, 90])
def test_weights_respected_over_many_user_ids(green):
    p = policy(100 - green, green)
    n_green = sum(p.choose(u) == "green" for u in USERS)
    assert within(n_green, len(USERS), green / 100), (green, n_green)


@pytest.mark.parametrize("green", [10, 30, 75])
def test_weights_respected_without_user_id(green):
    p = policy(100 - green, green)
    n = 20000
    n_green = sum(p.choose(None) == "green" for _ in range(n))
    assert within(n_green, n, green / 100), (green, n_green)
    assert {p.choose("") for _ in range(200)} == {"blue", "green"}  # an empty id is no id


def test_zero_weight_slot_never_chosen():
    for w in ({"blue": 100, "green": 0}, {"blue": 0, "green": 100}):
        p = policy(w["blue"], w["green"])
        only = "blue" if w["blue"] else "green"
        assert {p.choose(u) for u in USERS[:2000]} == {only}
        assert {p.choose(None) for _ in range(2000)} == {only}


def test_no_positive_weight_goes_to_stable():
    p = policy(0, 0, stable="green", canary="blue")
    assert p.choose("someone") == "green" and p.choose(None) == "green"


def test_user_stays_on_a_slot():
    a, b = policy(50, 50, seed=1), policy(50, 50, seed=2)
    first = [a.choose(u) for u in USERS[:2000]]
    assert set(first) == {"blue", "green"}
    assert [a.choose(u) for u in USERS[:2000]] == first  # again
    assert [b.choose(u) for u in USERS[:2000]] == first  # another router, another random state


def test_growing_the_canary_moves_users_only_onto_it():
    users = USERS[:5000]
    before = None
    for green in (10, 25, 50, 75, 100):
        now = {u: rendezvous_choice({"blue": 100 - green, "green": green} if green < 100 else {"green": 100}, u)
               for u in users}
        if before:
            moved = [u for u in users if now[u] != before[u]]
            assert moved and all(before[u] == "blue" and now[u] == "green" for u in moved), green
        before = now
    assert set(before.values()) == {"green"}


def test_choice_follows_the_roles_object_in_place():
    """The router hands over the controller's state once; decisions change it in place."""
    r = roles(100, 0)
    p = TrafficPolicy(r, rng=random.Random(0))
    assert p.choose("u1") == "blue"
    r.weights = {"blue": 0, "green": 100}
    assert p.choose("u1") == "green" and p.choose(None) == "green"


def test_policy_on_the_rollout_controller_state(tmp_path):
    ctl = RolloutController(tmp_path, "blue", "green", {"blue": 100, "green": 0})
    p = TrafficPolicy(ctl.state, rng=random.Random(0))
    assert {p.choose(u) for u in USERS[:500]} == {"blue"}
    ctl.start(None, steps="50,100", interval_s=1, min_requests=1)
    n_green = sum(p.choose(u) == "green" for u in USERS)
    assert within(n_green, len(USERS), 0.5)
    ctl.promote()
    assert {p.choose(u) for u in USERS[:500]} == {"green"} and p.fallback_for("blue") == "green"


# ----------------------------------------------------------------------------- shadow and fallback


def test_shadow_share_of_non_canary_requests():
    p = policy(90, 10, shadow_share=0.3)
    n = 20000
    shadows = [p.shadow_to("blue") for _ in range(n)]
    assert set(shadows) == {None, "green"}
    assert within(shadows.count("green"), n, 0.3)
    # a request the canary answers itself gets no copy
    assert {p.shadow_to("green") for _ in range(2000)} == {None}


def test_shadow_off_and_always():
    assert {policy(90, 10, shadow_share=0.0).shadow_to("blue") for _ in range(2000)} == {None}
    assert {policy(90, 10, shadow_share=1.0).shadow_to("blue") for _ in range(2000)} == {"green"}
    # the copy goes to whichever slot is the canary now
    p = policy(100, 0, shadow_share=1.0, stable="green", canary="blue")
    assert p.shadow_to("green") == "blue" and p.shadow_to("blue") is None


def test_fallback_to_stable():
    p = policy(50, 50)
    assert p.fallback_for("green") == "blue"
    assert p.fallback_for("blue") is None  # stable failed: nothing to fall back to
    p.roles.stable, p.roles.canary = "green", "blue"  # after a promotion
    assert p.fallback_for("blue") == "green" and p.fallback_for("green") is None
