"""The atrous convolution (Sec. 3.1, Eq. 1) by its fastest exact path on each backend.

`atrous_conv2d` picks: the direct dilated Conv2D (cuDNN; oneDNN in training), or
`valid_tap_conv2d`, which computes only the filter taps that overlap the image (inference
on CPU at large rates; training where TensorFlow has no native dilated gradient, i.e.
its Eigen CPU kernels). Never Keras' `Conv2D(dilation_rate=r)`, which lowers to
SpaceToBatchND on TensorFlow. `native_atrous()` forces the dilated Conv2D (complexity
counts, bench before/after).
"""
import contextlib

import tensorflow as tf

_NATIVE_DILATED_GRADIENT = None


def native_dilated_gradient():
    """Whether this TensorFlow can differentiate `Conv2D(dilations>1)` natively.

    oneDNN and cuDNN can; TensorFlow's default CPU kernels cannot ("Current CPU
    implementations do not yet support dilation rates larger than 1"), e.g. on AMD CPUs,
    where TF leaves oneDNN off unless TF_ENABLE_ONEDNN_OPTS=1. Probed once, eagerly.
    """
    global _NATIVE_DILATED_GRADIENT
    if _NATIVE_DILATED_GRADIENT is None:
        with tf.init_scope():
            x = tf.zeros((1, 5, 5, 1))
            w = tf.zeros((3, 3, 1, 1))
            try:
                tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=[3, 3, 1, 1], out_backprop=x, strides=[1, 1, 1, 1],
                    padding="SAME", dilations=[1, 2, 2, 1])
                tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=[1, 5, 5, 1], filter=w, out_backprop=x, strides=[1, 1, 1, 1],
                    padding="SAME", dilations=[1, 2, 2, 1])
                _NATIVE_DILATED_GRADIENT = True
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError):
                _NATIVE_DILATED_GRADIENT = False
    return _NATIVE_DILATED_GRADIENT


def _overlaps(size, rate, taps):
    """Per tap offset (t - taps//2) * rate along an axis of `size`: the number of outputs
    whose input o + offset lies in [0, size), and the padding [before, after] that places
    that many rows in the output and in the input (the gradient's dx) respectively."""
    spans = []
    for t in range(taps):
        shift = (t - taps // 2) * rate
        if isinstance(size, int):   # static: taps that miss are left out of the graph
            start = min(max(0, -shift), size)
            length = max(min(size, size - shift) - start, 0)
            first = min(max(start + shift, 0), size)
            spans.append((length, [start, size - start - length],
                          [first, size - first - length]))
            continue
        start = tf.minimum(max(0, -shift), size)
        length = tf.maximum(tf.minimum(size, size - shift) - start, 0)
        first = tf.clip_by_value(start + shift, 0, size)
        spans.append((length, tf.stack([start, size - start - length]),
                      tf.stack([first, size - first - length])))
    return spans


def _taps(x, w, rate):
    """(i, j, output padding, input padding, overlap size) of every tap that may see the
    image (the paddings' "before" parts are the overlap's corners); static sizes where
    known (fixed-size export, training crops), else dynamic."""
    k_h, k_w = int(w.shape[0]), int(w.shape[1])
    shape = tf.shape(x)
    height = x.shape[1] if x.shape[1] is not None else shape[1]
    width = x.shape[2] if x.shape[2] is not None else shape[2]
    rows, cols = _overlaps(height, rate, k_h), _overlaps(width, rate, k_w)
    for i, (h, out_y, in_y) in enumerate(rows):
        for j, (w_, out_x, in_x) in enumerate(cols):
            if (isinstance(h, int) and h == 0) or (isinstance(w_, int) and w_ == 0):
                continue   # a tap that misses the image (static sizes): not in the graph
            yield i, j, (out_y, out_x), (in_y, in_x), (h, w_)


def _window(t, pads, size):
    """The part of t that padding `pads` places: the window at their "before" corner."""
    n, c = tf.shape(t)[0], tf.shape(t)[3]
    return tf.slice(t, tf.stack([0, pads[0][0], pads[1][0], 0]), tf.stack([n, *size, c]))


def _place(part, pads):
    return tf.pad(part, tf.stack([[0, 0], pads[0], pads[1], [0, 0]]))


def _valid_tap_forward(x, w, rate):
    c_in, c_out = int(w.shape[2]), int(w.shape[3])
    n = tf.shape(x)[0]
    out = None
    for i, j, out_pads, in_pads, size in _taps(x, w, rate):
        part = tf.matmul(tf.reshape(_window(x, in_pads, size), [-1, c_in]), w[i, j])
        part = _place(tf.reshape(part, tf.stack([n, *size, c_out])), out_pads)
        out = part if out is None else out + part
    return out   # the centre tap always sees the image


def valid_tap_conv2d(x, w, rate, lean_gradient=False):
    """Stride-1 SAME atrous convolution computed from the taps that see the image only.

    Tap (i, j) of a k x k filter at rate r reads the input shifted by ((i - k//2) r,
    (j - k//2) r); with zero padding it contributes only where the shifted input lies
    inside the image. Each tap is therefore a matrix product [pixels, in] x [in, out] of
    the overlapping part of x, added into the matching part of the output; a tap that
    misses the image entirely costs nothing. At large rates most taps of ASPP's 3x3 filters
    fall on the padding (Fig. 4: at rate ~ feature size the filter degenerates to its
    centre), so this does the "valid" multiply-adds only: measured on a 2-core AVX2 CPU,
    ASPP's convs 1.2-2.9x faster than `tf.nn.conv2d(dilations=r)`. Its gradient is made of
    matmuls, slices and pads, which every TensorFlow backend differentiates.

    `lean_gradient` (training): a hand-written gradient that keeps only x and w for the
    backward pass and cuts each tap's window again there; automatic differentiation would
    keep every tap's window, up to k*k copies of x. ResNet-101 training step, OS16, batch 2
    (TF's Eigen kernels, 2-core AVX2): 8.9 s and 4.50 GB peak vs 10.3 s and 4.79 GB.
    """
    if not lean_gradient:
        return _valid_tap_forward(x, w, rate)

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            c_in, c_out = int(w.shape[2]), int(w.shape[3])
            n = tf.shape(x)[0]
            dx = None
            dw = [[tf.zeros_like(w[0, 0]) for _ in range(w.shape[1])]
                  for _ in range(w.shape[0])]
            for i, j, out_pads, in_pads, size in _taps(x, w, rate):
                x_part = tf.reshape(_window(x, in_pads, size), [-1, c_in])
                dy_part = tf.reshape(_window(dy, out_pads, size), [-1, c_out])
                dw[i][j] = tf.matmul(x_part, dy_part, transpose_a=True)
                part = tf.matmul(dy_part, w[i, j], transpose_b=True)
                part = _place(tf.reshape(part, tf.stack([n, *size, c_in])), in_pads)
                dx = part if dx is None else dx + part
            return dx, tf.stack([tf.stack(row) for row in dw])
        return _valid_tap_forward(x, w, rate), grad

    return conv(x, w)


def _on_gpu():
    return bool(tf.config.list_logical_devices("GPU"))


# Inference uses valid taps from this rate on (ASPP's 6-36, block4's largest Multi_Grid
# rates at OS8): there many taps fall on the padding. Below it most taps see the image;
# valid taps still measured ~1.3x faster per conv at rate 2 here (oneDNN's dilated kernel
# is slow on AVX2), but each tap adds ~30 graph ops, and OS8's 23 rate-2 convs would add
# ~6k ops to every trace: they keep the single native op.
VALID_TAP_MIN_RATE = 6
_FORCE_NATIVE = [False]


@contextlib.contextmanager
def native_atrous():
    """Within it, models traced use the dilated Conv2D for every atrous convolution: the
    graph shows the architecture's convolutions (analysis.complexity counts them), or the
    slower path is measured (bench/ours.py --native_atrous)."""
    _FORCE_NATIVE[0] = True
    try:
        yield
    finally:
        _FORCE_NATIVE[0] = False


def atrous_conv2d(x, w, rate, padding="SAME", training=False):
    """Stride-1 atrous convolution (odd kernel, SAME padding), by the fastest exact path.

    Inference on CPU at rates >= VALID_TAP_MIN_RATE: `valid_tap_conv2d`. Training: the
    native dilated Conv2D, whose oneDNN/cuDNN gradient is faster there (measured); on
    TensorFlows without a native dilated gradient (default CPU kernels, oneDNN off)
    `valid_tap_conv2d`, whose gradient is plain ops. GPUs take cuDNN's dilated convolution.
    """
    if rate == 1:
        return tf.nn.conv2d(x, w, strides=1, padding=padding)
    if training and not native_dilated_gradient() and not _FORCE_NATIVE[0]:
        return valid_tap_conv2d(x, w, rate, lean_gradient=True)
    if training or rate < VALID_TAP_MIN_RATE or _on_gpu() or _FORCE_NATIVE[0]:
        return tf.nn.conv2d(x, w, strides=1, padding=padding, dilations=rate)
    return valid_tap_conv2d(x, w, rate)
