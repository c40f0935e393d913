"""Which DOM nodes are vocabulary elements, and of which type.

`label_tree(tree)` walks a section's DOM top-down. Each node is offered to `RULES`, a table of
small functions tried in order; the first that answers decides: a type from the vocabulary,
`NOT_AN_ELEMENT` (look no further at this node, but do look inside it), or None (ask the next
rule). A node that no rule labels is a wrapper: the walk goes on into its children. A labelled
node ends the walk below it, except for containers (cards, and images with content on top),
whose children are elements of their own.

An explicit `data-layout="TYPE"` always wins (`data-layout="none"` marks a wrapper), unless the
caller asks to ignore it, which is how the project's own pages measure the rules
(`layoutray.data.web.score`). Where it wins, a rule's guess around explicit elements that the
guessed type cannot hold is a wrapper (a brand bar around a marked logo is not a second logo).

Signals, strongest first: ARIA roles, form controls, tag semantics, common class conventions
(Bootstrap, Bulma, BEM: `btn`, `badge`, `card`, `navbar-brand`, `feature-icon`...), then what the
node looks like (its computed style: fill, border, radius, size, font size and weight).
"""

from __future__ import annotations

import re
from typing import Callable, NamedTuple

from layoutray.data.vocab import ELEMENT_TYPES
from layoutray.data.web.tree import HEADING_TAGS, MEDIA_TAGS, Tree, class_tokens, clip_to

NOT_AN_ELEMENT = ""
EXPLICIT_WRAPPER = "none"  # data-layout="none": not an element, look inside
CONTAINERS = frozenset({"card"})  # labelled, and their children are elements too
TEXT_TYPES = frozenset({"heading", "subheading", "paragraph", "link"})  # boxed by their text
# What may still be found inside a labelled leaf: a badge set in a title ("Team [Popular]").
INSIDE = {"heading": frozenset({"badge"}), "subheading": frozenset({"badge"}), "paragraph": frozenset({"badge"})}
LIST_TAGS = frozenset({"ul", "ol", "menu"})
ICON_MAX = 64  # px: media this small are icons (a designer's icon sizes run 16-64)
ICON_HINT_MAX = 96  # px: a node with an icon class may be the icon's tile, padding included
LOGO_WORDS = frozenset({"logo", "logos", "brand", "wordmark", "client", "clients", "partner", "partners",
                        "customer", "customers", "sponsor", "sponsors"})
HOME_HREFS = frozenset({"/", "#top", "./", "index.html", "/index.html"})  # "#" is a placeholder, not home


class Element(NamedTuple):
    node: int
    type: str
    box: list[float]  # page px, clipped to the section
    explicit: bool  # from a data-layout attribute


class LayoutAttributeError(ValueError):
    """A data-layout value outside the vocabulary."""


# ---------------------------------------------------------------------------- shape helpers


def _wh(t: Tree, i: int) -> tuple[float, float]:
    return t.nodes[i]["box"][2], t.nodes[i]["box"][3]


def _text(t: Tree, i: int) -> str:
    return t.nodes[i].get("text") or ""


def _round(t: Tree, i: int) -> bool:
    w, h = _wh(t, i)
    return t.nodes[i].get("rad", 0) >= 0.35 * min(w, h) and 0.8 <= w / max(h, 1) <= 1.25


def _short(t: Tree, i: int, chars: int) -> bool:
    return 0 < t.nodes[i].get("tlen", 0) <= chars


def _lines(t: Tree, i: int) -> float:
    n = t.nodes[i]
    box = n.get("tbox") or n["box"]
    return box[3] / max(n.get("fs", 16) * 1.25, 1)


def _mentions(t: Tree, i: int, words: frozenset, up: int = 3) -> bool:
    """Whether node i, or one of its `up` nearest ancestors below the section root, carries one of
    `words` in its class, id, alt text or image file name."""
    for j in (i, *list(t.ancestors(i, up))):
        if j == 0:
            break
        n = t.nodes[j]
        names = class_tokens(n) | {n.get("id", "").lower()}
        names |= set(re.split(r"[^a-z0-9]+", (n.get("alt", "") + " " + n.get("src", "").rsplit("/", 1)[-1]).lower()))
        if names & words:
            return True
    return False


def _home_link(t: Tree, i: int) -> bool:
    """Inside an <a> that points at the site's home: where sites put their logo."""
    for j in t.ancestors(i, 3):
        n = t.nodes[j]
        if n["tag"] == "a":
            return (n.get("hrefv") or "") in HOME_HREFS
    return False


def _links_only(t: Tree, i: int) -> bool:
    """Two or more links and nothing else of note: no pictures, controls, titles or buttons."""
    c = t.counts[i]
    if c["links"] < 2 or c["controls"] or c["headings"] or c["media"] > c["links"]:
        return False
    return not any(t.nodes[j]["tag"] == "img" or (t.nodes[j]["tag"] == "a" and _button_like_link(t, j))
                   for j in _descendants(t, i))


def _button_like_link(t: Tree, j: int) -> bool:
    """A call to action among links; a menu's highlighted current item is still a link."""
    tokens = class_tokens(t.nodes[j])
    current = "active" in tokens or t.nodes[j].get("cur")
    return bool(tokens & {"btn", "button"}) or (_looks_like_button(t, j) and not current)


def _descendants(t: Tree, i: int):
    stack = list(t.children[i])
    while stack:
        j = stack.pop()
        yield j
        stack.extend(t.children[j])


def _looks_like_button(t: Tree, i: int) -> bool:
    """A short label in a padded box with its own fill or outline."""
    n = t.nodes[i]
    w, h = _wh(t, i)
    return t.paints(i) and n.get("pad", 0) >= 8 and n.get("padx", 0) >= 16 and 24 <= h <= 72 \
        and _short(t, i, 40) and t.counts[i]["headings"] == 0


def _looks_like_badge(t: Tree, i: int) -> bool:
    """A few words in a small rounded pill or tag."""
    n = t.nodes[i]
    w, h = _wh(t, i)
    return t.paints(i) and _short(t, i, 30) and h <= 36 and n.get("rad", 0) >= 2 and n.get("fs", 16) <= 15 \
        and t.counts[i]["leaves"] <= 2 and not n.get("bgimg")


def _looks_like_card(t: Tree, i: int) -> bool:
    """A painted panel holding several things, inset from the section's edges, standing on its
    own (not a band of a painted parent, not one row of a stack of joined rows)."""
    w, h = _wh(t, i)
    W, H = t.root_box[2], t.root_box[3]
    return t.paints(i) and t.counts[i]["leaves"] >= 2 and (w <= 0.92 * W or h <= 0.92 * H) \
        and not t.nodes[i].get("bgimg") and not _band(t, i) and not _stacked(t, i) and not _button_group(t, i)


def _button_group(t: Tree, i: int) -> bool:
    """A painted strip of buttons only (a segmented control): a group, not a card."""
    buttons = sum(t.nodes[j]["tag"] == "button" for j in _descendants(t, i))
    return buttons >= t.counts[i]["leaves"]


def _band(t: Tree, i: int) -> bool:
    """Flush with a painted ancestor's sides: a card's header or footer strip."""
    x, _, w, _ = t.nodes[i]["box"]
    for j in t.ancestors(i, 3):
        if j == 0:
            return False
        ax, _, aw, _ = t.nodes[j]["box"]
        if t.paints(j) and abs(ax - x) <= 2 and abs(aw - w) <= 4:
            return True
    return False


def _stacked(t: Tree, i: int) -> bool:
    """Touching a same-width sibling above or below: rows of one list box (an accordion), not cards."""
    x, y, w, h = t.nodes[i]["box"]
    for j in t.children[t.parent(i)]:
        if j == i or not t.paints(j):
            continue
        sx, sy, sw, sh = t.nodes[j]["box"]
        if abs(sx - x) <= 1 and abs(sw - w) <= 1 and (abs(sy + sh - y) <= 1.5 or abs(y + h - sy) <= 1.5):
            return True
    return False


def media_type(t: Tree, i: int) -> str:
    """An image-like node by what it shows and where: logo, avatar, icon or image."""
    w, h = _wh(t, i)
    tag = t.nodes[i]["tag"]
    if _mentions(t, i, LOGO_WORDS) or (_home_link(t, i) and max(w, h) <= 320):
        return "logo"
    if "avatar" in class_tokens(t.nodes[i]) or (tag in ("img", "picture") and _round(t, i) and 24 <= w <= 240):
        return "avatar"
    if max(w, h) <= ICON_MAX:
        return "icon"
    if h <= 80 and w / max(h, 1) >= 2.2 and w <= 320:  # a wide, short mark: a wordmark logo
        return "logo"
    return "image"


def text_type(t: Tree, i: int, default: str = "paragraph") -> str:
    """Text by its typography: display sizes are headings, short emphasised lines subheadings."""
    n = t.nodes[i]
    fs, base = n.get("fs", 16), t.base_font
    if fs >= max(28.0, 1.75 * base) and _short(t, i, 80):
        return "heading"
    bold = n.get("fw", 400) >= 600 and _short(t, i, 80) and _lines(t, i) <= 2.2
    eyebrow = n.get("upper") and fs <= base and _short(t, i, 60)
    larger = fs >= 1.2 * base and _short(t, i, 60) and _lines(t, i) <= 1.5
    return "subheading" if bold or eyebrow or larger else default


# ---------------------------------------------------------------------------- the rules


def _tiny_or_label(t: Tree, i: int):
    n = t.nodes[i]
    w, h = _wh(t, i)
    if w < 4 or h < 4 or n["tag"] in ("label", "option", "source", "track"):
        return NOT_AN_ELEMENT  # form labels belong to their field; 1px "sr-only" text is not seen
    return None


def _by_role(t: Tree, i: int):
    role = t.nodes[i].get("role", "")
    if role in ("button", "link") and t.nodes[i].get("exp"):
        return _accordion(t, i)
    if role == "button":
        return "button"
    if role == "link":
        return "link" if _text(t, i) else None
    if role == "navigation":
        return "navigation" if _links_only(t, i) else None
    if role == "img":
        return media_type(t, i)
    if role == "heading":
        return "heading" if (t.nodes[i].get("level") or 2) <= 3 else "subheading"
    if role in ("textbox", "searchbox", "combobox", "spinbutton"):
        return "input"
    if role == "list":
        return "list" if _simple_list(t, i) else None
    return None


def _form_control(t: Tree, i: int):
    n = t.nodes[i]
    if n["tag"] == "input":
        kind = n.get("type", "")
        if kind == "hidden":
            return NOT_AN_ELEMENT
        return "button" if kind in ("submit", "button", "reset", "image") else "input"
    return "input" if n["tag"] in ("textarea", "select") else None


def _accordion(t: Tree, i: int):
    """An accordion's toggle (a wide <button aria-expanded>, or <summary>) is its question."""
    n = t.nodes[i]
    if n["tag"] == "summary":
        return "subheading"
    if n.get("exp") and _wh(t, i)[0] >= 0.3 * t.root_box[2]:
        return "subheading"
    return None


def _button_tag(t: Tree, i: int):
    return "button" if t.nodes[i]["tag"] == "button" else None


def _navigation(t: Tree, i: int):
    """A site menu: <nav> or a nav class; a horizontal "menu"; a row or list of links in a header."""
    n = t.nodes[i]
    tokens = class_tokens(n)
    menu = n["tag"] == "nav" or tokens & {"nav", "navbar-nav", "menubar"} or ("menu" in tokens and _is_row(t, i)) \
        or ((n["tag"] in LIST_TAGS or _link_row(t, i)) and _in_site_header(t))
    return "navigation" if menu and _links_only(t, i) else None


def _is_row(t: Tree, i: int) -> bool:
    """Its visible children sit side by side on one line."""
    kids = [t.nodes[j]["box"] for j in t.children[i] if t.visible(j)]
    return len(kids) >= 2 and all(abs(b[1] - kids[0][1]) < 0.5 * max(kids[0][3], 1) for b in kids)


def _link_row(t: Tree, i: int) -> bool:
    """A box whose children are all plain links (two or more)."""
    kids = [j for j in t.children[i] if t.visible(j)]
    return len(kids) >= 2 and all(t.nodes[j]["tag"] == "a" and t.nodes[j].get("href") for j in kids)


def _in_site_header(t: Tree) -> bool:
    """A header or nav bar section: a list of links there is the site's menu."""
    root = t.nodes[0]
    return root["tag"] in ("nav", "header") or root.get("role") in ("navigation", "banner")


def _heading_tag(t: Tree, i: int):
    n = t.nodes[i]
    if n["tag"] not in HEADING_TAGS or not _text(t, i):
        return None
    if not n.get("own") and any(t.nodes[j].get("exp") or t.nodes[j]["tag"] == "button" for j in t.children[i]):
        return None  # an accordion header: the toggle inside is the element
    if n.get("fs", 16) <= t.base_font:
        return "subheading"  # a title set no larger than body text: an eyebrow or a label
    return "heading" if n["tag"] in ("h1", "h2", "h3") else "subheading"


def _media(t: Tree, i: int):
    return media_type(t, i) if t.nodes[i]["tag"] in MEDIA_TAGS else None


def _background_image(t: Tree, i: int):
    """A box showing a CSS background image: a picture of its own, or one with content on top."""
    n = t.nodes[i]
    if not n.get("bgimg") or i == 0:
        return None
    return "image" if n.get("text") or max(_wh(t, i)) > ICON_MAX else media_type(t, i)


def _simple_list(t: Tree, i: int) -> bool:
    """A list of short items (links, features, facts), not a grid of cards laid out as <li>."""
    items = [j for j in t.children[i] if t.visible(j)]
    if len(items) < 2:
        return False
    for j in items:
        c = t.counts[j]
        if c["headings"] or c["controls"] or c["leaves"] > 3 or t.nodes[j]["tag"] in HEADING_TAGS \
                or _looks_like_card(t, j) or any(max(_wh(t, k)) > ICON_MAX for k in _descendants(t, j)
                                                  if t.nodes[k]["tag"] in MEDIA_TAGS):
            return False
    return True


def _list_tag(t: Tree, i: int):
    return ("list" if _simple_list(t, i) else None) if t.nodes[i]["tag"] in LIST_TAGS else None


def _quote(t: Tree, i: int):
    n = t.nodes[i]
    if n["tag"] in ("blockquote", "q", "figcaption", "dd") and n.get("own"):
        return "paragraph"
    return None


def _anchor(t: Tree, i: int):
    n = t.nodes[i]
    if n["tag"] != "a" or not _text(t, i):
        return None  # an <a> around an image or icon: the image is the element
    if t.counts[i]["leaves"] > 2 and _looks_like_card(t, i):
        return "card"
    if (n.get("hrefv") or "") in HOME_HREFS and _short(t, i, 30) and (t.counts[i]["media"] or n.get("fw", 400) >= 600):
        return "logo"  # the site's name linking home, with or without its mark
    if t.counts[i]["headings"] or t.counts[i]["media"] > 1:
        return None  # a block link around several elements: a wrapper
    return "button" if _looks_like_button(t, i) else "link"


def _paragraph_tag(t: Tree, i: int):
    return text_type(t, i) if t.nodes[i]["tag"] == "p" and _text(t, i) else None


def _painted_text(t: Tree, i: int):
    if _looks_like_badge(t, i):
        return "badge"
    if _looks_like_button(t, i) and t.counts[i]["leaves"] <= 2:
        return "button"
    return None


def _painted_panel(t: Tree, i: int):
    return "card" if i and _looks_like_card(t, i) else None


def _painted_mark(t: Tree, i: int):
    """A small square with no text that paints something (or a ::before glyph): an icon."""
    n = t.nodes[i]
    w, h = _wh(t, i)
    if n.get("text") or max(w, h) > ICON_HINT_MAX or min(w, h) < 8 or t.counts[i]["media"] > 1:
        return None
    if (t.paints(i) or n.get("pseudo")) and 0.6 <= w / max(h, 1) <= 1.7:
        return "icon"
    return None


def _own_text(t: Tree, i: int):
    return text_type(t, i) if t.nodes[i].get("own") else None


# Class conventions: a token (a class name or one of its dash parts) suggests a type, which the
# type's guard must confirm (`card-body` carries "card" but is no panel of its own).
CLASS_HINTS: tuple[tuple[frozenset, str, Callable[[Tree, int], bool]], ...] = (
    (frozenset({"btn", "button", "cta-button"}),
     "button", lambda t, i: _short(t, i, 40) and t.counts[i]["controls"] + t.counts[i]["links"] <= 1
     and t.counts[i]["headings"] == 0),
    (frozenset({"badge", "tag", "pill", "chip"}),
     "badge", lambda t, i: _short(t, i, 30) and _wh(t, i)[1] <= 40 and t.counts[i]["leaves"] <= 2),
    (frozenset({"avatar", "headshot"}),
     "avatar", lambda t, i: max(_wh(t, i)) <= 240 and 0.7 <= _wh(t, i)[0] / max(_wh(t, i)[1], 1) <= 1.4),
    (frozenset({"logo", "brand", "wordmark", "navbar-brand"}), "logo", lambda t, i: _logo_box(t, i)),
    (frozenset({"icon", "fa", "fas", "far", "fab", "bi", "material-icons", "glyph"}),
     "icon", lambda t, i: max(_wh(t, i)) <= ICON_HINT_MAX and len(_text(t, i)) <= 2),
    (frozenset({"title"}),  # Bulma's .title, Bootstrap's .card-title: a title whatever the tag
     "heading", lambda t, i: _short(t, i, 100) and t.nodes[i].get("fs", 16) > t.base_font and t.counts[i]["media"] == 0
     and t.nodes[i]["tag"] not in MEDIA_TAGS),
    (frozenset({"card", "panel", "tile"}),
     "card", lambda t, i: i != 0 and _looks_like_card(t, i)),
)


def _logo_box(t: Tree, i: int) -> bool:
    """A mark and/or a short name, and nothing else that can be clicked (a brand bar's burger)."""
    n = t.nodes[i]
    if n["tag"] in MEDIA_TAGS:
        return True
    c = t.counts[i]
    if c["controls"] or c["links"] > 1 or any(t.nodes[j].get("role") == "button" for j in _descendants(t, i)):
        return False
    return _wh(t, i)[1] <= 120 and c["media"] <= 1 and (_short(t, i, 30) or (c["media"] == 1 and not _text(t, i)))


def _class_hint(t: Tree, i: int):
    tokens = class_tokens(t.nodes[i])
    for words, kind, guard in CLASS_HINTS:
        if tokens & words and guard(t, i):
            return kind
    return None


# The table: first answer wins. Order matters where signals disagree: a role beats a tag, a
# form control is always itself, class conventions beat tag defaults (<a class="btn">), and
# looks come last.
RULES: tuple[tuple[str, Callable[[Tree, int], str | None]], ...] = (
    ("tiny_or_label", _tiny_or_label),
    ("aria_role", _by_role),
    ("form_control", _form_control),
    ("accordion", _accordion),
    ("button_tag", _button_tag),
    ("navigation", _navigation),
    ("class_hint", _class_hint),
    ("heading_tag", _heading_tag),
    ("media", _media),
    ("background_image", _background_image),
    ("list_tag", _list_tag),
    ("quote", _quote),
    ("anchor", _anchor),
    ("paragraph_tag", _paragraph_tag),
    ("painted_text", _painted_text),
    ("painted_panel", _painted_panel),
    ("painted_mark", _painted_mark),
    ("own_text", _own_text),
)


def infer_type(t: Tree, i: int) -> tuple[str | None, str | None]:
    """(type or NOT_AN_ELEMENT or None, the name of the rule that answered)."""
    for name, rule in RULES:
        answer = rule(t, i)
        if answer is not None:
            return answer, name
    return None, None


def _explicit(t: Tree, i: int, honour: bool) -> str | None:
    value = t.nodes[i].get("dl")
    if not honour or value is None:
        return None
    value = value.strip().lower()
    if value != EXPLICIT_WRAPPER and value not in ELEMENT_TYPES:
        raise LayoutAttributeError(f"data-layout={value!r} on <{t.nodes[i]['tag']}> is not an element type "
                                   f"(allowed: {', '.join(ELEMENT_TYPES)}, or none)")
    return value


def _element(t: Tree, i: int, kind: str, explicit: bool) -> Element | None:
    box = clip_to(t.box_of(i, kind in TEXT_TYPES), t.root_box)
    return Element(i, kind, box, explicit) if box and box[2] >= 1 and box[3] >= 1 else None


def label_tree(t: Tree, honour_explicit: bool = True) -> list[Element]:
    """The section's elements in document order. Raises LayoutAttributeError for a data-layout
    value outside the vocabulary (when honoured)."""
    out: list[Element] = []
    root_kind = _explicit(t, 0, honour_explicit)
    if root_kind not in (None, EXPLICIT_WRAPPER):
        out.append(Element(0, root_kind, list(t.root_box), True))
    elif root_kind is None and t.nodes[0].get("bgimg"):
        out.append(Element(0, "image", list(t.root_box), False))  # a full-bleed background picture
    below = _explicit_below(t) if honour_explicit else {}
    # (node, what may be labelled there by the rules: None = anything, a set inside a leaf)
    stack: list[tuple[int, frozenset | None]] = [(j, None) for j in reversed(t.children[0])]
    while stack:
        i, allowed = stack.pop()
        kind = _explicit(t, i, honour_explicit)
        explicit = kind is not None
        if kind is None and t.visible(i) and allowed != frozenset():
            kind = infer_type(t, i)[0]
            kind = kind if allowed is None or kind in allowed else None
            if kind and not _may_hold(t, i, kind, below.get(i, set())):
                kind = None  # a guess around an explicit element it cannot hold: a wrapper
        elif kind == EXPLICIT_WRAPPER or (explicit and not t.visible(i)):
            kind = None
        el = _element(t, i, kind, explicit) if kind else None
        if el:
            out.append(el)
        inner = allowed if el is None or kind in CONTAINERS or _holds_content(t, i, kind) \
            else INSIDE.get(kind, frozenset())
        if inner != frozenset() or honour_explicit:  # explicit labels win even inside a leaf
            stack.extend((j, inner) for j in reversed(t.children[i]))
    return out


def _explicit_below(t: Tree) -> dict[int, set[str]]:
    """{node: the explicit data-layout types of the visible nodes under it}, in one pass."""
    order, stack = [], [0]
    while stack:  # pre-order; read backwards, every node comes after all of its descendants
        i = stack.pop()
        order.append(i)
        stack.extend(t.children[i])
    below: dict[int, set[str]] = {}
    for i in reversed(order):
        own = set()
        for j in t.children[i]:
            own |= below.get(j, set())
            kind = _explicit(t, j, True)
            if kind not in (None, EXPLICIT_WRAPPER) and t.visible(j):
                own.add(kind)
        if own:
            below[i] = own
    return below


def _may_hold(t: Tree, i: int, kind: str, explicit_inside: set[str]) -> bool:
    """Whether a node the rules call `kind` may hold these explicitly labelled elements: a
    container holds anything; a leaf only what INSIDE lets it (a badge in a heading). The brand
    bar guessed `logo` around a link marked `data-layout="logo"` is not a second logo."""
    return kind in CONTAINERS or _holds_content(t, i, kind) or explicit_inside <= INSIDE.get(kind, frozenset())


def _holds_content(t: Tree, i: int, kind: str) -> bool:
    """An image with text on top (a banner's background) is a container like a card."""
    return kind == "image" and bool(t.nodes[i].get("text"))


def unlabelled_content(t: Tree, elements: list[Element]) -> list[int]:
    """Visible text, media and controls that no element covers: what a skip report names."""
    covered = set()
    for el in elements:
        covered.add(el.node)
        if el.type not in CONTAINERS and not _holds_content(t, el.node, el.type):
            covered.update(_descendants(t, el.node))
    return [i for i in range(1, len(t.nodes)) if i not in covered and t.visible(i)
            and t.own_counts(i)["leaves"] and t.nodes[i]["tag"] not in ("label", "option")]
