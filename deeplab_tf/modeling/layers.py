"""Building blocks: convolution (atrous through modeling/atrous.py, Sec. 3.1), input
normalization, logits resizing.

Every layer stores all of its constructor arguments and returns them from `get_config`
(tests/modeling/test_layers.py builds the round-trip from each constructor's signature).
"""
import collections

import keras
import tensorflow as tf
from keras import ops

from deeplab_tf.modeling import atrous

PADDINGS = ("same", "valid", "explicit")


@keras.saving.register_keras_serializable(package="deeplab_tf")
class Conv(keras.layers.Layer):
    """2-D convolution, atrous when `dilation_rate > 1` (Sec. 3.1, Eq. 1).

    Atrous convolutions go through `atrous.atrous_conv2d` (the direct dilated Conv2D, or the
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
            y = atrous.atrous_conv2d(inputs, kernel, self.dilation_rate, "SAME",
                                     bool(training))
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


def all_layers(model):
    """`model` and every layer inside it, nested ones included, each once: a Model's
    `layers`, and the layers a composite layer holds in its public attributes
    (ImagePooling's conv and bn). Keras 3 has no public recursive listing (its
    `Layer._flatten_layers` is private): this is its walk, in its order (a sum over the
    layers rounds the same), over public attributes; a Sequential's implicit InputLayer
    (no weights) is left out. tests/modeling/test_all_layers.py compares the two."""
    def children(layer):
        found = list(layer.layers) if isinstance(layer, keras.Model) else []
        for name, value in vars(layer).items():
            if not name.startswith("_"):
                values = value if isinstance(value, (list, tuple)) else [value]
                found += [v for v in values if isinstance(v, keras.layers.Layer)]
        return found

    layers, seen = [model], set()
    pending = collections.deque(children(model))
    while pending:
        layer = pending.popleft()
        if id(layer) not in seen:
            seen.add(id(layer))
            layers.append(layer)
            pending.extendleft(children(layer))   # as Keras: depth first, reversed
    return layers
