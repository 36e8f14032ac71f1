"""TensorBoard sample predictions during training: on by default at a low rate, at the end
of a run, and showing the crop, its ground truth and the model's prediction, coloured with
the dataset's colour map."""
import glob
import os

import numpy as np
import tensorflow as tf

from deeplab_tf import configs
from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf import train_lib
from helpers import META, dataset_fn, tiny_config

TAGS = ("samples/image", "samples/ground_truth", "samples/prediction")


def _image_summaries(model_dir):
    """{tag: {step: uint8 [N, H, W, 3]}} of the run's TensorBoard images."""
    out = {}
    for path in glob.glob(os.path.join(model_dir, "train", "events.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for value in event.summary.value:
                if value.tag.startswith("samples/"):
                    encoded = tf.make_ndarray(value.tensor)[2:]   # [width, height, png...]
                    out.setdefault(value.tag, {})[event.step] = np.stack(
                        [tf.io.decode_png(png, channels=3).numpy() for png in encoded])
    return out


def test_sample_predictions_by_default_at_the_end_coloured_by_the_colormap(tmp_path):
    assert configs.TrainConfig().summary_images_every == 1000
    config = tiny_config("train.steps=2")   # the default rate: only the end of the run
    train_lib.train(config, str(tmp_path), META, dataset_fn(4))
    shown = _image_summaries(str(tmp_path))
    assert {tag: sorted(steps) for tag, steps in shown.items()} == {tag: [2] for tag in TAGS}
    # Independently: the batch of step 2, the final checkpoint's prediction, NumPy colours.
    batch = next(iter(dataset_fn(4)(tf.distribute.InputContext(), 2)))
    images, labels = batch["image"].numpy()[:3], batch["label"].numpy()[:3, ..., 0]
    model, _, _ = model_dir_lib.load_model(str(tmp_path))
    predicted = np.argmax(model(images, training=False).numpy(), axis=-1)
    colormap = np.asarray(META.colormap(), np.uint8)
    assert (colormap[255] == 255).all() and (labels == 255).any()   # ignored: white
    np.testing.assert_array_equal(shown["samples/image"][2],
                                  np.clip(np.round(images), 0, 255).astype(np.uint8))
    np.testing.assert_array_equal(shown["samples/ground_truth"][2], colormap[labels])
    np.testing.assert_array_equal(shown["samples/prediction"][2], colormap[predicted])
    assert shown["samples/prediction"][2].shape == (3, 33, 33, 3)


def test_sample_images_when_a_loop_passes_a_multiple_and_at_the_end(tmp_path):
    """Loops end at steps 2, 4, 5: every=3 is passed inside the loop 2->4, not landed on."""
    config = tiny_config("train.steps=5,train.steps_per_loop=2,train.checkpoint_every=100,"
                         "train.summary_images_every=3")
    train_lib.train(config, str(tmp_path), META, dataset_fn(4))
    assert sorted(_image_summaries(str(tmp_path))["samples/prediction"]) == [4, 5]
    off = tiny_config("train.steps=2,train.summary_images_every=0")
    train_lib.train(off, str(tmp_path / "off"), META, dataset_fn(4))
    assert _image_summaries(str(tmp_path / "off")) == {}
