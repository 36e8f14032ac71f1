"""Reading the input files a converter lists, failing with a DatasetError that names them.

Images are decoded fully with Pillow, so a truncated file fails at conversion, not in the
middle of training; their bytes are returned unchanged, to be stored as they are.
"""
import io
from pathlib import Path

import numpy as np
from PIL import Image

from deeplab_tf.data.manifest import DatasetError

# Modes TF's decode_jpeg/decode_png turn into RGB unchanged; CMYK JPEG or 16-bit PNG would
# need re-encoding, which would break "images are stored byte-identical".
_DECODABLE_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"1", "L", "LA", "P", "RGB", "RGBA"}}


def read_bytes(path):
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError("file not found", path, "missing_file") from None
    except OSError as e:
        raise DatasetError(f"unreadable ({e})", path, "unreadable_file") from None


def open_image(path, data=None):
    """Decodes a whole image file with Pillow (a truncated file fails here, not in training)."""
    data = read_bytes(path) if data is None else data
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... on bad data
        raise DatasetError(f"corrupt or truncated image ({e})", path, "corrupt_file") from None
    return image


def read_image(path):
    """Returns (bytes, "jpeg"|"png", height, width) of an image stored unchanged."""
    data = read_bytes(path)
    image = open_image(path, data)
    if image.mode not in _DECODABLE_MODES.get(image.format, ()):
        raise DatasetError(f"{image.format} image in mode {image.mode}; expected a JPEG (L or RGB)"
                           " or PNG image", path, "unsupported_format")
    return data, image.format.lower(), image.height, image.width


def read_label_png(path):
    """Class ids of a single-channel or palette PNG; palette INDICES are the ids (as VOC)."""
    image = open_image(path)
    if image.mode not in ("P", "L"):
        raise DatasetError(f"label in mode {image.mode}; expected a palette (P) or grayscale (L)"
                           " PNG of class ids", path, "unsupported_format")
    return np.asarray(image, dtype=np.uint8)


def read_split_list(path):
    """Example names of a split file, one per line (blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError("split file not found", path, "missing_file") from None
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DatasetError("split file lists no examples", path, "no_examples")
    return names
