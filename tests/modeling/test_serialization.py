"""get_config round-trips for every custom layer; .keras save/load; output-stride switch."""
import inspect

import numpy as np
import pytest
import keras

from deeplab_tf.modeling import DeepLabV3, build_deeplabv3, set_output_stride
from deeplab_tf.modeling import aspp, layers
from deeplab_tf.testing import TINY

# Non-default values for constrained arguments; every other argument gets a value derived
# from its default's type, so a new constructor argument is covered automatically.
CHOICES = {
    "padding": {"Conv": "explicit", "MaxPool": "same"},
    "mode": "torch",
    "kernel_initializer": "glorot_uniform",
    "kernel_regularizer": None,
    "strides": 2,
    "dilation_rate": 1,
    "kernel_size": 3,
    "activation": "swish",
}


def non_default_arguments(cls):
    args = {}
    for name, p in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        if name in CHOICES:
            choice = CHOICES[name]
            args[name] = choice[cls.__name__] if isinstance(choice, dict) else choice
        elif isinstance(p.default, bool):
            args[name] = not p.default
        elif isinstance(p.default, float):
            args[name] = p.default / 2 if p.default else 0.25
        elif isinstance(p.default, int):
            args[name] = p.default + 1
        elif p.default is p.empty:
            args[name] = 7
        else:
            raise AssertionError(f"{cls.__name__}.{name}: add a value to CHOICES")
    return args


LAYERS = [layers.Conv, layers.MaxPool, layers.InputNormalization, layers.ResizeLike,
          aspp.ImagePooling]


@pytest.mark.parametrize("cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_config_round_trip(cls):
    args = non_default_arguments(cls)
    layer = cls(**args, name="x")
    config = layer.get_config()
    for name, value in args.items():
        got = config[name]
        if name == "kernel_initializer":
            got = keras.initializers.deserialize(got).__class__.__name__.lower()
            value = value.replace("_", "")
        assert got == value, name
    clone = cls.from_config(config)
    assert clone.get_config() == config


def test_deeplab_config_round_trip():
    args = dict(TINY, num_classes=4, output_stride=8, multi_grid=(1, 2, 2),
                aspp_rates=(3, 6, 9), extra_blocks=1, head="aspp", image_pooling=False,
                dropout_rate=0.1, bn_momentum=0.9, sync_bn=True, activation="swish",
                layout="slim", stem="deep",
                depths=(1, 1, 1, 3), input_normalization="torch", upsample_logits=False)
    model = DeepLabV3(**args)
    config = model.get_config()
    for name, p in inspect.signature(DeepLabV3.__init__).parameters.items():
        if name in ("self", "kwargs", "backbone_weights"):
            continue
        assert name in config, f"get_config drops {name}"
        if name in args:
            assert config[name] == args[name], name
    assert DeepLabV3.from_config(config).get_config() == config


@pytest.mark.parametrize("options", [dict(), dict(head="cascade", extra_blocks=1,
                                                  dropout_rate=0.1, layout="garden")])
def test_keras_save_and_load(tmp_path, options):
    model = build_deeplabv3(3, output_stride=8, **TINY, **options)
    # Move BN statistics away from their initial values so loading them is checked.
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.moving_mean.assign(np.random.uniform(-1, 1, c))
            layer.moving_variance.assign(np.random.uniform(0.5, 2, c))
    x = np.random.default_rng(0).uniform(0, 255, (1, 49, 65, 3)).astype("float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, DeepLabV3)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_set_output_stride_keeps_every_variable():
    model = build_deeplabv3(3, output_stride=16, **TINY)
    rng = np.random.default_rng(1)
    for v in model.weights:
        if v.path.endswith(("gamma", "moving_variance")):
            v.assign(v.numpy() * rng.uniform(0.5, 1.5, v.shape))
        else:
            v.assign(v.numpy() + rng.normal(0, 0.05, v.shape))
    os8 = set_output_stride(model, 8)
    assert os8.builder_args["output_stride"] == 8
    assert os8.get_layer("conv5_block1_2_conv").dilation_rate == 4
    assert os8.get_layer("aspp_1_conv").dilation_rate == 12
    assert [v.path for v in os8.weights] == [v.path for v in model.weights]
    for a, b in zip(os8.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    x = np.random.default_rng(0).uniform(0, 255, (1, 65, 65, 3)).astype("float32")
    for m in (model, os8):
        assert np.all(np.isfinite(m.predict(x, verbose=0)))


@pytest.mark.parametrize("layout", ["keras", "slim", "garden"])
def test_checkpoint_restores_at_another_output_stride(tmp_path, layout):
    """Object-based checkpoints match layers by position: the layer list of every layout
    must not depend on the output stride (train at 16, evaluate at 8)."""
    import tensorflow as tf
    options = dict(TINY, depths=(1, 2, 2, 3), layout=layout)   # strided units not first
    model = build_deeplabv3(3, output_stride=16, **options)
    for v in model.weights:
        v.assign(np.random.default_rng(0).normal(0, 0.1, v.shape))
    path = tf.train.Checkpoint(model=model).write(str(tmp_path / "ckpt"))
    os8 = build_deeplabv3(3, output_stride=8, **options)
    tf.train.Checkpoint(model=os8).read(path).assert_consumed()
    for a, b in zip(os8.weights, model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
