"""train.recompute through deeplab-train as users type it: an unknown stage is a clear error
(exit status 1, the key, the value and the allowed stages) before any work, nothing written;
a valid one trains."""
import os
import subprocess
import sys

import pytest

DEEPLAB_TRAIN = os.path.join(os.path.dirname(sys.executable), "deeplab-train")
TINY = ("model.depths=(1,1,1,1),model.multi_grid=(1,),model.width_multiplier=0.125,"
        "model.aspp_filters=16,data.crop_size=(33,33),train.batch_size=2,train.steps=2,"
        "train.steps_per_loop=2,train.checkpoint_every=2,train.then_evaluate=false,"
        "train.then_export=false,train.then_predict=0")


@pytest.mark.parametrize("value,words", [
    ("(block3,block9)", ["train.recompute=('block3', 'block9')", "['block9']",
                         "('stem', 'block1', 'block2', 'block3', 'block4')"]),
    ("(block6)", ["['block6']", "model.extra_blocks=0"]),
])
def test_unknown_stage_is_a_clear_error_before_any_work(value, words, tmp_path, ledger):
    ledger.inputs()
    run = subprocess.run([DEEPLAB_TRAIN, "--experiment=quickstart", "--model_dir=run",
                          f"--params_override=train.recompute={value}"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1, run.stderr[-2000:]
    for word in words:
        assert word in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert os.listdir(tmp_path) == []


def test_training_with_recompute_runs(tmp_path):
    """The documented override: 2 steps of the quickstart with block3 and block4
    checkpointed, on its embedded synthetic data."""
    run = subprocess.run([DEEPLAB_TRAIN, "--experiment=quickstart", "--model_dir=run",
                          f"--params_override={TINY},train.recompute=(block3,block4),"
                          f"data.train_records={tmp_path / 'data' / 'train-*.tfrecord'}"],
                         capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "checkpoints" / "ckpt-2.index").exists()
