"""The tf.data pipeline: shapes, alignment end to end, reproducibility, resume, epochs,
bootstrapping (Sec. 4.1), sharding over input pipelines, eval mode, real VOC samples."""
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf.data import augment, bootstrap, pipeline, synthetic, tfrecord

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VOC_SAMPLES = SHARED / "data" / "voc2012_samples"
CROP = (48, 56)


def _write(path, examples):
    """examples: (name, image uint8 [H, W, 3], label uint8 [H, W]) -> PNG records."""
    with tf.io.TFRecordWriter(str(path)) as writer:
        for name, image, label in examples:
            writer.write(tfrecord.make_example(
                tf.io.encode_png(image).numpy(), name, "png", image.shape[0], image.shape[1],
                tf.io.encode_png(label[..., None]).numpy()))


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """30 synthetic examples of varying size in 3 files (10 each)."""
    d = tmp_path_factory.mktemp("synth")
    examples = []
    for i in range(30):
        size = (48 + 2 * i, 80 - i)
        image, label = synthetic.generate_example(i, 0, size)
        examples.append((f"ex{i:02d}", image, label))
    for f in range(3):
        _write(d / f"train-{f:05d}-of-00003.tfrecord", examples[10 * f:10 * f + 10])
    return str(d / "train-*.tfrecord"), examples


def _batches(pattern, n, **kwargs):
    kwargs.setdefault("crop_size", CROP)
    kwargs.setdefault("global_batch_size", 5)
    ds = pipeline.build_dataset(pattern, **kwargs)
    return list(ds.take(n).as_numpy_iterator())


def test_train_batches_have_exact_shapes_and_label_values(synth):
    pattern, _ = synth
    ds = pipeline.build_dataset(pattern, crop_size=CROP, global_batch_size=5)
    assert ds.element_spec["image"].shape.as_list() == [5, 48, 56, 3]
    assert ds.element_spec["label"].shape.as_list() == [5, 48, 56, 1]
    for batch in ds.take(8).as_numpy_iterator():
        assert batch["image"].dtype == np.float32 and batch["label"].dtype == np.uint8
        assert 0 <= batch["image"].min() and batch["image"].max() <= 255  # raw pixels
        assert set(np.unique(batch["label"])) <= set(range(5)) | {255}


def test_image_and_label_stay_aligned_end_to_end(tmp_path):
    """Red channel = 20 * class + 10 over flat rectangles: after the whole pipeline, the
    class read from the image equals the label away from region borders."""
    rng = np.random.default_rng(0)
    examples = []
    for i in range(6):
        h, w = rng.integers(30, 90, 2)
        label = np.zeros((h, w), np.uint8)
        for _ in range(6):
            y, x = rng.integers(0, h - 8), rng.integers(0, w - 8)
            label[y:y + rng.integers(8, h), x:x + rng.integers(8, w)] = rng.integers(1, 6)
        image = np.stack([20 * label + 10, rng.integers(0, 50, (h, w)),
                          rng.integers(0, 50, (h, w))], -1).astype(np.uint8)
        examples.append((f"c{i}", image, label))
    _write(tmp_path / "c.tfrecord", examples)
    checked = 0
    for batch in _batches(str(tmp_path / "c.tfrecord"), 6, global_batch_size=3, crop_size=64,
                          scale_step=0.0):
        for img, lab in zip(batch["image"], batch["label"][..., 0]):
            padded = lab == 255
            np.testing.assert_allclose(img[padded], np.broadcast_to(augment.MEAN_RGB,
                                                                    img[padded].shape))
            same = np.ones(lab.shape, bool)
            p = np.pad(lab.astype(np.int16), 2, constant_values=-1)
            for dy in range(5):
                for dx in range(5):
                    same &= p[dy:dy + 64, dx:dx + 64] == lab
            inner = same & ~padded
            np.testing.assert_allclose(img[..., 0][inner], 20.0 * lab[inner] + 10, atol=0.01)
            checked += inner.sum()
    assert checked > 20000


def test_same_seed_same_batches_other_seed_other_batches(synth):
    pattern, _ = synth
    a = _batches(pattern, 4, seed=1)
    b = _batches(pattern, 4, seed=1)
    c = _batches(pattern, 4, seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert not np.array_equal(a[0]["image"], c[0]["image"])


def test_epochs_are_permutations_and_differ(synth):
    pattern, _ = synth
    batches = _batches(pattern, 12, with_metadata=True)  # 2 epochs of 30
    index = np.concatenate([b["index"] for b in batches])
    epoch = np.concatenate([b["epoch"] for b in batches])
    np.testing.assert_array_equal(epoch, np.repeat([0, 1], 30))
    for e in (0, 1):
        assert sorted(index[epoch == e]) == list(range(30))
    assert not np.array_equal(index[:30], index[30:])
    assert not np.array_equal(index[:30], np.arange(30))  # shuffled, not file order
    # An example seen in both epochs is augmented differently.
    first = {i: img for i, img in zip(index[:30], np.concatenate([b["image"] for b in batches[:6]]))}
    second = dict(zip(index[30:], np.concatenate([b["image"] for b in batches[6:]])))
    assert not np.array_equal(first[0], second[0])
    names = np.concatenate([b["filename"] for b in batches[:6]])
    assert sorted(n.decode() for n in names) == [f"ex{i:02d}" for i in range(30)]


@pytest.mark.parametrize("start", [4, 7])
def test_resume_at_step_k_yields_the_uninterrupted_batches(synth, start):
    pattern, _ = synth
    full = _batches(pattern, start + 5, seed=3, with_metadata=True)
    resumed = _batches(pattern, 5, seed=3, with_metadata=True, start_step=start)
    for x, y in zip(full[start:], resumed):
        for key in ("index", "epoch", "image", "label"):
            np.testing.assert_array_equal(x[key], y[key])


def test_bootstrapping_repeats_exactly_the_hard_images(synth, tmp_path):
    pattern, examples = synth
    hard = (3,)  # dotted triangles
    expected = {name: 3 if np.isin(label, hard).any() else 1 for name, _, label in examples}
    assert 3 < sum(v == 3 for v in expected.values()) < 27  # a meaningful mix
    length = sum(expected.values())
    cache = str(tmp_path / "cache")
    batches = _batches(pattern, length // 5 + 2, with_metadata=True, bootstrap_class_ids=hard,
                       bootstrap_factor=3, cache=cache)
    epoch = np.concatenate([b["epoch"] for b in batches])
    names = np.concatenate([b["filename"] for b in batches])[epoch == 0]
    copies = np.concatenate([b["copy"] for b in batches])[epoch == 0]
    images = np.concatenate([b["image"] for b in batches])[epoch == 0]
    counted = {n: int((names == n.encode()).sum()) for n in expected}
    assert counted == expected
    for n, c in expected.items():
        if c == 3:
            mine = names == n.encode()
            assert sorted(copies[mine]) == [0, 1, 2]
            a, b = images[mine][:2]
            assert not np.array_equal(a, b)  # each copy augmented on its own
    # The scan is cached (equal to a fresh one), and a cache for other files is not reused.
    files = pipeline.list_files(pattern)
    scan, fresh = bootstrap.scan_records(files, cache), bootstrap.scan_records(files)
    assert len(list((tmp_path / "cache").rglob("labels-*"))) == 1
    assert scan["counts"].tolist() == [10, 10, 10]
    for key in fresh:
        np.testing.assert_array_equal(scan[key], fresh[key])
    other = bootstrap.scan_records(files[:1], cache)
    assert other["counts"].tolist() == [10] and len(other["filenames"]) == 10
    assert bootstrap.class_ids(synthetic.SYNTHETIC_METADATA, ["dotted_triangle"]) == (3,)
    with pytest.raises(ValueError, match="not in"):
        bootstrap.class_ids(synthetic.SYNTHETIC_METADATA, ["sofa"])


def _context(pid):
    return tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pid,
                                      num_replicas_in_sync=4)


def _first_epoch(batches):
    epoch = np.concatenate([b["epoch"] for b in batches])
    return np.concatenate([b["index"] for b in batches])[epoch == 0]


def test_each_worker_reads_its_own_files_and_resumes_exactly(synth, tmp_path):
    """2 input pipelines on 4 shards: disjoint sets of whole shards whose union is every
    file; a pipeline never opens the other's files; its resumed stream is exact."""
    _, examples = synth
    sizes = [8, 8, 8, 6]
    bounds = np.cumsum([0] + sizes)
    paths = [tmp_path / f"train-{f:05d}-of-00004.tfrecord" for f in range(4)]
    for f, path in enumerate(paths):
        _write(path, examples[bounds[f]:bounds[f + 1]])
    pattern = str(tmp_path / "train-*.tfrecord")
    shards = {pid: [f for f in range(4) if f % 2 == pid] for pid in range(2)}
    datasets, seen = {}, {}
    for pid in range(2):   # a global step takes 2 batches of each pipeline (2 replicas)
        datasets[pid] = [pipeline.build_dataset(
            pattern, crop_size=CROP, global_batch_size=8, input_context=_context(pid),
            with_metadata=True, start_step=start).take(12 - 2 * start) for start in (0, 5)]
    for path in paths:   # from now on each pipeline has only its own shards to read
        path.rename(path.with_suffix(".away"))
    for pid in range(2):
        for f in shards[pid]:
            paths[f].with_suffix(".away").rename(paths[f])
        batches, resumed = (list(d.as_numpy_iterator()) for d in datasets[pid])
        assert batches[0]["image"].shape[0] == 2  # per-replica batch
        index = _first_epoch(batches)
        expected = {g for f in shards[pid] for g in range(bounds[f], bounds[f + 1])}
        assert sorted(index) == sorted(expected)   # each of its examples once per epoch
        seen[pid] = set(index)
        assert len(resumed) == 2
        for x, y in zip(batches[10:], resumed):
            np.testing.assert_array_equal(x["index"], y["index"])
            np.testing.assert_array_equal(x["image"], y["image"])
        for f in shards[pid]:
            paths[f].rename(paths[f].with_suffix(".away"))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(30))


def test_fewer_files_than_workers_splits_records_with_one_warning(synth, tmp_path, caplog):
    _, examples = synth
    _write(tmp_path / "one.tfrecord", examples[:12])
    seen = {}
    with caplog.at_level("WARNING", logger="deeplab_tf.data"):
        for pid in range(2):
            batches = _batches(str(tmp_path / "one.tfrecord"), 6, global_batch_size=8,
                               input_context=_context(pid), with_metadata=True)
            index = _first_epoch(batches)
            assert sorted(index % 2) == [pid] * 6 and len(set(index)) == 6
            seen[pid] = set(index)
    assert seen[0] | seen[1] == set(range(12))
    warnings = [r.getMessage() for r in caplog.records if "data-level" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "1 record file(s) for 2 input pipelines" in warnings[0]
    assert "at least 2 shards" in warnings[0]


def test_eval_mode_whole_images_padded_batches_and_shards(synth):
    pattern, examples = synth
    ds = pipeline.build_dataset(pattern, mode="eval", global_batch_size=2)
    batches = list(ds.as_numpy_iterator())
    assert sum(len(b["filename"]) for b in batches) == 30
    for b in batches:
        for j in range(len(b["filename"])):
            name, image, label = examples[int(b["filename"][j].decode()[2:])]
            h, w = b["height"][j], b["width"][j]
            assert (h, w) == label.shape
            np.testing.assert_array_equal(b["image"][j, :h, :w], image)
            np.testing.assert_array_equal(b["label"][j, :h, :w, 0], label)
            # Batch padding: the pad value and 255, as in training.
            pad = np.zeros(b["label"].shape[1:3], bool)
            pad[h:] = pad[:, w:] = True
            assert (b["label"][j, ..., 0][pad] == 255).all()
            np.testing.assert_allclose(b["image"][j][pad],
                                       np.broadcast_to(augment.MEAN_RGB, (pad.sum(), 3)))
    for pipelines, expected in ((3, range(10, 20)), (4, range(1, 30, 4))):  # files, records
        ctx = tf.distribute.InputContext(num_input_pipelines=pipelines, input_pipeline_id=1)
        shard = pipeline.build_dataset(pattern, mode="eval", global_batch_size=1,
                                       input_context=ctx)
        names = [b["filename"][0].decode() for b in shard.as_numpy_iterator()]
        assert names == [f"ex{i:02d}" for i in expected]


def test_bad_arguments(synth, tmp_path):
    pattern, _ = synth
    with pytest.raises(ValueError, match="mode"):
        pipeline.build_dataset(pattern, mode="test")
    with pytest.raises(FileNotFoundError):
        pipeline.build_dataset(str(tmp_path / "none-*.tfrecord"))
    with pytest.raises(ValueError, match="fewer than one batch"):
        pipeline.build_dataset(pattern, global_batch_size=64)


def test_real_voc_samples(tmp_path):
    assert VOC_SAMPLES.is_dir(), f"{VOC_SAMPLES} missing: shared/ must sit beside the repo"
    examples, originals = [], []
    for jpg in sorted((VOC_SAMPLES / "JPEGImages").glob("*.jpg")):
        label = np.array(Image.open(VOC_SAMPLES / "SegmentationClass" / f"{jpg.stem}.png"))
        image = np.array(Image.open(jpg).convert("RGB"))
        examples.append(tfrecord.make_example(
            jpg.read_bytes(), jpg.stem, "jpeg", image.shape[0], image.shape[1],
            tf.io.encode_png(label[..., None]).numpy()))
        originals.append((jpg.stem, image, label))
    path = tmp_path / "voc.tfrecord"
    with tf.io.TFRecordWriter(str(path)) as writer:
        for e in examples:
            writer.write(e)
    ev = list(pipeline.build_dataset(str(path), mode="eval", global_batch_size=1)
              .as_numpy_iterator())
    assert len(ev) == len(originals) == 8
    for b, (name, image, label) in zip(ev, originals):
        assert b["filename"][0].decode() == name
        np.testing.assert_array_equal(b["image"][0], image)  # == Pillow, exactly
        np.testing.assert_array_equal(b["label"][0, ..., 0], label)
    # Training decodes only the crop's window of a JPEG: the same pixels as a full decode.
    decode_crop = tf.function(lambda r, k: pipeline._decode_crop(
        r, k, (211, 211), 0.5, 2.0, 0.0, True, augment.MEAN_RGB, 255))
    for i in range(16):
        record, (_, image, label) = examples[i % 8], originals[i % 8]
        key = tf.constant([i, 9], tf.int64)
        windowed = decode_crop(record, key)
        full = augment.random_scale_crop_flip(image, label[..., None], key, (211, 211),
                                              scale_step=0.0)
        np.testing.assert_array_equal(windowed[0].numpy(), full[0].numpy())
        np.testing.assert_array_equal(windowed[1].numpy(), full[1].numpy())
    values = set(np.unique(np.concatenate([l.ravel() for _, _, l in originals])).tolist())
    for batch in _batches(str(path), 2, global_batch_size=4, crop_size=(321, 321)):
        assert batch["image"].shape == (4, 321, 321, 3)
        assert set(np.unique(batch["label"]).tolist()) <= values | {255}


def test_inspect_data_tool(tmp_path):
    """deeplab-inspect-data prints the manifest summary and writes what training sees."""
    import subprocess
    import sys

    from deeplab_tf.data.converters import synthetic as synthetic_converter
    data = tmp_path / "data"
    synthetic_converter.convert(str(data), num_train=6, num_val=2, num_shards=1,
                                progress=False)
    out = tmp_path / "look"
    proc = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.inspect_data", "--records",
         str(data / "train-*.tfrecord"), "--output_dir", str(out), "--crop_size", "96,80",
         "--num_samples", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "dataset synthetic: 5 classes" in proc.stdout
    assert "train: 6 examples in 1 shards" in proc.stdout and "dotted_triangle" in proc.stdout
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 9 and sum(p.endswith("_mask.png") for p in pngs) == 3
    cmap = synthetic.SYNTHETIC_METADATA.colormap()
    allowed = {tuple(c) for c in cmap[:5]} | {(255, 255, 255)}
    for name in pngs:
        array = np.array(Image.open(out / name))
        assert array.shape == (96, 80, 3)
        if name.endswith("_mask.png"):
            assert {tuple(c) for c in array.reshape(-1, 3)} <= allowed
    # Tools define absl flags at import (another tool module may already have defined
    # --output_dir in this process): call the tool's function in a process of its own.
    check = subprocess.run(
        [sys.executable, "-c", "import sys; from deeplab_tf.tools import inspect_data; "
         "print(inspect_data.read_manifest(sys.argv[1]))",
         str(tmp_path / "nowhere" / "x-*.tfrecord")], capture_output=True, text=True,
        timeout=120)
    assert check.returncode == 0 and check.stdout.strip() == "None", check.stderr[-2000:]
