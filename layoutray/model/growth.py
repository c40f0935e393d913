"""Function-preserving growth of a LayoutModel's weights into a larger configuration.

    new_sd, report = grow_state_dict(old_sd, old_model_cfg, new_model_cfg)

Every parameter gets a role for each of its dimensions from the module it belongs to (a
SelfAttention's qkv rows are heads, its columns read the residual stream; an MLP's fc2 rows write
the stream, its columns are hidden units; a LayerNorm's gain is a norm over the stream; the
top-level tables are listed in `_TOP`). Growth is then one rule per role, so any module built from
these parts (EncoderBlock and DecoderBlock stacks anywhere in the tree) grows without its own code;
a parameter with no role whose shape changes is refused with a GrowthError naming it.

Width (d -> d'): the grown residual stream is x' = s * [x, mean(x), ..., mean(x)] with
s = sqrt(d'/d). Every writer into the stream (embeddings, positions, patch embedding, the output
projections of attention and MLP) gets its old rows times s and new rows equal to s times the mean
of its old rows; the stream is a sum of writers, so this holds for the stream too. Then a
LayerNorm over d' sees mean s*mu and variance s^2 * (d/d') * var = var, the old variance
exactly (eps included), and the old dims' normalised values are s times the old ones: old gains are
divided by s and the new dims' output is the new bias, 0. Every reader of a LayerNorm (q, k, v,
fc1, cross-attention keys and values) therefore sees the old values on the old dims and zeros on
the new ones, whatever its new input columns hold (they keep the fresh initialisation, so the new
dims get gradients from the first step). The last norm feeds the tied output head, whose columns
are also scaled by s, so its gains are divided by s^2 and its bias by s.

Heads and feed-forward units: "split" (Net2Net) copies an old head or unit into each new one
(round robin) and divides the outgoing weights of every copy among the copies; "zero" gives new
heads and units their fresh incoming weights and zero outgoing weights. Both are exact. The head
size must stay the same (all phases keep 32). `noise` adds N(0, (noise * std)^2) to the incoming
weights of split copies so that copies can diverge in training (off by default: it is not exact).

Depth: an old layer i goes to layer_map(L, L')[i]; a new layer starts as a copy of the old layer
below it with zero output projections (attn.proj, cross.proj, fc2), i.e. the identity of a pre-norm
residual block.

Sequence positions and vocabulary: new positions are never reached by the old model's inputs and
keep their fresh initialisation. New tokens get an embedding whose logit under the output head is
a constant far below the others (see `_silent_rows`), so existing predictions do not change.

Vision: a changed patch size resamples the patch kernel (FlexiViT's pseudo-inverse resize for a
nearest-neighbour zoom) and a changed grid interpolates the row and column position tables. The
vision encoder then sees more (and different) tokens, and the decoder's cross-attention spreads
over more keys: this part is approximate, and `report["exact"]` says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from layoutray.config import ModelConfig
from layoutray.model.network import (ConvStem, CrossAttention, DecoderBlock, EncoderBlock,
                                     LayoutModel, MLP, SelfAttention)
from layoutray.model.tokenizer import N_SPECIAL, LayoutTokenizer


class GrowthError(ValueError):
    """A part of the model cannot be grown into the new configuration; the message says which."""


UNIT_METHODS = ("split", "zero")
SILENT_LOGIT = -40.0  # logit of a new token under the old inputs (softmax weight ~ e^-40 of the rest)

# Roles of each dimension, per (module class, parameter name inside it).
_MODULE_ROLES: dict[type, dict[str, tuple[str, ...]]] = {
    SelfAttention: {"qkv.weight": ("heads3", "read"), "qkv.bias": ("heads3",),
                    "proj.weight": ("write", "heads_in"), "proj.bias": ("write",)},
    CrossAttention: {"q.weight": ("heads1", "read"), "q.bias": ("heads1",),
                     "kv.weight": ("heads2", "read"), "kv.bias": ("heads2",),
                     "proj.weight": ("write", "heads_in"), "proj.bias": ("write",)},
    MLP: {"fc1.weight": ("units", "read"), "fc1.bias": ("units",),
          "fc2.weight": ("write", "units_in"), "fc2.bias": ("write",)},
    nn.LayerNorm: {"weight": ("norm_gain",), "bias": ("norm_bias",)},
    ConvStem: {"conv1.weight": ("same",) * 4, "conv1.bias": ("same",),
               "conv2.weight": ("same",) * 4, "conv2.bias": ("same",)},
}
# LayoutModel's own tables and single layers (full names).
_TOP: dict[str, tuple[str, ...]] = {
    "tok_emb.weight": ("vocab", "write"),
    "patch_emb.weight": ("write", "pixels"), "patch_emb.bias": ("write",),
    "vis_row": ("grid_rows", "write"), "vis_col": ("grid_cols", "write"),
    "spec_pos": ("pos", "write"), "dec_pos": ("pos", "write"),
    "modality": ("same", "zero_pad"),  # added after the encoders' final norms: memory space
    "dec_ln.weight": ("head_gain",), "dec_ln.bias": ("head_bias",),  # feeds the tied head
    "dense_head.weight": ("cells", "read"), "dense_head.bias": ("cells",),
    # the diffusion decoder (layoutray.model.diffusion): its blocks grow by their parts' rules
    "diffusion.mask_emb": ("write",), "diffusion.slot_pos": ("pos", "write"),
    "diffusion.attr_pos": ("same", "write"),
    "diffusion.ln.weight": ("head_gain",), "diffusion.ln.bias": ("head_bias",),
}
_FRESH_OK = ("dense_head.",)  # training-only parts a new model may have without an old counterpart


def layer_map(l_old: int, l_new: int) -> dict[int, int]:
    """Old layer -> new layer; first and last stay first and last, the rest spread evenly."""
    if l_old == 1:
        return {0: 0}
    return {i: math.floor(i * (l_new - 1) / (l_old - 1) + 0.5) for i in range(l_old)}


def parameter_roles(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Each parameter's dimension roles, from the class of the module that owns it; parameters
    of modules with no rule are absent (the caller copies or refuses them)."""
    roles: dict[str, tuple[str, ...]] = {}
    for mname, mod in model.named_modules():
        table = next((t for cls, t in _MODULE_ROLES.items() if isinstance(mod, cls)), None)
        if table is None:
            continue
        for pname, r in table.items():
            full = f"{mname}.{pname}" if mname else pname
            roles.setdefault(full, r)
    roles.update(_TOP)
    return roles


def _is_block(m: nn.Module) -> bool:
    """A pre-norm residual block: EncoderBlock, DecoderBlock, or any module made of the same
    parts (norms, attention, MLP), such as the diffusion decoder's."""
    if isinstance(m, (EncoderBlock, DecoderBlock)):
        return True
    kids = list(m.children())
    return any(isinstance(k, MLP) for k in kids) and all(isinstance(k, _PARTS) for k in kids)


_PARTS = (nn.LayerNorm, SelfAttention, CrossAttention, MLP, nn.Dropout)


def _block_lists(model: nn.Module) -> list[str]:
    """Names of the ModuleLists of residual blocks (depth grows there)."""
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and len(m) and all(_is_block(b) for b in m)]


# ---------------------------------------------------------------------------- the plan


@dataclass
class Plan:
    """What grows and how; built by `make_plan` from two model configs."""

    old: ModelConfig
    new: ModelConfig
    units: str = "split"
    noise: float = 0.0
    gen: torch.Generator = field(default_factory=torch.Generator)
    vocab_src: list[int] | None = None  # new id -> old id (-1: a new token); None: the same

    @property
    def s(self) -> float:
        return math.sqrt(self.new.d_model / self.old.d_model)

    @property
    def head_dim(self) -> int:
        return self.old.d_model // self.old.n_heads


def _check_plan(p: Plan) -> None:
    o, n = p.old, p.new
    shrink = [f"model.{k} ({getattr(o, k)} -> {getattr(n, k)})"
              for k in ("d_model", "n_heads", "n_layers", "ff_mult", "max_seq_len", "max_spec_len")
              if getattr(n, k) < getattr(o, k)]
    if shrink:
        raise GrowthError(f"growth only adds capacity; these shrink: {', '.join(shrink)}")
    if o.d_model // o.n_heads != n.d_model // n.n_heads:
        raise GrowthError(f"head size changes ({o.d_model // o.n_heads} -> {n.d_model // n.n_heads}): "
                          f"heads are grown in number only (keep d_model / n_heads)")
    for k in ("image_channels", "conv_stem"):
        if getattr(o, k) != getattr(n, k):
            raise GrowthError(f"model.{k} changes ({getattr(o, k)} -> {getattr(n, k)}): the vision input "
                              f"path cannot be regrown; keep it equal")
    if p.units not in UNIT_METHODS:
        raise GrowthError(f"units={p.units!r}; allowed: {', '.join(UNIT_METHODS)}")


def vocab_map(old: LayoutTokenizer, new: LayoutTokenizer) -> list[int]:
    """New id -> old id by meaning (specials, element and section types by name, coordinate bins);
    -1 for a token the old vocabulary lacks."""
    if old.bins != new.bins:
        raise GrowthError(f"model.coord_bins changes ({old.bins} -> {new.bins}): coordinate tokens would "
                          f"mean other positions")
    src = list(range(N_SPECIAL))
    for names_new, names_old, off in ((new.element_types, old.element_types, old.type_offset),
                                      (new.section_types, old.section_types, old.section_offset)):
        src += [off + names_old.index(t) if t in names_old else -1 for t in names_new]
    return src + [old.coord_offset + b for b in range(new.bins)]


# ---------------------------------------------------------------------------- one dimension


def _copies(src: list[int], n_old: int) -> torch.Tensor:
    """How many new slots carry each old slot (>= 1 for a kept one)."""
    c = torch.zeros(n_old)
    for i in src:
        if i >= 0:
            c[i] += 1
    return c


def _slot_src(n_old: int, n_new: int, units: str) -> list[int]:
    """New slot -> old slot: the old ones in place, then copies round robin ("split") or -1."""
    return list(range(n_old)) + [(j % n_old if units == "split" else -1) for j in range(n_new - n_old)]


def _gather(t: torch.Tensor, dim: int, src: list[int], fill: float) -> torch.Tensor:
    """t's slices along dim in the order of src; -1 gives `fill`."""
    idx = torch.tensor([max(i, 0) for i in src])
    out = t.index_select(dim, idx)
    missing = torch.tensor([i < 0 for i in src])
    if bool(missing.any()):
        shape = [1] * t.dim()
        shape[dim] = len(src)
        out = out.masked_fill(missing.view(shape), fill)
    return out


def _slots(t, dim, n_chunks, n_old, n_new, size, plan: Plan, incoming: bool):
    """Grow a dim made of n_chunks x n_old slots of `size` (heads or units) to n_new slots."""
    shape = list(t.shape)
    v = t.reshape(shape[:dim] + [n_chunks, n_old, size] + shape[dim + 1:])
    src = _slot_src(n_old, n_new, plan.units)
    if incoming:  # rows that compute the slot: copies, or fresh (NaN) for new slots
        v = _gather(v, dim + 1, src, float("nan"))
        if plan.noise and plan.units == "split" and n_new > n_old:
            new = v.narrow(dim + 1, n_old, n_new - n_old)
            new.add_(torch.randn(new.shape, generator=plan.gen) * plan.noise * float(t.std()))
    else:  # outgoing weights: divided among the copies; new slots of "zero" write nothing
        c = _copies(src, n_old).view([1] * (dim + 1) + [n_old] + [1] * (t.dim() - dim))
        v = _gather(v / c, dim + 1, src, 0.0)
    shape[dim] = n_chunks * n_new * size
    return v.reshape(shape)


def _pad(t: torch.Tensor, dim: int, n: int, fill: float) -> torch.Tensor:
    extra = list(t.shape)
    extra[dim] = n - t.shape[dim]
    return torch.cat([t, t.new_full(extra, fill)], dim)


def _interp(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Linear resampling along dim (patch-centre aligned)."""
    if t.shape[dim] == n:
        return t
    x = t.movedim(dim, -1)
    flat = x.reshape(-1, 1, x.shape[-1])
    y = F.interpolate(flat, size=n, mode="linear", align_corners=False)
    return y.reshape(*x.shape[:-1], n).movedim(-1, dim)


def resample_patch_kernel(w: torch.Tensor, channels: int, p_old: int, p_new: int) -> torch.Tensor:
    """patch_emb.weight [D, C*p_old^2] -> [D, C*p_new^2], keeping each patch's response to a
    uniform patch: area resampling scaled by (p_old/p_new)^2. For p_new < p_old that is
    FlexiViT's pseudo-inverse resize for nearest-neighbour zoom (a p_new patch embeds as the old
    kernel embedded it blown up to p_old); a larger patch uses bilinear resize, same scale."""
    if p_old == p_new:
        return w
    k = w.reshape(w.shape[0], channels, p_old, p_old)
    mode = "area" if p_new < p_old else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    k = F.interpolate(k, size=(p_new, p_new), mode=mode, **kw) * (p_old / p_new) ** 2
    return k.reshape(w.shape[0], channels * p_new * p_new)


def _patch_geometry(m: ModelConfig) -> tuple[int, int]:
    """(channels, side) of what the patch embedding reads per patch."""
    if m.conv_stem:
        return m.conv_stem, m.patch_size // ConvStem.STRIDE
    return m.image_channels, m.patch_size


def _grow_dim(t: torch.Tensor, dim: int, role: str, new_size: int, plan: Plan) -> torch.Tensor:
    """One dimension of one tensor, old size -> new_size, by its role (see the module docstring)."""
    o, n, s, hd = plan.old, plan.new, plan.s, plan.head_dim
    if role == "write":
        mean = t.mean(dim, keepdim=True).expand(*[-1] * dim, new_size - t.shape[dim], *[-1] * (t.dim() - dim - 1))
        return torch.cat([s * t, s * mean], dim)
    if role in ("read", "pos"):
        return _pad(t, dim, new_size, float("nan"))  # fresh: their inputs are zero / never reached
    if role == "zero_pad":
        return _pad(t, dim, new_size, 0.0)
    if role.startswith("heads"):
        n_chunks = 1 if role == "heads_in" else int(role[-1])
        return _slots(t, dim, n_chunks, o.n_heads, n.n_heads, hd, plan, incoming=role != "heads_in")
    if role in ("units", "units_in"):
        return _slots(t, dim, 1, o.ff_mult * o.d_model, n.ff_mult * n.d_model, 1, plan, role == "units")
    if role in ("norm_gain", "head_gain"):
        return _pad(t / (s if role == "norm_gain" else s * s), dim, new_size, float("nan"))
    if role in ("norm_bias", "head_bias"):
        return _pad(t / (1.0 if role == "norm_bias" else s), dim, new_size, 0.0)
    if role in ("grid_rows", "grid_cols"):
        return _interp(t, dim, new_size)
    if role == "pixels":
        (c, p_old), (_, p_new) = _patch_geometry(o), _patch_geometry(n)
        return resample_patch_kernel(t, c, p_old, p_new)
    if role == "cells":
        same = o.patch_size // max(o.dense_cell, 1) == n.patch_size // max(n.dense_cell, 1)
        return t if same and t.shape[dim] == new_size else t.new_full((new_size, *t.shape[1:]), float("nan"))
    if role == "vocab":
        return _gather(t, dim, plan.vocab_src, float("nan")) if plan.vocab_src else t
    if role == "same":
        return t
    raise AssertionError(f"no rule for role {role!r}")


def grow_tensor(old: torch.Tensor, fresh: torch.Tensor, roles: tuple[str, ...], plan: Plan) -> torch.Tensor:
    """old grown to fresh's shape by its roles; places the roles leave open (NaN) take `fresh`."""
    t = old.detach().float()
    for dim, role in enumerate(roles):
        t = _grow_dim(t, dim, role, fresh.shape[dim], plan)
    if tuple(t.shape) != tuple(fresh.shape):
        raise GrowthError(f"{tuple(old.shape)} grown by roles {roles} gives {tuple(t.shape)}, not the new "
                          f"model's {tuple(fresh.shape)}")
    return torch.where(torch.isnan(t), fresh.float(), t)


# ---------------------------------------------------------------------------- the state dict


def _old_name(name: str, lists: dict[str, dict[int, int]]) -> tuple[str, bool]:
    """(old parameter name to grow from, whether the new name is a new identity layer)."""
    for prefix, lmap in lists.items():
        if name.startswith(prefix + "."):
            j, _, rest = name[len(prefix) + 1:].partition(".")
            inv = {v: k for k, v in lmap.items()}
            if int(j) in inv:
                return f"{prefix}.{inv[int(j)]}.{rest}", False
            below = max(i for i, v in lmap.items() if v < int(j))  # the old layer under the new one
            return f"{prefix}.{below}.{rest}", True
    return name, False


def _layer_maps(new_model: nn.Module, old_sd: dict[str, torch.Tensor]) -> dict[str, dict[int, int]]:
    out = {}
    for prefix in _block_lists(new_model):
        idx = {int(k[len(prefix) + 1:].split(".")[0]) for k in old_sd if k.startswith(prefix + ".")}
        if not idx:
            raise GrowthError(f"{prefix}: the old model has no such blocks")
        out[prefix] = layer_map(len(idx), len(getattr_path(new_model, prefix)))
    return out


def getattr_path(m: nn.Module, path: str) -> nn.Module:
    for part in path.split("."):
        m = getattr(m, part)
    return m


def _grow_one(name: str, fresh: torch.Tensor, old_sd, roles, lists, plan: Plan, tally: dict) -> torch.Tensor:
    old_name, identity = _old_name(name, lists)
    old = old_sd.get(old_name)
    if old is None:
        if name.startswith(_FRESH_OK):
            tally["fresh"].append(name)
            return fresh
        raise GrowthError(f"{name}: the new model has it and the old one has no {old_name}; this part "
                          f"cannot be grown (the configs differ in more than size)")
    r = roles.get(name)
    if r is None:
        if tuple(old.shape) != tuple(fresh.shape):
            raise GrowthError(f"{name}: no growth rule for this parameter and its shape changes "
                              f"({tuple(old.shape)} -> {tuple(fresh.shape)}); it cannot be grown")
        tally["copied"].append(name)
        return old.detach().float().clone()
    t = grow_tensor(old, fresh, r, plan)
    if identity and r[0] == "write":  # a new pre-norm block's output projections: the identity
        t.zero_()
    tally["identity" if identity else "grown"].append(name)
    return t


def _silent_rows(sd: dict[str, torch.Tensor], plan: Plan) -> None:
    """New tokens' embeddings e = c / g (g the final norm's gains): the head's logit of a final-norm
    output g*n + b is c * sum(n) + c * sum(b / g) = c * sum(b / g), since a normalised vector sums
    to zero. c makes that SILENT_LOGIT, whatever the input."""
    if not plan.vocab_src or min(plan.vocab_src) >= 0:
        return
    g, b = sd["dec_ln.weight"], sd["dec_ln.bias"]
    k = float((b / g).sum()) if bool((g.abs() > 1e-6).all()) else 0.0
    if abs(k) < 1e-3:
        raise GrowthError("new tokens cannot be added without changing predictions: the final norm's "
                          "sum(bias / gain) is ~0 (or a gain is 0), so no embedding has a fixed low logit")
    rows = torch.tensor([i < 0 for i in plan.vocab_src])
    sd["tok_emb.weight"][rows] = (SILENT_LOGIT / k) / g


def approximations(old: ModelConfig, new: ModelConfig, noise: float) -> list[str]:
    """What keeps growth from being exact (empty: the grown model computes what the old one did)."""
    out = []
    if old.patch_size != new.patch_size:
        out.append(f"patch size {old.patch_size} -> {new.patch_size}: vision tokens resampled "
                   f"({old.image_height // old.patch_size}x{old.image_width // old.patch_size} -> "
                   f"{new.image_height // new.patch_size}x{new.image_width // new.patch_size})")
    if (old.image_height, old.image_width) != (new.image_height, new.image_width):
        out.append(f"image {old.image_height}x{old.image_width} -> {new.image_height}x{new.image_width}: "
                   f"positions interpolated, each patch sees the section at another scale")
    if noise:
        out.append(f"symmetry-breaking noise {noise} on split copies")
    return out


def grow_state_dict(old_sd: dict[str, torch.Tensor], old: ModelConfig, new: ModelConfig, *,
                    units: str = "split", noise: float = 0.0, seed: int = 0,
                    vocab: tuple[LayoutTokenizer, LayoutTokenizer] | None = None,
                    ) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict of `new`'s model computing what old_sd's did, report). New weights that the
    rules leave free keep a fresh initialisation drawn with `seed`; vocab=(old, new) tokenizers
    when they differ. report: {"method", "units", "noise", "exact", "approximations",
    "layer_maps", "tensors": {"grown", "identity", "copied", "fresh", "dropped"}}."""
    plan = Plan(old, new, units, noise, torch.Generator().manual_seed(seed))
    _check_plan(plan)
    old_tok, new_tok = vocab or (LayoutTokenizer(bins=old.coord_bins), LayoutTokenizer(bins=new.coord_bins))
    src = vocab_map(old_tok, new_tok)
    plan.vocab_src = None if src == list(range(old_tok.vocab_size)) else src
    torch.manual_seed(seed)
    model = LayoutModel(new, new_tok.vocab_size, dropout=0.0)
    roles, lists = parameter_roles(model), _layer_maps(model, old_sd)
    tally: dict[str, list[str]] = {k: [] for k in ("grown", "identity", "copied", "fresh")}
    sd = {name: _grow_one(name, fresh.detach(), old_sd, roles, lists, plan, tally)
          for name, fresh in model.state_dict().items()}
    _silent_rows(sd, plan)
    used = {_old_name(n, lists)[0] for n in sd}
    dropped = sorted(k for k in old_sd if k not in used)
    report = {"method": "function_preserving", "units": units, "noise": noise,
              "exact": not approximations(old, new, noise), "approximations": approximations(old, new, noise),
              "layer_maps": lists, "new_tokens": sum(i < 0 for i in plan.vocab_src or []),
              "tensors": {**{k: len(v) for k, v in tally.items()}, "dropped": len(dropped)},
              "fresh": tally["fresh"], "copied": tally["copied"], "dropped": dropped}
    return sd, report
