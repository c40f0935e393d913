"""One section's DOM as the browser reported it, with the derived facts the rules share.

`Tree(nodes)` takes the flat node list of `browser.EXTRACT_JS` (node 0 is the section root,
each node names its parent) and adds children, the effective background behind each node and
per-subtree counts (text leaves, media, links, controls), computed once so that the rules in
`elements.py` and `sections.py` stay one-liners over them.
"""

from __future__ import annotations

import re
from functools import cached_property

MEDIA_TAGS = frozenset({"img", "svg", "picture", "video", "canvas", "iframe", "object"})
CONTROL_TAGS = frozenset({"input", "textarea", "select", "button"})
HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_RGBA = re.compile(r"rgba?\(\s*([\d.]+)[,\s]+([\d.]+)[,\s]+([\d.]+)(?:\s*[,/]\s*([\d.]+%?))?\s*\)")
_SPLIT = re.compile(r"[-_]+")


def parse_color(css: str | None) -> tuple[float, float, float, float] | None:
    """(r, g, b, alpha) of a computed colour; None when transparent. Forms other than rgb()/rgba()
    (oklch(), color()) count as an opaque colour of unknown value."""
    if not css or css == "transparent":
        return None
    m = _RGBA.match(css)
    if not m:
        return (-1.0, -1.0, -1.0, 1.0)
    a = m.group(4)
    alpha = 1.0 if a is None else (float(a[:-1]) / 100 if a.endswith("%") else float(a))
    return None if alpha < 0.05 else (float(m.group(1)), float(m.group(2)), float(m.group(3)), alpha)


def class_tokens(node: dict) -> set[str]:
    """Class names and their dash/underscore parts, lower case: `feature-icon` -> feature-icon,
    feature, icon. Rules look tokens up in small tables (`elements.CLASS_HINTS`)."""
    out = set()
    for name in (node.get("cls") or "").lower().split():
        out.add(name)
        out.update(p for p in _SPLIT.split(name) if p)
    return out


class Tree:
    """A section: `nodes[0]` is its root. Boxes are page px [x, y, w, h]."""

    def __init__(self, nodes: list[dict], page_bg: str | None = None, base_font: float = 16.0):
        if not nodes:
            raise ValueError("a section needs at least its root node")
        self.nodes = nodes
        self.page_bg = parse_color(page_bg) or (255.0, 255.0, 255.0, 1.0)
        self.base_font = base_font or 16.0
        self.children: list[list[int]] = [[] for _ in nodes]
        for i, n in enumerate(nodes):
            if n["p"] >= 0:
                self.children[n["p"]].append(i)

    @property
    def root_box(self) -> list[float]:
        return self.nodes[0]["box"]

    def parent(self, i: int) -> int:
        return self.nodes[i]["p"]

    def ancestors(self, i: int, limit: int = 64):
        """Indices of i's ancestors inside the section, nearest first (the root included)."""
        p = self.parent(i)
        while p >= 0 and limit > 0:
            yield p
            p, limit = self.parent(p), limit - 1

    @cached_property
    def backgrounds(self) -> list[tuple]:
        """The colour painted behind each node's content: its own, else its nearest ancestor's."""
        out: list[tuple] = []
        for i, n in enumerate(self.nodes):
            own = parse_color(n.get("bg"))
            out.append(own or (out[n["p"]] if n["p"] >= 0 else self.page_bg))
        return out

    def behind(self, i: int) -> tuple:
        """The colour behind node i (its parent's effective background)."""
        p = self.parent(i)
        return self.backgrounds[p] if p >= 0 else self.page_bg

    def paints(self, i: int) -> bool:
        """Whether node i draws its own boundary: a border on 3 or 4 sides (one rule above or below
        is a divider, not a box), a shadow, a gradient or image, or a fill that differs from what
        is behind it."""
        n = self.nodes[i]
        if n.get("bd", 0) >= 3 or n.get("sh") or n.get("grad") or n.get("bgimg"):
            return True
        own = parse_color(n.get("bg"))
        return own is not None and _differs(own, self.behind(i))

    @cached_property
    def counts(self) -> list[dict]:
        """Per node, over its descendants (itself excluded): text leaves, media, links, controls,
        heading tags, and all content leaves."""
        keys = ("text", "media", "links", "controls", "headings", "leaves")
        out = [dict.fromkeys(keys, 0) for _ in self.nodes]
        for i in range(len(self.nodes) - 1, 0, -1):  # children come after their parent
            mine = self.own_counts(i)
            acc, up = out[i], out[self.parent(i)]
            for k in keys:
                up[k] += acc[k] + mine[k]
        return out

    def own_counts(self, i: int) -> dict:
        n = self.nodes[i]
        text = bool(n.get("own")) and n.get("vis", True)
        media = n["tag"] in MEDIA_TAGS or (bool(n.get("bgimg")) and not n.get("text"))
        control = n["tag"] in CONTROL_TAGS
        return {"text": int(text), "media": int(media), "links": int(n["tag"] == "a" and bool(n.get("href"))),
                "controls": int(control), "headings": int(n["tag"] in HEADING_TAGS),
                "leaves": int(text or media or control)}

    def visible(self, i: int) -> bool:
        n = self.nodes[i]
        x, y, w, h = n["box"]
        return bool(n.get("vis", True)) and w >= 2 and h >= 2

    def box_of(self, i: int, text_box: bool) -> list[float]:
        """The node's box, or the tight box of its text (for text elements) when it has one."""
        n = self.nodes[i]
        if text_box and n.get("tbox"):
            return _intersect(n["tbox"], n["box"]) or n["box"]
        return n["box"]


def _differs(a: tuple, b: tuple, tol: float = 6.0) -> bool:
    if a[0] < 0 or b[0] < 0:  # a colour we could not read: compare nothing, assume different
        return True
    return any(abs(x - y) > tol for x, y in zip(a[:3], b[:3]))


def _intersect(a: list[float], b: list[float]) -> list[float] | None:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    return [x0, y0, x1 - x0, y1 - y0] if x1 > x0 and y1 > y0 else None


def clip_to(box: list[float], canvas: list[float]) -> list[float] | None:
    """A page box clipped to the section's box, or None when nothing of it is inside."""
    return _intersect(box, canvas)
