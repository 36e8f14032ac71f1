"""Backbone families as components (modeling/backbone.py, backbones.py): a family is one
`Backbone` and one registry line. A toy family, registered here and nowhere else, builds,
trains a step and evaluates through the library's own code paths; family options a family
does not take are refused naming them."""
import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import configs, eval_lib, model_dir, train_lib
from deeplab_tf.data import training_input
from deeplab_tf.data.metadata import DatasetMetadata
from deeplab_tf.inference import Protocol
from deeplab_tf.modeling import DeepLabV3, backbones, build_backbone, build_deeplabv3
from deeplab_tf.modeling import set_output_stride
from deeplab_tf.modeling.backbone import OPTIONS, Backbone
from deeplab_tf.modeling.layers import Conv
from deeplab_tf.testing import TINY, image_label_dataset

META = DatasetMetadata("toy", ("background", "a", "b"))
TORCH_MEAN = (0.485 * 255, 0.456 * 255, 0.406 * 255)   # torchvision's, written out


def toy_build(x, name, output_stride, layout="keras", bn_momentum=0.9997, sync_bn=False,
              activation="relu", width_multiplier=1.0):
    """Five 3x3 convs, stride 2 until `output_stride`, atrous after it (Sec. 3.1): the same
    variables at every output stride."""
    del name, layout, activation
    endpoints, current, rate = {}, 1, 1
    for i in range(5):
        strided = current < output_stride
        x = Conv(max(1, int(16 * width_multiplier)), 3, strides=2 if strided else 1,
                 dilation_rate=1 if strided else rate, name=f"toy_conv{i}")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, synchronized=sync_bn,
                                            name=f"toy_bn{i}")(x)
        x = keras.layers.ReLU(name=f"toy_relu{i}")(x)
        if strided:
            current *= 2
        else:
            rate *= 2
        endpoints[f"toy{i}"] = x
    return endpoints


TOY = Backbone(family="toy", names=("toy",), build=toy_build, options=("width_multiplier",),
               normalization={"keras": "torch"}, head_bn_epsilon={"keras": 1e-3},
               default_aspp_rates=lambda output_stride: (32 // output_stride,))


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(backbones, "FAMILIES", backbones.FAMILIES + (TOY,))


def toy_dataset_fn(batch):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 33, 33, 3)).astype("float32")
    labels = rng.integers(0, 3, (4, 33, 33, 1)).astype("int32")

    def make(ctx, start_step):
        del start_step
        ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
        return ds.repeat().batch(ctx.get_per_replica_batch_size(batch), drop_remainder=True)
    return make


def test_a_family_registered_in_a_test_builds_trains_and_evaluates(toy, tmp_path):
    model = build_deeplabv3(3, backbone="toy", output_stride=8, aspp_filters=8,
                            width_multiplier=0.5)
    assert model.get_layer("toy_conv3").strides == 1                 # atrous beyond OS 8
    assert model.get_layer("toy_conv4").dilation_rate == 2
    assert model.get_layer("aspp_1_conv").dilation_rate == 4          # its default rates
    assert "aspp_2_conv" not in {layer.name for layer in model.layers}
    assert model.get_layer("aspp_0_bn").epsilon == 1e-3               # its head epsilon
    np.testing.assert_allclose(model.mean_rgb, TORCH_MEAN)            # its normalization
    assert model.predict(np.zeros((1, 33, 41, 3), "float32"), verbose=0).shape == (1, 33, 41, 3)
    assert DeepLabV3.from_config(model.get_config()).get_config() == model.get_config()
    rebuilt = set_output_stride(model, 16)
    assert rebuilt.get_layer("toy_conv3").strides == 2
    assert list(build_backbone("toy", 8).output) == [f"toy{i}" for i in range(5)]

    # Trained a step through train_lib, from the config (padding from its normalization).
    config = configs.apply_overrides(configs.ExperimentConfig(), (
        "model.backbone=toy,model.width_multiplier=0.5,model.aspp_filters=8,"
        "model.backbone_weights=none,train.steps=1,train.batch_size=2,train.steps_per_loop=1,"
        "train.checkpoint_every=1"))
    np.testing.assert_allclose(training_input.mean_rgb(config.model), TORCH_MEAN)
    keras.utils.set_random_seed(config.train.seed)
    initial = model_dir.build_model(config, META)
    result = train_lib.train(config, str(tmp_path / "run"), META, toy_dataset_fn(2))
    assert result.step == 1 and np.isfinite(result.loss)
    trained, _, _ = model_dir.load_model(str(tmp_path / "run"), output_stride=8)
    for i in range(5):
        before = initial.get_layer(f"toy_conv{i}").kernel.numpy()
        after = trained.get_layer(f"toy_conv{i}").kernel.numpy()
        assert np.abs(after - before).max() > 0, i

    # Evaluated by eval_lib: every labelled pixel counted once.
    rng = np.random.default_rng(1)
    pairs = [(rng.integers(0, 256, (h, w, 3)).astype(np.uint8),
              rng.integers(0, 3, (h, w)).astype(np.uint8)) for h, w in ((33, 41), (25, 17))]
    pairs[0][1][:4] = 255
    out = eval_lib.evaluate(trained, image_label_dataset(pairs), META, Protocol(output_stride=8),
                            verbose=0)
    matrix = np.asarray(out["confusion_matrix"])
    assert matrix.sum() == sum(int((label != 255).sum()) for _, label in pairs)
    np.testing.assert_array_equal(matrix.sum(axis=1), [
        sum(int((label == c).sum()) for _, label in pairs) for c in range(3)])


def test_the_toy_family_refuses_what_it_does_not_take(toy):
    for option, value in [("extra_blocks", 1), ("depth_multiplier", 0.5), ("stem", "deep"),
                          ("depths", (1, 1, 1, 1)), ("multi_grid", (1, 1))]:
        with pytest.raises(ValueError, match=rf"^{option}=.*backbone 'toy' \(toy\) does not "
                                             rf"take {option}"):
            build_deeplabv3(3, backbone="toy", **{option: value})
    with pytest.raises(ValueError, match="layout='slim', expected one of \\['keras'\\]"):
        build_deeplabv3(3, backbone="toy", layout="slim")


def test_family_options_are_refused_by_name():
    with pytest.raises(ValueError, match="^depth_multiplier=0.5: backbone 'resnet_tiny'"):
        build_deeplabv3(3, depth_multiplier=0.5, **TINY)
    for option, value in [("extra_blocks", 1), ("width_multiplier", 0.5), ("stem", "deep"),
                          ("depths", (1, 1, 1, 1)), ("multi_grid", (1, 2))]:
        with pytest.raises(ValueError, match=rf"^{option}=.*'mobilenet_v2'"):
            build_deeplabv3(3, backbone="mobilenet_v2", **{option: value})
    with pytest.raises(ValueError, match="layout='garden'"):
        build_deeplabv3(3, backbone="mobilenet_v2", layout="garden")
    with pytest.raises(ValueError, match="^stride_position='3x3_last': not a backbone option"):
        build_backbone("resnet50", stride_position="3x3_last")
    with pytest.raises(ValueError, match="backbone='resnet', expected one of"):
        build_deeplabv3(3, backbone="resnet")
    with pytest.raises(ValueError, match="backbone='toy'"):     # registered only in a test
        build_deeplabv3(3, backbone="toy")


def test_names_resolve_to_their_family():
    assert set(backbones.names()) == {"resnet50", "resnet101", "resnet152", "resnet_tiny",
                                      "mobilenet_v2"}
    for name in backbones.names():
        assert name in backbones.lookup(name).names
    # Imported checkpoints name ResNets by depth: valid with their units per block.
    assert backbones.lookup("resnet26", depths=(2, 2, 2, 2)).family == "resnet"
    with pytest.raises(ValueError, match="backbone='resnet26'"):
        backbones.lookup("resnet26")


def test_saved_configs_of_every_family_rebuild():
    """Configs as earlier versions saved them (every builder argument, family options of
    other families at their "not given" values) still build."""
    for args in [dict(TINY, depths=(1, 1, 1, 3), depth_multiplier=1.0, multi_grid=(1, 2, 4)),
                 dict(backbone="mobilenet_v2", depth_multiplier=0.35, depths=(),
                      multi_grid=(1, 2, 4), stem="7x7", width_multiplier=1.0, extra_blocks=0,
                      aspp_filters=8)]:
        model = build_deeplabv3(3, **args)
        assert DeepLabV3.from_config(model.get_config()).get_config() == model.get_config()


def test_imagenet_weights_of_a_family_without_them_are_refused(toy):
    with pytest.raises(ValueError, match="backbone 'toy' \\(toy\\) has no keras.applications"):
        build_deeplabv3(3, backbone="toy", backbone_weights="imagenet")


def test_not_given_values_are_deeplabv3s_defaults():
    defaults = {name: p.default for name, p in
                inspect.signature(DeepLabV3.__init__).parameters.items()}
    assert {name: defaults[name] for name in OPTIONS} == OPTIONS
    assert all(set(family.options) <= set(OPTIONS) for family in backbones.FAMILIES)
