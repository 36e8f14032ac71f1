"""The sharded writer: atomic commits under failures, spawn workers, manifest upkeep."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from deeplab_tf.data import writer
from deeplab_tf.data.converters import synthetic, voc2012

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "voc2012_samples"


def convert_synthetic(output_dir, **kwargs):
    options = dict(num_train=8, num_val=3, image_size=(32, 40), num_shards=3, num_workers=1,
                   progress=False)
    return synthetic.convert(output_dir, **{**options, **kwargs})


def snapshot(directory):
    return {p.name: p.read_bytes() for p in sorted(Path(directory).iterdir())}


def read_shards(paths):
    """Serialized records of shards; DataLossError on a truncated or corrupt one."""
    import tensorflow as tf  # not at the top: spawned workers import this module
    return [r.numpy() for r in tf.data.TFRecordDataset([str(p) for p in paths])]


def records_in(path):
    return len(read_shards([path]))


class Fault:
    """A fault hook raising OSError at one (stage, shard, index), noting the files then."""

    def __init__(self, stage, shard_prefix, index):
        self.stage, self.prefix, self.index, self.seen = stage, shard_prefix, index, None

    def __call__(self, stage, path, index):
        if stage == self.stage and Path(path).name.lstrip(".").startswith(self.prefix) \
                and index == self.index:
            self.seen = sorted(p.name for p in Path(path).parent.iterdir())
            raise OSError(28, "No space left on device (injected)")


def test_failure_mid_shard_leaves_nothing_that_looks_complete(tmp_path):
    fault = Fault("record", "train-00001", 1)
    with pytest.raises(OSError, match="injected"):
        convert_synthetic(tmp_path, fault_hook=fault)
    # The fault hit part-way: shard 0 was written, shard 1 half-written, both as temporaries.
    assert [n.split(".tmp-")[0] for n in fault.seen] == [".train-00000-of-00003.tfrecord",
                                                        ".train-00001-of-00003.tfrecord",
                                                        "lease.json"]   # the run's lease
    assert list(tmp_path.iterdir()) == []  # temporaries removed, no manifest


def test_failure_keeps_the_previous_complete_run(tmp_path):
    convert_synthetic(tmp_path)
    before = snapshot(tmp_path)
    for fault in (Fault("record", "val-00000", 0), Fault("record", "train-00001", 1)):
        with pytest.raises(OSError):
            convert_synthetic(tmp_path, seed=1, num_shards=2, fault_hook=fault)
        assert snapshot(tmp_path) == before
    assert writer.load_manifest(tmp_path).num_examples("train") == 8


@pytest.mark.parametrize("stage", ["commit", "manifest"])
def test_failure_while_committing_keeps_the_previous_dataset(tmp_path, stage, caplog):
    """Killed while renaming its shards or writing its manifest, a rerun into the folder of
    an earlier conversion leaves that dataset whole and readable: its shards under its
    manifest are unchanged (the new ones took other names); a later run finishes."""
    convert_synthetic(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(OSError):
        convert_synthetic(tmp_path, seed=1, fault_hook=Fault(stage, "", 1 if stage == "commit"
                                                             else 0))
    after = snapshot(tmp_path)
    assert {k: after.get(k) for k in before} == before   # the previous dataset, byte for byte
    manifest = writer.load_manifest(tmp_path)
    assert manifest.num_examples("train") == 8
    strays = sorted(set(after) - set(before))
    assert strays and not [n for n in strays if n.startswith(".")]
    assert all(records_in(tmp_path / n) >= 1 for n in strays)   # each one whole
    with caplog.at_level("WARNING", logger="deeplab_tf.data.writer"):
        convert_synthetic(tmp_path, seed=2)
    assert "that its manifest does not list" in caplog.text and strays[0] in caplog.text
    manifest = writer.load_manifest(tmp_path)
    assert all((tmp_path / n).exists() for n in strays)    # not this run's: left alone
    assert not set(before) - {"manifest.json"} & set(manifest.data["splits"]["train"]["shards"])
    assert not [n for n in set(before) - {"manifest.json"} if (tmp_path / n).exists()]


def test_file_size_limit_in_a_child_process(tmp_path):
    """A real write failure (EFBIG under RLIMIT_FSIZE) as the fault-injection suite makes it."""
    code = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))
        from deeplab_tf.data.converters import voc2012
        try:
            voc2012.convert({str(SAMPLES)!r}, {str(tmp_path)!r}, num_shards=1, progress=False)
        except OSError as e:
            print("OSError:", e)
            raise SystemExit(3)
        """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "File too large" in result.stdout
    assert list(tmp_path.iterdir()) == []


def test_spawn_workers_write_the_same_shards(tmp_path):
    options = dict(num_shards=3, chunk_size=2, progress=False)
    one = voc2012.convert(SAMPLES, tmp_path / "one", num_workers=1, **options)
    two = voc2012.convert(SAMPLES, tmp_path / "two", num_workers=2, **options)
    shards = snapshot(tmp_path / "one")
    del shards["manifest.json"]
    assert len(shards) == 5
    assert {k: v for k, v in snapshot(tmp_path / "two").items() if k != "manifest.json"} == shards
    for split in ("train", "val"):  # all but the run's time
        one["splits"][split].pop("run"), two["splits"][split].pop("run")
    assert one["splits"] == two["splits"]


def load_with_pid(item):
    """synthetic.load_example, naming the example after the process that loaded it."""
    example = synthetic.load_example(item)
    example.name = f"{os.getpid()}-{example.name}"
    return example


def test_spawn_workers_run_in_other_processes(tmp_path):
    items = {"train": [("train", i, 0, (16, 16)) for i in range(6)]}
    writer.write_dataset(tmp_path, items, load_with_pid, synthetic.synthetic.SYNTHETIC_METADATA,
                         num_workers=2, chunk_size=1, progress=False)
    from tensorflow.core.example.example_pb2 import Example
    names = [Example.FromString(r).features.feature["image/filename"].bytes_list.value[0]
             .decode() for r in read_shards(writer.load_manifest(tmp_path).shard_paths("train"))]
    pids = {int(n.split("-")[0]) for n in names}
    assert [n.split("-", 1)[1] for n in names] == [f"train_{i:06d}" for i in range(6)]
    assert os.getpid() not in pids and len(pids) >= 1


def test_worker_errors_reach_the_parent_with_their_file(tmp_path):
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    (root / "ImageSets/Segmentation/train.txt").write_text("sample_0\n")
    (root / "SegmentationClass/sample_0.png").write_bytes(
        (SAMPLES / "SegmentationClass/sample_0.png").read_bytes())
    with pytest.raises(writer.DatasetError) as info:
        voc2012.convert(root, tmp_path / "out", num_workers=2, splits=["train"], progress=False)
    assert info.value.reason == "missing_file"
    assert info.value.path == str(root / "JPEGImages/sample_0.jpg")


def test_reruns_replace_stale_shards_and_merge_splits(tmp_path):
    convert_synthetic(tmp_path, splits=["train", "train-hard"], num_shards=4)
    convert_synthetic(tmp_path, splits=["train"], num_shards=2)
    assert sorted(p.name for p in tmp_path.glob("train-0*.tfrecord")) == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert len(list(tmp_path.glob("train-hard-*.tfrecord"))) == 4  # another split: kept
    convert_synthetic(tmp_path, splits=["val"], command=["deeplab-build-data", "synthetic"])
    manifest = writer.load_manifest(tmp_path)
    assert sorted(manifest.splits) == ["train", "train-hard", "val"]
    assert sum(records_in(p) for p in manifest.shard_paths("train")) == 8
    assert sum(records_in(p) for p in manifest.shard_paths("val")) == 3
    assert sum(records_in(p) for p in manifest.shard_paths("train-hard")) == 100
    # Each split records the run that wrote it; the top level, the latest run.
    assert manifest.splits["train"]["run"]["converter"]["args"]["num_shards"] == 2
    assert manifest.splits["train-hard"]["run"]["converter"]["args"]["num_shards"] == 4
    assert manifest.splits["val"]["run"]["command"] == manifest.data["command"] == [
        "deeplab-build-data", "synthetic"]


def test_other_runs_temporaries_are_reported_not_removed(tmp_path, caplog):
    """Another run's temporary (writing now, or killed: a pid cannot tell on a shared
    bucket) is not this run's to delete; this run's own are gone after a failure."""
    other = tmp_path / ".train-00000-of-00003.tfrecord.tmp-4242-0123abcd"
    other.write_bytes(b"half a shard")
    with pytest.raises(OSError, match="injected"):
        convert_synthetic(tmp_path, fault_hook=Fault("record", "train-00001", 0))
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name]
    convert_synthetic(tmp_path)
    assert other.read_bytes() == b"half a shard"
    assert "1 temporary file(s) of another conversion" in caplog.text and other.name in caplog.text
    assert writer.load_manifest(tmp_path).num_examples("train") == 8


def test_load_manifest_checks_shards(tmp_path):
    with pytest.raises(writer.DatasetError, match="missing or unreadable manifest"):
        writer.load_manifest(tmp_path)
    convert_synthetic(tmp_path)
    manifest = writer.load_manifest(tmp_path)
    assert manifest.metadata == synthetic.synthetic.SYNTHETIC_METADATA
    assert json.loads((tmp_path / "manifest.json").read_text())["metadata"] == \
        manifest.metadata.to_dict()
    with pytest.raises(writer.DatasetError, match="no split 'test'"):
        manifest.shard_paths("test")
    (tmp_path / "val-00001-of-00003.tfrecord").unlink()
    with pytest.raises(writer.DatasetError, match="val-00001-of-00003.tfrecord"):
        writer.load_manifest(tmp_path)
