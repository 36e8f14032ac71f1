"""Evaluation on the real VOC samples: whole images at the original size, 255 ignored, the
output-stride switch, TFRecords, the CLI, 2 replicas, watch mode."""
import io
import json
import shutil
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO, VOC_SAMPLES
from deeplab_tf import eval_lib, model_dir
from deeplab_tf.data import tfrecord
from deeplab_tf.data.metadata import VOC
from deeplab_tf.images import read_image
from deeplab_tf.inference import Protocol, Segmenter
from deeplab_tf.testing import image_label_dataset, tiny_model_dir

NAMES = ["sample_0", "sample_4", "sample_6"]   # three sizes: 366x500, 500x334, 375x500
PROTOCOL = Protocol(output_stride=8, scales=(0.75, 1.0), flip=True)


def _sample(name):
    image = read_image(VOC_SAMPLES / "JPEGImages" / f"{name}.jpg")
    label = np.asarray(Image.open(VOC_SAMPLES / "SegmentationClass" / f"{name}.png"))
    return image, label


def _numpy_confusion(labels, predictions, num_classes):
    keep = labels != 255
    return np.bincount(labels[keep].astype(np.int64) * num_classes + predictions[keep],
                       minlength=num_classes ** 2).reshape(num_classes, num_classes)


def _dataset(names, padded=False):
    """Whole images (or images padded for batching, with their true height and width)."""
    return image_label_dataset([_sample(n) for n in names], padded)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A VOC model_dir trained at output stride 16, and the confusion matrix of its
    predictions at output stride 8 (Segmenter + NumPy), independent of eval_lib."""
    path = tmp_path_factory.mktemp("eval") / "run"
    tiny_model_dir(path, metadata=VOC, steps=2)
    segmenter = Segmenter(path, output_stride=8, scales=PROTOCOL.scales, flip=True)
    expected = 0
    for name in NAMES:
        image, label = _sample(name)
        expected = expected + _numpy_confusion(label, segmenter.segment(image)[0], 21)
    assert np.count_nonzero(expected.sum(axis=0)) >= 2   # at least 2 classes predicted
    return path, expected


def _model(path):
    return model_dir.load_model(path, output_stride=PROTOCOL.output_stride)[0]


def test_matches_numpy_at_the_original_size(run_dir):
    path, expected = run_dir
    model = _model(path)
    result = eval_lib.evaluate(model, _dataset(NAMES), VOC, PROTOCOL, verbose=0)
    np.testing.assert_array_equal(result["confusion_matrix"], expected)
    assert result["images"] == 3
    assert result["pixels"] == sum(np.count_nonzero(_sample(n)[1] != 255) for n in NAMES)
    # A pipeline that pads images for batching gives the same result (cut to height/width).
    batched = _dataset(NAMES, padded=True).padded_batch(2, padding_values={
        "image": np.uint8(77), "label": np.uint8(3), "height": 0, "width": 0})
    padded = eval_lib.evaluate(model, batched, VOC, PROTOCOL, verbose=0)
    np.testing.assert_array_equal(padded["confusion_matrix"], expected)


def _write_records(path, names):
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name in names:
            data = (VOC_SAMPLES / "JPEGImages" / f"{name}.jpg").read_bytes()
            ids = _sample(name)[1]   # stored as a single-channel PNG of class ids
            label = io.BytesIO()
            Image.fromarray(ids, "L").save(label, format="PNG")
            h, w = ids.shape
            writer.write(tfrecord.make_example(data, name, "jpeg", h, w, label.getvalue()))


def test_cli_on_records_writes_json_tensorboard_and_plots(run_dir, tmp_path):
    path, expected = run_dir
    _write_records(tmp_path / "val-00000-of-00001.tfrecord", NAMES)
    out = tmp_path / "eval"
    run = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.evaluate", f"--model_dir={path}",
         f"--records={tmp_path / 'val-*.tfrecord'}", "--output_stride=8",
         "--inference_scales=0.75,1.0", "--add_flipped_images", f"--output_dir={out}"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((out / "results.json").read_text())
    np.testing.assert_array_equal(result["confusion_matrix"], expected)
    assert result["step"] == 1 and result["protocol"]["flip"] and result["images"] == 3
    assert set(result["per_class_iou"]) == set(VOC.class_names)
    assert (out / "results-1.json").exists() and list(out.glob("events.out.tfevents.*"))
    for png in ("class_iou.png", "confusion_matrix.png"):
        assert Image.open(out / png).format == "PNG"
    # TensorBoard: the scalars, and the two pictures as images (the PNGs' pixels)
    tags = {}
    for events in out.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                tags[value.tag] = value
    assert "eval/miou" in tags and f"eval_iou/{VOC.class_names[0]}" in tags
    for name in ("class_iou", "confusion_matrix"):
        encoded = tf.make_ndarray(tags[f"eval/{name}"].tensor)[2]   # [width, height, png]
        shown = tf.io.decode_png(encoded, channels=3).numpy()
        np.testing.assert_array_equal(shown, np.asarray(Image.open(out / f"{name}.png")
                                                        .convert("RGB")))


_REPLICAS = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from PIL import Image
    from deeplab_tf import eval_lib, metrics, model_dir
    from deeplab_tf.data.metadata import VOC
    from deeplab_tf.images import read_image
    from deeplab_tf.inference import Protocol
    from deeplab_tf.testing import image_label_dataset
    path, samples, protocol = sys.argv[1], sys.argv[2], Protocol(output_stride=16)
    def _dataset(names):
        return image_label_dataset([
            (read_image(f"{samples}/JPEGImages/{n}.jpg"),
             np.asarray(Image.open(f"{samples}/SegmentationClass/{n}.png"))) for n in names])
    NAMES = json.loads(sys.argv[3])
    one = eval_lib.evaluate(model_dir.load_model(path)[0], _dataset(NAMES), VOC, protocol,
                            verbose=0)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        model = model_dir.load_model(path)[0]
        acc = metrics.ConfusionMatrixAccumulator(5)
    two = eval_lib.evaluate(model, _dataset(NAMES), VOC, protocol, strategy, verbose=0)

    # The accumulator alone: each replica holds its own pixels until the matrix is read.
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, (8, 9, 11)).astype(np.int32)
    labels[rng.random(labels.shape) < 0.3] = 255
    predictions = rng.integers(0, 5, labels.shape).astype(np.int32)
    batches = tf.data.Dataset.from_tensor_slices((labels, predictions)).batch(2)
    update = tf.function(lambda batch: strategy.run(acc.update, args=batch))
    for batch in strategy.experimental_distribute_dataset(batches):
        update(batch)
    print(json.dumps(dict(
        replicas=strategy.num_replicas_in_sync, one=one["confusion_matrix"],
        two=two["confusion_matrix"], images=two["images"], summed=acc.result().tolist(),
        single=metrics.confusion_matrix(labels, predictions, 5).numpy().tolist(),
        per_replica=[np.asarray(v).tolist()
                     for v in strategy.experimental_local_results(acc.matrix)])))
""")


def test_two_replicas_give_the_one_device_matrix(run_dir):
    # Three images over two replicas: the last step leaves one replica an empty batch.
    path, _ = run_dir
    run = subprocess.run([sys.executable, "-c", _REPLICAS, str(path), str(VOC_SAMPLES),
                          json.dumps(NAMES)], capture_output=True,
                         text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["images"] == 3
    np.testing.assert_array_equal(result["two"], result["one"])
    assert np.count_nonzero(np.asarray(result["one"]).sum(axis=0)) >= 2
    np.testing.assert_array_equal(result["summed"], result["single"])
    per_replica = np.asarray(result["per_replica"])
    assert all(0 < m.sum() < per_replica.sum() for m in per_replica)
    np.testing.assert_array_equal(per_replica.sum(axis=0), result["single"])


def test_watch_evaluates_each_new_checkpoint_until_the_last_step(run_dir, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(run_dir[0], path)
    model = _model(path)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         model_dir.checkpoint_dir(path), max_to_keep=3)
    out = tmp_path / "watch"

    def train_on():   # a "training job" writing the final checkpoint (step 2) later
        for _ in range(600):
            if (out / "results-1.json").exists():
                manager.save(checkpoint_number=2)
                return
            threading.Event().wait(0.1)

    trainer = threading.Thread(target=train_on)
    trainer.start()
    records = eval_lib.run_evaluation(path, _dataset(NAMES[:1]), output_dir=out,
                                      protocol=PROTOCOL, watch=True, watch_timeout=60,
                                      verbose=0)
    trainer.join()
    assert [r["step"] for r in records] == [1, 2]
    assert records[0]["confusion_matrix"] == records[1]["confusion_matrix"]
    assert json.loads((out / "results.json").read_text())["step"] == 2
