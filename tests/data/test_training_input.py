"""Training crops are padded with the pixel the model normalizes to zero: the same value
evaluation, export and predict pad with (`model.mean_rgb`), for every backbone family,
layout and input normalization."""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import configs, model_dir
from deeplab_tf.data import training_input
from deeplab_tf.data.metadata import DatasetMetadata
from deeplab_tf.testing import write_records

META = DatasetMetadata("toy", ("background", "thing"))

# The mean pixels, written out from their sources (not from deeplab_tf's table).
KERAS_CAFFE = (123.68, 116.779, 103.939)      # keras.applications.imagenet_utils, "caffe"
SLIM_RGB_MEAN = (123.15, 115.90, 103.06)      # research/deeplab feature_extractor._MEAN_RGB
TORCH = (0.485 * 255, 0.456 * 255, 0.406 * 255)   # torchvision / Model Garden mean
MINUS_ONE_TO_ONE = (127.5, 127.5, 127.5)      # slim "inception" preprocessing: x / 127.5 - 1

TINY_RESNET = "model.backbone=resnet_tiny,model.width_multiplier=0.125,"
CASES = {
    # MobileNetV2 takes [-1, 1] inputs in every layout (research/deeplab, keras.applications).
    "mobilenet_v2": ("model.backbone=mobilenet_v2,model.depth_multiplier=0.35",
                     MINUS_ONE_TO_ONE),
    "mobilenet_v2_slim": ("model.backbone=mobilenet_v2,model.depth_multiplier=0.35,"
                          "model.layout=slim", MINUS_ONE_TO_ONE),
    # research/deeplab's resnet_v1_50/101 checkpoints: layout slim, RGB minus the mean.
    "slim_rgb_mean": (TINY_RESNET + "model.layout=slim,model.input_normalization=rgb_mean",
                      SLIM_RGB_MEAN),
    "slim": (TINY_RESNET + "model.layout=slim", MINUS_ONE_TO_ONE),
    "keras": (TINY_RESNET + "model.layout=keras", KERAS_CAFFE),
    "garden": (TINY_RESNET + "model.layout=garden", TORCH),
}


def _config(overrides, records=""):
    base = ("model.aspp_filters=8,model.backbone_weights=none,train.batch_size=1,"
            "data.crop_size=(21,21),data.min_scale=1.0,data.max_scale=1.0,data.scale_step=0")
    if records:
        base += f",data.train_records={records}"
    return configs.apply_overrides(configs.ExperimentConfig(), base + "," + overrides)


@pytest.mark.parametrize("name", CASES)
def test_padding_pixel_is_the_models_mean(name):
    overrides, expected = CASES[name]
    config = _config(overrides)
    model = model_dir.build_model(config, META)
    np.testing.assert_allclose(training_input.mean_rgb(config.model), expected, atol=1e-3)
    np.testing.assert_allclose(model.mean_rgb, expected, atol=1e-3)
    # ... and that pixel is what the model normalizes to zero.
    x = tf.constant(np.array(expected, np.float32)[None, None, None])
    np.testing.assert_allclose(model.get_layer("input_normalization")(x).numpy(), 0,
                               atol=1e-4)


@pytest.mark.parametrize("name", ["mobilenet_v2", "slim_rgb_mean"])
def test_training_crops_are_padded_with_it(tmp_path, name):
    overrides, expected = CASES[name]
    image = np.full((7, 9, 3), 10, np.uint8)
    label = np.ones((7, 9), np.uint8)
    write_records(tmp_path / "train-00000-of-00001.tfrecord", [("a", image, label)])
    config = _config(overrides, str(tmp_path / "train-*.tfrecord"))
    fn = training_input.records_dataset_fn(config, META, model_dir=str(tmp_path / "run"))
    batch = next(iter(fn(tf.distribute.InputContext(), 0)))
    crop, crop_label = batch["image"][0].numpy(), batch["label"][0, ..., 0].numpy()
    padded = crop_label == 255
    assert padded.sum() == 21 * 21 - 7 * 9          # the whole image, the rest padding
    np.testing.assert_allclose(crop[padded], np.broadcast_to(expected, crop[padded].shape),
                               atol=1e-3)
    np.testing.assert_array_equal(crop[~padded], 10)
