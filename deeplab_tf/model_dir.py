"""The model_dir contract shared by training, evaluation, inference and export.

    model_dir/
      config.json        the effective ExperimentConfig (configs.save_json)
      config-<step>.json the config it replaced at checkpoint <step>, when a resume changed
                         it (deeplab-train --allow_config_change; `config_change`)
      lease.json         held by the running trainer (`lease`)
      dataset.json       the dataset metadata: class names, colours, ignore value
      checkpoints/       tf.train.CheckpointManager: ckpt-N.index / .data-*, `checkpoint`

A checkpoint holds `model` (and, from training, `optimizer`, `step` and the data position);
readers restore only `model`, so any of them loads a training checkpoint.
"""
import contextlib

import tensorflow as tf

from deeplab_tf import configs, fileio
from deeplab_tf.data.metadata import DatasetMetadata

CONFIG = "config.json"
DATASET = "dataset.json"
CHECKPOINTS = "checkpoints"


def write_config(model_dir, config, metadata):
    """Writes config.json and dataset.json, each complete or not at all (fileio). A stored
    one that differs is kept first as config-<step>.json (dataset-<step>.json), <step> the
    latest checkpoint's: a resume that changed the config keeps the run's history."""
    fileio.makedirs(model_dir)
    for name, text in ((CONFIG, configs.to_json(config)), (DATASET, metadata.to_json())):
        path = fileio.join(model_dir, name)
        if fileio.exists(path) and fileio.read_text(path) != text:
            _keep_previous(model_dir, path)
        fileio.write_text(path, text)


def _checkpoint_steps(model_dir):
    """The steps of the checkpoints' index files, newest last (`checkpointing.indexed`)."""
    from deeplab_tf import checkpointing
    return [step for step, _ in checkpointing.indexed(checkpoint_dir(model_dir))]


def _keep_previous(model_dir, path):
    steps = _checkpoint_steps(model_dir)
    step = str(steps[-1]) if steps else "0"
    stem = fileio.basename(path)[:-len(".json")]
    target, n = fileio.join(model_dir, f"{stem}-{step}.json"), 1
    while fileio.exists(target):   # changed twice at one step: never over an earlier one
        n += 1
        target = fileio.join(model_dir, f"{stem}-{step}.{n}.json")
    fileio.write_text(target, fileio.read_text(path))


def check_resume(model_dir, config, metadata=None, allow_change=False):
    """Before a run writes anything into `model_dir`: if it holds checkpoints, compares its
    stored config (and classes) with `config` (`config_change.check`: raises
    ConfigChangeError listing the differences, unless each is allowed and `allow_change`).
    Returns the differences accepted ([] for a fresh model_dir)."""
    from deeplab_tf import config_change
    if not fileio.exists(fileio.join(model_dir, CONFIG)) or not _checkpoint_steps(model_dir):
        return []
    stored, stored_metadata = read_config(model_dir)
    return config_change.check(model_dir, stored, config, allow_change, stored_metadata,
                               metadata)


def read_config(model_dir):
    """(ExperimentConfig, DatasetMetadata) of a model_dir, with clear errors."""
    paths = [fileio.join(model_dir, n) for n in (CONFIG, DATASET)]
    for path in paths:
        if not fileio.exists(path):
            raise FileNotFoundError(f"{path} not found: {model_dir} is not a deeplab_tf "
                                    f"model_dir (written by deeplab-train)")
    config = configs.load_json(paths[0])
    metadata = DatasetMetadata.from_dict(fileio.read_json(paths[1]))
    return config, metadata


def checkpoint_dir(model_dir):
    return fileio.join(model_dir, CHECKPOINTS)


def latest_checkpoint(model_dir):
    return tf.train.latest_checkpoint(checkpoint_dir(model_dir))


PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@contextlib.contextmanager
def dtype_policy(precision):
    """Layers built within it compute in `precision`, a Keras dtype policy name ("float32":
    full precision; "mixed_bfloat16": bfloat16 compute with float32 weights, fast on TPUs,
    GPUs and CPUs with avx512_bf16/AMX; "mixed_float16": GPUs; None: the global policy as it
    is). The variables stay float32, so the same checkpoints load at any precision;
    DeepLabV3's logits leave the model in float32."""
    import keras
    if precision not in (None,) + PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision or previous)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_model(config, metadata, output_stride=None, sync_bn=False, precision=None):
    """The model of a config, with random weights (restore a checkpoint into it);
    `precision`: see `dtype_policy` (default: the global Keras policy)."""
    from deeplab_tf.modeling import build_deeplabv3
    kwargs = configs.model_kwargs(config.model, metadata.num_classes, sync_bn=sync_bn)
    if output_stride is not None:
        kwargs["output_stride"] = output_stride
    with dtype_policy(precision):
        return build_deeplabv3(**kwargs)


def load_model(model_dir, checkpoint=None, output_stride=None, precision=None):
    """(model, config, metadata) from a model_dir and a checkpoint (default: the latest).

    `output_stride` rebuilds the trained weights at another output stride (Sec. 4.1:
    train at 16, evaluate at 8); `precision` computes in another dtype policy
    ("mixed_bfloat16": `dtype_policy`) with the same float32 weights.
    """
    config, metadata = read_config(model_dir)
    path = checkpoint or latest_checkpoint(model_dir)
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(model_dir)}")
    model = build_model(config, metadata, output_stride=output_stride, precision=precision)
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
    return model, config, metadata
