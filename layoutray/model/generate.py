"""Constrained layout generation: greedy or sampled, with or without the KV cache.

Masks on the logits enforce, at every step, what a valid layout may contain next:

    step in element  0: an element type, or EOS (only at an element boundary)
                     1: x bin  in [0, bins-2]           (so that w >= 1 bin still fits)
                     2: y bin  in [0, bins-2]
                     3: w bin  in [1, bins-1-x]         (x + w <= 1: the box stays on the canvas)
                     4: h bin  in [1, bins-1-y]

With required types for a row (a spec's element types), a type is allowed only while copies of
it remain to place and EOS only once all are placed, so exactly that multiset comes out. Without
them any type may come, EOS is allowed after the first element, and max_elements forces EOS.
Every sequence advances in lockstep (elements have a fixed length), so one mask per step serves
the batch; rows that have emitted EOS leave the batch (and the cache) at once.
"""

from __future__ import annotations

import torch

from layoutray.config import AestheticConfig
from layoutray.model.constraints import DECODE_LEVELS, REFINE_LEVELS, DecodeConstraints, check_level
from layoutray.model.network import LayoutModel, eval_mode
from layoutray.model.tokenizer import BOS, EOS, NULL, PAD, TOKENS_PER_ELEMENT, Box, LayoutTokenizer

NEG_INF = float("-inf")


def _pick(logits: torch.Tensor, temperature: float, top_p: float, generator) -> torch.Tensor:
    """logits [B, V] (disallowed = -inf) -> next ids [B]"""
    if temperature <= 0.0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    if top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always the most likely token)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


class _Grammar:
    """Per-row state of the layout grammar and the allowed-token mask for the next step."""

    def __init__(self, tok: LayoutTokenizer, B: int, max_elements: int,
                 required_types: list[list[str] | None] | None, device):
        self.tok, self.max_elements = tok, max_elements
        n_types, bins = len(tok.element_types), tok.bins
        self.V = tok.vocab_size
        self.remaining = torch.zeros(B, n_types, dtype=torch.long, device=device)
        self.constrained = torch.zeros(B, dtype=torch.bool, device=device)
        for i, types in enumerate(required_types or [None] * B):
            if types:
                if len(types) > max_elements:
                    raise ValueError(f"required_types[{i}]: {len(types)} elements is more than "
                                     f"max_elements ({max_elements})")
                for t in types:
                    if t not in tok.element_types:
                        raise ValueError(f"required_types[{i}]: unknown element type {t!r}; "
                                         f"allowed: {', '.join(tok.element_types)}")
                    self.remaining[i, tok.element_types.index(t)] += 1
                self.constrained[i] = True
        self.free = ~self.constrained[:, None]  # [B, 1] rows without required types
        self.placed = torch.zeros(B, dtype=torch.long, device=device)
        self.x = torch.zeros(B, dtype=torch.long, device=device)
        self.y = torch.zeros(B, dtype=torch.long, device=device)
        co = tok.coord_offset
        # at an element boundary only EOS and types may come (their entries are set per step)
        self.boundary_bad = torch.ones(1, self.V, dtype=torch.bool, device=device)
        # start positions: any bin but the last (a box needs w, h >= 1 bin)
        self.start_bad = torch.ones(1, self.V, dtype=torch.bool, device=device)  # broadcasts
        self.start_bad[0, co:co + bins - 1] = False
        # size_bad[s]: forbidden size tokens when the box starts at bin s (allowed: 1 <= size <= bins-1-s)
        s = torch.arange(bins, device=device)
        size_bins = (s[None, :] >= 1) & (s[None, :] <= bins - 1 - s[:, None])  # [bins, bins]
        self.size_bad = torch.ones(bins, self.V, dtype=torch.bool, device=device)
        self.size_bad[:, co:] = ~size_bins

    def select(self, rows: torch.Tensor) -> None:
        for name in ("remaining", "constrained", "free", "placed", "x", "y"):
            setattr(self, name, getattr(self, name).index_select(0, rows))

    def forbidden(self, step: int) -> torch.Tensor:
        """Bool [B, V], True where a token may not come as generated token `step` (0 = after BOS)."""
        phase = step % TOKENS_PER_ELEMENT
        if phase == 0:
            B = self.placed.shape[0]
            room = self.placed < self.max_elements  # [B]
            # constrained rows: a type while copies remain, EOS once none remain;
            # free rows: any type while there is room, EOS after the first element or when full
            types_ok = ((self.remaining > 0) | self.free) & room[:, None]
            eos_ok = torch.where(self.constrained, self.remaining.sum(dim=1) == 0,
                                 (self.placed > 0) | ~room)
            bad = self.boundary_bad.expand(B, -1).clone()
            bad[:, EOS] = ~eos_ok
            bad[:, self.tok.type_offset:self.tok.section_offset] = ~types_ok
            return bad
        if phase in (1, 2):
            return self.start_bad
        return self.size_bad.index_select(0, self.x if phase == 3 else self.y)

    def advance(self, step: int, ids: torch.Tensor) -> None:
        phase = step % TOKENS_PER_ELEMENT
        if phase == 0:
            is_type = ids != EOS
            t = (ids - self.tok.type_offset).clamp(0, self.remaining.shape[1] - 1)
            dec = (is_type & self.constrained).long()
            self.remaining.scatter_add_(1, t[:, None], -dec[:, None])
            self.placed += is_type.long()
        elif phase == 1:
            self.x = ids - self.tok.coord_offset
        elif phase == 2:
            self.y = ids - self.tok.coord_offset


def _diffusion_tokens(model, tokenizer, image, has_image, spec, max_elements, steps, temperature, top_p,
                      generator, required_types, fixed) -> torch.Tensor:
    from layoutray.model.diffusion import sample_tokens  # (it imports this module)
    return sample_tokens(model, tokenizer, image, has_image, spec, max_elements=max_elements, steps=steps,
                         temperature=temperature, top_p=top_p, generator=generator,
                         required_types=required_types, fixed=fixed)


def forced_prefix(tok: LayoutTokenizer, fixed, B: int, max_len: int, max_elements: int, device) -> torch.Tensor:
    """[B, max_len] ids an autoregressive generation must emit (-1: free): row i's fixed boxes, in
    reading order, right after BOS. The grammar then counts them like generated elements, so with
    required types the rest of the layout is the types not yet placed."""
    forced = torch.full((B, max_len), -1, dtype=torch.long)
    for i, boxes in enumerate(fixed):
        boxes = tok.reading_order(list(boxes or []))
        if len(boxes) > max_elements:
            raise ValueError(f"fixed[{i}]: {len(boxes)} boxes is more than max_elements ({max_elements})")
        ids = [t for b in boxes for t in _box_ids(tok, b)]
        forced[i, 1:1 + len(ids)] = torch.tensor(ids, dtype=torch.long)
    return forced.to(device)


def _box_ids(tok: LayoutTokenizer, b: Box) -> list[int]:
    """type x y w h of a box, its size cut so that it stays on the canvas, as the grammar allows."""
    x, y = min(tok.quantize(b.x), tok.bins - 2), min(tok.quantize(b.y), tok.bins - 2)
    w = min(max(tok.quantize(b.w), 1), tok.bins - 1 - x)
    h = min(max(tok.quantize(b.h), 1), tok.bins - 1 - y)
    return [tok.type_id(b.type)] + [tok.coord_offset + v for v in (x, y, w, h)]


@torch.inference_mode()
def generate_tokens(model: LayoutModel, tokenizer: LayoutTokenizer, image: torch.Tensor | None,
                    has_image: torch.Tensor | None, spec: torch.Tensor | None, *, max_elements: int,
                    temperature: float = 0.0, top_p: float = 1.0, generator: torch.Generator | None = None,
                    seed: int | None = None, required_types: list[list[str] | None] | None = None,
                    use_cache: bool = True, steps: int | None = None, fixed: list[list[Box] | None] | None = None,
                    constraints: str = "off", aesthetics: AestheticConfig | None = None) -> torch.Tensor:
    """Layout ids [B, L]: BOS ... EOS, PAD after EOS. See `generate` for the arguments."""
    B = spec.shape[0] if spec is not None else image.shape[0]
    device = next(model.parameters()).device
    if spec is None:
        spec = torch.full((B, 1), NULL, dtype=torch.long, device=device)
    if has_image is None:
        has_image = torch.full((B,), image is not None, dtype=torch.bool, device=device)
    if bool(has_image.any()) and image is None:
        raise ValueError("has_image is True for a row but no image was given")
    if generator is None and seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    if getattr(model, "diffusion", None) is not None:  # the diffusion decoder samples its own way
        return _diffusion_tokens(model, tokenizer, image, has_image, spec, max_elements, steps, temperature, top_p,
                                 generator, required_types, fixed)
    max_elements = min(max_elements, (model.cfg.max_seq_len - 2) // TOKENS_PER_ELEMENT)
    max_len = 2 + TOKENS_PER_ELEMENT * max_elements  # BOS + elements + EOS
    forced = forced_prefix(tokenizer, fixed, B, max_len, max_elements, device) if fixed and any(fixed) else None

    with eval_mode(model):
        memory, mem_mask = model.encode(image, has_image, spec)
        grammar = _Grammar(tokenizer, B, max_elements, required_types, device)
        cons = None  # level "off" decodes exactly as before the constraint levels existed
        if check_level(constraints) in DECODE_LEVELS:
            cons = DecodeConstraints(tokenizer, B, max_elements, aesthetics or AestheticConfig(), device)
        out = torch.full((B, max_len), PAD, dtype=torch.long, device=device)
        out[:, 0] = BOS
        active = torch.arange(B, device=device)  # original row of each row still generating
        compacted = False  # True once a row has left the batch (then `active` maps rows)
        ids = out[:, 0]  # [b] last token of each active row
        seq = out[:, :1]  # [b, t] the active rows' tokens so far (only the naive path reads them)
        cache = model.init_cache(memory, mem_mask, max_len) if use_cache else None
        for step in range(max_len - 1):
            if use_cache:
                logits = model.decode_step(ids[:, None], cache)  # [b, V]
            else:
                logits = model.decode(seq, memory, mem_mask)[:, -1]  # recompute the whole prefix
            bad = grammar.forbidden(step)
            if cons is not None:
                bad = cons.forbidden(step, bad)
            logits = logits.masked_fill(bad, NEG_INF)
            ids = _pick(logits, temperature, top_p, generator)  # [b]
            ids = ids if forced is None else torch.where(forced[active, step + 1] >= 0, forced[active, step + 1], ids)
            if cons is not None:
                ids = cons.snap(step, ids, bad)
                cons.advance(step, ids)
            if compacted:
                out[active, step + 1] = ids
            else:
                out[:, step + 1] = ids
            grammar.advance(step, ids)
            if not use_cache:
                seq = torch.cat([seq, ids[:, None]], dim=1)
            if step % TOKENS_PER_ELEMENT:
                continue  # EOS can only come at an element boundary
            finished = ids == EOS
            if bool(finished.any()):
                keep = (~finished).nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                active, ids, seq, compacted = active[keep], ids[keep], seq[keep], True
                grammar.select(keep)
                if cons is not None:
                    cons.select(keep)
                if use_cache:
                    cache = cache.select(keep)
                else:
                    memory = memory[keep]
                    mem_mask = None if mem_mask is None else mem_mask[keep]
        return out


def generate(model: LayoutModel, tokenizer: LayoutTokenizer, image: torch.Tensor | None,
             has_image: torch.Tensor | None, spec: torch.Tensor | None, *, max_elements: int,
             temperature: float = 0.0, top_p: float = 1.0,
             generator: torch.Generator | None = None, seed: int | None = None,
             required_types: list[list[str] | None] | None = None,
             use_cache: bool = True, steps: int | None = None,
             fixed: list[list[Box] | None] | None = None, constraints: str = "off",
             aesthetics: AestheticConfig | None = None) -> list[list[Box]]:
    """Generate one layout per row; always parses.

    image [B, C, H, W] float or None; has_image bool [B] (None: all rows have `image`, or none
    when image is None); spec int64 [B, S] PAD-padded (None: [NULL] for every row).
    temperature 0 is greedy; otherwise softmax sampling with nucleus top_p, drawn from
    `generator` (or a fresh one seeded with `seed`). required_types[i] is the list of element
    types row i must place exactly (None or [] = free). use_cache=False recomputes the whole
    prefix every step (reference path for tests and the latency benchmark).
    A diffusion model (layoutray.model.diffusion) samples with `steps` = K <= T steps (None: T)
    and holds fixed[i], boxes of row i, through every step; an autoregressive one has no steps
    (`steps` is ignored) and writes fixed[i] first, then generates the rest after them.
    `constraints` is an aesthetic level (layoutray.model.constraints): "basic" and above mask and
    snap coordinates while decoding autoregressively, "advanced" also refines each layout
    (layoutray.model.refine); a diffusion model's layouts are refined at "basic" and above
    (`refines`). Fixed boxes are never moved. `aesthetics` holds their settings (None: the defaults).
    """
    ids = generate_tokens(model, tokenizer, image, has_image, spec, max_elements=max_elements,
                          temperature=temperature, top_p=top_p, generator=generator, seed=seed,
                          required_types=required_types, use_cache=use_cache, steps=steps, fixed=fixed,
                          constraints=constraints, aesthetics=aesthetics)
    layouts = [tokenizer.decode_layout(row) for row in ids.tolist()]
    held = held_elements(layouts, fixed, tokenizer.bins)
    if refines(model, constraints):
        from layoutray.model.refine import refine_layouts
        layouts = refine_layouts(layouts, aesthetics or AestheticConfig(), [set(h) for h in held])
    # the model holds a fixed box to its coordinate bins; the caller gets it back exactly as given
    return [[h.get(j, b) for j, b in enumerate(layout)] for layout, h in zip(layouts, held)]


def refines(model: LayoutModel, constraints: str) -> bool:
    """Whether `constraints` ends in the post-hoc refinement. `advanced` always does. The decode-time
    masks of `basic` follow reading order, which a diffusion sampler does not have (it reveals all
    places jointly), so for a diffusion model `basic` and `full` refine its layouts instead."""
    if getattr(model, "diffusion", None) is not None:
        return check_level(constraints) in DECODE_LEVELS
    return constraints in REFINE_LEVELS


def held_elements(layouts: list[list[Box]], fixed: list[list[Box] | None] | None, bins: int) -> list[dict[int, Box]]:
    """Per layout, {index of an element: the caller's fixed box it is} (same type, every coordinate
    within one bin): refinement must not move them."""
    held: list[dict[int, Box]] = []
    for layout, want in zip(layouts, fixed or [None] * len(layouts)):
        mine: dict[int, Box] = {}
        for f in want or []:
            j = next((j for j, b in enumerate(layout) if j not in mine and b.type == f.type
                      and all(abs(getattr(b, k) - getattr(f, k)) <= 1.0 / bins for k in "xywh")), None)
            if j is not None:
                mine[j] = f
        held.append(mine)
    return held
