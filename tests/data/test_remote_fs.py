"""Dataset writing and reading on TF's in-memory filesystem ram://, the code path of gs://
(fileio treats both as object stores; gs:// itself cannot be reached from here): every
converter, deeplab-build-data and deeplab-inspect-data, and a write stopped at any point.
Nothing may be created on the local disk (working directory and temporary folder).

ram:// lives in one process, so the command-line tools run in this process
(tests/tools_in_process.py: absl parses the argv, then the tool's main runs); their
console scripts are tested in subprocesses in tests/data/test_converters.py."""
import io
import json
import os
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import tensorflow as tf
from PIL import Image

from deeplab_tf import fileio
from deeplab_tf.data import converters, synthetic, tfrecord, writer
from deeplab_tf.data.converters import synthetic as synthetic_converter
from deeplab_tf.data.metadata import voc_colormap
from tools_in_process import run_tool

SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "voc2012_samples"
RNG = np.random.default_rng(0)


# AutoGraph's source of the tf.data functions it converts (TensorFlow's own, removed at
# exit): the one kind of file the temporary folder may receive.
AUTOGRAPH = "__autograph_generated_file"


@pytest.fixture
def bucket(tmp_path, monkeypatch):
    """(ram:// root, check) where check() lists files created in the working directory
    or the temporary folder, both empty local folders for the test."""
    local = [tmp_path / "cwd", tmp_path / "tmp"]
    for folder in local:
        folder.mkdir()
    monkeypatch.chdir(local[0])
    monkeypatch.setenv("TMPDIR", str(local[1]))
    monkeypatch.setattr(tempfile, "tempdir", str(local[1]))
    root = f"ram://test_remote_fs/{uuid.uuid4().hex[:8]}"
    yield root, lambda: sorted(str(p) for folder in local for p in folder.rglob("*")
                               if not p.name.startswith(AUTOGRAPH))
    fileio.rmtree(root)


def records(output_dir, split):
    """Serialized records of a split, through the manifest (read independently of it)."""
    manifest = fileio.read_json(fileio.join(output_dir, "manifest.json"))
    paths = [fileio.join(output_dir, s) for s in manifest["splits"][split]["shards"]]
    return [r.numpy() for r in tf.data.TFRecordDataset(paths)]


def decoded(record):
    feature = tf.train.Example.FromString(record).features.feature
    value = lambda key: feature[key].bytes_list.value[0]  # noqa: E731
    return (value(tfrecord.IMAGE_FILENAME).decode(), value(tfrecord.IMAGE_ENCODED),
            np.asarray(Image.open(io.BytesIO(value(tfrecord.LABEL_ENCODED)))))


def snapshot(folder):
    return {n: fileio.read_bytes(fileio.join(folder, n)) for n in fileio.listdir(folder)}


def convert_synthetic(output_dir, **kwargs):
    options = dict(num_train=8, num_val=3, image_size=(32, 40), num_shards=3, num_workers=1,
                   progress=False)
    return synthetic_converter.convert(output_dir, **{**options, **kwargs})


# ---------------------------------------------------------------------------- inputs

def encoded(array, fmt="PNG", palette=False):
    image = Image.fromarray(array)
    if palette:
        image.putpalette(voc_colormap().ravel().tolist())
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def pixels(h, w):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def voc_tree():
    return {f"VOC2012/{p.relative_to(SAMPLES)}": p.read_bytes()
            for p in sorted(SAMPLES.rglob("*")) if p.is_file() and p.suffix != ".md"}


def sbd_tree():
    files = voc_tree()
    files["VOC2012/JPEGImages/sbd_0.jpg"] = encoded(pixels(20, 24), "JPEG")
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"GTcls": {"Segmentation": RNG.integers(0, 21, (20, 24))
                                     .astype(np.uint8)}})
    files.update({"sbd/dataset/cls/sbd_0.mat": buf.getvalue(),
                  "sbd/dataset/train.txt": b"sbd_0\nsample_0\n", "sbd/dataset/val.txt": b"sbd_0\n"})
    return files


def cityscapes_tree():
    files = {}
    for split, city in (("train", "aachen"), ("train", "bonn"), ("val", "lindau")):
        stem = f"{city}_000000_000019"
        files[f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"] = encoded(pixels(12, 20))
        files[f"gtFine/{split}/{city}/{stem}_gtFine_labelIds.png"] = encoded(
            RNG.integers(0, 34, (12, 20)).astype(np.uint8))
    return files


def coco_tree():
    images = [{"id": i, "file_name": f"{i:012d}.jpg", "height": 60, "width": 80} for i in (1, 2)]
    square = [[5, 5, 45, 5, 45, 45, 5, 45]]   # 1600 px, over Sec. 4.3's 1000
    annotations = [{"id": i, "image_id": i, "category_id": c, "segmentation": square,
                    "area": 1600, "iscrowd": 0, "bbox": [5, 5, 40, 40]}
                   for i, c in ((1, 1), (2, 17))]
    categories = [{"id": 1, "name": "person"}, {"id": 17, "name": "cat"}]
    files = {f"train2017/{im['file_name']}": encoded(pixels(60, 80), "JPEG") for im in images}
    files["annotations/instances_train2017.json"] = json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}).encode()
    return files


def folder_tree():
    files = {"mine/classes.txt": b"background\ncat\n", "mine/splits/train.txt": b"a\nb\nc\nd\n",
             "mine/splits/val.txt": b"e\nf\n"}
    for stem in "abcdef":
        files[f"mine/images/{stem}.jpg"] = encoded(pixels(16, 20), "JPEG")
        files[f"mine/masks/{stem}.png"] = encoded(RNG.integers(0, 2, (16, 20)).astype(np.uint8))
    return files


# converter: (input files, arguments naming folders relative to the input root)
CASES = {
    "voc2012": (voc_tree, {"root": ""}),
    "sbd_trainaug": (sbd_tree, {"root": "sbd", "voc_root": ""}),
    "cityscapes": (cityscapes_tree, {"root": ""}),
    "coco_voc": (coco_tree, {"root": "", "splits": ["train2017"]}),
    "folder": (folder_tree, {"root": "mine"}),
}


def write_tree(base, files):
    for name, data in files.items():
        fileio.write_bytes(fileio.join(base, name), data)


def converted(name, inputs, output_dir, **options):
    files, args = CASES[name]
    kwargs = {k: fileio.join(inputs, v) if k.endswith("root") else v for k, v in args.items()}
    return converters.get_converter(name).convert(output_dir=output_dir, progress=False,
                                                  **kwargs, **options)


def comparable(manifest):
    """What must not depend on where the inputs and outputs are: metadata and splits."""
    splits = {s: {k: v for k, v in e.items() if k != "run"} for s, e in manifest["splits"].items()}
    return manifest["metadata"], splits


# ---------------------------------------------------------------------------- tests

@pytest.mark.parametrize("name", sorted(CASES))
def test_converter_on_ram_writes_what_it_writes_locally(name, bucket, tmp_path):
    root, local_files = bucket
    files = CASES[name][0]()
    write_tree(tmp_path / "in", files)
    write_tree(f"{root}/in", files)
    expected = converted(name, str(tmp_path / "in"), tmp_path / "out", num_workers=1)
    # 2 workers asked: ram:// inputs are read in this process (workers could not see them)
    manifest = converted(name, f"{root}/in", f"{root}/out", num_workers=2)
    assert comparable(manifest) == comparable(expected)
    assert manifest["converter"]["args"]["root"].startswith(f"{root}/in")
    for split, entry in expected["splits"].items():
        assert len(records(f"{root}/out", split)) == entry["num_examples"] > 0
        assert records(f"{root}/out", split) == records(tmp_path / "out", split)
    assert fileio.listdir(f"{root}/out") == sorted(os.listdir(tmp_path / "out"))
    assert local_files() == []


def test_synthetic_on_ram_matches_the_generator(bucket):
    root, local_files = bucket
    out = f"{root}/synthetic"
    with pytest.raises(writer.DatasetError, match=f"{out}/manifest.json: missing"):
        writer.load_manifest(out)
    convert_synthetic(out, num_workers=2)   # workers generate; the parent writes ram://
    manifest = writer.load_manifest(out)
    assert manifest.output_dir == out
    for split, count in (("train", 8), ("val", 3)):
        assert manifest.shard_paths(split) == [f"{out}/{split}-{i:05d}-of-00003.tfrecord"
                                               for i in range(3)]
        generated = list(synthetic.iter_split(split, count, 0, (32, 40)))
        stored = [decoded(r) for r in records(out, split)]
        assert [name for name, _, _ in stored] == [name for name, _, _ in generated]
        for (_, png, label), (_, image, expected) in zip(stored, generated):
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
            np.testing.assert_array_equal(label, expected)
    fileio.remove(f"{out}/val-00001-of-00003.tfrecord")
    with pytest.raises(writer.DatasetError, match=f"{out}/val-00001-of-00003.tfrecord"):
        writer.load_manifest(out)
    assert local_files() == []


def test_build_data_folder_from_ram_to_ram(bucket, capsys):
    root, local_files = bucket
    files = folder_tree()
    write_tree(f"{root}/in", files)
    # --num_workers defaults to the CPU count: ram:// inputs are read in this process
    assert run_tool("build_data", "folder", f"--root={root}/in/mine",
                    f"--output_dir={root}/out", "--num_shards=2") == 0
    out = capsys.readouterr().out
    assert "train: 4 examples in 2 shards" in out and f"wrote {root}/out/manifest.json" in out
    for split, stems in (("train", "abcd"), ("val", "ef")):
        stored = [decoded(r) for r in records(f"{root}/out", split)]
        assert [name for name, _, _ in stored] == list(stems)
        for name, image, label in stored:
            assert image == files[f"mine/images/{name}.jpg"]
            np.testing.assert_array_equal(label, np.asarray(Image.open(io.BytesIO(
                files[f"mine/masks/{name}.png"]))))
    assert run_tool("build_data", "folder", f"--root={root}/nowhere",
                    f"--output_dir={root}/out2") == 1
    assert (f"error: {root}/nowhere/classes.txt: class list not found"
            in capsys.readouterr().err)
    assert not fileio.exists(f"{root}/out2/manifest.json")
    assert local_files() == []


def test_inspect_data_on_ram(bucket, capsys):
    root, local_files = bucket
    convert_synthetic(f"{root}/data", splits=["train"])
    assert run_tool("inspect_data", f"--records={root}/data/train-*.tfrecord",
                    f"--output_dir={root}/look", "--num_samples=2", "--crop_size=16") == 0
    assert "dataset synthetic: 5 classes" in capsys.readouterr().out
    names = fileio.listdir(f"{root}/look")
    assert len(names) == 6 and all(n.endswith(("_image.png", "_mask.png", "_overlay.png"))
                                   for n in names)
    colours = {tuple(c) for c in synthetic.SYNTHETIC_METADATA.colormap()[[0, 1, 2, 3, 4, 255]]}
    for name in names:
        image = np.asarray(Image.open(io.BytesIO(fileio.read_bytes(f"{root}/look/{name}"))))
        assert image.shape == (16, 16, 3)
        if name.endswith("_mask.png"):
            assert {tuple(c) for c in image.reshape(-1, 3)} <= colours
    assert local_files() == []


def test_a_failed_first_write_on_ram_leaves_nothing(bucket):
    root, local_files = bucket

    def fail(stage, path, index):
        if stage == "record" and fileio.basename(path).startswith(".train-00001") and index:
            raise OSError("injected")
    with pytest.raises(OSError, match="injected"):
        convert_synthetic(f"{root}/out", fault_hook=fail)
    assert fileio.listdir(f"{root}/out") == []
    assert local_files() == []


# (stage, shard name prefix, index): where the second conversion stops
STOPS = [("record", "train-00000", 0), ("record", "train-00001", 1), ("record", "val-00000", 0),
         ("commit", "", 0), ("commit", "", 3), ("manifest", "", 0)]


@pytest.mark.parametrize("stage, prefix, index", STOPS)
def test_a_write_stopped_at_any_point_on_ram(bucket, stage, prefix, index):
    """What a reader finds if the process died there (the folder as the hook sees it), and
    after the failure: the previous dataset whole under its manifest, and only whole shards."""
    root, local_files = bucket
    out = f"{root}/out"
    convert_synthetic(out)
    before, at_stop = snapshot(out), {}

    def stop(s, path, i):
        if s == stage and fileio.basename(path).lstrip(".").startswith(prefix) and i == index:
            at_stop.update(snapshot(out))
            for name in at_stop:   # every visible shard is whole (DataLossError if not)
                if name.endswith(".tfrecord") and not name.startswith("."):
                    list(tf.data.TFRecordDataset(f"{out}/{name}"))
            raise OSError("injected")
    with pytest.raises(OSError, match="injected"):
        convert_synthetic(out, seed=1, num_shards=2, fault_hook=stop)
    assert at_stop, "the stop was never reached"
    visible = {n: b for n, b in at_stop.items() if not n.startswith(".")}
    # at every stop the previous dataset is there, unchanged
    assert {k: visible.get(k) for k in before} == before
    after = snapshot(out)
    assert not [n for n in after if n.startswith(".")]   # its own temporaries removed
    assert {k: after.get(k) for k in before} == before
    assert writer.load_manifest(out).num_examples("train") == 8
    if stage == "record":
        assert after == before
    assert all(list(tf.data.TFRecordDataset(f"{out}/{n}")) for n in after
               if n.endswith(".tfrecord"))
    assert local_files() == []


@pytest.mark.parametrize("where", ["local", "ram"])
def test_readers_take_only_the_shards_a_manifest_lists(where, tmp_path, caplog):
    """A shard that the folder's manifest does not list (left by a conversion that was
    killed while committing, or by an older one) is never read; a folder without a
    manifest (records of other tools) is read as it is."""
    from deeplab_tf.data import pipeline
    root = str(tmp_path) if where == "local" else f"ram://test_published/{uuid.uuid4().hex}"
    convert_synthetic(fileio.join(root, "data"), num_shards=2)
    stray = fileio.join(root, "data", "train-00000-of-00003.tfrecord")
    fileio.copy(fileio.join(root, "data", "train-00000-of-00002.tfrecord"), stray)
    with caplog.at_level("WARNING", logger="deeplab_tf.data"):
        files = pipeline.list_files(fileio.join(root, "data", "train-*.tfrecord"))
    assert [fileio.basename(f) for f in files] == [
        "train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord"]
    assert "train-00000-of-00003.tfrecord" in caplog.text and "not read" in caplog.text
    with pytest.raises(FileNotFoundError, match="among the shards a manifest.json lists"):
        pipeline.list_files(stray)
    fileio.makedirs(fileio.join(root, "own"))
    fileio.copy(stray, fileio.join(root, "own", "x.tfrecord"))
    assert pipeline.list_files(fileio.join(root, "own", "*.tfrecord")) == [
        fileio.join(root, "own", "x.tfrecord")]
    if where == "ram":
        fileio.rmtree(root)
