"""VOC 2012 conversion on the real samples, bad inputs, and the CLI end to end."""
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf.data import tfrecord, writer
from deeplab_tf.data.converters import voc2012
from deeplab_tf.data.metadata import VOC
from deeplab_tf.testing import read_records

# shared/ is a sibling of the repository root (CI clones the repo beside a copy of it).
SAMPLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "voc2012_samples"


def split_names(split):
    return (SAMPLES / "ImageSets" / "Segmentation" / f"{split}.txt").read_text().split()


@pytest.fixture(scope="module")
def voc_output(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("voc")
    voc2012.convert(SAMPLES, output_dir, num_workers=1, progress=False)
    return output_dir


@pytest.mark.parametrize("split, count", [("train", 6), ("val", 2)])
def test_voc_samples_images_and_labels_are_exact(voc_output, split, count):
    records = read_records(voc_output, split)
    assert sorted(records) == sorted(split_names(split)) and len(records) == count
    for name, record in records.items():
        assert record["image"] == (SAMPLES / "JPEGImages" / f"{name}.jpg").read_bytes()
        assert record["format"] == "jpeg"
        png = Image.open(SAMPLES / "SegmentationClass" / f"{name}.png")
        assert png.mode == "P"  # palette indices, not colours, are the class ids
        indices = np.array(png)
        assert record["label"].shape == indices.shape == record["size"]
        np.testing.assert_array_equal(record["label"], indices)
        # What training decodes: the project's decoder agrees.
        np.testing.assert_array_equal(
            tfrecord.decode_label(record["label_png"]).numpy()[..., 0], indices)
        assert tuple(tfrecord.decode_image(record["image"]).shape) == (*indices.shape, 3)


def test_voc_samples_manifest(voc_output):
    manifest = writer.load_manifest(voc_output)
    assert manifest.metadata == VOC
    assert manifest.data["metadata"] == VOC.to_dict()
    assert manifest.data["converter"]["name"] == "voc2012"
    for split in ("train", "val"):
        entry = manifest.splits[split]
        labels = [np.array(Image.open(SAMPLES / "SegmentationClass" / f"{n}.png"))
                  for n in split_names(split)]
        counts = np.bincount(np.concatenate([l.ravel() for l in labels]), minlength=256)
        assert entry["num_examples"] == len(labels) == manifest.num_examples(split)
        assert entry["class_pixels"] == counts[:21].tolist()
        assert entry["ignore_pixels"] == counts[255] > 0
        assert counts[21:255].sum() == 0
        heights, widths = zip(*(l.shape for l in labels))
        assert entry["image_size"] == {"min_height": min(heights), "max_height": max(heights),
                                       "min_width": min(widths), "max_width": max(widths)}
        n = entry["num_shards"]
        assert entry["shards"] == [f"{split}-{i:05d}-of-{n:05d}.tfrecord" for i in range(n)]
        assert all(Path(p).is_file() for p in manifest.shard_paths(split))
        assert entry["skipped"] == {}


def test_voc_root_may_be_the_vocdevkit_parent(tmp_path):
    (tmp_path / "VOCdevkit").mkdir()
    (tmp_path / "VOCdevkit" / "VOC2012").symlink_to(SAMPLES.resolve())
    manifest = voc2012.convert(tmp_path / "VOCdevkit", tmp_path / "out", splits=["val"],
                               num_workers=1, progress=False)
    assert manifest["splits"]["val"]["num_examples"] == 2


# ---------------------------------------------------------------------------- bad inputs

def make_voc(root, train=("sample_0", "sample_1", "sample_2")):
    """A VOC2012 folder with copies of some real samples, to damage."""
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    for name in train:
        shutil.copy(SAMPLES / "JPEGImages" / f"{name}.jpg", root / "JPEGImages")
        shutil.copy(SAMPLES / "SegmentationClass" / f"{name}.png", root / "SegmentationClass")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(train) + "\n")
    return root


def truncate_jpeg(root):
    path = root / "JPEGImages" / "sample_1.jpg"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path, "truncated"


def shrink_label(root):
    path = root / "SegmentationClass" / "sample_1.png"
    png = Image.open(path)
    png.crop((0, 0, png.width - 7, png.height)).save(path)  # keeps the palette
    return path, "but image"


def label_value_37(root):
    path = root / "SegmentationClass" / "sample_1.png"
    png = Image.open(path)
    indices = np.array(png)
    indices[10, 10] = 37
    out = Image.fromarray(indices)
    out.putpalette(png.getpalette())  # L -> P with the VOC palette
    assert out.mode == "P"
    out.save(path)
    return path, "[37]"


def missing_listed_file(root):
    with open(root / "ImageSets/Segmentation/train.txt", "a") as f:
        f.write("ghost\n")
    return root / "JPEGImages" / "ghost.jpg", "not found"


@pytest.mark.parametrize("damage, reason, valid", [
    (truncate_jpeg, "corrupt_file", 2), (shrink_label, "size_mismatch", 2),
    (label_value_37, "label_value", 2), (missing_listed_file, "missing_file", 3)])
def test_bad_input_is_named_or_skipped(tmp_path, damage, reason, valid):
    root = make_voc(tmp_path / "VOC2012")
    path, words = damage(root)
    output_dir = tmp_path / "out"
    with pytest.raises(writer.DatasetError) as info:
        voc2012.convert(root, output_dir, splits=["train"], num_workers=1, progress=False)
    assert str(path) in str(info.value) and words in str(info.value)
    assert info.value.reason == reason
    assert list(output_dir.iterdir()) == []  # no shard, manifest or temporary left

    manifest = voc2012.convert(root, output_dir, splits=["train"], skip_invalid=True,
                               num_workers=1, progress=False)
    entry = manifest["splits"]["train"]
    assert entry["num_examples"] == valid
    assert entry["skipped"] == {reason: 1}
    assert entry["skipped_files"][0]["file"] == str(path)
    assert len(read_records(output_dir, "train")) == valid


def test_label_value_37_message_names_the_classes(tmp_path):
    root = make_voc(tmp_path / "VOC2012", train=("sample_1",))
    label_value_37(root)
    with pytest.raises(writer.DatasetError, match=r"outside the 21 classes 0\.\.20 and the "
                                                  r"ignore value 255"):
        voc2012.convert(root, tmp_path / "out", splits=["train"], num_workers=1,
                        progress=False)


def test_empty_inputs_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(writer.DatasetError, match="not a PASCAL VOC 2012 directory") as info:
        voc2012.convert(tmp_path / "empty", tmp_path / "out", num_workers=1)
    assert str(tmp_path / "empty") in str(info.value)

    root = make_voc(tmp_path / "VOC2012")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n")
    with pytest.raises(writer.DatasetError, match="lists no examples") as info:
        voc2012.convert(root, tmp_path / "out", splits=["train"], num_workers=1)
    assert "train.txt" in str(info.value)

    root = make_voc(tmp_path / "VOC_bad", train=("sample_1",))
    truncate_jpeg(root)
    with pytest.raises(writer.DatasetError, match="all 1 examples are invalid"):
        voc2012.convert(root, tmp_path / "out", splits=["train"], skip_invalid=True,
                        num_workers=1, progress=False)


# ---------------------------------------------------------------------------- CLI

def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "deeplab_tf.tools.build_data", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_cli_end_to_end(tmp_path):
    output_dir = tmp_path / "out"
    result = run_cli("voc2012", "--root", SAMPLES, "--output_dir", output_dir,
                     "--num_shards", "2", "--num_workers", "1")
    assert result.returncode == 0, result.stderr
    assert "train: 6 examples in 2 shards" in result.stdout
    manifest = writer.load_manifest(output_dir)
    assert {s: e["num_examples"] for s, e in manifest.splits.items()} == {"train": 6, "val": 2}
    assert manifest.splits["train"]["shards"] == ["train-00000-of-00002.tfrecord",
                                                  "train-00001-of-00002.tfrecord"]
    assert "voc2012" in manifest.data["command"] and "--num_shards" in manifest.data["command"]
    assert sorted(read_records(output_dir, "val")) == sorted(split_names("val"))


def test_cli_errors_and_help(tmp_path):
    result = run_cli("cifar", "--output_dir", tmp_path)
    assert result.returncode != 0
    assert "unknown dataset 'cifar'; valid names: voc2012, sbd_trainaug" in result.stderr
    result = run_cli("voc2012", "--root", tmp_path / "nowhere", "--output_dir", tmp_path / "o")
    assert result.returncode == 1
    assert f"error: {tmp_path / 'nowhere'}: not a PASCAL VOC 2012 directory" in result.stderr
    result = run_cli("voc2012", "--root", SAMPLES, "--output_dir", tmp_path, "--voc_root", "x")
    assert result.returncode != 0 and "--voc_root not used by voc2012" in result.stderr
    result = run_cli("sbd_trainaug", "--root", tmp_path, "--output_dir", tmp_path)
    assert result.returncode != 0 and "sbd_trainaug needs --voc_root" in result.stderr
    # The console script's __main__ is a wrapper: --help must still list this tool's flags.
    code = ("import sys; sys.argv = ['deeplab-build-data', '--help']\n"
            "from deeplab_tf.tools.build_data import run; run()")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    for text in ("sbd_trainaug", "coco_voc", "cityscapes", "--skip_invalid", "--num_workers",
                 "--label_map", "--voc_root", "--annotations", "--num_train"):
        assert text in result.stdout, text
