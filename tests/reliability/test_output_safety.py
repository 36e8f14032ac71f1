"""A command replaces only what it wrote itself, and writes only inside its output folder:
deeplab-export --overwrite aimed at the model_dir, at a folder holding it, or at a folder of
the user's files is refused before any work, everything left byte for byte; deeplab-predict
never writes an output over one of its inputs; the quickstart's predictions, named by the
file names stored in the records ("../x", "a/x" and "b/x"), stay inside predictions/, one
file each."""
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from deeplab_tf.testing import tiny_model_dir

from .files import snapshot

BIN = os.path.dirname(sys.executable)   # the console scripts, as users type them


def _png(rng, shape=(20, 24, 3)):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, shape, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("output_safety")
    tiny_model_dir(root / "runs" / "voc")
    (root / "photos").mkdir()
    (root / "photos" / "holiday.jpg").write_bytes(b"the user's photo")
    return root


# export_dir, relative to the work folder: what must be refused, and why (the message).
EXPORT_TARGETS = {
    "the model_dir": ("runs/voc", "runs/voc is or contains"),
    "its parent": ("runs", "runs is or contains"),
    "the work folder": (".", "is or contains"),
    "a folder of photos": ("photos", "it holds holiday.jpg, which this command does not write"),
}


@pytest.mark.parametrize("case", sorted(EXPORT_TARGETS))
def test_export_overwrite_never_replaces_a_folder_it_did_not_write(workdir, ledger, case):
    ledger.injected()
    target, words = EXPORT_TARGETS[case]
    before = snapshot(workdir)
    run = subprocess.run([os.path.join(BIN, "deeplab-export"), "--model_dir=runs/voc",
                          f"--export_dir={target}", "--overwrite"],
                         capture_output=True, text=True, timeout=300, cwd=workdir)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert words in run.stderr and "refusing to replace it" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    after = snapshot(workdir)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert after == before   # nothing lost, nothing changed, nothing left beside it
    assert sorted(os.listdir(workdir)) == ["photos", "runs"]
    ledger.survived()


def test_predict_never_writes_over_an_input(tmp_path, ledger):
    """Output folder = input folder: x.png's mask would be x_mask.png, an input."""
    ledger.injected()
    tiny_model_dir(tmp_path / "run")
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("x.png", "x_mask.png"):
        (folder / name).write_bytes(_png(rng))
    before = snapshot(folder)
    run = subprocess.run([os.path.join(BIN, "deeplab-predict"), f"--model_dir={tmp_path / 'run'}",
                          f"--input={folder}", f"--output_dir={folder}", "--outputs=mask"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    after = snapshot(folder)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert {k: after[k] for k in before} == before
    # x.png's mask took the next free name; x_mask.png's is its own.
    assert sorted(after) == ["x-2_mask.png", "x.png", "x_mask.png", "x_mask_mask.png"]
    ledger.survived()


WRITE_PREDICTIONS = """
import sys
from deeplab_tf import configs
from deeplab_tf.tools.train import write_predictions
config = configs.ExperimentConfig(data=configs.DataConfig(eval_records=sys.argv[2]))
print(write_predictions(config, sys.argv[1], 5))
"""


def test_predictions_named_by_records_stay_in_their_folder(tmp_path, ledger):
    import tensorflow as tf
    from deeplab_tf.data import tfrecord
    tiny_model_dir(tmp_path / "run")
    rng = np.random.default_rng(1)
    names = ["../escape.jpg", "sub/../../../escape2.jpg", "a/x.jpg", "b/x.jpg", ".."]
    ledger.inputs(len(names))
    records = tmp_path / "records" / "val-00000-of-00001.tfrecord"
    records.parent.mkdir()
    label = io.BytesIO()
    Image.fromarray(rng.integers(0, 3, (20, 24), np.uint8)).save(label, format="PNG")
    with tf.io.TFRecordWriter(str(records)) as writer:
        for name in names:
            writer.write(tfrecord.make_example(_png(rng), name, "png", 20, 24,
                                               label.getvalue()))
    run = subprocess.run([sys.executable, "-c", WRITE_PREDICTIONS, str(tmp_path / "run"),
                          str(records)], capture_output=True, text=True, timeout=300,
                         cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "run" / "predictions"
    assert sorted(os.listdir(out)) == ["escape.png", "escape2.png", "image.png", "x-2.png",
                                       "x.png"]
    assert sorted(os.listdir(tmp_path)) == ["records", "run"]   # nothing beside the run
    assert sorted(os.listdir(tmp_path / "run")) == ["checkpoints", "config.json",
                                                    "dataset.json", "predictions"]
