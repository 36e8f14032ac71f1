"""Image reading for prediction (deeplab_tf/images.py): every mode as tf.io decodes it,
EXIF orientation, the pixel limit read from the header."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf.data.converters import inputs
from deeplab_tf.images import ImageError, read_image, to_rgb_uint8, upright
from deeplab_tf.testing import EXIF_DISPLAY as DISPLAY


def _png(image):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA", "P", "1", "I;16", "RGB"])
def test_modes_become_rgb_as_tf_decodes_them(mode):
    rng = np.random.default_rng(4)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (9, 13), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 256, (9, 13, 4), dtype=np.uint8), "RGBA")
        image = image.convert(mode)
    if mode == "P":
        image.info["transparency"] = 3
    data = _png(image)
    want = tf.io.decode_png(data, channels=3).numpy()
    got = to_rgb_uint8(Image.open(io.BytesIO(data)))
    assert got.dtype == np.uint8 and got.shape == (9, 13, 3)
    np.testing.assert_array_equal(got, want)


def test_read_image_applies_exif_orientation(tmp_path):
    image = Image.fromarray(np.zeros((10, 30, 3), np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6   # "rotate 90 CW to display"
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert read_image(tmp_path / "rotated.jpg").shape == (30, 10, 3)


def test_pixel_limit_checked_on_the_header(tmp_path):
    data = _png(Image.fromarray(np.zeros((40, 40, 3), np.uint8)))
    (tmp_path / "big.png").write_bytes(data[:60])   # the header is intact, the rest cut
    with pytest.raises(ImageError, match=r"big\.png: 40x40 = 1600 pixels.*limit of 1000"):
        read_image(tmp_path / "big.png", max_pixels=1000)
    with pytest.raises(ImageError, match=r"big\.png: not a readable image"):
        read_image(tmp_path / "big.png", max_pixels=2000)


def _with_orientation(array, orientation, mode=None):
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG", exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize("orientation", [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
def test_upright_matches_the_exif_definition_for_every_orientation(tmp_path, orientation):
    """images.upright (predict's read_image and the converters) against the EXIF spec's
    placement of the 0th row and column in NumPy; values outside 1-8 leave pixels as stored."""
    array = np.random.default_rng(orientation).integers(0, 256, (4, 6, 3)).astype(np.uint8)
    data = _with_orientation(array, orientation)
    want = DISPLAY.get(orientation, DISPLAY[1])(array)
    image, found = upright(Image.open(io.BytesIO(data)))
    assert found == (orientation if orientation in DISPLAY else 1)
    np.testing.assert_array_equal(np.asarray(image), want)
    (tmp_path / "photo.png").write_bytes(data)
    np.testing.assert_array_equal(read_image(tmp_path / "photo.png"), want)


def test_converters_store_a_turned_palette_png_upright_and_lossless(tmp_path):
    """inputs.read_image (every converter's image reader): a palette PNG with EXIF 8 is
    stored as a PNG that TF decodes to the upright pixels; orientation 1 keeps the bytes."""
    indices = np.random.default_rng(0).integers(0, 4, (5, 7)).astype(np.uint8)
    image = Image.fromarray(indices, "P")
    image.putpalette([0, 0, 0, 200, 10, 10, 10, 200, 10, 10, 10, 200])
    for orientation in (8, 1):
        exif = Image.Exif()
        exif[0x0112] = orientation
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", exif=exif)
        (tmp_path / f"o{orientation}.png").write_bytes(buffer.getvalue())
        data, fmt, height, width, found = inputs.read_image(str(tmp_path / f"o{orientation}.png"))
        assert (fmt, found) == ("png", orientation)
        rgb = tf.io.decode_png(buffer.getvalue(), channels=3).numpy()
        want = DISPLAY[orientation](rgb)
        assert (height, width) == want.shape[:2]
        np.testing.assert_array_equal(tf.io.decode_png(data, channels=3).numpy(), want)
        if orientation == 1:
            assert data == buffer.getvalue()
