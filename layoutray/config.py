"""Typed run configuration: phase YAMLs -> dataclasses, validated, overridable, serializable.

A config file has the sections `model`, `training`, `validation`, `data`, `scaling`,
`deepspeed`, `schedule` and `checkpoint`. Every value is checked when the dataclass is
built; a mistake raises `ConfigError` naming the file, the dotted key and what is allowed.

    cfg = load_config("configs/phases/phase1.yaml", overrides=["training.epochs=3"])
    cfg.model.d_model        # 128
    dump_yaml(cfg)           # round-trips through load_config

`from_dict(cls, tree, source=...)` is the builder behind it, for any tree of config dataclasses
(the sweep files of layoutray/sweep_config.py use it too): field types come from the
annotations, values are checked in each dataclass's `__post_init__` with `check`/`in_range`.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "configs"
PhaseName = Literal["phase1", "phase2", "phase3", "phase4"]
PHASES: tuple[str, ...] = typing.get_args(PhaseName)
T = TypeVar("T")


class ConfigError(ValueError):
    """A config value is wrong. The message names the file, the key and what is allowed."""

    def __init__(self, key: str, problem: str, source: str | None = None):
        self.key, self.problem, self.source = key, problem, source
        where = f"{source}: " if source else ""
        super().__init__(f"{where}key '{key}': {problem}")

    def __reduce__(self):
        # Rebuilt from its fields when pickled (a Ray worker's error reaching the driver); the
        # default would call ConfigError(message) and fail, hiding the message.
        return (type(self), (self.key, self.problem, self.source))


def check(key: str, ok: bool, allowed: str) -> None:
    """For `__post_init__`: refuse `key` unless `ok`; `allowed` completes "must be ..."."""
    if not ok:
        raise ConfigError(key, f"must be {allowed}")


def in_range(key: str, value: float, lo: float | None = None, hi: float | None = None,
             lo_open: bool = False) -> None:
    """For `__post_init__`: refuse `key` outside [lo, hi] (or (lo, hi]), and any non-finite float."""
    bad = (lo is not None and (value <= lo if lo_open else value < lo)) or (hi is not None and value > hi)
    if bad or (isinstance(value, float) and not math.isfinite(value)):
        lo_s = "-inf" if lo is None else repr(lo)
        hi_s = "inf" if hi is None else repr(hi)
        raise ConfigError(key, f"got {value!r}; allowed {'(' if lo_open else '['}{lo_s}, {hi_s}]")


# ---------------------------------------------------------------------------- sections


@dataclass
class AestheticConfig:
    """The aesthetic score's weights and scales and the constraint levels' settings (docs/aesthetics.md)."""

    # Chosen so that true layouts outscore perturbed copies most often (docs/aesthetics.md).
    weight_alignment: float = 2.0
    weight_overlap: float = 2.0
    weight_spacing: float = 0.5
    weight_margins: float = 2.0
    weight_reading_order: float = 1.0
    weight_balance: float = 0.25
    weight_rows: float = 1.0
    alignment_scale: float = 0.01  # LayoutGAN++ alignment a scores exp(-a / scale)
    overlap_scale: float = 0.05  # forbidden overlap o scores exp(-o / scale)
    spacing_tolerance: float = 0.008  # gaps this close are about the same spacing (about 1 bin)
    row_tolerance: float = 0.005  # rows: elements whose top, centre or bottom lines are this close share a row
    container_types: list[str] = field(default_factory=lambda: ["card", "image"])
    contain_fraction: float = 0.9  # a child inside a container: this share of its area inside
    snap_tolerance: int = 1  # basic: snap a coordinate to a placed element's line this many bins away
    snap_size_share: float = 0.125  # basic: ... a width or height only if that changes it by at most this share
    loss_alignment: float = 0.1  # full: weight of the soft alignment loss in training
    loss_overlap: float = 0.1  # full: weight of the soft forbidden-overlap loss in training
    refine_steps: int = 8  # advanced: optimisation steps per batch of layouts
    refine_lr: float = 0.004  # advanced: the most a coordinate moves in one step
    refine_min_iou: float = 0.7  # advanced: a refined box keeps at least this IoU with the generated one

    def __post_init__(self):
        from layoutray.data.vocab import ELEMENT_TYPES

        weights = [getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith("weight_")]
        for f in dataclasses.fields(self):
            if f.name.startswith(("weight_", "loss_")):
                in_range(f"model.aesthetics.{f.name}", getattr(self, f.name), 0.0, 100.0)
        check("model.aesthetics", sum(weights) > 0, "given at least one positive weight_*")
        for k in ("alignment_scale", "overlap_scale", "spacing_tolerance", "row_tolerance", "refine_lr"):
            in_range(f"model.aesthetics.{k}", getattr(self, k), 0.0, 1.0, lo_open=True)
        in_range("model.aesthetics.contain_fraction", self.contain_fraction, 0.0, 1.0, lo_open=True)
        in_range("model.aesthetics.refine_min_iou", self.refine_min_iou, 0.0, 1.0)
        in_range("model.aesthetics.snap_tolerance", self.snap_tolerance, 0, 64)
        in_range("model.aesthetics.snap_size_share", self.snap_size_share, 0.0, 1.0)
        in_range("model.aesthetics.refine_steps", self.refine_steps, 0, 10000)
        bad = [t for t in self.container_types if t not in ELEMENT_TYPES]
        check("model.aesthetics.container_types", not bad,
              f"element types ({', '.join(ELEMENT_TYPES)}); got {', '.join(map(repr, bad))}")


@dataclass
class ModelConfig:
    d_model: int = 128
    n_heads: int = 4
    n_layers: int = 4  # per stack: vision encoder, structure encoder and decoder each
    ff_mult: int = 4
    patch_size: int = 32
    image_height: int = 192
    image_width: int = 320
    image_channels: int = 1  # wireframes are greyscale
    max_seq_len: int = 256
    max_elements: int = 16
    coord_bins: int = 128
    max_spec_len: int = 64
    dense_cell: int = 0  # dense head's cell side in image pixels (training only; 0 = no head)
    # Channels of a convolutional stem before the patch embedding (0 = none): two stride-2 3x3
    # convolutions give each patch token local edge and corner features instead of raw pixels.
    conv_stem: int = 0
    # The layout decoder: autoregressive (network.py) or discrete diffusion (diffusion.py), whose
    # number of noise steps T is diffusion_steps (100/200/500/1000 in phases 1-4).
    decoder: Literal["autoregressive", "diffusion"] = "autoregressive"
    diffusion_steps: int = 100
    aesthetic_constraints: Literal["off", "basic", "full", "advanced"] = "off"
    aesthetics: AestheticConfig = field(default_factory=AestheticConfig)

    def __post_init__(self):
        for k in ("d_model", "n_heads", "n_layers", "ff_mult", "patch_size", "image_height",
                  "image_width", "image_channels", "max_seq_len", "max_elements", "coord_bins",
                  "max_spec_len", "diffusion_steps"):
            in_range(f"model.{k}", getattr(self, k), 1)
        check("model.d_model", self.d_model % self.n_heads == 0,
               f"a multiple of model.n_heads ({self.n_heads}); got {self.d_model}")
        check("model.image_height", self.image_height % self.patch_size == 0,
               f"a multiple of model.patch_size ({self.patch_size}); got {self.image_height}")
        check("model.image_width", self.image_width % self.patch_size == 0,
               f"a multiple of model.patch_size ({self.patch_size}); got {self.image_width}")
        in_range("model.coord_bins", self.coord_bins, 2, 4096)
        in_range("model.image_channels", self.image_channels, 1, 3)
        need = 2 + 5 * self.max_elements
        check("model.max_seq_len", self.max_seq_len >= need,
               f">= 2 + 5 * model.max_elements = {need}; got {self.max_seq_len}")
        check("model.max_spec_len", self.max_spec_len >= 1 + self.max_elements,
               f">= 1 + model.max_elements = {1 + self.max_elements}; got {self.max_spec_len}")
        in_range("model.dense_cell", self.dense_cell, 0, self.patch_size)
        in_range("model.conv_stem", self.conv_stem, 0, 256)
        check("model.patch_size", self.conv_stem == 0 or self.patch_size % 4 == 0,
               f"a multiple of 4 with a conv stem (it downsamples by 4); got {self.patch_size}")
        check("model.dense_cell", self.dense_cell == 0 or self.patch_size % self.dense_cell == 0,
               f"0 or a divisor of model.patch_size ({self.patch_size}); got {self.dense_cell}")


@dataclass
class TaskMix:
    """Share of training examples shown as image only / spec only / both."""

    image_only: float = 0.25
    spec_only: float = 0.25
    both: float = 0.5

    def __post_init__(self):
        for k in ("image_only", "spec_only", "both"):
            in_range(f"training.task_mix.{k}", getattr(self, k), 0.0, 1.0)
        total = self.image_only + self.spec_only + self.both
        check("training.task_mix", abs(total - 1.0) < 1e-6, f"shares summing to 1.0; got {total:.4f}")


@dataclass
class TrainingConfig:
    batch_size: int = 4  # global batch (all workers together)
    micro_batch_size: int = 0  # per worker; 0 means batch_size // num_workers
    learning_rate: float = 1e-4
    epochs: int = 100
    dropout: float = 0.3
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    seed: int = 0
    label_smoothing: float = 0.0
    coord_sigma: float = 0.0  # coordinate targets: Gaussian over neighbouring bins (std in bins); 0 = one-hot
    dense_weight: float = 0.0  # weight of the dense head's loss (needs model.dense_cell > 0)
    task_mix: TaskMix = field(default_factory=TaskMix)
    max_steps_per_epoch: int = 0  # 0: a full pass over the train split
    # Recompute each transformer block's activations in the backward pass instead of keeping
    # them: per-layer activation memory drops to the block inputs, for about 1/3 more compute.
    activation_checkpointing: bool = False

    def __post_init__(self):
        in_range("training.batch_size", self.batch_size, 1)
        in_range("training.micro_batch_size", self.micro_batch_size, 0)
        in_range("training.learning_rate", self.learning_rate, 0.0, 1.0, lo_open=True)
        in_range("training.epochs", self.epochs, 1)
        in_range("training.dropout", self.dropout, 0.0, 0.9)
        in_range("training.weight_decay", self.weight_decay, 0.0, 1.0)
        in_range("training.grad_clip", self.grad_clip, 0.0)
        in_range("training.label_smoothing", self.label_smoothing, 0.0, 0.5)
        in_range("training.coord_sigma", self.coord_sigma, 0.0, 8.0)
        in_range("training.dense_weight", self.dense_weight, 0.0, 100.0)
        in_range("training.max_steps_per_epoch", self.max_steps_per_epoch, 0)


@dataclass
class ValidationConfig:
    patience: int = 10
    min_delta: float = 0.0
    generate_examples: int = 64  # fixed validation subset scored with generated layouts
    every_epochs: int = 1

    def __post_init__(self):
        in_range("validation.patience", self.patience, 1)
        in_range("validation.min_delta", self.min_delta, 0.0)
        in_range("validation.generate_examples", self.generate_examples, 0)
        in_range("validation.every_epochs", self.every_epochs, 1)


@dataclass
class AugmentConfig:
    mirror_p: float = 0.5
    jitter: float = 0.03  # max translate, and max relative scale change
    noise_std: float = 0.04
    blur_p: float = 0.2
    element_dropout_p: float = 0.1

    def __post_init__(self):
        for k in ("mirror_p", "blur_p", "element_dropout_p"):
            in_range(f"data.augment.{k}", getattr(self, k), 0.0, 1.0)
        in_range("data.augment.jitter", self.jitter, 0.0, 0.25)
        in_range("data.augment.noise_std", self.noise_std, 0.0, 1.0)


@dataclass
class DataConfig:
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    strength: float = 1.0  # multiplies every augmentation probability and magnitude
    # The last N training epochs run without augmentation, on inputs drawn like the test's
    # (YOLOX's "no-aug" epochs): a final fit of exact positions. 0: augment every epoch; N at or
    # above training.epochs: no epoch is augmented (so `--set training.epochs=1` on top of a
    # config with clean epochs still runs).
    clean_epochs: int = 0
    max_bad_fraction: float = 0.05  # above this share of corrupted rows a run stops
    preprocess_concurrency: int = 1
    # Where training data comes from when `--data` is not given: a dataset directory, or
    # "synth" / "synth:SEED" for fresh synthetic sections every epoch (layoutray.data.stream).
    source: str = ""
    synth_per_epoch: int = 1600  # fresh sections per epoch from the synthetic stream
    # The share of each epoch's training rows that are fresh synthetic sections when the source is
    # a directory (`--mix synth=W`): 0 trains on the directory alone.
    synth_mix: float = 0.0
    synth_val: int = 200  # the fixed validation set of a synthetic-stream run
    synth_test: int = 200  # and its fixed test set
    # How the generator draws its images: wireframe, screenshot (themes, glyphs, photographs,
    # shadows) or mixed (either, per example); and how wide its size distributions are: base or
    # wide (narrower text blocks, smaller logos/avatars/inputs/badges, as real pages have them).
    synth_appearance: str = "wireframe"
    synth_variety: str = "base"

    def __post_init__(self):
        in_range("data.strength", self.strength, 0.0, 4.0)
        in_range("data.synth_per_epoch", self.synth_per_epoch, 1)
        in_range("data.synth_mix", self.synth_mix, 0.0, 0.95)
        in_range("data.synth_val", self.synth_val, 1)
        in_range("data.synth_test", self.synth_test, 1)
        check("data.synth_appearance", self.synth_appearance in ("wireframe", "screenshot", "mixed"),
              "one of wireframe, screenshot, mixed")
        check("data.synth_variety", self.synth_variety in ("base", "wide", "responsive"),
              "one of base, wide, responsive")
        in_range("data.clean_epochs", self.clean_epochs, 0)
        in_range("data.max_bad_fraction", self.max_bad_fraction, 0.0, 1.0)
        in_range("data.preprocess_concurrency", self.preprocess_concurrency, 1)


@dataclass
class ScalingConfig:
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self):
        in_range("scaling.num_workers", self.num_workers, 0)
        in_range("scaling.cpus_per_worker", self.cpus_per_worker, 0.0)
        in_range("scaling.gpus_per_worker", self.gpus_per_worker, 0.0)
        check("scaling.gpus_per_worker", self.use_gpu or self.gpus_per_worker == 0,
               "0 when scaling.use_gpu is false")
        check("scaling.gpus_per_worker", not self.use_gpu or self.gpus_per_worker > 0,
               "> 0 when scaling.use_gpu is true")


@dataclass
class DeepSpeedConfig:
    zero_stage: Literal[0, 1, 2, 3] = 0
    # bf16 only pays on GPUs with bf16 units; fp16 (V100, T4 and other GPUs without them) trains
    # with DeepSpeed's loss scaling: dynamic when loss_scale is 0, starting at 2^initial_scale_power.
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    offload_optimizer: bool = False
    loss_scale: float = 0.0  # fp16 only: 0 = dynamic loss scaling, else this fixed scale
    initial_scale_power: int = 16  # fp16 dynamic scaling starts at 2^this

    def __post_init__(self):
        in_range("deepspeed.loss_scale", self.loss_scale, 0.0)
        in_range("deepspeed.initial_scale_power", self.initial_scale_power, 0, 32)
        # At stage 0 DeepSpeed has no ZeRO optimizer to offload and silently keeps it in place.
        check("deepspeed.offload_optimizer", not self.offload_optimizer or self.zero_stage >= 1,
               "false at deepspeed.zero_stage 0 (DeepSpeed offloads ZeRO's optimizer partitions only)")


@dataclass
class ScheduleConfig:
    """Learning-rate, batch and regularization schedules (see layoutray/schedules.py)."""

    lr: str = "warmup_cosine"
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.0
    batch: Literal["constant", "phi"] = "constant"
    max_batch_size: int = 0  # 0: no cap beyond batch_size * phi^phases
    batch_phases: int = 3
    regularization: Literal["constant", "phi"] = "constant"
    phi_phases: bool = False  # 38.2% exploration / 61.8% exploitation split
    # Multipliers in each phase when phi_phases is on (docs/schedules.md). Default: explore with
    # the configured augmentation and dropout, exploit with both cut by 1/phi; the LR multiplier
    # stays 1.0 so that a phase split never confounds an LR-schedule comparison.
    explore_augmentation: float = 1.0
    explore_dropout: float = 1.0
    explore_lr: float = 1.0
    exploit_augmentation: float = 0.6180339887498949
    exploit_dropout: float = 0.6180339887498949
    exploit_lr: float = 1.0
    sampler: Literal["uniform", "phi"] = "uniform"

    def __post_init__(self):
        for key in ("explore_augmentation", "explore_dropout", "explore_lr",
                    "exploit_augmentation", "exploit_dropout", "exploit_lr"):
            in_range(f"schedule.{key}", getattr(self, key), 0.0, 10.0)
        in_range("schedule.warmup_fraction", self.warmup_fraction, 0.0, 1.0)
        in_range("schedule.min_lr_ratio", self.min_lr_ratio, 0.0, 1.0)
        in_range("schedule.max_batch_size", self.max_batch_size, 0)
        in_range("schedule.batch_phases", self.batch_phases, 0, 16)


@dataclass
class CheckpointConfig:
    num_to_keep: int = 2  # best N by validation loss
    max_failures: int = 2  # worker-group restarts before a run fails

    def __post_init__(self):
        in_range("checkpoint.num_to_keep", self.num_to_keep, 1)
        in_range("checkpoint.max_failures", self.max_failures, -1)


@dataclass
class TrackingConfig:
    """Where a run's params, metrics and model go besides metrics.jsonl and TensorBoard (docs/tracking.md)."""

    backend: Literal["tensorboard", "mlflow"] = "tensorboard"
    uri: str = ""  # the MLflow tracking server; "" = the MLFLOW_TRACKING_URI environment variable
    experiment: str = "layoutray"
    registered_model: str = "layoutray"  # a finished model becomes a version of it; "" = not registered

    def __post_init__(self):
        # The URI is written into config.yaml and every model artifact: no secrets in it.
        check("tracking.uri", "@" not in self.uri.split("://", 1)[-1].split("/", 1)[0],
              "a URI without credentials (MLflow reads MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD "
              "or MLFLOW_TRACKING_TOKEN from the environment)")
        check("tracking.experiment", bool(self.experiment.strip()), "a non-empty experiment name")


@dataclass
class RunConfig:
    phase: PhaseName = "phase1"
    model: ModelConfig = field(default_factory=ModelConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)

    def __post_init__(self):
        check("training.dense_weight", self.training.dense_weight == 0 or self.model.dense_cell > 0,
               f"0 when model.dense_cell is 0 (the model has no dense head); got {self.training.dense_weight}")
        if self.scaling.num_workers > 0:
            check("training.batch_size", self.training.batch_size % self.scaling.num_workers == 0,
                   f"a multiple of scaling.num_workers ({self.scaling.num_workers}); "
                   f"got {self.training.batch_size}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def micro_batch_size(self) -> int:
        if self.training.micro_batch_size:
            return self.training.micro_batch_size
        return max(1, self.training.batch_size // max(1, self.scaling.num_workers))


# ---------------------------------------------------------------------------- building
# One builder for every config file: run configs here, sweep files in layoutray/sweep_config.py.
# Types come from the dataclasses' annotations, values are checked by their __post_init__.

_SCALAR_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
_PLURAL_NAMES = {int: "integers", float: "numbers", bool: "booleans", str: "strings"}


def _field_names(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls) if f.init)


def _type_name(tp: Any) -> str:
    """How an error message says what a value must be."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        (item,) = typing.get_args(tp)
        if dataclasses.is_dataclass(item):
            return f"a list of {{{_field_names(item)}}}"
        return "a list of " + _PLURAL_NAMES.get(item, _type_name(item))
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {_field_names(tp)}"
    return _SCALAR_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _scalar(key: str, tp: type, value: Any) -> Any:
    if tp is float and not isinstance(value, bool):
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str):
            # YAML 1.1 reads "1e-4" (no dot) as a string; accept it as the number it means.
            try:
                return float(value)
            except ValueError:
                pass
    if not isinstance(value, tp) or (tp is int and isinstance(value, bool)):
        raise ConfigError(key, f"must be {_type_name(tp)}; got {value!r}")
    return value


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """`value` as annotation `tp`: a dataclass, list[...], Literal[...], `X | None` or a scalar."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(tp):
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))  # only `X | None` is used
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key + ".")
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            raise ConfigError(key, f"must be {_type_name(tp)}; got {value!r}")
        (item,) = typing.get_args(tp)
        return [_coerce(f"{key}[{i}]", item, v) for i, v in enumerate(value)]
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool) and {False: "off", True: "on"}[value] in allowed:
            value = {False: "off", True: "on"}[value]  # YAML 1.1 reads an unquoted off / on as a boolean
        if value not in allowed or type(value) is not type(allowed[0]):
            raise ConfigError(key, f"got {value!r}; allowed: {', '.join(repr(a) for a in allowed)}")
        return value
    return _scalar(key, tp, value)


def _rooted(prefix: str, key: str) -> str:
    """The full key path of an error raised by the __post_init__ of the dataclass at `prefix`.

    Sections name their keys from the file's root ("model.d_model"), which reads well however
    the dataclass was built. A dataclass that can sit anywhere names them from itself (a list
    item cannot know its index); those get the prefix here."""
    if not prefix or key == prefix[:-1] or key.startswith(prefix):
        return key
    return prefix + key


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        if not prefix:
            raise ConfigError("(file)", "must be a mapping at the top level")
        raise ConfigError(prefix[:-1], f"must be {_type_name(cls)}; got {data!r}")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    for k in data:
        if k not in names:
            raise ConfigError(prefix + str(k), f"unknown key; allowed keys here: {', '.join(names)}")
    for f in fields:
        if f.name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(prefix + f.name, "is required")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(prefix + k, hints[k], v) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(_rooted(prefix, e.key), e.problem, e.source) from None


def from_dict(cls: type[T], data: Any, prefix: str = "", source: str | None = None) -> T:
    """Build dataclass `cls`, and every dataclass, list, literal and scalar inside it, from a dict.

    Unknown keys are refused with the allowed ones, missing required keys named, values
    converted to their annotated types and then checked by each dataclass's __post_init__.
    A ConfigError names the dotted key path (under `prefix`, e.g. "arms[1].name") and `source`
    (the file, or where the dict came from)."""
    try:
        return _build(cls, data, prefix)
    except ConfigError as e:
        if source is None or e.source is not None:
            raise
        raise ConfigError(e.key, e.problem, source=source) from None


def read_yaml(path: str | Path) -> dict:
    """A config file's top-level mapping; a missing, unparseable or non-mapping file is a ConfigError."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError("(file)", "file not found", source=str(path)) from None
    except yaml.YAMLError as e:
        raise ConfigError("(file)", f"is not valid YAML: {e}", source=str(path)) from None
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError("(file)", "must be a mapping at the top level", source=str(path))
    return tree


def _set_dotted(tree: dict, dotted: str, raw: str) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(dotted, f"'{p}' is a value, not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def parse_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ConfigError(item, "an override must look like key=value, e.g. training.epochs=5",
                          source="--set")
    key, raw = item.split("=", 1)
    return key.strip(), raw


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                phase: str | None = None) -> RunConfig:
    """Load a phase YAML (by path, or by phase name from configs/phases) and apply --set overrides."""
    if path is None:
        if phase not in PHASES:
            raise ConfigError("phase", f"got {phase!r}; allowed: {', '.join(PHASES)}", source="--phase")
        path = CONFIG_DIR / "phases" / f"{phase}.yaml"
    tree = read_yaml(path)
    for item in overrides:
        key, raw = parse_override(item)
        try:
            _set_dotted(tree, key, raw)
        except ConfigError as e:
            raise ConfigError(e.key, e.problem, source="--set") from None
    src = str(path) + (f" (with --set {', '.join(overrides)})" if overrides else "")
    return from_dict(RunConfig, tree, source=src)


def config_from_dict(tree: dict) -> RunConfig:
    """Rebuild a RunConfig from `to_dict()` output (how configs travel to workers and artifacts)."""
    return from_dict(RunConfig, tree)


def dump_yaml(cfg: Any) -> str:
    """Any config dataclass as YAML that its loader reads back to an equal config."""
    return yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False)


# ---------------------------------------------------------------------------- auto phase


@dataclass
class PhaseChoice:
    phase: str
    examples: int
    reason: str
    next_phase: str | None
    examples_to_next: int | None


def load_thresholds(path: str | Path | None = None) -> list[tuple[str, int | None]]:
    """[(phase, max_examples or None)] in order, from configs/phases/thresholds.yaml."""
    path = Path(path or CONFIG_DIR / "phases" / "thresholds.yaml")
    rows = read_yaml(path).get("phases")
    if not isinstance(rows, list) or not rows:
        raise ConfigError("phases", "must be a non-empty list of {phase, max_examples}", source=str(path))
    out: list[tuple[str, int | None]] = []
    last = 0
    for i, row in enumerate(rows):
        key = f"phases[{i}]"
        if not isinstance(row, dict) or set(row) != {"phase", "max_examples"}:
            raise ConfigError(key, "must have exactly the keys phase, max_examples", source=str(path))
        if row["phase"] not in PHASES:
            raise ConfigError(key + ".phase", f"got {row['phase']!r}; allowed: {', '.join(PHASES)}",
                              source=str(path))
        cap = row["max_examples"]
        last_row = i == len(rows) - 1
        if last_row and cap is not None:
            raise ConfigError(key + ".max_examples", "must be null for the last phase (no upper bound)",
                              source=str(path))
        if not last_row and (not isinstance(cap, int) or cap <= last):
            raise ConfigError(key + ".max_examples", f"must be an integer above {last}; got {cap!r}",
                              source=str(path))
        out.append((row["phase"], cap))
        last = cap or last
    return out


def choose_phase(examples: int, thresholds: list[tuple[str, int | None]] | None = None) -> PhaseChoice:
    thresholds = thresholds or load_thresholds()
    lower = 0
    for i, (phase, cap) in enumerate(thresholds):
        if cap is None or examples <= cap:
            rng = f"{lower:,}+" if cap is None else f"{lower:,}-{cap:,}"
            nxt = thresholds[i + 1][0] if i + 1 < len(thresholds) else None
            to_next = (cap + 1 - examples) if cap is not None else None
            return PhaseChoice(phase, examples, f"{examples:,} examples is in {phase}'s range {rng}",
                               nxt, to_next)
        lower = cap + 1
    raise AssertionError("unreachable: the last threshold is unbounded")
