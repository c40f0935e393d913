"""The Section Layout Generator, top to bottom.

    image [B, C, H, W] --patches--> ViT encoder ----------> vision tokens [B, P, D] (+ modality 0)
    spec  [B, S]       --embed----> structure encoder ----> spec tokens   [B, S, D] (+ modality 1)
                                    memory = concat(vision, spec)  [B, M = P + S, D], key mask [B, M]
    tokens_in [B, T]   --embed----> decoder (causal self-attn + cross-attn to memory) -> logits [B, T, V]

With model.decoder = "diffusion" the decoder is layoutray.model.diffusion's bidirectional denoiser
instead (parameters `diffusion.*`, no `dec_*`): tokens_in is then a noisy canvas [B, 5 E] and the
logits predict its masked places; the encoders, the memory and the tied head are the same.

Shapes: B batch, C image channels, H/W image size, P = (H/p)(W/p) patches, S spec tokens,
M memory tokens, T layout tokens, D = cfg.d_model, Hh heads, hd = D / Hh head size, V vocab.

Inputs, as the training loop builds them (all padded with PAD = 0 on the right):
    image      float32 [B, C, H, W]   ink = 1, paper = 0 (layoutray.imaging.to_model_array)
    has_image  bool    [B]            False: the vision tokens are masked out of the memory
    spec       int64   [B, S]         tokenizer.encode_spec(...) -> [NULL] when there is no spec
    tokens_in  int64   [B, T]         layout ids without the last token (BOS type x y w h ...)
    targets    int64   [B, T]         layout ids without BOS (PAD is ignored by `loss`)

Design choices, and why:
- Own small pre-norm blocks instead of nn.Transformer, so the KV cache is explicit and every
  attention goes through F.scaled_dot_product_attention (the fused kernel).
- No attention-probability dropout: it forces SDPA off its fused CPU path. Dropout is applied to
  embeddings and to each residual branch instead (`set_dropout` changes it live).
- One token embedding is shared by the spec encoder, the decoder input and the output head
  (tied weights): spec and layout use the same vocabulary, and there is no duplicate tensor to
  special-case in safetensors or ZeRO.
- The patch embedding is a Linear over flattened patches (one GEMM, same layout as a conv weight
  [D, C, p, p] flattened), so layoutray.model.upgrade can resample it as a kernel.
- Every stack has cfg.n_layers blocks (vision, structure, decoder), as the phase table of the growth plan has it.
- Vision positions start as 2-D sin-cos features (columns in the first half of the channels, rows
  in the second, as MAE) at an amplitude near a patch's content embedding, and stay learnable.
  At the usual 0.02 init a patch with ink is all content after LayerNorm, so the decoder cannot
  tell *where* the ink is; with this init a one-box probe leaves the "ignore the image" plateau
  sooner, and after 20 epochs image-only validation loss is 0.13 lower (docs/quality.md).
- Dense head (cfg.dense_cell > 0, training only): each vision token also predicts, for every
  dense_cell x dense_cell pixel cell of its patch, the type of the element covering the cell and
  that element's box. The decoder's loss reaches the vision encoder only through cross-attention,
  one token at a time; this gives every patch a direct target from the first step, so the encoder
  learns where the boxes are sooner (docs/quality.md). Generation never runs it.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from layoutray.config import ModelConfig, RunConfig
from layoutray.model.tokenizer import PAD, LayoutTokenizer

# ---------------------------------------------------------------------------- building blocks

POS_AMPLITUDE = 0.3  # vision position init: comparable to the patch embedding of a patch with ink


def fourier_features(u: torch.Tensor, dim: int) -> torch.Tensor:
    """u [N] in [0, 1] -> [N, dim]: sin and cos at dim/2 frequencies from pi to 64 pi (geometric)."""
    k = torch.arange(dim // 2, dtype=torch.float32, device=u.device)
    angles = u[:, None] * (math.pi * 2.0 ** (k * 6 / (dim // 2)))[None]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


class MLP(nn.Module):
    def __init__(self, d: int, ff_mult: int):
        super().__init__()
        self.fc1 = nn.Linear(d, ff_mult * d)
        self.fc2 = nn.Linear(ff_mult * d, d)

    def forward(self, x):  # [B, N, D] -> [B, N, D]
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class Dropout(nn.Dropout):
    """nn.Dropout with a faster mask on CPU, where F.dropout's bernoulli_ draws one random number
    per element and took 15% of a Phase 1 training step (bench/train_throughput.py profile).
    Here one 64-bit draw gives 8 random bytes, and an element is dropped when its byte is below
    round(256 p): the rate is p to within 1/512 (0.3 -> 77/256 = 0.3008) and the kept values are
    scaled by exactly 1 / (1 - that rate). 7-8x faster than F.dropout on a [16, 74, 128] tensor.
    Elsewhere (CUDA has a fused kernel) it is plain F.dropout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        drop = round(self.p * 256)
        if x.device.type != "cpu" or self.inplace or not 0 < drop < 256:
            return F.dropout(x, self.p, True, self.inplace)
        n = x.numel()
        rand = torch.empty((n + 7) // 8, dtype=torch.int64).random_(-2**63, 2**63 - 1)
        keep = rand.view(torch.uint8)[:n].view(x.shape) >= drop
        return x * keep * (256.0 / (256 - drop))


def _heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[B, N, D] -> [B, Hh, N, hd]"""
    B, N, D = x.shape
    return x.view(B, N, n_heads, D // n_heads).transpose(1, 2)


def _merge(y: torch.Tensor) -> torch.Tensor:
    """[B, Hh, N, hd] -> [B, N, D]"""
    B, H, N, hd = y.shape
    return y.transpose(1, 2).reshape(B, N, H * hd)


class SelfAttention(nn.Module):
    """Multi-head self-attention with a fused QKV projection (rows: all q, then all k, then all v)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x, key_mask=None, causal=False):
        # x [B, N, D]; key_mask bool [B, 1, 1, N] (True = attend) or None
        q, k, v = (_heads(t, self.n_heads) for t in self.qkv(x).chunk(3, dim=-1))  # [B, Hh, N, hd]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=causal)
        return self.proj(_merge(y))  # [B, N, D]


class CrossAttention(nn.Module):
    """Queries from the decoder, keys/values from the fused memory (computed once per generation)."""

    def __init__(self, d: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def memory_kv(self, memory):  # [B, M, D] -> 2 x [B, Hh, M, hd]
        k, v = self.kv(memory).chunk(2, dim=-1)
        return _heads(k, self.n_heads), _heads(v, self.n_heads)

    def forward(self, x, k, v, mem_mask=None):  # x [B, T, D]; k, v [B, Hh, M, hd]
        q = _heads(self.q(x), self.n_heads)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mem_mask)
        return self.proj(_merge(y))


class EncoderBlock(nn.Module):
    def __init__(self, cfg: ModelConfig, dropout: float):
        super().__init__()
        d = cfg.d_model
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.n_heads)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.ff_mult)
        self.drop = Dropout(dropout)

    def forward(self, x, key_mask=None):  # [B, N, D] -> [B, N, D]
        x = x + self.drop(self.attn(self.ln1(x), key_mask=key_mask))
        return x + self.drop(self.mlp(self.ln2(x)))


class DecoderBlock(nn.Module):
    """Pre-norm block: self-attention (causal for the AR decoder; bidirectional for the diffusion
    denoiser, layoutray/model/diffusion.py), cross-attention to the memory, MLP."""

    def __init__(self, cfg: ModelConfig, dropout: float, causal: bool = True):
        super().__init__()
        self.causal = causal
        d = cfg.d_model
        self.ln1 = nn.LayerNorm(d)
        self.attn = SelfAttention(d, cfg.n_heads)
        self.ln2 = nn.LayerNorm(d)
        self.cross = CrossAttention(d, cfg.n_heads)
        self.ln3 = nn.LayerNorm(d)
        self.mlp = MLP(d, cfg.ff_mult)
        self.drop = Dropout(dropout)

    def forward(self, x, k_mem, v_mem, mem_mask=None, self_mask=None):  # x [B, T, D] -> [B, T, D]
        # self_mask bool [B, 1, 1, T] (True = attend): the denoiser's live places; None: all
        x = x + self.drop(self.attn(self.ln1(x), key_mask=self_mask, causal=self.causal))
        x = x + self.drop(self.cross(self.ln2(x), k_mem, v_mem, mem_mask))
        return x + self.drop(self.mlp(self.ln3(x)))

    def step_weights(self) -> tuple:
        """This block's parameters as a plain tuple, gathered once per generation: a step reads
        ~20 of them, and nn.Module attribute lookups cost more than the tiny matmuls at batch 1.
        Weights come transposed ([in, out] views, no copy) for torch.addmm."""
        return (self.ln1.weight, self.ln1.bias, self.attn.qkv.weight.t(), self.attn.qkv.bias,
                self.attn.proj.weight.t(), self.attn.proj.bias, self.ln2.weight, self.ln2.bias,
                self.cross.q.weight.t(), self.cross.q.bias, self.cross.proj.weight.t(),
                self.cross.proj.bias, self.ln3.weight, self.ln3.bias, self.mlp.fc1.weight.t(),
                self.mlp.fc1.bias, self.mlp.fc2.weight.t(), self.mlp.fc2.bias)


def decoder_block_step(x, w: tuple, kv, cross_k, cross_v, mem_mask, t: int, n_heads: int,
                       eps: float = 1e-5):
    """DecoderBlock.forward for one new token at position t, with the KV cache (no dropout).

    x [B, D] (the one new position); w = DecoderBlock.step_weights(); kv [B, 2, Hh, T_max, hd]
    this layer's self-attention buffer (keys, values), written at t. Plain torch calls on plain
    tensors in 2-D: at batch 1 a step costs per-call overhead more than arithmetic, and this path
    is all that generation latency is made of. Tested equal to `forward` (KV cache vs full
    recomputation in tests/layoutray/test_generate.py).
    """
    (ln1_w, ln1_b, qkv_wt, qkv_b, proj_wt, proj_b, ln2_w, ln2_b, q_wt, q_b, cproj_wt, cproj_b,
     ln3_w, ln3_b, fc1_wt, fc1_b, fc2_wt, fc2_b) = w
    B, D = x.shape
    hd = D // n_heads
    # causal self-attention: append this token's k, v; its one query may see every past key
    h = F.layer_norm(x, (D,), ln1_w, ln1_b, eps)
    qkv = torch.addmm(qkv_b, h, qkv_wt).view(B, 3, n_heads, 1, hd)  # [B, 3, Hh, 1, hd]
    # (narrow/select rather than x[:, :, t] indexing: same views, a fraction of the Python cost)
    kv.narrow(3, t, 1).copy_(qkv.narrow(1, 1, 2))
    past = kv.narrow(3, 0, t + 1)  # [B, 2, Hh, t+1, hd]
    y = F.scaled_dot_product_attention(qkv.select(1, 0), past.select(1, 0), past.select(1, 1))
    x = torch.addmm(proj_b, y.view(B, D), proj_wt).add_(x)  # (one position: [B, Hh, 1, hd] is [B, D])
    # cross-attention to the memory (keys/values computed once, in the cache)
    h = F.layer_norm(x, (D,), ln2_w, ln2_b, eps)
    q = torch.addmm(q_b, h, q_wt).view(B, n_heads, 1, hd)
    y = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=mem_mask)
    x = torch.addmm(cproj_b, y.view(B, D), cproj_wt).add_(x)
    # MLP
    h = F.gelu(torch.addmm(fc1_b, F.layer_norm(x, (D,), ln3_w, ln3_b, eps), fc1_wt), approximate="tanh")
    return torch.addmm(fc2_b, h, fc2_wt).add_(x)


def denoiser_block_pass(x, w: tuple, self_mask, cross_k, cross_v, mem_mask, n_heads: int,
                        eps: float = 1e-5):
    """DecoderBlock.forward of a bidirectional block (the diffusion denoiser's) at inference, as
    decoder_block_step is the AR one's: plain torch calls on the weights of step_weights(), the
    positions flattened to 2-D for the matmuls. A sampling step is this path, and at a few dozen
    positions per call its cost is per-call overhead more than arithmetic. Tested equal to
    `forward` (tests/layoutray/model/test_diffusion.py).

    x [B, L, D]; self_mask bool [B, 1, 1, L] (True = attend) or None; cross_k, cross_v
    [B, Hh, M, hd] the memory's keys and values (computed once per generation)."""
    (ln1_w, ln1_b, qkv_wt, qkv_b, proj_wt, proj_b, ln2_w, ln2_b, q_wt, q_b, cproj_wt, cproj_b,
     ln3_w, ln3_b, fc1_wt, fc1_b, fc2_wt, fc2_b) = w
    B, L, D = x.shape
    hd = D // n_heads
    x = x.reshape(B * L, D)
    h = F.layer_norm(x, (D,), ln1_w, ln1_b, eps)
    qkv = torch.addmm(qkv_b, h, qkv_wt).view(B, L, 3, n_heads, hd).permute(2, 0, 3, 1, 4)  # [3, B, Hh, L, hd]
    y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=self_mask)
    x = torch.addmm(proj_b, y.transpose(1, 2).reshape(B * L, D), proj_wt).add_(x)
    h = F.layer_norm(x, (D,), ln2_w, ln2_b, eps)
    q = torch.addmm(q_b, h, q_wt).view(B, L, n_heads, hd).transpose(1, 2)  # [B, Hh, L, hd]
    y = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=mem_mask)
    x = torch.addmm(cproj_b, y.transpose(1, 2).reshape(B * L, D), cproj_wt).add_(x)
    h = F.gelu(torch.addmm(fc1_b, F.layer_norm(x, (D,), ln3_w, ln3_b, eps), fc1_wt), approximate="tanh")
    return torch.addmm(fc2_b, h, fc2_wt).add_(x).view(B, L, D)


@contextmanager
def eval_mode(model: nn.Module):
    """The model in eval mode inside, as it was after. A model already in eval mode (a served one
    always is) is left alone: switching walks every module twice, ~2 ms of a 25 ms request."""
    if not model.training:
        yield model
        return
    model.eval()
    try:
        yield model
    finally:
        model.train()


@dataclass
class KVCache:
    """Decoder state during generation. Self-attention buffers grow by one position per step;
    cross-attention keys/values are computed from the memory once."""

    kv: list[torch.Tensor]  # per layer [B, 2, Hh, T_max, hd]: self-attention keys and values
    cross_k: list[torch.Tensor]  # per layer [B, Hh, M, hd]
    cross_v: list[torch.Tensor]
    mem_mask: torch.Tensor | None  # [B, 1, 1, M] bool or None (all valid)
    weights: list[tuple]  # per layer DecoderBlock.step_weights()
    pos: int = 0  # tokens already written

    def select(self, rows: torch.Tensor) -> "KVCache":
        """Keep only `rows` (finished sequences drop out of the batch)."""
        pick = lambda ts: [t.index_select(0, rows) for t in ts]  # noqa: E731
        mask = None if self.mem_mask is None else self.mem_mask.index_select(0, rows)
        return KVCache(pick(self.kv), pick(self.cross_k), pick(self.cross_v), mask, self.weights,
                       self.pos)


class ConvStem(nn.Module):
    """[B, C, H, W] -> [B, c, H/4, W/4]: two stride-2 3x3 convolutions. A wireframe's boxes are
    edges and corners; a linear patch embedding must learn them from raw pixels through one GEMM,
    while two small convolutions see them directly (ViTC, Xiao et al. 2021: a conv stem makes
    ViTs train faster and less sensitive to the optimiser)."""

    STRIDE = 4

    def __init__(self, in_ch: int, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, ch, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, stride=2, padding=1)

    def forward(self, x):
        return F.gelu(self.conv2(F.gelu(self.conv1(x))))


# ---------------------------------------------------------------------------- the model


class LayoutModel(nn.Module):
    def __init__(self, cfg: ModelConfig, vocab_size: int, dropout: float = 0.0):
        super().__init__()
        self.cfg, self.vocab_size = cfg, vocab_size
        d, p = cfg.d_model, cfg.patch_size
        self.grid = (cfg.image_height // p, cfg.image_width // p)  # (rows, cols) of patches

        # shared token embedding: spec encoder input, decoder input, output head (tied)
        self.tok_emb = nn.Embedding(vocab_size, d)

        # vision encoder: (optional conv stem) -> patches -> Linear, factorised 2-D positions
        self.stem = ConvStem(cfg.image_channels, cfg.conv_stem) if cfg.conv_stem else None
        stem_c, stem_p = (cfg.conv_stem, p // ConvStem.STRIDE) if cfg.conv_stem else (cfg.image_channels, p)
        self.patch_emb = nn.Linear(stem_c * stem_p * stem_p, d)
        self.vis_row = nn.Parameter(torch.zeros(self.grid[0], d))
        self.vis_col = nn.Parameter(torch.zeros(self.grid[1], d))
        self.vis_blocks = nn.ModuleList(EncoderBlock(cfg, dropout) for _ in range(cfg.n_layers))
        self.vis_ln = nn.LayerNorm(d)

        # structure encoder: spec tokens (sorted multiset; positions let it count duplicates)
        self.spec_pos = nn.Parameter(torch.zeros(cfg.max_spec_len, d))
        self.spec_blocks = nn.ModuleList(EncoderBlock(cfg, dropout) for _ in range(cfg.n_layers))
        self.spec_ln = nn.LayerNorm(d)

        # token fusion: which modality a memory token comes from (0 vision, 1 spec)
        self.modality = nn.Parameter(torch.zeros(2, d))

        # layout decoder: autoregressive (dec_*), or the diffusion denoiser (diffusion.*) instead
        self.diffusion = None
        if cfg.decoder == "diffusion":
            from layoutray.model.diffusion import DiffusionDecoder  # (it imports this module's blocks)
            self.diffusion = DiffusionDecoder(cfg, dropout)
        else:
            self.dec_pos = nn.Parameter(torch.zeros(cfg.max_seq_len, d))
            self.dec_blocks = nn.ModuleList(DecoderBlock(cfg, dropout) for _ in range(cfg.n_layers))
            self.dec_ln = nn.LayerNorm(d)

        # dense head (training only): per cell of a patch, element type (+ "none") and box
        self.dense_cells = p // cfg.dense_cell if cfg.dense_cell else 0  # cells per patch side
        if self.dense_cells:
            n_types = len(LayoutTokenizer(bins=cfg.coord_bins).element_types)
            self.dense_head = nn.Linear(d, self.dense_cells ** 2 * (n_types + 1 + 4))

        self.drop = Dropout(dropout)
        self.activation_checkpointing = False  # training.activation_checkpointing; see run_block
        self.apply(self._init_weights)
        # GPT-2: scale the residual-branch outputs so the stream's variance does not grow with depth
        for name, param in self.named_parameters():
            if name.endswith(("proj.weight", "fc2.weight")):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * cfg.n_layers))

    def run_block(self, blk: nn.Module, x, *args):
        """blk(x, *args); with activation checkpointing on (training with gradients), only the
        block's inputs are kept and its activations are recomputed in the backward pass.
        Non-reentrant: it works with inputs that need no gradient and under ZeRO-3's parameter
        hooks, and it restores the RNG state so recomputed dropout masks match."""
        if self.activation_checkpointing and self.training and torch.is_grad_enabled():
            from torch.utils.checkpoint import checkpoint
            return checkpoint(blk, x, *args, use_reentrant=False)
        return blk(x, *args)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)
        elif isinstance(m, LayoutModel):
            for prm in (m.spec_pos, m.modality) + (() if m.diffusion is not None else (m.dec_pos,)):
                nn.init.normal_(prm, std=0.02)
            with torch.no_grad():  # vision positions: see "Design choices" above
                (gh, gw), half = m.grid, m.cfg.d_model // 2
                centres = lambda n: (torch.arange(n, device=m.vis_col.device) + 0.5) / n  # noqa: E731
                m.vis_col.zero_()[:, :half] = POS_AMPLITUDE * fourier_features(centres(gw), half)
                m.vis_row.zero_()[:, half:] = POS_AMPLITUDE * fourier_features(centres(gh), half)

    # --- encoders -------------------------------------------------------------------------

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """[B, C, H, W] -> vision tokens [B, P, D]"""
        p, (gh, gw) = self.cfg.patch_size, self.grid
        # Images arrive as float32; under bf16 (DeepSpeed on the GPU phases) the weights are not.
        image = image.to(self.patch_emb.weight.dtype)
        if self.stem is not None:
            image, p = self.stem(image), p // ConvStem.STRIDE  # [B, c, H/4, W/4]
        B, C = image.shape[:2]
        x = image.reshape(B, C, gh, p, gw, p).permute(0, 2, 4, 1, 3, 5).reshape(B, gh * gw, C * p * p)
        x = self.patch_emb(x)  # [B, P, D]
        pos = (self.vis_row[:, None, :] + self.vis_col[None, :, :]).reshape(gh * gw, -1)  # [P, D]
        x = self.drop(x + pos)
        for blk in self.vis_blocks:
            x = self.run_block(blk, x)
        return self.vis_ln(x)

    def encode_spec(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[B, S] -> (spec tokens [B, S, D], valid [B, S] bool or None when nothing is padded)"""
        S = spec.shape[1]
        valid = spec != PAD
        valid[:, 0] = True  # a spec is at least [NULL]; never let a row have no valid key
        if bool(valid.all()):
            valid = None
        key_mask = None if valid is None else valid[:, None, None, :]  # [B, 1, 1, S]
        x = self.drop(self.tok_emb(spec) + self.spec_pos[:S])
        for blk in self.spec_blocks:
            x = self.run_block(blk, x, key_mask)
        return self.spec_ln(x), valid

    def encode(self, image: torch.Tensor | None, has_image: torch.Tensor, spec: torch.Tensor):
        """Fused memory [B, M, D] and its key mask [B, 1, 1, M] (True = attend; None = all valid)."""
        memory, mask, _ = self._encode(image, has_image, spec)
        return memory, mask

    def _encode(self, image, has_image, spec):
        """encode(), plus the vision tokens [B, P, D] (zero rows where there is no image; None
        when the vision encoder did not run).

        The vision encoder runs only on rows that have an image (spec-only rows cost nothing
        there); their vision slots are zero and masked. In training it always runs, on the whole
        batch when no row has an image, so every rank calls the same modules in the same order
        (ZeRO-3 gathers parameters per module call; a rank skipping one would hang the others).
        At inference a batch without images leaves the vision tokens out of the memory entirely.
        """
        s, s_valid = self.encode_spec(spec)
        s = s + self.modality[1]
        B = spec.shape[0]
        has_image = has_image.to(torch.bool)
        n_img = int(has_image.sum())
        if n_img == 0 and not self.training:
            mask = None if s_valid is None else s_valid[:, None, None, :]
            return s, mask, None
        if n_img == B:
            v = self.encode_image(image)
        elif n_img == 0:  # training, no image in the batch: keep the module call, mask it all
            v = self.encode_image(image)
        else:
            rows = has_image.nonzero().squeeze(1)
            v_rows = self.encode_image(image.index_select(0, rows))
            v = v_rows.new_zeros(B, v_rows.shape[1], v_rows.shape[2]).index_copy(0, rows, v_rows)
        memory = torch.cat([v + self.modality[0], s], dim=1)  # [B, P + S, D]
        if n_img == B and s_valid is None:
            return memory, None, v
        s_valid = s_valid if s_valid is not None else torch.ones(B, s.shape[1], dtype=torch.bool,
                                                                 device=s.device)
        valid = torch.cat([has_image[:, None].expand(B, v.shape[1]), s_valid], dim=1)  # [B, M]
        return memory, valid[:, None, None, :], v

    # --- decoder --------------------------------------------------------------------------

    def decode(self, tokens: torch.Tensor, memory: torch.Tensor, mem_mask=None) -> torch.Tensor:
        """Teacher-forced decoder pass: tokens [B, T] -> logits [B, T, V]"""
        T = tokens.shape[1]
        x = self.drop(self.tok_emb(tokens) + self.dec_pos[:T])
        for blk in self.dec_blocks:
            k, v = blk.cross.memory_kv(memory)
            x = self.run_block(blk, x, k, v, mem_mask)
        return F.linear(self.dec_ln(x), self.tok_emb.weight)  # tied head

    def forward(self, image, has_image, spec, tokens_in, dense: bool = False):
        """logits [B, T, V]; with dense=True (training), (logits, dense logits [B, Gh, Gw, K + 5])
        where Gh x Gw is the grid of dense cells and K the number of element types."""
        memory, mem_mask, vis = self._encode(image, has_image, spec)
        if self.diffusion is not None:  # tokens_in: the noisy canvas [B, 5E] (layoutray.model.diffusion)
            from layoutray.model.diffusion import typed_rows
            typed = typed_rows(spec, self.cfg.coord_bins)
            logits = self.diffusion(tokens_in, memory, mem_mask, self.tok_emb, self.run_block, typed=typed)
        else:
            logits = self.decode(tokens_in, memory, mem_mask)  # [B, T, V]
        if not dense:
            return logits
        if not self.dense_cells:
            raise ValueError("dense=True needs a model built with model.dense_cell > 0")
        if vis is None:  # (eval without images) every row is masked out of the dense loss anyway
            vis = memory.new_zeros(memory.shape[0], self.grid[0] * self.grid[1], memory.shape[2])
        B, (gh, gw), c = vis.shape[0], self.grid, self.dense_cells
        out = self.dense_head(vis)  # [B, P, c*c*(K+5)]
        out = out.view(B, gh, gw, c, c, -1).permute(0, 1, 3, 2, 4, 5)  # [B, gh, c, gw, c, K+5]
        return logits, out.reshape(B, gh * c, gw * c, out.shape[-1])

    def dense_loss(self, dense: torch.Tensor, tokens: torch.Tensor, has_image: torch.Tensor) -> torch.Tensor:
        """Loss of the dense head on the rows with an image; tokens [B, T] the full layout (BOS ...).

        Each cell's target is the smallest element whose box holds the cell's centre: its type
        (cross entropy; "none" when no box does) and, on covered cells, its box (x0, y0, x1, y1)
        by L1 in tenths of the canvas, so that both terms start near the same size.
        """
        dense = dense.float()  # as in loss(): float32 under bf16 too
        cls, box, covered = dense_targets(tokens, dense.shape[1], dense.shape[2],
                                          LayoutTokenizer(bins=self.cfg.coord_bins))
        rows = has_image.to(torch.bool)[:, None, None].expand_as(cls)
        if not bool(rows.any()):  # keep the graph (every rank calls the same modules)
            return dense.sum() * 0.0
        ce = F.cross_entropy(dense[..., 4:][rows], cls[rows])
        on = covered & rows
        if not bool(on.any()):
            return ce
        return ce + 10.0 * F.l1_loss(torch.sigmoid(dense[..., :4][on]), box[on])

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0,
             coord_sigma: float = 0.0) -> torch.Tensor:
        """Mean token cross entropy over non-PAD targets. logits [B, T, V], targets [B, T].

        coord_sigma > 0: a coordinate target becomes a Gaussian over the neighbouring bins (std
        coord_sigma bins, cut at 3 std, renormalised at the canvas edges). Plain cross entropy
        charges a box edge one bin off as much as one across the canvas, so the model gets no
        signal that it is close; with the soft target it does, and learns positions sooner
        (docs/quality.md). Types, EOS and other tokens keep one-hot targets.
        """
        V = logits.shape[-1]
        # float32 whatever the model computes in: bf16 loses too much in log-softmax over V
        logits, targets = logits.reshape(-1, V).float(), targets.reshape(-1)
        if coord_sigma <= 0.0:
            return F.cross_entropy(logits, targets, ignore_index=PAD, label_smoothing=label_smoothing)
        keep = targets != PAD
        logp, t = F.log_softmax(logits[keep], dim=-1), targets[keep]  # [N, V], [N]
        nll = -logp.gather(1, t[:, None]).squeeze(1)  # [N]
        bins = self.cfg.coord_bins
        first = V - bins  # coordinate bins are the last ids of the vocabulary
        is_coord = t >= first
        if bool(is_coord.any()):
            k = max(1, math.ceil(3 * coord_sigma))
            offsets = torch.arange(-k, k + 1, device=t.device)  # [2k+1]
            near = (t[is_coord] - first)[:, None] + offsets[None]  # [Nc, 2k+1] neighbouring bins
            inside = (near >= 0) & (near < bins)
            w = torch.exp(-0.5 * (offsets.to(logp.dtype) / coord_sigma) ** 2)[None] * inside
            w = w / w.sum(dim=1, keepdim=True)
            lp_near = logp[is_coord].gather(1, near.clamp(0, bins - 1) + first)  # [Nc, 2k+1]
            nll = nll.masked_scatter(is_coord, -(w * lp_near).sum(dim=1))
        if label_smoothing > 0.0:  # as F.cross_entropy: mix with a uniform target over V
            nll = (1.0 - label_smoothing) * nll - label_smoothing * logp.mean(dim=1)
        return nll.mean()

    # --- generation support (see layoutray/generate.py) --------------------------------------

    def init_cache(self, memory: torch.Tensor, mem_mask, max_len: int) -> KVCache:
        B = memory.shape[0]
        H, hd = self.cfg.n_heads, self.cfg.d_model // self.cfg.n_heads
        cross = [blk.cross.memory_kv(memory) for blk in self.dec_blocks]
        return KVCache(kv=[memory.new_empty(B, 2, H, max_len, hd) for _ in self.dec_blocks],
                       cross_k=[kv[0] for kv in cross], cross_v=[kv[1] for kv in cross],
                       mem_mask=mem_mask, weights=[blk.step_weights() for blk in self.dec_blocks])

    def decode_step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens [B, 1] at position cache.pos -> next-token logits [B, V] (eval only)"""
        t, H, eps = cache.pos, self.cfg.n_heads, self.dec_ln.eps
        x = F.embedding(tokens[:, 0], self.tok_emb.weight) + self.dec_pos[t]  # [B, D]
        for i, w in enumerate(cache.weights):
            x = decoder_block_step(x, w, cache.kv[i], cache.cross_k[i], cache.cross_v[i],
                                   cache.mem_mask, t, H, eps)
        cache.pos = t + 1
        x = F.layer_norm(x, x.shape[-1:], self.dec_ln.weight, self.dec_ln.bias, eps)
        return x @ self.tok_emb.weight.t()  # tied head


def dense_targets(tokens: torch.Tensor, gh: int, gw: int, tok: LayoutTokenizer):
    """Per-cell targets of the dense head from layout tokens [B, T] (BOS type x y w h ... EOS PAD).

    Returns cls int64 [B, gh, gw] (element type index of the smallest box holding the cell's
    centre, K = len(tok.element_types) where none does), box float [B, gh, gw, 4] (that box's x0, y0, x1, y1 in
    [0, 1]) and covered bool [B, gh, gw].
    """
    B = tokens.shape[0]
    E = max(1, (tokens.shape[1] - 1) // 5)  # (at least one slot: a batch of empty layouts has none)
    el = tokens[:, 1:1 + 5 * E]
    el = F.pad(el, (0, 5 * E - el.shape[1]), value=PAD).reshape(B, E, 5)  # [B, E, (type, x, y, w, h)]
    n_types, bins, first_coord = len(tok.element_types), tok.bins, tok.coord_offset
    types = el[:, :, 0] - tok.type_offset
    valid = (types >= 0) & (types < n_types) & (el[:, :, 1:] >= first_coord).all(dim=2)  # [B, E]
    x0, y0, w, h = ((el[:, :, 1:] - first_coord).clamp(0, bins - 1).float() / (bins - 1)).unbind(-1)
    cy = ((torch.arange(gh, device=tokens.device) + 0.5) / gh)[None, None, :, None]
    cx = ((torch.arange(gw, device=tokens.device) + 0.5) / gw)[None, None, None, :]
    e = lambda t: t[:, :, None, None]  # noqa: E731  [B, E] -> [B, E, 1, 1]
    inside = (cx >= e(x0)) & (cx < e(x0 + w)) & (cy >= e(y0)) & (cy < e(y0 + h)) & e(valid)  # [B, E, gh, gw]
    area = torch.where(inside, e(w * h), torch.full_like(e(w), 2.0))  # > any box's area
    # min(dim).indices, not argmin: the same first-index ties, 6x faster over dim 1 on CPU.
    best = area.min(dim=1).indices.view(B, gh * gw)  # [B, gh*gw] element index per cell
    covered = inside.any(dim=1)  # [B, gh, gw]
    cls = types.clamp(0, n_types - 1).gather(1, best).view(B, gh, gw)
    cls = torch.where(covered, cls, torch.full_like(cls, n_types))
    boxes = torch.stack([x0, y0, x0 + w, y0 + h], dim=-1)  # [B, E, 4]
    box = boxes.gather(1, best[:, :, None].expand(-1, -1, 4)).view(B, gh, gw, 4)
    return cls, box, covered


# ---------------------------------------------------------------------------- helpers


def vocab_size_for(cfg: ModelConfig) -> int:
    return LayoutTokenizer(bins=cfg.coord_bins).vocab_size


def _model_cfg(cfg: RunConfig | ModelConfig) -> ModelConfig:
    return cfg.model if isinstance(cfg, RunConfig) else cfg


def build_model(cfg: RunConfig | ModelConfig, dropout: float | None = None) -> LayoutModel:
    """The model of a config, with its vocabulary; dropout defaults to training.dropout."""
    mcfg = _model_cfg(cfg)
    if dropout is None:
        dropout = cfg.training.dropout if isinstance(cfg, RunConfig) else 0.0
    return LayoutModel(mcfg, vocab_size_for(mcfg), dropout)


def count_parameters(cfg: RunConfig | ModelConfig) -> int:
    """Trainable parameters of a config's model, built on the meta device (no memory, ~ms)."""
    with torch.device("meta"):
        model = build_model(cfg, dropout=0.0)
    return sum(p.numel() for p in model.parameters())


def training_losses(model: LayoutModel, out, tokens: torch.Tensor, has_image: torch.Tensor,
                    training, targets: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """(objective to backpropagate, token loss, dense loss or None) of one training forward pass
    `out = model(image, has_image, spec, tokens[:, :-1], dense=training.dense_weight > 0)`;
    `training` is a config.TrainingConfig. The training loop and the benchmarks' bare loop both
    use it, so they optimise the same thing. `targets`: the diffusion decoder's (masked places of
    the canvas, diffusion.training_pair); None: the AR next tokens, tokens[:, 1:]."""
    logits = out[0] if training.dense_weight else out
    targets = tokens[:, 1:] if targets is None else targets
    loss = model.loss(logits, targets, training.label_smoothing, training.coord_sigma)
    if not training.dense_weight:
        return loss, loss, None
    dense = model.dense_loss(out[1], tokens, has_image)
    return loss + training.dense_weight * dense, loss, dense


def load_weights(model: LayoutModel, sd: dict[str, torch.Tensor]) -> list[str]:
    """model.load_state_dict(sd), except that the training-only dense head may be absent on either
    side (a model trained without one, given to a config with one: the head starts fresh; the
    other way round, it is dropped). Returns the dense-head keys so skipped."""
    missing, unexpected = model.load_state_dict(sd, strict=False)
    other = [k for k in missing + unexpected if not k.startswith("dense_head.")]
    if other:
        model.load_state_dict(sd)  # raises with torch's own message naming the keys
    return missing + unexpected


def set_dropout(model: nn.Module, p: float) -> None:
    """Change every dropout rate of a live model (a schedule calls this between steps)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = float(p)


def flops_per_example(cfg: RunConfig | ModelConfig, seq_len: int, spec_len: int = 1,
                      with_image: bool = True, training: bool = True,
                      vocab_size: int | None = None) -> int:
    """Exact matmul FLOPs (2 per multiply-add) of one example; not the 6*N*tokens estimate.

    Counts every GEMM (projections, MLPs, patch embedding, output head) and both attention
    matmuls (QK^T and AV) at full size, causal ones included, as PaLM's MFU convention does.
    Norms, softmax, GELU and embeddings lookups are left out (they are not matmul-unit work).
    training=True multiplies the forward count by 3 (backward = grads w.r.t. inputs and weights,
    2x forward). seq_len is T (decoder input tokens), spec_len is S.
    """
    c = _model_cfg(cfg)
    d, L, f = c.d_model, c.n_layers, c.ff_mult
    V = vocab_size or vocab_size_for(c)

    def enc_layer(n: int) -> int:  # self-attention block + MLP over n tokens
        return 2 * n * d * 3 * d + 2 * 2 * n * n * d + 2 * n * d * d + 2 * 2 * n * d * f * d

    P = (c.image_height // c.patch_size) * (c.image_width // c.patch_size) if with_image else 0
    M, T = P + spec_len, seq_len
    fwd = L * enc_layer(spec_len)
    if with_image:
        fwd += 2 * P * c.image_channels * c.patch_size ** 2 * d + L * enc_layer(P)
        if c.conv_stem:  # two 3x3 convolutions at 1/2 and 1/4 resolution, then a smaller patch GEMM
            hw = c.image_height * c.image_width
            fwd += 2 * 9 * (hw // 4 * c.image_channels * c.conv_stem + hw // 16 * c.conv_stem ** 2)
            fwd += 2 * P * (c.conv_stem - c.image_channels * 16) * (c.patch_size // 4) ** 2 * d
    cross = 2 * T * d * d + 2 * M * d * 2 * d + 2 * 2 * T * M * d + 2 * T * d * d
    fwd += L * (enc_layer(T) + cross) + 2 * T * d * V
    if training and with_image and c.dense_cell:  # the dense head runs in training only
        n_types = len(LayoutTokenizer(bins=c.coord_bins).element_types)
        fwd += 2 * P * d * (c.patch_size // c.dense_cell) ** 2 * (n_types + 5)
    return fwd * (3 if training else 1)
