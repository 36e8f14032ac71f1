"""deeplab-convert-checkpoint --overwrite replaces only a model_dir it converted before: a
folder of other files, a model_dir trained on since, or the folder holding the source
checkpoint is refused before any work, everything in it kept byte for byte."""
import os
import subprocess
import sys

import pytest

import slim_reference as ref
from deeplab_tf.convert import convert_checkpoint

BIN = os.path.dirname(sys.executable)   # the console scripts, as users type them


def _files(root):
    return {os.path.relpath(os.path.join(d, n), root): open(os.path.join(d, n), "rb").read()
            for d, _, names in os.walk(root) for n in names}


def test_overwrite_refuses_a_folder_it_did_not_convert(tmp_path):
    ref.write_checkpoint(tmp_path / "ckpt", ref.case_variables(ref.TINY_CASE))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("the user's work")
    before = _files(tmp_path)
    run = subprocess.run([os.path.join(BIN, "deeplab-convert-checkpoint"), "--source=slim",
                          "--checkpoint=ckpt", "--model_dir=mine", "--overwrite"],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-2000:]
    assert "holds thesis.tex, which this command does not write" in run.stderr
    assert "Traceback" not in run.stderr
    assert _files(tmp_path) == before and sorted(os.listdir(tmp_path)) == sorted(
        ["ckpt.data-00000-of-00001", "ckpt.index", "mine"])


def test_overwrite_replaces_only_a_converted_model_dir(tmp_path):
    ref.write_checkpoint(tmp_path / "src" / "ckpt", ref.case_variables(ref.TINY_CASE))
    source, run = str(tmp_path / "src" / "ckpt"), str(tmp_path / "run")
    convert_checkpoint("slim", source, run)
    convert_checkpoint("slim", source, run, overwrite=True)   # its own: replaced
    (tmp_path / "run" / "train").mkdir()                      # trained on since: the user's
    (tmp_path / "run" / "train" / "events").write_text("logs")
    with pytest.raises(FileExistsError, match="holds train"):
        convert_checkpoint("slim", source, run, overwrite=True)
    before = _files(tmp_path)
    # The folder holding the source checkpoint (or a parent of it): never replaced.
    for target in (tmp_path / "src", tmp_path):
        with pytest.raises(FileExistsError, match="is or contains"):
            convert_checkpoint("slim", source, str(target), overwrite=True)
    assert _files(tmp_path) == before
