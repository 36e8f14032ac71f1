"""deeplab-train end to end: records, SIGTERM -> checkpoint + exit status 75 -> resume."""
import signal
import subprocess
import sys
import time

from deeplab_tf import testing
from deeplab_tf.data.converters import synthetic
from deeplab_tf.train_lib import PREEMPTED_EXIT_CODE

TINY = testing.tiny_overrides("data.crop_size=(65,65),train.batch_size=4,"
                              "train.steps_per_loop=1,train.checkpoint_every=2,"
                              "train.then_evaluate=false,train.then_export=false,"
                              "train.then_predict=0")


def train_command(model_dir, records, steps, *flags):
    return [sys.executable, "-m", "deeplab_tf.tools.train", "--experiment=quickstart",
            f"--model_dir={model_dir}", *flags,
            f"--params_override={TINY},train.steps={steps},data.train_records={records}"]


def test_sigterm_exits_75_and_the_rerun_resumes(tmp_path):
    data = tmp_path / "data"
    synthetic.convert(str(data), splits=("train",), num_train=16, image_size=(65, 65),
                      num_shards=1, num_workers=1)
    records = str(data / "train-*.tfrecord")
    model_dir = tmp_path / "run"
    proc = subprocess.Popen(train_command(model_dir, records, 10000), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    ckpt_dir = model_dir / "checkpoints"
    deadline = time.time() + 300
    while not (ckpt_dir.exists() and any(p.suffix == ".index" for p in ckpt_dir.iterdir())):
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read()[-3000:]
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == PREEMPTED_EXIT_CODE, out[-3000:]
    assert "exiting with status 75" in out
    saved = sorted(int(p.stem.split("-")[1]) for p in ckpt_dir.glob("ckpt-*.index"))
    assert saved and saved[-1] < 10000

    rerun = subprocess.run(train_command(model_dir, records, saved[-1] + 2,
                                         "--allow_config_change"),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"at step {saved[-1]}" in rerun.stderr  # "resumed from ... at step N"
    assert (ckpt_dir / f"ckpt-{saved[-1] + 2}.index").exists()


def test_bad_override_fails_before_any_work(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.train", "--experiment=quickstart",
         f"--model_dir={tmp_path / 'run'}", "--params_override=train.stepz=3"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "unknown key 'train.stepz'" in result.stderr and "train.steps" in result.stderr
    assert not (tmp_path / "run").exists()
