"""Training runs in mixed precision for test_mixed_precision.py, one process per strategy
(one MirroredStrategy per process):

    python mixed_precision_runs.py default|mirrored WORKDIR   -> one JSON line, last on stdout

Each run overfits one batch of 4 toy examples for STEPS steps through `train_lib.train`.
The float16 run saves a checkpoint after every step, from which the test reads the
weights, the momentum, the step counter and the loss scale. At OVERFLOW_STEP the batch's
last image has no labeled pixel: that marks the step and, under 2 replicas, the second
replica (images 2 and 3). There an injected loss term, 4 * sum(logits kernel in float16),
overflows: its gradient, times the loss scale 2**15, is 2**17 > 65504, the largest
float16, so the logits kernel's gradient is inf on that replica alone (an overflow deeper
in the backward pass would reach every replica through the synchronized BN's all-reduce).
The step must be skipped on every replica.
"""
import json
import os
import sys
import traceback

import numpy as np
import tensorflow as tf

POLICIES = ("mixed_bfloat16", "mixed_float16")
STEPS = 8
OVERFLOW_STEP = 4


def overfit_dataset_fn(global_batch=4, unlabeled_step=None):
    """A dataset_fn (helpers.dataset_fn's contract) whose every global batch is the same
    `global_batch` toy examples; at step `unlabeled_step` (1-based) the last one has no
    labeled pixel."""
    from helpers import toy_examples
    images, labels = toy_examples(global_batch)
    unlabeled = labels.copy()
    unlabeled[-1] = 255

    def make(ctx, start_step):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        replicas_here = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        ds = tf.data.Dataset.from_tensor_slices((images, labels, unlabeled)).repeat()
        ds = ds.batch(per_replica, drop_remainder=True)
        ds = ds.enumerate().skip(start_step * replicas_here)

        def pick(i, batch):
            image, label, marked = batch
            if unlabeled_step is not None:
                label = tf.where(i // replicas_here + 1 == unlabeled_step, marked, label)
            return {"image": image, "label": label}
        return ds.map(pick)
    return make


def _losses(model_dir):
    """The per-step training loss, from the run's TensorBoard events."""
    losses = {}
    for path in tf.io.gfile.glob(os.path.join(model_dir, "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag == "loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return [losses[s] for s in sorted(losses)]


def _steps(model_dir, config, metadata):
    """From the checkpoint of every step: the step counter, the loss scale, whether the
    weights are finite, and how far the weights and the momentum moved in that step."""
    from deeplab_tf import model_dir as model_dir_lib
    model = model_dir_lib.build_model(config, metadata, precision="float32")
    value = "/.ATTRIBUTES/VARIABLE_VALUE"
    states = []
    for step in range(1, STEPS + 1):
        path = os.path.join(model_dir_lib.checkpoint_dir(model_dir), f"ckpt-{step}")
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        reader = tf.train.load_checkpoint(path)
        slots = sorted(k for k in reader.get_variable_to_shape_map()
                       if k.startswith("optimizer/inner_optimizer/_variables/"))
        assert slots, "no momentum in the checkpoint: not a LossScaleOptimizer's?"
        states.append((
            [v.numpy() for v in model.trainable_variables], [reader.get_tensor(k) for k in slots],
            int(reader.get_tensor("optimizer/inner_optimizer/_iterations" + value)),
            float(reader.get_tensor("optimizer/dynamic_scale" + value))))

    def moved(a, b):
        return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))
    return {"iterations": [s[2] for s in states], "scale": [s[3] for s in states],
            "finite_weights": all(bool(np.all(np.isfinite(w))) for s in states for w in s[0]),
            "weights_moved": [None] + [moved(b[0], a[0]) for a, b in zip(states, states[1:])],
            "slots_moved": [None] + [moved(b[1], a[1]) for a, b in zip(states, states[1:])]}


def _float32_first_loss(config):
    """The reference: the first step's loss in float32, computed as train() computes it
    (seeded weights, the first batch, replica_loss), without training."""
    import keras
    from deeplab_tf import model_dir as model_dir_lib
    from deeplab_tf.losses import replica_loss
    from helpers import META
    keras.utils.set_random_seed(config.train.seed)
    model = model_dir_lib.build_model(config, META, precision="float32")
    batch = next(iter(overfit_dataset_fn(4)(tf.distribute.InputContext(), 0)))
    logits = model(batch["image"], training=True)
    return float(replica_loss(batch["label"], logits, model)[1])


def _run(train_lib, policy, model_dir, strategy, compute_dtypes):
    from deeplab_tf.testing import tiny_config
    from helpers import META
    fp16 = policy == "mixed_float16"
    config = tiny_config(f"train.steps={STEPS},train.base_lr=0.02,"
                         f"train.checkpoint_every={1 if fp16 else STEPS},"
                         f"train.keep_checkpoints={STEPS}")
    dataset_fn = overfit_dataset_fn(4, OVERFLOW_STEP if fp16 else None)
    train_lib.train(config, model_dir, META, dataset_fn, strategy)
    out = {"losses": _losses(model_dir), "compute_dtypes": compute_dtypes["last"]}
    if fp16:
        out.update(_steps(model_dir, config, META))
        if strategy is None:  # the same run again: it is finished, no step runs
            rerun = train_lib.train(config, model_dir, META, dataset_fn)
            out["rerun"] = {"step": rerun.step, "ran_steps": rerun.loss == rerun.loss}
    return out


def main(strategy_name, workdir):
    if strategy_name == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from deeplab_tf import train_lib
    from deeplab_tf.testing import tiny_config
    strategy = None
    if strategy_name == "mirrored":
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
    compute_dtypes = {}
    build_for_training = train_lib.build_for_training

    def recording_build(*args, **kwargs):  # notes the dtypes of the model train() builds
        model, optimizer, schedule = build_for_training(*args, **kwargs)
        compute_dtypes["last"] = sorted({layer.compute_dtype for layer in
                                         model._flatten_layers() if layer.weights})
        return model, optimizer, schedule
    train_lib.build_for_training = recording_build
    replica_loss = train_lib.replica_loss

    def overflow_where_marked(labels, logits, model, *args):  # see the module docstring
        loss, ce = replica_loss(labels, logits, model, *args)
        kernel = next(v for v in model.trainable_variables if v.path == "logits/kernel")
        term = 4.0 * tf.cast(tf.reduce_sum(tf.cast(kernel, tf.float16)), tf.float32)
        return loss + tf.where(tf.reduce_all(tf.equal(labels[-1], 255)), term, 0.0), ce
    train_lib.replica_loss = overflow_where_marked

    results = {}
    for policy in POLICIES:
        keras.mixed_precision.set_global_policy(policy)  # as deeplab-train --mixed_precision
        try:
            results[policy] = _run(train_lib, policy, os.path.join(workdir, policy), strategy,
                                   compute_dtypes)
        except Exception:  # the other policy's run still reports
            results[policy] = {"error": traceback.format_exc()[-3000:]}
        keras.mixed_precision.set_global_policy("float32")
    if strategy is None:
        results["float32_first_loss"] = _float32_first_loss(tiny_config())
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
