"""Building blocks: the atrous convolution (Sec. 3.1), input normalization, logits resizing.

Every layer stores all of its constructor arguments and returns them from `get_config`
(tests/modeling/test_layers.py builds the round-trip from each constructor's signature).
"""
import contextlib

import keras
import tensorflow as tf
from keras import ops

PADDINGS = ("same", "valid", "explicit")

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
    """Per tap offset (t - taps//2) * rate along an axis of `size`: the first input index
    read, the number of outputs whose input o + offset lies in [0, size), and the output
    padding [before, after] around them."""
    spans = []
    for t in range(taps):
        shift = (t - taps // 2) * rate
        if isinstance(size, int):   # static: taps that miss are left out of the graph
            start = min(max(0, -shift), size)
            length = max(min(size, size - shift) - start, 0)
            spans.append((min(max(start + shift, 0), size), length,
                          [start, size - start - length]))
            continue
        start = tf.minimum(max(0, -shift), size)
        length = tf.maximum(tf.minimum(size, size - shift) - start, 0)
        spans.append((tf.clip_by_value(start + shift, 0, size), length,
                      tf.stack([start, size - start - length])))
    return spans


def valid_tap_conv2d(x, w, rate):
    """Stride-1 SAME atrous convolution computed from the taps that see the image only.

    Tap (i, j) of a k x k filter at rate r reads the input shifted by ((i - k//2) r,
    (j - k//2) r); with zero padding it contributes only where the shifted input lies
    inside the image. Each tap is therefore a matrix product [pixels, in] x [in, out] of
    the overlapping part of x, added into the matching part of the output; a tap that
    misses the image entirely costs nothing. At large rates most taps of ASPP's 3x3 filters
    fall on the padding (Fig. 4: at rate ~ feature size the filter degenerates to its
    centre), so this does the "valid" multiply-adds only: measured on a 2-core AVX2 CPU
    (oneDNN), ASPP's convs 1.2-2.9x faster than `tf.nn.conv2d(dilations=r)`. Its gradient
    is made of matmuls, slices and pads, which every TensorFlow backend differentiates.
    """
    k_h, k_w, c_in, c_out = (int(d) for d in w.shape)
    shape = tf.shape(x)
    n = shape[0]
    # Static sizes where known (fixed-size export, training crops), else dynamic.
    height = x.shape[1] if x.shape[1] is not None else shape[1]
    width = x.shape[2] if x.shape[2] is not None else shape[2]
    rows, cols = _overlaps(height, rate, k_h), _overlaps(width, rate, k_w)
    no_pad = [0, 0]
    out = None
    for i, (iy, h, pad_y) in enumerate(rows):
        for j, (ix, w_, pad_x) in enumerate(cols):
            if (isinstance(h, int) and h == 0) or (isinstance(w_, int) and w_ == 0):
                continue
            part = tf.slice(x, tf.stack([0, iy, ix, 0]), tf.stack([n, h, w_, c_in]))
            part = tf.matmul(tf.reshape(part, [-1, c_in]), w[i, j])
            part = tf.pad(tf.reshape(part, tf.stack([n, h, w_, c_out])),
                          tf.stack([no_pad, pad_y, pad_x, no_pad]))
            out = part if out is None else out + part
    return out   # the centre tap always sees the image


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
        return valid_tap_conv2d(x, w, rate)
    if training or rate < VALID_TAP_MIN_RATE or _on_gpu() or _FORCE_NATIVE[0]:
        return tf.nn.conv2d(x, w, strides=1, padding=padding, dilations=rate)
    return valid_tap_conv2d(x, w, rate)


@keras.saving.register_keras_serializable(package="deeplab_tf")
class Conv(keras.layers.Layer):
    """2-D convolution, atrous when `dilation_rate > 1` (Sec. 3.1, Eq. 1).

    Atrous convolutions go through `atrous_conv2d` (the direct dilated Conv2D, or the
    valid-tap form in inference on CPU), never through Keras `Conv2D(dilation_rate=r)`,
    which lowers to SpaceToBatchND/BatchToSpaceND on TensorFlow: 2-10x slower at large
    rates on CPU.
    Variables are named and shaped like `keras.layers.Conv2D` (kernel [k, k, in, out], bias
    [out]) so keras.applications weights transfer with `set_weights`.

    Args:
      filters: output channels.
      kernel_size: square kernel size.
      strides: 1 or 2. A strided convolution cannot also be atrous (the output stride
        machinery turns a stride into a rate instead, Sec. 3.1).
      dilation_rate: the atrous rate r.
      padding: "same" (TF SAME), "valid", or "explicit": TF-slim's `conv2d_same`, symmetric
        zero padding of the effective kernel size minus one, then VALID. For stride 1 and odd
        kernels all three but "valid" agree; for stride 2 on even sizes SAME pads one pixel
        less at the top/left, which is what Model Garden's checkpoints were trained with.
      use_bias: keras.applications' ResNets have conv biases; TF-slim's and Model Garden's not.
      kernel_initializer, kernel_regularizer: as in `keras.layers.Conv2D`.
    """

    def __init__(self, filters, kernel_size, strides=1, dilation_rate=1, padding="same",
                 use_bias=False, kernel_initializer="he_normal", kernel_regularizer=None,
                 **kwargs):
        super().__init__(**kwargs)
        if padding not in PADDINGS:
            raise ValueError(f"Conv {self.name}: padding={padding!r}, expected one of {PADDINGS}")
        if strides > 1 and dilation_rate > 1:
            raise ValueError(f"Conv {self.name}: strides={strides} with dilation_rate="
                             f"{dilation_rate}; a convolution is strided or atrous, not both")
        self.filters = int(filters)
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.dilation_rate = int(dilation_rate)
        self.padding = padding
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

    def build(self, input_shape):
        k = self.kernel_size
        self.kernel = self.add_weight(
            name="kernel", shape=(k, k, input_shape[-1], self.filters),
            initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

    def _tf_padding(self):
        if self.padding != "explicit":
            return self.padding.upper()
        total = (self.kernel_size - 1) * self.dilation_rate
        beg, end = total // 2, total - total // 2
        return [[0, 0], [beg, end], [beg, end], [0, 0]]

    def call(self, inputs, training=None):
        kernel = ops.cast(self.kernel, self.compute_dtype)
        if self.dilation_rate > 1 and self.padding != "valid" and self.kernel_size % 2:
            # stride 1: "explicit" and SAME pad alike
            y = atrous_conv2d(inputs, kernel, self.dilation_rate, "SAME", bool(training))
        else:
            y = tf.nn.conv2d(inputs, kernel, strides=self.strides, padding=self._tf_padding(),
                             dilations=self.dilation_rate)
        if self.use_bias:
            y = tf.nn.bias_add(y, ops.cast(self.bias, self.compute_dtype))
        return y

    def compute_output_shape(self, input_shape):
        def size(n):
            if n is None:
                return None
            if self.padding == "valid":
                eff = (self.kernel_size - 1) * self.dilation_rate + 1
                return (n - eff) // self.strides + 1
            if self.padding == "explicit":
                return (n - 1) // self.strides + 1
            return -(-n // self.strides)
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), self.filters)

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters, kernel_size=self.kernel_size, strides=self.strides,
            dilation_rate=self.dilation_rate, padding=self.padding, use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
            kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer)
            if self.kernel_regularizer is not None else None)
        return config


@keras.saving.register_keras_serializable(package="deeplab_tf")
class MaxPool(keras.layers.Layer):
    """3x3 stride-2 max pooling of the ResNet stem, with the padding of each layout.

    "explicit" pads one zero pixel on each side (keras.applications' `pool1_pad`; equal to
    -inf padding because the input is post-ReLU), "same" is TF SAME (TF-slim, Model Garden).
    """

    def __init__(self, pool_size=3, strides=2, padding="explicit", **kwargs):
        super().__init__(**kwargs)
        if padding not in ("same", "explicit"):
            raise ValueError(f"MaxPool {self.name}: padding={padding!r}, "
                             "expected 'same' or 'explicit'")
        self.pool_size = int(pool_size)
        self.strides = int(strides)
        self.padding = padding

    def call(self, inputs):
        x = inputs
        pad = "SAME"
        if self.padding == "explicit":
            p = (self.pool_size - 1) // 2
            x = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]])
            pad = "VALID"
        return tf.nn.max_pool2d(x, self.pool_size, self.strides, pad)

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else (n - 1) // self.strides + 1
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool_size, strides=self.strides, padding=self.padding)
        return config


# Per-channel mean and scale of each normalization, in RGB order, for inputs in 0..255.
NORMALIZATIONS = {
    # keras.applications ResNet ("caffe"): RGB -> BGR, subtract the ImageNet mean, no scaling.
    "caffe": ((123.68, 116.779, 103.939), (1.0, 1.0, 1.0)),
    # TF-slim resnet_v1 as used by research/deeplab: [-1, 1].
    "tf": ((127.5, 127.5, 127.5), (127.5, 127.5, 127.5)),
    # Model Garden / torchvision: ImageNet mean and standard deviation.
    "torch": ((123.675, 116.28, 103.53), (58.395, 57.12, 57.375)),
    # research/deeplab's resnet_v1_50/101 (not the _beta ones): RGB minus its ImageNet mean.
    "rgb_mean": ((123.15, 115.90, 103.06), (1.0, 1.0, 1.0)),
}

# The paper's networks use ReLU; Model Garden's registered DeepLabV3 configs use swish.
ACTIVATIONS = ("relu", "swish")


def activation_layer(activation, name):
    """The nonlinearity after every BN of the model (ReLU in the paper)."""
    if activation == "relu":
        return keras.layers.ReLU(name=name)
    if activation == "swish":
        return keras.layers.Activation("swish", name=name)
    raise ValueError(f"{name}: activation={activation!r}, expected one of {ACTIVATIONS}")


@keras.saving.register_keras_serializable(package="deeplab_tf")
class InputNormalization(keras.layers.Layer):
    """The model's first layer: raw RGB pixels (0-255) to what the backbone weights expect.

    Living inside the model, the normalization cannot disagree between the data pipeline,
    evaluation, inference and the exported SavedModel. `mean_rgb` is also the pixel value
    images are padded with (it normalizes to zero).

    Args:
      mode: "caffe" (keras.applications: BGR, mean subtracted), "tf" ([-1, 1], TF-slim),
        "torch" (mean/std, Model Garden) or "rgb_mean" (research/deeplab's resnet_v1).
    """

    def __init__(self, mode="caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in NORMALIZATIONS:
            raise ValueError(f"InputNormalization: mode={mode!r}, expected one of "
                             f"{sorted(NORMALIZATIONS)}")
        self.mode = mode

    @property
    def mean_rgb(self):
        return NORMALIZATIONS[self.mode][0]

    def call(self, inputs):
        mean, scale = NORMALIZATIONS[self.mode]
        x = (ops.cast(inputs, self.compute_dtype) - ops.array(mean, self.compute_dtype)) \
            / ops.array(scale, self.compute_dtype)
        if self.mode == "caffe":
            x = x[..., ::-1]
        return x

    def get_config(self):
        config = super().get_config()
        config.update(mode=self.mode)
        return config


@keras.saving.register_keras_serializable(package="deeplab_tf")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of `inputs[0]` to the spatial size of `inputs[1]`, align-corners.

    With SAME padding, feature pixel i of an input of size OS*k+1 sits on input pixel OS*i
    (513 -> 65 at output stride 8). `align_corners=True` keeps exactly that geometry, as the
    original research/deeplab; half-pixel resizing (the TF2/Keras default) would shift the
    predictions by up to OS/2 pixels. Inputs of other sizes are best padded to OS*k+1.
    """

    def __init__(self, align_corners=True, **kwargs):
        super().__init__(**kwargs)
        self.align_corners = bool(align_corners)

    def call(self, inputs):
        x, like = inputs
        size = tf.shape(like)[1:3]
        y = tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=self.align_corners,
                                      half_pixel_centers=not self.align_corners)
        return ops.cast(y, x.dtype)

    def compute_output_shape(self, input_shapes):
        x, like = input_shapes
        return (x[0], like[1], like[2], x[3])

    def get_config(self):
        config = super().get_config()
        config.update(align_corners=self.align_corners)
        return config
