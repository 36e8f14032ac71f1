"""Resuming a model_dir safely, as users type it (the deeplab-train console script): a changed
config is compared with the stored one before anything is written (refused changes listed,
the safe ones only with --allow_config_change, the previous config kept), and a second
trainer on a running model_dir is refused by the first one's lease (deeplab_tf/lease.py;
the lease itself: test_lease.py)."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from deeplab_tf import preemption, testing
from deeplab_tf.data.converters import synthetic
from .files import snapshot

TRAIN = os.path.join(os.path.dirname(sys.executable), "deeplab-train")
TINY = testing.tiny_overrides("data.crop_size=(33,33),train.batch_size=2,"
                              "train.steps_per_loop=1,train.checkpoint_every=1,"
                              "train.then_evaluate=false,train.then_export=false,"
                              "train.then_predict=0")


def command(model_dir, records, extra="", *flags):
    return [TRAIN, "--experiment=quickstart", f"--model_dir={model_dir}",
            f"--params_override={TINY},data.train_records={records}{extra}", *flags]


def run(cmd):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model_dir trained 2 steps, records); tests copy the model_dir."""
    root = tmp_path_factory.mktemp("resume")
    synthetic.convert(str(root / "data"), splits=("train",), num_train=8, image_size=(33, 33),
                      num_shards=1, num_workers=1)
    records = str(root / "data" / "train-*.tfrecord")
    result = run(command(root / "run", records, ",train.steps=2"))
    assert result.returncode == 0, result.stderr[-3000:]
    return root / "run", records


@pytest.fixture
def model_dir(trained, tmp_path):
    shutil.copytree(trained[0], tmp_path / "run")
    return tmp_path / "run"


def test_changed_depths_and_output_stride_are_refused_before_any_write(model_dir, trained,
                                                                         ledger):
    ledger.injected()
    before = snapshot(model_dir)
    result = run(command(model_dir, trained[1],
                         ",train.steps=2,model.depths=(1,1,2,1),model.output_stride=16",
                         "--allow_config_change"))
    assert result.returncode == 1, result.stderr[-3000:]
    err = result.stderr
    assert "Traceback" not in err
    assert "model.depths: (1, 1, 1, 1) -> (1, 1, 2, 1)" in err
    assert "model.output_stride: 8 -> 16" in err
    assert err.count("refused:") == 2 and "the checkpoints no longer load" in err
    assert "train.init_checkpoint=" in err   # the alternative: a new model_dir from this one
    after = snapshot(model_dir)
    ledger.lost(len(set(before) ^ set(after)) + sum(before[k] != after[k]
                                                     for k in set(before) & set(after)))
    assert after == before
    ledger.survived()


def test_more_steps_needs_the_flag_and_then_keeps_the_previous_config(model_dir, trained,
                                                                       ledger):
    ledger.injected(2)
    before = snapshot(model_dir)
    refused = run(command(model_dir, trained[1], ",train.steps=3"))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert "train.steps: 2 -> 3" in refused.stderr
    assert "--allow_config_change" in refused.stderr
    assert snapshot(model_dir) == before
    ledger.survived()

    allowed = run(command(model_dir, trained[1], ",train.steps=3", "--allow_config_change"))
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "at step 2" in allowed.stderr   # "resumed from ... at step 2"
    assert (model_dir / "checkpoints" / "ckpt-3.index").exists()
    # the previous config is kept, named by the step it was replaced at
    assert (model_dir / "config-2.json").read_bytes() == before["config.json"]
    assert json.loads((model_dir / "config.json").read_text())["train"]["steps"] == 3
    assert not (model_dir / "lease.json").exists()
    ledger.survived()


def test_a_second_trainer_on_a_running_model_dir_is_refused(tmp_path, trained, ledger):
    """Trainer 1 holds after step 1 (preemption.HOLD_ENV) until SIGTERM; trainer 2 starts
    meanwhile and is refused naming trainer 1; trainer 1 then saves, exits 75 releasing its
    lease, and a rerun finishes the run."""
    ledger.injected()
    model_dir = tmp_path / "run"
    cmd = command(model_dir, trained[1], ",train.steps=3")
    first = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, **{preemption.HOLD_ENV: "1"}))
    try:
        lines = []
        for line in first.stderr:   # no timing: the line is written while it holds
            lines.append(line)
            if "holding after step 1" in line:
                break
        else:
            pytest.fail("trainer 1 ended before holding:\n" + "".join(lines[-40:]))
        lease = json.loads((model_dir / "lease.json").read_text())
        assert lease["pid"] == first.pid
        before = {k: v for k, v in snapshot(model_dir).items() if k != "lease.json"}

        second = run(cmd)
        assert second.returncode == 1, second.stderr[-3000:]
        assert "Traceback" not in second.stderr
        assert f"pid {first.pid}" in second.stderr and "last heartbeat" in second.stderr
        assert "--break_lease" in second.stderr
        assert json.loads((model_dir / "lease.json").read_text())["run_id"] == lease["run_id"]
        assert {k: v for k, v in snapshot(model_dir).items() if k != "lease.json"} == before
    finally:
        first.send_signal(signal.SIGTERM)
        rest = first.stderr.read()
        first.wait(timeout=300)
    assert first.returncode == preemption_exit_code(), rest[-3000:]
    assert not (model_dir / "lease.json").exists()   # released at exit 75
    rerun = run(cmd)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert (model_dir / "checkpoints" / "ckpt-3.index").exists()
    ledger.survived()


def preemption_exit_code():
    from deeplab_tf.train_lib import PREEMPTED_EXIT_CODE
    return PREEMPTED_EXIT_CODE
