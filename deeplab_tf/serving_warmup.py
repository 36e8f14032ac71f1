"""TF Serving warmup requests: `assets.extra/tf_serving_warmup_requests` in a SavedModel.

TF Serving runs these requests when it loads the model, so the first user request does not
pay for the lazy initialization (graph optimization, kernel selection, allocator growth):
one `PredictRequest` per signature, each with a small real image (the synthetic dataset's
first training example), written as a TFRecord of `tensorflow.serving.PredictionLog`
(https://www.tensorflow.org/tfx/serving/saved_model_warmup).

The message classes are built here from descriptors with the field numbers of
tensorflow/serving's `apis/prediction_log.proto`, `predict.proto` and `model.proto` (the
fields a warmup request uses; `TensorProto` is TensorFlow's own), in a descriptor pool of
their own: the `tensorflow-serving-api` package is not a dependency (each release pins a
TensorFlow version), and a process that also imports it sees no clash.
"""
import functools
import types

import numpy as np
import tensorflow as tf
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf import wrappers_pb2
from tensorflow.core.framework import tensor_pb2

from deeplab_tf import fileio

WARMUP_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
WARMUP_IMAGE_SIZE = (96, 128)   # (height, width): small, so loading stays fast

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_STRING, _MESSAGE = _F.TYPE_STRING, _F.TYPE_MESSAGE


def _field(name, number, kind, type_name=None, label=_OPTIONAL, oneof=None):
    field = _F(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name
    if oneof is not None:
        field.oneof_index = oneof
    return field


def _map_entry(name, value_type):
    """The nested `<Name>Entry` message that a `map<string, V>` field is on the wire."""
    entry = descriptor_pb2.DescriptorProto(name=name)
    entry.field.extend([_field("key", 1, _STRING), _field("value", 2, _MESSAGE, value_type)])
    entry.options.map_entry = True
    return entry


def _message(name, fields, nested=(), oneofs=()):
    message = descriptor_pb2.DescriptorProto(name=name)
    message.field.extend(fields)
    message.nested_type.extend(nested)
    message.oneof_decl.extend(descriptor_pb2.OneofDescriptorProto(name=n) for n in oneofs)
    return message


def _file(name, dependencies, messages):
    proto = descriptor_pb2.FileDescriptorProto(name=name, package="tensorflow.serving",
                                               syntax="proto3")
    proto.dependency.extend(dependencies)
    proto.message_type.extend(messages)
    return proto


def _add_with_dependencies(pool, file_descriptor, added):
    if file_descriptor.name in added:
        return
    for dependency in file_descriptor.dependencies:
        _add_with_dependencies(pool, dependency, added)
    proto = descriptor_pb2.FileDescriptorProto()
    file_descriptor.CopyToProto(proto)
    pool.Add(proto)
    added.add(file_descriptor.name)


@functools.lru_cache(maxsize=None)
def message_classes():
    """PredictionLog, PredictLog, PredictRequest, PredictResponse and ModelSpec (the
    tensorflow.serving messages, with their official field numbers) as a namespace."""
    pool, added = descriptor_pool.DescriptorPool(), set()
    for dependency in (tensor_pb2.DESCRIPTOR, wrappers_pb2.DESCRIPTOR):
        _add_with_dependencies(pool, dependency, added)
    tensor = ".tensorflow.TensorProto"
    spec = ".tensorflow.serving.ModelSpec"
    model = _file("tensorflow_serving/apis/model.proto", ["google/protobuf/wrappers.proto"], [
        _message("ModelSpec", [
            _field("name", 1, _STRING),
            _field("version", 2, _MESSAGE, ".google.protobuf.Int64Value", oneof=0),
            _field("version_label", 4, _STRING, oneof=0),
            _field("signature_name", 3, _STRING)], oneofs=["version_choice"])])
    predict = _file("tensorflow_serving/apis/predict.proto",
                    ["tensorflow/core/framework/tensor.proto",
                     "tensorflow_serving/apis/model.proto"], [
        _message("PredictRequest", [
            _field("model_spec", 1, _MESSAGE, spec),
            _field("inputs", 2, _MESSAGE, ".tensorflow.serving.PredictRequest.InputsEntry",
                   _REPEATED),
            _field("output_filter", 3, _STRING, label=_REPEATED)],
            nested=[_map_entry("InputsEntry", tensor)]),
        _message("PredictResponse", [
            _field("outputs", 1, _MESSAGE, ".tensorflow.serving.PredictResponse.OutputsEntry",
                   _REPEATED),
            _field("model_spec", 2, _MESSAGE, spec)],
            nested=[_map_entry("OutputsEntry", tensor)])])
    log = _file("tensorflow_serving/apis/prediction_log.proto",
                ["tensorflow_serving/apis/predict.proto"], [
        _message("PredictLog", [
            _field("request", 1, _MESSAGE, ".tensorflow.serving.PredictRequest"),
            _field("response", 2, _MESSAGE, ".tensorflow.serving.PredictResponse")]),
        # log_metadata (1) and the other log types (2-5, 7) are left out: not for warmup.
        _message("PredictionLog", [
            _field("predict_log", 6, _MESSAGE, ".tensorflow.serving.PredictLog", oneof=0)],
            oneofs=["log_type"])])
    for proto in (model, predict, log):
        pool.Add(proto)
    return types.SimpleNamespace(**{
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
            f"tensorflow.serving.{name}"))
        for name in ("PredictionLog", "PredictLog", "PredictRequest", "PredictResponse",
                     "ModelSpec")})


def warmup_image():
    """RGB uint8 [96, 128, 3]: the synthetic dataset's first training image (shapes with
    textures on a shaded background, so the network runs on a real picture)."""
    from deeplab_tf.data import synthetic
    return synthetic.generate_example(0, image_size=WARMUP_IMAGE_SIZE)[0]


def _tensor(array):
    """A tensorflow.TensorProto message of this module's pool (from TensorFlow's own)."""
    return tf.make_tensor_proto(array).SerializeToString()


def _within_budget(image, max_pixels):
    """The image, shrunk (area resize, aspect kept) to at most `max_pixels` pixels."""
    h, w = image.shape[:2]
    if h * w <= max_pixels:
        return image
    scale = (max_pixels / (h * w)) ** 0.5
    size = (max(1, int(h * scale)), max(1, int(w * scale)))
    resized = tf.image.resize(image, size, method="area")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def warmup_requests(image=None, max_pixels=None):
    """[(signature name, serialized PredictionLog)]: serving_default with the image as
    JPEG and as PNG bytes (a batch of two: both decoders), predict_images with its pixels.
    `image`: RGB uint8 [H, W, 3] (default `warmup_image`), shrunk if the batch would hold
    more than `max_pixels` (the export's budget: a refused warmup request would stop TF
    Serving from loading the model)."""
    image = warmup_image() if image is None else np.asarray(image, np.uint8)
    both = max_pixels is None or max_pixels >= 2
    if max_pixels is not None:
        image = _within_budget(image, max_pixels // 2 if both else 1)
    encoded = [tf.io.encode_jpeg(image, quality=95).numpy()] if both else []
    encoded.append(tf.io.encode_png(image).numpy())
    classes = message_classes()
    requests = []
    for signature, inputs in (("serving_default", np.array(encoded, dtype=object)),
                              ("predict_images", image[None])):
        request = classes.PredictRequest()
        request.model_spec.signature_name = signature   # the servable's name needs none
        request.inputs["images"].ParseFromString(_tensor(inputs))
        log = classes.PredictionLog(predict_log=classes.PredictLog(request=request))
        requests.append((signature, log.SerializeToString()))
    return requests


def write_warmup(saved_model_dir, image=None, max_pixels=None):
    """Writes `assets.extra/tf_serving_warmup_requests` (`warmup_requests`) into
    `saved_model_dir` (a SavedModel being written: export_lib's staging folder). Returns
    its path."""
    folder = fileio.join(saved_model_dir, WARMUP_DIR)
    fileio.makedirs(folder)
    path = fileio.join(folder, WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for _, record in warmup_requests(image, max_pixels):
            writer.write(record)
    return path
