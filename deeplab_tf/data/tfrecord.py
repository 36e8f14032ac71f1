"""The TFRecord format of the original research/deeplab tools.

Records written here use the original feature keys, so records made by
`research/deeplab/datasets/build_voc2012_data.py` load too, and vice versa.
"""
import tensorflow as tf

IMAGE_ENCODED = "image/encoded"
IMAGE_FILENAME = "image/filename"
IMAGE_FORMAT = "image/format"
IMAGE_HEIGHT = "image/height"
IMAGE_WIDTH = "image/width"
IMAGE_CHANNELS = "image/channels"
LABEL_ENCODED = "image/segmentation/class/encoded"
LABEL_FORMAT = "image/segmentation/class/format"

FEATURE_SPEC = {
    IMAGE_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FILENAME: tf.io.FixedLenFeature((), tf.string, default_value=""),
    IMAGE_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="jpeg"),
    IMAGE_HEIGHT: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_WIDTH: tf.io.FixedLenFeature((), tf.int64, default_value=0),
    IMAGE_CHANNELS: tf.io.FixedLenFeature((), tf.int64, default_value=3),
    LABEL_ENCODED: tf.io.FixedLenFeature((), tf.string, default_value=""),
    LABEL_FORMAT: tf.io.FixedLenFeature((), tf.string, default_value="png"),
}


def _bytes(value):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def make_example(image_bytes, filename, image_format, height, width, label_bytes,
                 channels=3, label_format="png"):
    """Returns a serialized `tf.train.Example` with the original DeepLab keys.

    Args:
      image_bytes: the encoded image file, stored as is (never re-encoded).
      filename: the image's stem, e.g. "2007_000129".
      image_format: "jpeg" or "png".
      height, width, channels: the decoded image's size.
      label_bytes: the label as an encoded single-channel PNG of class ids.
      label_format: "png".
    """
    feature = {
        IMAGE_ENCODED: _bytes(image_bytes),
        IMAGE_FILENAME: _bytes(filename.encode("utf-8")),
        IMAGE_FORMAT: _bytes(image_format.encode("utf-8")),
        IMAGE_HEIGHT: _int64(height),
        IMAGE_WIDTH: _int64(width),
        IMAGE_CHANNELS: _int64(channels),
        LABEL_ENCODED: _bytes(label_bytes),
        LABEL_FORMAT: _bytes(label_format.encode("utf-8")),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_example(serialized):
    """Parses one serialized example into a dict of raw (still encoded) features."""
    return tf.io.parse_single_example(serialized, FEATURE_SPEC)


def decode_image(encoded, channels=3):
    """Decodes JPEG or PNG to uint8 HWC, matching Pillow exactly for JPEG."""
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=channels, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(encoded, channels=channels),
    )


def image_size(encoded):
    """(height, width) int32 from the JPEG or PNG header, without decoding."""
    def png():  # IHDR: big-endian width, height at bytes 16..23
        b = tf.cast(tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8), tf.int32)
        w = b[0] * 2 ** 24 + b[1] * 2 ** 16 + b[2] * 2 ** 8 + b[3]
        h = b[4] * 2 ** 24 + b[5] * 2 ** 16 + b[6] * 2 ** 8 + b[7]
        return tf.stack([h, w])
    return tf.cond(tf.io.is_jpeg(encoded),
                   lambda: tf.image.extract_jpeg_shape(encoded)[:2], png)


def decode_label(encoded):
    """Decodes a single-channel label PNG to uint8 HxWx1 class ids."""
    return tf.io.decode_png(encoded, channels=1)
