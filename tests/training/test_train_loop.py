"""The training loop: replica equivalence, resume, preemption, NaN guard, partial restore."""
import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf import train_lib
from deeplab_tf.testing import tiny_config
from helpers import META, dataset_fn

HELPERS = os.path.join(os.path.dirname(__file__), "helpers.py")


def run_scenario(name, tmp_path):
    # This checkout's deeplab_tf first: the child runs the code the parent tests.
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]))
    result = subprocess.run([sys.executable, HELPERS, name, str(tmp_path)], capture_output=True,
                            text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_replicas_equal_one_device_on_the_global_batch(tmp_path):
    out = run_scenario("replicas", tmp_path)
    np.testing.assert_allclose(out["loss"][0], out["loss"][1], rtol=1e-5)
    assert out["weights"] <= 1e-5
    assert out["moving_stats"] <= 1e-5
    assert out["moved"] > 1e-3  # the BN statistics really were updated by the step


def test_resume_equals_uninterrupted(tmp_path):
    out = run_scenario("resume", tmp_path)
    assert out["crash_checkpoint"] == "ckpt-3"
    assert out["max_abs"] <= 1e-6


def test_sigterm_saves_and_raises_preempted(tmp_path):
    config = tiny_config("train.steps=20,train.checkpoint_every=100")

    def preempt(step):
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(train_lib.Preempted) as info:
        train_lib.train(config, str(tmp_path), META, dataset_fn(4), hooks={"after_loop": preempt})
    assert info.value.step == 2
    assert os.path.basename(model_dir_lib.latest_checkpoint(str(tmp_path))) == "ckpt-2"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handler is removed


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path):
    config = tiny_config("train.steps=6,train.checkpoint_every=3")
    with pytest.raises(train_lib.NonFiniteLossError, match="step 5.*ckpt-3"):
        train_lib.train(config, str(tmp_path), META, dataset_fn(4, nan_from_step=5))
    latest = model_dir_lib.latest_checkpoint(str(tmp_path))
    assert os.path.basename(latest) == "ckpt-3"
    model, _, _ = model_dir_lib.load_model(str(tmp_path))
    assert all(np.all(np.isfinite(v.numpy())) for v in model.weights)


@pytest.mark.parametrize("where", ["local_model_dir", "ram_model_dir", "ram_checkpoint"])
def test_partial_restore_skips_logits_of_another_num_classes(tmp_path, caplog, where):
    """From another run's model_dir or one of its checkpoints, on a disk or on ram:// (the
    code path of gs://, where a model_dir was once taken for a checkpoint prefix)."""
    source = str(tmp_path / "source") if where.startswith("local") else \
        f"ram://partial-restore-{where}-{os.getpid()}/source"
    train_lib.train(tiny_config("train.steps=1"), source, META, dataset_fn(4))
    init = f"{source}/checkpoints/ckpt-1" if where.endswith("checkpoint") else source
    five = META.__class__("five", ("a", "b", "c", "d", "e"))
    config = tiny_config(f"train.steps=1,train.init_checkpoint={init},train.base_lr=1e-9,"
                         "train.weight_decay=0")
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.train"):
        train_lib.train(config, str(tmp_path / "target"), five, dataset_fn(4))
    assert "skipped 2: logits/kernel" in caplog.text and "logits/bias" in caplog.text
    src, _, _ = model_dir_lib.load_model(source)
    dst, _, meta = model_dir_lib.load_model(str(tmp_path / "target"))
    assert meta.num_classes == 5
    np.testing.assert_allclose(dst.get_layer("conv1_conv").kernel.numpy(),
                               src.get_layer("conv1_conv").kernel.numpy(), atol=1e-6)


def test_tensorboard_scalars_and_sample_images(tmp_path):
    config = tiny_config("train.steps=2,train.summary_images_every=2")
    train_lib.train(config, str(tmp_path), META, dataset_fn(4))
    tags = {}
    for event_file in tf.io.gfile.glob(str(tmp_path / "train" / "events.*")):
        for event in tf.compat.v1.train.summary_iterator(event_file):
            for value in event.summary.value:
                tags.setdefault(value.tag, []).append(event.step)
    assert {"loss", "learning_rate", "images_per_second"} <= set(tags)
    assert tags["samples/prediction"] == [2] and "samples/ground_truth" in tags


def test_xla_training_step_equals_the_plain_step(tmp_path):
    """train.jit_compile=true compiles the step with XLA: same weights after 2 steps."""
    weights = {}
    for jit in (False, True):
        model_dir = str(tmp_path / f"jit_{jit}")
        config = tiny_config(f"train.steps=2,train.steps_per_loop=2,train.jit_compile={jit}")
        train_lib.train(config, model_dir, META, dataset_fn(4))
        model, _, _ = model_dir_lib.load_model(model_dir)
        weights[jit] = [v.numpy() for v in model.weights]
    for plain, xla in zip(weights[False], weights[True]):
        np.testing.assert_allclose(xla, plain, rtol=1e-3, atol=1e-4)
