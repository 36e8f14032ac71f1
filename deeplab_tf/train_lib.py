"""The training loop (Sec. 4.1): one custom loop on tf.distribute, read top to bottom.

    strategy -> model + SGD(poly lr) in strategy.scope() -> restore or initialize
    -> distributed dataset positioned at the restored step -> loop of `steps_per_loop` steps
       inside one tf.function -> progress, TensorBoard, checkpoints, preemption, NaN guard

Several workers (MultiWorkerMirroredStrategy): the chief restores the latest checkpoint and
every other worker the same one; all train in step; only the chief writes config, summaries
and results; saving is collective, so the others write their copy into a temporary folder,
removed after each save.

Exit status: a preemption notice (SIGTERM, SIGINT, a GCE maintenance or preemption event),
agreed on by every worker (`preemption`), saves a checkpoint and raises `Preempted`;
`deeplab-train` turns it into exit status 75 (EX_TEMPFAIL), so a job scheduler restarts the
job instead of taking it for done; the restarted job resumes from that checkpoint.
"""
import dataclasses
import logging
import os
import re
import time

import keras
import numpy as np
import tensorflow as tf

from deeplab_tf import checkpointing, fileio, precise_bn, preemption, recompute
from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf.losses import replica_loss
from deeplab_tf.modeling import set_weight_decay
from deeplab_tf.modeling.layers import all_layers
from deeplab_tf.progress import Progress
from deeplab_tf.schedules import PolyWithWarmup

PREEMPTED_EXIT_CODE = 75
STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")


class Preempted(Exception):
    """Training stopped by a preemption notice after saving a checkpoint (exit status 75)."""

    def __init__(self, step, checkpoint, reason="a signal"):
        super().__init__(f"stopped at step {step} ({reason}); checkpoint saved: {checkpoint}")
        self.step, self.checkpoint, self.reason = step, checkpoint, reason


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; no checkpoint was written after the last good one."""


# ---------------------------------------------------------------------------- strategy

def make_strategy(name="default", tpu=None):
    """default: one CPU or GPU; mirrored: all local GPUs; multi_worker: TF_CONFIG; tpu."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("--strategy=multi_worker needs the TF_CONFIG environment variable")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"--strategy={name!r}, expected one of {STRATEGIES}")


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or resolver is None:
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict())


# ---------------------------------------------------------------------------- model

def build_for_training(config, metadata, strategy):
    """Model and optimizer, created in the strategy's scope (the optimizer is built before
    the first step, or `apply_gradients` fails under tf.distribute). The model carries
    train.weight_decay as kernel regularizers; `model.compile(optimizer, loss)` and
    `model.fit` with them train the objective of `train`'s loop."""
    with strategy.scope():
        model = model_dir_lib.build_model(config, metadata,
                                          sync_bn=strategy.num_replicas_in_sync > 1)
        set_weight_decay(model, config.train.weight_decay)   # in model.losses, as for fit
        if config.model.freeze_bn:  # stage 2 (Sec. 4.1): BN runs on its moving statistics
            for layer in all_layers(model):
                if isinstance(layer, keras.layers.BatchNormalization):
                    layer.trainable = False
        t = config.train
        schedule = PolyWithWarmup(t.base_lr, t.steps, t.lr_power, t.warmup_steps)
        optimizer = keras.optimizers.SGD(schedule, momentum=t.momentum)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(model.trainable_variables)
    return model, optimizer, schedule


def partial_restore(model, init_checkpoint):
    """Copies weights from another run (its model_dir or one of its checkpoints), variable
    by variable path; a variable whose shape differs (logits of another num_classes) or that
    is missing is skipped. Returns (restored paths, skipped paths with reasons)."""
    path = init_checkpoint
    if fileio.isdir(path):
        source_dir, path = path, model_dir_lib.latest_checkpoint(path)
        if path is None:
            raise FileNotFoundError(f"init_checkpoint {init_checkpoint}: no checkpoint there")
    else:
        source_dir = fileio.dirname(fileio.dirname(path))
    source, _, _ = model_dir_lib.load_model(source_dir, checkpoint=path)
    by_path = {v.path: v for v in source.weights}
    restored, skipped = [], []
    for v in model.weights:
        src = by_path.get(v.path)
        if src is None:
            skipped.append(f"{v.path} (not in {path})")
        elif tuple(src.shape) != tuple(v.shape):
            skipped.append(f"{v.path} (shape {tuple(src.shape)} there, {tuple(v.shape)} here)")
        else:
            v.assign(src)
            restored.append(v.path)
    return restored, skipped


# ---------------------------------------------------------------------------- loop

@dataclasses.dataclass
class TrainResult:
    step: int
    loss: float
    checkpoint: str
    images_per_second: float
    precise_bn_batches: int = 0   # BN statistics of `checkpoint` recomputed over N batches


def train(config, model_dir, metadata, dataset_fn, strategy=None, hooks=None,
          allow_config_change=False):
    """Trains `config` into `model_dir`; resumes from its latest checkpoint if any.

    Args:
      config: an `ExperimentConfig`.
      model_dir: where config.json, dataset.json, checkpoints/ and TensorBoard logs go.
      metadata: the dataset's `DatasetMetadata` (num_classes, ignore value).
      dataset_fn: `(input_context, start_step) -> tf.data.Dataset` of per-replica batches
        {"image": float [b, h, w, 3] raw 0-255, "label": int [b, h, w, 1]}, positioned so
        that its first batch is the batch of global step `start_step`.
      strategy: a tf.distribute strategy (default: the default strategy).
      hooks: optional fault-injection points, each a callable: "after_loop" fn(step)
        after each loop's steps; "at_boundary" fn(step, watcher) next, before the workers
        agree whether to stop (`preemption.hold_until_notice`); "before_save" fn(step),
        "mid_save" fn(step, path) (files written, not yet the latest) and "after_save"
        fn(step, path) around each checkpoint (`checkpointing`). A hook may raise or kill
        the process to simulate a crash there (tests/reliability/ does).
      allow_config_change: resume although the config differs from the model_dir's in keys
        `config_change.ALLOWED` (more steps...); the previous config is kept as
        config-<step>.json. Other differences are refused whatever this says.
    Raises:
      config_change.ConfigChangeError: the model_dir has checkpoints of another config
        (before anything is written; every worker decides the same from the same files).
      Preempted: after a preemption notice (`preemption`), once a checkpoint is saved.
      checkpointing.CheckpointWriteError: a checkpoint could not be written (disk full...).
      checkpointing.CheckpointRestoreError: checkpoints exist and none can be restored.
      NonFiniteLossError: the loss became NaN/inf; the last good checkpoint is kept.
    """
    strategy = strategy or tf.distribute.get_strategy()
    hooks = hooks or {}
    t = config.train
    chief = is_chief(strategy)
    log = logging.getLogger("deeplab_tf.train")
    # Compared before any write: on every worker, so all stop together on a refusal.
    model_dir_lib.check_resume(model_dir, config, metadata, allow_config_change)
    if chief:
        model_dir_lib.write_config(model_dir, config, metadata)
    keras.utils.set_random_seed(t.seed)  # same initial weights on every worker and rerun
    model, optimizer, schedule = build_for_training(config, metadata, strategy)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer)
    ckpt_dir = model_dir_lib.checkpoint_dir(model_dir)
    temp_dir = None   # other workers write their (identical) copy aside, as TF requires
    if not chief:
        temp_dir = fileio.join(model_dir, f"worker_tmp_{strategy.cluster_resolver.task_id}")
        fileio.rmtree(temp_dir)   # left by a killed run
    manager = checkpointing.make_manager(checkpoint, temp_dir or ckpt_dir, t.keep_checkpoints,
                                         optimizer.iterations, set_aside=chief)
    agreement = preemption.Agreement(strategy)

    # ------------------------------------------------ restore, or initialize
    latest = _restore(checkpoint, manager, ckpt_dir, chief, agreement)
    if latest:
        log.warning("resumed from %s at step %d", latest, int(optimizer.iterations.numpy()))
    elif t.init_checkpoint:
        restored, skipped = partial_restore(model, t.init_checkpoint)
        log.warning("initialized %d variables from %s; skipped %d: %s", len(restored),
                    t.init_checkpoint, len(skipped), "; ".join(skipped) or "none")
    elif config.model.backbone_weights:
        from deeplab_tf.modeling import load_backbone_weights
        names = load_backbone_weights(model, config.model.backbone, config.model.backbone_weights)
        log.warning("backbone initialized from %s (%d layers)", config.model.backbone_weights,
                    len(names))
    start = int(optimizer.iterations.numpy())

    # ------------------------------------------------ data, positioned at the restored step
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: dataset_fn(ctx, start))
    iterator = iter(dataset)

    # ------------------------------------------------ the step
    # model(images, training=True), with train.recompute's stages checkpointed.
    forward = recompute.training_forward(model, t.recompute, strategy.num_replicas_in_sync)

    def step_fn(batch):
        with tf.GradientTape() as tape:
            logits = forward(batch["image"])
            loss, ce = replica_loss(batch["label"], logits, model, metadata.ignore_label)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        skip = None
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # float16: Keras skips a step whose gradients overflow (and halves the loss
            # scale) by the replicas' own gradients, before they are summed; under
            # MirroredStrategy by the first replica's alone, so another replica's inf
            # went into the weights. All skip when one overflows: they add NaN.
            overflow = tf.distribute.get_replica_context().all_reduce(
                tf.distribute.ReduceOp.SUM, tf.cast(~tf.reduce_all(
                    [tf.reduce_all(tf.math.is_finite(g)) for g in grads]), tf.float32))
            skip = overflow > 0
            grads = [g + tf.where(skip, np.nan, 0.0) for g in grads]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        if skip is not None:  # a skipped step counts, as in Keras 2: the step counter stays
            # the number of batches read (data position on resume, checkpoint numbers)
            optimizer.iterations.assign_add(tf.cast(skip, optimizer.iterations.dtype))
        return ce

    if t.jit_compile:  # XLA compiles the step; the loop around it reads the iterator
        step_fn = tf.function(step_fn, jit_compile=True)

    @tf.function
    def train_steps(iterator, n):
        losses = tf.TensorArray(tf.float32, size=n)
        for i in tf.range(n):
            ce = strategy.run(step_fn, args=(next(iterator),))
            losses = losses.write(i, strategy.reduce(tf.distribute.ReduceOp.SUM, ce, axis=None))
        return losses.stack()

    # ------------------------------------------------ the loop
    # A preemption notice is read between loops; all workers agree on it, so all save
    # the same step and stop there (`preemption`).
    writer = tf.summary.create_file_writer(fileio.join(model_dir, "train")) if chief \
        else tf.summary.create_noop_writer()
    progbar = Progress(t.steps, unit="step", desc="train", enabled=chief, initial=start)
    step, loss, rate, saved = start, float("nan"), 0.0, latest
    with preemption.Watcher() as watcher, writer.as_default(), progbar:
        while step < t.steps:
            n = min(t.steps_per_loop, t.steps - step,
                    t.checkpoint_every - step % t.checkpoint_every)
            tick = time.perf_counter()
            losses = train_steps(iterator, tf.constant(n)).numpy()
            rate = n * t.batch_size / (time.perf_counter() - tick)
            if not np.all(np.isfinite(losses)):
                bad = step + int(np.argmin(np.isfinite(losses))) + 1
                raise NonFiniteLossError(
                    f"loss is {losses[~np.isfinite(losses)][0]} at step {bad}; training "
                    f"stopped, last good checkpoint: {saved or 'none'}")
            step += n
            loss = float(losses[-1])
            lr = float(schedule(step - 1))
            progbar.update(step, {"loss": loss, "lr": lr, "img/s": rate})
            tf.summary.scalar("loss", loss, step=step)
            tf.summary.scalar("learning_rate", lr, step=step)
            tf.summary.scalar("images_per_second", rate, step=step)
            if "after_loop" in hooks:
                hooks["after_loop"](step)
            if "at_boundary" in hooks:
                hooks["at_boundary"](step, watcher)
            stop = agreement.any_true(watcher.reason is not None)
            if step == t.steps and t.precise_bn_batches and not stop:
                log.warning("precise BN: recomputing BN moving statistics over %d training "
                            "batches", t.precise_bn_batches)
                _precise_bn(model, dataset_fn, strategy, step, t.precise_bn_batches, chief)
            if step % t.checkpoint_every == 0 or step == t.steps or stop:
                path = checkpointing.save(manager, step, hooks)
                saved = fileio.join(ckpt_dir, fileio.basename(path))   # the chief's copy
                if temp_dir:
                    fileio.rmtree(temp_dir)
            if chief and _samples_due(t.summary_images_every, step - n, step, t.steps):
                _write_sample_images(model, dataset_fn, metadata, step)
            if stop:
                raise Preempted(step, saved, watcher.reason or "a notice to another worker")
    precise = t.precise_bn_batches if step > start else 0
    if step == start == t.steps and t.precise_bn_batches:
        # A finished run, rerun with train.precise_bn_batches: recompute its final
        # checkpoint's BN statistics unless done with that N already; saved as that step.
        before = fileio.join(model_dir, "train_result.json")
        done = fileio.read_json(before).get("precise_bn_batches", 0) \
            if fileio.exists(before) else 0
        precise = t.precise_bn_batches
        if done != precise:
            log.warning("precise BN of finished step %d: recomputing BN moving statistics "
                        "over %d training batches", step, precise)
            _precise_bn(model, dataset_fn, strategy, step, precise, chief)
            path = checkpointing.save(manager, step, hooks)
            saved = fileio.join(ckpt_dir, fileio.basename(path))
            if temp_dir:
                fileio.rmtree(temp_dir)
    result = TrainResult(step, loss, saved, rate, precise)
    if step > start:
        message = precise_bn.convergence_warning(config.model.bn_momentum, step,
                                                 t.precise_bn_batches, config.model.freeze_bn)
        if message and chief:
            log.warning("%s", message)
    if chief:
        fileio.write_json(fileio.join(model_dir, "train_result.json"),
                          dataclasses.asdict(result))
    return result


def _precise_bn(model, dataset_fn, strategy, step, num_batches, chief):
    """precise_bn.recompute over the training batches that follow `step`."""
    batches = iter(strategy.distribute_datasets_from_function(
        lambda ctx: dataset_fn(ctx, step)))
    precise_bn.recompute(model, batches, num_batches, strategy, progress=chief)


def _samples_due(every, before, step, steps):
    """Whether the loop that went from `before` to `step` passed a multiple of `every`
    (loops of steps_per_loop need not land on one) or ended the run; every=0: never."""
    return bool(every) and (step // every > before // every or step == steps)


def _write_sample_images(model, dataset_fn, metadata, step, count=3):
    """TensorBoard: the first `count` training crops of the batch of `step`, their ground
    truth and the model's prediction (inference mode), coloured with the dataset's colour
    map (`DatasetMetadata.colormap()`, as visualize.colorize; ignored pixels white).
    Costs one forward pass of `count` crops and a fresh input pipeline's first batch."""
    batch = next(iter(dataset_fn(tf.distribute.InputContext(), step)))
    images = batch["image"][:count]
    pred = tf.argmax(model(images, training=False), axis=-1)
    colors = tf.constant(metadata.colormap())
    label = tf.cast(batch["label"][:count, ..., 0], tf.int32)
    pixels = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8)
    tf.summary.image("samples/image", pixels, step=step, max_outputs=count)
    tf.summary.image("samples/ground_truth", tf.gather(colors, label), step=step,
                     max_outputs=count)
    tf.summary.image("samples/prediction", tf.gather(colors, pred), step=step,
                     max_outputs=count)


_NONE, _FAILED = -1, -2   # checkpoint numbers the chief sends for none and for an error


def _restore(checkpoint, manager, ckpt_dir, chief, agreement):
    """The chief restores the newest readable checkpoint (`checkpointing.restore_latest`
    falls back past damaged ones and sets them aside); every other worker then restores
    that same checkpoint from checkpoints/ (its own folder holds temporary copies only).
    Returns the checkpoint's path, or None for a fresh start."""
    if chief:
        try:
            latest = checkpointing.restore_latest(checkpoint, manager)
            number = _NONE if latest is None else int(
                re.fullmatch(r"ckpt-(\d+)", fileio.basename(latest))[1])
        except Exception:
            agreement.from_chief(_FAILED, chief)   # the others stop too, instead of waiting
            raise
        agreement.from_chief(number, chief)
        return latest
    number = agreement.from_chief(_NONE, chief)
    if number == _FAILED:
        raise checkpointing.CheckpointRestoreError(
            f"the chief could not restore a checkpoint of {ckpt_dir}: its log says why")
    if number == _NONE:
        return None
    latest = fileio.join(ckpt_dir, f"ckpt-{number}")
    checkpointing.verify(latest)
    checkpoint.restore(latest).assert_existing_objects_matched()
    return latest
