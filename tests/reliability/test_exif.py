"""Phone photos stored sideways with an EXIF orientation: `deeplab-build-data folder` stores
them upright (images.upright, the rule prediction applies), so training, evaluation and
prediction see the pixels the mask was drawn on; a mask drawn on the unturned pixels is
refused naming it."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

from deeplab_tf.data import pipeline, tfrecord
from deeplab_tf.images import read_image
from deeplab_tf.testing import EXIF_DISPLAY as DISPLAY, read_records
from .files import assert_refused, changed, snapshot

BIN = os.path.dirname(sys.executable)
STORED = (16, 24)   # the pixels as the camera wrote them: landscape


def photo(orientation, seed, fmt="JPEG"):
    """(file bytes of a noisy photo with EXIF `orientation`, its pixels as Pillow decodes them)."""
    pixels = np.random.default_rng(seed).integers(0, 256, STORED + (3,)).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, fmt, exif=exif, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue(), np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def make_folder(root, photos, masks):
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True)
    (root / "classes.txt").write_text("a\nb\nc\n")
    (root / "splits" / "train.txt").write_text("\n".join(photos) + "\n")
    for stem, data in photos.items():
        (root / "images" / f"{stem}.jpg").write_bytes(data)
        Image.fromarray(masks[stem], "L").save(root / "masks" / f"{stem}.png")


def build(tmp_path):
    return subprocess.run([os.path.join(BIN, "deeplab-build-data"), "folder", "--root=data",
                           "--splits=train", "--output_dir=out"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)


def upright_mask(orientation, seed):
    shape = DISPLAY[orientation](np.zeros(STORED + (1,))).shape[:2]
    return np.random.default_rng(seed).integers(0, 3, shape).astype(np.uint8)


def test_rotated_photos_converted_upright_for_training_evaluation_and_predict(tmp_path, ledger):
    files, shown, masks = {}, {}, {}
    for k in DISPLAY:
        files[f"o{k}"], stored = photo(k, k)
        shown[f"o{k}"] = DISPLAY[k](stored)
        masks[f"o{k}"] = upright_mask(k, 10 + k)
    make_folder(tmp_path / "data", files, masks)
    ledger.injected()
    ledger.inputs(len(files))
    run = build(tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    records = read_records(tmp_path / "out", "train")
    for stem, want in shown.items():
        record = records[stem]
        assert record["size"] == want.shape[:2], stem
        np.testing.assert_array_equal(record["label"], masks[stem])
        if stem == "o1":   # stored upright already: the file's bytes, unchanged
            assert record["format"] == "jpeg" and record["image"] == files[stem]
        else:              # turned upright, lossless
            assert record["format"] == "png", stem
        # the training/evaluation decoder (TF's INTEGER_ACCURATE JPEG decode equals Pillow's)
        decoded = tfrecord.decode_image(tf.constant(record["image"])).numpy()
        np.testing.assert_array_equal(decoded, want, err_msg=stem)
        # predict: images.read_image of the original file gives the same pixels
        np.testing.assert_array_equal(read_image(tmp_path / "data" / "images" / f"{stem}.jpg"),
                                      want, err_msg=stem)
    # the evaluation input (whole images) and the training input (a full-size crop at scale 1)
    pattern = str(tmp_path / "out" / "train-*")
    for element in pipeline.build_dataset(pattern, mode="eval", global_batch_size=1):
        stem = element["filename"][0].numpy().decode()
        h, w = int(element["height"][0]), int(element["width"][0])
        np.testing.assert_array_equal(element["image"][0, :h, :w].numpy(), shown[stem])
    # training: crops as large as the biggest image at scale 1 sit at the top left
    for element in pipeline.build_dataset(pattern, mode="train", global_batch_size=1,
                                          crop_size=(24, 24), min_scale=1.0, max_scale=1.0,
                                          flip=False, num_epochs=1, with_metadata=True):
        stem = element["filename"][0].numpy().decode()
        h, w = shown[stem].shape[:2]
        np.testing.assert_array_equal(element["image"][0, :h, :w].numpy(), shown[stem])
        np.testing.assert_array_equal(element["label"][0, :h, :w, 0].numpy(), masks[stem])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["exif_upright"] == 7
    assert "7 photos stored upright by their EXIF orientation" in run.stdout
    ledger.survived()


def test_mask_drawn_on_the_unturned_pixels_refused_naming_it(tmp_path, ledger):
    data, _ = photo(6, 0)
    sideways = np.random.default_rng(1).integers(0, 3, STORED).astype(np.uint8)
    make_folder(tmp_path / "data", {"phone": data}, {"phone": sideways})
    before = snapshot(tmp_path / "data")
    ledger.injected()
    ledger.inputs()
    assert_refused(build(tmp_path), os.path.join("masks", "phone.png"), "EXIF orientation 6",
                   "upright")
    assert not (tmp_path / "out" / "manifest.json").exists()
    ledger.lost(changed(before, tmp_path / "data"))
    ledger.survived()
