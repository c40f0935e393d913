"""The section generators of the synthetic data, one function per section type.

Each generator fills a `Page` (layoutray.data.page_grid) from y = 0 and returns how the section sits on
its canvas: (min_height, pad_top, pad_bottom), or a fixed canvas height when it placed everything
itself. `layoutray.data.synth` turns that into a dataset row with its wireframe. Golden-ratio splits
(61.8 / 38.2, `GOLDEN`) appear where designers use them: hero text and image, contact text and form,
bento galleries.
"""

from __future__ import annotations

from layoutray.data.page_grid import GOLDEN, PHI, Page, bottom, buttons, el, fit_grid, gap, header
from layoutray.data.vocab import SECTION_TYPES


def _navbar(p: Page):
    r = p.r
    H = r.choice((64, 72, 80, 88, 96, 112))
    lw, lh = r.randint(6, 10) * 16, r.choice((28, 32, 36, 40))
    p.add("logo", p.x0, (H - lh) / 2, lw, lh)
    n_items, item_w = r.randint(3, 6), r.randint(72, 104)
    nh = r.choice((20, 24))
    right = p.x0 + p.cw
    actions = []
    if r.random() < 0.8:
        actions.append(("button", r.randint(7, 10) * 16, r.choice((40, 44, 48))))
    if r.random() < 0.45:
        actions.insert(0, (r.choice(("link", "link", "button")), r.randint(4, 6) * 16, 40))
    if r.random() < 0.25:
        actions.insert(0, ("icon", 24, 24))
    for kind, w, h in reversed(actions):
        right -= w
        style = "primary" if kind == "button" and right + w == p.x0 + p.cw else "secondary"
        p.add(kind, right, (H - h) / 2, w, h if kind != "link" else 24, style=style)
        right -= 24
    nav_w = n_items * item_w
    layout = r.choice(("center", "right", "left"))
    if layout == "center":
        nx = (p.W - nav_w) / 2
    elif layout == "right":
        nx = right - nav_w - 8
    else:
        nx = p.x0 + lw + 64
    nav_w = min(nav_w, max(96, right - nx))
    p.add("navigation", nx, (H - nh) / 2, nav_w, nh, lines=n_items)
    return H


def _hero(p: Page):
    r = p.r
    variant = r.choice(("split", "split", "split", "center", "center_image", "background"))
    min_h = r.randint(75, 112) * 8  # 600-896
    if variant == "background":
        p.add("image", 0, 0, p.W, 1, style="bleed")
    extra = r.random()
    if variant == "split":
        text_share = GOLDEN if r.random() < 0.6 else 1 - GOLDEN if r.random() < 0.5 else 0.5
        tw = round((p.cw - p.g) * text_share)
        iw = p.cw - p.g - tw
        text_left = r.random() < 0.75
        tx = p.x0 if text_left else p.x0 + iw + p.g
        ix = p.x0 + tw + p.g if text_left else p.x0
        align, measure = "left", tw - r.choice((0, 32, 64))
    else:
        span = r.choice((8, 8, 10))
        tx, measure = p.col((12 - span) // 2, span)
        align = "center" if variant != "background" or r.random() < 0.5 else "left"
        if align == "left":
            tx, measure = p.col(0, 7)
    y = 0
    if r.random() < 0.35:
        bw = r.randint(10, 16) * 12
        p.add("badge", tx + ((measure - bw) / 2 if align == "center" else 0), y, bw, 32)
        y += 32 + 24
    y = bottom([p.text("heading", tx, y, measure, r.choice((48, 56, 64, 72)), r.choice((1, 2, 2, 3)), align)])
    y += r.choice((16, 24))
    y = bottom([p.text("paragraph", tx, y, measure * r.uniform(0.8, 1.0), r.choice((18, 20)),
                        r.choice((2, 2, 3, 4)), align)])
    y += r.choice((32, 48))
    if extra < 0.2:  # email capture instead of buttons
        iw_, bw = r.randint(18, 24) * 16, r.randint(8, 10) * 16
        ix_ = tx + (measure - iw_ - bw - 16) / 2 if align == "center" else tx
        p.add("input", ix_, y, iw_, 48)
        p.add("button", ix_ + iw_ + 16, y, bw, 48, style="primary")
        y += 48
    else:
        y = buttons(p, tx, y, measure, align, r.choice((1, 2, 2)))
    if r.random() < 0.3 and p.left >= 4:  # social proof: a row of avatars or customer logos
        y += r.choice((32, 48))
        if r.random() < 0.5:
            n = r.randint(3, min(5, p.left - 1))
            total = n * 40 - (n - 1) * 12 + 16 + 160
            ax = tx + (measure - total) / 2 if align == "center" else tx
            for i in range(n):
                p.add("avatar", ax + i * 28, y, 40, 40)
            p.text("paragraph", ax + n * 28 + 28, y + 8, 160, 14, 1, frac=1.0)
            y += 40
        else:
            n = r.randint(3, min(5, p.left))
            lw = 96
            total = n * lw + (n - 1) * 32
            lx = tx + (measure - total) / 2 if align == "center" else tx
            for i in range(n):
                p.add("logo", lx + i * (lw + 32), y, lw, 32)
            y += 32
    if variant == "split":
        text_h = y
        ih = max(text_h, r.randint(45, 70) * 8)
        top = (text_h - ih) / 2
        p.add("image", ix, top, iw, ih)
    elif variant == "center_image" and p.left >= 1:
        y += r.choice((48, 64))
        span = r.choice((10, 12))
        x, w = p.col((12 - span) // 2, span)
        p.add("image", x, y, w, min(480, round(w / r.choice((PHI, 16 / 9, 2.0)))))  # keeps heroes < ~1000 px
    return min_h, r.choice((96, 128)), r.choice((96, 128))


def _feature_grid(p: Page):
    r = p.r
    align = r.choice(("center", "center", "left"))
    style = r.choice(("icon", "icon", "card", "image", "card_image"))
    per = {"icon": 3, "card": 4, "image": 3, "card_image": 4}[style]
    with_link = r.random() < 0.3
    per += with_link
    y = header(p, 0, align, budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = fit_grid(r.choice((2, 3, 3, 4)), r.choice((1, 1, 2)), per, p.left, min_cols=2)
    if cols * per > p.left:  # a tiny cap: drop the optional parts of each item
        per, with_link = per - with_link, False
    span = 12 // cols
    item_align = "center" if align == "center" and style == "icon" and r.random() < 0.5 else "left"
    # One icon size, padding, gap and title size for the whole grid: designers repeat a component.
    para_lines = r.choice((2, 3, 3, 4))
    pad = r.choice((24, 32)) if style.startswith("card") else 0
    s, gap1, ft = r.choice((40, 48, 56)), r.choice((16, 24)), r.choice((20, 22, 24))
    aspect = r.choice((PHI, 4 / 3, 16 / 9))
    for row in range(rows):
        row_els = []
        for c in range(cols):
            x, w = p.col(c * span, span)
            boxed = style.startswith("card")
            ix, iw, iy = x + pad, w - 2 * pad, y + pad
            items = []
            if style in ("icon", "card"):
                items.append(el("icon", ix + ((iw - s) / 2 if item_align == "center" else 0), iy, s, s))
                iy += s + gap1
            else:
                ih = round(iw / aspect)
                if style == "card_image":  # the image runs to the card's edges
                    items.append(el("image", x, y, w, ih))
                else:
                    items.append(el("image", ix, iy, iw, ih))
                iy = (y if style == "card_image" else iy) + ih + gap1
            hw = iw * r.uniform(0.5, 0.9)
            items.append(el("heading", ix + ((iw - hw) / 2 if item_align == "center" else 0), iy, hw,
                             round(ft * 1.2), lines=1, align=item_align))
            iy += round(ft * 1.2) + 8
            ph = round(para_lines * 16 * 1.5)
            items.append(el("paragraph", ix, iy, iw, ph, lines=para_lines, align=item_align))
            iy += ph
            if with_link:
                lw = r.randint(6, 9) * 16
                iy += 16
                items.append(el("link", ix + ((iw - lw) / 2 if item_align == "center" else 0), iy, lw, 24))
                iy += 24
            if boxed:
                items.insert(0, el("card", x, y, w, iy + pad - y))
            row_els.append(items)
        # Cards in a grid row share one height (CSS grid stretch).
        row_h = max(bottom(items) for items in row_els) - y
        for items in row_els:
            if items[0]["type"] == "card":
                items[0]["h"] = row_h
            for e in items:
                p.put(e)
        y += row_h + r.choice((32, 48))
    return r.randint(50, 70) * 8, r.choice((64, 96)), r.choice((64, 96))


def _pricing(p: Page):
    r = p.r
    n = r.choice((2, 3, 3, 4))
    y = header(p, 0, "center", budget=max(1, p.left - 2 * 5)) + r.choice((48, 64))
    budget = p.left
    # Each card: card, plan name, price, list, button (+ badge, + paragraph when the cap allows).
    while n > 2 and n * 5 > budget:
        n -= 1
    per_left = budget - n * 5
    span = 12 // n
    start = 2 if n == 2 and r.random() < 0.6 else 0
    span = 4 if start == 2 else span
    featured = r.randrange(n)
    items_n = r.randint(3, 6)
    pad = r.choice((24, 32))
    cards = []
    for i in range(n):
        x, w = p.col(start + i * span, span)
        iy = y + pad
        kids = []
        kids.append(el("heading", x + pad, iy, (w - 2 * pad) * r.uniform(0.35, 0.6), 29, lines=1))
        if per_left > 0 and (i == featured or r.random() < 0.3):
            kids.append(el("badge", x + w - pad - 96, iy + 2, 96, 24))
            per_left -= 1
        iy += 29 + 16
        kids.append(el("subheading", x + pad, iy, (w - 2 * pad) * r.uniform(0.35, 0.55), 48, lines=1))
        iy += 48 + 16
        if per_left > 0 and r.random() < 0.5:
            kids.append(el("paragraph", x + pad, iy, w - 2 * pad, 48, lines=2))
            per_left -= 1
            iy += 48 + 16
        kids.append(el("list", x + pad, iy, w - 2 * pad, items_n * 32, lines=items_n))
        iy += items_n * 32 + 32
        kids.append(el("button", x + pad, iy, w - 2 * pad, 48, style="primary" if i == featured else "secondary"))
        iy += 48 + pad
        cards.append((el("card", x, y, w, iy - y, style="featured" if i == featured else ""), kids))
    card_h = max(c["h"] for c, _ in cards)
    for c, kids in cards:
        c["h"] = card_h
        kids[-1]["y"] = c["y"] + card_h - pad - 48  # buttons line up at the card bottoms
        p.put(c)
        for k in kids:
            p.put(k)
    return r.randint(75, 100) * 8, r.choice((64, 96)), r.choice((64, 96))


def _testimonials(p: Page):
    r = p.r
    if r.random() < 0.3:  # one big quote
        span = r.choice((8, 10))
        x, w = p.col((12 - span) // 2, span)
        y = 0
        if r.random() < 0.6:
            p.add("icon", x + (w - 48) / 2, y, 48, 48)
            y += 48 + 24
        y = bottom([p.text("paragraph", x, y, w, r.choice((24, 28)), r.choice((2, 3, 4)), "center")]) + 32
        p.add("avatar", x + (w - 64) / 2, y, 64, 64)
        y += 64 + 16
        p.text("subheading", x, y, w, 18, 1, "center", frac=0.25)
        y += 22 + 4
        p.text("paragraph", x, y, w, 14, 1, "center", frac=0.3)
        if r.random() < 0.4:
            p.add("logo", x + (w - 120) / 2, y + 21 + 24, 120, 32)
        return r.randint(50, 65) * 8, 96, 96
    y = header(p, 0, r.choice(("center", "left")), budget=max(1, p.left - 8)) + r.choice((48, 64))
    per = 5 if r.random() < 0.6 else 4  # with or without a role line
    cols, rows = fit_grid(r.choice((2, 3, 3)), r.choice((1, 1, 2)), per, p.left)
    span = 12 // cols
    lines = r.choice((3, 4, 5))
    pad = r.choice((24, 32))
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            iy = y + pad
            kids = [el("paragraph", x + pad, iy, w - 2 * pad, round(lines * 18 * 1.5), lines=lines)]
            iy += round(lines * 18 * 1.5) + 24
            kids.append(el("avatar", x + pad, iy, 48, 48))
            kids.append(el("subheading", x + pad + 64, iy + (2 if per == 5 else 12), (w - 2 * pad - 64) * 0.5, 22, lines=1))
            if per == 5:
                kids.append(el("paragraph", x + pad + 64, iy + 28, (w - 2 * pad - 64) * 0.6, 20, lines=1))
            iy += 48 + pad
            p.put(el("card", x, y, w, iy - y))
            for k in kids:
                p.put(k)
        y = iy + r.choice((24, 32))
    return r.randint(50, 65) * 8, r.choice((64, 96)), r.choice((64, 96))


def _call_to_action(p: Page):
    r = p.r
    variant = r.choice(("center", "split", "banner", "newsletter"))
    if variant == "split":
        x, w = p.col(0, 7)
        y = bottom([p.text("heading", x, 0, w, r.choice((32, 40, 48)), r.choice((1, 2)))])
        if r.random() < 0.7:
            y = bottom([p.text("paragraph", x, y + 16, w, 18, r.choice((1, 2)))])
        bx, bw = p.col(8, 4)
        n = r.choice((1, 2))
        buttons(p, bx + bw - (n * 160 + 16 * (n - 1)), (y - 48) / 2, n * 160, "left", n, h=48)
        return r.randint(30, 40) * 8, 96, 96
    if variant == "banner":  # a rounded panel inside the container
        card = p.add("card", p.x0, 0, p.cw, 1)
        pad = r.choice((48, 64))
        with_image = r.random() < 0.5
        tx, tw = p.x0 + pad, (p.cw - 2 * pad) * (GOLDEN if with_image else 1.0)
        align = "left" if with_image else r.choice(("left", "center"))
        y = bottom([p.text("heading", tx, pad, tw, r.choice((32, 40)), r.choice((1, 2)), align)]) + 16
        y = bottom([p.text("paragraph", tx, y, tw, 18, r.choice((1, 2)), align)]) + 32
        y = buttons(p, tx, y, tw, align, r.choice((1, 2))) + pad
        if with_image:
            iw = p.cw - 2 * pad - tw - 32
            p.add("image", p.x0 + p.cw - pad - iw, pad, iw, y - 2 * pad)
        card["h"] = y
        return r.randint(35, 50) * 8, 64, 64
    span = r.choice((6, 8))
    x, w = p.col((12 - span) // 2, span)
    y = bottom([p.text("heading", x, 0, w, r.choice((36, 40, 48)), r.choice((1, 2)), "center")]) + 16
    if r.random() < 0.8:
        y = bottom([p.text("paragraph", x, y, w, 18, r.choice((1, 2)), "center")]) + 16
    y += 16
    if variant == "newsletter":
        iw, bw = r.randint(18, 22) * 16, 144
        ix = x + (w - iw - bw - 16) / 2
        p.add("input", ix, y, iw, 48)
        p.add("button", ix + iw + 16, y, bw, 48, style="primary")
        if r.random() < 0.5:
            p.text("paragraph", x, y + 48 + 16, w, 14, 1, "center", frac=0.5)
    else:
        buttons(p, x, y, w, "center", r.choice((1, 2)))
    return r.randint(35, 55) * 8, 96, 96


def _footer(p: Page):
    r = p.r
    y = 0
    n_cols = r.choice((2, 3, 3, 4))
    newsletter = r.random() < 0.3
    # brand column (logo, blurb), link columns (heading + list or links), bottom row
    while n_cols > 1 and 2 + 2 * n_cols + 2 * newsletter + 2 > p.left:
        n_cols -= 1
    if 2 + 2 * n_cols + 2 * newsletter + 2 > p.left:
        newsletter = False
    brand_span = r.choice((3, 4))
    bx, bw = p.col(0, brand_span)
    p.add("logo", bx, y, r.randint(7, 10) * 16, 36)
    col_bottom = bottom([p.text("paragraph", bx, y + 36 + 16, bw, 14, r.choice((2, 3)))])
    rest = 12 - brand_span - 1 - (3 if newsletter else 0)
    span = max(1, rest // n_cols)
    for i in range(n_cols):
        x, w = p.col(brand_span + 1 + i * span, span)
        p.text("heading", x, y, w, 16, 1, frac=0.6)
        n_links = r.randint(3, 6)
        spare = p.left - (2 * (n_cols - i - 1) + 2 * newsletter + 2) - 1
        if spare >= n_links and r.random() < 0.25:  # links as separate elements
            for j in range(n_links):
                p.add("link", x, y + 40 + j * 32, w * r.uniform(0.4, 0.8), 20)
            col_bottom = max(col_bottom, y + 40 + n_links * 32)
        else:
            p.add("list", x, y + 40, w, n_links * 32, lines=n_links, style="plain")
            col_bottom = max(col_bottom, y + 40 + n_links * 32)
    if newsletter:
        x, w = p.col(9, 3)
        p.text("heading", x, y, w, 16, 1, frac=0.7)
        p.add("input", x, y + 40, w, 44)
        p.add("button", x, y + 40 + 44 + 12, w * 0.5, 44, style="primary")
        col_bottom = max(col_bottom, y + 40 + 100)
    y = col_bottom + r.choice((48, 64))
    p.text("paragraph", p.x0, y, p.cw * 0.35, 14, 1, frac=r.uniform(0.5, 0.9))
    if r.random() < 0.6:
        n = min(r.randint(3, 5), p.left)
        for i in range(n):
            p.add("icon", p.x0 + p.cw - (n - i) * 40 + 16, y - 2, 24, 24)
    else:
        n = min(r.randint(2, 4), p.left)
        for i in range(n):
            p.add("link", p.x0 + p.cw - (n - i) * 128 + 16, y, 112, 20)
    return r.randint(38, 50) * 8, r.choice((48, 64)), r.choice((32, 48))


def _gallery(p: Page):
    r = p.r
    y = header(p, 0, r.choice(("center", "left")), budget=max(1, p.left - 4)) + r.choice((32, 48))
    variant = r.choice(("grid", "grid", "masonry", "bento"))
    gap = r.choice((8, 16, 24))
    if variant == "bento" and p.left >= 3:
        n_small = min(r.choice((2, 4)), p.left - 1)
        big_w = round((p.cw - gap) * GOLDEN)
        small_w = p.cw - gap - big_w
        rows = (n_small + 1) // 2 if n_small > 2 else n_small
        per_col = 2 if n_small == 4 else 1
        sh = r.randint(20, 28) * 8
        big_h = rows * sh + (rows - 1) * gap
        left = r.random() < 0.5
        p.add("image", p.x0 if left else p.x0 + small_w + gap, y, big_w, big_h)
        sx = p.x0 + big_w + gap if left else p.x0
        sw = (small_w - gap * (per_col - 1)) / per_col
        for i in range(n_small):
            rr, cc = divmod(i, per_col)
            p.add("image", sx + cc * (sw + gap), y + rr * (sh + gap), sw, sh)
        return r.randint(60, 80) * 8, 64, 64
    cols, rows = fit_grid(r.choice((2, 3, 3, 4)), r.choice((1, 2, 2, 3)), 1, p.left)
    cw = (p.cw - gap * (cols - 1)) / cols
    aspect = r.choice((1.0, 4 / 3, 3 / 2, PHI))
    rows = max(1, min(rows, int(1100 // (cw / aspect + gap))))  # a gallery section, not a whole page
    for c in range(cols):
        cy = y
        for _ in range(rows):
            h = cw / aspect if variant == "grid" else cw / r.choice((0.75, 1.0, 1.333, 1.5))
            p.add("image", p.x0 + c * (cw + gap), cy, cw, round(h / 8) * 8)
            cy += round(h / 8) * 8 + gap
    return r.randint(60, 80) * 8, 64, 64


def _team(p: Page):
    r = p.r
    align = r.choice(("center", "center", "left"))
    photo = r.random() < 0.4  # rectangular photos instead of round avatars
    social = r.random() < 0.3
    per = 3 + social
    y = header(p, 0, align, budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = fit_grid(r.choice((3, 4, 4)), r.choice((1, 1, 2)), per, p.left, min_cols=2)
    if cols * per > p.left:
        per, social = per - social, False
    span = 12 // cols
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            if photo:
                ph = round(w * r.choice((1.0, 1.25)))
                p.add("image", x, y, w, ph)
                iy, ta = y + ph + 16, "left"
            else:
                s = r.choice((96, 120, 144))
                p.add("avatar", x + (w - s) / 2, y, s, s)
                iy, ta = y + s + 16, "center"
            p.text("subheading", x, iy, w, 18, 1, ta, frac=r.uniform(0.4, 0.7))
            p.text("paragraph", x, iy + 22 + 4, w, 14, 1, ta, frac=r.uniform(0.3, 0.6))
            if social:
                p.add("icon", x + ((w - 20) / 2 if ta == "center" else 0), iy + 26 + 21 + 12, 20, 20)
        y = bottom(p.els) + r.choice((48, 64))
    return r.randint(60, 80) * 8, r.choice((64, 96)), r.choice((64, 96))


def _faq(p: Page):
    r = p.r
    two_col = r.random() < 0.4
    if two_col:
        x, w = p.col(0, 4)
        y = bottom([p.text("heading", x, 0, w, 40, r.choice((1, 2)))]) + 16
        y = bottom([p.text("paragraph", x, y, w, 16, r.choice((2, 3)))]) + 24
        if r.random() < 0.5:
            buttons(p, x, y, w, "left", 1)
        qx, qw = p.col(5, 7)
        y = 0
    else:
        span = r.choice((8, 10))
        qx, qw = p.col((12 - span) // 2, span)
        y = header(p, 0, "center", budget=max(1, p.left - 4)) + r.choice((48, 64))
    if r.random() < 0.3:  # the questions as one list
        n = r.randint(4, 8)
        p.add("list", qx, y, qw, n * 56, lines=n, style="plain")
        return r.randint(50, 70) * 8, 96, 96
    boxed = r.random() < 0.4
    per = 2 + boxed  # question, toggle icon (+ card)
    n = max(1, min(r.randint(3, 7), (p.left - 1) // per))
    opened = 0 if r.random() < 0.6 else -1
    for i in range(n):
        pad = 24 if boxed else 0
        lines = r.choice((2, 3)) if i == opened else 0
        h = 2 * pad + 28 + (16 + lines * 24 if lines else 0)
        if boxed:
            p.add("card", qx, y, qw, h)
        p.text("subheading", qx + pad, y + pad, qw - 2 * pad - 48, 20, 1, frac=r.uniform(0.5, 0.9))
        p.add("icon", qx + qw - pad - 24, y + pad + 2, 24, 24)
        if lines and p.left > (n - i - 1) * per:
            p.add("paragraph", qx + pad, y + pad + 28 + 16, qw - 2 * pad - 48, lines * 24, lines=lines)
        y += h + (16 if boxed else 32)
    return r.randint(50, 70) * 8, 96, 96


def _stats(p: Page):
    r = p.r
    boxed = r.random() < 0.3
    icon = r.random() < 0.3
    per = 2 + boxed + icon
    n = r.choice((2, 3, 4, 4, 6))
    y = 0
    if r.random() < 0.7:
        y = header(p, 0, "center", budget=max(1, p.left - 2 * per)) + r.choice((48, 64))
    cols, rows = fit_grid(min(n, 4), 2 if n == 6 else 1, per, p.left)
    if n == 6 and rows == 2:
        cols = 3
    span = 12 // cols
    for _ in range(rows):
        for c in range(cols):
            x, w = p.col(c * span, span)
            pad = 24 if boxed else 0
            iy = y + pad
            if boxed:
                p.add("card", x, y, w, 2 * pad + 48 * icon + 16 * icon + 58 + 8 + 24)
            if icon:
                p.add("icon", x + (w - 48) / 2, iy, 48, 48)
                iy += 48 + 16
            p.text("heading", x + pad, iy, w - 2 * pad, 48, 1, "center", frac=r.uniform(0.35, 0.6))
            p.text("paragraph", x + pad, iy + 58 + 8, w - 2 * pad, 16, 1, "center", frac=r.uniform(0.4, 0.8))
        y = bottom(p.els) + 48
    return r.randint(38, 55) * 8, r.choice((64, 96)), r.choice((64, 96))


def _logo_wall(p: Page):
    r = p.r
    y = 0
    if r.random() < 0.75:
        x, w = p.col(2, 8)
        if r.random() < 0.5:
            y = bottom([p.text("paragraph", x, 0, w, 16, 1, "center", frac=r.uniform(0.3, 0.5))]) + 32
        else:
            y = header(p, 0, "center", budget=2, font=32) + 48
    per_row = r.choice((4, 5, 6, 6))
    rows = r.choice((1, 1, 2))
    per_row, rows = fit_grid(per_row, rows, 1, p.left, min_cols=2)
    cell = p.cw / per_row
    lh = r.choice((32, 40, 48))
    for _ in range(rows):
        for i in range(per_row):
            lw = min(cell - 32, r.randint(7, 11) * 16)
            p.add("logo", p.x0 + i * cell + (cell - lw) / 2, y, lw, lh)
        y += lh + 48
    return r.randint(25, 40) * 8, 64, 64


def _contact_form(p: Page):
    r = p.r
    split = r.random() < 0.6
    if split:
        tw = round((p.cw - p.g) * (1 - GOLDEN))
        tx, fx, fw = p.x0, p.x0 + tw + p.g * 2, p.cw - tw - p.g * 2
        y = bottom([p.text("heading", tx, 0, tw, 40, r.choice((1, 2)))]) + 16
        y = bottom([p.text("paragraph", tx, y, tw, 16, r.choice((2, 3)))]) + 32
        if r.random() < 0.5:
            p.add("list", tx, y, tw, 3 * 40, lines=3, style="icons")
        elif p.left >= 12:
            for _ in range(r.randint(2, 3)):
                p.add("icon", tx, y, 32, 32)
                p.text("paragraph", tx + 48, y + 4, tw - 48, 16, 1, frac=r.uniform(0.4, 0.8))
                y += 56
        fy = 0
    else:
        span = r.choice((6, 8))
        fx, fw = p.col((12 - span) // 2, span)
        fy = header(p, 0, "center", budget=2, span=span) + 48
    boxed = r.random() < 0.4
    card = p.add("card", fx, fy, fw, 1) if boxed else None
    pad = 32 if boxed else 0
    x, w, y = fx + pad, fw - 2 * pad, fy + pad
    ih = r.choice((44, 48))
    if r.random() < 0.6 and p.left >= 5:  # first and last name side by side
        half = (w - 16) / 2
        p.add("input", x, y, half, ih)
        p.add("input", x + half + 16, y, half, ih)
        y += ih + 16
    for _ in range(r.randint(1, 2)):
        if p.left > 3:
            p.add("input", x, y, w, ih)
            y += ih + 16
    p.add("input", x, y, w, r.choice((120, 144, 160)), style="textarea")
    y = bottom(p.els) + 24
    bw = w if r.random() < 0.3 else r.randint(8, 12) * 16
    p.add("button", x, y, bw, 48, style="primary")
    if card is not None:
        card["h"] = y + 48 + pad - fy
    return r.randint(60, 80) * 8, 96, 96


GENERATORS = {
    "hero": _hero, "feature_grid": _feature_grid, "pricing": _pricing, "testimonials": _testimonials,
    "call_to_action": _call_to_action, "footer": _footer, "gallery": _gallery, "team": _team,
    "faq": _faq, "stats": _stats, "logo_wall": _logo_wall, "contact_form": _contact_form,
    "navbar": _navbar,
}
assert set(GENERATORS) == set(SECTION_TYPES)
