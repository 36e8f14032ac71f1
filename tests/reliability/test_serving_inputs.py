"""Requests the SavedModel signatures must refuse clearly, or serve: an empty batch (arrays
and bytes), RGBA / grey / grey+alpha arrays (served as the encoded path decodes them: alpha
dropped, grey tiled), 5 channels, a 0xW array, a batch whose pixels add up past the budget
though each image fits (arrays and bytes, refused from the headers), and a 300-byte PNG
whose header claims 100000x100000 pixels. Each refusal is an InvalidArgument naming the
input and what was expected, never an internal error."""
import io
import struct
import zlib

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf import export_lib
from deeplab_tf.inference import Protocol
from deeplab_tf.testing import TOY_METADATA as METADATA, tiny_model

BUDGET = 40 * 40   # pixels per request, baked into the export below


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    export_dir = tmp_path_factory.mktemp("serving") / "1"
    tf.keras.utils.set_random_seed(0)
    export_lib.export_saved_model(tiny_model(), METADATA, str(export_dir),
                                  Protocol(output_stride=16), max_pixels=BUDGET)
    loaded = tf.saved_model.load(str(export_dir))
    return loaded, loaded.signatures["predict_images"], loaded.signatures["serving_default"]


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def png_bomb(width, height):
    """A valid-looking PNG whose IHDR claims width x height RGB pixels, with a tiny IDAT."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def refused(signature, images, *patterns):
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        signature(images=tf.constant(images))
    for pattern in patterns:
        assert pattern in error.value.message, (pattern, error.value.message[:500])


def test_empty_batches_refused(served, ledger):
    loaded, pixels, serve = served
    assert int(loaded.max_pixels.numpy()) == BUDGET   # a client can read the budget
    ledger.injected(2)
    ledger.inputs(2)
    refused(pixels, np.zeros([0, 8, 8, 3], np.uint8),
            "predict_images: expected a batch of at least 1 image, got 0")
    refused(serve, tf.zeros([0], tf.string),
            "serving_default: expected a batch of at least 1 image, got 0")
    ledger.survived(2)


def test_alpha_and_grey_arrays_served_as_rgb(served, ledger):
    _, pixels, _ = served
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, [1, 24, 20, 3], dtype=np.uint8)
    grey = rng.integers(0, 256, [1, 24, 20, 1], dtype=np.uint8)
    alpha = rng.integers(0, 256, [1, 24, 20, 1], dtype=np.uint8)
    ledger.injected(3)
    ledger.inputs(3)

    def labels(array):
        return pixels(images=tf.constant(array))["labels"].numpy()
    expected_rgb, expected_grey = labels(rgb), labels(np.repeat(grey, 3, axis=-1))
    np.testing.assert_array_equal(labels(np.concatenate([rgb, alpha], -1)), expected_rgb)
    np.testing.assert_array_equal(labels(grey), expected_grey)
    np.testing.assert_array_equal(labels(np.concatenate([grey, alpha], -1)), expected_grey)
    ledger.survived(3)


def test_bad_arrays_refused(served, ledger):
    _, pixels, _ = served
    ledger.injected(3)
    ledger.inputs(3)
    refused(pixels, np.zeros([1, 8, 8, 5], np.uint8), "got 5 channels", "[batch, height, width, 3]")
    refused(pixels, np.zeros([1, 0, 8, 3], np.uint8),
            "predict_images: each image is 8x0 (WxH) pixels: expected 1 to 1600")
    # Each 30x30 image fits the budget (1600 pixels); the request (2 x 900) does not.
    refused(pixels, np.zeros([2, 30, 30, 3], np.uint8),
            "predict_images: the batch holds 1800 pixels in all: expected at most 1600")
    ledger.survived(3)


def test_bytes_budgeted_from_headers(served, ledger):
    _, _, serve = served
    ledger.injected(3)
    ledger.inputs(3)
    one = png_bytes(np.zeros([30, 30, 3], np.uint8))
    assert serve(images=tf.constant([one]))["labels"].shape == (1, 30, 30)
    refused(serve, [one, one], "serving_default: the batch holds 1800 pixels in all",
            "at most 1600")
    bomb = png_bomb(100_000, 100_000)
    assert len(bomb) < 400
    refused(serve, [bomb], "images[0]", "100000x100000 (WxH) pixels: expected 1 to 1600")
    # A bomb after a good image: refused from its header, the good one not decoded first.
    refused(serve, [one, bomb], "images[1]", "100000x100000")
    ledger.survived(3)
