"""Bad and odd images through Segmenter, deeplab-predict and the SavedModel signatures:
random bytes, truncated JPEG/PNG, 0- and 1-pixel images, a decompression bomb and a header
claiming 60000x60000 (refused from the header, before decoding, under a configured
pixel limit), 16-bit, palette and grey+alpha images. Each gives a clear error or the
right labels, computed here by padding the NumPy-decoded pixels and calling the model;
nothing crashes; the peak memory of the fuzzed child processes is measured and bounded."""
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO
from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf.images import ImageError
from deeplab_tf.inference import Segmenter
from deeplab_tf.testing import tiny_model_dir

from .inputs import BOMB_SIDE, MAX_PIXELS, array_inputs, batch_inputs, encoded_inputs

# What each refused input's error must say, on the file paths and in serving_default.
FILE_ERRORS = {"bomb_png": f"{BOMB_SIDE}x{BOMB_SIDE} = {BOMB_SIDE ** 2} pixels, above the "
                           f"limit of {MAX_PIXELS}",
               "huge_jpeg_header": "60000x60000 = 3600000000 pixels, above the limit"}
SERVING_ERRORS = {"random_bytes": "is not a JPEG or PNG", "empty": "is not a JPEG or PNG",
                  "text": "is not a JPEG or PNG", "png_signature_only": "is not a JPEG or PNG",
                  "zero_pixel_png": "is 0x0 (WxH) pixels: expected 1 to",
                  "zero_width_png": "is 0x7 (WxH) pixels: expected 1 to",
                  "bomb_png": f"is {BOMB_SIDE}x{BOMB_SIDE} (WxH) pixels: expected 1 to "
                              f"{MAX_PIXELS} (max_pixels)",
                  "huge_jpeg_header": "is 60000x60000 (WxH) pixels",
                  "truncated_jpeg": "Invalid JPEG data", "truncated_png": "PNG"}
# Above these, a refused image was decoded after all: the bomb is 300 MB as RGB, 1.2 GB as
# the float32 the model takes. Measured: deeplab-predict ~700 MB, the SavedModel child ~600.
MEMORY_GROWTH_LIMIT_MB = 150
PEAK_LIMIT_MB = 1200


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "run"
    tiny_model_dir(path)
    return path


@pytest.fixture(scope="module")
def segmenter(model_dir):
    return Segmenter(model_dir, output_stride=16)


@pytest.fixture(scope="module")
def reference(model_dir):
    """labels of raw RGB pixels, computed without the inference module: pad with the mean
    pixel to 16k+1 (output stride 16), call the model, softmax, cut back, argmax."""
    model, _, _ = model_dir_lib.load_model(str(model_dir), output_stride=16)

    def labels(rgb):
        h, w = rgb.shape[:2]
        ph, pw = -(-(h - 1) // 16) * 16 + 1, -(-(w - 1) // 16) * 16 + 1
        x = np.empty((1, ph, pw, 3), np.float32)
        x[:] = np.asarray(model.mean_rgb, np.float32)
        x[0, :h, :w] = rgb
        return tf.nn.softmax(model(x, training=False)).numpy()[0, :h, :w]
    return labels


def assert_labels(labels, probs, name):
    """labels == argmax(probs), except where the two best classes are within float
    rounding of each other (graph and eager kernels sum in different orders)."""
    top2 = np.sort(probs, axis=-1)[..., -2:]
    clear = top2[..., 1] - top2[..., 0] > 1e-4
    np.testing.assert_array_equal(labels[clear], probs.argmax(-1)[clear], err_msg=name)
    assert np.mean(clear) > 0.5, name   # the comparison is not vacuous


def test_segmenter_arrays(segmenter, reference, ledger):
    cases = array_inputs()
    ledger.inputs(len(cases))
    for name, array, expected in cases:
        if expected is None:
            with pytest.raises(ImageError, match="pixels|expected"):
                segmenter.segment(array, max_pixels=MAX_PIXELS)
        else:
            labels, _ = segmenter.segment(array, max_pixels=MAX_PIXELS)
            assert_labels(labels, reference(expected), name)


def _write_inputs(folder):
    folder.mkdir()
    paths = {}
    for name, data, expected in encoded_inputs():
        extension = ".jpg" if "jpeg" in name else ".png"
        paths[name] = folder / f"{name}{extension}"
        paths[name].write_bytes(data)
    return paths


def test_segmenter_files(segmenter, reference, tmp_path, ledger):
    paths = _write_inputs(tmp_path / "in")
    ledger.inputs(len(paths))
    for name, data, expected in encoded_inputs():
        if expected is None:
            with pytest.raises(ImageError) as error:
                segmenter.segment_file(paths[name], max_pixels=MAX_PIXELS)
            assert str(paths[name]) in str(error.value)
            assert FILE_ERRORS.get(name, "not a readable image") in str(error.value)
        else:
            rgb, labels, _ = segmenter.segment_file(paths[name], max_pixels=MAX_PIXELS)
            np.testing.assert_array_equal(rgb, expected, err_msg=name)
            assert_labels(labels, reference(expected), name)


def run_measured(command):
    """(exit status, stdout, stderr, peak RSS in MB) of a child process that reports its
    own peak (RUSAGE_CHILDREN would be the largest of all children of the test run)."""
    run = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=REPO)
    peak = re.findall(r"PEAK_RSS_KB (\d+)", run.stderr)
    return run.returncode, run.stdout, run.stderr, int(peak[-1]) / 1024 if peak else None


# deeplab-predict, reporting its peak resident memory when it exits: VmHWM, the high-water
# mark of its own address space (ru_maxrss would also count the pages of the pytest process
# it was forked from, GBs late in a full run).
_WRAP = ("import atexit, re, runpy, sys; atexit.register(lambda: print('PEAK_RSS_KB', "
         "re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1), "
         "file=sys.stderr)); "
         "sys.argv = ['deeplab-predict'] + sys.argv[1:]; "
         "runpy.run_module('deeplab_tf.tools.predict', run_name='__main__')")


def test_deeplab_predict(model_dir, reference, tmp_path, ledger):
    paths = _write_inputs(tmp_path / "in")
    ledger.inputs(len(paths))
    out = tmp_path / "out"
    status, stdout, stderr, peak = run_measured(
        [sys.executable, "-c", _WRAP, f"--model_dir={model_dir}", f"--input={tmp_path / 'in'}",
         f"--output_dir={out}", f"--max_pixels={MAX_PIXELS}", "--output_stride=16",
         "--outputs=label"])
    cases = encoded_inputs()
    good = [name for name, _, expected in cases if expected is not None]
    assert status == 2, stderr[-3000:]   # some inputs failed, each named; the rest done
    assert f"{len(good)} of {len(cases)} images segmented" in stdout
    for name, _, expected in cases:
        if expected is None:
            assert re.search(re.escape(str(paths[name])) + ": " +
                             re.escape(FILE_ERRORS.get(name, "not a readable image")), stderr)
        else:
            labels = np.asarray(Image.open(out / f"{name}_label.png"))
            assert_labels(labels, reference(expected), name)
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}_label.png" for n in good)
    assert peak is not None
    ledger.peak_memory("deeplab-predict", peak)
    assert peak < PEAK_LIMIT_MB


def test_savedmodel_signatures(streams, ledger):
    fuzz = streams.others()["fuzz"]
    results = fuzz["results"]
    ledger.inputs(len(results))
    for name, _, expected in encoded_inputs():
        row = results[name]
        if expected is None:
            assert "error" in row, name
            assert SERVING_ERRORS[name] in row["error"], row["error"]
            if name in ("random_bytes", "bomb_png", "zero_pixel_png"):
                assert "serving_default: images[0] (" in row["error"]
        else:
            assert "error" not in row, (name, row)
            assert np.array(row["labels"]).shape == expected.shape[:2], name
            # the bytes, decoded by TensorFlow in the graph, give what the pixels decoded
            # by NumPy/Pillow give through predict_images
            assert row["labels"] == row["from_pixels"], name
    fed = 0
    for name, array, expected in array_inputs():
        row = results.get(f"pixels_{name}")
        if row is None:
            continue
        fed += 1
        if expected is None:
            words = ("channels" if array.shape[-1] > 4 else "predict_images: each image is")
            assert words in row.get("error", ""), (name, row)
        else:
            assert np.array(row["labels"]).shape == expected.shape[:2], name
            # 1 or 4 channels: the labels of the RGB image serving_default would decode
            if array.shape[-1] != 3:
                assert results[f"pixels_{name}_as_rgb"]["labels"] == row["labels"], name
    assert fed == 8, fed   # every [H, W, C] uint8 array: RGBA, grey+alpha, grey, 5 channels...
    for name, _, words in batch_inputs():
        assert words in results[f"batch_{name}"].get("error", ""), (name, results)
    assert ("serving_default: expected a batch of at least 1 image, got 0"
            in results["serving_default_empty_batch"].get("error", "")), results
    growth = fuzz["rss_after_mb"] - fuzz["rss_before_mb"]
    ledger.peak_memory("SavedModel fuzz child", fuzz["rss_after_mb"])
    assert growth < MEMORY_GROWTH_LIMIT_MB, growth   # over the fuzz, after the first call
    assert fuzz["rss_after_mb"] < PEAK_LIMIT_MB
