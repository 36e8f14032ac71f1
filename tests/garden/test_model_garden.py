"""Model Garden's DeepLabV3, built from its own registered config with every variable
random, saved as Model Garden saves it, converted: our model gives the same logits.

Compared: the logits at the feature resolution (9x9 at output stride 16, 17x17 at 8, for a
129x129 input), in inference mode. Model Garden's SegmentationModel returns them so (its
loss and evaluation resize them); ours are read before the model's final resize.
"""
import numpy as np
import pytest
import tensorflow as tf
import tf_keras
from official.core import exp_factory
from official.vision.configs import semantic_segmentation  # noqa: F401  (registers configs)
from official.vision.modeling import factory
from official.vision.ops import preprocess_ops

from deeplab_tf import model_dir
from deeplab_tf.convert import convert_checkpoint

SIZE = 129


def garden_deeplabv3(model_id, output_stride, stem_type="v1", activation="relu", **changes):
    """seg_deeplabv3_pascal with the paper's settings: Multi_Grid (1, 2, 4), ASPP rates
    (6, 12, 18) at OS16 and (12, 24, 36) at OS8, global image pooling, ReLU."""
    config = exp_factory.get_exp_config("seg_deeplabv3_pascal").task.model
    level = int(np.log2(output_stride))
    config.backbone.dilated_resnet.model_id = model_id
    config.backbone.dilated_resnet.output_stride = output_stride
    config.backbone.dilated_resnet.multigrid = [1, 2, 4]
    config.backbone.dilated_resnet.stem_type = stem_type
    config.decoder.aspp.level = config.head.level = level
    config.decoder.aspp.dilation_rates = [r * 16 // output_stride for r in (6, 12, 18)]
    config.decoder.aspp.pool_kernel_size = None
    config.norm_activation.activation = activation
    config.norm_activation.use_sync_bn = False
    for key, value in changes.items():
        *sections, name = key.split(".")
        node = config
        for section in sections:
            node = getattr(node, section)
        setattr(node, name, value)
    model = factory.build_segmentation_model(
        input_specs=tf_keras.layers.InputSpec(shape=[None, SIZE, SIZE, 3]), model_config=config)
    model(tf.zeros([1, SIZE, SIZE, 3]), training=False)   # creates the decoder and head
    return model


def randomize(model, rng):
    """Every variable random, BN statistics included (variances positive)."""
    for v in model.variables:
        name = v.name
        if "moving_variance" in name:
            value = rng.uniform(0.5, 2.0, v.shape)
        elif "gamma" in name:
            value = rng.uniform(0.5, 1.5, v.shape)
        elif "kernel" in name:
            value = rng.normal(0, np.sqrt(2 / np.prod(v.shape[:-1])), v.shape)
        else:   # beta, moving_mean, bias
            value = rng.normal(0, 0.2, v.shape)
        v.assign(value)
    return len(model.variables)


def our_raw_logits(path, output_stride):
    import keras
    model, _, _ = model_dir.load_model(path, output_stride=output_stride)
    return keras.Model(model.input, model.get_layer("logits").output)


@pytest.mark.parametrize("model_id,stem_type,activation", [
    (50, "v1", "relu"), (101, "v1", "relu"),
    (50, "v0", "swish"),    # the 7x7 stem, and the registered configs' activation
])
def test_same_logits_as_model_garden(tmp_path, model_id, stem_type, activation):
    rng = np.random.default_rng(model_id)
    garden = garden_deeplabv3(model_id, 16, stem_type, activation)
    count = randomize(garden, rng)
    assert count == len(garden.variables) > 0
    assert any("moving_mean" in v.name for v in garden.variables)
    path = tf.train.Checkpoint(model=garden).save(str(tmp_path / "garden" / "ckpt"))

    result = convert_checkpoint("garden", str(tmp_path / "garden"), str(tmp_path / "run"),
                                overrides=dict(activation=activation))
    assert result.unmapped_model == [] and result.unmapped_checkpoint == [
        "save_counter/.ATTRIBUTES/VARIABLE_VALUE"]
    assert len(result.mapped) == count
    assert result.architecture["backbone"] == f"resnet{model_id}"

    images = rng.uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    normalized = (images - np.float32(preprocess_ops.MEAN_RGB)) / np.float32(
        preprocess_ops.STDDEV_RGB)
    for output_stride in (16, 8):
        reference = garden
        if output_stride != 16:   # the same checkpoint in Model Garden's OS8 model
            reference = garden_deeplabv3(model_id, output_stride, stem_type, activation)
            tf.train.Checkpoint(model=reference).read(path).assert_existing_objects_matched()
        expected = reference(normalized, training=False)["logits"].numpy()
        got = our_raw_logits(tmp_path / "run", output_stride)(images, training=False).numpy()
        k = (SIZE - 1) // output_stride + 1
        assert got.shape == expected.shape == (2, k, k, 21)
        error = np.abs(got - expected).max() / np.abs(expected).max()
        assert error <= 1e-5, (output_stride, error)


@pytest.mark.parametrize("change,message", [
    ({"decoder.aspp.use_depthwise_convolution": True}, "depthwise ASPP"),
    ({"head.num_convs": 1}, "head convolutions"),
])
def test_other_model_garden_architectures_are_refused(tmp_path, change, message):
    garden = garden_deeplabv3(50, 16, **change)
    tf.train.Checkpoint(model=garden).save(str(tmp_path / "garden" / "ckpt"))
    with pytest.raises(ValueError, match=message):
        convert_checkpoint("garden", str(tmp_path / "garden"), str(tmp_path / "run"))


def test_the_readme_command(tmp_path):
    """The README's Model Garden command, typed as there (tests/readme/readme.py PLAN), on a
    Model Garden training directory: a swish R-50 saved by Model Garden's own code."""
    import os
    import subprocess
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from readme import readme
    garden = garden_deeplabv3(50, 16, "v0", "swish")
    randomize(garden, np.random.default_rng(3))
    tf.train.Checkpoint(model=garden).save(str(tmp_path / "garden_run" / "ckpt"))
    readme.run(readme.command("convert_garden"), tmp_path)
    config, _ = model_dir.read_config(tmp_path / "runs" / "from_garden")
    assert config.model.activation == "swish" and config.model.backbone == "resnet50"
