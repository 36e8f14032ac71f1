"""deeplab-predict on a folder of mixed files: every expected picture, bad files reported."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, VOC_SAMPLES
from deeplab_tf.inference import Segmenter
from deeplab_tf.tools.predict import list_inputs, output_stems
from deeplab_tf.testing import TOY_METADATA as METADATA, tiny_model_dir


def _inputs(folder):
    """{file name: (height, width)} of the good images written into `folder`."""
    rng = np.random.default_rng(0)
    shutil.copy(VOC_SAMPLES / "JPEGImages" / "sample_2.jpg", folder / "photo.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 61, 3), np.uint8)).save(folder / "rgb.png")
    Image.fromarray(rng.integers(0, 256, (33, 20), np.uint8)).save(folder / "gray.png")
    Image.fromarray(rng.integers(0, 256, (25, 30, 4), np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (21, 17), dtype=np.uint16)).save(folder / "deep.png")
    Image.fromarray(rng.integers(0, 256, (600, 400, 3), np.uint8)).save(folder / "huge.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    (folder / "notes.txt").write_text("not an image: not listed")
    return {"photo": (333, 500), "rgb": (40, 61), "gray": (33, 20), "rgba": (25, 30),
            "deep": (21, 17)}


def test_mixed_folder(tmp_path):
    tiny_model_dir(tmp_path / "run")
    folder = tmp_path / "in"
    folder.mkdir()
    good = _inputs(folder)
    out = tmp_path / "out"
    run = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.predict", f"--model_dir={tmp_path / 'run'}",
         f"--input={folder}", f"--output_dir={out}", "--max_pixels=200000",
         "--output_stride=16", "--alpha=0.4"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    # Exit status 2: some inputs failed; each is named, the others were processed.
    assert run.returncode == 2, run.stderr[-3000:]
    assert "corrupt.jpg: not a readable image" in run.stderr
    assert "huge.png: 400x600 = 240000 pixels, above the limit of 200000" in run.stderr
    assert "5 of 7 images segmented" in run.stdout
    expected = {f"{stem}_{kind}.png" for stem in good for kind in ("mask", "overlay", "label")}
    assert {p.name for p in out.iterdir()} == expected
    for stem, size in good.items():
        for kind in ("mask", "overlay", "label"):
            picture = Image.open(out / f"{stem}_{kind}.png")
            assert picture.size[::-1] == size
            assert picture.mode == ("L" if kind == "label" else "RGB")
    # The pictures are what Segmenter predicts for the file, drawn in the dataset's colours.
    rgb, labels, _ = Segmenter(tmp_path / "run", output_stride=16).segment_file(
        folder / "photo.jpg")
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo_label.png")), labels)
    assert len(np.unique(labels)) >= 2
    colours = METADATA.colormap()
    np.testing.assert_array_equal(np.asarray(Image.open(out / "photo_mask.png")), colours[labels])
    blend = np.round(0.6 * rgb + 0.4 * colours[labels].astype(np.float32))
    np.testing.assert_allclose(np.asarray(Image.open(out / "photo_overlay.png")), blend, atol=1)


def test_inputs_from_files_dirs_and_globs(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for name in ("a/x.jpg", "a/y.PNG", "a/z.txt", "b/x.jpg"):
        (tmp_path / name).write_bytes(b"")
    paths, problems = list_inputs([str(tmp_path / "a"), str(tmp_path / "b" / "*.jpg"),
                                   str(tmp_path / "a" / "x.jpg"), str(tmp_path / "missing")])
    assert [p[len(str(tmp_path)) + 1:] for p in paths] == ["a/x.jpg", "a/y.PNG", "b/x.jpg"]
    assert len(problems) == 1 and "missing: no such file" in problems[0]
    assert output_stems(paths) == ["x", "y", "x-2"]


@pytest.mark.parametrize("tool,flag", [("predict", "--max_pixels"), ("export", "--tflite"),
                                       ("evaluate", "--add_flipped_images")])
def test_help_lists_the_flags(tool, flag):
    run = subprocess.run([sys.executable, "-m", f"deeplab_tf.tools.{tool}", "--help"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert flag in run.stdout + run.stderr


def test_bad_flags_are_usage_errors(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.predict", f"--model_dir={tmp_path}",
         f"--input={tmp_path}", f"--output_dir={tmp_path / 'o'}", "--outputs=mask,movie"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert run.returncode == 1 and "--outputs=mask,movie: expected some of" in run.stderr
