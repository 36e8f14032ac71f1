"""Test utilities, as `tf.test`'s: tiny DeepLabv3 models, model_dirs and configs built from
the same code as the paper's, and independent readers of what the library writes.

Every test builds its tiny model here, so "tiny" means one thing across the suite (and a
test never imports another test module):

    from deeplab_tf import testing
    model = testing.tiny_model(num_classes=3, output_stride=8)    # a DeepLabV3, random
    testing.tiny_model_dir(tmp_path / "run")     # config + dataset metadata + a checkpoint
    config = testing.tiny_config("train.steps=2")    # an ExperimentConfig for train_lib
    testing.write_records(tmp_path / "train.tfrecord", [(name, image, label)])
    subprocess.run([..., "deeplab-train", "--config_overrides",
                    testing.tiny_overrides("train.steps=2")])     # the same, for a CLI

Sizes: `TINY` is ResNet "resnet_tiny" (1, 1, 1, 3 units) at 1/8 of the width with a
16-channel ASPP (0.40M parameters at 4 classes); `tiny_config`/`tiny_overrides` use one
unit per block (0.25M), for training runs.
"""
import numpy as np

from deeplab_tf import fileio
from deeplab_tf.data.metadata import DatasetMetadata

# A tiny DeepLabv3 from the same code as the paper's: `build_deeplabv3` arguments.
TINY = dict(backbone="resnet_tiny", width_multiplier=0.125, aspp_filters=16)

# The smallest trainable variant, as `configs.apply_overrides` text (one unit per block).
TINY_OVERRIDES = ("model.backbone=resnet_tiny,model.depths=(1,1,1,1),model.multi_grid=(1,),"
                  "model.width_multiplier=0.125,model.aspp_filters=16")

# A 4-class dataset (colours for the visualizations) for models that see no real data.
TOY_METADATA = DatasetMetadata(
    "toy", ("background", "thing", "stuff", "other"),
    colors=((0, 0, 0), (200, 30, 30), (30, 200, 30), (30, 30, 200)))


def tiny_model(num_classes=TOY_METADATA.num_classes, **overrides):
    """A `DeepLabV3` of `TINY` size with random weights; `overrides`: any other builder
    argument (output_stride, head, depths, backbone ...)."""
    from deeplab_tf.modeling import build_deeplabv3
    return build_deeplabv3(num_classes, **dict(TINY, **overrides))


def tiny_model_dir(path, metadata=TOY_METADATA, steps=30000, seed=0, **overrides):
    """Writes a model_dir of a `tiny_model` at output stride 16 (its config, `metadata`,
    one checkpoint) and returns the model. Its random weights (seeded) have logits damped
    so probabilities are not saturated: they predict several classes."""
    import tensorflow as tf
    from deeplab_tf import configs, model_dir
    tf.keras.utils.set_random_seed(seed)
    arch = dict(TINY, output_stride=16, **overrides)
    model = tiny_model(metadata.num_classes, **arch)
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 0.05, bias])
    config = configs.ExperimentConfig(model=configs.ModelConfig(backbone_weights=None, **arch),
                                      train=configs.TrainConfig(steps=steps))
    model_dir.write_config(path, config, metadata)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         model_dir.checkpoint_dir(path), max_to_keep=3)
    manager.save()
    return model


def tiny_overrides(extra=""):
    """`TINY_OVERRIDES`, then `extra` (comma-separated `section.key=value`)."""
    return TINY_OVERRIDES + ("," + extra if extra else "")


def tiny_config(overrides=""):
    """An ExperimentConfig for in-process training runs: the tiny model from scratch
    (BN momentum 0.9), 6 steps of batch 4, a checkpoint every 3 steps, then `overrides`."""
    from deeplab_tf import configs
    base = tiny_overrides("model.backbone_weights=none,model.bn_momentum=0.9,train.steps=6,"
                          "train.batch_size=4,train.steps_per_loop=1,"
                          "train.checkpoint_every=3,train.weight_decay=0.0001")
    return configs.apply_overrides(configs.ExperimentConfig(),
                                   base + ("," + overrides if overrides else ""))


def image_label_dataset(pairs, padded=False):
    """A tf.data.Dataset of {"image" uint8 [H, W, 3], "label" uint8 [H, W], "height",
    "width"} from (image, label) arrays, as evaluation reads whole images. `padded`: each
    image padded (junk: 77 in the image, class 3 in the label) below and to the right, with
    its true height and width, so a cut that went wrong counts the padding."""
    import tensorflow as tf
    pairs = list(pairs)

    def generate():
        for image, label in pairs:
            h, w = label.shape
            if padded:
                image = np.pad(image, [(0, 20), (0, 9), (0, 0)], constant_values=77)
                label = np.pad(label, [(0, 20), (0, 9)], constant_values=3)
            yield {"image": image, "label": label, "height": h, "width": w}

    spec = {"image": tf.TensorSpec([None, None, 3], tf.uint8),
            "label": tf.TensorSpec([None, None], tf.uint8),
            "height": tf.TensorSpec([], tf.int32), "width": tf.TensorSpec([], tf.int32)}
    return tf.data.Dataset.from_generator(generate, output_signature=spec)


def write_records(path, examples):
    """Writes one TFRecord file of PNG-encoded examples, as `deeplab-build-data` writes
    them (tfrecord.make_example). examples: (name, image uint8 [H, W, 3], label uint8
    [H, W]). Returns `path`."""
    import tensorflow as tf
    from deeplab_tf.data import tfrecord
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, image, label in examples:
            writer.write(tfrecord.make_example(
                tf.io.encode_png(image).numpy(), name, "png", image.shape[0], image.shape[1],
                tf.io.encode_png(label[..., None]).numpy()))
    return path


def read_records(output_dir, split):
    """name -> fields of a converted split (`deeplab-build-data`), decoded independently of
    the library's reader (the tf.train.Example proto and Pillow): image bytes, format,
    (height, width), label PNG bytes and the label array."""
    import io

    import tensorflow as tf
    from PIL import Image
    from deeplab_tf.data import tfrecord
    manifest = fileio.read_json(fileio.join(output_dir, "manifest.json"))
    records = {}
    for shard in manifest["splits"][split]["shards"]:
        for raw in tf.data.TFRecordDataset(fileio.join(output_dir, shard)):
            feature = tf.train.Example.FromString(raw.numpy()).features.feature
            label_png = feature[tfrecord.LABEL_ENCODED].bytes_list.value[0]
            records[feature[tfrecord.IMAGE_FILENAME].bytes_list.value[0].decode()] = {
                "image": feature[tfrecord.IMAGE_ENCODED].bytes_list.value[0],
                "format": feature[tfrecord.IMAGE_FORMAT].bytes_list.value[0].decode(),
                "size": (feature[tfrecord.IMAGE_HEIGHT].int64_list.value[0],
                         feature[tfrecord.IMAGE_WIDTH].int64_list.value[0]),
                "label_png": label_png,
                "label": np.asarray(Image.open(io.BytesIO(label_png))),
            }
    return records


# What a viewer shows for each EXIF orientation (stored array -> displayed array), from the
# spec's definition of where the 0th row and 0th column go (independent of Pillow's
# transpose table).
EXIF_DISPLAY = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],                         # mirrored left-right
    3: lambda a: a[::-1, ::-1],                      # rotated 180
    4: lambda a: a[::-1],                            # mirrored top-bottom
    5: lambda a: a.transpose(1, 0, 2),               # 0th row left, 0th column top
    6: lambda a: np.rot90(a, -1),                    # 0th row right, 0th column top
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1],   # 0th row right, 0th column bottom
    8: lambda a: np.rot90(a, 1),                     # 0th row left, 0th column bottom
}
