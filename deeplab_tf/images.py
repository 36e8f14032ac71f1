"""Reading images for prediction: EXIF-upright, any mode to RGB 8-bit, with a pixel limit.

`upright` owns the EXIF orientation rule (tag 0x0112, values 1-8 as the EXIF spec and
Pillow's `ImageOps.exif_transpose` define them). The dataset converters apply it too
(`data/converters/inputs.read_image` stores a rotated photo upright, as PNG), so training,
evaluation and prediction all see the pixels a photo viewer shows, against masks drawn on them.
Image files read here (`read_image`, used by `inference.Segmenter.segment_file`) are turned
upright by their EXIF orientation, as a photo viewer shows them; the SavedModel's `serving_default` decodes
bytes with `tf.io`, which ignores EXIF: send upright pixels, or use `predict_images`.
Non-RGB images become RGB 8-bit the way `tf.io.decode_png(channels=3)` does it, so both
paths see the same pixels: grayscale replicated, alpha dropped, palette looked up,
16-bit reduced to its high byte.
"""
import os

import numpy as np
from PIL import Image, ImageOps

from deeplab_tf import fileio

DEFAULT_MAX_PIXELS = 100_000_000


class ImageError(ValueError):
    """An input image that cannot be used; the message names the file."""


def check_pixels(width, height, max_pixels, what):
    """ImageError unless the image has 1 to `max_pixels` pixels (None or 0: no limit)."""
    if width < 1 or height < 1:
        raise ImageError(f"{what}: {width}x{height} pixels: the image is empty")
    if max_pixels and width * height > max_pixels:
        raise ImageError(f"{what}: {width}x{height} = {width * height} pixels, above "
                         f"the limit of {max_pixels} (max_pixels)")


EXIF_ORIENTATION = 0x0112


def exif_orientation(image):
    """The EXIF orientation (1-8) of a PIL image; 1 (as stored) when absent or out of range."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    return orientation if orientation in range(1, 9) else 1


def upright(image):
    """(a copy of the PIL image turned upright by its EXIF orientation, without the tag;
    that orientation, 1 when the image is stored upright)."""
    return ImageOps.exif_transpose(image), exif_orientation(image)


def open_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """A decoded, EXIF-upright PIL image; the size limit is checked on the header first."""
    path = os.fspath(path)
    if not fileio.isfile(path):
        raise ImageError(f"{path}: file not found")
    saved_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None   # our limit, checked below, replaces Pillow's
    try:
        with fileio.open(path, "rb") as f, Image.open(f) as image:   # reads the header only
            check_pixels(*image.size, max_pixels, path)
            image.load()
            return upright(image)[0]
    except ImageError:
        raise
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad data
        raise ImageError(f"{path}: not a readable image ({e})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = saved_limit


def to_rgb_uint8(image):
    """RGB uint8 [H, W, 3] from a PIL image or an array ([H, W], [H, W, 1|2|3|4]: grey,
    grey+alpha, RGB, RGBA; uint8, uint16, or float taken as 0-255 values), as
    tf.io.decode_png(channels=3) and the SavedModel's predict_images would."""
    if isinstance(image, Image.Image):
        if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            image = np.asarray(image)   # the array branch reduces 16 bits / clips floats
        else:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] in (1, 2, 3, 4):
        array = array[..., :3] if array.shape[-1] >= 3 else array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] != 3:   # e.g. 2 channels, or a batch
        raise ImageError(f"image of shape {array.shape}: expected [H, W] or [H, W, 1|2|3|4]")
    if array.dtype.kind in "ui" and array.dtype.itemsize > 1:
        array = np.clip(array, 0, 65535).astype(np.uint16) >> 8
    elif array.dtype.kind == "f":
        array = np.round(np.clip(array, 0, 255))
    elif array.dtype.kind == "b":
        array = array * 255
    return array.astype(np.uint8)


def read_image(path, max_pixels=DEFAULT_MAX_PIXELS):
    """RGB uint8 [H, W, 3] of an image file, EXIF-upright (module docstring)."""
    return to_rgb_uint8(open_image(path, max_pixels))
