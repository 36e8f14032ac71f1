"""Activation checkpointing against plain backpropagation, on tiny ResNets (also run as
subprocesses: another CPU kernel path, two logical devices under MirroredStrategy).

    python recompute_runs.py gradients [S+S,S]  # JSON {stages: {...}} per stage set
    python recompute_runs.py mirrored WORKDIR  # 2 replicas, sync BN, steps_per_loop 2
        (fails: "Shape mismatch in the collective instance"; train_lib refuses replicas > 1)
"""
import json
import os
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from helpers import META, dataset_fn, tiny_config, toy_examples  # noqa: E402

from deeplab_tf import model_dir as model_dir_lib  # noqa: E402
from deeplab_tf import recompute  # noqa: E402
from deeplab_tf.losses import replica_loss  # noqa: E402
from deeplab_tf.modeling.atrous import native_dilated_gradient  # noqa: E402
from deeplab_tf.modeling import set_weight_decay  # noqa: E402

# Several units per block (each unit is a checkpoint), atrous rates 2 and 4 in block4
# (OS8: block3 atrous too) and ASPP: the valid-tap gradient path runs where TF has no
# native dilated gradient.
UNITS = "model.depths=(2,2,3,2),model.multi_grid=(1,2)"
STAGE_SETS = [("stem",), ("block1",), ("block2",), ("block3",), ("block4",),
              ("block2", "block4"), recompute.STAGES[:5]]


def one_step(model, stages, images, labels):
    """Gradients of one training step's loss, and the BN moving statistics after it; the
    model's weights are restored afterwards."""
    before = [v.numpy() for v in model.weights]
    set_weight_decay(model, 1e-4)     # the loss carries weight decay, as in training
    forward = recompute.training_forward(model, stages)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss, _ = replica_loss(y, forward(x), model, META.ignore_label)
        return tape.gradient(loss, model.trainable_variables)
    grads = {v.path: g.numpy() for v, g in zip(model.trainable_variables, step(images, labels))}
    stats = {v.path: v.numpy() for v in model.non_trainable_weights}
    for v, value in zip(model.weights, before):
        v.assign(value)
    return grads, stats


def compare(a, b):
    """(bitwise equal, max |a - b|) over the variables of two {path: array} dicts."""
    assert a.keys() == b.keys()
    return (all(np.array_equal(a[k], b[k]) for k in a),
            max(float(np.max(np.abs(a[k] - b[k]))) for k in a))


def gradients(stage_sets=STAGE_SETS, overrides="model.output_stride=8"):
    """{",".join(stages): {"grads_equal", "grads_max", "stats_equal", "stats_moved"}}."""
    config = tiny_config(f"{UNITS},{overrides}")
    keras.utils.set_random_seed(0)
    model = model_dir_lib.build_model(config, META)
    images, labels = toy_examples(4, 33)
    initial = {v.path: v.numpy() for v in model.non_trainable_weights}
    grads, stats = one_step(model, (), images, labels)
    out = {"conv_gradient": "native" if native_dilated_gradient() else "valid_taps"}
    for stages in stage_sets:
        g, s = one_step(model, stages, images, labels)
        out[",".join(stages)] = dict(
            zip(("grads_equal", "grads_max"), compare(g, grads)),
            **dict(zip(("stats_equal", "stats_max"), compare(s, stats))),
            stats_moved=compare(s, initial)[1])
    return out


def weights(model_dir):
    model, _, _ = model_dir_lib.load_model(model_dir)
    return {v.path: v.numpy() for v in model.weights}


def train_both(workdir, strategy_fn, overrides):
    """deeplab_tf.train_lib.train without and with train.recompute of every stage: the
    weights and BN statistics of the last checkpoint, compared."""
    from deeplab_tf import train_lib
    runs = {}
    for name, stages in (("plain", "()"), ("recompute", "(stem,block1,block2,block3,block4)")):
        config = tiny_config(f"{UNITS},{overrides},train.recompute={stages}")
        train_lib.train(config, os.path.join(workdir, name), META, dataset_fn(4),
                        strategy=strategy_fn())
        runs[name] = weights(os.path.join(workdir, name))
    equal, worst = compare(runs["recompute"], runs["plain"])
    return {"weights_equal": equal, "weights_max": worst}


def mirrored(workdir):
    """2 replicas x 2 images, synchronized BN, 2 steps in one tf.function call. Calls
    recompute.training_forward without its refusal of several replicas."""
    original = recompute.training_forward
    recompute.training_forward = lambda model, stages, replicas=1: original(model, stages)

    def strategy():
        s = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert s.num_replicas_in_sync == 2
        return s
    return train_both(workdir, strategy,
                      "train.steps=2,train.steps_per_loop=2,train.checkpoint_every=2")


if __name__ == "__main__":
    if sys.argv[1] == "mirrored":
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        print("RESULT " + json.dumps(mirrored(sys.argv[2])))
    else:
        sets = [tuple(s.split("+")) for s in sys.argv[2].split(",")] if len(sys.argv) > 2 \
            else STAGE_SETS
        print("RESULT " + json.dumps(gradients(sets)))
