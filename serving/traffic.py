"""The router's traffic policy in plain Python (no Ray, no HTTP), so it can be unit-tested.

For each request it answers three questions:

- which slot answers: a weighted split over the slots with weight > 0. A request with a user id
  (the router's sticky header) always gets the same slot for the same weights, by weighted
  rendezvous hashing; one without gets a random slot drawn by weight;
- whether a shadow copy goes to the canary: a `shadow_share` of the requests *not* routed to the
  canary, so the canary's analysis window fills even at a small weight;
- where a failed request falls back to: stable, unless stable was the one that failed.

The roles and weights are read from the rollout controller's state on every call: a rollout
decision changes that state in place and applies to the next request.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Optional

SLOTS = ("blue", "green")


def check_roles(cfg: dict) -> tuple[str, str, dict]:
    """(stable, canary, weights) from the Router's user_config, the weights rescaled to percent
    (summing to 100). ValueError says what is wrong."""
    stable, canary, w = cfg["stable"], cfg["canary"], cfg["weights"]
    if stable not in SLOTS or canary not in SLOTS or stable == canary:
        raise ValueError(f"Router user_config: stable/canary must be two different slots of {SLOTS}")
    if not isinstance(w, dict) or set(w) - set(SLOTS) or any(
            not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v) for v in w.values()):
        raise ValueError(f"Router user_config: weights must map slots {SLOTS} to numbers >= 0; got {w!r}")
    total = float(sum(w.values()))
    if total <= 0:
        raise ValueError("Router user_config: weights must not all be 0")
    return stable, canary, {s: 100.0 * float(w.get(s, 0)) / total for s in SLOTS}


def rendezvous_choice(weights: dict, user_id: str) -> str:
    """The slot for `user_id` by weighted rendezvous hashing over slots with weight > 0.

    One hash per (user, slot), so a user's slot depends only on the weights: it stays put while
    its weight does not drop, and raising one slot's weight moves users only onto that slot.
    Each slot wins with probability weight / sum(weights) over many users."""
    best, best_score = None, math.inf
    for slot in sorted(weights):
        h = int.from_bytes(hashlib.sha256(f"{slot}\x00{user_id}".encode()).digest()[:8], "big")
        u = (h + 0.5) / 2.0**64  # in (0, 1): the log below is finite
        score = -math.log(u) / weights[slot]
        if score < best_score:
            best, best_score = slot, score
    return best


class TrafficPolicy:
    """Where a request goes. `roles` is anything with `stable`, `canary` and `weights` (slot ->
    percent): the router passes the rollout controller's state."""

    def __init__(self, roles, shadow_share: float = 0.0, rng: Optional[random.Random] = None):
        self.roles = roles
        self.shadow_share = float(shadow_share)
        self.rng = rng or random.Random()

    def choose(self, user_id: Optional[str] = None) -> str:
        w = {s: v for s, v in self.roles.weights.items() if v > 0}
        if not w:
            return self.roles.stable
        if user_id:
            return rendezvous_choice(w, user_id)
        slots = sorted(w)
        return self.rng.choices(slots, weights=[w[s] for s in slots])[0]

    def shadow_to(self, primary: str) -> Optional[str]:
        """The slot that gets a shadow copy of a request answered by `primary`, or None."""
        canary = self.roles.canary
        if self.shadow_share > 0 and primary != canary and self.rng.random() < self.shadow_share:
            return canary
        return None

    def fallback_for(self, failed: str) -> Optional[str]:
        """The slot to retry on after `failed` could not answer, or None (stable itself failed)."""
        stable = self.roles.stable
        return stable if failed != stable else None
