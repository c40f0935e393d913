"""Augmentation keeps pixels and labels in register; preprocessing is deterministic (no Ray)."""

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image, ImageDraw

from layoutray.data import augment as A
from layoutray.config import load_config
from layoutray.data.pipeline import BOTH, IMAGE_ONLY, REASONS, SPEC_ONLY, preprocess_batch
from layoutray.model.tokenizer import NULL, PAD, Box, LayoutTokenizer

H, W = 192, 320  # phase1 model size; test canvases use it so box edges fall on pixels


def canvas(*rects, fill=1.0):
    """Model array with ink rectangles given as normalised (x, y, w, h)."""
    img = np.zeros((1, H, W), np.float32)
    for x, y, w, h in rects:
        img[0, round(y * H):round((y + h) * H), round(x * W):round((x + w) * W)] = fill
    return img


def ink_box(img, thresh=0.5):
    ys, xs = np.nonzero(img[0] > thresh)
    return xs.min() / W, ys.min() / H, (xs.max() + 1 - xs.min()) / W, (ys.max() + 1 - ys.min()) / H


def only(**kw):
    base = dict(mirror_p=0.0, jitter=0.0, noise_std=0.0, blur_p=0.0, dropout_p=0.0)
    return A.AugmentParams(**{**base, **kw})


def test_mirror_moves_box_with_its_ink():
    img = canvas((0.1, 0.25, 0.2, 0.5))
    out, boxes = A.augment(img, [Box("button", 0.1, 0.25, 0.2, 0.5)], np.random.default_rng(0),
                           only(mirror_p=1.0))
    assert boxes == [Box("button", pytest.approx(0.7), 0.25, 0.2, 0.5)]
    assert np.allclose(ink_box(out), (boxes[0].x, boxes[0].y, boxes[0].w, boxes[0].h), atol=1e-6)
    assert img[0, 60, 40] == 1.0  # the caller's array is untouched


@pytest.mark.parametrize("seed", range(4))
def test_jitter_moves_image_and_boxes_together(seed):
    img = canvas((0.2, 0.25, 0.3, 0.25))
    out, (b,) = A.augment(img, [Box("card", 0.2, 0.25, 0.3, 0.25)], np.random.default_rng(seed),
                          only(jitter=0.1))
    assert (b.x, b.y) != (0.2, 0.25)
    assert np.allclose(ink_box(out), (b.x, b.y, b.w, b.h), atol=1.5 / H)


def test_jitter_clips_boxes_into_canvas_and_drops_vanished():
    boxes = [Box("image", 0.0, 0.0, 0.002, 0.5), Box("card", 0.3, 0.3, 0.4, 0.4)]
    for seed in range(20):
        _, out = A.jitter(None, boxes, np.random.default_rng(seed), 0.1)
        assert out and all(0 <= b.x and b.x + b.w <= 1 + 1e-9 and 0 <= b.y and b.y + b.h <= 1 + 1e-9
                           for b in out)
        assert all(b.w >= A.MIN_BOX and b.h >= A.MIN_BOX for b in out)


def test_dropout_paints_over_the_dropped_box_only():
    a, b = (0.05, 0.1, 0.2, 0.3), (0.6, 0.5, 0.3, 0.25)
    boxes = [Box("button", *a), Box("image", *b)]
    out, kept = A.augment(canvas(a, b), boxes, np.random.default_rng(1), only(dropout_p=1.0))
    assert len(kept) == 1  # never an empty layout
    (dropped,) = [x for x in boxes if x not in kept]
    region = lambda bx: out[0, round(bx.y * H):round((bx.y + bx.h) * H), round(bx.x * W):round((bx.x + bx.w) * W)]
    assert region(dropped).max() == 0.0  # ink gone: paper all around it
    assert region(kept[0]).min() == 1.0  # the kept element still has its ink


def test_dropout_inside_a_card_fills_with_the_card_background():
    card, button = (0.1, 0.1, 0.6, 0.6), (0.2, 0.3, 0.2, 0.1)
    img = canvas(card, fill=0.3)
    img[0, round(0.3 * H):round(0.4 * H), round(0.2 * W):round(0.4 * W)] = 1.0
    boxes = [Box("card", *card), Box("button", *button)]
    assert A.droppable(boxes) == [1]  # the card holds the button: painting it would erase both
    kept = A.element_dropout(img, boxes, np.random.default_rng(0), 1.0)
    assert kept == [boxes[0]]
    assert np.allclose(img[0, round(0.3 * H):round(0.4 * H), round(0.2 * W):round(0.4 * W)], 0.3)


def test_blur_and_noise_keep_range():
    img = canvas((0.1, 0.1, 0.2, 0.2))
    out, _ = A.augment(img, [Box("icon", 0.1, 0.1, 0.2, 0.2)], np.random.default_rng(0),
                       only(blur_p=1.0, noise_std=0.1))
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert 0.0 < out[0, 0, 0] or 0.0 < out[0, 5, 5]  # noise reaches the paper


# ---------------------------------------------------------------------------- preprocess_batch


def png(*rects):
    im = Image.new("L", (W, H), 255)
    d = ImageDraw.Draw(im)
    for x, y, w, h in rects:
        if w * W >= 1 and h * H >= 1:  # bad-box test rows have boxes no one can draw
            d.rectangle([x * W, y * H, (x + w) * W - 1, (y + h) * H - 1], fill=0)
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


def row(i, rects, image=True, section="hero", types=None):
    types = types or ["button"] * len(rects)
    return {"id": f"r{i}", "section_type": section, "canvas_width": W, "canvas_height": H,
            "image": png(*rects) if image else None,
            "elements": [dict(type=t, x=x, y=y, w=w, h=h) for t, (x, y, w, h) in zip(types, rects)]}


def table(rows):
    from layoutray.data.dataset import SCHEMA
    return pa.Table.from_pylist(rows, schema=SCHEMA)


@pytest.fixture(scope="module")
def cfg():
    return load_config(phase="phase1")


def test_preprocess_is_deterministic_per_seed_and_epoch(cfg):
    t = table([row(i, [(0.1, 0.2, 0.2, 0.3), (0.5, 0.5, 0.25, 0.25)]) for i in range(4)])
    a = preprocess_batch(t, cfg, train=True, seed=3, epoch=1)
    b = preprocess_batch(t, cfg.to_dict(), train=True, seed=3, epoch=1)
    c = preprocess_batch(t, cfg, train=True, seed=3, epoch=2)
    for k in ("image", "tokens", "spec", "task"):
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["tokens"], c["tokens"])
    assert a["image"].dtype == np.float16 and a["image"].shape == (4, 1, H, W)


def test_eval_is_deterministic_and_uses_both_inputs(cfg):
    t = table([row(0, [(0.1, 0.2, 0.2, 0.3)]), row(1, [(0.1, 0.2, 0.2, 0.3)], image=False)])
    a = preprocess_batch(t, cfg, train=False, seed=0)
    b = preprocess_batch(t, cfg, train=False, seed=99, epoch=5)
    for k in ("image", "tokens", "spec", "task"):
        assert np.array_equal(a[k], b[k])
    assert a["task"].tolist() == [BOTH, SPEC_ONLY]
    assert a["has_image"].tolist() == [True, False] and not a["image"][1].any()
    tok = LayoutTokenizer(bins=cfg.model.coord_bins)
    assert a["tokens"][0, :a["tok_len"][0]].tolist() == tok.encode_layout([Box("button", 0.1, 0.2, 0.2, 0.3)])
    assert a["spec"][0, :a["spec_len"][0]].tolist() == tok.encode_spec("hero", ["button"])
    assert (a["tokens"][0, a["tok_len"][0]:] == PAD).all()


def test_task_mix_image_only_gives_null_spec(cfg):
    c = load_config(phase="phase1", overrides=["training.task_mix.image_only=1.0",
                                               "training.task_mix.spec_only=0.0",
                                               "training.task_mix.both=0.0"])
    out = preprocess_batch(table([row(0, [(0.1, 0.2, 0.2, 0.3)]),
                                  row(1, [(0.1, 0.2, 0.2, 0.3)], image=False)]), c, train=True)
    assert out["task"].tolist() == [IMAGE_ONLY, SPEC_ONLY]
    assert out["spec"][0, :out["spec_len"][0]].tolist() == [NULL]


def test_labels_stay_on_the_ink_through_preprocessing(cfg):
    """End to end: decode the tokens of an augmented row and find its box in the pixels."""
    c = load_config(phase="phase1", overrides=["data.augment.noise_std=0", "data.augment.blur_p=0",
                                               "data.augment.element_dropout_p=0",
                                               "data.augment.mirror_p=0.5", "data.augment.jitter=0.08",
                                               "training.task_mix.image_only=0.0",
                                               "training.task_mix.spec_only=0.0",
                                               "training.task_mix.both=1.0"])
    out = preprocess_batch(table([row(i, [(0.1, 0.25, 0.2, 0.5)]) for i in range(8)]), c,
                           train=True, seed=7)
    tok = LayoutTokenizer(bins=c.model.coord_bins)
    xs = set()
    for r in range(8):
        (b,) = tok.decode_layout(out["tokens"][r, :out["tok_len"][r]].tolist())
        xs.add(round(b.x, 1))
        assert np.allclose(ink_box(out["image"][r].astype(np.float32)), (b.x, b.y, b.w, b.h),
                           atol=1 / (c.model.coord_bins - 1) + 1.5 / H)
    assert len(xs) > 1  # some rows were mirrored, some not


def test_bad_rows_are_dropped_and_counted_by_reason(cfg):
    ok = [(0.1, 0.2, 0.2, 0.3)]
    rows = [row(0, ok), row(1, [(0.9, 0.2, 0.2, 0.3)]), row(2, [(0.1, float("nan"), 0.2, 0.3)]),
            row(3, [(0.1, 0.2, 0.0, 0.3)]), row(4, ok, types=["hologram"]), row(5, ok, section="nope"),
            row(6, [(0.01 * k, 0.1, 0.01, 0.01) for k in range(cfg.model.max_elements + 1)]),
            {**row(7, ok), "elements": []}, {**row(8, ok), "image": b"\x89PNG\r\n\x1a\ngarbage"}]
    out = preprocess_batch(table(rows), cfg, train=False)
    assert out["valid"].tolist() == [True, False]  # one good row, one accounting row
    assert out["shard"].tolist() == ["<memory>", "<memory>"]
    counts = dict(zip(REASONS, out["bad"][1].tolist()))
    assert counts == {"undecodable_png": 1, "bad_box": 3, "unknown_section_type": 1,
                      "unknown_element_type": 1, "too_many_elements": 1, "no_elements": 1,
                      "malformed_row": 0}
