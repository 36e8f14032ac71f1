"""Corrupt TFRecords: a flipped byte (data CRC), a damaged length field (the reader must
find the next record by itself), a cut-off last record, and a record with valid CRCs whose
JPEG is cut off. Without data.skip_corrupt_records: an error naming shard and record, before
any batch or, for a record that only fails to decode, when training meets it. With it:
every other record is read, training runs and reports how many were skipped."""
import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf import configs, testing, train_lib
from deeplab_tf.data import pipeline, record_scan, tfrecord, training_input
from deeplab_tf.data.converters import synthetic

TINY = testing.tiny_overrides("data.crop_size=(33,33),train.batch_size=2,"
                              "train.steps_per_loop=1,train.checkpoint_every=2,train.steps=2,"
                              "train.then_evaluate=false,train.then_export=false,"
                              "train.then_predict=0")


def frames(path):
    """(offset, data length) of each record: the TFRecord framing read by hand."""
    data, out, offset = open(path, "rb").read(), [], 0
    while offset < len(data):
        length = int.from_bytes(data[offset:offset + 8], "little")
        out.append((offset, length))
        offset += 16 + length
    return out


def patch(path, offset, xor=0xFF, cut=None):
    data = bytearray(open(path, "rb").read())
    data[offset] ^= xor
    open(path, "wb").write(bytes(data[:cut]))


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Two shards of 6 records. Shard 0: record 2's data CRC fails. Shard 1: record 1's
    length field is damaged, record 3 holds a JPEG cut off after its headers (CRCs valid),
    record 5 is cut off at the end of the file."""
    root = tmp_path_factory.mktemp("records")
    synthetic.convert(str(root), splits=("train",), num_train=12, image_size=(33, 33),
                      num_shards=2, num_workers=1, progress=False)
    files = pipeline.list_files(str(root / "train-*.tfrecord"))
    originals = [[r.numpy() for r in tf.data.TFRecordDataset(f)] for f in files]
    example = tf.train.Example.FromString(originals[1][3])
    image = example.features.feature[tfrecord.IMAGE_ENCODED].bytes_list
    buf = io.BytesIO()
    Image.open(io.BytesIO(image.value[0])).save(buf, format="JPEG")
    image.value[0] = buf.getvalue()[:buf.getvalue().index(b"\xff\xda") + 20]
    example.features.feature[tfrecord.IMAGE_FORMAT].bytes_list.value[0] = b"jpeg"
    with tf.io.TFRecordWriter(files[1]) as writer:
        for i, record in enumerate(originals[1]):
            writer.write(example.SerializeToString() if i == 3 else record)
    offset, length = frames(files[0])[2]
    patch(files[0], offset + 12 + length // 2)
    shard1 = frames(files[1])
    patch(files[1], shard1[1][0] + 2, cut=shard1[5][0] + 20)
    bad = {(files[0], 2): "data CRC", (files[1], 1): "length", (files[1], 3): "decode",
           (files[1], 5): "truncated"}
    return {"files": files, "originals": originals, "bad": bad,
            "broken": example.SerializeToString(),
            "offsets": {(files[0], 2): offset, (files[1], 1): shard1[1][0]},
            "pattern": str(root / "train-*.tfrecord")}


@pytest.fixture(scope="module")
def scan(records):
    return record_scan.scan(records["files"], decode=True)


def test_without_skip_the_error_names_shard_and_record(records, ledger):
    ledger.injected(3)   # the three framing faults; the decode fault is the next test's
    with pytest.raises(record_scan.CorruptRecordError) as error:
        record_scan.require_intact(records["files"])
    text = str(error.value)
    for (path, index), offset in records["offsets"].items():
        assert f"{path}: record {index} (byte {offset}): " in text, text
    assert "corrupted record" in text and "data.skip_corrupt_records=true" in text
    config = configs.apply_overrides(configs.ExperimentConfig(),
                                     f"data.train_records={records['pattern']}")
    with pytest.raises(record_scan.CorruptRecordError, match="record 2 \\(byte"):
        training_input.records_dataset_fn(config, None)   # before any batch
    ledger.survived(3)


def test_the_scan_finds_every_bad_record_and_keeps_every_good_one(records, scan, ledger):
    ledger.injected(4)
    assert scan.counts == [6, 6]
    assert {(b.file, b.index) for b in scan.bad} == set(records["bad"])
    reasons = {(b.file, b.index): b.reason for b in scan.bad}
    assert "cannot be decoded" in reasons[(records["files"][1], 3)]
    read = record_scan.read_fn(scan)
    got = {}
    for i in range(2):
        for g, record in read(tf.constant(i, tf.int64)).as_numpy_iterator():
            got[int(g)] = record
    good = {i * 6 + j: r for i, shard in enumerate(records["originals"])
            for j, r in enumerate(shard) if (records["files"][i], j) not in records["bad"]}
    lost = [g for g in good if got.get(g) != good[g]]
    ledger.lost(len(lost))
    assert lost == []                          # every good record read, byte for byte
    assert set(got) - set(good) == {9}         # + the broken JPEG, filtered by the pipeline
    valid = scan.valid()
    assert valid.sum() == 8 and not valid[9]
    ledger.survived(4)


def test_with_skip_the_pipeline_yields_only_good_records(records, scan):
    ds = pipeline.build_dataset(records["pattern"], global_batch_size=1, crop_size=33,
                                skip_corrupt_records=True, records=scan, with_metadata=True,
                                num_epochs=2)
    seen = [int(b["index"][0]) for b in ds.as_numpy_iterator()]
    assert len(seen) == 16 and sorted(set(seen)) == sorted(np.flatnonzero(scan.valid()))


def test_a_record_that_fails_to_decode_mid_training_is_named(records, tmp_path, ledger):
    ledger.injected()
    # Without the framing faults: only the broken JPEG (shard 1, record 3) is left.
    pattern = str(tmp_path / "train-*.tfrecord")
    for i, shard in enumerate(records["originals"]):
        with tf.io.TFRecordWriter(str(tmp_path / f"train-{i:05d}-of-00002.tfrecord")) as w:
            for j, record in enumerate(shard):
                w.write(records["broken"] if (i, j) == (1, 3) else record)
    # One batch of all 12 records: the first step meets the broken one.
    config = configs.apply_overrides(configs.ExperimentConfig(), TINY + f",data.train_records="
                                     f"{pattern},train.batch_size=12,train.steps=1,"
                                     "model.backbone_weights=none")
    metadata = synthetic.synthetic.SYNTHETIC_METADATA
    dataset_fn = training_input.records_dataset_fn(config, metadata)   # framing is fine
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        train_lib.train(config, str(tmp_path / "run"), metadata, dataset_fn)
    explained = training_input.explain_data_error(config, error.value)
    assert explained is not None
    assert re.search(r"train-00001-of-00002\.tfrecord: record 3: cannot be decoded",
                     str(explained)), str(explained)
    ledger.survived()


def test_deeplab_train_skips_and_reports(records, tmp_path, ledger):
    ledger.injected(4)
    run = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.train", "--experiment=quickstart",
         f"--model_dir={tmp_path / 'run'}", f"--params_override={TINY},data.train_records="
         f"{records['pattern']},data.skip_corrupt_records=true,data.generate_synthetic=false"],
        capture_output=True, text=True, timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert run.returncode == 0, run.stderr[-3000:]
    assert "skipping 4 corrupt record(s) of 12" in run.stderr
    for path, index in records["bad"]:
        assert f"{path}: record {index}" in run.stderr
    assert "skipped 4 corrupt record(s) of 12 (data.skip_corrupt_records)" in run.stdout
    assert "trained to step 2" in run.stdout
    ledger.survived(4)
