"""A canary is judged on what it answers, not only on errors and latency (real Serve on a local Ray).

- A canary whose weights were damaged after export (4 KiB of model.safetensors overwritten, as in
  the incident: NaN parameters, the file still parses) is refused by `rollout start` with a 4xx
  naming the failed check, before any weight changes. So is one whose weights are finite but no
  longer answer its golden set.
- A canary that passes its own load checks but answers badly is rolled back by the live judge.
  Its badness is real, not injected: its decoder's final norm gain is zero, so every element of a
  layout gets the same box (a collapsed model). It was exported that way, so its golden set
  records those answers and the load checks pass; only the comparison with stable's live answers
  (overlap) can catch it.
- A canary with the same weights as stable (another directory) is promoted, with shadowing, and
  its measured agreement with stable is ~1.

One Serve application for the module; the promotion runs last (it swaps the stable slot).
"""

import random
import shutil
from pathlib import Path

import pytest

from conftest import tiny_serving_artifact
from helpers import Load, poll, serve_app

TOKEN = "test-admin-token-quality-51d2"
# Greedy requests of several shapes (the tiny model places at most 8 elements): window means
# are taken over a mix, as in production, not over one layout repeated.
BODIES = [
    {"section_type": "hero", "elements": ["heading", "paragraph", "button"]},
    {"section_type": "footer", "elements": ["logo", "link", "link", "paragraph"]},
    {"section_type": "pricing", "elements": ["heading", "card", "card", "card"]},
    {"elements": ["image", "heading", "paragraph", "button", "icon"], "canvas": {"width": 800, "height": 600}},
    {"section_type": "team", "elements": ["heading", "avatar", "avatar", "subheading", "subheading"]},
]


def slot_artifact(app, slot):
    """The artifact a slot serves (the operator's view of /v1/models shows paths)."""
    return [v for v in app.models()["versions"] if v.get("slot", v.get("name")) == slot][0]["artifact"]


@pytest.fixture(scope="module")
def served(ray_local, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    stable = tiny_serving_artifact(root / "stable", seed=1)
    with serve_app(root, TOKEN, {"stable_model": stable, "canary_model": stable, "model_num_cpus": 0.5}) as app:
        app.stable_dir = stable
        yield app


def damage_weights(model_dir, n: int = 4096, seed: int = 0) -> None:
    """The incident: n bytes of model.safetensors, past its header, overwritten with random bytes."""
    path = Path(model_dir) / "model.safetensors"
    raw = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(raw[:8], "little") + 4096
    raw[start:start + n] = random.Random(seed).randbytes(n)
    path.write_bytes(bytes(raw))


def collapsed_state(model_dir):
    """The artifact's weights with the decoder's final norm gain zeroed: the logits no longer
    depend on the input, so every element of a layout gets the same box. Finite, and it parses."""
    from layoutray.model.artifact import read_artifact

    state, cfg, _ = read_artifact(model_dir)
    state["dec_ln.weight"].zero_()
    return state, cfg


def _refused(served, canary_dir):
    before = len(served.audit())
    r = served.admin("POST", "/start", {"canary": str(canary_dir), "interval": 60})
    assert r.status_code in (409, 422), r.text
    err = r.json()["error"]
    assert err["field"] == "canary", r.text
    # nothing started, no weight moved, the canary slot kept its model, requests are answered
    st = served.state()
    assert st["status"] == "idle" and st["weights"] == {"blue": 100, "green": 0}, st
    assert [a["decision"] for a in served.audit()[before:]] == []
    assert slot_artifact(served, "green") == served.stable_dir
    assert served.post(BODIES[0]).status_code == 200
    return err["message"]


def test_damaged_canary_refused_at_start(served, tmp_path):
    from safetensors.torch import load_file
    import torch

    nan = tmp_path / "nan"
    shutil.copytree(served.stable_dir, nan)
    damage_weights(nan)
    assert not all(bool(torch.isfinite(t).all()) for t in load_file(str(nan / "model.safetensors")).values())
    message = _refused(served, nan)
    assert "non-finite" in message and str(nan) in message, message

    # Finite damage after export: the finite check passes, the golden set does not.
    from safetensors.torch import save_file
    drifted = tmp_path / "drifted"
    shutil.copytree(served.stable_dir, drifted)
    state, _ = collapsed_state(drifted)
    save_file(state, str(drifted / "model.safetensors"))
    message = _refused(served, drifted)
    assert "golden: agreement with the recorded layouts" in message, message


@pytest.mark.slow
def test_low_quality_canary_rolled_back(served, tmp_path):
    from layoutray.model.artifact import export_artifact

    state, cfg = collapsed_state(served.stable_dir)
    bad = export_artifact(state, cfg, tmp_path / "collapsed", {"name": "collapsed"})  # its own golden set
    r = served.admin("POST", "/start", {"canary": str(bad), "steps": "50,100", "interval": 2.0, "min_requests": 8,
                                        "max_error_rate": 0.05, "max_p95_ms": 5000, "max_failed_windows": 2})
    assert r.status_code == 200, r.text  # it passes its load checks: only live answers can tell
    with Load(served, bodies=BODIES) as load:
        st = poll(lambda: (s := served.state())["status"] != "running" and s, 180, "automatic rollback")
    assert st["status"] == "rolled_back" and st["weights"] == {"blue": 100, "green": 0}, served.audit()[-3:]
    assert set(load.codes) == {200}, load.codes  # a bad answer is still an answer: no errors to see
    last = served.audit()[-1]
    assert last["decision"] == "rollback" and "consecutive failing windows" in last["reason"], last
    assert "quality: overlap" in last["reason"] and "quality.overlap" in last["measured"]["failed_signals"], last
    m = last["measured"]
    assert m["canary"]["error_rate"] == 0.0 and m["canary"]["valid_share"] == 1.0
    assert m["canary"]["overlap"] > 1.5 * m["stable"]["overlap"] + 0.05, m
    assert last["thresholds"]["overlap_ratio"] == 1.5


@pytest.mark.slow
def test_good_canary_promoted_with_shadow_agreement(served, tmp_path):
    good = tmp_path / "same-weights"
    shutil.copytree(served.stable_dir, good)
    served.deploy(router={"shadow_share": 0.5})
    r = served.admin("POST", "/start", {"canary": str(good), "steps": "50,100", "interval": 2.0, "min_requests": 8,
                                        "max_error_rate": 0.05, "max_p95_ms": 5000, "min_agreement_pairs": 4})
    assert r.status_code == 200, r.text
    with Load(served, bodies=BODIES) as load:
        st = poll(lambda: (s := served.state())["status"] != "running" and s, 180, "promotion")
    assert st["status"] == "promoted" and st["stable"] == "green", served.audit()[-3:]
    assert set(load.codes) == {200}, load.codes
    mine = [a for a in served.audit() if a["rollout_id"] == st["rollout_id"]]
    advance = [a for a in mine if a["decision"] == "advance"]
    assert advance and "quality: valid_share 1.000" in advance[0]["reason"], mine
    judged = [a["measured"]["canary"] for a in mine if a["measured"].get("verdict") == "pass"]
    paired = [m for m in judged if m["agreement_pairs"]]
    assert paired, judged  # shadowed requests were compared with stable's answers
    assert all(m["agreement"] >= 0.9 for m in paired), paired  # same weights: same layouts
