"""Pictures of layouts for people: boxes over a wireframe, contact sheets of a dataset, and
several generated samples side by side."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

from layoutray.render.wireframe import _DRAW_ORDER, TYPE_COLORS, _rect

TILE_WIDTH = 360
TILE_PAD = 12
CAPTION_H = 16
SHEET_COLS = 4


def _font(size: int = 10):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def draw_layout(elements: list[dict], canvas_w: int, canvas_h: int, background: Image.Image | None = None,
                width_px: int = 480) -> Image.Image:
    """RGB image of the boxes (a colour per element type, with its name) over the background."""
    W = width_px
    H = max(1, round(canvas_h * width_px / canvas_w))
    if background is not None:
        img = background.convert("RGB").resize((W, H), Image.BILINEAR)
    else:
        img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    font = _font(9)
    for el in sorted(elements, key=lambda e: _DRAW_ORDER.get(e["type"], 2)):
        color = TYPE_COLORS.get(el["type"], (0, 0, 0))
        x0, y0, x1, y1 = _rect(el, W, H)
        d.rectangle((x0, y0, x1, y1), outline=color, width=2 if el["type"] != "card" else 1)
        label = el["type"][:4]
        tw = d.textlength(label, font=font)
        if x1 - x0 >= 12 and y1 - y0 >= 6:
            d.rectangle((x0, y0, x0 + tw + 2, y0 + 9), fill=color)
            d.text((x0 + 1, y0 - 1), label, fill=(255, 255, 255), font=font)
    return img


def _row_image(row: dict) -> Image.Image | None:
    from layoutray.data.imaging import ImageError, decode_png

    if not row.get("image"):
        return None
    try:
        return decode_png(row["image"])
    except ImageError:
        return None


def contact_sheet(rows: list[dict], count: int | None = None) -> Image.Image:
    """A grid of examples, SHEET_COLS wide: wireframe, boxes over it, and a caption."""
    rows = list(rows)[:count] if count else list(rows)
    if not rows:
        raise ValueError("contact_sheet needs at least one row")
    tiles = [(draw_layout(row["elements"] or [], row["canvas_width"], row["canvas_height"],
                          background=_row_image(row), width_px=TILE_WIDTH), _caption(row)) for row in rows]
    return grid(tiles, SHEET_COLS)


def _caption(row: dict) -> str:
    return f"{row['section_type']}  {len(row['elements'] or [])} el  {row['canvas_width']}x{row['canvas_height']}"


def truth_and_prediction_sheet(rows: list[dict], predicted: list[list[dict]], cols: int = 2) -> Image.Image:
    """Each example as a pair: its true layout (left) and the generated one (right), both over
    the example's image; `predicted[i]` holds element dicts with normalised x, y, w, h."""
    if not rows:
        raise ValueError("truth_and_prediction_sheet needs at least one row")
    tiles = []
    for row, pred in zip(rows, predicted):
        W, H, bg = row["canvas_width"], row["canvas_height"], _row_image(row)
        left = draw_layout(row["elements"] or [], W, H, background=bg, width_px=TILE_WIDTH)
        right = draw_layout(pred, W, H, background=bg, width_px=TILE_WIDTH)
        pair = Image.new("RGB", (2 * TILE_WIDTH + TILE_PAD // 2, left.height), (236, 236, 240))
        pair.paste(left, (0, 0))
        pair.paste(right, (TILE_WIDTH + TILE_PAD // 2, 0))
        tiles.append((pair, f"{row['section_type']}: truth | generated"))
    return grid(tiles, cols)


def grid(tiles: list[tuple[Image.Image, str]], cols: int) -> Image.Image:
    """Tiles (image, caption) in rows of `cols`, each row as tall as its tallest tile."""
    cols = min(cols, len(tiles))
    width = max(t.width for t, _ in tiles)
    rows = [tiles[i:i + cols] for i in range(0, len(tiles), cols)]
    heights = [max(t.height for t, _ in r) + CAPTION_H for r in rows]
    sheet = Image.new("RGB", (cols * width + (cols + 1) * TILE_PAD,
                              sum(heights) + (len(rows) + 1) * TILE_PAD), (236, 236, 240))
    d = ImageDraw.Draw(sheet)
    font = _font(11)
    y = TILE_PAD
    for r, h in zip(rows, heights):
        for c, (tile, cap) in enumerate(r):
            x = TILE_PAD + c * (width + TILE_PAD)
            sheet.paste(tile, (x, y))
            d.rectangle((x - 1, y - 1, x + tile.width, y + tile.height), outline=(160, 160, 170))
            d.text((x, y + tile.height + 2), cap, fill=(30, 30, 30), font=font)
        y += h + TILE_PAD
    return sheet


def side_by_side(layouts: list[list[dict]], canvas_w: int, canvas_h: int, background=None,
                 gap: int = 8) -> Image.Image:
    """Each layout (a list of element dicts with normalised x, y, w, h) drawn over the same
    background, left to right, in one image."""
    tiles = [draw_layout(els, canvas_w, canvas_h, background=background) for els in layouts]
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + gap * (len(tiles) - 1),
                              max(t.height for t in tiles)), "white")
    x = 0
    for t in tiles:
        sheet.paste(t.convert("RGB"), (x, 0))
        x += t.width + gap
    return sheet
