"""Our int8 TFLite export (export_lib.export_tflite, quantize="int8") of an imported released
model, against our float model on the 8 real VOC samples.

The released DeepLabv3 MobileNetV2 dm 0.5 file is imported, exported at 513x513 as full
int8 (weights and activations), calibrated on the 6 train-split samples (sample_0..5), and
run by the TFLite interpreter on all 8 samples; the float model is our Keras model through
the inference protocol at output stride 16 (the released model's). Measured 2026-12-05
(TF 2.21, bench/mobilenet.py gives the same figures): 99.05% of the image pixels get the
float model's label (99.07% on the two samples calibration never saw), mIoU 0.8280 against
the float model's 0.8302 (the released int8 model: 0.8285). The bounds below leave margin
for other TensorFlow versions and CPUs.
"""
import numpy as np
import pytest
import tensorflow as tf

from voc_samples import MODELS, miou, samples
from deeplab_tf import export_lib, model_dir
from deeplab_tf.convert import convert_checkpoint
from deeplab_tf.inference import Protocol, make_predictor

MIN_AGREEMENT = 0.97      # measured 0.9905
MAX_MIOU_DROP = 0.02      # measured 0.0022
CALIBRATION = range(6)    # the train split


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory):
    root = tmp_path_factory.mktemp("int8")
    convert_checkpoint("tflite", str(MODELS / "deeplabv3_mnv2_dm05_pascal_quant.tflite"),
                       str(root / "run"))
    model = model_dir.load_model(str(root / "run"), output_stride=16)[0]
    protocol = Protocol(output_stride=16)
    data = samples()
    path = export_lib.export_tflite(model, protocol, str(root / "int8.tflite"), 513, 513,
                                    quantize="int8",
                                    representative_images=[data[i][0] for i in CALIBRATION])
    predict = make_predictor(model, protocol)
    float_labels = [np.argmax(predict(x[None].astype(np.float32))[0].numpy(), -1)
                    for x, _, _ in data]
    return path, data, float_labels


def test_int8_export_is_integer_with_float_io(int8_export):
    """Every conv is int8 (else it is not the int8 model that is checked); the input stays
    float32 raw RGB as the docstring says, the outputs int32 labels and float32
    probabilities."""
    path, _, _ = int8_export
    interpreter = tf.lite.Interpreter(model_path=path)
    convs = [op for op in interpreter._get_ops_details()
             if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    tensors = interpreter.get_tensor_details()
    assert convs and all(tensors[op["outputs"][0]]["dtype"] == np.int8 for op in convs)
    runner = interpreter.get_signature_runner()
    (name, spec), = runner.get_input_details().items()
    assert name == "images" and spec["dtype"] == np.float32
    assert list(spec["shape"]) == [1, 513, 513, 3]
    outputs = runner.get_output_details()
    assert outputs["labels"]["dtype"] == np.int32
    assert outputs["probabilities"]["dtype"] == np.float32


def test_int8_export_agrees_with_the_float_model(int8_export):
    path, data, float_labels = int8_export
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    agree, total, pairs_int8, pairs_float = 0, 0, [], []
    for (x, gt, (h, w)), f in zip(data, float_labels):
        out = runner(images=x[None].astype(np.float32))
        probs = out["probabilities"][0]
        assert np.all(np.isfinite(probs))
        np.testing.assert_allclose(probs.sum(-1), 1, atol=0.05)
        labels = out["labels"][0]
        agree += int(np.sum(labels[:h, :w] == f[:h, :w]))
        total += h * w
        pairs_int8.append((labels[:h, :w].astype(np.int64), gt[:h, :w]))
        pairs_float.append((f[:h, :w], gt[:h, :w]))
    agreement = agree / total
    int8_miou, float_miou = miou(pairs_int8), miou(pairs_float)
    print(f"int8 export vs float: pixel agreement {agreement:.4f}, mIoU int8 {int8_miou:.4f}, "
          f"float {float_miou:.4f}")
    assert agreement >= MIN_AGREEMENT
    assert float_miou - int8_miou <= MAX_MIOU_DROP
    assert float_miou > 0.75     # the float model segments the samples well at all
