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

_NATIVE_DILATED_GRADIENT = {}
_HALF = (tf.bfloat16, tf.float16)


def native_dilated_gradient(dtype=tf.float32):
    """Whether this TensorFlow can differentiate `Conv2D(dilations>1)` natively in `dtype`.

    oneDNN and cuDNN can; TensorFlow's Eigen CPU kernels cannot ("Current CPU
    implementations do not yet support dilation rates larger than 1"): on CPUs where TF
    leaves oneDNN off (Linux: no AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, e.g. AVX2-only
    EPYCs; see deeplab_tf/__init__.py), with TF_ENABLE_ONEDNN_OPTS=0, and for float16 on
    CPUs without AVX512-FP16, where oneDNN hands float16 to those kernels. Probed once per
    dtype, eagerly.
    """
    dtype = tf.as_dtype(dtype)
    if dtype not in _NATIVE_DILATED_GRADIENT:
        with tf.init_scope():
            x = tf.zeros((1, 5, 5, 1), dtype)
            w = tf.zeros((3, 3, 1, 1), dtype)
            try:
                tf.raw_ops.Conv2DBackpropFilter(
                    input=x, filter_sizes=[3, 3, 1, 1], out_backprop=x, strides=[1, 1, 1, 1],
                    padding="SAME", dilations=[1, 2, 2, 1])
                tf.raw_ops.Conv2DBackpropInput(
                    input_sizes=[1, 5, 5, 1], filter=w, out_backprop=x, strides=[1, 1, 1, 1],
                    padding="SAME", dilations=[1, 2, 2, 1])
                _NATIVE_DILATED_GRADIENT[dtype] = True
            except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                    tf.errors.NotFoundError):
                _NATIVE_DILATED_GRADIENT[dtype] = False
    return _NATIVE_DILATED_GRADIENT[dtype]


def _axis_spans(size, rate, taps):
    """Per tap offset (t - taps//2) * rate along an axis of `size`: (out_before, length,
    out_after, in_before, in_after): the tap's outputs whose input o + offset lies in
    [0, size) are `length` rows starting at out_before; they read the input rows starting at
    in_before. Python ints for a static size; else five int32 vectors [taps] (a dozen ops
    for all taps of the axis)."""
    shifts = [(t - taps // 2) * rate for t in range(taps)]
    if isinstance(size, int):   # static: taps that miss get length 0 and leave the graph
        spans = []
        for shift in shifts:
            start = min(max(0, -shift), size)
            length = max(min(size, size - shift) - start, 0)
            first = min(max(start + shift, 0), size)
            spans.append((start, length, size - start - length, first, size - first - length))
        return spans
    shift = tf.constant(shifts, tf.int32)
    start = tf.minimum(tf.constant([max(0, -v) for v in shifts], tf.int32), size)
    length = tf.maximum(tf.minimum(size, size - shift) - start, 0)
    first = tf.clip_by_value(start + shift, 0, size)
    return start, length, size - start - length, first, size - first - length


def _taps(x, k_h, k_w, rate, gradient=False):
    """(i, j, window begin, window size, output paddings) of each tap of a k_h x k_w filter
    at `rate` that may see the image, except the centre tap, which sees all of it. The
    window of x that tap (i, j) reads is `tf.slice(x, begin, size)`; its product goes to
    the output padded by `paddings`. Python lists where the sizes are static (taps that miss
    the image are left out), else rows of [k_h, k_w, ...] tables (one Unpack per table,
    no op per tap).
    `gradient` adds (the output window's begin, the paddings that place an input window)."""
    height = x.shape[1] if x.shape[1] is not None else tf.shape(x)[1]
    width = x.shape[2] if x.shape[2] is not None else tf.shape(x)[2]
    rows, cols = _axis_spans(height, rate, k_h), _axis_spans(width, rate, k_w)
    centre = (k_h // 2, k_w // 2)
    if isinstance(rows, list) and isinstance(cols, list):
        for i, (y0, h, y1, in_y0, in_y1) in enumerate(rows):
            for j, (x0, w, x1, in_x0, in_x1) in enumerate(cols):
                if h > 0 and w > 0 and (i, j) != centre:
                    tap = (i, j, [0, in_y0, in_x0, 0], [-1, h, w, -1],
                           [[0, 0], [y0, y1], [x0, x1], [0, 0]])
                    if gradient:
                        tap += ([0, y0, x0, 0], [[0, 0], [in_y0, in_y1], [in_x0, in_x1], [0, 0]])
                    yield tap
        return
    # Dynamic sizes (a static axis becomes a constant): tables of every tap's slice
    # arguments, built with broadcasting; each tap takes its row of them.
    rows = tf.constant(rows, tf.int32) if isinstance(rows, list) else tf.stack(rows, 1)
    cols = tf.constant(cols, tf.int32) if isinstance(cols, list) else tf.stack(cols, 1)
    shape = [k_h, k_w]
    y0, h, y1, in_y0, in_y1 = tf.unstack(
        tf.broadcast_to(tf.reshape(rows, [k_h, 1, 5]), shape + [5]), axis=-1)
    x0, w, x1, in_x0, in_x1 = tf.unstack(
        tf.broadcast_to(tf.reshape(cols, [1, k_w, 5]), shape + [5]), axis=-1)
    zeros, all_ = tf.zeros(shape, tf.int32), tf.fill(shape, -1)

    def pads_table(before_y, after_y, before_x, after_x):
        return tf.stack([tf.stack([zeros, zeros], -1), tf.stack([before_y, after_y], -1),
                         tf.stack([before_x, after_x], -1), tf.stack([zeros, zeros], -1)], -2)

    def rows_of(table):   # one Unpack op: every tap's row of a [k_h, k_w, ...] table
        return tf.unstack(tf.reshape(table, [k_h * k_w] + table.shape[2:].as_list()))
    begins = rows_of(tf.stack([zeros, in_y0, in_x0, zeros], -1))
    sizes = rows_of(tf.stack([all_, h, w, all_], -1))
    pads = rows_of(pads_table(y0, y1, x0, x1))
    if gradient:
        out_begins = rows_of(tf.stack([zeros, y0, x0, zeros], -1))
        in_pads = rows_of(pads_table(in_y0, in_y1, in_x0, in_x1))
    for i in range(k_h):
        for j in range(k_w):
            if (i, j) != centre:
                t = i * k_w + j
                tap = (i, j, begins[t], sizes[t], pads[t])
                if gradient:
                    tap += (out_begins[t], in_pads[t])
                yield tap


def _product(a, b, equation="nhwc,co->nhwo"):
    """A tap's matrix product over pixels: one Einsum op (a GEMM; as fast as reshape +
    MatMul, measured), which also takes the empty windows of taps that miss the image.
    In half precision a (batch) MatMul instead: TF's CPU Einsum sums bfloat16 products in
    bfloat16 (measured: 3.5% off over 512 channels, against 0.5% for MatMul, which sums in
    float32 and rounds once)."""
    if a.dtype not in _HALF:
        return tf.einsum(equation, a, b)
    if equation == "nhwc,nhwo->co":   # a kernel's gradient: sum over pixels
        def pixels(t):   # [pixels, channels]; dy's channels may be unknown in a gradient
            return tf.reshape(t, [-1, t.shape[-1] or tf.shape(t)[-1]])
        return tf.matmul(pixels(a), pixels(b), transpose_a=True)
    assert equation in ("nhwc,co->nhwo", "nhwo,co->nhwc"), equation
    return tf.matmul(a, b, transpose_b=equation == "nhwo,co->nhwc")   # b broadcasts


def _tap_kernels(w):
    """w [k_h, k_w, c_in, c_out] as a k_h x k_w list of [c_in, c_out] (one Unpack op)."""
    k_h, k_w = int(w.shape[0]), int(w.shape[1])
    flat = tf.unstack(tf.reshape(w, [k_h * k_w] + w.shape[2:].as_list()))
    return [flat[i * k_w:(i + 1) * k_w] for i in range(k_h)]


def _sum_dtype(dtype):
    """The dtype the taps' products are added in: float32 for half precision, as a native
    convolution accumulates (each product is still rounded once to half precision)."""
    return tf.float32 if dtype in _HALF else dtype


def _valid_tap_forward(x, w, rate, one_tap_at_a_time=False):
    """Sum of the taps' products. `one_tap_at_a_time` cuts each window once the previous
    tap is summed (training: one tap's temporaries alive, not all of them); inference
    leaves the executor free to overlap them."""
    k_h, k_w = int(w.shape[0]), int(w.shape[1])
    kernels = _tap_kernels(w)
    acc = _sum_dtype(x.dtype)
    out = tf.cast(_product(x, kernels[k_h // 2][k_w // 2]), acc)   # the centre sees all x
    for i, j, begin, size, pads in _taps(x, k_h, k_w, rate):
        with tf.control_dependencies([out] if one_tap_at_a_time else []):
            window = tf.slice(x, begin, size)
        product = _product(window, kernels[i][j])
        out = out + tf.pad(tf.cast(product, acc), pads)
    out = tf.cast(out, x.dtype)   # no op where x is float32
    out.set_shape(x.shape[:3] + w.shape[3:])   # dynamic slices lose what x's shape knows
    return out


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
    products, slices and pads, which every TensorFlow backend differentiates.

    Graph size matters as much as speed here: every trace of a model (each export
    signature, each evaluation, each Segmenter) builds these ops, and TensorFlow's graph
    optimizer walks them on the first call. Where sizes are dynamic, all slice arguments
    come from a few [k, k, ...] tables, one Unpack each, so a tap costs four ops (Slice,
    Einsum, Pad, Add): ~110 ops per 3x3 conv instead of ~280 with per-tap arithmetic. That
    took the tiny test model's OS16 graph from 2562 to 1126 ops (690 with no valid taps)
    and the export, evaluation and inference tests from 253 to 220 s.

    `lean_gradient` (training): a hand-written gradient that keeps only x and w for the
    backward pass and cuts each tap's window again there; automatic differentiation would
    keep every tap's window, up to k*k copies of x. ResNet-101 training step, OS16, batch 2
    (TF's Eigen kernels, 2-core AVX2): 8.9 s and 4.50 GB peak vs 10.3 s and 4.79 GB.
    Its taps run one after the other, forward and backward (control dependencies: a tap's
    windows are cut once the previous tap's products are summed). Unordered, TensorFlow's
    executor cut the backward's windows of x as soon as x existed, i.e. during the forward
    pass, since they depend on nothing else: every atrous conv's 8 windows of its input
    stayed alive from the forward until its backward: ResNet-101's OS8 step at batch 2
    peaked at 10.55 GB, now 7.1 GB (6.86 GB with oneDNN's native gradient; docs/
    benchmarks.md); and within a conv all taps' windows, products and padded copies were
    alive at once (15x the input, now 4.5x forward and 8x backward;
    tests/modeling/test_atrous_memory.py). The same sums in the same order.
    """
    if not lean_gradient:
        return _valid_tap_forward(x, w, rate)

    @tf.custom_gradient
    def conv(x, w):
        def grad(dy):
            k_h, k_w = int(w.shape[0]), int(w.shape[1])
            ci, cj = k_h // 2, k_w // 2
            kernels = _tap_kernels(w)
            dw = [[tf.zeros_like(kernels[0][0]) for _ in range(k_w)] for _ in range(k_h)]
            dw[ci][cj] = _product(x, dy, "nhwc,nhwo->co")
            acc = _sum_dtype(x.dtype)
            dx = tf.cast(_product(dy, kernels[ci][cj], "nhwo,co->nhwc"), acc)
            done = [dx, dw[ci][cj]]
            for i, j, begin, size, _, out_begin, in_pads in _taps(x, k_h, k_w, rate, True):
                # The tap read x's window at `begin` and wrote dy's at `out_begin`. Its
                # windows are cut once the previous tap is done: one tap's copies alive.
                with tf.control_dependencies(done):
                    x_part = tf.slice(x, begin, size)
                    dy_part = tf.slice(dy, out_begin, size)
                dw[i][j] = _product(x_part, dy_part, "nhwc,nhwo->co")
                product = _product(dy_part, kernels[i][j], "nhwo,co->nhwc")
                dx = dx + tf.pad(tf.cast(product, acc), in_pads)
                done = [dx, dw[i][j]]
            dx = tf.cast(dx, x.dtype)
            dx.set_shape(x.shape)
            return dx, tf.reshape(tf.stack([d for row in dw for d in row]), w.shape)
        return _valid_tap_forward(x, w, rate, one_tap_at_a_time=True), grad

    return conv(x, w)


def _on_gpu():
    return bool(tf.config.list_logical_devices("GPU"))


# Inference uses valid taps from this rate on (ASPP's 6-36, block4's largest Multi_Grid
# rates at OS8): there many taps fall on the padding. Below it most taps see the image;
# valid taps still measured ~1.3x faster per conv at rate 2 here (oneDNN's dilated kernel
# is slow on AVX2), but each conv becomes ~110 graph ops, and OS8's 23 rate-2 convs would
# add ~2.5k ops to every trace: they keep the single native op.
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
    if training and not native_dilated_gradient(x.dtype) and not _FORCE_NATIVE[0]:
        return valid_tap_conv2d(x, w, rate, lean_gradient=True)
    if training or rate < VALID_TAP_MIN_RATE or _on_gpu() or _FORCE_NATIVE[0]:
        return tf.nn.conv2d(x, w, strides=1, padding=padding, dilations=rate)
    return valid_tap_conv2d(x, w, rate)
