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
    """Per-row placed boxes (in bins, (x0, y0, x1, y1, is_container)) and the masks/snapping of `basic`.

    The state is plain Python, a list of placed boxes per row: a step asks a handful of questions
    about at most max_elements boxes, and between the model's matmuls, with its caches cold, each
    numpy or torch call costs microseconds where an integer comparison costs tens of nanoseconds.
    One array per step goes out (a mask, or snapped ids), and only when it says something."""

    def __init__(self, tok: LayoutTokenizer, B: int, max_elements: int, cfg: AestheticConfig, device):
        self.tok, self.bins, self.tol, self.size_share = tok, tok.bins, cfg.snap_tolerance, cfg.snap_size_share
        self.cap = max(1, max_elements)
        self.placed: list[list[tuple[int, int, int, int, bool]]] = [[] for _ in range(B)]
        self.cur = [[0, 0, 0] for _ in range(B)]  # x, y, w of the element being placed
        self.cur_container = [False] * B
        self.container_ids = {tok.type_id(t) for t in cfg.container_types}

    def select(self, rows: torch.Tensor) -> None:
        r = rows.tolist()
        self.placed = [self.placed[i] for i in r]
        self.cur = [self.cur[i] for i in r]
        self.cur_container = [self.cur_container[i] for i in r]

    # ------------------------------------------------------------------ masks

    def _limit(self, b: int, phase: int) -> int:
        """Row b's largest allowed w (phase 3) or h (phase 4) in bins (self.bins: no limit)."""
        x, y, w = self.cur[b]
        limit = self.bins
        for x0, y0, x1, y1, container in self.placed[b]:
            if container and x0 <= x < x1 and y0 <= y < y1:  # holds the start cell: stay inside
                limit = min(limit, x1 - x if phase == 3 else y1 - y)
            elif phase == 3 and y0 <= y < y1 and x0 > x:  # next in the first row, to the right
                limit = min(limit, x0 - x)
            elif phase == 4 and x0 < x + w and x1 > x and y0 > y:  # next below, in its columns
                limit = min(limit, y0 - y)
        return limit

    def _coord_forbidden(self, phase: int) -> np.ndarray | None:
        """[B, bins] True where a coordinate value is forbidden at this phase (1 x, 2 y, 3 w, 4 h);
        None where nothing is (a type step, phase 0, takes no coordinate; x is free; nothing placed
        in the way)."""
        if phase <= 1:
            return None
        spans = {b: self._spans(b, phase) for b in range(len(self.placed))}
        if not any(spans.values()):
            return None
        out = np.zeros((len(self.placed), self.bins), dtype=bool)
        for b, row in spans.items():
            for lo, hi in row:
                out[b, lo:hi] = True
        return out

    def _spans(self, b: int, phase: int) -> list[tuple[int, int]]:
        """Row b's forbidden coordinate values at phase 2-4 as [lo, hi) ranges of bins."""
        if self.cur_container[b] or not self.placed[b]:
            return []  # a container is not confined
        if phase == 2:  # start cells inside a placed content element
            x = self.cur[b][0]
            return [(y0, y1) for x0, y0, x1, y1, container in self.placed[b] if not container and x0 <= x < x1]
        limit = self._limit(b, phase)
        return [(limit + 1, self.bins)] if limit < self.bins - 1 else []

    def forbidden(self, step: int, grammar_bad: torch.Tensor) -> torch.Tensor:
        """The grammar's mask [B or 1, V] with this step's constraints added, row by row; a row the
        constraints would leave without a token keeps the grammar's mask alone."""
        coord = self._coord_forbidden(step % TOKENS_PER_ELEMENT)
        if coord is None:
            return grammar_bad
        grammar = _rows(_np(grammar_bad), len(self.placed))
        bad = grammar.copy()
        co = self.tok.coord_offset
        bad[:, co:co + self.bins] |= coord
        stuck = bad.all(axis=1)
        if stuck.any():
            bad[stuck] = grammar[stuck]
        return torch.from_numpy(bad).to(grammar_bad.device)

    # ------------------------------------------------------------------ snapping

    def _lines(self, b: int, phase: int) -> list[int]:
        """The values row b's current coordinate would take to share a placed element's line, in
        slot order (phase 3: each element's right edge, then its centre where the width comes out
        whole; -1 where it does not)."""
        x, y, _ = self.cur[b]
        placed = self.placed[b]
        if phase == 1:
            return [p[0] for p in placed]  # left edges
        if phase == 2:
            return [p[1] for p in placed]  # top edges
        if phase == 4:
            return [p[3] - y for p in placed]  # bottom edges
        out = []
        for x0, _, x1, _, _ in placed:  # right edges; centres (2 * (centre - x) must be even)
            out += [x1 - x, (x0 + x1 - 2 * x) // 2 if (x0 + x1) % 2 == 0 else -1]
        return out

    def snap(self, step: int, ids: torch.Tensor, bad: torch.Tensor) -> torch.Tensor:
        """ids moved to the nearest allowed value within snap_tolerance that lines up with a placed
        element (phase 3: a right edge, or a centre when the width comes out whole); the first
        such line in slot order wins a tie. A width or height moves by at most snap_size_share
        of itself."""
        phase = step % TOKENS_PER_ELEMENT
        if phase == 0 or self.tol <= 0:
            return ids
        co, picks, moved = self.tok.coord_offset, ids.tolist(), False
        bad_rows = None
        for b, pick in enumerate(picks):
            v, best = pick - co, None
            for c in self._lines(b, phase):
                d = abs(c - v)
                if 0 <= c < self.bins and d <= self.tol and (best is None or d < best[0]):
                    bad_rows = _rows(_np(bad), len(picks)) if bad_rows is None else bad_rows
                    if not bad_rows[b, c + co]:
                        best = (d, c)
            if best is not None and (phase < 3 or best[0] <= self.size_share * v) and best[1] != v:
                picks[b], moved = best[1] + co, True
        return torch.tensor(picks, dtype=ids.dtype, device=ids.device) if moved else ids

    # ------------------------------------------------------------------ state

    def advance(self, step: int, ids: torch.Tensor) -> None:
        phase = step % TOKENS_PER_ELEMENT
        for b, tok_id in enumerate(ids.tolist()):
            if phase == 0:
                self.cur_container[b] = tok_id in self.container_ids
            elif phase < 4:
                self.cur[b][phase - 1] = tok_id - self.tok.coord_offset
            else:
                x, y, w = self.cur[b]
                box = (x, y, x + w, y + tok_id - self.tok.coord_offset, self.cur_container[b])
                placed = self.placed[b]
                if len(placed) == self.cap:
                    placed[-1] = box  # (a row never places more than max_elements; kept total)
                else:
                    placed.append(box)


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
