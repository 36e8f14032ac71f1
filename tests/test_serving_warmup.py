"""TF Serving warmup requests in the export: assets.extra/tf_serving_warmup_requests, a
TFRecord of tensorflow.serving.PredictionLog. Decoded here by hand from the protobuf wire
format against tensorflow/serving's field numbers (independently of the message classes
serving_warmup builds), and run against the loaded SavedModel's signatures."""
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from deeplab_tf import export_lib, serving_warmup
from deeplab_tf.inference import Protocol
from deeplab_tf.modeling import build_deeplabv3
from deeplab_tf.testing import TOY_METADATA as METADATA
from conftest import TINY

# tensorflow_serving/apis/prediction_log.proto, predict.proto, model.proto
PREDICTION_LOG_PREDICT_LOG = 6
PREDICT_LOG_REQUEST = 1
PREDICT_REQUEST_MODEL_SPEC, PREDICT_REQUEST_INPUTS = 1, 2
MODEL_SPEC_SIGNATURE_NAME = 3
MAP_KEY, MAP_VALUE = 1, 2


def _varint(data, i):
    value = shift = 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def _fields(data):
    """[(field number, bytes)] of a message's length-delimited fields (the only wire type
    these messages use); any other wire type fails the test."""
    out, i = [], 0
    while i < len(data):
        key, i = _varint(data, i)
        assert key & 7 == 2, f"field {key >> 3}: wire type {key & 7}, expected 2"
        size, i = _varint(data, i)
        out.append((key >> 3, data[i:i + size]))
        i += size
    return out


def _one(fields, number):
    values = [v for n, v in fields if n == number]
    assert len(values) == 1, (number, [n for n, _ in fields])
    return values[0]


def decode_request(record):
    """(signature_name, {input name: ndarray}) of one serialized PredictionLog."""
    log = _fields(record)
    assert [n for n, _ in log] == [PREDICTION_LOG_PREDICT_LOG]
    request = _fields(_one(_fields(_one(log, PREDICTION_LOG_PREDICT_LOG)),
                           PREDICT_LOG_REQUEST))
    spec = _fields(_one(request, PREDICT_REQUEST_MODEL_SPEC))
    signature = _one(spec, MODEL_SPEC_SIGNATURE_NAME).decode()
    inputs = {}
    for number, entry in request:
        if number == PREDICT_REQUEST_INPUTS:
            entry = _fields(entry)
            inputs[_one(entry, MAP_KEY).decode()] = tf.make_ndarray(
                tensor_pb2.TensorProto.FromString(_one(entry, MAP_VALUE)))
    return signature, inputs


def _export(path, max_pixels=None):
    tf.keras.utils.set_random_seed(0)
    model = build_deeplabv3(METADATA.num_classes, **TINY)
    export_lib.export_saved_model(model, METADATA, str(path), Protocol(output_stride=16),
                                  max_pixels=max_pixels)
    return tf.saved_model.load(str(path))


def _requests(export_dir):
    path = export_dir / serving_warmup.WARMUP_DIR / serving_warmup.WARMUP_FILE
    return [decode_request(r.numpy()) for r in tf.data.TFRecordDataset(str(path))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("warmup") / "export"
    return path, _export(path)


def test_one_request_per_signature_that_the_signature_serves(exported):
    path, loaded = exported
    requests = _requests(path)
    assert sorted(s for s, _ in requests) == sorted(loaded.signatures) == [
        "predict_images", "serving_default"]
    outputs = {}
    for signature, inputs in requests:
        assert list(inputs) == ["images"]
        outputs[signature] = loaded.signatures[signature](
            images=tf.constant(inputs["images"]))
    image = serving_warmup.warmup_image()
    pixels = dict(requests)["predict_images"]["images"]
    np.testing.assert_array_equal(pixels, image[None])   # a real picture, not zeros
    assert image.shape == (96, 128, 3) and len(np.unique(image.reshape(-1, 3), axis=0)) > 100
    encoded = dict(requests)["serving_default"]["images"]
    assert [bytes(e[:4]) for e in encoded] == [b"\xff\xd8\xff\xe0", b"\x89PNG"]  # JPEG, PNG
    np.testing.assert_array_equal(tf.io.decode_png(encoded[1]).numpy(), image)
    served = outputs["serving_default"]
    assert served["labels"].shape == (2, 96, 128)
    np.testing.assert_array_equal(served["image_sizes"].numpy(), [[96, 128], [96, 128]])
    # The PNG is lossless: its labels are those of the pixels themselves.
    np.testing.assert_array_equal(served["labels"][1].numpy(),
                                  outputs["predict_images"]["labels"][0].numpy())


def test_warmup_fits_a_small_budget(tmp_path):
    """A refused warmup request would stop TF Serving loading the model: with max_pixels
    below the picture's, the image is shrunk so the request fits."""
    loaded = _export(tmp_path / "small", max_pixels=3000)
    for signature, inputs in _requests(tmp_path / "small"):
        images = inputs["images"]
        if signature == "predict_images":
            assert images.shape[1] * images.shape[2] <= 3000
        else:
            sizes = [tf.io.decode_image(e).shape for e in images]
            assert sum(s[0] * s[1] for s in sizes) <= 3000
        loaded.signatures[signature](images=tf.constant(images))   # no InvalidArgument


def test_message_classes_carry_the_official_field_numbers():
    classes = serving_warmup.message_classes()
    numbers = {name: {f.name: f.number for f in getattr(classes, name).DESCRIPTOR.fields}
               for name in ("PredictionLog", "PredictLog", "PredictRequest", "ModelSpec")}
    assert numbers["PredictionLog"] == {"predict_log": 6}
    assert numbers["PredictLog"] == {"request": 1, "response": 2}
    assert numbers["PredictRequest"] == {"model_spec": 1, "inputs": 2, "output_filter": 3}
    assert numbers["ModelSpec"] == {"name": 1, "version": 2, "version_label": 4,
                                    "signature_name": 3}
    assert classes.PredictRequest.DESCRIPTOR.full_name == "tensorflow.serving.PredictRequest"
