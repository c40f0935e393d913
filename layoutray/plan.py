"""`layoutray plan`: per-GPU memory, step time and cost of a phase on N GPUs, before renting them.

    layoutray plan --phase phase4 --gpus 8 --gpu a100-80gb [--price-per-gpu-hour 4.1] [--json]

Every number is a model with stated inputs; nothing here is measured. What each part is:

Model states (params, gradients, optimizer states) per GPU, per ZeRO stage, without offload.
  They come from DeepSpeed's own estimators (DeepSpeed 0.19.8):
    stage 3  deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs(
                 P, largest_layer, gpus_per_node, nodes, cpu_offload=False, cpu_offload_params=False)
             = 4 * largest_layer + 18 * P / N
    stage 2  deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs(
                 P, gpus_per_node, nodes, cpu_offload=False)
             = 2 * P + 18 * P / N      (2: bf16 params; 18: bf16 + fp32 grads, fp32 master, Adam m, v)
    stage 1  DeepSpeed ships no stage-1 estimator. Stage 1 differs from stage 2 only in keeping the
             full 16-bit gradients on every rank, so: stage-2 estimate + 2 * P * (1 - 1/N).
    stage 0  the stage-2 estimator evaluated on one GPU (nothing partitioned) = 20 * P.
  The `*_all_cold` functions that print DeepSpeed's usual table are also called (stdout captured);
  their per-GPU "offload=none" rows are parsed and must agree with the numbers above to 0.01 GiB.

Activations per GPU (bf16, fused SDPA attention so no [s x s] score matrix is stored), after
  Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models"),
  bytes per layer with micro-batch b, width d, MLP ratio f (f = 4 gives their 34):
    encoder layer over s tokens:  (18 + 4f) * s * b * d
    decoder layer, T layout tokens, M memory tokens: (27 + 4f) * T * b * d + 6 * M * b * d
        (self-attention + MLP as above, plus cross-attention: 9 T b d on the query side and
         6 M b d for the memory input, K and V)
    logits: b * T * V * 10 bytes (bf16 logits, fp32 copy for the loss, fp32 gradient)
  with the worst-case shapes of the phase: P = (H/p) * (W/p) patches, S = 1 + max_elements spec
  tokens, T = 1 + 5 * max_elements decoder input tokens (batches are padded to their longest row,
  which the tokenizer caps there; model.max_seq_len is positional capacity), M = P + S.
  With training.activation_checkpointing (phase 4): per layer only the blocks' 16-bit inputs
  2 * (P + S + T) * b * d and the decoder's memory K, V 4 * M * b * d are kept, plus one block's
  full activations (the largest of the three) while it is recomputed; compute is 4/3 of the
  plain step (each forward runs twice).

Per-GPU total = model states + activations + communication buffers (2 x min(5e8, P) x 2 bytes:
  DeepSpeed's default reduce / all-gather bucket sizes, capped by the model size)
  + a fixed runtime overhead (CUDA context, cuBLAS/NCCL workspaces, allocator slack: 1.5 GiB).
  A configuration fits when the total is at most (1 - headroom) of the GPU's memory (headroom 10%).

Recommended stage: with N > 1, ZeRO-2 first (same communication volume as plain data parallel,
  states and gradients partitioned, so it dominates stages 0 and 1), then ZeRO-3 (1.5x the
  communication, parameters partitioned too) if stage 2 does not fit. With one GPU there is
  nothing to partition: stage 0 (offload is not modelled). Recommended micro-batch: the config's
  (training.batch_size / GPUs) when it fits, otherwise the largest power of two that fits, with
  gradient accumulation to keep the global batch.

Step time = compute + communication, not overlapped (an upper bound on both counts).
  compute = micro_batch * accumulation * FLOPs per example / (utilisation * bf16 dense peak);
  FLOPs per example = layoutray.model.flops_per_example (every GEMM and attention matmul,
  3x forward for training) at *typical* shapes: 60% of the element cap (the synthetic
  generator's mean is 9.3 elements at a cap of 16, i.e. 58%), every example with an image
  (conservative: the task mix skips the vision encoder for spec-only rows). Utilisation defaults to 40% of the peak
  (A100 312 TFLOP/s, H100 SXM 989 TFLOP/s dense bf16). The cross-check is 6*N*D applied per
  stack (each stack's weights times the tokens that pass through it), without attention matmuls.
  communication = bytes per GPU / NCCL bus bandwidth; ring all-reduce of bf16 gradients moves
  2 * (N-1)/N * 2P bytes (stages 0-2: reduce-scatter + all-gather is the same volume), stage 3
  adds one more parameter all-gather (3 * (N-1)/N * 2P).

Cost per epoch = GPUs * epoch hours * price per GPU-hour (defaults below, on-demand list prices;
  pass --price-per-gpu-hour for yours).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import re
from dataclasses import dataclass

from layoutray.config import RunConfig, load_config
from layoutray.model.tokenizer import LayoutTokenizer

GIB = 2 ** 30


@dataclass(frozen=True)
class GPU:
    key: str
    name: str
    memory_gib: float  # what nvidia-smi reports as total
    bf16_dense_tflops: float
    price_per_gpu_hour: float
    price_source: str
    busbw_intra_gbs: float  # NCCL all-reduce bus bandwidth inside one 8-GPU node (NVLink)
    busbw_inter_gbs: float  # ... across nodes (EFA / GPUDirect-TCPX class networking)


GPUS: dict[str, GPU] = {
    "a100-40gb": GPU("a100-40gb", "NVIDIA A100-SXM4-40GB", 40.0, 312.0, 4.10,
                     "AWS p4d.24xlarge on-demand $32.77/h / 8 GPUs (us-east-1 list price; AWS cut "
                     "P4/P5 prices in 2025, check yours)", 230.0, 40.0),
    "a100-80gb": GPU("a100-80gb", "NVIDIA A100-SXM4-80GB", 80.0, 312.0, 5.12,
                     "AWS p4de.24xlarge on-demand $40.97/h / 8 GPUs (us-east-1 list price; AWS cut "
                     "P4/P5 prices in 2025, check yours)", 230.0, 40.0),
    "h100-80gb": GPU("h100-80gb", "NVIDIA H100-SXM5-80GB", 79.6, 989.0, 12.29,
                     "AWS p5.48xlarge on-demand $98.32/h / 8 GPUs (us-east-1 list price; AWS cut "
                     "P4/P5 prices in 2025, check yours)", 450.0, 300.0),
}

GPUS_PER_NODE = 8
DEFAULT_UTILISATION = 0.40
HEADROOM = 0.10
RUNTIME_OVERHEAD_GIB = 1.5
BUCKET_ELEMENTS = 500_000_000  # DeepSpeed default reduce_bucket_size and allgather_bucket_size
TYPICAL_ELEMENT_FRACTION = 0.6
MAX_MICRO_BATCH = 4096

JSON_KEYS = ("phase", "gpu", "gpus", "nodes", "gpus_per_node", "parameters", "shapes", "assumptions",
             "stages", "recommended", "step", "epoch", "training", "deepspeed_estimator_report")
STAGE_KEYS = ("stage", "model_states_gib", "model_states_source", "activations_gib", "buffers_gib",
              "runtime_overhead_gib", "total_gib", "usable_gib", "fits", "max_micro_batch",
              "comm_bytes_per_step", "comm_time_s")


# ---------------------------------------------------------------------------- parameters


def analytic_parameters(cfg: RunConfig) -> int:
    """Parameter count of layoutray.model.LayoutModel from the config alone (the cross-check)."""
    m = cfg.model
    d, f, L = m.d_model, m.ff_mult, m.n_layers
    V = LayoutTokenizer(bins=m.coord_bins).vocab_size
    gh, gw = m.image_height // m.patch_size, m.image_width // m.patch_size
    attn = 4 * d * d + 4 * d  # fused qkv (d -> 3d) + out proj, with biases
    mlp = 2 * f * d * d + f * d + d
    enc = attn + mlp + 2 * 2 * d  # + 2 LayerNorms
    dec = attn + attn + mlp + 3 * 2 * d  # self-attn, cross-attn (q, kv, proj), MLP, 3 LayerNorms
    n_types = len(LayoutTokenizer(bins=m.coord_bins).element_types)
    cells = (m.patch_size // m.dense_cell) ** 2 if m.dense_cell else 0
    dense = (d + 1) * cells * (n_types + 5)  # training-only dense head (type + none + box per cell)
    return (V * d  # shared token embedding, tied output head
            + (m.image_channels * m.patch_size ** 2 + 1) * d + (gh + gw) * d  # patches, 2-D pos
            + L * enc + 2 * d  # vision stack + final LN
            + m.max_spec_len * d + L * enc + 2 * d  # structure stack
            + 2 * d  # modality embeddings
            + _decoder_positions(m) + L * dec + 2 * d  # decoder
            + dense)


def _decoder_positions(m) -> int:
    """The decoder's own position parameters: the AR decoder's dec_pos, or the diffusion
    denoiser's mask_emb, slot_pos and attr_pos (layoutray/model/diffusion.py)."""
    if m.decoder == "diffusion":
        return (1 + m.max_elements + 5) * m.d_model
    return m.max_seq_len * m.d_model


def largest_layer_parameters(cfg: RunConfig) -> int:
    """The largest single module's own parameters (what ZeRO-3 gathers at once), analytic."""
    m = cfg.model
    d, f = m.d_model, m.ff_mult
    V = LayoutTokenizer(bins=m.coord_bins).vocab_size
    return max(f * d * d + f * d,  # MLP fc1 / fc2
               3 * d * d + 3 * d,  # fused qkv
               V * d,  # token embedding
               m.max_seq_len * d, m.max_spec_len * d,  # positional tables (parameters of the model)
               (m.image_channels * m.patch_size ** 2 + 1) * d)


def parameter_count(cfg: RunConfig) -> tuple[int, str]:
    try:
        from layoutray.model.network import count_parameters
    except ImportError:
        return analytic_parameters(cfg), "analytic (layoutray.model.network not importable)"
    return int(count_parameters(cfg)), "layoutray.model.count_parameters"


# ---------------------------------------------------------------------------- DeepSpeed


@contextlib.contextmanager
def _quiet():
    """DeepSpeed logs its accelerator choice on import and the estimators print tables."""
    out, err = io.StringIO(), io.StringIO()
    ds_logger = logging.getLogger("DeepSpeed")
    level = ds_logger.level
    ds_logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield out
    finally:
        ds_logger.setLevel(level)


def _parse_gpu_gib(report: str, option_pattern: str) -> float:
    for line in report.splitlines():
        if re.search(option_pattern, line):
            cells = [c.strip() for c in line.split("|")]
            return float(cells[1].removesuffix("GB"))
    raise ValueError(f"no row matching {option_pattern!r} in DeepSpeed's report:\n{report}")


def deepspeed_model_states(params: int, largest_layer: int, gpus: int) -> tuple[dict[int, int], str]:
    """Per-GPU bytes of model states for ZeRO 0-3 from DeepSpeed's estimators, and their report."""
    per_node = min(gpus, GPUS_PER_NODE)
    nodes = math.ceil(gpus / GPUS_PER_NODE)
    with _quiet() as captured:
        from deepspeed.runtime.zero import stage3 as z3
        from deepspeed.runtime.zero import stage_1_and_2 as z12
        captured.truncate(0)
        captured.seek(0)
        _, s2 = z12.estimate_zero2_model_states_mem_needs(params, per_node, nodes, cpu_offload=False)
        _, s0 = z12.estimate_zero2_model_states_mem_needs(params, 1, 1, cpu_offload=False)
        _, s3, _ = z3.estimate_zero3_model_states_mem_needs(
            params, largest_layer, per_node, nodes, cpu_offload=False, cpu_offload_params=False,
            zero_init=True)
        z12.estimate_zero2_model_states_mem_needs_all_cold(params, per_node, nodes)
        z2_report = captured.getvalue()
        captured.truncate(0)
        captured.seek(0)
        z3.estimate_zero3_model_states_mem_needs_all_cold(params, largest_layer, per_node, nodes)
        z3_report = captured.getvalue()
    # The printed tables must agree with the numbers used (they print GiB to 2 decimals).
    for got, report, pattern in (
            (s2, z2_report, r"offload_optimizer=none"),
            (s3, z3_report, r"offload_param=none, offload_optimizer=none, zero_init=1")):
        printed = _parse_gpu_gib(report, pattern)
        if abs(printed - got / GIB) > 0.006:
            raise RuntimeError(f"DeepSpeed's printed estimate {printed} GiB != {got / GIB:.4f} GiB")
    s1 = s2 + int(2 * params * (1 - 1 / gpus))
    return {0: int(s0), 1: int(s1), 2: int(s2), 3: int(s3)}, z2_report + z3_report


STATE_SOURCES = {
    0: "deepspeed estimate_zero2_model_states_mem_needs on 1 GPU (nothing partitioned)",
    1: "deepspeed stage-2 estimate + unpartitioned 16-bit gradients 2P(1-1/N)",
    2: "deepspeed.runtime.zero.stage_1_and_2.estimate_zero2_model_states_mem_needs",
    3: "deepspeed.runtime.zero.stage3.estimate_zero3_model_states_mem_needs",
}


# ---------------------------------------------------------------------------- shapes, FLOPs


def shapes(cfg: RunConfig, elements: int) -> dict:
    m = cfg.model
    # decoder input: AR reads BOS + 5 per element (EOS is a target); the diffusion denoiser always
    # reads the whole canvas of max_elements slots, whatever the section holds
    layout = 5 * m.max_elements if m.decoder == "diffusion" else 1 + 5 * elements
    return {
        "patches": (m.image_height // m.patch_size) * (m.image_width // m.patch_size),
        "spec_tokens": 1 + elements,
        "layout_tokens": layout,
    }


def activation_bytes(cfg: RunConfig, micro_batch: int) -> int:
    m = cfg.model
    d, f, L, b = m.d_model, m.ff_mult, m.n_layers, micro_batch
    V = LayoutTokenizer(bins=m.coord_bins).vocab_size
    s = shapes(cfg, m.max_elements)
    P, S, T = s["patches"], s["spec_tokens"], s["layout_tokens"]
    M = P + S
    enc = lambda n: (18 + 4 * f) * n * b * d  # noqa: E731
    dec = (27 + 4 * f) * T * b * d + 6 * M * b * d
    inputs = b * P * m.image_channels * m.patch_size ** 2 * 2
    if cfg.training.activation_checkpointing:
        # Only each block's 16-bit input is kept (2 s b d bytes), plus the decoder layers' memory
        # K and V (computed outside the block, 2 x 2 M b d); one block at a time is recomputed
        # in the backward pass with its full activations.
        kept = L * (2 * b * d * (P + S + T) + 4 * M * b * d)
        return kept + max(enc(P), enc(S), dec) + b * T * V * 10 + inputs
    return L * (enc(P) + enc(S) + dec) + b * T * V * 10 + inputs


def analytic_flops(cfg: RunConfig, elements: int) -> int:
    """6 * (weights a token passes through) * tokens, stack by stack: the 6*N*D rule applied per
    stack (vision and structure encoders see P and S tokens, the decoder T), no attention matmuls."""
    s = shapes(cfg, elements)
    m = cfg.model
    d, f, L = m.d_model, m.ff_mult, m.n_layers
    V = LayoutTokenizer(bins=m.coord_bins).vocab_size
    enc = 4 * d * d + 2 * f * d * d
    cross_q = 2 * d * d  # q and out projections run over the T decoder tokens
    cross_kv = 2 * d * d  # k and v projections run over the M memory tokens
    M = s["patches"] + s["spec_tokens"]
    weights_x_tokens = (s["patches"] * (enc * L + m.image_channels * m.patch_size ** 2 * d)
                        + s["spec_tokens"] * enc * L
                        + s["layout_tokens"] * ((enc + cross_q) * L + V * d) + M * cross_kv * L)
    return 6 * weights_x_tokens


def flops_per_example(cfg: RunConfig, elements: int) -> tuple[int, str]:
    s = shapes(cfg, elements)
    try:
        from layoutray.model.network import flops_per_example as model_flops
    except ImportError:
        return analytic_flops(cfg, elements), "analytic 6*N*D per stack (layoutray.model.network not importable)"
    return int(model_flops(cfg, seq_len=s["layout_tokens"], spec_len=s["spec_tokens"],
                           with_image=True, training=True)), "layoutray.model.flops_per_example"


# ---------------------------------------------------------------------------- the plan


def _check_arguments(gpu: str, gpus: int, examples: int, utilisation: float) -> None:
    if gpu not in GPUS:
        raise ValueError(f"unknown gpu {gpu!r}; known: {', '.join(GPUS)}")
    if gpus < 1 or (gpus > GPUS_PER_NODE and gpus % GPUS_PER_NODE):
        raise ValueError(f"gpus must be 1-{GPUS_PER_NODE} or a multiple of {GPUS_PER_NODE}; got {gpus}")
    if examples < 1:
        raise ValueError(f"examples must be >= 1; got {examples}")
    if not 0 < utilisation <= 1:
        raise ValueError(f"utilisation must be in (0, 1]; got {utilisation}")


def _price(g: GPU, price_per_gpu_hour: float | None) -> float:
    price = g.price_per_gpu_hour if price_per_gpu_hour is None else float(price_per_gpu_hour)
    if price < 0:
        raise ValueError(f"price per GPU-hour must be >= 0; got {price}")
    return price


@dataclass(frozen=True)
class _Memory:
    """Per-GPU memory of one model on one GPU type and count, as a function of stage and micro-batch."""
    cfg: RunConfig
    states: dict[int, int]  # model-state bytes per ZeRO stage
    buffers: int
    overhead: float
    usable: float

    @classmethod
    def of(cls, cfg: RunConfig, g: GPU, gpus: int, params: int, states: dict[int, int]) -> "_Memory":
        # One GPU reduces nothing, so it allocates no communication buckets.
        buffers = 2 * min(BUCKET_ELEMENTS, params) * 2 if gpus > 1 else 0
        return cls(cfg, states, buffers, RUNTIME_OVERHEAD_GIB * GIB, g.memory_gib * (1 - HEADROOM) * GIB)

    def total(self, stage: int, micro_batch: int) -> float:
        return self.states[stage] + activation_bytes(self.cfg, micro_batch) + self.buffers + self.overhead

    def max_micro_batch(self, stage: int) -> int:
        """The largest power of two up to MAX_MICRO_BATCH that fits; 0 when one example does not."""
        mb = 0
        while mb * 2 <= MAX_MICRO_BATCH and self.total(stage, max(1, mb * 2)) <= self.usable:
            mb = max(1, mb * 2)
        return mb


def comm_bytes_per_step(stage: int, gpus: int, params: int) -> int:
    """Bytes each GPU sends per optimizer step: a ring all-reduce of bf16 gradients, plus one
    more parameter all-gather at stage 3."""
    if gpus == 1:
        return 0
    factor = 3 if stage == 3 else 2
    return int(factor * (gpus - 1) / gpus * 2 * params)


def _stage_rows(mem: _Memory, micro_batch: int, gpus: int, params: int, busbw: float) -> list[dict]:
    """One STAGE_KEYS row per ZeRO stage, at the config's micro-batch."""
    rows = []
    for st in range(4):
        t = mem.total(st, micro_batch)
        cb = comm_bytes_per_step(st, gpus, params)
        rows.append({
            "stage": st,
            "model_states_gib": mem.states[st] / GIB,
            "model_states_source": STATE_SOURCES[st],
            "activations_gib": activation_bytes(mem.cfg, micro_batch) / GIB,
            "buffers_gib": mem.buffers / GIB,
            "runtime_overhead_gib": mem.overhead / GIB,
            "total_gib": t / GIB,
            "usable_gib": mem.usable / GIB,
            "fits": t <= mem.usable,
            "max_micro_batch": mem.max_micro_batch(st),
            "comm_bytes_per_step": cb,
            "comm_time_s": cb / busbw,
        })
    return rows


def _recommend(stages: list[dict], mem: _Memory, cfg_micro: int, gpus: int) -> tuple[dict, int, int, int]:
    """(the `recommended` entry, the stage the step time is for, micro-batch, accumulation steps)."""
    order = [2, 3] if gpus > 1 else [0]
    rec_stage = next((s for s in order if stages[s]["max_micro_batch"] >= 1), None)
    if rec_stage is None:
        # Nothing fits; the step time is still given, for the most frugal stage at one example.
        rec = {"zero_stage": None, "micro_batch": None, "grad_accumulation": None, "fits": False,
               "max_micro_batch": 0, "total_gib": None,
               "reason": "no ZeRO stage fits even one example per GPU without offload; "
                         "use more GPUs, CPU offload or activation checkpointing"}
        return rec, (3 if gpus > 1 else 0), 1, cfg_micro
    mb_max = stages[rec_stage]["max_micro_batch"]
    mb = cfg_micro if cfg_micro <= mb_max else mb_max
    accum = math.ceil(cfg_micro / mb)
    why = ("ZeRO-2: same communication volume as data parallel, model states and gradients "
           "partitioned" if rec_stage == 2 else
           "ZeRO-3: stage 2 does not fit; parameters partitioned too, 1.5x communication"
           if rec_stage == 3 else "one GPU: nothing to partition")
    rec = {"zero_stage": rec_stage, "micro_batch": mb, "grad_accumulation": accum, "fits": True,
           "max_micro_batch": mb_max, "total_gib": mem.total(rec_stage, mb) / GIB,
           "reason": f"{why}; micro-batch {mb} = training.batch_size {mem.cfg.training.batch_size} / "
                     f"{gpus} GPUs" + (f" (config wants {cfg_micro}; reduced to fit, with "
                                       f"{accum} accumulation steps)" if mb != cfg_micro else "")}
    return rec, rec_stage, mb, accum


def _step(cfg: RunConfig, g: GPU, utilisation: float, typical_elements: int, mb: int, accum: int,
          gpus: int, stage: int, comm_s: float) -> dict:
    """Time of one optimizer step: compute at `utilisation` of the peak, plus communication."""
    fpe, fpe_source = flops_per_example(cfg, typical_elements)
    peak = g.bf16_dense_tflops * 1e12
    # Activation checkpointing runs each forward twice: 4 forward-equivalents instead of 3. The
    # model's FLOPs (what MFU counts) stay fpe; the time pays for the recomputation.
    recompute = 4 / 3 if cfg.training.activation_checkpointing else 1.0
    compute_s = mb * accum * fpe * recompute / (utilisation * peak)
    return {"flops_per_example": fpe, "flops_source": fpe_source,
            "flops_6nd_per_example": analytic_flops(cfg, typical_elements),
            "micro_batch": mb, "grad_accumulation": accum, "global_batch": mb * accum * gpus,
            "flops_per_step_per_gpu": mb * accum * fpe, "recompute_factor": recompute,
            "compute_time_s": compute_s, "comm_time_s": comm_s, "step_time_s": compute_s + comm_s,
            "zero_stage": stage}


def _epoch(examples: int, step: dict, gpus: int, price: float, price_source: str) -> dict:
    steps = math.ceil(examples / step["global_batch"])
    epoch_s = steps * step["step_time_s"]
    gpu_hours = gpus * epoch_s / 3600
    return {"examples": examples, "steps": steps, "time_s": epoch_s, "gpu_hours": gpu_hours,
            "price_per_gpu_hour": price, "price_source": price_source, "cost_usd": gpu_hours * price}


def _training(epochs: int, epoch: dict) -> dict:
    return {"epochs": epochs, "time_h": epochs * epoch["time_s"] / 3600,
            "cost_usd": epochs * epoch["gpu_hours"] * epoch["price_per_gpu_hour"],
            "note": "upper bound: every configured epoch, no early stopping, validation excluded"}


def _shapes_summary(cfg: RunConfig, typical_elements: int, cfg_micro: int) -> dict:
    worst = shapes(cfg, cfg.model.max_elements)
    ts = shapes(cfg, typical_elements)
    return {"patches": worst["patches"], "spec_tokens_max": worst["spec_tokens"],
            "layout_tokens_max": worst["layout_tokens"], "memory_tokens_max":
            worst["patches"] + worst["spec_tokens"], "typical_elements": typical_elements,
            "spec_tokens_typical": ts["spec_tokens"], "layout_tokens_typical": ts["layout_tokens"],
            "max_elements": cfg.model.max_elements, "max_seq_len": cfg.model.max_seq_len,
            "d_model": cfg.model.d_model, "n_layers": cfg.model.n_layers,
            "config_micro_batch": cfg_micro, "config_global_batch": cfg.training.batch_size,
            # 16-bit activations and DeepSpeed's mixed-precision states: bf16 and fp16 alike
            "precision": cfg.deepspeed.precision,
            "activation_checkpointing": cfg.training.activation_checkpointing}


def _assumptions(utilisation: float, busbw: float) -> dict:
    return {"utilisation": utilisation, "headroom_fraction": HEADROOM,
            "runtime_overhead_gib": RUNTIME_OVERHEAD_GIB,
            "bucket_elements": BUCKET_ELEMENTS,
            "busbw_gbs": busbw / 1e9,
            "comm_overlap": "none (compute + communication added)",
            "typical_element_fraction": TYPICAL_ELEMENT_FRACTION,
            "activation_shapes": "worst case (max_elements, every row with an image)",
            "flops_shapes": "typical elements, every row with an image",
            "offload": "none"}


def make_plan(phase: str = "phase4", gpus: int = 8, gpu: str = "a100-80gb",
              price_per_gpu_hour: float | None = None, examples: int = 15000,
              utilisation: float = DEFAULT_UTILISATION, cfg: RunConfig | None = None,
              overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The plan as a dict (keys: JSON_KEYS; each stage row: STAGE_KEYS). See the module doc.
    `overrides` (--set key=value) modify the phase's config before it is planned."""
    _check_arguments(gpu, gpus, examples, utilisation)
    g = GPUS[gpu]
    price = _price(g, price_per_gpu_hour)
    cfg = cfg or load_config(phase=phase, overrides=list(overrides))
    nodes = math.ceil(gpus / GPUS_PER_NODE)
    busbw = (g.busbw_inter_gbs if nodes > 1 else g.busbw_intra_gbs) * 1e9

    params, params_source = parameter_count(cfg)
    largest = largest_layer_parameters(cfg)
    states, report = deepspeed_model_states(params, largest, gpus)
    mem = _Memory.of(cfg, g, gpus, params, states)
    cfg_micro = max(1, cfg.training.batch_size // gpus)
    stages = _stage_rows(mem, cfg_micro, gpus, params, busbw)
    rec, timed_stage, mb, accum = _recommend(stages, mem, cfg_micro, gpus)

    typical = max(1, round(TYPICAL_ELEMENT_FRACTION * cfg.model.max_elements))
    step = _step(cfg, g, utilisation, typical, mb, accum, gpus, timed_stage, stages[timed_stage]["comm_time_s"])
    epoch = _epoch(examples, step, gpus, price,
                   g.price_source if price_per_gpu_hour is None else "--price-per-gpu-hour")
    return {
        "phase": cfg.phase,
        "gpu": {"key": g.key, "name": g.name, "memory_gib": g.memory_gib,
                "bf16_dense_tflops": g.bf16_dense_tflops},
        "gpus": gpus,
        "nodes": nodes,
        "gpus_per_node": min(gpus, GPUS_PER_NODE),
        "parameters": {"count": params, "source": params_source, "analytic": analytic_parameters(cfg),
                       "largest_layer": largest},
        "shapes": _shapes_summary(cfg, typical, cfg_micro),
        "assumptions": _assumptions(utilisation, busbw),
        "stages": stages,
        "recommended": rec,
        "step": step,
        "epoch": epoch,
        "training": _training(cfg.training.epochs, epoch),
        "deepspeed_estimator_report": report,
    }


# ---------------------------------------------------------------------------- output


def _fmt_s(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1000:.1f} ms"
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def format_plan(p: dict) -> str:
    g, sh, rec, st, ep = p["gpu"], p["shapes"], p["recommended"], p["step"], p["epoch"]
    prm = p["parameters"]
    lines = [
        f"plan: {p['phase']} on {p['gpus']} x {g['key']} ({g['name']}, {g['memory_gib']:g} GiB, "
        f"{g['bf16_dense_tflops']:g} TFLOP/s bf16 dense), {p['nodes']} node(s)",
        f"parameters: {prm['count']:,} ({prm['source']}; analytic cross-check {prm['analytic']:,}); "
        f"largest layer {prm['largest_layer']:,}",
        f"shapes (worst case): patches {sh['patches']}, spec {sh['spec_tokens_max']}, layout "
        f"{sh['layout_tokens_max']} tokens (max_elements {sh['max_elements']}), memory "
        f"{sh['memory_tokens_max']}; d_model {sh['d_model']}, {sh['n_layers']} layers per stack, "
        f"{sh['precision']}" + (", activation checkpointing" if sh["activation_checkpointing"] else ""),
        f"micro-batch from the config: {sh['config_micro_batch']} per GPU (global "
        f"{sh['config_global_batch']})",
        "",
        f"per-GPU memory at micro-batch {sh['config_micro_batch']} (GiB; usable = "
        f"{(1 - p['assumptions']['headroom_fraction']) * 100:.0f}% of the GPU):",
        "  ZeRO | model states | activations | buffers+runtime |  total | fits | max micro-batch",
    ]
    for s in p["stages"]:
        lines.append(f"  {s['stage']:>4} | {s['model_states_gib']:12.3f} | {s['activations_gib']:11.3f} | "
                     f"{s['buffers_gib'] + s['runtime_overhead_gib']:15.2f} | {s['total_gib']:6.2f} | "
                     f"{'yes' if s['fits'] else 'NO':>4} | {s['max_micro_batch']:>15}")
    lines.append("  (model states: DeepSpeed's estimators without offload; stages 0 and 1 derived from the "
                 "stage-2 one, see layoutray/plan.py)")
    lines.append("")
    if rec["zero_stage"] is None:
        lines.append(f"recommended: nothing fits. {rec['reason']}")
    else:
        lines.append(f"recommended: ZeRO-{rec['zero_stage']}, micro-batch {rec['micro_batch']}, "
                     f"gradient accumulation {rec['grad_accumulation']} ({rec['reason']})")
    lines += [
        f"step: {st['flops_per_example'] / 1e9:.1f} GFLOP per training example at typical shapes "
        f"({sh['typical_elements']} elements: layout {sh['layout_tokens_typical']}, spec "
        f"{sh['spec_tokens_typical']} tokens; {st['flops_source']}; cross-check 6*N*D per stack, "
        f"no attention matmuls: "
        f"{st['flops_6nd_per_example'] / 1e9:.1f} GFLOP)",
        f"      compute {_fmt_s(st['compute_time_s'])} at {p['assumptions']['utilisation'] * 100:.0f}% "
        f"of peak + communication {_fmt_s(st['comm_time_s'])} (bus {p['assumptions']['busbw_gbs']:g} "
        f"GB/s, not overlapped) = {_fmt_s(st['step_time_s'])} per step of {st['global_batch']} examples",
        f"epoch: {ep['examples']:,} examples = {ep['steps']:,} steps = {_fmt_s(ep['time_s'])}; "
        f"{ep['gpu_hours']:.3f} GPU-hours x ${ep['price_per_gpu_hour']:.2f} = ${ep['cost_usd']:.2f} per epoch",
        f"      price: {ep['price_source']}",
        f"training: {p['training']['epochs']} epochs <= {_fmt_s(p['training']['time_h'] * 3600)}, "
        f"<= ${p['training']['cost_usd']:.2f} ({p['training']['note']})",
        "note: at these sizes a step is a few milliseconds of GPU work; kernel-launch latency and the",
        "      input pipeline (decoding PNGs, Ray Data) will likely dominate: measure before trusting it.",
    ]
    return "\n".join(lines)
