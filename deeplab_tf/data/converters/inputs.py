"""Reading the input files a converter lists, failing with a DatasetError that names them.

Images are decoded fully with Pillow, so a truncated file fails at conversion, not in the
middle of training; their bytes are returned unchanged, to be stored as they are, except
for a photo whose EXIF orientation is not 1 (a phone held upright stores its pixels
sideways): TF's decoders ignore EXIF, so it is stored upright (`images.upright`, the rule
prediction applies too), re-encoded losslessly as PNG, and its mask must match the upright
image.

Files are read with `fileio.read_bytes`: local ones with Python's own files, so the
writer's worker processes stay TensorFlow-free; remote ones (gs://) through tf.io.gfile,
which imports TensorFlow in each worker once (seconds, against many reads that each wait
on the network; reading them all in the parent would make one process wait on every one).
ram:// exists only in the process that wrote it: workers cannot read it (`num_workers`).
"""
import io
import logging

import numpy as np
from PIL import Image

from deeplab_tf import fileio, images
from deeplab_tf.data.manifest import DatasetError

# Modes TF's decode_jpeg/decode_png turn into RGB unchanged; CMYK JPEG or 16-bit PNG would
# need re-encoding, which would break "images are stored byte-identical".
_DECODABLE_MODES = {"JPEG": {"L", "RGB"}, "PNG": {"1", "L", "LA", "P", "RGB", "RGBA"}}


def _not_found(error):
    # tf.errors.NotFoundError for a remote path, without importing TensorFlow here
    return isinstance(error, FileNotFoundError) or type(error).__name__ == "NotFoundError"


def read_bytes(path):
    try:
        return fileio.read_bytes(path)
    except Exception as e:  # OSError locally, tf.errors.OpError remotely
        if _not_found(e):
            raise DatasetError("file not found", path, "missing_file") from None
        if isinstance(e, OSError) or type(e).__module__.startswith("tensorflow"):
            message = getattr(e, "message", None) or e
            raise DatasetError(f"unreadable ({message})", path, "unreadable_file") from None
        raise


def read_text(path, what="file"):
    """A UTF-8 text file; DatasetError "`what` not found" when it is missing."""
    try:
        return read_bytes(path).decode("utf-8")
    except DatasetError as e:
        if e.reason == "missing_file":
            raise DatasetError(f"{what} not found", path, "missing_file") from None
        raise
    except UnicodeDecodeError as e:
        raise DatasetError(f"not UTF-8 text ({e})", path, "unreadable_file") from None


def num_workers(requested, *roots):
    """`requested`, or 1 when an input is on ram://: TF's in-memory filesystem lives in
    this process, so worker processes would find no file there."""
    if requested > 1 and any(str(r).startswith("ram://") for r in roots if r is not None):
        logging.getLogger(__name__).info("inputs on ram://: read in this process")
        return 1
    return requested


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
    """Returns (bytes, "jpeg"|"png", height, width, EXIF orientation) of the image to store:
    the file unchanged, or, when its EXIF orientation is not 1, the upright image as PNG."""
    data = read_bytes(path)
    image = open_image(path, data)
    if image.mode not in _DECODABLE_MODES.get(image.format, ()):
        raise DatasetError(f"{image.format} image in mode {image.mode}; expected a JPEG (L or RGB)"
                           " or PNG image", path, "unsupported_format")
    fmt = image.format.lower()
    turned, orientation = images.upright(image)
    if orientation != 1:
        buf = io.BytesIO()
        turned.save(buf, format="PNG")   # lossless: the decoded pixels, transposed
        data, fmt = buf.getvalue(), "png"
    return data, fmt, turned.height, turned.width, orientation


def read_label_png(path):
    """Class ids of a single-channel or palette PNG; palette INDICES are the ids (as VOC)."""
    image = open_image(path)
    if image.mode not in ("P", "L"):
        raise DatasetError(f"label in mode {image.mode}; expected a palette (P) or grayscale (L)"
                           " PNG of class ids", path, "unsupported_format")
    return np.asarray(image, dtype=np.uint8)


def read_split_list(path):
    """Example names of a split file, one per line (blank lines ignored)."""
    text = read_text(path, "split file")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise DatasetError("split file lists no examples", path, "no_examples")
    return names
