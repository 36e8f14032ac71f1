"""Image reading for prediction (deeplab_tf/images.py): every mode as tf.io decodes it,
EXIF orientation, the pixel limit read from the header."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf.images import ImageError, read_image, to_rgb_uint8


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
