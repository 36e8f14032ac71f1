"""The serving pixel budget derived from the model (deeplab_tf/serving_budget.py): the
estimated peak bytes per pixel against the peak memory a served request really takes, the
default budget following the output stride, and `deeplab-export --serving_memory_mb` as
users type it, after which an image just over the budget is refused from its header."""
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from deeplab_tf import export_lib
from deeplab_tf.inference import Protocol
from deeplab_tf.serving_budget import bytes_per_pixel, fixed_bytes
from deeplab_tf.testing import TOY_METADATA as METADATA, tiny_model, tiny_model_dir

SIDES = (600, 1400)   # the two request sizes whose peak memory gives the slope
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")

# Runs in a fresh process: loads the export, warms predict_images up at the small size,
# then notes the peak resident memory (VmHWM) after a request at each size.
CHILD = r"""
import json, sys
import numpy as np
import tensorflow as tf

def hwm():
    with open("/proc/self/status") as f:
        line = next(l for l in f if l.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024

predict = tf.saved_model.load(sys.argv[1]).signatures["predict_images"]
rng = np.random.default_rng(0)
peaks = []
for side in [int(s) for s in sys.argv[2:]]:
    image = rng.integers(0, 256, (1, side, side, 3), dtype=np.uint8)
    for _ in range(2):   # the first call also allocates the runtime's thread pools, ...
        predict(images=tf.constant(image))["labels"].numpy()
    del image
    peaks.append(hwm())
print(json.dumps(peaks))
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("budget")
    tiny_model_dir(root / "run", steps=1)
    return root


def test_estimate_bounds_measured_peak(tmp_path, ledger):
    """The estimate is above the measured slope of peak memory over pixels, and within
    4x of it. Measured on the 2-core CPU (TF 2.21, OS16, one scale, probabilities):
    69.5 bytes/pixel (600x600 -> 1400x1400) against an estimate of 111."""
    ledger.injected()
    tf.keras.utils.set_random_seed(0)
    model = tiny_model(METADATA.num_classes, output_stride=16)
    protocol = Protocol(output_stride=16)
    export_dir, budget = export_lib.export_saved_model(
        model, METADATA, str(tmp_path / "1"), protocol, probabilities=True,
        max_pixels=SIDES[1] ** 2)
    estimate = bytes_per_pixel(model, protocol, probabilities=True)
    assert budget.bytes_per_pixel == estimate and budget.max_pixels == SIDES[1] ** 2
    run = subprocess.run([sys.executable, "-c", CHILD, export_dir, *map(str, SIDES)],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    peaks = json.loads(run.stdout.strip().splitlines()[-1])
    measured = (peaks[1] - peaks[0]) / (SIDES[1] ** 2 - SIDES[0] ** 2)
    print(f"measured {measured:.1f} bytes/pixel, estimated {estimate:.1f}")
    ledger.inputs(len(SIDES))
    assert estimate / 4 <= measured <= estimate, (measured, estimate)
    ledger.survived()


def test_default_budget_follows_output_stride_and_target(run_dir, tmp_path, ledger):
    """One model: OS8 costs more per pixel than OS16, so its default budget is smaller;
    --serving_memory_mb scales the budget baked into the SavedModel; max_pixels wins."""
    ledger.injected(3)
    baked = {}
    for name, options in {"os16": dict(output_stride=16), "os8": dict(output_stride=8),
                          "small": dict(output_stride=16, serving_memory_mb=64),
                          "explicit": dict(output_stride=16, serving_memory_mb=64,
                                           max_pixels=12345)}.items():
        _, model, _, protocol, budget = export_lib.export_model_dir(
            run_dir / "run", tmp_path / name, **options)
        loaded = tf.saved_model.load(str(tmp_path / name))
        baked[name] = int(loaded.max_pixels.numpy())
        assert baked[name] == budget.max_pixels
        # The rule, computed here from its parts: (target - weights) / bytes per pixel.
        target = options.get("serving_memory_mb", 1024) * 2 ** 20
        derived = (target - fixed_bytes(model)) // bytes_per_pixel(model, protocol)
        assert budget.derived == derived
    assert baked["os8"] < baked["os16"], baked
    assert baked["small"] < baked["os16"] / 10, baked
    assert baked["explicit"] == 12345
    ledger.inputs(4)
    ledger.survived(3)


def png_bytes(side_h, side_w):
    buffer = io.BytesIO()
    Image.fromarray(np.full((side_h, side_w, 3), 128, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_export_flag_as_typed_then_over_budget_refused(run_dir, tmp_path, ledger):
    """deeplab-export --serving_memory_mb=64 prints the budget and bakes it; a PNG one
    row over it is refused by serving_default naming the budget; one within it is served."""
    ledger.injected()
    tool = os.path.join(os.path.dirname(sys.executable), "deeplab-export")
    export_dir = tmp_path / "1"
    run = subprocess.run([tool, f"--model_dir={run_dir / 'run'}", f"--export_dir={export_dir}",
                          "--serving_memory_mb=64"], capture_output=True, text=True,
                         env=ENV, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = tf.saved_model.load(str(export_dir))
    budget = int(loaded.max_pixels.numpy())
    assert f"max_pixels={budget} per request" in run.stdout, run.stdout
    assert "--serving_memory_mb=64 gives" in run.stdout, run.stdout
    width = 1000
    rows = budget // width   # rows * width <= budget < (rows + 1) * width
    serve = loaded.signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        serve(images=tf.constant([png_bytes(rows + 1, width)]))
    assert f"expected 1 to {budget} (max_pixels)" in error.value.message, error.value.message
    served = serve(images=tf.constant([png_bytes(rows, width)]))
    assert served["labels"].shape == (1, rows, width)
    ledger.inputs(2)
    ledger.survived()


def test_target_below_the_weights_refused(run_dir, tmp_path, ledger):
    """--serving_memory_mb=1 cannot hold the tiny model's 1.5 MB of weights: a usage error
    naming the flag and the weights' size, exit status 1, nothing written."""
    ledger.injected()
    tool = os.path.join(os.path.dirname(sys.executable), "deeplab-export")
    run = subprocess.run([tool, f"--model_dir={run_dir / 'run'}",
                          f"--export_dir={tmp_path / '1'}", "--serving_memory_mb=1"],
                         capture_output=True, text=True, env=ENV, timeout=600)
    assert run.returncode == 1, run.stderr[-3000:]
    assert "serving memory 1 MB: the weights alone take 1.5 MB" in run.stderr, run.stderr
    assert "--serving_memory_mb" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "1").exists() and os.listdir(tmp_path) == []
    ledger.inputs()
    ledger.survived()
