"""The prediction protocol shared by evaluation, `Segmenter` and the exported SavedModel.

One function, `predict_probabilities`, turns images into class probabilities; eval_lib,
`Segmenter` and export_lib all call it, so they cannot disagree. For a batch of images of
size H x W (raw RGB, 0-255) and each scale s of `Protocol.scales` (Sec. 4.1, Table 6):

  1. resize the image to ((H-1)s+1) x ((W-1)s+1), bilinear with aligned corners (the
     grid the model's own align-corners upsampling uses); s = 1 leaves it untouched;
  2. if `flip`, add its left-right mirror image: the flip is applied at EVERY scale,
     a single scale included (the original research/deeplab ignored it at one scale);
  3. pad with the mean pixel (`model.mean_rgb`, which normalizes to zero) at the bottom and
     right up to the next size of the form OS*k+1 (OS = output stride; at least `pad_to`,
     e.g. 513x513 as the original, when given), so that feature pixel i sits exactly on
     input pixel OS*i;
  4. predict: softmax of the logits. Where a padded side exceeds `max_side` (Cityscapes
     1024x2048 at large scales), overlapping windows of at most `max_side` pixels, at
     offsets that are multiples of OS, are predicted one by one and their probabilities
     averaged where they overlap, weighted down towards each window's cut edges
     (windows.py); below `max_side` this is one window, the whole image;
  5. cut the padding off, un-mirror the flipped copy, resize the probabilities back to the
     ORIGINAL H x W (bilinear, aligned corners);
  6. average the probabilities over all scales and flips at the original resolution;
     the labels are their argmax.

Shapes are dynamic throughout: one `tf.function` with input signature [None, None, None, 3]
serves every image size without retracing.

Image files are read by `deeplab_tf.images` (EXIF-upright, RGB 8-bit as tf.io decodes).
"""
import dataclasses
import json
import os
from typing import Optional, Tuple

import tensorflow as tf

from deeplab_tf import fileio, windows
from deeplab_tf.data.metadata import DatasetMetadata
from deeplab_tf.images import (  # noqa: F401  (ImageError: part of Segmenter's API)
    DEFAULT_MAX_PIXELS, ImageError, check_pixels, read_image, to_rgb_uint8)

IMAGES_SPEC = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")


@dataclasses.dataclass(frozen=True)
class Protocol:
    """How images become probabilities (module docstring). Paper's best: output_stride 8,
    scales (0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip (Table 6)."""
    output_stride: int = 8
    scales: Tuple[float, ...] = (1.0,)
    flip: bool = False
    pad_to: Optional[Tuple[int, int]] = None   # minimum padded size, e.g. (513, 513)
    max_side: Optional[int] = None             # sliding windows above; None: never
    window_overlap: float = 1.0 / 3            # fraction of a window shared with the next

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if self.pad_to is not None:
            object.__setattr__(self, "pad_to", tuple(int(p) for p in self.pad_to))
        os_ = self.output_stride
        checks = [
            (os_ in (4, 8, 16, 32, 64, 128, 256), "output_stride", os_, "8, 16 or 32"),
            (len(self.scales) > 0 and min(self.scales) > 0, "scales", self.scales,
             "one or more positive scales"),
            (self.pad_to is None or (len(self.pad_to) == 2 and min(self.pad_to) >= 1),
             "pad_to", self.pad_to, "(height, width)"),
            (self.max_side is None or self.max_side > os_, "max_side", self.max_side,
             f"> output_stride ({os_})"),
            (0 <= self.window_overlap < 1, "window_overlap", self.window_overlap, "in [0, 1)"),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise ValueError(f"Protocol {name}={value!r}: expected {expected}")

    @classmethod
    def from_config(cls, section, **overrides):
        """From a config's `eval` or `export` section; None overrides are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: getattr(section, k) for k in fields if hasattr(section, k)}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_dict(self):
        return dataclasses.asdict(self)


def parse_scales(values, name="scales"):
    """Floats from strings such as ["0.5", "0.75"] (a comma-separated flag); None stays."""
    if values is None:
        return None
    try:
        scales = tuple(float(v) for v in values)
    except ValueError:
        raise ValueError(f"--{name}={','.join(values)}: expected numbers, e.g. "
                         f"0.5,0.75,1.0,1.25,1.5,1.75") from None
    if not scales or min(scales) <= 0:
        raise ValueError(f"--{name}={','.join(values)}: expected positive scales")
    return scales


def parse_size(text, name="size"):
    """(height, width) from "N" or "HxW"; None stays."""
    if text is None:
        return None
    try:
        dims = [int(p) for p in text.lower().split("x")]
    except ValueError:
        dims = []
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise ValueError(f"--{name}={text!r}: expected N or HxW with positive sizes, e.g. 513")
    return dims[0], dims[-1]


# ----------------------------------------------------------------------------- protocol

def _resize(x, size):
    return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True,
                                     half_pixel_centers=False)


def scaled_size(size, scale):
    """(n - 1) * s + 1 per side, floored: the align-corners grid of the original."""
    scaled = tf.cast(tf.cast(size - 1, tf.float32) * scale, tf.int32) + 1
    return tf.maximum(scaled, 1)


def padded_size(size, output_stride, minimum=None):
    """The smallest OS*k+1 >= max(size, minimum)."""
    if minimum is not None:
        size = tf.maximum(size, minimum)
    return (size - 1 + output_stride - 1) // output_stride * output_stride + 1


def _padded_probabilities(model, x, protocol, num_classes, mean_rgb):
    """Pads x with the mean pixel to OS*k+1, predicts, cuts back to x's size."""
    shape = tf.shape(x)
    pad_h, pad_w = (None, None) if protocol.pad_to is None else protocol.pad_to
    ph = padded_size(shape[1], protocol.output_stride, pad_h)
    pw = padded_size(shape[2], protocol.output_stride, pad_w)
    mean = tf.constant(mean_rgb, tf.float32)
    x = tf.pad(x - mean, [[0, 0], [0, ph - shape[1]], [0, pw - shape[2]], [0, 0]]) + mean
    probs = windows.windowed_probabilities(model, x, protocol, num_classes)
    return probs[:, :shape[1], :shape[2]]


def predict_probabilities(model, images, protocol, num_classes, mean_rgb,
                          inline_network=False):
    """The protocol (module docstring): class probabilities at the images' own size.

    Args:
      model: called as `model(x, training=False)` on raw RGB float32 [n, h, w, 3] (h, w
        of the form OS*k+1, or windows of it); returns logits [n, h, w, num_classes].
      images: [N, H, W, 3] raw RGB 0-255, any real dtype.
      protocol: a `Protocol`.
      num_classes: the logits' channels.
      mean_rgb: the padding pixel (`model.mean_rgb`).
      inline_network: let TensorFlow inline the network's function at each call site
        (needed by the TFLite converter; slower first call otherwise, same speed after).
    Returns:
      float32 [N, H, W, num_classes], averaged over scales and flips.
    """
    images = tf.cast(images, tf.float32)
    n, size = tf.shape(images)[0], tf.shape(images)[1:3]
    # One traced graph of the network serves every scale, flip and window of dynamic size
    # (a call op each) instead of a copy per call site: 6 scales trace the network once.
    # Static sizes (a fixed-size TFLite export) still get a static trace per size.
    # Not inlined: TensorFlow's graph optimizer then works on the network once, not on a
    # copy per call site. ResNet-101, OS8, 6 scales + flip: first call 20 s -> 9.6 s; the
    # steady-state speed is the same (OS16, 3 scales + flip, 257x257: 2.10 s either way).
    network = model
    model = tf.function(lambda x, training=False: network(x, training=False),
                        autograph=False,
                        experimental_attributes=None if inline_network else {"_noinline": True})
    total = 0.0
    for scale in protocol.scales:
        x = images if scale == 1.0 else _resize(images, scaled_size(size, scale))
        if protocol.flip:
            x = tf.concat([x, tf.reverse(x, [2])], axis=0)
        probs = _padded_probabilities(model, x, protocol, num_classes, mean_rgb)
        if protocol.flip:
            probs = probs[:n] + tf.reverse(probs[n:], [2])
        if scale != 1.0:
            probs = _resize(probs, size)
        total += probs
    return total / (len(protocol.scales) * (2 if protocol.flip else 1))


def make_predictor(model, protocol, fold_batch_norm=False):
    """A tf.function images -> probabilities for a DeepLabV3, traced once for all sizes.

    `fold_batch_norm` predicts with BN folded into the convolutions (a snapshot of the
    weights, modeling/folding.py). Off by default: on the 2-core AVX2 CPU we measured it
    was ~20% slower with TensorFlow's oneDNN kernels and within noise with its Eigen ones
    (bench/ours.py --fold)."""
    num_classes = model.builder_args["num_classes"]
    net = model
    if fold_batch_norm:
        from deeplab_tf.modeling.folding import fold_batch_norm as fold
        net = fold(model)
    return tf.function(
        lambda images: predict_probabilities(net, images, protocol, num_classes,
                                             model.mean_rgb),
        input_signature=[IMAGES_SPEC])


# ----------------------------------------------------------------------------- Segmenter

def is_saved_model(path):
    return tf.saved_model.contains_saved_model(os.fspath(path))


class Segmenter:
    """Segments single images of any size with a trained model (the protocol above).

    Args:
      path: a model_dir (config.json, dataset.json, checkpoints/) or a SavedModel written
        by `export_lib.export` (detected).
      checkpoint: a checkpoint path of the model_dir (default: the latest).
      output_stride, scales, flip, pad_to, max_side: override the model_dir's `eval`
        config section (Sec. 4.1: evaluate at output stride 8). A SavedModel has them
        baked in at export: passing one is an error.
      precision: with a model_dir, the compute precision ("mixed_bfloat16": bfloat16
        convolutions, fast on CPUs with avx512_bf16/AMX, GPUs and TPUs; see
        `model_dir.dtype_policy`). A SavedModel has it baked in at export.
    Attributes:
      metadata: the DatasetMetadata (class names, colour map).
      protocol: the Protocol in use.
    """

    def __init__(self, path, checkpoint=None, output_stride=None, scales=None, flip=None,
                 pad_to=None, max_side=None, precision=None):
        path = os.fspath(path)
        overrides = dict(output_stride=output_stride, scales=scales, flip=flip,
                         pad_to=pad_to, max_side=max_side)
        if is_saved_model(path):
            given = sorted(k for k, v in dict(overrides, precision=precision).items()
                           if v is not None)
            if given or checkpoint:
                raise ValueError(f"{path} is a SavedModel: {given or ['checkpoint']} were "
                                 f"fixed at export (deeplab-export)")
            loaded = tf.saved_model.load(path)
            self._loaded = loaded   # keeps the signature's variables alive
            self._signature = loaded.signatures["predict_images"]
            self.metadata = DatasetMetadata.from_dict(
                json.loads(loaded.dataset_json.numpy().decode("utf-8")))
            self.protocol = Protocol(**json.loads(loaded.protocol_json.numpy().decode("utf-8")))
            self._predict = None
        elif fileio.exists(fileio.join(path, "config.json")):
            from deeplab_tf import model_dir
            config, _ = model_dir.read_config(path)
            self.protocol = Protocol.from_config(config.eval, **overrides)
            model, _, self.metadata = model_dir.load_model(
                path, checkpoint, output_stride=self.protocol.output_stride,
                precision=precision)
            self._predict = make_predictor(model, self.protocol)
        else:
            raise FileNotFoundError(f"{path}: neither a SavedModel (saved_model.pb) nor a "
                                    f"deeplab_tf model_dir (config.json)")

    def segment(self, image, max_pixels=DEFAULT_MAX_PIXELS):
        """(labels int32 [H, W], probabilities float32 [H, W, C]) at the image's own size.

        `image`: a PIL image or an array (see `to_rgb_uint8`) of 1 to `max_pixels` pixels
        (else ImageError). Probabilities are None for a SavedModel exported without them.
        """
        rgb = to_rgb_uint8(image)
        check_pixels(rgb.shape[1], rgb.shape[0], max_pixels, f"image of shape {rgb.shape}")
        if self._predict is None:
            out = self._signature(images=tf.constant(rgb[None]))
            probs = out.get("probabilities")
            return out["labels"][0].numpy(), None if probs is None else probs[0].numpy()
        probs = self._predict(tf.constant(rgb[None], tf.float32))[0]
        return tf.argmax(probs, -1, output_type=tf.int32).numpy(), probs.numpy()

    def segment_file(self, path, max_pixels=DEFAULT_MAX_PIXELS):
        """(rgb uint8, labels, probabilities) of an image file, EXIF-upright."""
        rgb = read_image(path, max_pixels)
        return (rgb, *self.segment(rgb, max_pixels))
