"""The valid-tap training path's working set: one tap's windows alive at a time.

Where TensorFlow has no native dilated gradient (its Eigen CPU kernels), every atrous conv
of a training step is a sum of per-tap products (deeplab_tf/modeling/atrous.py). Left to
itself, TensorFlow's executor cut every tap's window, product and zero-padded copy ahead of
the running sum, up to ~15 copies of the conv's input alive at once in the forward and
~15 in the backward, for every atrous conv of the network."""
import json
import os
import subprocess
import sys

import numpy as np

# Peak bytes TensorFlow's CPU allocator holds above what existed before one call: the
# training forward alone, and forward + backward, of a 3x3 rate-2 valid-tap conv (block 3
# at output stride 8, scaled down). TF_CPU_ALLOCATOR_USE_BFC must be set before TensorFlow
# starts, hence a child process.
MEASURE = r"""
import json
import deeplab_tf  # noqa: F401
import tensorflow as tf
from deeplab_tf.modeling import atrous

x = tf.random.normal([2, 33, 33, 64])
w = tf.random.normal([3, 3, 64, 64]) * 0.05
dy = tf.random.normal([2, 33, 33, 64])
conv = lambda x, w: atrous.valid_tap_conv2d(x, w, 2, lean_gradient=True)


def step(x, w, dy):
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        loss = tf.reduce_sum(conv(x, w) * dy)
    return tape.gradient(loss, [x, w])


peaks = {}
for name, fn in (("forward", tf.function(lambda x, w, dy: [conv(x, w)])),
                 ("forward_backward", tf.function(step))):
    [t.numpy() for t in fn(x, w, dy)]   # traced and warm
    tf.config.experimental.reset_memory_stats("CPU:0")
    base = tf.config.experimental.get_memory_info("CPU:0")["current"]
    out = [t.numpy() for t in fn(x, w, dy)]
    peaks[name] = tf.config.experimental.get_memory_info("CPU:0")["peak"] - base
print("PEAKS " + json.dumps({"x_bytes": int(x.numpy().nbytes), **peaks}))
"""


def test_valid_tap_training_keeps_one_tap_at_a_time():
    """Forward: the output, the running sum, one window, its product and its padded copy
    (measured 4.5x the input here; 15x before the taps were ordered). Backward as well: dx,
    one tap's windows of x and dy, its product and padded copy (measured 8x; 15x before)."""
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True,
                          env={**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "1"}, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    peaks = json.loads(done.stdout.split("PEAKS ", 1)[1].splitlines()[0])
    x_bytes = peaks["x_bytes"]
    assert peaks["forward"] <= 6 * x_bytes, peaks
    assert peaks["forward_backward"] <= 10 * x_bytes, peaks


def test_taps_in_order_sum_as_eq_1():
    """The ordered training forward (taps at rates where some, most or all but the centre
    miss the 11x9 image) against Eq. (1) with zero padding in float64, at a static and an
    unknown size. (Not bit for bit against the unordered sum: the taps' matrix products
    round differently when they run side by side and share the cores.)"""
    import tensorflow as tf
    from deeplab_tf.modeling import atrous
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 11, 9, 8)).astype("float32")
    w = rng.normal(size=(3, 3, 8, 5)).astype("float32")
    for rate in (2, 4, 12):
        xp = np.pad(x.astype("float64"), [(0, 0), (rate, rate), (rate, rate), (0, 0)])
        want = sum(xp[:, i * rate:i * rate + 11, j * rate:j * rate + 9] @ w[i, j]
                   for i in range(3) for j in range(3))
        for spec in ([None, None, None, 8], [2, 11, 9, 8]):
            got = tf.function(
                lambda x, w: atrous.valid_tap_conv2d(x, w, rate, lean_gradient=True),
                input_signature=[tf.TensorSpec(spec), tf.TensorSpec([3, 3, 8, 5])])(x, w)
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
