"""Aesthetic constraint levels (`model.aesthetic_constraints`) and the decode-time masks of `basic`.

    off       today's decoding
    basic     decode-time constraints (this module's `DecodeConstraints`): coordinate masks keep
              boxes inside the canvas and away from already placed elements they may not overlap,
              and a coordinate within `snap_tolerance` bins of a placed element's line snaps to it
    full      basic + differentiable alignment and overlap losses in training (`aesthetic_losses`)
    advanced  full + a post-hoc refinement of each layout (layoutray/model/refine.py)

The masks work on coordinate bins. Elements come in reading order, so a new element meets placed
ones above it or to its left. For a content element (not a container type):

    y  (after x): no start cell (x, y) inside a placed content element
    w  (after y): the box's first row stops at the next placed element to its right, and inside a
                  container that holds the start cell, at the container's right edge
    h  (after w): the box stops at the next placed element below that shares its columns, and
                  inside a container, at its bottom edge

so a box of 1 x 1 bin at an allowed start always fits: the masks never leave a step without a
token. A container (card, image) may hold what is placed before it and is not confined. The
grammar in generate.py already keeps every box on the canvas (x + w <= 1, y + h <= 1); where the
constraints and the grammar together would forbid every token of a row (a model that placed
elements out of reading order), that row keeps the grammar's mask alone.
"""

from __future__ import annotations

import numpy as np
import torch

from layoutray.config import AestheticConfig, ConfigError
from layoutray.model.tokenizer import TOKENS_PER_ELEMENT, LayoutTokenizer

LEVELS = ("off", "basic", "full", "advanced")
DECODE_LEVELS = ("basic", "full", "advanced")  # the levels that constrain decoding
TRAIN_LEVELS = ("full", "advanced")  # the levels that add training losses
REFINE_LEVELS = ("advanced",)


def check_level(level: str, name: str = "constraints") -> str:
    """`level` when it is one of LEVELS, else a ConfigError naming `name` and the allowed levels."""
    if level not in LEVELS:
        raise ConfigError(name, f"got {level!r}; allowed: {', '.join(LEVELS)}")
    return level


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


def _rows(a: np.ndarray, B: int) -> np.ndarray:
    """a [1 or B, V] as [B, V] (a view)."""
    return a if a.shape[0] == B else np.broadcast_to(a, (B, a.shape[1]))


class DecodeConstraints:
    """Per-row placed boxes (in bins, [x0, y0, x1, y1)) and the masks/snapping of `basic`.

    The state is numpy: a decoding step asks a few dozen questions of [B, E] and [B, bins] arrays,
    where each torch call costs several microseconds of dispatch and numpy's cost one; on the CPU
    this halves what `basic` adds to the latency of a layout. Tensors go in and out."""

    def __init__(self, tok: LayoutTokenizer, B: int, max_elements: int, cfg: AestheticConfig, device):
        self.tok, self.bins, self.tol, self.size_share = tok, tok.bins, cfg.snap_tolerance, cfg.snap_size_share
        E = max(1, max_elements)
        self.boxes = np.zeros((B, E, 4), dtype=np.int64)
        self.valid = np.zeros((B, E), dtype=bool)
        self.is_container = np.zeros((B, E), dtype=bool)
        self.n = np.zeros(B, dtype=np.int64)
        self.cur = np.zeros((B, 4), dtype=np.int64)  # x, y, w of the element being placed
        self.cur_container = np.zeros(B, dtype=bool)
        self.container_ids = np.array([tok.type_id(t) for t in cfg.container_types] or [-1], dtype=np.int64)
        self.values = np.arange(self.bins)

    def select(self, rows: torch.Tensor) -> None:
        r = _np(rows)
        for name in ("boxes", "valid", "is_container", "n", "cur", "cur_container"):
            setattr(self, name, getattr(self, name)[r])

    # ------------------------------------------------------------------ masks

    def _holders(self) -> np.ndarray:
        """[B, E]: placed containers holding the start cell (x, y) of the current element."""
        x, y = self.cur[:, 0:1], self.cur[:, 1:2]
        b = self.boxes
        inside = (b[..., 0] <= x) & (x < b[..., 2]) & (b[..., 1] <= y) & (y < b[..., 3])
        return self.valid & self.is_container & inside

    def _coord_forbidden(self, phase: int) -> np.ndarray | None:
        """[B, bins] True where a coordinate value is forbidden at this phase (1 x, 2 y, 3 w, 4 h)."""
        if phase == 1:
            return None
        b, v = self.boxes, self.values[None, :]
        x, y = self.cur[:, 0:1], self.cur[:, 1:2]
        content = ~self.cur_container[:, None]
        if phase == 2:  # start cells inside a placed content element
            col = self.valid & ~self.is_container & (b[..., 0] <= x) & (x < b[..., 2])  # [B, E]
            rows = (b[..., 1, None] <= v[:, None]) & (v[:, None] < b[..., 3, None])  # [B, E, bins]
            return (col[..., None] & rows).any(axis=1) & content
        holders = self._holders()
        others = self.valid & ~holders
        if phase == 3:
            in_row = others & (b[..., 1] <= y) & (y < b[..., 3]) & (b[..., 0] > x)
            limit = np.where(in_row, b[..., 0] - x, self.bins)
        else:
            w = self.cur[:, 2:3]
            cols = others & (b[..., 0] < x + w) & (b[..., 2] > x) & (b[..., 1] > y)
            limit = np.where(cols, b[..., 1] - y, self.bins)
        edge = b[..., 2] - x if phase == 3 else b[..., 3] - y
        limit = np.minimum(limit, np.where(holders, edge, self.bins)).min(axis=1)  # [B]
        return (v > limit[:, None]) & content

    def forbidden(self, step: int, grammar_bad: torch.Tensor) -> torch.Tensor:
        """The grammar's mask [B or 1, V] with this step's constraints added, row by row; a row the
        constraints would leave without a token keeps the grammar's mask alone."""
        coord = self._coord_forbidden(step % TOKENS_PER_ELEMENT)
        if coord is None:
            return grammar_bad
        grammar = _rows(_np(grammar_bad), len(self.n))
        bad = grammar.copy()
        co = self.tok.coord_offset
        bad[:, co:co + self.bins] |= coord
        stuck = bad.all(axis=1)
        if stuck.any():
            bad[stuck] = grammar[stuck]
        return torch.from_numpy(bad).to(grammar_bad.device)

    # ------------------------------------------------------------------ snapping

    def _lines(self, phase: int) -> np.ndarray:
        """[B, E, k] the values the current coordinate would take to share a placed element's line."""
        b = self.boxes
        x, y = self.cur[:, 0:1, None], self.cur[:, 1:2, None]
        if phase == 1:
            return b[..., 0:1]  # left edges
        if phase == 2:
            return b[..., 1:2]  # top edges
        if phase == 3:  # right edges; centres where the width comes out whole
            centre2 = b[..., 0:1] + b[..., 2:3]  # 2 * centre
            return np.concatenate([b[..., 2:3] - x, centre2 - 2 * x], axis=2)
        return b[..., 3:4] - y  # bottom edges

    def snap(self, step: int, ids: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """ids moved to the nearest allowed value within snap_tolerance that lines up with a placed
        element (phase 3: a right edge, or a centre when the width comes out whole)."""
        phase = step % TOKENS_PER_ELEMENT
        if phase == 0 or self.tol <= 0 or not self.valid.any():
            return ids
        co, B = self.tok.coord_offset, ids.shape[0]
        picked = _np(ids) - co  # [B]
        lines = self._lines(phase)
        if phase == 3:  # the centre candidate is 2 * (centre - x): only even values give a whole width
            centre_w = lines[..., 1:2]
            lines = np.concatenate([lines[..., :1], np.where(centre_w % 2 == 0, centre_w // 2, -1)], axis=2)
        ok = self.valid[..., None] & (lines >= 0) & (lines < self.bins)
        cand = np.minimum(np.maximum(lines, 0), self.bins - 1).reshape(B, -1)  # [B, E * k]
        rows = np.arange(B)
        allowed = ~_rows(_np(bad), B)[rows[:, None], cand + co]
        dist = np.abs(cand - picked[:, None])
        dist = np.where(ok.reshape(B, -1) & allowed & (dist <= self.tol), dist, self.bins * 4)
        best = dist.argmin(axis=1)
        near = dist[rows, best] <= self.tol
        if phase >= 3:  # a width or height moves by at most this share of itself: a small box keeps its size
            near &= dist[rows, best] <= self.size_share * picked
        return torch.from_numpy(np.where(near, cand[rows, best] + co, picked + co)).to(ids.device)

    # ------------------------------------------------------------------ state

    def advance(self, step: int, ids: torch.Tensor) -> None:
        phase = step % TOKENS_PER_ELEMENT
        ids = _np(ids)
        value = ids - self.tok.coord_offset
        if phase == 0:
            self.cur_container = (ids[:, None] == self.container_ids).any(axis=1)
        elif phase < 4:
            self.cur[:, phase - 1] = value
        else:
            rows = np.arange(ids.shape[0])
            slot = np.minimum(self.n, self.valid.shape[1] - 1)
            x, y, w = self.cur[:, 0], self.cur[:, 1], self.cur[:, 2]
            self.boxes[rows, slot] = np.stack([x, y, x + w, y + value], axis=1)
            self.valid[rows, slot] = True
            self.is_container[rows, slot] = self.cur_container
            self.n += 1


# ---------------------------------------------------------------------------- training losses


def soft_boxes(logits: torch.Tensor, targets: torch.Tensor, tok: LayoutTokenizer) -> tuple[torch.Tensor, ...]:
    """Expected boxes from teacher-forced token distributions.

    logits [B, T, V] predict targets [B, T] (= tokens[:, 1:], `BOS` dropped, so element k's type is
    target 5k and its x, y, w, h targets 5k+1..5k+4). Each coordinate is the expectation of its bin
    under the softmax over the coordinate bins. Returns (boxes [B, E, 4] in [0, 1] (x, y, w, h),
    [B, E] mask of real elements, [B, E] type ids of the targets)."""
    B, T, _ = logits.shape
    E = T // TOKENS_PER_ELEMENT
    co, bins = tok.coord_offset, tok.bins
    probs = torch.softmax(logits[:, :E * TOKENS_PER_ELEMENT, co:co + bins].float(), dim=-1)
    grid = torch.linspace(0.0, 1.0, bins, device=logits.device, dtype=probs.dtype)
    expected = (probs * grid).sum(dim=-1).view(B, E, TOKENS_PER_ELEMENT)[..., 1:]  # [B, E, 4]
    types = targets[:, :E * TOKENS_PER_ELEMENT].view(B, E, TOKENS_PER_ELEMENT)[..., 0]
    mask = (types >= tok.type_offset) & (types < tok.section_offset)
    return expected, mask, types


def soft_alignment(boxes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """LayoutGAN++'s alignment loss (their eq.: mean over elements of -log(1 - min d)), per layout."""
    x, y, w, h = boxes.unbind(-1)
    lines = torch.stack([x, x + w / 2, x + w, y, y + h / 2, y + h], dim=1)  # [B, 6, E]
    d = (lines[..., :, None] - lines[..., None, :]).abs()
    E = boxes.shape[1]
    pair = mask[:, :, None] & mask[:, None, :] & ~torch.eye(E, dtype=torch.bool, device=boxes.device)
    d = d.masked_fill(~pair[:, None], 1.0).amin(dim=(1, 3))  # [B, E]
    term = -torch.log1p(-d.clamp(0.0, 1.0 - 1e-4))
    has = pair.any(dim=2) & mask
    return (term * has).sum(dim=1) / mask.sum(dim=1).clamp(min=1)


def soft_overlap(boxes: torch.Tensor, mask: torch.Tensor, types: torch.Tensor,
                 container_ids: torch.Tensor) -> torch.Tensor:
    """LayoutGAN++'s overlap over pairs of content elements (a container may hold others), per layout."""
    x, y, w, h = boxes.unbind(-1)
    iw = (torch.minimum((x + w)[:, :, None], (x + w)[:, None, :])
          - torch.maximum(x[:, :, None], x[:, None, :])).clamp(min=0)
    ih = (torch.minimum((y + h)[:, :, None], (y + h)[:, None, :])
          - torch.maximum(y[:, :, None], y[:, None, :])).clamp(min=0)
    content = mask & ~torch.isin(types, container_ids)
    E = boxes.shape[1]
    pair = content[:, :, None] & content[:, None, :] & ~torch.eye(E, dtype=torch.bool, device=boxes.device)
    area = (w * h).clamp(min=1e-4)[:, :, None]
    return ((iw * ih / area) * pair).sum(dim=(1, 2)) / mask.sum(dim=1).clamp(min=1)


def aesthetic_losses(logits: torch.Tensor, targets: torch.Tensor, tok: LayoutTokenizer,
                     cfg: AestheticConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(weighted loss to add to the objective, {"alignment", "overlap"} batch means) of `full`."""
    boxes, mask, types = soft_boxes(logits, targets, tok)
    ids = torch.tensor([tok.type_id(t) for t in cfg.container_types] or [-1], device=logits.device)
    align = soft_alignment(boxes, mask).mean()
    over = soft_overlap(boxes, mask, types, ids).mean()
    return cfg.loss_alignment * align + cfg.loss_overlap * over, {"alignment": align, "overlap": over}


def aesthetic_objective(cfg, out, tokens: torch.Tensor, tok: LayoutTokenizer) -> torch.Tensor | None:
    """The `full` level's addition to a training step's objective, or None at other levels and for
    a decoder that is not autoregressive. `cfg` is the RunConfig, `out` the training forward pass
    (logits, or (logits, dense) with the dense head), `tokens` the batch's layout tokens."""
    if cfg.model.aesthetic_constraints not in TRAIN_LEVELS or getattr(cfg.model, "decoder", "autoregressive") != "autoregressive":
        return None
    logits = out[0] if isinstance(out, tuple) else out
    return aesthetic_losses(logits, tokens[:, 1:], tok, cfg.model.aesthetics)[0]
