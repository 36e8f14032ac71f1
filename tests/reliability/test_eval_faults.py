"""deeplab-eval against records of another dataset, and with results that cannot be
written: the mismatch is refused naming both datasets' files, before any work; a failed
write (a full disk, a path that cannot be a folder) is a clear error, the computed mIoU
still shown; the results go through fileio (unique temporaries: two evaluators writing
into one folder never collide)."""
import errno
import json
import logging
import os
import re
import shutil
import subprocess
import sys

import pytest

from deeplab_tf import eval_lib, fileio
from deeplab_tf.data.converters import synthetic
from deeplab_tf.data.metadata import DatasetMetadata
from deeplab_tf.data.synthetic import SYNTHETIC_METADATA
from deeplab_tf.inference import Protocol
from deeplab_tf.testing import TOY_METADATA as TOY, tiny_model_dir

EVAL = os.path.join(os.path.dirname(sys.executable), "deeplab-eval")
FAST = ["--inference_scales=1.0", "--noadd_flipped_images", "--output_stride=16"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Synthetic val records (with their manifest), a model_dir of the synthetic dataset
    and one of another dataset (4 toy classes, not 5)."""
    root = tmp_path_factory.mktemp("evalfaults")
    synthetic.convert(str(root / "data"), num_train=1, num_val=2, image_size=(33, 41),
                      num_shards=1, num_workers=1, progress=False)
    tiny_model_dir(root / "synthetic_run", metadata=SYNTHETIC_METADATA, steps=2)
    tiny_model_dir(root / "toy_run", metadata=TOY, steps=2)
    return root


def _eval(root, *flags):
    return subprocess.run([EVAL, f"--records={root / 'data' / 'val-*.tfrecord'}", *FAST,
                           *flags], capture_output=True, text=True, timeout=600, cwd=root)


def test_records_of_another_dataset_are_refused(setup, ledger):
    ledger.inputs()
    run = setup / "toy_run"
    proc = _eval(setup, f"--model_dir={run}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    for words in (str(setup / "data" / "manifest.json"), str(run / "dataset.json"),
                  "5 classes in the records, 4 in the model", "'synthetic'", "'toy'"):
        assert words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (run / "eval").exists()   # refused before any evaluation or write


def test_other_class_names_or_ignore_label_are_refused(setup, ledger):
    ledger.inputs(2)
    names = list(SYNTHETIC_METADATA.class_names)
    names[3] = "tree"
    for metadata, words in [
            (DatasetMetadata("renamed", tuple(names)), "class 3: 'dotted_triangle' in the "
                                                       "records, 'tree' in the model"),
            (DatasetMetadata("synthetic", SYNTHETIC_METADATA.class_names, ignore_label=0),
             "ignore label 255 in the records, 0 in the model")]:
        with pytest.raises(eval_lib.DatasetMismatchError, match=re.escape(words)):
            eval_lib.check_records(str(setup / "data" / "val-*.tfrecord"), metadata, "m")


def test_records_without_a_manifest_are_evaluated_with_one_warning(setup, ledger, caplog):
    ledger.inputs()
    bare = setup / "bare"
    bare.mkdir(exist_ok=True)
    for path in (setup / "data").glob("*.tfrecord"):
        shutil.copy(path, bare / path.name)
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.eval"):
        eval_lib.check_records(str(bare / "*.tfrecord"), TOY, str(setup / "toy_run"))
    warnings = [r.getMessage() for r in caplog.records if r.name == "deeplab_tf.eval"]
    assert len(warnings) == 1 and str(bare) in warnings[0], warnings
    caplog.clear()   # records with a matching manifest: no warning at all
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.eval"):
        eval_lib.check_records(str(setup / "data" / "val-*.tfrecord"), SYNTHETIC_METADATA)
    assert not [r for r in caplog.records if r.name == "deeplab_tf.eval"]


def _shown_miou(stdout):
    match = re.search(r"step \d+: mIoU ([0-9.e-]+), pixel accuracy ([0-9.e-]+)", stdout)
    assert match, stdout
    return float(match.group(1))


def test_an_unwritable_output_dir_is_a_clear_error_with_the_numbers_shown(setup, ledger):
    ledger.injected()
    blocker = setup / "a_file"
    blocker.write_text("not a folder\n")
    out = blocker / "eval"
    proc = _eval(setup, f"--model_dir={setup / 'synthetic_run'}", f"--output_dir={out}")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.startswith("deeplab-eval:")]
    assert error and "could not write the results" in error[0] and str(out) in error[0], \
        proc.stderr
    shown = re.search(r"step \d+: mIoU ([0-9.]+),", proc.stdout)
    assert shown, proc.stdout                       # shown, and repeated in the error
    assert f"mIoU {shown.group(1)}," in error[0] and "striped_disc" in proc.stdout
    assert blocker.read_text() == "not a folder\n"  # what was there is untouched
    ledger.survived()


def test_a_full_disk_keeps_the_numbers_and_writes_through_fileio(setup, ledger, monkeypatch,
                                                                  capsys):
    ledger.injected()
    run, out = str(setup / "synthetic_run"), str(setup / "full_disk")
    dataset = eval_lib.records_dataset(str(setup / "data" / "val-*.tfrecord"))
    protocol = Protocol(output_stride=16)
    written = []

    def full(path, data):
        written.append(fileio.basename(path))
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)

    monkeypatch.setattr(fileio, "write_bytes", full)
    with pytest.raises(eval_lib.ResultsWriteError) as info:
        eval_lib.run_evaluation(run, dataset, output_dir=out, protocol=protocol)
    message = str(info.value)
    assert "No space left on device" in message and out in message, message
    assert len(written) == 1 and re.fullmatch(r"results-\d+\.json", written[0]), written
    shown = _shown_miou(capsys.readouterr().out)
    assert info.value.result["miou"] == pytest.approx(shown, abs=5e-5)   # shown to 4 places
    monkeypatch.undo()                      # the disk has room again: the same numbers
    record = eval_lib.run_evaluation(run, dataset, output_dir=out, protocol=protocol,
                                     verbose=0)[-1]
    assert record["miou"] == info.value.result["miou"]
    stored = json.loads((setup / "full_disk" / "results.json").read_text())
    assert stored["miou"] == record["miou"]
    assert not [n for n in os.listdir(out) if ".tmp-" in n]   # no temporary left behind
    ledger.survived()
