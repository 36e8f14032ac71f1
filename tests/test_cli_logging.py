"""The tiny quickstart run as users type it, its output going to pipes (a log file, a batch
job): no TensorFlow noise by default, TensorFlow's INFO lines with -v 1 and absl's log file
with --log_dir; progress as plain periodic lines, no carriage returns or escape codes."""
import os
import re
import subprocess
import sys
import time

import experiments
import deeplab_tf
from deeplab_tf.data.converters import synthetic
from deeplab_tf.progress import INTERVAL_S
from deeplab_tf.tools import logs
from readme.readme import SMALL_QUICKSTART as SMALL

BIN = os.path.dirname(sys.executable)
# absl's format: "I1205 08:50:00.916543 139745001069440 train_lib.py:307] ..."; TF's C++
# lines have the same form with a .cc file.
LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ (\S+?):\d+\] ")
OURS = {name for _, _, files in os.walk(os.path.dirname(deeplab_tf.__file__))
        for name in files if name.endswith(".py")}
PROGRESS = re.compile(r"^(train|eval|precise BN) \d")


def _records(tmp_path):
    config = experiments.get_config("quickstart")
    synthetic.convert(str(tmp_path / os.path.dirname(config.data.train_records)),
                      num_train=16, num_val=4, image_size=(65, 81), num_shards=1,
                      num_workers=1)


def _train(tmp_path, *args, overrides=SMALL):
    env = dict(os.environ)
    if not deeplab_tf.TF_CPP_MIN_LOG_LEVEL_GIVEN:   # set by importing deeplab_tf here
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    start = time.monotonic()
    run = subprocess.run([os.path.join(BIN, "deeplab-train"), "--experiment=quickstart",
                          "--model_dir=runs/quickstart", f"--params_override={overrides}",
                          *args], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run, time.monotonic() - start


def test_default_log_is_ours_only_and_plain(tmp_path):
    _records(tmp_path)
    run, seconds = _train(tmp_path)
    noise = []
    for line in run.stderr.splitlines():
        match = LOG_LINE.match(line)
        if match:   # a C++ line (.cc) or another library's Python logging is noise
            if match.group(2) not in OURS:
                noise.append(line)
        elif logs.is_tensorflow_noise(line) or "Warning:" in line:   # py warnings too
            noise.append(line)
    assert not noise, "\n".join(noise[:10])
    # Our own warnings are still there.
    assert "BN moving statistics have not converged" in run.stderr
    # Progress: plain lines, each bar's last one, totals known (evaluation's from the
    # manifest), at most one line per INTERVAL_S per bar besides.
    for text in (run.stdout, run.stderr):
        assert "\r" not in text and "\x1b" not in text and "\b" not in text
    lines = [line for line in run.stderr.splitlines() if PROGRESS.match(line)]
    assert any(line.startswith("train 4/4 [") for line in lines), run.stderr[-3000:]
    assert any(line.startswith("eval 4/4 [") for line in lines)
    assert "Unknown" not in run.stderr + run.stdout
    bars = {line.split()[0] for line in lines}
    assert len(lines) <= len(bars) * (1 + seconds / INTERVAL_S)


def test_verbose_shows_tensorflow_and_log_dir_keeps_the_log(tmp_path):
    _records(tmp_path)
    quick = SMALL + ",train.then_evaluate=false,train.then_export=false,train.then_predict=0"
    run, _ = _train(tmp_path, "-v", "1", "--log_dir=logs", overrides=quick)
    cpp_info = [line for line in run.stderr.splitlines()
                if (m := LOG_LINE.match(line)) and m.group(1) == "I" and
                m.group(2).endswith(".cc")]
    assert cpp_info, run.stderr[-3000:]   # TensorFlow's C++ INFO lines: TF_CPP_MIN_LOG_LEVEL=0
    # With --log_dir our log goes to absl's file; warnings still reach stderr.
    assert "BN moving statistics have not converged" in run.stderr
    names = os.listdir(tmp_path / "logs")
    log = [n for n in names if ".INFO." in n]
    assert len(log) == 1, names
    text = (tmp_path / "logs" / log[0]).read_text()
    assert "BN moving statistics have not converged" in text
    assert any(LOG_LINE.match(line) and line.startswith("I") for line in text.splitlines())


def test_tensorflow_import_lines_are_recognised():
    assert logs.is_tensorflow_noise(
        "I0000 00:00:1796460601.974235   25125 port.cc:153] oneDNN custom operations are on.")
    assert logs.is_tensorflow_noise(
        "W1205 08:53:32.558106 140607708478336 op_level_cost_estimator.cc:699] Error in")
    assert logs.is_tensorflow_noise("WARNING: All log messages before absl::InitializeLog() "
                                    "is called are written to STDERR\n")
    assert not logs.is_tensorflow_noise("error: data/x.png: not a readable image")
    assert not logs.is_tensorflow_noise("train 2/4 [==>...] 50% - 0:19")
