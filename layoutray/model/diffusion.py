"""The diffusion layout decoder: discrete absorbing-state (masking) diffusion over layout tokens,
as LayoutDM (Inoue et al., CVPR 2023), beside the autoregressive decoder of network.py.

The canvas. A layout is E = model.max_elements slots of 5 tokens (type x y w h), L = 5E tokens
with the same ids as the autoregressive sequence. A slot without an element holds EMPTY (the EOS
id) in all five places. Slots are in canonical order: by element type id, then reading order
within a type. That order is computable from a spec alone (a spec is a multiset of types), so
the spec's types can be written into the type places before anything is generated:

    tokens (AR)   BOS  heading x y w h  button x y w h  EOS PAD ...     (reading order)
    canvas        heading x y w h | button x y w h | EMPTY x5 | ...    (type order; E slots)

The noise. Forward process q(x_t | x_0): every unknown token is replaced by MASK (id V, one past
the vocabulary) with probability t / T, independently (linear schedule; T = model.diffusion_steps,
100/200/500/1000 for phases 1-4). MASK is absorbing: a masked token stays masked as t grows.
Training draws t uniformly from 1..T and scores cross entropy on the masked places only (the
x_0-parameterisation; the coordinate targets are soft as the AR loss's, training.coord_sigma).

The denoiser is a bidirectional transformer (no causal mask) of cfg.n_layers blocks that
cross-attends to the same fused image/spec memory as the AR decoder and shares the token
embedding and tied output head. It takes no timestep input: with absorbing noise the number of
masks in the input says how far along the process is (Sahoo et al. 2024, MDLM; Chang et al. 2022,
MaskGIT), and a time-free denoiser makes step skipping exact: a step that reveals nothing leaves
the state unchanged, so it costs no network call.

Known tokens. What the caller knows is held fixed through every step and never scored: the
spec's element types (and the EMPTY of the slots beyond them), and every token of the boxes in
`fixed`. Training holds the types known on rows whose spec lists them (the spec-only and both
tasks), and their empty slots whole, as generation does, and on a share of rows whole elements
too, as completion does.

Live places. On a row whose spec lists its types, the empty slots after the typed ones are known
from the start and say nothing the spec did not; the denoiser leaves them out of its
self-attention (as keys), in training and in sampling alike. A canvas cut after the last typed
slot is then the same computation, so sampling runs only the slots a spec fills: a spec of n
elements costs n slots per step, not E.

Sampling with K <= T steps visits K + 1 times T = t_0 > ... > t_K = 0 on the T grid; going from
t to s a row with m unknown tokens keeps floor(m * s / T) masked and reveals the rest: greedy
(temperature 0) reveals the most confident places first, sampling draws tokens (temperature,
top_p) and reveals places in random order. Constraints as the AR grammar's: type places take an
element type or EMPTY (the first slot of a free row is never empty), coordinate places take a bin
with x, y <= bins - 2 and w, h >= 1, and once a box's start (or size) is known its size (start)
is limited so the box stays on the canvas.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from layoutray.config import ModelConfig
from layoutray.model.network import DecoderBlock, Dropout, denoiser_block_pass, eval_mode
from layoutray.model.tokenizer import BOS, EOS, PAD, TOKENS_PER_ELEMENT, Box, LayoutTokenizer

EMPTY = EOS  # every token of an empty slot
NEG_INF = float("-inf")
KEEP_ELEMENTS_ROWS = 0.1  # training: share of rows with some whole elements known (completion)


def mask_id(model) -> int:
    """The MASK token: one past the shared vocabulary (it has its own embedding, never an output)."""
    return model.vocab_size


# ---------------------------------------------------------------------------- noise schedule


def mask_rate(t: int | torch.Tensor, T: int):
    """q(x_t | x_0): the probability that an unknown token is masked at time t (linear, 0 at t = 0,
    1 at t = T)."""
    return t / T


def step_times(T: int, K: int) -> list[int]:
    """The K + 1 times a K-step sampler visits: T = t_0 > t_1 > ... > t_K = 0, evenly spaced on the
    integer grid (floor(T (K - k) / K), strictly decreasing because K <= T)."""
    if not 1 <= K <= T:
        raise ValueError(f"steps must be in [1, {T}] (model.diffusion_steps); got {K}")
    return [T * (K - k) // K for k in range(K + 1)]


def still_masked(m0: torch.Tensor, t: int, T: int) -> torch.Tensor:
    """Tokens still masked at time t of a row that started with m0 unknown tokens at T."""
    return (m0 * t) // T


# ---------------------------------------------------------------------------- canvas <-> tokens


def to_canvas(tokens: torch.Tensor, E: int, tok: LayoutTokenizer) -> torch.Tensor:
    """AR layout ids [B, T] (BOS el* EOS PAD) -> canvas [B, 5E] in canonical (type, reading) order."""
    B = tokens.shape[0]
    el = tokens[:, 1:1 + 5 * E]
    el = F.pad(el, (0, 5 * E - el.shape[1]), value=PAD).reshape(B, E, 5)
    types = el[:, :, 0]
    valid = (types >= tok.type_offset) & (types < tok.section_offset) & (el[:, :, 1:] >= tok.coord_offset).all(2)
    idx = torch.arange(E, device=tokens.device)[None]
    key = torch.where(valid, types * E + idx, tok.vocab_size * E + idx)  # stable: reading order within a type
    order = key.argsort(dim=1)
    el = el.gather(1, order[:, :, None].expand(-1, -1, 5))
    el = torch.where(valid.gather(1, order)[:, :, None], el, torch.full_like(el, EMPTY))
    return el.reshape(B, 5 * E)


def from_canvas(canvas: torch.Tensor, tok: LayoutTokenizer) -> torch.Tensor:
    """Canvas [B, 5E] -> AR layout ids [B, 2 + 5E]: BOS, the complete elements in reading order, EOS, PAD."""
    B, L = canvas.shape
    E = L // 5
    el = canvas.reshape(B, E, 5)
    types, co = el[:, :, 0], tok.coord_offset
    valid = (types >= tok.type_offset) & (types < tok.section_offset) & \
        (el[:, :, 1:] >= co).all(2) & (el[:, :, 1:] < tok.vocab_size).all(2)
    # the tokenizer's reading order: quantised y, then x, then type
    key = ((el[:, :, 2] - co) * tok.bins + (el[:, :, 1] - co)) * tok.vocab_size + types
    key = torch.where(valid, key, torch.iinfo(torch.long).max)
    order = key.argsort(dim=1)
    el = el.gather(1, order[:, :, None].expand(-1, -1, 5))
    n = valid.sum(dim=1)
    keep = torch.arange(E, device=canvas.device)[None] < n[:, None]
    out = torch.full((B, 2 + L), PAD, dtype=torch.long, device=canvas.device)
    out[:, 0] = BOS
    out[:, 1:1 + L] = torch.where(keep[:, :, None], el, torch.full_like(el, PAD)).reshape(B, L)
    out.scatter_(1, (1 + 5 * n)[:, None], EOS)
    return out


# ---------------------------------------------------------------------------- the denoiser


class DiffusionDecoder(nn.Module):
    """canvas ids [B, L] (MASK = vocab_size) + memory -> logits [B, L, V] over the shared vocabulary.

    Parameters (prefix `diffusion.` in a LayoutModel): mask_emb [D] the MASK embedding, slot_pos
    [E, D] and attr_pos [5, D] (position = slot + attribute), blocks.N.* as the AR decoder's blocks
    without the causal mask, ln the final norm. The token embedding and output head are the
    model's tok_emb (tied), passed in."""

    def __init__(self, cfg: ModelConfig, dropout: float):
        super().__init__()
        d = cfg.d_model
        self.mask_emb = nn.Parameter(torch.randn(d) * 0.02)
        self.slot_pos = nn.Parameter(torch.randn(cfg.max_elements, d) * 0.02)
        self.attr_pos = nn.Parameter(torch.randn(TOKENS_PER_ELEMENT, d) * 0.02)
        self.blocks = nn.ModuleList(DecoderBlock(cfg, dropout, causal=False) for _ in range(cfg.n_layers))
        self.ln = nn.LayerNorm(d)
        self.drop = Dropout(dropout)

    def sampling_state(self, memory: torch.Tensor) -> list[tuple]:
        """What every sampling step over one memory reuses: each block's cross-attention keys and
        values of the memory, and its weights as a plain tuple (network.denoiser_block_pass)."""
        return [(*blk.cross.memory_kv(memory), blk.step_weights()) for blk in self.blocks]

    def forward(self, canvas: torch.Tensor, memory: torch.Tensor, mem_mask, tok_emb: nn.Embedding,
                run_block: Callable = lambda blk, *args: blk(*args), state: list | None = None,
                typed: torch.Tensor | None = None):
        """run_block: the LayoutModel's (activation checkpointing of each block when it is on);
        state: `sampling_state(memory)` when the caller runs many steps over one memory (sampling:
        the blocks run as plain tensor calls, without dropout or autograd's bookkeeping);
        typed bool [B]: rows whose spec lists the element types (their empty slots are not live)."""
        V, L = tok_emb.num_embeddings, canvas.shape[1]
        live = None if typed is None else live_places(canvas, typed)
        self_mask = None if live is None or bool(live.all()) else live[:, None, None, :]
        is_mask = (canvas == V)[:, :, None]
        x = torch.where(is_mask, self.mask_emb.to(memory.dtype), tok_emb(canvas.clamp(max=V - 1)))
        pos = (self.slot_pos[:, None] + self.attr_pos[None]).reshape(-1, x.shape[-1])[:L]
        x = self.drop(x + pos)
        if state is not None:
            heads = self.blocks[0].attn.n_heads
            for k, v, w in state:
                x = denoiser_block_pass(x, w, self_mask, k, v, mem_mask, heads)
        else:
            for blk in self.blocks:
                x = run_block(blk, x, *blk.cross.memory_kv(memory), mem_mask, self_mask)
        return F.linear(self.ln(x), tok_emb.weight)


# ---------------------------------------------------------------------------- training


def typed_rows(spec: torch.Tensor, coord_bins: int) -> torch.Tensor:
    """Bool [B]: the rows whose spec lists element types (the spec-only and image+spec tasks)."""
    tok = LayoutTokenizer(bins=coord_bins)
    return ((spec >= tok.type_offset) & (spec < tok.section_offset)).any(dim=1)


def live_places(canvas: torch.Tensor, typed: torch.Tensor) -> torch.Tensor:
    """Bool [B, L]: the places the denoiser attends to: all but the empty slots of typed rows."""
    B, L = canvas.shape
    empty = canvas.view(B, L // 5, 5)[:, :, 0] == EMPTY
    return (~(empty & typed[:, None])).repeat_interleave(TOKENS_PER_ELEMENT, dim=1)


def spec_known(canvas: torch.Tensor, spec: torch.Tensor, tok: LayoutTokenizer) -> torch.Tensor:
    """Bool [B, L]: on rows whose spec lists element types, the type places and the empty slots
    whole (known, as at inference)."""
    B, L = canvas.shape
    typed = typed_rows(spec, tok.bins)
    is_type_place = (torch.arange(L, device=canvas.device) % 5 == 0)[None]
    return typed[:, None] & (is_type_place | ~live_places(canvas, typed))


def corrupt(canvas: torch.Tensor, known: torch.Tensor, T: int, mask: int,
            generator: torch.Generator | None = None, t: torch.Tensor | None = None):
    """(noisy canvas, targets): a draw of x_t ~ q(x_t | x_0) at t ~ U{1..T} per row (or the given
    t [B]); targets hold x_0 at the masked places and PAD (ignored by the loss) elsewhere. Each row
    with an unknown place gets at least one mask, so no row is dropped from the loss."""
    B, L = canvas.shape
    dev = canvas.device
    if t is None:
        t = torch.randint(1, T + 1, (B,), generator=generator, device=dev)
    u = torch.rand(B, L, generator=generator, device=dev)
    masked = (u < mask_rate(t.float(), T)[:, None]) & ~known
    none = ~masked.any(dim=1) & (~known).any(dim=1)
    if bool(none.any()):  # mask the unknown place with the smallest draw
        first = torch.where(known, 2.0, u).argmin(dim=1)
        masked[none, first[none]] = True
    noisy = torch.where(masked, torch.full_like(canvas, mask), canvas)
    return noisy, torch.where(masked, canvas, torch.full_like(canvas, PAD))


def _known_elements(canvas: torch.Tensor, generator=None) -> torch.Tensor:
    """Bool [B, L]: on KEEP_ELEMENTS_ROWS of the rows, each non-empty element whole with p = 1/2."""
    B, L = canvas.shape
    E = L // 5
    rows = torch.rand(B, 1, generator=generator, device=canvas.device) < KEEP_ELEMENTS_ROWS
    pick = torch.rand(B, E, generator=generator, device=canvas.device) < 0.5
    filled = canvas.reshape(B, E, 5)[:, :, 0] != EMPTY
    return (rows & pick & filled).repeat_interleave(5, dim=1)


def training_pair(model, tokens: torch.Tensor, spec: torch.Tensor, generator=None):
    """(decoder input, targets) of one training batch: the noisy canvas and its masked x_0."""
    tok = LayoutTokenizer(bins=model.cfg.coord_bins)
    canvas = to_canvas(tokens, model.cfg.max_elements, tok)
    known = spec_known(canvas, spec, tok) | _known_elements(canvas, generator)
    return corrupt(canvas, known, model.cfg.diffusion_steps, mask_id(model), generator)


@torch.no_grad()
def teacher_forced(model, batch: dict) -> tuple[float, int, int]:
    """(summed loss, scored tokens, correct tokens) of one batch at a fixed draw of the noise:
    the diffusion counterpart of the AR teacher-forced pass (validation loss, early stopping).
    Row i is masked at rate (i + 0.5) / B of the way through the process, from a seeded generator,
    so the same batch scores the same every epoch."""
    tokens, spec = batch["tokens"], batch["spec"]
    tok = LayoutTokenizer(bins=model.cfg.coord_bins)
    canvas = to_canvas(tokens, model.cfg.max_elements, tok)
    B, T = canvas.shape[0], model.cfg.diffusion_steps
    g = torch.Generator(device=canvas.device).manual_seed(0)
    t = ((torch.arange(B, device=canvas.device) + 0.5) / B * T).ceil().long().clamp(1, T)
    noisy, targets = corrupt(canvas, spec_known(canvas, spec, tok), T, mask_id(model), g, t)
    logits = model(batch["image"], batch["has_image"], spec, noisy).float()
    keep = targets != PAD
    loss = F.cross_entropy(logits[keep], targets[keep], reduction="sum")
    correct = int((logits[keep].argmax(dim=-1) == targets[keep]).sum())
    return float(loss), int(keep.sum()), correct


# ---------------------------------------------------------------------------- sampling


def initial_canvas(tok: LayoutTokenizer, B: int, E: int, max_elements: int, mask: int,
                   required_types: Sequence[Sequence[str] | None] | None = None,
                   fixed: Sequence[Sequence[Box] | None] | None = None, device=None):
    """(canvas [B, 5E] with MASK at the unknown places, known bool [B, 5E]) of a request batch.

    required_types[i]: the element types of row i (its type places become known; slots past them
    EMPTY); fixed[i]: boxes of row i held whole. With required types, each type's fixed boxes take
    its first slots; without, the fixed boxes take the first slots in type order."""
    canvas = torch.full((B, E, 5), mask, dtype=torch.long)
    known = torch.zeros(B, E, 5, dtype=torch.bool)
    for i in range(B):
        types = list((required_types or [None] * B)[i] or [])
        boxes = list((fixed or [None] * B)[i] or [])
        _fill_row(tok, canvas[i], known[i], types, boxes, min(max_elements, E), i)
    return canvas.reshape(B, 5 * E).to(device), known.reshape(B, 5 * E).to(device)


def _fill_row(tok: LayoutTokenizer, canvas, known, types: list[str], boxes: list[Box], cap: int, i: int):
    for name in types + [b.type for b in boxes]:
        if name not in tok.element_types:
            raise ValueError(f"row {i}: unknown element type {name!r}; allowed: {', '.join(tok.element_types)}")
    n = max(len(types), len(boxes))
    if n > cap:
        raise ValueError(f"row {i}: {n} elements is more than max_elements ({cap})")
    left = list(types)
    for b in boxes:
        if types and b.type not in left:
            raise ValueError(f"row {i}: fixed box of type {b.type!r} is not among the required types")
        if types:
            left.remove(b.type)
    by_type = lambda b: (tok.type_id(b.type), tok.quantize(b.y), tok.quantize(b.x))  # noqa: E731
    slots: list[tuple[str, Box | None]] = [(b.type, b) for b in sorted(boxes, key=by_type)]
    slots += [(name, None) for name in left]
    slots.sort(key=lambda s: (tok.type_id(s[0]), s[1] is None))  # stable: fixed first within a type
    for j, (name, b) in enumerate(slots):
        if b is not None or types:
            canvas[j, 0], known[j, 0] = tok.type_id(name), True
        if b is not None:
            x, y = tok.quantize(b.x), tok.quantize(b.y)
            w = min(max(tok.quantize(b.w), 1), tok.bins - 1 - min(x, tok.bins - 2))
            h = min(max(tok.quantize(b.h), 1), tok.bins - 1 - min(y, tok.bins - 2))
            canvas[j, 1:] = torch.tensor([min(x, tok.bins - 2), min(y, tok.bins - 2), w, h]) + tok.coord_offset
            known[j, 1:] = True
    first_empty = len(slots) if types else cap
    canvas[first_empty:], known[first_empty:] = EMPTY, True


def _base_forbidden(tok: LayoutTokenizer, V: int, E: int, device) -> torch.Tensor:
    """Bool [5E, V]: what each place may never hold (per attribute)."""
    co, bins = tok.coord_offset, tok.bins
    bad = torch.ones(TOKENS_PER_ELEMENT, V, dtype=torch.bool, device=device)
    bad[0, tok.type_offset:tok.section_offset] = False
    bad[0, EMPTY] = False
    bad[1:3, co:co + bins - 1] = False  # x, y: any bin but the last (a box needs w, h >= 1)
    bad[3:5, co + 1:co + bins] = False  # w, h >= 1 bin
    return bad.repeat(E, 1)


def _past_canvas(tok: LayoutTokenizer, V: int, device) -> torch.Tensor:
    """Bool [bins + 1, V]: row k (k < bins) forbids the coordinate ids above bin bins - 1 - k, what
    a box's start (size) may not be once its size (start) is bin k; row bins forbids nothing."""
    co, bins = tok.coord_offset, tok.bins
    limit = torch.cat([bins - 1 - torch.arange(bins, device=device), torch.tensor([bins], device=device)])
    return (torch.arange(V, device=device) - co)[None] > limit[:, None]


PARTNER = [3, 4, 1, 2]  # the place that limits each of x y w h: w h x y


def forbidden(canvas: torch.Tensor, mask: int, base: torch.Tensor, past: torch.Tensor, tok: LayoutTokenizer,
              free_rows: torch.Tensor) -> torch.Tensor:
    """Bool [B, L, V]: the base rules, the first slot of a free row non-empty, and the canvas: a
    known start limits its size to bins - 1 - start, a known size its start likewise (`past`,
    _past_canvas, looked up by the partner's bin)."""
    B, L = canvas.shape
    co, bins = tok.coord_offset, tok.bins
    bad = base.view(1, L // 5, 5, -1).repeat(B, 1, 1, 1)  # [B, E, 5, V]
    bad[:, 0, 0, EMPTY] |= free_rows
    partner = canvas.view(B, L // 5, 5)[:, :, PARTNER]  # [B, E, 4]
    bin_of = torch.where((partner != mask) & (partner >= co), partner - co, bins)
    bad[:, :, 1:] |= past[bin_of]
    return bad.view(B, L, -1)


def _consistent(canvas: torch.Tensor, mask: int, revealed: torch.Tensor, tok: LayoutTokenizer) -> torch.Tensor:
    """Empty slots empty throughout; a start and size revealed together kept on the canvas."""
    B, L = canvas.shape
    el = canvas.view(B, L // 5, 5).clone()
    rev = revealed.view(B, L // 5, 5)
    empty = el[:, :, 0] == EMPTY
    el[:, :, 1:] = torch.where(empty[:, :, None], EMPTY, el[:, :, 1:])
    co, top = tok.coord_offset, tok.coord_offset + tok.bins - 1
    for start, size in ((1, 3), (2, 4)):
        both = rev[:, :, start] & rev[:, :, size] & ~empty
        fit = torch.minimum(el[:, :, size], top - (el[:, :, start] - co))
        el[:, :, size] = torch.where(both, fit, el[:, :, size])
    return el.reshape(B, L)


def _choose(logits: torch.Tensor, temperature: float, top_p: float, generator):
    """(ids [B, L], score [B, L]): greedy picks the argmax and scores by its log-probability (most
    confident revealed first); sampling draws each place's token and scores at random."""
    from layoutray.model.generate import _pick

    B, L, V = logits.shape
    if temperature <= 0.0:
        logp, ids = logits.float().log_softmax(dim=-1).max(dim=-1)
        return ids, logp
    ids = _pick(logits.reshape(B * L, V).float(), temperature, top_p, generator).view(B, L)
    return ids, torch.rand(B, L, generator=generator, device=logits.device)


def denoise(model, memory, mem_mask, canvas: torch.Tensor, known: torch.Tensor, times: list[int], *,
            free_rows: torch.Tensor, temperature: float = 0.0, top_p: float = 1.0, generator=None,
            on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Run the reverse process over `times` from `canvas` (MASK at the unknown places); returns the
    final canvas. on_step(t, canvas) sees the state after each network call."""
    tok = LayoutTokenizer(bins=model.cfg.coord_bins)
    mask, T = mask_id(model), times[0]
    base = _base_forbidden(tok, model.vocab_size, canvas.shape[1] // 5, canvas.device)
    past = _past_canvas(tok, model.vocab_size, canvas.device)
    m0, held, typed = (~known).sum(dim=1), canvas.clone(), ~free_rows
    state = model.diffusion.sampling_state(memory)
    for t, s in zip(times[:-1], times[1:]):
        is_mask = canvas == mask
        n = (is_mask.sum(dim=1) - still_masked(m0, s, T)).clamp(min=0)  # [B] to reveal now
        if int(n.max()) == 0:
            continue  # nothing to reveal: the state stays as it is (no timestep input)
        logits = model.diffusion(canvas, memory, mem_mask, model.tok_emb, state=state, typed=typed)
        logits = logits.masked_fill(forbidden(canvas, mask, base, past, tok, free_rows), NEG_INF)
        ids, score = _choose(logits, temperature, top_p, generator)
        score = score.masked_fill(~is_mask, NEG_INF)
        rank = score.argsort(dim=1, descending=True).argsort(dim=1)
        revealed = is_mask & (rank < n[:, None])
        canvas = _consistent(torch.where(revealed, ids, canvas), mask, revealed, tok)
        canvas = torch.where(known, held, canvas)  # (a no-op by construction; the guarantee made explicit)
        if on_step is not None:
            on_step(s, canvas)
    return canvas


@torch.inference_mode()
def sample_tokens(model, tokenizer: LayoutTokenizer, image, has_image, spec, *, max_elements: int,
                  steps: int | None = None, temperature: float = 0.0, top_p: float = 1.0,
                  generator: torch.Generator | None = None,
                  required_types: Sequence[Sequence[str] | None] | None = None,
                  fixed: Sequence[Sequence[Box] | None] | None = None,
                  on_step: Callable[[int, torch.Tensor], None] | None = None) -> torch.Tensor:
    """Layout ids [B, 2 + 5E] in the AR format (BOS, elements in reading order, EOS, PAD) from the
    diffusion decoder with `steps` = K <= T sampling steps (None: T). Arguments as
    generate.generate_tokens; fixed[i] the boxes row i holds whole (completion). steps above T
    run T steps (a request validated for the largest T of any phase may reach a smaller model)."""
    T = model.cfg.diffusion_steps
    times = step_times(T, T if steps is None else min(int(steps), T))
    B, E = spec.shape[0], model.cfg.max_elements
    with eval_mode(model):
        memory, mem_mask = model.encode(image, has_image, spec)
        canvas, known = initial_canvas(tokenizer, B, E, max_elements, mask_id(model), required_types, fixed,
                                       device=memory.device)
        free_rows = torch.tensor([not (required_types and required_types[i]) for i in range(B)],
                                 dtype=torch.bool, device=memory.device)
        n = live_slots(canvas, ~free_rows)  # the slots past every row's last live one never change
        rest = canvas[:, 5 * n:]
        whole = lambda c: torch.cat([c, rest], dim=1)  # noqa: E731
        out = whole(denoise(model, memory, mem_mask, canvas[:, :5 * n], known[:, :5 * n], times,
                            free_rows=free_rows, temperature=temperature, top_p=top_p, generator=generator,
                            on_step=on_step and (lambda t, c: on_step(t, whole(c)))))
    return from_canvas(out, tokenizer)


def live_slots(canvas: torch.Tensor, typed: torch.Tensor) -> int:
    """How many leading slots hold every live place of the batch (typed rows' empty slots trail)."""
    B, L = canvas.shape
    live = live_places(canvas, typed).view(B, L // 5, 5)[:, :, 0].any(dim=0)  # [E]
    return int(live.nonzero().max()) + 1 if bool(live.any()) else 1
