"""Evaluation: mIoU of a model on whole images, as the paper reports it (Sec. 4, Table 6).

Each image is predicted whole, with the protocol of `deeplab_tf.inference` (padding with
the mean pixel to OS*k+1, scales and flips averaged as probabilities at the original size,
sliding windows above `max_side`), and compared with its full-resolution ground truth:
the predictions are cut back to the original size, never the labels resized. Pixels
labelled 255 are ignored. Metrics come from one confusion matrix (deeplab_tf.metrics),
accumulated per replica and summed once at the end.

Results of a run go to `output_dir` (default model_dir/eval): `results-<step>.json` and
`results.json` (the latest), TensorBoard scalars (`eval/miou`, `eval/pixel_accuracy`,
`eval_iou/<class>`), `class_iou.png` and `confusion_matrix.png`.

A sidecar evaluator (`follow`: `deeplab-eval --watch`, or `deeplab-train` as TF_CONFIG's
"evaluator" task) follows a training run from its model_dir alone: it waits for the
run's config, evaluates each new checkpoint once (one whose results-<step>.json exists is
not evaluated again, so a restarted evaluator resumes) and stops after the run's last step.
"""
import logging
import re
import time

import keras
import tensorflow as tf

from deeplab_tf import fileio, metrics, model_dir as model_dir_lib, precise_bn, visualize
from deeplab_tf.inference import Protocol, predict_probabilities


_log = logging.getLogger("deeplab_tf.eval")


class DatasetMismatchError(ValueError):
    """Records of another dataset than the model's (class count, names or ignore label)."""


class ResultsWriteError(OSError):
    """Computed results that could not be written (a full disk, no permission); `result`
    holds them, and the message repeats the mIoU."""

    def __init__(self, message, result):
        super().__init__(message)
        self.result = result


def records_dataset(pattern, metadata=None, model_dir=None):
    """Whole evaluation images of deeplab-build-data TFRecords (a glob, comma-separated
    globs or a list): the data pipeline's eval mode, one image per element. With the
    model's `metadata` (from `model_dir`), the records are first `check_records`."""
    from deeplab_tf.data import pipeline
    if metadata is not None:
        check_records(pattern, metadata, model_dir)
    return pipeline.build_dataset(pattern, mode="eval", global_batch_size=1)


def _differences(records, model):
    """What differs between two DatasetMetadata that would make the mIoU meaningless."""
    out = []
    if records.num_classes != model.num_classes:
        out.append(f"{records.num_classes} classes in the records, {model.num_classes} in "
                   f"the model")
    elif records.class_names != model.class_names:
        out += [f"class {i}: {a!r} in the records, {b!r} in the model"
                for i, (a, b) in enumerate(zip(records.class_names, model.class_names))
                if a != b]
    if records.ignore_label != model.ignore_label:
        out.append(f"ignore label {records.ignore_label} in the records, "
                   f"{model.ignore_label} in the model")
    return out


def check_records(pattern, metadata, model_dir=None):
    """Refuses records whose dataset (the manifest.json beside them) is not the model's
    `metadata`: another class count, other class names or ignore label would give a
    meaningless mIoU. Records in a folder without a manifest (made by other tools) cannot
    be checked: one warning names those folders."""
    from deeplab_tf.data import pipeline
    from deeplab_tf.data.manifest import MANIFEST, read_manifest_json
    from deeplab_tf.data.metadata import DatasetMetadata
    model_source = (fileio.join(model_dir, model_dir_lib.DATASET) if model_dir
                    else "the model's dataset metadata")
    unchecked = []
    for folder in sorted({fileio.dirname(f) for f in pipeline.list_files(pattern)}):
        data = read_manifest_json(folder)
        if data is None:
            unchecked.append(folder)
            continue
        records = DatasetMetadata.from_dict(data["metadata"])
        differences = _differences(records, metadata)
        if differences:
            raise DatasetMismatchError(
                f"the records are not of the model's dataset: "
                f"{fileio.join(folder, MANIFEST)} describes {records.name!r} "
                f"({records.num_classes} classes, ignore label {records.ignore_label}), "
                f"{model_source} {metadata.name!r} ({metadata.num_classes} classes, ignore "
                f"label {metadata.ignore_label}): " + "; ".join(differences))
    if unchecked:
        _log.warning("no %s beside the records in %s: their classes are not checked against "
                     "%s (%d classes: %s)", MANIFEST, ", ".join(unchecked), model_source,
                     metadata.num_classes, ", ".join(metadata.class_names))


def _whole_image(features):
    """(images float32 [1, h, w, 3], labels [1, h, w]) cut to the stored height/width, so a
    pipeline that pads for batching still yields exactly the original pixels."""
    images = tf.cast(features["image"], tf.float32)
    labels = features["label"]
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    if "height" in features and "width" in features:
        h = tf.cast(tf.reshape(features["height"], [-1])[0], tf.int32)
        w = tf.cast(tf.reshape(features["width"], [-1])[0], tf.int32)
        images, labels = images[:, :h, :w], labels[:, :h, :w]
    return images, labels


def evaluate(model, dataset, metadata, protocol, strategy=None, verbose=1):
    """Confusion matrix and metrics of `model` on `dataset` under `protocol`.

    Args:
      model: a DeepLabV3 (built inside `strategy.scope()` when a strategy is given).
      dataset: a tf.data.Dataset of dicts with "image" (RGB 0-255, [H, W, 3]) and "label"
        ([H, W] or [H, W, 1], 255 ignored), optionally "height"/"width" (the true size of
        a padded element); elements may also come batched, then they are unbatched, as
        the eval mode of `deeplab_tf.data.pipeline.build_dataset` yields them. Every
        image is evaluated whole, one per replica per step.
      metadata: the DatasetMetadata (class names, ignore value).
      protocol: an inference.Protocol.
      strategy: a tf.distribute strategy; None for the default one.
      verbose: 1 shows a progress bar.
    Returns:
      `metrics.summarize(...)` plus "images": the number of images evaluated.
    """
    strategy = strategy or tf.distribute.get_strategy()
    num_classes = metadata.num_classes
    if model.builder_args["num_classes"] != num_classes:
        raise ValueError(f"model has {model.builder_args['num_classes']} classes, dataset "
                         f"{metadata.name!r} {num_classes}")
    if dataset.element_spec["image"].shape.rank == 4:
        dataset = dataset.unbatch()
    size = int(dataset.cardinality())
    dataset = dataset.batch(1).prefetch(tf.data.AUTOTUNE)

    def dataset_fn(context):
        if context.num_input_pipelines > 1:
            return dataset.shard(context.num_input_pipelines, context.input_pipeline_id)
        return dataset

    dist_dataset = strategy.distribute_datasets_from_function(dataset_fn)
    with strategy.scope():
        matrix = metrics.ConfusionMatrixAccumulator(num_classes, metadata.ignore_label)

    def replica_step(features):
        def predict():
            images, labels = _whole_image(features)
            probs = predict_probabilities(model, images, protocol, num_classes, model.mean_rgb)
            matrix.update(labels, tf.argmax(probs, -1))
            return tf.shape(images)[0]

        # The last step of an odd number of images leaves some replicas an empty batch.
        return tf.cond(tf.shape(features["image"])[0] > 0, predict, lambda: tf.constant(0))

    # The element spec has None for height and width: one trace serves every image size.
    @tf.function(input_signature=[dist_dataset.element_spec])
    def step(features):
        counts = strategy.run(replica_step, args=(features,))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, counts, axis=None)

    progress = keras.utils.Progbar(size if size > 0 else None, verbose=verbose,
                                   unit_name="image")
    done = 0
    for features in dist_dataset:
        n = int(step(features))
        done += n
        progress.add(n)
    progress.update(done, finalize=True)   # ends the bar's line (its size may be unknown)
    if done == 0:
        raise ValueError("the evaluation dataset is empty")
    result = metrics.summarize(matrix.result(), metadata.class_names)
    result["images"] = done
    return result


def checkpoint_step(path):
    """The training step of a checkpoint: its `step` variable if saved, else the N of
    ckpt-N (the CheckpointManager's number)."""
    reader = fileio.checkpoint_reader(path)
    for key in ("step/.ATTRIBUTES/VARIABLE_VALUE",
                "optimizer/iterations/.ATTRIBUTES/VARIABLE_VALUE"):
        if reader.has_tensor(key):
            return int(reader.get_tensor(key))
    match = re.search(r"-(\d+)$", path)
    return int(match.group(1)) if match else 0


def restore(model, path):
    """Restores a (training) checkpoint's model weights; fails if any is missing."""
    tf.train.Checkpoint(model=model).restore(path).expect_partial() \
        .assert_existing_objects_matched()


def write_results(result, output_dir, metadata, step, extra=None):
    """JSON (each file whole or absent, fileio), TensorBoard scalars and the two plots of
    one evaluation, as PNG files and as TensorBoard images."""
    output_dir = str(output_dir)
    fileio.makedirs(output_dir)
    record = dict(result, step=int(step), **(extra or {}))
    for name in (f"results-{step}.json", "results.json"):
        fileio.write_json(fileio.join(output_dir, name), record)
    writer = tf.summary.create_file_writer(output_dir)
    with writer.as_default(step=int(step)):
        for key in ("miou", "pixel_accuracy"):
            if result[key] is not None:
                tf.summary.scalar(f"eval/{key}", result[key])
        for name, value in result["per_class_iou"].items():
            if value is not None:
                tf.summary.scalar(f"eval_iou/{name}", value)
    writer.flush()
    iou = [float("nan") if v is None else v for v in result["per_class_iou"].values()]
    visualize.plot_class_iou(iou, metadata.class_names, fileio.join(output_dir, "class_iou.png"),
                             title=f"{metadata.name}, step {step}: per-class IoU")
    visualize.plot_confusion_matrix(result["confusion_matrix"], metadata.class_names,
                                    fileio.join(output_dir, "confusion_matrix.png"),
                                    title=f"{metadata.name}, step {step}")
    with writer.as_default(step=int(step)):   # the same pictures in TensorBoard
        for name in ("class_iou", "confusion_matrix"):
            png = fileio.read_bytes(fileio.join(output_dir, f"{name}.png"))
            tf.summary.image(f"eval/{name}", tf.io.decode_png(png, channels=3)[None])
    writer.flush()
    return record


def run_evaluation(model_dir, dataset, checkpoint=None, output_dir=None, protocol=None,
                   strategy=None, watch=False, watch_timeout=None, verbose=1, precision=None):
    """Evaluates a model_dir's checkpoint (default the latest), or with `watch` each new
    checkpoint of a running training job (each step once: one with results in
    `output_dir` is skipped) until none comes for `watch_timeout` seconds or the last
    training step is reached.

    The model is rebuilt from the model_dir's config at `protocol.output_stride` with the
    trained weights (Sec. 4.1: train at 16, evaluate at 8). `protocol` defaults to the
    config's `eval` section; `precision` e.g. "mixed_bfloat16" (model_dir.dtype_policy).
    `dataset` may be a function returning it, called at the first evaluation (a sidecar
    evaluator may start before the training job has written its data).
    Returns the list of result records written.
    """
    config, metadata = model_dir_lib.read_config(model_dir)
    protocol = protocol or Protocol.from_config(config.eval)
    output_dir = output_dir or fileio.join(model_dir, "eval")
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        model = model_dir_lib.build_model(config, metadata, precision=precision,
                                          output_stride=protocol.output_stride)
    if watch:
        paths = tf.train.checkpoints_iterator(model_dir_lib.checkpoint_dir(model_dir),
                                              timeout=watch_timeout)
    else:
        path = checkpoint or model_dir_lib.latest_checkpoint(model_dir)
        if path is None:
            raise FileNotFoundError(f"no checkpoint in {model_dir_lib.checkpoint_dir(model_dir)}")
        paths = [path]
    records = []
    for path in paths:
        try:
            step = checkpoint_step(path)
            earlier = fileio.join(output_dir, f"results-{step}.json")
            if watch and fileio.exists(earlier):
                if verbose:
                    print(f"step {step}: evaluated before ({earlier})", flush=True)
                if step >= config.train.steps:
                    break
                continue   # evaluated before (this evaluator restarted)
            restore(model, path)
        except tf.errors.NotFoundError:
            if not watch:
                raise
            # The training job's CheckpointManager (max_to_keep) deleted it meanwhile.
            print(f"{path} was deleted before it could be evaluated; skipped")
            continue
        if callable(dataset):
            dataset = dataset()
        if verbose:
            print(f"evaluating {path} (step {step}), {protocol}")
        # Precise BN ran before the run's final checkpoint only.
        applied = config.train.precise_bn_batches if step >= config.train.steps else 0
        message = precise_bn.convergence_warning(config.model.bn_momentum, step, applied,
                                                 config.model.freeze_bn)
        if message:
            logging.getLogger("deeplab_tf.eval").warning("%s (checkpoint %s)", message, path)
        result = evaluate(model, dataset, metadata, protocol, strategy, verbose)
        if verbose:   # shown before any write: a write that fails cannot lose them
            print_result(result, step)
        try:
            records.append(write_results(result, output_dir, metadata, step,
                                         dict(checkpoint=path, protocol=protocol.to_dict(),
                                              precision=precision or "float32")))
        except (OSError, tf.errors.OpError) as e:
            cause = getattr(e, "message", None) or str(e)
            raise ResultsWriteError(
                f"could not write the results of step {step} (mIoU {result['miou']:.4f}, pixel "
                f"accuracy {result['pixel_accuracy']:.4f}) to {output_dir}: {cause}", result) from e
        if watch and step >= config.train.steps:
            break
    return records


def print_result(result, step):
    """The mIoU, pixel accuracy and per-class IoU of one evaluation, on stdout."""
    print(f"step {step}: mIoU {result['miou']:.4f}, pixel accuracy "
          f"{result['pixel_accuracy']:.4f} on {result['images']} images")
    for name, iou in result["per_class_iou"].items():
        print(f"  {name:<20} {'-' if iou is None else f'{iou:.4f}'}", flush=True)


def wait_for_config(model_dir, timeout, poll_seconds=1.0):
    """(config, metadata) of a model_dir, waiting up to `timeout` seconds for the training
    job to write them; TimeoutError after that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return model_dir_lib.read_config(model_dir)
        except FileNotFoundError as e:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no training run appeared in {timeout:.0f} s: {e}")
        time.sleep(poll_seconds)


def follow(model_dir, records=None, output_dir=None, protocol_overrides=None, timeout=3600,
           strategy=None, precision=None, verbose=1):
    """The sidecar evaluator (module docstring): evaluates every checkpoint of the run in
    `model_dir` as it appears, on `records` (default: the run's data.eval_records), with
    the run's `eval` protocol and `protocol_overrides` (Protocol fields). Stops after the
    run's last step, or when `timeout` seconds pass without a config or a new checkpoint.
    Returns the result records written."""
    if verbose and not fileio.exists(fileio.join(model_dir, model_dir_lib.CONFIG)):
        print(f"waiting for a training run in {model_dir}", flush=True)
    config, metadata = wait_for_config(model_dir, timeout)
    protocol = Protocol.from_config(config.eval, **(protocol_overrides or {}))
    records = records or config.data.eval_records
    if not records:
        raise ValueError(f"no evaluation records: the config of {model_dir} has no "
                         f"data.eval_records")
    if verbose:
        print(f"following {model_dir} until step {config.train.steps}", flush=True)
    return run_evaluation(model_dir, lambda: records_dataset(records, metadata, model_dir),
                          output_dir=output_dir,
                          protocol=protocol, strategy=strategy, watch=True,
                          watch_timeout=timeout, verbose=verbose, precision=precision)
