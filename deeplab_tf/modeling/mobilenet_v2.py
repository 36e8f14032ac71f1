"""MobileNetV2 backbone with output stride control, as research/deeplab builds it.

research/deeplab (core/feature_extractor.py, `mobilenet_v2` variant) uses TF-slim's
`mobilenet_v2.mobilenet_base` with `output_stride`: once the running stride equals the
target, a later stride-2 layer gets stride 1 and the current rate, and every layer after it
a rate multiplied by that stride (only the depthwise 3x3 convolutions are atrous). The
features are the last inverted residual block's output (slim `layer_18`, 320 x depth
multiplier channels; the 1280-channel conv is not used). Convolutions use TF SAME padding
(equal to keras.applications' `correct_pad` for 3x3 stride 2), ReLU6, BN epsilon 1e-3.

Layer names follow `keras.applications.MobileNetV2` (`Conv1`, `bn_Conv1`,
`expanded_conv_depthwise`, `block_{i}_expand` ...), so its ImageNet weights transfer by name.
"""
import keras
import tensorflow as tf
from keras import ops

from deeplab_tf.modeling.backbone import Backbone
from deeplab_tf.modeling.layers import Conv, InputNormalization

# (expansion t, output channels c, repeats n, first stride s) per stage (Table 2 of
# MobileNetV2), after the 32-channel stride-2 stem.
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
          (6, 160, 3, 2), (6, 320, 1, 1))
BN_EPSILON = 1e-3
DEPTH_MULTIPLIERS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)


def make_divisible(value, divisor=8, min_value=None):
    """Channels rounded to a multiple of `divisor`, never below 90% of `value` (slim and
    keras.applications agree)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


@keras.saving.register_keras_serializable(package="deeplab_tf")
class DepthwiseConv(keras.layers.Layer):
    """Depthwise 3x3 convolution, strided or atrous, through `DepthwiseConv2dNative` with
    `dilations` (never Keras' `DepthwiseConv2D(dilation_rate)`, which lowers to
    SpaceToBatchND). Variable named and shaped like `keras.layers.DepthwiseConv2D`
    (`depthwise_kernel` [k, k, in, 1]), so keras.applications weights transfer.
    """

    def __init__(self, kernel_size=3, strides=1, dilation_rate=1, use_bias=False, **kwargs):
        super().__init__(**kwargs)
        if strides > 1 and dilation_rate > 1:
            raise ValueError(f"DepthwiseConv {self.name}: strides={strides} with "
                             f"dilation_rate={dilation_rate}; strided or atrous, not both")
        self.kernel_size = int(kernel_size)
        self.strides = int(strides)
        self.dilation_rate = int(dilation_rate)
        self.use_bias = bool(use_bias)

    def build(self, input_shape):
        k = self.kernel_size
        self.depthwise_kernel = self.add_weight(
            name="depthwise_kernel", shape=(k, k, input_shape[-1], 1),
            initializer="glorot_uniform")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(input_shape[-1],),
                                        initializer="zeros")

    def call(self, inputs):
        kernel = ops.cast(self.depthwise_kernel, self.compute_dtype)
        s, r = self.strides, self.dilation_rate
        y = tf.raw_ops.DepthwiseConv2dNative(input=inputs, filter=kernel,
                                             strides=[1, s, s, 1], padding="SAME",
                                             dilations=[1, r, r, 1])
        if self.use_bias:
            y = tf.nn.bias_add(y, ops.cast(self.bias, self.compute_dtype))
        return y

    def compute_output_shape(self, input_shape):
        def size(n):
            return None if n is None else -(-n // self.strides)
        return (input_shape[0], size(input_shape[1]), size(input_shape[2]), input_shape[3])

    def get_config(self):
        config = super().get_config()
        config.update(kernel_size=self.kernel_size, strides=self.strides,
                      dilation_rate=self.dilation_rate, use_bias=self.use_bias)
        return config


def layer_plan(output_stride):
    """Per inverted residual block (17 of them): (stride, depthwise rate), as slim's
    `mobilenet_base(output_stride=...)`: the stem's stride 2 counts first."""
    if output_stride not in (8, 16, 32):
        raise ValueError(f"output_stride={output_stride}: expected 8, 16 or 32 for MobileNetV2")
    current, rate, plan = 2, 1, []
    for _, _, n, s in STAGES:
        for i in range(n):
            stride = s if i == 0 else 1
            if stride > 1 and current == output_stride:
                plan.append((1, rate))
                rate *= stride
            else:
                plan.append((stride, rate))
                current *= stride
    return plan


def channel_divisor(depth_multiplier, layout="keras"):
    """What channel counts are rounded to: keras.applications rounds to multiples of 8;
    research/deeplab (layout "slim") only at depth multiplier 1 (`divisible_by=8 if
    depth_multiplier == 1.0 else 1`, min_depth likewise): 0.5 gives 12 channels, not 16."""
    return 8 if layout != "slim" or depth_multiplier == 1.0 else 1


def endpoints(x, depth_multiplier=1.0, output_stride=16, bn_momentum=0.9997,
              bn_epsilon=BN_EPSILON, sync_bn=False, layout="keras"):
    """MobileNetV2 on normalized images ([-1, 1]): {"stem": Conv1's output, then one
    endpoint per inverted residual block, named as its layers ("expanded_conv", "block_1",
    ..., "block_16": the features, 320 x depth_multiplier channels, rounded as
    `channel_divisor` says)}.
    """
    divisor = channel_divisor(depth_multiplier, layout)
    def bn(y, name):
        return keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                               synchronized=sync_bn, name=name)(y)

    def relu6(y, name):
        return keras.layers.ReLU(6.0, name=name)(y)

    plan = layer_plan(output_stride)
    channels = make_divisible(32 * depth_multiplier, divisor)
    x = Conv(channels, 3, strides=2, name="Conv1")(x)
    x = relu6(bn(x, "bn_Conv1"), "Conv1_relu")
    out_endpoints = {"stem": x}
    block = 0
    for t, c, n, _ in STAGES:
        out = make_divisible(c * depth_multiplier, divisor)
        for _ in range(n):
            stride, rate = plan[block]
            prefix = f"block_{block}_" if block else "expanded_conv_"
            y = x
            if t != 1:
                y = Conv(make_divisible(channels * t), 1, name=prefix + "expand")(y)
                y = relu6(bn(y, prefix + "expand_BN"), prefix + "expand_relu")
            y = DepthwiseConv(3, strides=stride, dilation_rate=rate,
                              name=prefix + "depthwise")(y)
            y = relu6(bn(y, prefix + "depthwise_BN"), prefix + "depthwise_relu")
            y = Conv(out, 1, name=prefix + "project")(y)
            y = bn(y, prefix + "project_BN")
            if stride == 1 and channels == out:
                y = keras.layers.Add(name=prefix + "add")([x, y])
            x, channels = y, out
            out_endpoints[prefix[:-1]] = x
            block += 1
    return out_endpoints


def mobilenet_v2(x, depth_multiplier=1.0, output_stride=16, bn_momentum=0.9997,
                 bn_epsilon=BN_EPSILON, sync_bn=False, layout="keras"):
    """MobileNetV2 features (the last inverted residual block's output, "block_16" of
    `endpoints`) from normalized images ([-1, 1])."""
    return endpoints(x, depth_multiplier, output_stride, bn_momentum, bn_epsilon, sync_bn,
                     layout)["block_16"]


def load_backbone_weights(model, depth_multiplier=1.0, weights="imagenet"):
    """Copies `keras.applications.MobileNetV2(alpha=depth_multiplier, weights=weights)`'s
    variables into `model`'s layers of the same names (every backbone layer). `weights`:
    "imagenet" or a keras.applications weights file (include_top=False). Returns the names
    of the layers copied."""
    source = keras.applications.MobileNetV2(
        input_shape=(224, 224, 3), alpha=depth_multiplier, include_top=False, weights=weights)
    return _transfer(model, source)


def transfer_keras_applications_weights(model, source):
    """Copies every variable of a `keras.applications.MobileNetV2` model `source` into
    `model`'s layer of the same name; returns how many layers were copied. Its top
    (`Conv_1`, `Conv_1_bn`, `predictions`) is skipped unless `model` has those layers."""
    return len(_transfer(model, source))


def _transfer(model, source):
    ours = {layer.name: layer for layer in model.layers}
    copied = []
    for layer in source.layers:
        if layer.weights and layer.name in ours:
            ours[layer.name].set_weights(layer.get_weights())
            copied.append(layer.name)
    return copied


def classifier(depth_multiplier=1.0, num_classes=1001, layout="slim"):
    """The ImageNet classifier (raw RGB in, logits out): features, then `Conv_1` (1280
    channels, more above depth 1), BN, ReLU6, global average pooling and a 1x1 `Logits`
    conv with bias (slim's 1001 classes: 0 is background)."""
    inputs = keras.Input((None, None, 3), name="image")
    x = InputNormalization("tf", name="input_normalization")(inputs)
    x = mobilenet_v2(x, depth_multiplier, 32, layout=layout)
    x = Conv(make_divisible(1280 * max(1.0, depth_multiplier)), 1, name="Conv_1")(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, name="Conv_1_bn")(x)
    x = keras.layers.ReLU(6.0, name="out_relu")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="pool")(x)
    x = Conv(num_classes, 1, use_bias=True, name="Logits")(x)
    return keras.Model(inputs, keras.layers.Flatten(name="flatten")(x),
                       name=f"mobilenet_v2_{depth_multiplier}")


def load_imagenet_weights(model, args, weights):
    """`Backbone.load_weights`: keras.applications MobileNetV2 weights into a DeepLabV3 of
    `args`, whose channels must be rounded as keras.applications rounds them."""
    depth_multiplier = args.get("depth_multiplier", 1.0)
    if channel_divisor(depth_multiplier, args.get("layout", "keras")) != 8:
        raise ValueError(f"backbone_weights={weights!r} loads keras.applications "
                         f"MobileNetV2 weights: needs layout='keras' at "
                         f"depth_multiplier={depth_multiplier}")
    return load_backbone_weights(model, depth_multiplier, weights)


def build(x, name, output_stride, layout="keras", bn_momentum=0.9997, sync_bn=False,
          activation="relu", depth_multiplier=1.0):
    """`Backbone.build`; ReLU6 inside the backbone whatever the head's `activation`."""
    del name, activation
    return endpoints(x, depth_multiplier, output_stride, bn_momentum=bn_momentum,
                     sync_bn=sync_bn, layout=layout)


# research/deeplab's MobileNetV2 DeepLabv3: inputs in [-1, 1] whatever the checkpoint, a
# head of image pooling + 1x1 only (no atrous branch), head BN epsilon 1e-5.
BACKBONE = Backbone(
    family="mobilenet_v2", names=("mobilenet_v2",), build=build,
    options=("depth_multiplier",),
    normalization={"keras": "tf", "slim": "tf"},
    head_bn_epsilon={"keras": 1e-5, "slim": 1e-5},
    default_aspp_rates=lambda output_stride: (), load_weights=load_imagenet_weights)
