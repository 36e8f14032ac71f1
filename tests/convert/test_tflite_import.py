"""research/deeplab's released TFLite DeepLabv3 MobileNetV2 models, imported through
`--source tflite`, against the TFLite interpreter itself on the 8 VOC samples.

Both sides see the same 513x513 uint8 image (research/deeplab's convention: the longer side
resized to 513, padded at the bottom/right with the mean, 128 in uint8 = the model's zero
point); agreement and mIoU are counted on the image part only (ground truth 255 ignored).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import VOC_SAMPLES
from voc_samples import MODELS, miou, samples
from deeplab_tf import model_dir
from deeplab_tf.convert import convert_checkpoint


@pytest.mark.parametrize("name,depth", [("deeplabv3_mnv2_pascal_quant.tflite", 1.0),
                                        ("deeplabv3_mnv2_dm05_pascal_quant.tflite", 0.5)])
def test_imported_model_gives_the_interpreters_labels(tmp_path, name, depth):
    path = str(MODELS / name)
    result = convert_checkpoint("tflite", path, str(tmp_path / "run"))
    assert result.unmapped_model == [] and result.unmapped_checkpoint == []
    assert result.architecture["depth_multiplier"] == depth
    assert result.architecture["output_stride"] == 16
    model, config, metadata = model_dir.load_model(str(tmp_path / "run"))
    assert config.model.backbone == "mobilenet_v2" and metadata.class_names[15] == "person"

    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    data = samples()
    images = np.stack([x for x, _, _ in data]).astype(np.float32)
    ours = np.argmax(model.predict(images, batch_size=4, verbose=0), axis=-1)
    agree, total, pairs_ours, pairs_ref = 0, 0, [], []
    for (x, gt, (h, w)), o in zip(data, ours):
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        ref = interpreter.get_tensor(out["index"])[0].astype(np.int64)
        agree += int((o[:h, :w] == ref[:h, :w]).sum())
        total += h * w
        pairs_ours.append((o[:h, :w], gt[:h, :w]))
        pairs_ref.append((ref[:h, :w], gt[:h, :w]))
    agreement = agree / total
    ours_miou, ref_miou = miou(pairs_ours), miou(pairs_ref)
    print(f"{name}: pixel agreement {agreement:.4f}, mIoU ours {ours_miou:.4f}, "
          f"interpreter {ref_miou:.4f}")
    assert agreement >= 0.95
    assert abs(ours_miou - ref_miou) <= 0.02
    assert ref_miou > 0.6        # the samples are segmented well at all


def test_command_line_then_predict(tmp_path):
    """The documented commands, as users type them."""
    bin_dir = os.path.dirname(sys.executable)
    run = tmp_path / "mnv2"
    done = subprocess.run(
        [os.path.join(bin_dir, "deeplab-convert-checkpoint"), "--source", "tflite",
         "--checkpoint", str(MODELS / "deeplabv3_mnv2_dm05_pascal_quant.tflite"),
         "--model_dir", str(run)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint variables not used (0)" in done.stdout
    assert "left initialized (0)" in done.stdout
    predict = subprocess.run(
        [os.path.join(bin_dir, "deeplab-predict"), "--model_dir", str(run),
         "--input", str(VOC_SAMPLES / "JPEGImages" / "sample_4.jpg"),
         "--output_dir", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert os.listdir(tmp_path / "out")


def test_not_a_tflite_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="not a TFLite model"):
        convert_checkpoint("tflite", str(bad), str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_imported_model_fine_tunes(tmp_path):
    """The folded BN became identity BN + bias: the model trains like any other (BN frozen,
    as research/deeplab fine-tunes with small batches): a few steps lower the loss."""
    convert_checkpoint("tflite", str(MODELS / "deeplabv3_mnv2_dm05_pascal_quant.tflite"),
                       str(tmp_path / "run"))
    model = model_dir.load_model(str(tmp_path / "run"))[0]
    data = samples()[:2]
    x = tf.constant(np.stack([d[0] for d in data])[:, ::2, ::2].astype(np.float32))
    y = np.stack([d[1] for d in data])[:, ::2, ::2].astype(np.int64)
    mask = tf.constant(y != 255, tf.float32)
    y = tf.constant(np.where(y == 255, 0, y))
    optimizer = tf.keras.optimizers.SGD(1e-3)

    def loss_fn():
        ce = tf.keras.losses.sparse_categorical_crossentropy(
            y, model(x, training=False), from_logits=True)
        return tf.reduce_sum(ce * mask) / tf.reduce_sum(mask)
    before = float(loss_fn())
    for _ in range(4):
        with tf.GradientTape() as tape:
            loss = loss_fn()
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
    after = float(loss_fn())
    print(f"fine-tuning loss {before:.4f} -> {after:.4f}")
    assert after < before


def test_classifier_gives_the_interpreters_top1_on_cat():
    """slim's quantized MobileNetV2 1.0 ImageNet classifier through our MobileNetV2: the
    interpreter's top-1 (286, Egyptian cat) on cat.bmp, and the same top-5 set."""
    from deeplab_tf.convert.tflite import load_classifier
    path = str(MODELS / "mobilenet_v2_1.0_224_quant.tflite")
    image = np.asarray(Image.open(MODELS / "cat.bmp").convert("RGB").resize(
        (224, 224), Image.BILINEAR))
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None])
    interpreter.invoke()
    ref = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
    logits = load_classifier(path)(image[None].astype(np.float32)).numpy()[0]
    assert int(np.argmax(ref)) == 286
    assert int(np.argmax(logits)) == 286
    assert set(np.argsort(logits)[-3:]) <= set(np.argsort(ref)[-5:])
