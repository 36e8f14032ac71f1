"""Checkpoint conversion: read a foreign checkpoint, map its variables onto DeepLabV3, write a
model_dir that every tool loads.

A source (`garden`, `slim`, `slim_mobilenet_v2`, `tflite`) provides two functions (and
`tflite` a third, `reader(path)`, for a format that is not a TF checkpoint):

    infer(shapes, path) -> dict     the architecture its variables imply (ModelConfig fields,
                                    plus "num_classes" and "num_aspp_rates"), with clear
                                    errors for what we cannot express
    mapper(model, shapes) -> name   name(unit, kind, weight) -> (checkpoint variable,
                                    transform or None) feeding that variable of ours, or None

Our variables are addressed as (unit, kind, weight): "conv3_block2_1_conv/kernel" is
("conv3_block2_1", "conv", "kernel"), "aspp_pooling/bn/gamma" is ("aspp_pooling", "bn",
"gamma"), "logits/bias" is ("logits", "conv", "bias").
"""
import dataclasses
import json
import re

import numpy as np
import tensorflow as tf

from deeplab_tf import configs, fileio, model_dir, publish
from deeplab_tf.data import metadata as metadata_lib
from deeplab_tf.modeling import resnet

# Checkpoint entries that are bookkeeping, not variables.
_NOT_VARIABLES = ("_CHECKPOINTABLE_OBJECT_GRAPH",)
# Optimizer and step state, and TF-slim's moving-average shadows of the weights (research/
# deeplab trains from the weights themselves): reported as a count (listed in
# conversion.json), never mapped.
_STATE_MARKERS = (".OPTIMIZER_SLOT", "/Momentum", "global_step", "save_counter", "/Adam",
                  "/RMSProp", "/ExponentialMovingAverage")
# A converted model_dir, and nothing else, may be replaced (overwrite): it holds
# conversion.json and config.json, and no top-level name but these (a model_dir trained on
# since has train/, eval/, ...: the user's work).
CONVERSION = "conversion.json"
CONVERTED_NAMES = frozenset({model_dir.CONFIG, model_dir.DATASET, model_dir.CHECKPOINTS,
                             CONVERSION})


@dataclasses.dataclass
class Conversion:
    """What a conversion did: the model_dir, the mapping, and what was left unmapped."""
    checkpoint: str
    model_dir: str
    architecture: dict
    mapped: dict                 # our variable path -> checkpoint variable name
    unmapped_checkpoint: list    # checkpoint variables that fed nothing (state included)
    unmapped_model: list         # our variables left at their initial values

    @property
    def unmapped_state(self):
        return [n for n in self.unmapped_checkpoint if any(m in n for m in _STATE_MARKERS)]

    def summary(self):
        state = set(self.unmapped_state)
        weights = [n for n in self.unmapped_checkpoint if n not in state]
        lines = [f"{len(self.mapped)} variables converted from {self.checkpoint}",
                 f"model_dir: {self.model_dir}",
                 f"architecture: {json.dumps(self.architecture)}",
                 f"checkpoint variables not used ({len(weights)}):"]
        lines += [f"  {n}" for n in weights]
        if state:
            lines.append(f"optimizer/step/moving-average state not used: {len(state)} "
                         f"variables (listed in conversion.json)")
        lines.append(f"model variables not in the checkpoint, left initialized "
                     f"({len(self.unmapped_model)}):")
        lines += [f"  {n}" for n in self.unmapped_model]
        return "\n".join(lines)


# A checkpoint's files: PREFIX.index and PREFIX.data-00000-of-00001 (named for a prefix).
_CHECKPOINT_FILE = re.compile(r"(.+)\.(index|data-\d{5}-of-\d{5})")


def resolve_checkpoint(path):
    """A checkpoint prefix from a prefix, one of its files or a directory (its latest
    checkpoint)."""
    m = _CHECKPOINT_FILE.fullmatch(path)
    if m and not fileio.exists(path + ".index") and fileio.exists(m.group(1) + ".index"):
        return m.group(1)
    if fileio.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise FileNotFoundError(f"{path}: a directory without a `checkpoint` file; pass "
                                    f"the checkpoint prefix (e.g. {path}/model.ckpt-30000)")
        return latest
    if not fileio.exists(path + ".index") and not fileio.exists(path):
        raise FileNotFoundError(f"{path}: no checkpoint there (expected {path}.index)")
    return path


def split_path(path):
    """Our variable path -> (unit, kind, weight); see the module docstring."""
    *layer, weight = path.split("/")
    layer = "/".join(layer)
    for suffix, kind in (("_conv", "conv"), ("/conv", "conv"), ("_bn", "bn"), ("/bn", "bn")):
        if layer.endswith(suffix):
            return layer[: -len(suffix)], kind, weight
    return layer, "conv", weight


def assign_variables(model, reader, source_name):
    """Assigns every variable of `model` that `source_name(unit, kind, weight)` maps; checks
    every shape.

    Returns (mapped {our path: source name}, unmapped our paths). Raises ValueError naming
    both variables and both shapes on any mismatch, before the model is used.
    """
    shapes = reader.get_variable_to_shape_map()
    mapped, unmapped, values = {}, [], []
    for variable in model.weights:
        unit, kind, weight = split_path(variable.path)
        found = source_name(unit, kind, weight)
        if found is None or found[0] not in shapes:
            unmapped.append(variable.path)
            continue
        name, transform = found
        try:
            value = reader.get_tensor(name)
        except (tf.errors.OpError, IndexError) as e:   # IndexError: a truncated data file
            raise ValueError(f"checkpoint variable {name} cannot be read (a truncated or "
                             f"damaged data file?): {e}") from None
        if transform is not None:
            value = transform(value)
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"shape mismatch: checkpoint variable {name} has shape {list(value.shape)}, "
                f"model variable {variable.path} expects {list(variable.shape)}")
        if name in mapped.values():
            raise ValueError(f"checkpoint variable {name} mapped twice (second: {variable.path})")
        mapped[variable.path] = name
        values.append((variable, value))
    for variable, value in values:
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return mapped, unmapped


def backbone_name(depths):
    """resnet50/101/152 for their unit counts, else resnet{3 * units + 2}."""
    for name, d in resnet.DEPTHS.items():
        if tuple(d) == tuple(depths):
            return name
    return f"resnet{3 * sum(depths) + 2}"


def default_class_names(num_classes):
    if num_classes == len(metadata_lib.VOC_CLASSES):
        return metadata_lib.VOC_CLASSES
    if num_classes == len(metadata_lib.CITYSCAPES_CLASSES):
        return metadata_lib.CITYSCAPES_CLASSES
    return tuple(f"class_{i}" for i in range(num_classes))


def convert(source, checkpoint, output_dir, overrides=None, num_classes=None,
            class_names=None, allow_partial=False, overwrite=False):
    """Converts `checkpoint` with `source` (a module: infer, mapper) into a model_dir.

    Args:
      overrides: ModelConfig fields the checkpoint cannot tell (output_stride, multi_grid,
        aspp_rates, activation), applied over the inferred architecture.
      num_classes: needed only when the checkpoint has no logits (a backbone checkpoint).
      class_names: names for dataset.json (default: VOC's for 21 classes, Cityscapes' for 19).
      allow_partial: write the model_dir even if some model variables are not in the
        checkpoint (e.g. an ImageNet backbone: the head keeps its initialization).
      overwrite: replace an existing output_dir.
    Returns:
      a `Conversion`.
    """
    check_output_dir(output_dir, overwrite, checkpoint)   # before any work
    path = resolve_checkpoint(checkpoint)
    # A source may read another format (tflite) through its own `reader(path)`.
    reader = source.reader(path) if hasattr(source, "reader") else _open(path)
    shapes = reader.get_variable_to_shape_map()
    arch = source.infer(shapes, path)
    found_classes = arch.pop("num_classes", None)
    if num_classes is not None and found_classes is not None and num_classes != found_classes:
        raise ValueError(f"num_classes={num_classes}, but the logits in {path} have "
                         f"{found_classes} classes")
    num_classes = num_classes or found_classes
    if num_classes is None:
        raise ValueError(f"{path} has no logits: pass num_classes (and allow_partial)")
    arch.update(overrides or {})
    num_rates = arch.pop("num_aspp_rates", None)
    if num_rates is not None and len(arch.get("aspp_rates") or (0, 0, 0)) != num_rates:
        raise ValueError(f"{path} has {num_rates} atrous ASPP branches: pass aspp_rates "
                         f"with {num_rates} rates (the checkpoint does not store them)")
    config = configs.validate(configs.ExperimentConfig(
        name=f"converted_{source.__name__.rsplit('.', 1)[-1]}",
        model=configs.ModelConfig(backbone_weights=None, **arch)))
    names = tuple(class_names or default_class_names(num_classes))
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for {num_classes} classes")
    metadata = metadata_lib.DatasetMetadata(name=config.name, class_names=names)
    model = model_dir.build_model(config, metadata)

    try:
        mapper = source.mapper(model, reader if hasattr(source, "reader") else shapes)
        mapped, unmapped_model = assign_variables(model, reader, mapper)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if unmapped_model and not allow_partial:
        raise ValueError(f"{len(unmapped_model)} model variables have no counterpart in "
                         f"{path}: {', '.join(unmapped_model)} (allow_partial keeps their "
                         f"initial values)")
    used = set(mapped.values())
    unmapped_checkpoint = sorted(n for n in shapes if n not in used and n not in _NOT_VARIABLES)
    arch_out = {k: v for k, v in dataclasses.asdict(config.model).items()
                if k in arch or k in ("output_stride", "multi_grid", "aspp_rates",
                                      "activation")}
    result = Conversion(path, output_dir, dict(arch_out, num_classes=num_classes), mapped,
                        unmapped_checkpoint, unmapped_model)
    write_model_dir(output_dir, config, metadata, model, result, overwrite, (checkpoint,))
    return result


def _open(path):
    """A reader of the TF checkpoint at `path`, or a ValueError saying what it is not."""
    try:
        return fileio.checkpoint_reader(path)
    except tf.errors.OpError as e:
        hint = " (extract the archive first, then pass the checkpoint prefix)" if \
            path.endswith((".tar.gz", ".tgz", ".tar", ".zip")) else ""
        raise ValueError(f"{path}: not a readable TensorFlow checkpoint{hint}: "
                         f"{e.message}") from None


def check_output_dir(output_dir, overwrite, source):
    """Refuses an output_dir that overwrite may not replace: one that is not a converted
    model_dir (CONVERTED_NAMES), or is or holds the `source` checkpoint."""
    publish.check_replaceable(output_dir, model_dir.CONFIG, overwrite, CONVERTED_NAMES,
                             (model_dir.CONFIG, CONVERSION), protected=(source,))


def write_model_dir(output_dir, config, metadata, model, result, overwrite=False,
                    protected=()):
    """config.json, dataset.json, checkpoints/ckpt-0 and conversion.json, all or nothing:
    written to a staging folder, then published (publish.publish_dir) with config.json, the
    file that makes a folder a model_dir for its readers, last. `overwrite` replaces only
    a converted model_dir (check_output_dir), never one holding a `protected` path."""
    def write(staging):
        model_dir.write_config(staging, config, metadata)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                             model_dir.checkpoint_dir(staging), max_to_keep=1)
        manager.save(checkpoint_number=0)
        report = dict(dataclasses.asdict(result), unmapped_state=result.unmapped_state)
        fileio.write_json(fileio.join(staging, CONVERSION), report, indent=1)
    publish.publish_dir(output_dir, write, model_dir.CONFIG, overwrite=overwrite,
                       expected_names=CONVERTED_NAMES,
                       required_names=(model_dir.CONFIG, CONVERSION), protected=protected)
