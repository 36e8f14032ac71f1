"""A research/deeplab MobileNetV2 checkpoint converted, then used: the commands as users
type them (convert, then predict on a VOC photo), evaluation and export, fine-tuning through
train.init_checkpoint, and the released weights (the TFLite file's, written as a
research/deeplab checkpoint) giving the TFLite import's logits and the interpreter's labels.
"""
import dataclasses
import logging
import os
import re
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

import mnv2_reference as ref
from conftest import SHARED, VOC_SAMPLES
from deeplab_tf import configs, model_dir, train_lib
from deeplab_tf.convert import convert_checkpoint
from deeplab_tf.data.converters import synthetic
from deeplab_tf.data.synthetic import SYNTHETIC_METADATA
from tools_in_process import run_tool

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from readme import readme  # noqa: E402

# The README's commands, as a user types them in a folder holding the model zoo's
# extracted deeplabv3_mnv2_pascal_train_aug/ and a photo (tests/readme/readme.py PLAN).
CONVERT = readme.command("convert_slim_mnv2")
PREDICT = readme.command("predict_slim_mnv2")
run = readme.run


def test_commands_as_typed_segment_a_photo(tmp_path):
    """research/deeplab's checkpoint of its released depth-1.0 PASCAL model (written here
    from the released file's weights, with research/deeplab's names, Momentum slots and
    global_step), converted and run on a VOC photo by the commands as typed: the labels
    agree with VOC's own ground truth."""
    _, v = released_as_slim_checkpoint(
        str(SHARED / "models" / "deeplabv3_mnv2_pascal_quant.tflite"))
    state = {f"{n}/Momentum": np.zeros_like(a) for n, a in v.items()}
    ref.write_checkpoint(tmp_path / "deeplabv3_mnv2_pascal_train_aug" / "model.ckpt-30000",
                         dict(v, **state, global_step=np.int64(30000)))
    (tmp_path / "photo.jpg").write_bytes((VOC_SAMPLES / "JPEGImages" / "sample_4.jpg")
                                         .read_bytes())
    done = run(CONVERT, tmp_path)
    assert "checkpoint variables not used (0)" in done.stdout
    assert f"state not used: {len(state) + 1} variables" in done.stdout
    assert "left initialized (0)" in done.stdout
    run(PREDICT, tmp_path)
    labels = [p for p in (tmp_path / "out").iterdir() if "label" in p.name]
    assert len(labels) == 1, sorted(p.name for p in (tmp_path / "out").iterdir())
    predicted = np.asarray(Image.open(labels[0]))
    truth = np.asarray(Image.open(VOC_SAMPLES / "SegmentationClass" / "sample_4.png"))
    valid = truth != 255
    agreement = float(np.mean(predicted[valid] == truth[valid]))
    print(f"sample_4 through the slim checkpoint: {agreement:.4f} of pixels as VOC's labels")
    assert agreement > 0.9


def test_converted_model_evaluates_and_exports(tmp_path):
    """A depth-0.5 research/deeplab model of the synthetic dataset's 5 classes: deeplab-eval
    and deeplab-export (in this process) accept the converted model_dir."""
    v = ref.slim_variables(0.5, 1, 1, np.random.default_rng(0), num_classes=5, filters=16)
    ref.write_checkpoint(tmp_path / "model.ckpt-30000", v)
    convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "model.ckpt-30000"),
                       str(tmp_path / "run"), class_names=SYNTHETIC_METADATA.class_names)
    synthetic.convert(str(tmp_path / "data"), num_train=1, num_val=2, image_size=(33, 41),
                      num_shards=1, num_workers=1, progress=False)
    assert run_tool("evaluate", f"--model_dir={tmp_path / 'run'}",
                    f"--records={tmp_path / 'data' / 'val-*.tfrecord'}", "--inference_scales=1.0",
                    "--noadd_flipped_images", "--output_stride=16") == 0
    assert (tmp_path / "run" / "eval").exists()
    assert run_tool("export", f"--model_dir={tmp_path / 'run'}",
                    f"--export_dir={tmp_path / 'export'}", "--output_stride=16") == 0
    assert tf.saved_model.load(str(tmp_path / "export")).signatures


def test_converted_model_fine_tunes(tmp_path, caplog):
    """train.init_checkpoint=<converted model_dir>, with its model section: every variable
    is restored, a training step runs and changes the weights."""
    v = ref.slim_variables(0.5, 1, 1, np.random.default_rng(0), num_classes=3, filters=16)
    ref.write_checkpoint(tmp_path / "ckpt", v)
    convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "ckpt"), str(tmp_path / "run"),
                       class_names=("background", "a", "b"))
    converted, metadata = model_dir.read_config(str(tmp_path / "run"))
    config = configs.apply_overrides(
        dataclasses.replace(converted, name="finetune"),
        f"train.init_checkpoint={tmp_path / 'run'},train.steps=2,train.batch_size=2,"
        f"train.steps_per_loop=1,train.checkpoint_every=2,data.crop_size=(33,33)")
    images = np.random.default_rng(1).uniform(0, 255, (4, 33, 33, 3)).astype(np.float32)
    labels = np.random.default_rng(2).integers(0, 3, (4, 33, 33, 1)).astype(np.int32)

    def dataset_fn(ctx, start_step):
        del start_step
        ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels})
        return ds.repeat().batch(ctx.get_per_replica_batch_size(2), drop_remainder=True)
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.train"):
        result = train_lib.train(config, str(tmp_path / "tuned"), metadata, dataset_fn)
    assert result.step == 2 and np.isfinite(result.loss)
    before, _, _ = model_dir.load_model(str(tmp_path / "run"))
    after, _, _ = model_dir.load_model(str(tmp_path / "tuned"))
    assert f"initialized {len(before.weights)} variables from {tmp_path / 'run'}; skipped 0" \
        in caplog.text
    kernel = "block_16_project"
    assert not np.array_equal(before.get_layer(kernel).kernel.numpy(),
                              after.get_layer(kernel).kernel.numpy())


# ----------------------------------------------------------------- released weights

def dequantize(details, q):
    p = details["quantization_parameters"]
    scales, zeros = p["scales"], p["zero_points"]
    if not len(scales):
        return q.astype(np.float32)
    shape = [1] * q.ndim
    if len(scales) > 1:
        shape[p["quantized_dimension"]] = -1
    return (scales.reshape(shape) * (q.astype(np.float32) - zeros.reshape(shape))).astype(
        np.float32)


def released_as_slim_checkpoint(path):
    """The .tflite's convolutions under their TF-slim names (the file's tensor names carry
    them: `MobilenetV2/expanded_conv_3/expand/weights_quant/...`), dequantized, BN folded
    in: gamma 1, beta = the bias, mean 0, variance 1 - epsilon."""
    interpreter = tf.lite.Interpreter(model_path=path)
    interpreter.allocate_tensors()
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    v = {}
    for op in interpreter._get_ops_details():   # noqa: SLF001
        if op["op_name"] not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        w, b = details[op["inputs"][1]], details[op["inputs"][2]]
        scope = re.search(r"([\w/]+)/weights_quant/", w["name"]).group(1)
        # [out, h, w, in] (conv) and [1, h, w, channels] (depthwise) -> slim's [h, w, in, out]
        kernel = np.transpose(dequantize(w, interpreter.get_tensor(w["index"])), (1, 2, 3, 0))
        bias = dequantize(b, interpreter.get_tensor(b["index"]))
        if scope == "logits/semantic":
            v[f"{scope}/weights"], v[f"{scope}/biases"] = kernel, bias
            continue
        depthwise = op["op_name"] == "DEPTHWISE_CONV_2D"
        v[f"{scope}/{'depthwise_weights' if depthwise else 'weights'}"] = kernel
        eps = ref.EPS if scope.startswith("MobilenetV2/") else ref.HEAD_EPS
        v[f"{scope}/BatchNorm/gamma"] = np.ones_like(bias)
        v[f"{scope}/BatchNorm/beta"] = bias
        v[f"{scope}/BatchNorm/moving_mean"] = np.zeros_like(bias)
        v[f"{scope}/BatchNorm/moving_variance"] = np.full_like(bias, 1 - eps)
    return interpreter, v


def voc_sample(i, size=513):
    """research/deeplab's input: longer side resized to 513, padded bottom/right with 128."""
    image = Image.open(VOC_SAMPLES / "JPEGImages" / f"sample_{i}.jpg").convert("RGB")
    scale = size / max(image.size)
    w, h = round(image.size[0] * scale), round(image.size[1] * scale)
    x = np.full((size, size, 3), 128, np.uint8)
    x[:h, :w] = np.asarray(image.resize((w, h), Image.BILINEAR))
    return x, (h, w)


def test_released_weights_as_a_slim_checkpoint(tmp_path):
    """deeplabv3_mnv2_dm05_pascal_quant.tflite's weights, as research/deeplab's checkpoint
    of them would hold them (depth 0.5, research/deeplab's rounding: 12 channels at stage
    2): the same logits as the TFLite import, the interpreter's labels."""
    path = str(SHARED / "models" / "deeplabv3_mnv2_dm05_pascal_quant.tflite")
    interpreter, v = released_as_slim_checkpoint(path)
    assert len(v) == 54 * 5 + 2 and v["MobilenetV2/expanded_conv_1/project/weights"].shape == \
        (1, 1, 48, 12)
    ref.write_checkpoint(tmp_path / "model.ckpt-30000", v)
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "model.ckpt-30000"),
                                str(tmp_path / "slim"))
    assert result.unmapped_model == [] and result.unmapped_checkpoint == []
    assert result.architecture["depth_multiplier"] == 0.5
    convert_checkpoint("tflite", path, str(tmp_path / "tflite"))
    ours = model_dir.load_model(str(tmp_path / "slim"))[0]
    theirs = model_dir.load_model(str(tmp_path / "tflite"))[0]

    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    agree = total = 0
    for i in (0, 4):
        x, (h, w) = voc_sample(i)
        got = ours(x[None].astype(np.float32)).numpy()[0]
        expected = theirs(x[None].astype(np.float32)).numpy()[0]
        error = float(np.abs(got - expected).max() / np.abs(expected).max())
        assert error <= 1e-5, error
        interpreter.set_tensor(inp["index"], x[None])
        interpreter.invoke()
        labels = interpreter.get_tensor(out["index"])[0]
        agree += int((np.argmax(got, -1)[:h, :w] == labels[:h, :w]).sum())
        total += h * w
    print(f"released dm05 weights via slim checkpoint: {agree / total:.4f} of pixels agree "
          f"with the interpreter")
    assert agree / total >= 0.95
