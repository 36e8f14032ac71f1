"""BN moving statistics of a short run, as users run it: `deeplab-train` of a few steps at
model.bn_momentum=0.99 warns that its statistics cannot have converged and names the fix, and
so does `deeplab-eval` of its checkpoint; with train.precise_bn_batches neither warns; a
negative train.precise_bn_batches is refused naming the key. (Accuracy before and after
precise BN: tests/training/test_precise_bn.py.)"""
import os
import subprocess
import sys

import pytest

from deeplab_tf import testing
from deeplab_tf.data.converters import synthetic

BIN = os.path.dirname(sys.executable)
WARNING = "BN moving statistics have not converged"
OVERRIDES = testing.tiny_overrides("model.bn_momentum=0.99,data.crop_size=(33,33),"
                                   "train.batch_size=2,train.steps=3,train.steps_per_loop=3,"
                                   "train.checkpoint_every=3,train.then_evaluate=false,"
                                   "train.then_export=false,train.then_predict=0")


def _train(root, name, extra=""):
    return subprocess.Popen(
        [os.path.join(BIN, "deeplab-train"), "--experiment=quickstart",
         f"--model_dir={root / name}",
         f"--params_override={OVERRIDES},data.train_records={root / 'data' / 'train-*.tfrecord'}"
         + extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)


def _eval(root, name):
    return subprocess.run([os.path.join(BIN, "deeplab-eval"), f"--model_dir={root / name}",
                           f"--records={root / 'data' / 'val-*.tfrecord'}",
                           "--inference_scales=1.0", "--noadd_flipped_images",
                           "--output_stride=16"],
                          capture_output=True, text=True, timeout=600, cwd=root)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bn_statistics")
    synthetic.convert(str(root / "data"), num_train=4, num_val=1, image_size=(33, 33),
                      num_shards=1, num_workers=1, progress=False)
    procs = {"short": _train(root, "short"),
             "precise": _train(root, "precise", ",train.precise_bn_batches=2")}
    done = {name: (proc.wait(timeout=600), *proc.communicate()) for name, proc in procs.items()}
    return root, done


def test_short_run_warns_in_deeplab_train_and_deeplab_eval(runs, ledger):
    ledger.injected(2)
    root, done = runs
    rc, out, err = done["short"]
    assert rc == 0, err[-3000:]
    assert WARNING in out + err and "train.precise_bn_batches=N" in out + err
    evaluated = _eval(root, "short")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert WARNING in evaluated.stdout + evaluated.stderr
    assert "3 steps at model.bn_momentum=0.99" in evaluated.stdout + evaluated.stderr
    ledger.survived(2)


def test_no_warning_after_precise_bn(runs, ledger):
    ledger.inputs(2)
    root, done = runs
    rc, out, err = done["precise"]
    assert rc == 0, err[-3000:]
    assert "precise BN: recomputing BN moving statistics over 2" in out + err
    assert WARNING not in out + err
    evaluated = _eval(root, "precise")
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert WARNING not in evaluated.stdout + evaluated.stderr


def test_negative_precise_bn_batches_is_refused(tmp_path, ledger):
    ledger.inputs()
    proc = subprocess.run(
        [os.path.join(BIN, "deeplab-train"), "--experiment=quickstart",
         f"--model_dir={tmp_path / 'run'}", "--params_override=train.precise_bn_batches=-1"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1
    assert "train.precise_bn_batches" in proc.stderr and "-1" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()
