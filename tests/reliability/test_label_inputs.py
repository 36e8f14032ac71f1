"""Folder masks whose ids need a mapping: a dataset's own void id (CamVid's 11) and
0/255 binary masks, through `deeplab-build-data folder` as users type it."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deeplab_tf.testing import read_records
from .files import assert_refused, changed, snapshot

BIN = os.path.dirname(sys.executable)
CLASSES = ["sky", "building", "road"]   # 3 classes; 11 is the dataset's void id


def make_folder(root, masks):
    """images/ and masks/ (grayscale ids) for {stem: uint8 mask}; classes.txt."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "splits").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "splits" / "train.txt").write_text("\n".join(masks) + "\n")
    for stem, mask in masks.items():
        Image.fromarray(np.full(mask.shape + (3,), 90, np.uint8)).save(root / "images" / f"{stem}.png")
        Image.fromarray(mask, "L").save(root / "masks" / f"{stem}.png")


def build(tmp_path, *flags):
    return subprocess.run([os.path.join(BIN, "deeplab-build-data"), "folder", "--root=data",
                           "--splits=train", "--output_dir=out", *flags],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


def camvid_mask(seed):
    mask = np.random.default_rng(seed).integers(0, 3, (6, 8)).astype(np.uint8)
    mask[0, :3] = 11
    return mask


def binary_mask():
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 255
    return mask


def test_void_id_mapped_to_ignore_with_label_map(tmp_path, ledger):
    masks = {"a": camvid_mask(0), "b": camvid_mask(1)}
    make_folder(tmp_path / "data", masks)
    ledger.injected()
    ledger.inputs(2)
    refused = build(tmp_path)            # 11 >= 3 classes: refused without the mapping
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
    run = build(tmp_path, "--label_map=11:255", "--output_dir=out2")
    assert run.returncode == 0, run.stderr[-2000:]
    records = read_records(tmp_path / "out2", "train")
    for stem, mask in masks.items():
        expected = np.where(mask == 11, 255, mask)
        np.testing.assert_array_equal(records[f"{stem}"]["label"], expected)
    manifest = json.loads((tmp_path / "out2" / "manifest.json").read_text())
    assert manifest["converter"]["args"]["label_map"] == {"11": 255}
    ledger.survived()


def test_binary_mask_refused_naming_file_and_flag(tmp_path, ledger):
    make_folder(tmp_path / "data", {"fg": binary_mask()})
    before = snapshot(tmp_path / "data")
    ledger.injected()
    ledger.inputs()
    assert_refused(build(tmp_path), os.path.join("masks", "fg.png"), "--label_map=255:1",
                   "0 and 255")
    assert not (tmp_path / "out" / "manifest.json").exists()
    ledger.lost(changed(before, tmp_path / "data"))
    ledger.survived()


def test_binary_mask_accepted_with_mapping(tmp_path, ledger):
    mask = binary_mask()
    make_folder(tmp_path / "data", {"fg": mask})
    ledger.inputs()
    run = build(tmp_path, "--label_map=255:1")
    assert run.returncode == 0, run.stderr[-2000:]
    np.testing.assert_array_equal(read_records(tmp_path / "out", "train")["fg"]["label"],
                                  (mask == 255).astype(np.uint8))


@pytest.mark.parametrize("value", ["11:3", "11:254", "11", "a:1", "300:1"])
def test_bad_label_map_value_refused_naming_flag(tmp_path, ledger, value):
    make_folder(tmp_path / "data", {"a": camvid_mask(0)})
    ledger.injected()
    run = build(tmp_path, f"--label_map={value}")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert "label_map" in run.stderr or "label map" in run.stderr, run.stderr[-2000:]
    assert not (tmp_path / "out" / "manifest.json").exists()
    ledger.survived()


@pytest.mark.parametrize("mode,expected", [("L", "grayscale class ids"),
                                           ("P", "palette (indices are class ids)")])
def test_mask_kind_reported_and_recorded(tmp_path, ledger, mode, expected):
    mask = np.random.default_rng(2).integers(0, 3, (6, 8)).astype(np.uint8)
    make_folder(tmp_path / "data", {"a": mask})
    if mode == "P":
        image = Image.fromarray(mask, "P")
        image.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
        image.save(tmp_path / "data" / "masks" / "a.png")
    ledger.inputs()
    run = build(tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"masks: {expected}" in run.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["converter"]["args"]["masks"] == expected
    np.testing.assert_array_equal(read_records(tmp_path / "out", "train")["a"]["label"], mask)


def test_rgb_mask_without_colours_refused_naming_file(tmp_path, ledger):
    make_folder(tmp_path / "data", {"a": np.zeros((6, 8), np.uint8)})
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tmp_path / "data" / "masks" / "a.png")
    ledger.injected()
    run = build(tmp_path)
    assert run.returncode == 1 and "Traceback" not in run.stderr, run.stderr[-2000:]
    assert os.path.join("masks", "a.png") in run.stderr and "classes.txt" in run.stderr
    ledger.survived()
