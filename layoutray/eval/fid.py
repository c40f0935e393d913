"""Layout FID: the Frechet distance between Gaussian fits of layout features, as LayoutGAN++
defines it for layouts (Kikuchi et al., ACM MM 2021, section 5.1; const_layout `LayoutFID`),
with a small feature network trained on this project's layouts and shipped beside this module
(`assets/layout_fid.safetensors`).

FID on images uses an ImageNet classifier; layouts have no such standard network, so each
project trains its own, and scores are comparable only between runs that use the same weights.
The network reads a layout as a SET of elements (type embedding + a linear map of the box and
sinusoidal codes of its edges and centres; no positional encoding: element order does not change
the feature), runs a small transformer encoder with a learned summary token, and takes that
token's output as the layout's feature (LayoutGAN++'s `TransformerWithToken`; it also gives
empty layouts a feature). How it is trained: `layoutray.eval.fid_train`.

Weights are read with safetensors only (never pickle), and the file records the element
vocabulary it was trained with: a network trained on other types would map them wrongly.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from layoutray.data.vocab import ELEMENT_TYPES
from layoutray.model.tokenizer import Box

WEIGHTS = Path(__file__).resolve().parent / "assets" / "layout_fid.safetensors"


@dataclass(frozen=True)
class FeatureNetConfig:
    d_model: int = 64  # also the feature size
    n_heads: int = 4
    n_layers: int = 2
    ff: int = 128
    n_freqs: int = 8  # sinusoidal frequencies per box line: pi * 2^k, k < n_freqs


class LayoutFeatureNet(nn.Module):
    """Layouts -> [B, d_model] features (see the module docstring)."""

    def __init__(self, cfg: FeatureNetConfig = FeatureNetConfig(), element_types: Sequence[str] = ELEMENT_TYPES):
        super().__init__()
        self.cfg, self.element_types = cfg, tuple(element_types)
        self.type_index = {t: i for i, t in enumerate(self.element_types)}
        self.type_emb = nn.Embedding(len(self.element_types), cfg.d_model)
        self.box_proj = nn.Linear(4 + 6 * 2 * cfg.n_freqs, cfg.d_model)
        self.register_buffer("freqs", math.pi * 2.0 ** torch.arange(cfg.n_freqs, dtype=torch.float32),
                             persistent=False)
        self.token = nn.Parameter(torch.randn(1, 1, cfg.d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, cfg.ff, dropout=0.0, batch_first=True)
        # No nested tensors: the same code path for every batch, padded or not.
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)

    def box_features(self, boxes: torch.Tensor) -> torch.Tensor:
        """[..., 4] (x, y, w, h) -> the box as it is plus sin/cos of its six alignment lines (left,
        centre, right, top, middle, bottom) at `n_freqs` frequencies.

        Why: attention compares elements by dot products, and a dot product of sinusoidal codes
        is a sum of cos(f * (a - b)), sharp around a == b. With the bare four numbers the encoder
        could not tell aligned layouts from jittered ones within a few thousand steps (the
        real/noised task stayed at chance); with these codes it learns it in a few hundred."""
        x, y, w, h = boxes.unbind(-1)
        lines = torch.stack([x, x + w / 2, x + w, y, y + h / 2, y + h], dim=-1)
        angles = (lines[..., None] * self.freqs).flatten(-2)
        return torch.cat([boxes, angles.sin(), angles.cos()], dim=-1)

    def forward(self, types: torch.Tensor, boxes: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """types [B, N] ids, boxes [B, N, 4] (x, y, w, h), pad [B, N] True at padding -> [B, d]."""
        x = self.type_emb(types) + self.box_proj(self.box_features(boxes))
        b = x.shape[0]
        x = torch.cat([self.token.expand(b, -1, -1), x], dim=1)
        pad = torch.cat([torch.zeros(b, 1, dtype=torch.bool, device=pad.device), pad], dim=1)
        return self.encoder(x, src_key_padding_mask=pad)[:, 0]

    def tensors(self, layouts: Sequence[Sequence[Box]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(types, boxes, pad) of a batch of layouts, padded to the longest."""
        n = max((len(l) for l in layouts), default=0)
        types = np.zeros((len(layouts), n), dtype=np.int64)
        boxes = np.zeros((len(layouts), n, 4), dtype=np.float32)
        pad = np.ones((len(layouts), n), dtype=bool)
        for i, layout in enumerate(layouts):
            for j, b in enumerate(layout):
                types[i, j] = self.type_index[b.type]
                boxes[i, j] = (b.x, b.y, b.w, b.h)
                pad[i, j] = False
        types, boxes, pad = torch.from_numpy(types), torch.from_numpy(boxes), torch.from_numpy(pad)
        return types, boxes, pad


def save_feature_net(net: LayoutFeatureNet, path: str | Path, recipe: dict | None = None) -> None:
    """Write the network as safetensors, its config and vocabulary (and how it was trained) in
    the file's metadata."""
    from safetensors.torch import save_file

    meta = {"config": json.dumps(asdict(net.cfg)), "element_types": json.dumps(list(net.element_types)),
            "recipe": json.dumps(recipe or {})}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in net.state_dict().items()}, str(path), metadata=meta)
    Path(path).chmod(0o644)  # safetensors writes 0600; the shipped file must be readable by any user


def load_feature_net(path: str | Path = WEIGHTS) -> LayoutFeatureNet:
    """The network saved at `path` (default: the shipped weights), in eval mode and frozen.
    Raises ValueError when the file was trained on another element vocabulary."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    types = tuple(json.loads(meta.get("element_types", "[]")))
    if types != ELEMENT_TYPES:
        raise ValueError(f"{path}: FID network trained on element types {list(types)}, "
                         f"but this project's are {list(ELEMENT_TYPES)}; retrain it (layoutray.eval.fid_train)")
    net = LayoutFeatureNet(FeatureNetConfig(**json.loads(meta["config"])), types)
    net.load_state_dict(state, strict=True)
    net.eval().requires_grad_(False)
    return net


def recipe(path: str | Path = WEIGHTS) -> dict:
    """How the network at `path` was trained (the metadata `fid_train` wrote)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return json.loads((f.metadata() or {}).get("recipe", "{}"))


@functools.lru_cache(maxsize=4)
def _cached(path: str) -> LayoutFeatureNet:
    return load_feature_net(path)


def shipped_net() -> LayoutFeatureNet:
    """The shipped network, loaded once per process."""
    return _cached(str(WEIGHTS))


@torch.no_grad()
def layout_features(layouts: Sequence[Sequence[Box]], net: LayoutFeatureNet | None = None,
                    batch_size: int = 256) -> np.ndarray:
    """[len(layouts), d] float64 features, computed on the CPU in batches.

    Batches take the layouts shortest first, so that a batch pads to lengths it nearly has
    (a 48-element layout would otherwise pad 255 short ones to 48); rows return in input order."""
    net = net or shipped_net()
    order = sorted(range(len(layouts)), key=lambda i: len(layouts[i]))  # stable: deterministic
    out = np.zeros((len(layouts), net.cfg.d_model))
    with _one_thread():
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            out[idx] = net(*net.tensors([layouts[i] for i in idx])).double().numpy()
    return out


@contextlib.contextmanager
def _one_thread():
    """torch on one CPU thread for the duration. The network's ops are so small that splitting
    them across threads costs more than it saves: 800 layouts took 0.18 s on one thread and
    2.8 s on two on a busy 2-core machine. Restored afterwards, since the setting is global."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2)): the Frechet (2-Wasserstein)
    distance between two Gaussians (Dowson and Landau 1982; as in pytorch-fid, which LayoutGAN++
    calls).

    sigma1 sigma2 has real non-negative eigenvalues in exact arithmetic (it is similar to
    sigma1^(1/2) sigma2 sigma1^(1/2)), but with singular covariances (fewer layouts than feature
    dimensions) scipy's sqrtm can return small imaginary parts or non-finite values. Like
    pytorch-fid we retry with a tiny ridge on both diagonals when the root is not finite; unlike
    it we keep the real part instead of raising, since the trace we need is real, and clamp the
    result at 0 (rounding can take it a hair below)."""
    import warnings

    from scipy.linalg import LinAlgWarning, sqrtm

    diff = mu1 - mu2
    with warnings.catch_warnings():
        # "Matrix is singular": expected whenever there are fewer layouts than dimensions, and
        # handled below.
        warnings.simplefilter("ignore", LinAlgWarning)
        covmean = sqrtm(sigma1 @ sigma2)
        if not np.isfinite(covmean).all():
            ridge = np.eye(sigma1.shape[0]) * 1e-6
            covmean = sqrtm((sigma1 + ridge) @ (sigma2 + ridge))
    tr_covmean = float(np.trace(covmean).real)
    d = float(diff @ diff) + float(np.trace(sigma1)) + float(np.trace(sigma2)) - 2.0 * tr_covmean
    return max(d, 0.0)


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, unbiased covariance) of [n, d] features, n >= 2."""
    return features.mean(axis=0), np.atleast_2d(np.cov(features, rowvar=False))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float | None:
    """Frechet distance of the Gaussian fits of two feature sets; None when either has fewer than
    2 rows (a covariance needs two)."""
    if len(real) < 2 or len(fake) < 2:
        return None
    value = frechet_distance(*gaussian_fit(real), *gaussian_fit(fake))
    return value if math.isfinite(value) else None


def fid(real: Sequence[Sequence[Box]], fake: Sequence[Sequence[Box]], net: LayoutFeatureNet | None = None
        ) -> float | None:
    """Layout FID of `fake` layouts against `real` ones with the shipped network (or `net`):
    0 for identical sets, growing as the fake set's features drift from the real set's. Lower is
    better. Like image FID it is biased upwards for small sets: compare values over sets of the
    same size. None when either set has fewer than 2 layouts."""
    return fid_from_features(layout_features(real, net), layout_features(fake, net))
