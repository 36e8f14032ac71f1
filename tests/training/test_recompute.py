"""Activation checkpointing (train.recompute, deeplab_tf/recompute.py): the same gradients
and BN statistics as plain backpropagation, on both CPU kernel paths, under
MirroredStrategy and inside the training loop's tf.function; the recomputation is really in
the gradient graph; no new variables; the config key is checked and classified."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import recompute_runs
from helpers import META, dataset_fn, tiny_config

from deeplab_tf import config_change, configs, recompute, train_lib
from deeplab_tf import model_dir as model_dir_lib

RUNS = os.path.abspath(recompute_runs.__file__)


def _subprocess(args, onednn=None):
    env = dict(os.environ)
    if onednn is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = onednn
    run = subprocess.run([sys.executable, RUNS, *args], capture_output=True, text=True,
                         timeout=600, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.split("RESULT ", 1)[1])


def _check_equal(result, stage_sets):
    for stages in stage_sets:
        r = result[",".join(stages)]
        # Bitwise: the recomputation repeats the forward's ops on the same values, and the
        # backward's ops are those of plain autodiff (a sum of two gradients is
        # commutative); TF's CPU kernels are deterministic for a fixed shape.
        assert r["grads_equal"], (stages, r)
        assert r["stats_equal"], (stages, r)   # BN moving averages moved once, not twice
        assert r["stats_moved"] > 0, (stages, r)


def test_gradients_and_bn_statistics_equal_per_stage():
    """This process's CPU kernels (TF's default here), every stage alone and all together."""
    _check_equal(recompute_runs.gradients(), recompute_runs.STAGE_SETS)
    # A cascaded block (Sec. 3.2) at OS16.
    _check_equal(recompute_runs.gradients(
        [("block5",)], "model.output_stride=16,model.extra_blocks=1"), [("block5",)])


def test_gradients_equal_on_the_other_kernel_path():
    """The other CPU kernel path in a subprocess: oneDNN (the dilated Conv2D's native
    gradient) if this process runs TF's Eigen kernels, else Eigen, where atrous convs train
    through valid-tap convolutions and their hand-written gradient (modeling/atrous.py)."""
    from deeplab_tf.modeling.atrous import native_dilated_gradient
    here = "native" if native_dilated_gradient() else "valid_taps"
    sets = [("block4",), recompute.STAGES[:5]]
    args = ["gradients", ",".join("+".join(s) for s in sets)]
    result = _subprocess(args, onednn="0" if here == "native" else "1")
    assert result["conv_gradient"] != here
    _check_equal(result, sets)


def test_bn_updated_twice_without_the_stateless_scope(monkeypatch):
    """The check above can fail: without the StatelessScope around the recomputation, BN's
    moving averages move twice per step and the statistics differ."""
    monkeypatch.setattr(keras, "StatelessScope", lambda **kwargs: _Null())
    result = recompute_runs.gradients(stage_sets=[("block1",)])["block1"]
    assert result["grads_equal"] and not result["stats_equal"]


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *args):
        return False


def _conv_ops(model, stages):
    forward = recompute.training_forward(model, stages)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(forward(x))
        return tape.gradient(loss, model.trainable_variables)
    graph = step.get_concrete_function(tf.TensorSpec([2, 33, 33, 3])).graph
    ops = []

    def walk(g):
        for op in g.get_operations():
            ops.append(op.type)
        for f in g._functions.values():
            walk(f.graph)
    walk(graph)
    return ops.count("Conv2D")


def test_the_chosen_stages_forward_runs_again_in_the_gradient():
    """Structure, not timing: block2's 2 units (4 + 3 convs) and the stem (1) are computed
    once more in the gradient graph; nothing else is."""
    config = tiny_config(recompute_runs.UNITS)
    model = model_dir_lib.build_model(config, META)
    plain = _conv_ops(model, ())
    assert _conv_ops(model, ("block2",)) == plain + 7
    assert _conv_ops(model, ("stem", "block2")) == plain + 8


def test_no_new_variables_and_the_model_unchanged():
    config = tiny_config(recompute_runs.UNITS)
    model = model_dir_lib.build_model(config, META)
    before = [v.path for v in model.weights]
    x = np.random.default_rng(0).uniform(0, 255, (2, 33, 33, 3)).astype("float32")
    forward = recompute.training_forward(model, recompute.STAGES[:5])
    assert [v.path for v in model.weights] == before
    assert len(model.layers) == len(model_dir_lib.build_model(config, META).layers)
    # Inference mode is the model's own call; the training forward equals it in training.
    np.testing.assert_array_equal(forward(x).numpy(), model(x, training=True).numpy())


def test_training_loop_same_weights_and_resume_allowed(tmp_path):
    """train_lib.train, 3 steps in one tf.function call (steps_per_loop 3), with and
    without checkpointing every stage: the same weights and BN statistics; a run resumed
    with checkpointing turned on is a cadence change, allowed."""
    result = recompute_runs.train_both(
        str(tmp_path), tf.distribute.get_strategy,
        "train.steps=3,train.steps_per_loop=3,train.checkpoint_every=3")
    assert result["weights_equal"], result
    config = tiny_config(f"{recompute_runs.UNITS},train.steps=4,train.checkpoint_every=3,"
                         f"train.recompute=(block3)")
    assert config_change.ALLOWED["train.recompute"]
    with pytest.raises(config_change.ConfigChangeError, match="train.recompute"):
        train_lib.train(config, str(tmp_path / "plain"), META, dataset_fn(4))
    train_lib.train(config, str(tmp_path / "plain"), META, dataset_fn(4),
                    allow_config_change=True)
    assert model_dir_lib.latest_checkpoint(str(tmp_path / "plain")).endswith("ckpt-4")


def test_several_replicas_refused():
    """MirroredStrategy is refused, with the key and what to do: its synchronized-BN
    all-reduces in the recomputation mismatched across replicas at run time
    (recompute_runs.mirrored reproduces it)."""
    model = model_dir_lib.build_model(tiny_config(recompute_runs.UNITS), META)
    with pytest.raises(ValueError, match=r"train.recompute=\('block3',\).*has 2.*"
                                         r"train.recompute=\(\)"):
        recompute.training_forward(model, ("block3",), replicas=2)


@pytest.mark.parametrize("value,words", [
    ("(block3,block9)", ["train.recompute=('block3', 'block9')", "['block9']",
                         "'stem', 'block1', 'block2', 'block3', 'block4'"]),
    ("(block5)", ["['block5']", "model.extra_blocks=0"]),
    ("(head)", ["['head']"]),
])
def test_unknown_stage_is_a_config_error(value, words):
    with pytest.raises(configs.ConfigError) as error:
        configs.apply_overrides(configs.ExperimentConfig(), f"train.recompute={value}")
    for word in words:
        assert word in str(error.value)


def test_cascaded_blocks_and_default():
    assert configs.ExperimentConfig().train.recompute == ()
    config = configs.apply_overrides(configs.ExperimentConfig(),
                                     "model.extra_blocks=3,train.recompute=(block3,block7)")
    assert config.train.recompute == ("block3", "block7")
    with pytest.raises(configs.ConfigError, match="mobilenet_v2"):
        configs.apply_overrides(configs.ExperimentConfig(),
                                "model.backbone=mobilenet_v2,train.recompute=(block1)")
