"""Export for serving: a SavedModel (TF Serving) and an optional fixed-size TFLite model.

Both run `inference.predict_probabilities`, the protocol evaluation and `Segmenter` use
(padding with the mean pixel to OS*k+1, scales and flips averaged as probabilities at the
original size, sliding windows above `max_side`), with the options of the export baked
into the graph, so served predictions cannot disagree with evaluated ones.

SavedModel signatures:
  serving_default(images: string [N], encoded JPEG or PNG bytes)
      -> labels int32 [N, Hmax, Wmax]: images of different sizes come back padded to the
         largest with 255 (the ignore value); image_sizes int32 [N, 2] gives each (H, W);
         probabilities float32 [N, Hmax, Wmax, C] (0 in the padding), if exported with them.
      Bytes are decoded as they are: EXIF orientation is NOT applied (tf.io ignores it);
      grayscale, alpha, palette and 16-bit PNGs become RGB 8-bit as tf.io.decode_png does.
      Bytes that are not a JPEG or PNG fail with InvalidArgument naming the image's index,
      as does an image whose header gives 0 pixels or more than `max_pixels` (checked
      before decoding: a small file cannot make the server allocate gigabytes).
  predict_images(images: uint8 [N, H, W, C], N >= 1, 1 <= H*W, N*H*W <= max_pixels)
      -> labels int32 [N, H, W] (and probabilities float32 [N, H, W, C]). C = 3 is RGB;
      greyscale (C=1) is tiled and alpha (C=2 or 4) dropped, as for encoded images, so
      arrays read from grey or RGBA PNGs work; other C are an InvalidArgument.
  Both signatures budget a request as a whole: an empty batch, or images whose pixels add
  up to more than `max_pixels`, are an InvalidArgument saying so (for bytes, from the
  headers, before anything is decoded).
TF Serving warmup: assets.extra/tf_serving_warmup_requests holds one PredictRequest per
signature with a small image (`serving_warmup`), which TF Serving runs when loading.
Metadata, readable after `tf.saved_model.load(dir)`: `class_names` (string [C]),
`colormap` (uint8 [256, 3]), `dataset_json` (the full DatasetMetadata), `protocol_json`
(the baked options) and `max_pixels` (int64: the pixels one request may hold in all), all
tf.Variables (a tf.constant attribute would not be saved).
`max_pixels` defaults to what fits a memory target per request (serving_budget.py: the
model's estimated peak bytes per pixel at the export's output stride, scales, flip and
dtype; 1 GiB unless `serving_memory_mb` says otherwise); an explicit `max_pixels` wins.

The exported module tracks only the model's variables, not the Keras model itself.
TFLite is converted from the concrete function with its variables frozen into constants
(its signature `serving_default`: images -> labels, probabilities): converting a
SavedModel whose root tracks a Keras model gives all-NaN outputs.
"""
import collections
import json
import uuid

import numpy as np
import tensorflow as tf
# Private, kept on purpose: TF has no public API that freezes a TF2 function's variables
# into constants. The public converter paths that freeze internally (from_saved_model with
# the variables, from_concrete_functions with trackable_obj) were tried: their TFLite models
# give NaN or fail at READ_VARIABLE (tests/test_export.py, TFLite parity).
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from deeplab_tf import fileio, publish, serving_warmup
from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf.data.tfrecord import decode_image, image_size
from deeplab_tf.errors import short_message
from deeplab_tf.images import DEFAULT_MAX_PIXELS
from deeplab_tf.inference import Protocol, predict_probabilities
from deeplab_tf.serving_budget import DEFAULT_SERVING_MEMORY_MB, default_max_pixels

SAVED_MODEL_MARKER = "saved_model.pb"
# What an export writes at a SavedModel's top level (tf.saved_model.save, and the TF Serving
# warmup requests): with --overwrite, a folder holding anything else (a model_dir, a parent
# folder), or an assets.extra with other files than the warmup requests, is the user's,
# and is refused (publish.check_replaceable, _check_export_dir).
SAVED_MODEL_NAMES = frozenset({SAVED_MODEL_MARKER, "fingerprint.pb", "variables", "assets",
                               serving_warmup.WARMUP_DIR})
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Serving needs no gradients: none are saved (a custom gradient would fail on frozen graphs).
_SAVE_OPTIONS = tf.saved_model.SaveOptions(experimental_custom_gradients=False)


def _outputs_fn(model, protocol, with_probabilities, inline_network=False):
    num_classes = model.builder_args["num_classes"]

    def outputs(images):
        probs = predict_probabilities(model, images, protocol, num_classes, model.mean_rgb,
                                      inline_network)
        out = {"labels": tf.argmax(probs, -1, output_type=tf.int32)}
        if with_probabilities:
            out["probabilities"] = probs
        return out
    return outputs


def _header(data, index):
    """(where, size): a message naming the image, and its (height, width) from the JPEG/PNG
    header, without decoding; anything else is an InvalidArgument naming the image."""
    png = tf.logical_and(tf.equal(tf.strings.substr(data, 0, 8), _PNG_MAGIC),
                         tf.strings.length(data) >= 33)   # signature + IHDR chunk
    where = tf.strings.join(["serving_default: images[", tf.strings.as_string(index), "] (",
                             tf.strings.as_string(tf.strings.length(data)), " bytes)"])
    check = tf.debugging.Assert(tf.logical_or(tf.io.is_jpeg(data), png), [tf.strings.join(
        [where, " is not a JPEG or PNG image, or its header is cut off"])])
    with tf.control_dependencies([check]):
        return where, image_size(tf.identity(data))


def _decode(data, index, max_pixels):
    """RGB uint8 of JPEG/PNG bytes, the training pipeline's decoder, once the header's size
    is checked."""
    where, size = _header(data, index)
    with tf.control_dependencies([_check_size(size, max_pixels, where)]):
        return decode_image(tf.identity(data), channels=3)


def _check_count(count, name):
    """An assertion that a batch holds at least one image."""
    return tf.debugging.Assert(count >= 1, [tf.strings.join([
        name, ": expected a batch of at least 1 image, got ", tf.strings.as_string(count)])])


def _check_total(total_pixels, max_pixels, name):
    """An assertion that a batch holds at most `max_pixels` pixels in all: the budget is per
    request (N images of max_pixels each would cost N times it)."""
    total_pixels = tf.cast(total_pixels, tf.int64)
    return tf.debugging.Assert(total_pixels <= max_pixels, [tf.strings.join([
        name, ": the batch holds ", tf.strings.as_string(total_pixels),
        " pixels in all: expected at most ", str(max_pixels),
        " (max_pixels, the serving budget)"])])


def _to_rgb(images):
    """uint8 [N, H, W, C] -> [N, H, W, 3]: RGB as is, greyscale (C=1) tiled, RGBA (C=4) and
    grey+alpha (C=2) with the alpha dropped, as the encoded path's decoder does; any other
    channel count is an InvalidArgument."""
    channels = tf.shape(images)[3]
    check = tf.debugging.Assert(tf.logical_and(channels >= 1, channels <= 4), [
        tf.strings.join(["predict_images: expected uint8 [batch, height, width, 3] RGB "
                         "(or 1 grey, 2 grey+alpha, 4 RGBA channels), got ",
                         tf.strings.as_string(channels), " channels"])])
    with tf.control_dependencies([check]):
        grey = tf.tile(images[..., :1], [1, 1, 1, 3])
        return tf.ensure_shape(tf.cond(channels >= 3, lambda: images[..., :3],
                                       lambda: grey), [None, None, None, 3])


def _check_size(size, max_pixels, where):
    """An assertion that 1 <= height * width <= max_pixels, naming the image and its size."""
    pixels = tf.cast(size[0], tf.int64) * tf.cast(size[1], tf.int64)
    return tf.debugging.Assert(tf.logical_and(pixels >= 1, pixels <= max_pixels), [
        tf.strings.join([where, " is ", tf.strings.as_string(size[1]), "x",
                         tf.strings.as_string(size[0]), " (WxH) pixels: expected 1 to ",
                         str(max_pixels), " (max_pixels)"])])


class _Serving(tf.Module):
    """The exported object: two signatures, the model's variables, the metadata."""

    def __init__(self, model, metadata, protocol, with_probabilities,
                 max_pixels=DEFAULT_MAX_PIXELS):
        super().__init__(name="deeplab_serving")
        # Variables only: the Keras model stays out of the object graph (TFLite trap).
        self.model_variables = list(model.variables)
        self.class_names = tf.Variable(list(metadata.class_names), trainable=False)
        self.colormap = tf.Variable(metadata.colormap(), trainable=False)
        self.dataset_json = tf.Variable(metadata.to_json(), trainable=False)
        self.protocol_json = tf.Variable(json.dumps(protocol.to_dict()), trainable=False)
        self.max_pixels = tf.Variable(int(max_pixels), dtype=tf.int64, trainable=False)
        outputs = _outputs_fn(model, protocol, with_probabilities)
        num_classes = metadata.num_classes

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.uint8,
                                                    name="images")])
        def predict_images(images):
            shape = tf.shape(images)
            # Created in this order (tf.function runs assertions in program order), so an
            # error names the first thing wrong.
            checks = [_check_count(shape[0], "predict_images"),
                      _check_size(shape[1:3], max_pixels, "predict_images: each image"),
                      _check_total(tf.reduce_prod(tf.cast(shape[:3], tf.int64)), max_pixels,
                                   "predict_images")]
            with tf.control_dependencies(checks):
                rgb = _to_rgb(tf.identity(images))
            return outputs(tf.cast(rgb, tf.float32))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve_bytes(images):
            # Sizes first, from the headers (nothing decoded): each image, and the batch as
            # a whole, must fit the budget before anything is allocated for the pixels.
            count = tf.shape(images)[0]
            with tf.control_dependencies([_check_count(count, "serving_default")]):
                indices = tf.range(count)

            def header_size(i):
                where, size = _header(images[i], i)
                with tf.control_dependencies([_check_size(size, max_pixels, where)]):
                    return tf.identity(size)
            sizes = tf.map_fn(header_size, indices, fn_output_signature=tf.int32)
            sizes = tf.reshape(sizes, [-1, 2])
            total = tf.reduce_sum(tf.cast(sizes[:, 0], tf.int64) * tf.cast(sizes[:, 1],
                                                                            tf.int64))
            with tf.control_dependencies([_check_total(total, max_pixels,
                                                       "serving_default")]):
                sizes, indices = tf.identity(sizes), tf.identity(indices)
            largest = tf.reduce_max(tf.concat([sizes, [[0, 0]]], 0), axis=0)

            def one(i):
                image = _decode(images[i], i, max_pixels)
                size_check = tf.debugging.assert_equal(
                    tf.shape(image)[:2], sizes[i],
                    message="serving_default: an image's decoded size differs from its header")
                with tf.control_dependencies([size_check]):
                    out = outputs(tf.cast(image, tf.float32)[None])
                pad = [[0, largest[0] - sizes[i, 0]], [0, largest[1] - sizes[i, 1]]]
                padded = {"labels": tf.pad(out["labels"][0], pad, constant_values=255)}
                if with_probabilities:
                    padded["probabilities"] = tf.pad(out["probabilities"][0], pad + [[0, 0]])
                return padded

            spec = {"labels": tf.TensorSpec([None, None], tf.int32)}
            if with_probabilities:
                spec["probabilities"] = tf.TensorSpec([None, None, num_classes], tf.float32)
            result = tf.map_fn(one, indices, fn_output_signature=spec)
            result["image_sizes"] = sizes
            return result

        self.predict_images = predict_images
        self.serve_bytes = serve_bytes


class ExportError(OSError):
    """Writing an export failed; nothing of it was kept, an earlier export is unchanged."""


def _check_export_dir(export_dir, overwrite, protected):
    """Refuses, before any work, an export_dir that exists without `overwrite`, or that
    holds anything but an export, or is or holds a `protected` path (the model_dir)."""
    if fileio.exists(export_dir) and not overwrite:
        raise FileExistsError(f"{export_dir} exists: pass overwrite (--overwrite) or "
                              f"another --export_dir")
    publish.check_replaceable(export_dir, SAVED_MODEL_MARKER, overwrite, SAVED_MODEL_NAMES,
                             protected=protected)
    extra = fileio.join(export_dir, serving_warmup.WARMUP_DIR)
    if overwrite and fileio.isdir(extra):
        foreign = sorted(set(fileio.listdir(extra)) - {serving_warmup.WARMUP_FILE})
        if foreign:
            raise FileExistsError(
                f"{export_dir} is not a folder this command wrote (its "
                f"{serving_warmup.WARMUP_DIR} holds {', '.join(foreign[:5])}, which this "
                f"command does not write): refusing to replace it; choose another output "
                f"folder, or move its contents away")


class Budget(collections.namedtuple("Budget", "max_pixels derived bytes_per_pixel memory_mb")):
    """The pixels a request may hold (`max_pixels`, baked into the export), what the memory
    target `memory_mb` (MiB) gives (`derived`), and the estimated peak bytes per pixel."""


def serving_budget(model, protocol, probabilities=False, max_pixels=None,
                   serving_memory_mb=DEFAULT_SERVING_MEMORY_MB):
    """A `Budget`: `max_pixels` if given, else the pixels whose estimated peak memory
    (serving_budget.bytes_per_pixel, plus the weights) fits `serving_memory_mb`."""
    derived, per_pixel = default_max_pixels(model, protocol, probabilities, serving_memory_mb)
    return Budget(int(max_pixels) if max_pixels else derived, derived, per_pixel,
                  serving_memory_mb or DEFAULT_SERVING_MEMORY_MB)


def export_saved_model(model, metadata, export_dir, protocol, probabilities=False,
                       overwrite=False, max_pixels=None, protected=(),
                       serving_memory_mb=DEFAULT_SERVING_MEMORY_MB, warmup_image=None):
    """Writes the SavedModel (module docstring) to a staging sibling, then publishes it
    (publish.publish_dir: renamed locally; copied with saved_model.pb last on a bucket);
    a failed write (ExportError) leaves nothing and an earlier export intact. `overwrite`
    replaces only an earlier export (no top-level name outside SAVED_MODEL_NAMES), never a
    folder that is or holds one of the `protected` paths. For TF Serving, export to
    <base>/<version>, e.g. models/deeplab/1. `max_pixels`: the pixels one request may
    hold in all (height * width summed); default: what fits `serving_memory_mb` MiB
    (`serving_budget`). TF Serving's warmup requests go into assets.extra/
    (`serving_warmup`: one request per signature with `warmup_image`, RGB uint8, default
    a small synthetic picture). Returns (export_dir, Budget)."""
    export_dir = fileio.absolute(export_dir)
    _check_export_dir(export_dir, overwrite, protected)
    budget = serving_budget(model, protocol, probabilities, max_pixels, serving_memory_mb)
    module = _Serving(model, metadata, protocol, probabilities, budget.max_pixels)

    def write(staging):
        tf.saved_model.save(module, staging, signatures={
            "serving_default": module.serve_bytes, "predict_images": module.predict_images},
            options=_SAVE_OPTIONS)
        serving_warmup.write_warmup(staging, warmup_image, budget.max_pixels)
    # Readers (TF Serving, tf.saved_model.load) need saved_model.pb: the marker, published
    # last (publish.publish_dir).
    try:
        publish.publish_dir(export_dir, write, SAVED_MODEL_MARKER, overwrite=overwrite,
                           expected_names=SAVED_MODEL_NAMES, protected=protected)
    except (tf.errors.OpError, OSError) as e:   # disk full, file size limit, ...
        raise ExportError(f"writing the SavedModel {export_dir} failed ({type(e).__name__}: "
                          f"{short_message(e)}); nothing of it was kept"
                          + ("; the export already there is unchanged"
                             if fileio.exists(export_dir) else "")) from e
    return export_dir, budget


def export_tflite(model, protocol, path, height, width, quantize="float",
                  representative_images=None):
    """A TFLite model for float32 raw RGB [1, height, width, 3] (resize inputs to it),
    returning labels int32 [1, H, W] and probabilities float32 [1, H, W, C].

    quantize: "float", or "int8" (weights and activations; needs `representative_images`,
    an iterable of RGB arrays, any size: each is resized to height x width).
    Windows are not used (the size is fixed at export). Written atomically.
    """
    if quantize not in ("float", "int8"):
        raise ValueError(f"quantize={quantize!r}: expected 'float' or 'int8'")
    if quantize == "int8" and representative_images is None:
        raise ValueError("quantize='int8' needs representative_images")
    images = list(representative_images or [])
    spec = tf.TensorSpec([1, height, width, 3], tf.float32, name="images")
    # The converter needs the network inlined at its call sites.
    outputs = _outputs_fn(model, Protocol(**dict(protocol.to_dict(), max_side=None)), True,
                          inline_network=True)
    frozen = convert_variables_to_constants_v2(
        tf.function(outputs, input_signature=[spec]).get_concrete_function())
    # Freezing loses the output names; a wrapper restores them for the signature.
    named = tf.function(lambda images: dict(zip(["labels", "probabilities"], frozen(images))),
                        input_signature=[spec])
    # The converter reads a SavedModel whose root holds nothing but the frozen function:
    # no Keras model (the all-NaN trap), no variables; signatures keep the names.
    # Its staging SavedModel lives in TF's in-memory filesystem: nothing touches a disk.
    staging = f"ram://deeplab_tflite/{uuid.uuid4().hex}"
    try:
        tf.saved_model.save(tf.Module(), staging, signatures={"serving_default": named},
                            options=_SAVE_OPTIONS)
        converter = tf.lite.TFLiteConverter.from_saved_model(staging)
        if quantize == "int8":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: (
                [tf.image.resize(np.asarray(image, np.float32)[None], (height, width))]
                for image in images)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                                   tf.lite.OpsSet.TFLITE_BUILTINS]
        flatbuffer = converter.convert()
    finally:
        fileio.rmtree(staging)
    return fileio.write_bytes(path, flatbuffer)


def export_model_dir(model_dir, export_dir, checkpoint=None, probabilities=None,
                     overwrite=False, max_pixels=None, precision=None,
                     serving_memory_mb=DEFAULT_SERVING_MEMORY_MB, **protocol_overrides):
    """Exports a model_dir's checkpoint (default the latest) with the config's `export`
    section (output stride, scales, flip, probabilities; `max_side` from `eval`), any of
    which `protocol_overrides` / `probabilities` replace; `precision` e.g.
    "mixed_bfloat16" bakes bfloat16 convolutions into the graph (model_dir.dtype_policy);
    `max_pixels`, `serving_memory_mb`: as for `export_saved_model`.
    Returns (export_dir, model, metadata, protocol, Budget)."""
    config, _ = model_dir_lib.read_config(model_dir)
    # Before minutes of loading; the model_dir (and a --checkpoint elsewhere) is never
    # replaced, nor a folder holding it.
    protected = (model_dir,) + ((checkpoint,) if checkpoint else ())
    _check_export_dir(fileio.absolute(export_dir), overwrite, protected)
    overrides = dict(max_side=config.eval.max_side)
    overrides.update({k: v for k, v in protocol_overrides.items() if v is not None})
    protocol = Protocol.from_config(config.export, **overrides)
    if probabilities is None:
        probabilities = config.export.probabilities
    model, _, metadata = model_dir_lib.load_model(model_dir, checkpoint,
                                                  output_stride=protocol.output_stride,
                                                  precision=precision)
    path, budget = export_saved_model(model, metadata, export_dir, protocol, probabilities,
                                      overwrite, max_pixels, protected, serving_memory_mb)
    return path, model, metadata, protocol, budget
