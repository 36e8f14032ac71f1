"""`model.fit` trains the objective of train_lib's loop: weight decay lives in the model's
kernel regularizers (`modeling.set_weight_decay`), in TF-slim's convention, on the
convolution kernels only; and the README's `model.fit` example runs as written."""
import os
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import train_lib
from deeplab_tf.data.converters import synthetic
from deeplab_tf.losses import pixel_cross_entropy, regularization_loss
from deeplab_tf.modeling import build_deeplabv3, set_output_stride, set_weight_decay
from helpers import META, _weights, dataset_fn, tiny_config
from conftest import TINY


def _slim_l2(kernels, weight_decay):
    """TF-slim's l2_regularizer, in float64: weight_decay * sum(w^2) / 2."""
    return weight_decay * sum((k.numpy().astype(np.float64) ** 2).sum() for k in kernels) / 2


def _conv_kernels(model):
    """The Conv kernels, found from the variables' paths (independently of the code)."""
    return [v for v in model.trainable_weights
            if v.path.endswith("/kernel") and "depthwise" not in v.path]


def test_regularization_is_slim_l2_on_conv_kernels_only():
    model = build_deeplabv3(3, **TINY, weight_decay=1e-4)
    kernels = _conv_kernels(model)
    assert any("aspp_pooling" in v.path for v in kernels)   # nested in ImagePooling
    assert {v.path for v in model.weights if v.regularizer is not None} == \
        {v.path for v in kernels}   # no bias, BN gamma/beta or moving statistic
    np.testing.assert_allclose(regularization_loss(model).numpy(), _slim_l2(kernels, 1e-4),
                               rtol=1e-5)
    # A frozen layer is not decayed (Keras counts trainable variables only).
    logits = model.get_layer("logits")
    logits.trainable = False
    rest = [v for v in kernels if not v.path.startswith("logits/")]
    np.testing.assert_allclose(regularization_loss(model).numpy(), _slim_l2(rest, 1e-4),
                               rtol=1e-5)
    set_weight_decay(model, 0)
    assert not model.losses and float(regularization_loss(model)) == 0.0


def test_mobilenet_depthwise_kernels_are_not_decayed():
    """research/deeplab's MobileNetV2 scope (regularize_depthwise=False) and Model Garden's
    (depthwise regularizer None)."""
    model = build_deeplabv3(3, backbone="mobilenet_v2", depth_multiplier=0.35,
                            weight_decay=4e-5)
    depthwise = [v for v in model.weights if "depthwise" in v.path]
    assert depthwise and all(v.regularizer is None for v in depthwise)
    np.testing.assert_allclose(regularization_loss(model).numpy(),
                               _slim_l2(_conv_kernels(model), 4e-5), rtol=1e-5)


def test_weight_decay_survives_keras_file_and_output_stride(tmp_path):
    model = build_deeplabv3(3, **TINY, weight_decay=1e-3)
    want = _slim_l2(_conv_kernels(model), 1e-3)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert loaded.get_config()["weight_decay"] == 1e-3
    np.testing.assert_allclose(regularization_loss(loaded).numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(regularization_loss(set_output_stride(model, 8)).numpy(), want,
                               rtol=1e-5)
    # A config saved before weight_decay existed (an older .keras file) still loads.
    older = {k: v for k, v in model.get_config().items() if k != "weight_decay"}
    assert type(model).from_config(older).losses == []
    with pytest.raises(ValueError, match="weight_decay=-1.0"):
        set_weight_decay(model, -1)


def test_keras_loss_with_ignore_class_is_our_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 9, 7, 4)).astype("float32")
    labels = rng.integers(0, 4, (2, 9, 7, 1))
    labels[rng.uniform(size=labels.shape) < 0.3] = 255
    total, count = pixel_cross_entropy(labels, logits)
    keras_loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=255)
    np.testing.assert_allclose(keras_loss(labels, logits).numpy(), (total / count).numpy(),
                               rtol=1e-6)


def _fit_one_step(config, batch, weight_decay):
    keras.utils.set_random_seed(config.train.seed)   # as train_lib.train: same initial weights
    model, optimizer, _ = train_lib.build_for_training(config, META,
                                                       tf.distribute.get_strategy())
    set_weight_decay(model, weight_decay)
    model.compile(optimizer=optimizer, jit_compile=False, loss=keras.losses.
                  SparseCategoricalCrossentropy(from_logits=True, ignore_class=255))
    model.fit(batch["image"], batch["label"], batch_size=len(batch["image"]), epochs=1,
              shuffle=False, verbose=0)
    assert int(optimizer.iterations) == 1
    return {v.path: v.numpy() for v in model.weights}


def test_fit_step_equals_custom_loop_step(tmp_path):
    """One SGD-momentum step of `model.fit` (same lr schedule, batch, no augmentation) and
    one of train_lib's loop: the same weights and BN statistics afterwards."""
    config = tiny_config("train.steps=1,train.base_lr=0.05,train.weight_decay=0.05")
    train_lib.train(config, str(tmp_path / "run"), META, dataset_fn(4))
    custom = _weights(str(tmp_path / "run"))
    batch = next(iter(dataset_fn(4)(tf.distribute.InputContext(), 0)))
    fit = _fit_one_step(config, batch, config.train.weight_decay)
    assert fit.keys() == custom.keys()
    worst = max(float(np.max(np.abs(fit[k] - custom[k]))) for k in custom)
    assert worst <= 1e-6
    # The decay matters at this tolerance: without it the step lands elsewhere.
    undecayed = _fit_one_step(config, batch, 0.0)
    assert max(float(np.max(np.abs(undecayed[k] - custom[k]))) for k in custom) > 1e-4


sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from readme import readme  # noqa: E402

README_FIT_EXAMPLE = readme.python_block("import keras")


def test_readme_fit_example_runs_as_written(tmp_path, monkeypatch):
    synthetic.convert(str(tmp_path / "data" / "synthetic"), num_train=8, num_val=2,
                      image_size=(129, 129), num_shards=1, num_workers=1)
    monkeypatch.chdir(tmp_path)
    scope = {}
    exec(compile(README_FIT_EXAMPLE, "README.md", "exec"), scope)
    model, history = scope["model"], scope["model"].history.history
    assert model.optimizer.iterations.numpy() == 10 and len(history["loss"]) == 1
    assert np.isfinite(history["loss"][0])
    assert model.losses and float(regularization_loss(model)) > 0
    loaded = keras.models.load_model(os.path.join(tmp_path, "quickstart_fit.keras"))
    assert loaded.get_config()["weight_decay"] == 1e-4
    for a, b in zip(loaded.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
