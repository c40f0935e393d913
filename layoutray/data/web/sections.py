"""Which of the 13 section types a labelled section is, or that it cannot tell.

`classify(tree, elements, index, total)` scores every section type with a small function of the
section's facts (`section_facts`): its tag and landmark role, the names its author gave it
(classes, ids), the words of its headings, and what its elements are (prices, questions,
quotes, avatars, big numbers, form fields...). The best score must be both high enough and
clear of the runner-up; otherwise the answer is None with the two candidates, and the caller
reports the section and skips it instead of guessing. An explicit `data-section="TYPE"` wins.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Callable, NamedTuple

from layoutray.data.vocab import SECTION_TYPES
from layoutray.data.web.elements import Element
from layoutray.data.web.tree import Tree, class_tokens

MIN_SCORE = 3.0  # evidence needed for a type
MIN_MARGIN = 1.0  # and its lead over the next type
NAME_POINTS = 3.0  # the author named the section (class or id)
HEADING_POINTS = 2.0  # a heading says what the section is

# Words in class names / ids (whole tokens) and in heading text (phrases), per section type.
NAMES: dict[str, tuple[frozenset, tuple[str, ...]]] = {
    "hero": (frozenset({"hero", "jumbotron", "splash", "intro"}), ()),
    "feature_grid": (frozenset({"features", "feature", "services", "benefits"}),
                     ("features", "everything you need", "why ", "how it works", "what you get")),
    "pricing": (frozenset({"pricing", "plans", "prices", "tiers"}), ("pricing", "plans", "plan for")),
    "testimonials": (frozenset({"testimonials", "testimonial", "reviews", "quotes"}),
                     ("testimonial", "what our", "customers say", "loved by", "reviews")),
    "call_to_action": (frozenset({"cta", "call-to-action", "newsletter", "signup"}),
                       ("ready to", "get started", "start your", "subscribe", "join ", "try it", "today")),
    "footer": (frozenset({"footer", "site-footer"}), ()),
    "gallery": (frozenset({"gallery", "portfolio", "showcase", "photos"}), ("gallery", "portfolio", "our work")),
    "team": (frozenset({"team", "people", "staff", "leadership"}),
             ("our team", "the team", "meet ", "people behind", "leadership", "hosts", "founders", "who we are")),
    "faq": (frozenset({"faq", "faqs", "questions"}), ("faq", "frequently asked", "questions")),
    "stats": (frozenset({"stats", "statistics", "numbers", "metrics", "counters"}),
              ("by the numbers", "in numbers", "stats")),
    "logo_wall": (frozenset({"logos", "clients", "partners", "brands", "customers", "trusted"}),
                  ("trusted by", "used by", "our clients", "partners", "companies")),
    "contact_form": (frozenset({"contact"}), ("contact", "get in touch", "talk to", "reach us", "message")),
    "navbar": (frozenset({"navbar", "topbar", "site-header", "masthead-nav", "menu"}), ()),
}

_PRICE = re.compile(r"(?:[$€£¥]\s?\d[\d.,]*|\d[\d.,]*\s?(?:€|\$|usd|eur))(?:\s*(?:/|per)\s*\w+)?", re.I)
_PERIOD = re.compile(r"(?:/|per\s)\s*(?:mo|month|yr|year|user|seat|week)", re.I)
# A person's name as sites set it: one to three capitalised words, no digits ("Ana Ribeiro", "Isla").
_NAME = re.compile(r"^(?:[A-ZÀ-Ý][\w'’.-]*)(?:\s+(?:[A-ZÀ-Ý][\w'’.-]*|and|&|de|van|von)){0,3}$")
_STAT = re.compile(r"^[~<>+]?[$€£]?\d[\d.,]*\s?(?:%|[kmb]\b|k\+|m\+|b\+|x|×|\+|/\d+|h|ms|s)?\+?$", re.I)


class Verdict(NamedTuple):
    section_type: str | None
    scores: dict[str, float]
    reason: str  # why: "data-section", or the winning type's score, or the tie


def section_facts(t: Tree, elements: list[Element], index: int, total: int) -> dict:
    """What the scorers read; plain values so a test can build one by hand."""
    kinds = Counter(e.type for e in elements)
    texts = {e.type: [] for e in elements}
    for e in elements:
        texts[e.type].append((t.nodes[e.node].get("text") or "").strip())
    root = t.nodes[0]
    titles = texts.get("heading", []) + texts.get("subheading", [])
    heads = [s.lower() for s in titles]
    tags = Counter(n["tag"] for n in t.nodes)
    names = class_tokens(root) | {root.get("id", "").lower()}
    for j in t.children[0]:  # a wrapper right inside often carries the name (<div class="pricing">)
        names |= class_tokens(t.nodes[j]) | {t.nodes[j].get("id", "").lower()}
    all_text = " ".join(s for v in texts.values() for s in v)
    return {
        "kinds": kinds, "tag": root["tag"], "role": root.get("role", ""), "names": names - {""},
        "heads": heads, "height": root["box"][3], "width": root["box"][2], "index": index, "total": total,
        "prices": sum(_is_price(s) for s in all_text_items(texts)),
        "stats": sum(bool(_STAT.match(s)) for s in titles),
        "questions": sum(s.endswith("?") for s in heads),
        "quotes": tags["blockquote"] + tags["q"] + sum(s[:1] in "“\"«" for s in texts.get("paragraph", [])),
        "toggles": tags["details"] + sum(bool(n.get("exp")) for n in t.nodes),
        "textareas": tags["textarea"],
        "h1": tags["h1"], "copyright": bool(re.search(r"©|&copy;|copyright|all rights reserved", all_text, re.I)),
        "person_names": sum(bool(_NAME.match(s)) for s in titles),
        "portraits": sum(e.type in ("image", "avatar") and e.box[3] >= 0.9 * e.box[2] for e in elements),
        "image_share": _area([e.box for e in elements if e.type == "image" and e.node != 0]) / max(_area([root["box"]]), 1.0),
    }


def _area(boxes: list[list[float]]) -> float:
    return sum(b[2] * b[3] for b in boxes) or 0.0


def _is_price(s: str) -> bool:
    """An amount with a currency, either per period ("$9 / mo") or standing alone ("€40")."""
    return bool(_PRICE.search(s)) and (bool(_PERIOD.search(s)) or len(s) <= 12)


def all_text_items(texts: dict[str, list[str]]):
    for kind in ("heading", "subheading", "paragraph", "badge"):
        yield from texts.get(kind, [])


def _named(f: dict, kind: str) -> float:
    words, phrases = NAMES[kind]
    points = NAME_POINTS if f["names"] & words else 0.0
    if any(p in h for h in f["heads"] for p in phrases):
        points += HEADING_POINTS
    return points


def _navbar(f: dict) -> float:
    k = f["kinds"]
    s = 3.0 if f["tag"] == "nav" or f["role"] == "navigation" else 0.0
    s += 1.0 if f["tag"] == "header" or f["role"] == "banner" else 0.0
    s += 2.0 if k["navigation"] and (k["logo"] or k["button"]) else 0.0
    s += 1.0 if k["logo"] and f["index"] == 0 else 0.0  # the page's top bar shows the brand
    return s + (1.0 if f["height"] <= 140 else -3.0 if f["height"] > 320 else 0.0)


def _footer(f: dict) -> float:
    k = f["kinds"]
    s = 3.0 if f["tag"] == "footer" or f["role"] == "contentinfo" else 0.0
    s += 2.0 if f["copyright"] else 0.0
    s += 1.0 if f["index"] == f["total"] - 1 and f["total"] > 1 else 0.0
    return s + (1.0 if k["list"] + k["navigation"] >= 2 or k["link"] >= 6 else 0.0)


def _hero(f: dict) -> float:
    k = f["kinds"]
    if not k["heading"]:
        return 0.0  # a hero states something
    s = 2.0 if f["h1"] else 0.0
    s += 1.0 if f["index"] <= 1 else 0.0
    s += 1.0 if f["height"] >= 450 and k["heading"] >= 1 else 0.0
    s += 1.0 if k["button"] + k["input"] >= 1 and k["heading"] >= 1 else 0.0
    return s - (2.0 if k["card"] >= 2 else 0.0)


def _features(f: dict) -> float:
    k = f["kinds"]
    items = max(k["icon"], k["card"], k["image"] if k["image"] <= 6 else 0)
    s = 2.0 if items >= 3 and k["paragraph"] >= 3 else 0.0
    s += 1.0 if k["subheading"] + k["heading"] >= 4 else 0.0
    return s - (2.0 if f["prices"] >= 2 or k["avatar"] >= 2 or _people(f) else 0.0)


def _pricing(f: dict) -> float:
    k = f["kinds"]
    s = 3.0 if f["prices"] >= 2 else 1.0 if f["prices"] == 1 else 0.0
    return s + (1.0 if k["card"] >= 2 and k["list"] >= 2 and k["button"] >= 2 else 0.0)


def _testimonials(f: dict) -> float:
    k = f["kinds"]
    s = 3.0 if f["quotes"] >= 1 else 0.0
    return s + (1.0 if k["avatar"] >= 1 and k["paragraph"] >= 2 else 0.0)


def _cta(f: dict) -> float:
    k = f["kinds"]
    small = sum(k.values()) <= 8 and k["card"] <= 1 and k["image"] <= 1 and k["input"] <= 1
    s = 2.0 if small and k["button"] >= 1 and k["heading"] >= 1 and not f["h1"] else 0.0
    s += 1.0 if small and k["input"] == 1 else 0.0
    s += 1.0 if s and f["height"] <= 480 else 0.0  # a band, not a page-opening hero
    return s - (1.0 if f["index"] <= 1 else 0.0)


def _gallery(f: dict) -> float:
    """Pictures make up the section: many images, a large share of its area, no people's names."""
    k = f["kinds"]
    other = sum(v for t, v in k.items() if t not in ("image", "heading", "subheading", "paragraph"))
    if k["image"] < 4 or other > k["image"] // 2 or f["person_names"] >= 3:
        return 0.0
    return 4.0 if f["image_share"] >= 0.3 else 2.0


def _people(f: dict) -> bool:
    """Pictures of people with their names: three or more faces (avatars, portraits, or pictures
    whose titles are mostly names)."""
    k = f["kinds"]
    titles = k["heading"] + k["subheading"]
    named = f["person_names"] >= 3 and f["person_names"] >= 0.6 * titles
    return named and (k["avatar"] >= 3 or f["portraits"] >= 3 or k["image"] >= 3) and f["quotes"] == 0


def _team(f: dict) -> float:
    return 3.0 if _people(f) else 0.0


def _faq(f: dict) -> float:
    return 3.0 if f["questions"] >= 2 or f["toggles"] >= 2 else 0.0


def _stats(f: dict) -> float:
    return 3.0 if f["stats"] >= 3 and f["prices"] < 2 else 0.0


def _logo_wall(f: dict) -> float:
    k = f["kinds"]
    return 3.0 if k["logo"] >= 4 and not k["navigation"] else 0.0


def _contact(f: dict) -> float:
    k = f["kinds"]
    return 3.0 if k["input"] >= 2 and (f["textareas"] or k["input"] >= 3) else 0.0


SCORERS: dict[str, Callable[[dict], float]] = {
    "hero": _hero, "feature_grid": _features, "pricing": _pricing, "testimonials": _testimonials,
    "call_to_action": _cta, "footer": _footer, "gallery": _gallery, "team": _team, "faq": _faq,
    "stats": _stats, "logo_wall": _logo_wall, "contact_form": _contact, "navbar": _navbar,
}
assert set(SCORERS) == set(SECTION_TYPES) == set(NAMES)


class SectionAttributeError(ValueError):
    """A data-section value outside the vocabulary."""


def score(f: dict) -> dict[str, float]:
    return {kind: SCORERS[kind](f) + _named(f, kind) for kind in SECTION_TYPES}


def classify(t: Tree, elements: list[Element], index: int = 0, total: int = 1,
             honour_explicit: bool = True) -> Verdict:
    explicit = (t.nodes[0].get("ds") or "").strip().lower() if honour_explicit else ""
    if explicit:
        if explicit not in SECTION_TYPES:
            raise SectionAttributeError(f"data-section={explicit!r} is not a section type "
                                        f"(allowed: {', '.join(SECTION_TYPES)})")
        return Verdict(explicit, {}, "data-section")
    scores = score(section_facts(t, elements, index, total))
    ranked = sorted(scores.items(), key=lambda kv: -kv[1])
    (best, s1), (second, s2) = ranked[0], ranked[1]
    if s1 < MIN_SCORE:
        return Verdict(None, scores, f"no type has enough evidence (best {best} {s1:g})")
    if s1 - s2 < MIN_MARGIN:
        return Verdict(None, scores, f"{best} ({s1:g}) and {second} ({s2:g}) are too close to call")
    return Verdict(best, scores, f"{best} {s1:g} vs {second} {s2:g}")
