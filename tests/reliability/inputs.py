"""Bad and odd inputs for the fuzz tests: encoded files, arrays, and the pixels a correct
decoder gets from each good file (computed here with NumPy, not by deeplab_tf).

Imported by the tests and by the child processes of scenarios.py; no TensorFlow here.
"""
import io
import struct
import zlib

import numpy as np
from PIL import Image

# The pixel limit the suite configures (Segmenter, deeplab-predict, the export).
MAX_PIXELS = 1_000_000
# A decompression bomb: 10000 x 10000 grey (100 M pixels) in ~100 KB. Decoded it would
# take 300 MB as RGB and 1.2 GB as float: the header check must stop it first.
BOMB_SIDE = 10_000


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(
        ">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png(width, height, bit_depth=8, color_type=0, rows=None):
    """A PNG written chunk by chunk (any header, e.g. 0 pixels), IDAT streamed row by row:
    `rows` (bytes of one filtered row) repeated `height` times, or zeros."""
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    row = rows or bytes(1 + width * channels * bit_depth // 8)
    compressor, idat = zlib.compressobj(9), []
    for _ in range(height):
        idat.append(compressor.compress(row))
    idat.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(idat))
            + _chunk(b"IEND", b""))


def _encode(image, fmt, **kwargs):
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _jpeg_claiming(width, height):
    """A 16x16 JPEG whose frame header (SOF0) claims width x height."""
    real = _encode(Image.new("RGB", (16, 16), (90, 120, 30)), "JPEG")
    sof = real.index(b"\xff\xc0")
    # SOF0: marker, length (2), precision (1), height (2), width (2), ...
    return real[:sof + 5] + struct.pack(">HH", height, width) + real[sof + 9:]


def encoded_inputs():
    """[(name, bytes, expected pixels uint8 [H, W, 3] or None for "must be an error")]."""
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (23, 31, 3), np.uint8)
    jpeg = _encode(Image.fromarray(rgb), "JPEG", quality=90)
    png_rgb = _encode(Image.fromarray(rgb), "PNG")
    deep_grey = rng.integers(0, 65536, (19, 13), dtype=np.uint16)
    palette = rng.integers(0, 4, (17, 21), np.uint8)
    colours = np.array([[255, 0, 0], [0, 128, 0], [0, 0, 255], [250, 250, 0]], np.uint8)
    pal_image = Image.fromarray(palette, "P")
    pal_image.putpalette(colours.ravel().tolist())
    grey_alpha = rng.integers(0, 256, (11, 9, 2), np.uint8)
    one = np.array([[[200, 10, 60]]], np.uint8)
    return [
        ("random_bytes", rng.integers(0, 256, 3000, np.uint8).tobytes(), None),
        ("empty", b"", None),
        ("text", b"this is not an image\n" * 10, None),
        ("truncated_jpeg", jpeg[:len(jpeg) // 2], None),
        ("truncated_png", png_rgb[:len(png_rgb) // 2], None),
        ("png_signature_only", png_rgb[:12], None),
        ("zero_pixel_png", png(0, 0), None),
        ("zero_width_png", png(0, 7), None),
        ("bomb_png", png(BOMB_SIDE, BOMB_SIDE), None),
        ("huge_jpeg_header", _jpeg_claiming(60000, 60000), None),
        ("one_pixel_png", _encode(Image.fromarray(one), "PNG"), one),
        ("one_pixel_grey_png", _encode(Image.fromarray(one[..., 0]), "PNG"),
         np.repeat(one[..., :1], 3, -1)),
        ("rgb_png", png_rgb, rgb),
        ("grey16_png", _encode(Image.fromarray(deep_grey), "PNG"),
         np.repeat((deep_grey >> 8).astype(np.uint8)[..., None], 3, -1)),
        ("rgb16_png", png(5, 4, bit_depth=16, color_type=2,
                          rows=b"\x00" + bytes(range(0, 240, 8))),
         np.broadcast_to(np.arange(0, 240, 16, dtype=np.uint8).reshape(5, 3), (4, 5, 3))),
        ("palette_png", _encode(pal_image, "PNG"), colours[palette]),
        ("grey_alpha_png", _encode(Image.fromarray(grey_alpha, "LA"), "PNG"),
         np.repeat(grey_alpha[..., :1], 3, -1)),
        ("jpeg", jpeg, np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))),
    ]


def array_inputs():
    """[(name, array, expected RGB uint8 or None for "must be an error")] for Segmenter."""
    rng = np.random.default_rng(8)
    grey = rng.integers(0, 256, (6, 7), np.uint8)
    floats = rng.uniform(-20, 300, (5, 4, 3))
    rgba = rng.integers(0, 256, (5, 6, 4), np.uint8)
    grey_alpha = rng.integers(0, 256, (4, 5, 2), np.uint8)
    return [
        ("zero_by_zero", np.zeros((0, 0, 3), np.uint8), None),
        ("zero_rows", np.zeros((0, 9, 3), np.uint8), None),
        ("grey_alpha", grey_alpha, np.repeat(grey_alpha[..., :1], 3, -1)),
        ("four_dims", np.zeros((1, 4, 4, 3), np.uint8), None),
        ("above_limit", np.zeros((1001, 1000, 3), np.uint8), None),
        ("one_pixel", np.array([[[5, 250, 128]]], np.uint8), np.array([[[5, 250, 128]]],
                                                                      np.uint8)),
        ("one_grey_pixel", np.array([[77]], np.uint8), np.full((1, 1, 3), 77, np.uint8)),
        ("grey", grey, np.repeat(grey[..., None], 3, -1)),
        ("grey_one_channel", grey[..., None], np.repeat(grey[..., None], 3, -1)),
        ("rgba", rgba, rgba[..., :3]),
        ("five_channels", np.zeros((4, 4, 5), np.uint8), None),
        ("floats_out_of_range", floats, np.round(np.clip(floats, 0, 255)).astype(np.uint8)),
        ("uint16", np.full((3, 3, 3), 0xABCD, np.uint16), np.full((3, 3, 3), 0xAB, np.uint8)),
    ]


def batch_inputs():
    """[(name, uint8 batch)] that predict_images must refuse as a whole, with the words its
    error must contain: no image at all, and a batch whose images are each within
    MAX_PIXELS but not together (the model runs on the whole batch at once)."""
    side = int(MAX_PIXELS ** 0.5 * 0.8)
    return [
        ("empty_batch", np.zeros((0, 5, 5, 3), np.uint8),
         "predict_images: expected a batch of at least 1 image, got 0"),
        ("batch_over_budget", np.zeros((2, side, side, 3), np.uint8),
         f"the batch holds {2 * side * side} pixels in all: expected at most {MAX_PIXELS}"),
    ]
