"""Grow a trained model into a later phase, carrying every weight that has a place to go.

    layoutray upgrade --model runs/p1/model --to phase2 --out models/p2-init
    layoutray train --data DIR --phase phase2 --init-from models/p2-init

What goes where (old -> new):
- Width (d_model 128 -> 192 -> 256 -> 384): slice-copy into the leading block of every wider
  tensor. Dimensions made of attention heads (q, k, v rows; output-projection columns) are
  copied head by head: old head h -> new head h, its head dims into the leading head dims (all
  phases keep head size 32, so heads carry whole and the softmax scale is unchanged). MLP hidden
  units: old unit u -> new unit u.
- Depth (n_layers 4 -> 6 -> 8 -> 10, in each of the three stacks): old layer i -> new layer
  round(i * (L_new - 1) / (L_old - 1)), so the first and last layers stay first and last
  (4 -> 6: 0,2,3,5). New layers in between start fresh; with identity_new_layers=True (the
  default) their residual outputs (attn.proj, cross.proj, mlp.fc2: weight and bias) are zero, so
  each new block is exactly the identity x -> x at first and the deeper stack computes what the
  old one did.
- Patch embedding (patch 32 -> 16): the kernel [D, C, 32, 32] is resampled to [D, C, 16, 16] by
  area averaging times (32/16)^2, i.e. 2x2 sum pooling. That is FlexiViT's pseudo-inverse resize
  for nearest-neighbour zoom: a 16-px patch embeds exactly as the old kernel embedded that patch
  blown up to 32 px, and a uniform patch embeds as before. Upsampling (a larger patch) uses
  bilinear resize with the same area scale. A new phase that keeps the patch size copies it.
- Vision positions: the row and column tables are interpolated linearly (patch-centre aligned)
  to the new grid (6x10 -> 12x20 -> 16x28). Sequence positions (decoder, spec) are indices, not
  coordinates: the first rows are copied and the new tail keeps its fresh init.
- The dense head (training only) is carried when both models cut a patch into the same grid of
  cells; otherwise (patch 32 -> 16 at the same cell size) it starts fresh.
- Everything else new (extra rows and columns, new layers' other weights) keeps the new model's
  initialisation (seeded with the new config's training.seed).

Becoming function-preserving later. Depth already is (identity blocks). Width needs three more
things: (1) zero the new rows of every tensor that writes into the residual stream (embeddings,
positions, modality, patch_emb, proj, cross.proj, fc2), so the extra stream dims stay zero;
(2) zero the new columns of proj/cross.proj over new heads and of fc2 over new hidden units, so
new heads and units add nothing; (3) a norm that ignores zero-padded dims: LayerNorm's mean and
variance over d_new differ from those over d_old, so the blocks would switch to RMSNorm with
gains scaled by sqrt(d_new / d_old) (zero dims then change nothing), or keep LayerNorm and
normalise over the carried dims. The patch resample is exact only for nearest-neighbour zoom and
image size changes (phase 3's 256x448) change what each patch sees, so the vision path is
"best effort" by nature. The hooks for (1) and (2) are the `_carry` calls below: they know, per
tensor and dimension, which entries are old and which are new.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F

from layoutray.config import PHASES, RunConfig, load_config
from layoutray.model.network import build_model

_LAYER = re.compile(r"^(vis_blocks|spec_blocks|dec_blocks)\.(\d+)\.(.+)$")
# Per-parameter structure of each dimension: "plain" (prefix copy) or ("heads", n_chunks)
# (n chunks of [heads, head_dim], copied head by head). Parameters not listed are all plain.
_HEAD_DIMS = {
    "attn.qkv.weight": (("heads", 3), "plain"),
    "attn.qkv.bias": (("heads", 3),),
    "attn.proj.weight": ("plain", ("heads", 1)),
    "cross.q.weight": (("heads", 1), "plain"),
    "cross.q.bias": (("heads", 1),),
    "cross.kv.weight": (("heads", 2), "plain"),
    "cross.kv.bias": (("heads", 2),),
    "cross.proj.weight": ("plain", ("heads", 1)),
}
_RESIDUAL_OUT = ("attn.proj.weight", "attn.proj.bias", "cross.proj.weight", "cross.proj.bias",
                 "mlp.fc2.weight", "mlp.fc2.bias")


def layer_map(l_old: int, l_new: int) -> dict[int, int]:
    """Old layer -> new layer; first and last stay first and last, the rest spread evenly."""
    if l_old == 1:
        return {0: 0}
    return {i: math.floor(i * (l_new - 1) / (l_old - 1) + 0.5) for i in range(l_old)}


def _split(shape: tuple[int, ...], kinds, n_heads: int) -> tuple[int, ...]:
    """Shape with each ("heads", n) dim unfolded into (n, heads, head_dim)."""
    out: list[int] = []
    for size, kind in zip(shape, kinds):
        if kind == "plain":
            out.append(size)
        else:
            n = kind[1]
            out.extend((n, n_heads, size // n // n_heads))
    return tuple(out)


def _carry(old: torch.Tensor, new: torch.Tensor, kinds, h_old: int, h_new: int) -> int:
    """Copy `old` into the leading block of `new` (in place), head by head where kinds say so.
    Returns the number of elements carried."""
    o = old.reshape(_split(tuple(old.shape), kinds, h_old))
    n = new.view(_split(tuple(new.shape), kinds, h_new))
    region = tuple(slice(0, min(a, b)) for a, b in zip(o.shape, n.shape))
    n[region] = o[region]
    return math.prod(min(a, b) for a, b in zip(o.shape, n.shape))


def resample_patch_kernel(w: torch.Tensor, channels: int, p_old: int, p_new: int) -> torch.Tensor:
    """patch_emb.weight [D, C*p_old^2] -> [D, C*p_new^2], keeping each patch's response to a
    uniform patch (area resampling scaled by (p_old/p_new)^2; see the module docstring)."""
    k = w.reshape(w.shape[0], channels, p_old, p_old)
    mode = "area" if p_new < p_old else "bilinear"
    kw = {} if mode == "area" else {"align_corners": False}
    k = F.interpolate(k, size=(p_new, p_new), mode=mode, **kw) * (p_old / p_new) ** 2
    return k.reshape(w.shape[0], channels * p_new * p_new)


def _interp_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """[n_old, D] -> [n, D], linear along the rows (patch-centre aligned)."""
    if t.shape[0] == n:
        return t
    return F.interpolate(t.T[None], size=n, mode="linear", align_corners=False)[0].T


def upgrade_state_dict(old_sd: dict[str, torch.Tensor], old_cfg: RunConfig, new_cfg: RunConfig,
                       identity_new_layers: bool = True) -> tuple[dict[str, torch.Tensor], dict]:
    """(state dict of new_cfg's model carrying old_sd's weights, report).

    report: {"carried": elements copied exactly, "resampled": elements filled from resampled old
    tensors (patch kernel, vision positions), "total": new parameter count, "carried_fraction",
    "old_total", "layer_map": {stack: {old: new}}, "tensors": {"carried": n, "partial": n,
    "resampled": n, "new": n}, "notes": [...]}.
    """
    om, nm = old_cfg.model, new_cfg.model
    if om.coord_bins != nm.coord_bins:
        raise ValueError(f"model.coord_bins differs ({om.coord_bins} -> {nm.coord_bins}): the "
                         f"vocabularies would not line up")
    if om.image_channels != nm.image_channels:
        raise ValueError(f"model.image_channels differs ({om.image_channels} -> {nm.image_channels})")
    torch.manual_seed(new_cfg.training.seed)
    new_sd = {k: v.detach().clone() for k, v in build_model(new_cfg, dropout=0.0).state_dict().items()}
    lmap = layer_map(om.n_layers, nm.n_layers)
    inv = {j: i for i, j in lmap.items()}
    carried = resampled = 0
    counts = {"carried": 0, "partial": 0, "resampled": 0, "new": 0}
    notes = []
    for name, new in new_sd.items():
        m = _LAYER.match(name)
        if m:
            stack, j, rest = m.group(1), int(m.group(2)), m.group(3)
            if j not in inv:
                if identity_new_layers and rest in _RESIDUAL_OUT:
                    new.zero_()  # a fresh block starts as the identity (see the docstring)
                counts["new"] += 1
                continue
            old_name = f"{stack}.{inv[j]}.{rest}"
        else:
            rest, old_name = name, name
        old = old_sd.get(old_name)
        if old is None:
            counts["new"] += 1
            continue
        old = old.detach().float()
        if name.startswith("dense_head.") and om.patch_size // om.dense_cell != nm.patch_size // nm.dense_cell:
            # its outputs are cells of one patch: a different grid of cells means other outputs
            counts["new"] += 1
            notes.append(f"{name}: not carried ({om.patch_size // om.dense_cell}x{om.patch_size // om.dense_cell} "
                         f"-> {nm.patch_size // nm.dense_cell}x{nm.patch_size // nm.dense_cell} cells per patch; "
                         f"a training-only head, fresh init)")
            continue
        if name == "patch_emb.weight" and om.patch_size != nm.patch_size:
            old = resample_patch_kernel(old, om.image_channels, om.patch_size, nm.patch_size)
            resampled += _carry(old, new, ("plain", "plain"), om.n_heads, nm.n_heads)
            counts["resampled"] += 1
            notes.append(f"patch_emb.weight: kernel resampled {om.patch_size}px -> {nm.patch_size}px")
            continue
        if name in ("vis_row", "vis_col"):
            n_new = new.shape[0]
            if old.shape[0] != n_new:
                resampled += _carry(_interp_rows(old, n_new), new, ("plain", "plain"), 1, 1)
                counts["resampled"] += 1
                notes.append(f"{name}: interpolated {old.shape[0]} -> {n_new} positions")
                continue
        kinds = _HEAD_DIMS.get(rest, ("plain",) * new.dim())
        n = _carry(old, new, kinds, om.n_heads, nm.n_heads)
        carried += n
        counts["carried" if n == new.numel() else "partial"] += 1
    total = sum(v.numel() for v in new_sd.values())
    report = {
        "from_phase": old_cfg.phase, "to_phase": new_cfg.phase,
        "carried": carried, "resampled": resampled, "total": total,
        "old_total": sum(v.numel() for v in old_sd.values()),
        "carried_fraction": round((carried + resampled) / total, 4),
        "layer_map": {"vis_blocks": lmap, "spec_blocks": lmap, "dec_blocks": lmap},
        "identity_new_layers": identity_new_layers,
        "tensors": counts,
        "notes": notes,
    }
    return new_sd, report


def upgrade_artifact(model_dir: str | Path, to_phase: str, out_dir: str | Path) -> dict:
    """Grow the artifact in `model_dir` into `to_phase` and export it to `out_dir`.

    Returns {"out", "old_phase", "new_phase", "report"}; a phase that is not later than the
    model's is a ConfigError naming `--to`."""
    from layoutray.config import ConfigError
    from layoutray.model.artifact import export_artifact, read_artifact

    old_sd, old_cfg, meta = read_artifact(model_dir)
    if to_phase not in PHASES or PHASES.index(to_phase) <= PHASES.index(old_cfg.phase):
        later = ", ".join(PHASES[PHASES.index(old_cfg.phase) + 1:]) or "none left"
        raise ConfigError("--to", f"{to_phase}: the model is {old_cfg.phase}; upgrade grows a model into a "
                                  f"later phase ({later})")
    new_cfg = load_config(phase=to_phase)
    new_sd, report = upgrade_state_dict(old_sd, old_cfg, new_cfg)
    out = export_artifact(new_sd, new_cfg, out_dir, metadata={
        "upgraded_from": str(Path(model_dir).resolve()), "upgraded_from_phase": old_cfg.phase,
        "source_metadata": meta.get("metadata", {}), "upgrade_report": report})
    return {"out": out, "old_phase": old_cfg.phase, "new_phase": new_cfg.phase, "report": report}
