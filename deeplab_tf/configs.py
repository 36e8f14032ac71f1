"""Experiment configuration: frozen dataclasses, typed overrides, JSON round-trip.

Sections: model, data, train (optimizer and schedule included), eval, export. Defaults are
the paper's values (Sec. 4); experiments/ derives its presets with `dataclasses.replace`.
A config is turned into builder arguments in exactly one place: `model_kwargs`.
"""
import dataclasses
import json
import types
import typing
from typing import Optional, Tuple

# ResNet stages whose activations `train.recompute` may recompute in the backward pass
# (deeplab_tf/recompute.py): the endpoints of modeling/resnet.py, blocks 5-7 with
# model.extra_blocks.
RECOMPUTE_STAGES = ("stem",) + tuple(f"block{b}" for b in range(1, 8))


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """DeepLabv3 architecture (Sec. 3); see `deeplab_tf.modeling.DeepLabV3`."""
    backbone: str = "resnet101"
    output_stride: int = 16            # paper: 16 to train, 8 to evaluate (Sec. 4.1)
    multi_grid: Tuple[int, ...] = (1, 2, 4)
    aspp_rates: Optional[Tuple[int, ...]] = None   # None: (6, 12, 18) at OS16, doubled at 8
    extra_blocks: int = 0
    head: str = "aspp"
    image_pooling: bool = True
    aspp_filters: int = 256
    dropout_rate: float = 0.0
    bn_momentum: float = 0.9997        # the original's decay; short runs from scratch: ~0.99
    activation: str = "relu"           # "swish" for Model Garden's registered configs
    layout: str = "keras"
    stem: str = "7x7"
    input_normalization: Optional[str] = None      # None: what the layout's weights expect
    depths: Optional[Tuple[int, ...]] = None
    width_multiplier: float = 1.0
    depth_multiplier: float = 1.0      # backbone "mobilenet_v2" only
    backbone_weights: Optional[str] = "imagenet"   # "imagenet", a weights file, or None
    freeze_bn: bool = False            # stage 2 (Sec. 4.1): BN statistics and scales frozen


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """TFRecords written by `deeplab-build-data` and the augmentation of Sec. 4.1."""
    train_records: str = ""            # file pattern, e.g. data/voc/train_aug-*.tfrecord
    eval_records: str = ""
    crop_size: Tuple[int, int] = (513, 513)
    min_scale: float = 0.5
    max_scale: float = 2.0
    scale_step: float = 0.25           # the original's discrete steps; 0 for continuous
    bootstrap_classes: Tuple[str, ...] = ()   # Sec. 4.1 bootstrapping of hard classes
    bootstrap_factor: int = 1
    shuffle_buffer: int = 1000
    seed: int = 0
    # Generate the embedded synthetic dataset into the records' folder if it has no
    # manifest yet (the quickstart and tests; deeplab_tf.data.synthetic).
    generate_synthetic: bool = False
    # Train without records that fail their CRC or do not decode (one decoding pass at the
    # start finds them; deeplab-train reports how many). False: such a record is an error
    # naming its shard and index.
    skip_corrupt_records: bool = False


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimizer, schedule and loop (Sec. 4.1)."""
    steps: int = 30000
    batch_size: int = 16               # global batch, split over replicas
    base_lr: float = 0.007
    lr_power: float = 0.9              # poly: lr = base * (1 - step / steps) ** power
    warmup_steps: int = 0
    momentum: float = 0.9
    weight_decay: float = 1e-4         # TF-slim convention: 1e-4 * sum(w^2) / 2, conv kernels
    steps_per_loop: int = 10           # steps inside one tf.function call
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    init_checkpoint: str = ""          # another run's model_dir or checkpoint (partial restore)
    log_every: int = 10
    # TensorBoard images of 3 training crops, ground truth and prediction every N steps and
    # at the end (one forward pass of 3 crops each time); 0: off.
    summary_images_every: int = 1000
    seed: int = 0                      # weight initialization (the data has its own seed)
    # XLA for the training step. Off: slower on CPU (measured: README, Benchmarks);
    # try it on GPU/TPU (TPUs compile with XLA regardless).
    jit_compile: bool = False
    # Activation checkpointing (deeplab_tf/recompute.py): stages of RECOMPUTE_STAGES whose
    # activations the backward pass recomputes (same gradients, less memory, one more
    # forward of those stages). Recommended at OS8 when memory-bound: (block3,), -23% peak
    # for ~+9% CPU time (docs/benchmarks.md, "Activation checkpointing"). One replica only.
    recompute: Tuple[str, ...] = ()
    # Precise BN (deeplab_tf/precise_bn.py): before the final checkpoint, recompute every BN
    # layer's moving statistics over this many training batches. 0: off.
    precise_bn_batches: int = 0
    # deeplab-train's follow-up once training ends (the quickstart turns them on): evaluate
    # on data.eval_records, export a SavedModel, write coloured predictions of N val images.
    then_evaluate: bool = False
    then_export: bool = False
    then_predict: int = 0


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """Evaluation as the paper does it (Sec. 4.1, Table 6)."""
    output_stride: int = 8
    scales: Tuple[float, ...] = (1.0,)  # paper's best: 0.5, 0.75, 1.0, 1.25, 1.5, 1.75
    flip: bool = False
    pad_to: Optional[Tuple[int, int]] = None   # None: next OS*k+1; (513, 513) as the original
    max_side: int = 2048               # sliding window above this side length


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    output_stride: int = 8
    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False
    probabilities: bool = False


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    export: ExportConfig = ExportConfig()


class ConfigError(ValueError):
    """A bad override or config file: names the key and what was expected."""


def to_dict(config):
    return dataclasses.asdict(config)


def from_dict(d, cls=ExperimentConfig, path=""):
    """Builds a config from a dict (e.g. a model_dir's config.json), checking every key and,
    for a whole ExperimentConfig, the ranges (`validate`), as overrides are checked."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(d, dict):
        raise ConfigError(f"{path.rstrip('.') or 'config'}={d!r}: expected a mapping of "
                          f"{', '.join(sorted(path + n for n in names))}")
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(path + k for k in unknown)}; "
                          f"valid: {sorted(path + n for n in names)}")
    values = {}
    for name, value in d.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = from_dict(value, hint, f"{path}{name}.")
        else:
            values[name] = _coerce(value, hint, path + name)
    config = cls(**values)
    return validate(config) if cls is ExperimentConfig else config


def to_json(config):
    return json.dumps(to_dict(config), indent=2) + "\n"


def save_json(config, path):
    from deeplab_tf import fileio
    fileio.write_text(path, to_json(config))


def load_json(path):
    from deeplab_tf import fileio
    return from_dict(fileio.read_json(path))


def valid_keys(config):
    keys = []
    for section in dataclasses.fields(config):
        value = getattr(config, section.name)
        if dataclasses.is_dataclass(value):
            keys += [f"{section.name}.{f.name}" for f in dataclasses.fields(value)]
        else:
            keys.append(section.name)
    return keys


def _split_overrides(text):
    """Splits "a=1,b=(1,2),c=x" on the commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([" and 1 or 0
        depth -= ch in ")]" and 1 or 0
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p.strip() for p in parts if p.strip()]


def _parse_scalar(text, typ, key):
    text = text.strip()
    try:
        if typ is bool:
            if text.lower() in ("true", "1", "yes"):
                return True
            if text.lower() in ("false", "0", "no"):
                return False
            raise ValueError
        if typ is int:
            return int(text)
        if typ is float:
            return float(text)
    except ValueError:
        raise ConfigError(f"{key}={text!r}: expected {typ.__name__}") from None
    return text.strip("'\"")


def _coerce(value, hint, key):
    """Converts `value` (a string from the command line, or JSON) to the field's type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _coerce(value, inner, key)
    if origin is tuple:
        if isinstance(value, str):
            items = [v for v in value.strip().strip("()[]").split(",") if v.strip()]
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ConfigError(f"{key}={value!r}: expected a tuple, e.g. (1,2,4)")
        typ = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(items) != len(args):
            raise ConfigError(f"{key}={value!r}: expected {len(args)} values")
        return tuple(_coerce(v, typ, key) for v in items)
    if isinstance(value, str):
        return _parse_scalar(value, hint, key)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r}: expected {hint.__name__}")
    return value


def derive(config, name=None, **sections):
    """A variant of `config`: derive(base, model=dict(output_stride=8), train=dict(...)).

    Experiments derive their variants this way (dataclasses.replace per section), never by
    copying a config.
    """
    updates = {}
    for section, fields in sections.items():
        current = getattr(config, section)
        updates[section] = dataclasses.replace(current, **fields)
    if name is not None:
        updates["name"] = name
    return validate(dataclasses.replace(config, **updates))


def apply_overrides(config, overrides):
    """Applies "section.key=value,..." (typed, never evaluated as code) to `config`.

    Values are parsed by the field's declared type; an unknown key is an error listing
    the valid keys. Tuples are written (1,2,4) or [1,2,4].
    """
    if not overrides:
        return config
    for item in _split_overrides(overrides):
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected section.key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        section_name, _, field = key.partition(".")
        section = getattr(config, section_name, None)
        if not dataclasses.is_dataclass(section) or field not in \
                {f.name for f in dataclasses.fields(section)}:
            raise ConfigError(f"unknown key {key!r}; valid keys: {', '.join(valid_keys(config))}")
        hint = typing.get_type_hints(type(section))[field]
        value = _coerce(text, hint, key)
        config = dataclasses.replace(
            config, **{section_name: dataclasses.replace(section, **{field: value})})
    validate(config)
    return config


def validate(config):
    """Range checks that must fail before any work starts."""
    m, d, t, e = config.model, config.data, config.train, config.eval
    checks = [
        (m.output_stride in (8, 16, 32, 64, 128, 256), "model.output_stride",
         m.output_stride, "8, 16 or 32 (64-256 with extra_blocks)"),
        (e.output_stride in (8, 16, 32, 64, 128, 256), "eval.output_stride", e.output_stride,
         "8, 16 or 32"),
        (0 <= m.extra_blocks <= 3, "model.extra_blocks", m.extra_blocks, "0..3"),
        (min(d.crop_size) >= 1, "data.crop_size", d.crop_size, "positive sizes"),
        (0 < d.min_scale <= d.max_scale, "data.min_scale/max_scale",
         (d.min_scale, d.max_scale), "0 < min_scale <= max_scale"),
        (t.steps >= 1, "train.steps", t.steps, ">= 1"),
        (t.batch_size >= 1, "train.batch_size", t.batch_size, ">= 1"),
        (t.base_lr > 0, "train.base_lr", t.base_lr, "> 0"),
        (t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0"),
        (0 <= m.bn_momentum < 1, "model.bn_momentum", m.bn_momentum, "in [0, 1)"),
        (t.steps_per_loop >= 1, "train.steps_per_loop", t.steps_per_loop, ">= 1"),
        (t.precise_bn_batches >= 0, "train.precise_bn_batches", t.precise_bn_batches, ">= 0"),
        # 0 would keep no checkpoint (or divide by zero in the loop): the run's work is lost.
        (t.checkpoint_every >= 1, "train.checkpoint_every", t.checkpoint_every, ">= 1"),
        (t.keep_checkpoints >= 1, "train.keep_checkpoints", t.keep_checkpoints, ">= 1"),
        (t.warmup_steps >= 0, "train.warmup_steps", t.warmup_steps, ">= 0"),
        (t.log_every >= 1, "train.log_every", t.log_every, ">= 1"),
        (t.summary_images_every >= 0, "train.summary_images_every", t.summary_images_every,
         ">= 0 (0: off)"),
        (t.then_predict >= 0, "train.then_predict", t.then_predict, ">= 0 (0: off)"),
        (all(s > 0 for s in e.scales), "eval.scales", e.scales, "positive scales"),
    ]
    for ok, key, value, expected in checks:
        if not ok:
            raise ConfigError(f"{key}={value}: expected {expected}")
    stages = RECOMPUTE_STAGES[:5 + m.extra_blocks] if m.backbone != "mobilenet_v2" else ()
    unknown = [s for s in t.recompute if s not in stages]
    if unknown:
        raise ConfigError(f"train.recompute={t.recompute}: unknown stage(s) {unknown}; "
                          f"expected a subset of {stages} (model.backbone={m.backbone}, "
                          f"model.extra_blocks={m.extra_blocks})")
    return config


def model_kwargs(model_config, num_classes, sync_bn=False):
    """The one place a ModelConfig becomes `build_deeplabv3` arguments."""
    m = model_config
    return dict(
        num_classes=num_classes, backbone=m.backbone, output_stride=m.output_stride,
        multi_grid=m.multi_grid, aspp_rates=m.aspp_rates, extra_blocks=m.extra_blocks,
        head=m.head, image_pooling=m.image_pooling, aspp_filters=m.aspp_filters,
        dropout_rate=m.dropout_rate, bn_momentum=m.bn_momentum, activation=m.activation,
        layout=m.layout, stem=m.stem, depths=m.depths, width_multiplier=m.width_multiplier,
        input_normalization=m.input_normalization, sync_bn=sync_bn,
        depth_multiplier=m.depth_multiplier)
