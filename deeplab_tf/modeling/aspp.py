"""Atrous Spatial Pyramid Pooling with image-level features (Sec. 3.3, Fig. 5)."""
import keras
import tensorflow as tf
from keras import ops

from deeplab_tf.modeling.layers import ACTIVATIONS, Conv, activation_layer

# ASPP rates at output stride 16 (Sec. 3.3); they scale with 16 / output_stride.
ASPP_RATES_OS16 = (6, 12, 18)


def default_aspp_rates(output_stride):
    """(6, 12, 18) at output stride 16, doubled at 8 (Sec. 3.3), halved at 32."""
    return tuple(max(1, r * 16 // output_stride) for r in ASPP_RATES_OS16)


@keras.saving.register_keras_serializable(package="deeplab_tf")
class ImagePooling(keras.layers.Layer):
    """Image-level features (Sec. 3.3): global average pooling, 1x1 conv + BN + ReLU, then
    "bilinear upsampling" of the 1x1 result back to the feature map's size.

    At large rates a 3x3 atrous filter degenerates to a 1x1 one (Fig. 4), so ASPP gets its
    global context from here. Bilinear upsampling of a 1x1 map is a broadcast, which works
    for any input size, with the same values as any resize.

    Args:
      filters: output channels (256 in the paper).
      bn_momentum, bn_epsilon, sync_bn: as for every BN of the model.
      activation: "relu" (the paper) or "swish".
    """

    def __init__(self, filters=256, bn_momentum=0.9997, bn_epsilon=1e-5, sync_bn=False,
                 activation="relu", **kwargs):
        super().__init__(**kwargs)
        if activation not in ACTIVATIONS:
            raise ValueError(f"ImagePooling {self.name}: activation={activation!r}, "
                             f"expected one of {ACTIVATIONS}")
        self.activation = activation
        self.filters = int(filters)
        self.bn_momentum = float(bn_momentum)
        self.bn_epsilon = float(bn_epsilon)
        self.sync_bn = bool(sync_bn)
        self.conv = Conv(self.filters, 1, name="conv")
        self.bn = keras.layers.BatchNormalization(momentum=self.bn_momentum,
                                                  epsilon=self.bn_epsilon,
                                                  synchronized=self.sync_bn, name="bn")

    def build(self, input_shape):
        self.conv.build((input_shape[0], 1, 1, input_shape[-1]))
        self.bn.build((input_shape[0], 1, 1, self.filters))

    def call(self, inputs, training=None):
        pooled = ops.mean(inputs, axis=(1, 2), keepdims=True)
        y = self.bn(self.conv(pooled), training=training)
        y = ops.relu(y) if self.activation == "relu" else ops.silu(y)
        shape = tf.concat([tf.shape(inputs)[:3], [self.filters]], axis=0)
        return tf.broadcast_to(y, shape)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:3]) + (self.filters,)

    def get_config(self):
        config = super().get_config()
        config.update(filters=self.filters, bn_momentum=self.bn_momentum,
                      bn_epsilon=self.bn_epsilon, sync_bn=self.sync_bn,
                      activation=self.activation)
        return config


def aspp(features, rates, filters=256, image_pooling=True, bn_momentum=0.9997,
         bn_epsilon=1e-5, sync_bn=False, activation="relu", name="aspp"):
    """ASPP (Fig. 5b): a 1x1 conv and one 3x3 atrous conv per rate, plus image pooling,
    concatenated in that order and projected by a 1x1 conv; every conv followed by BN and
    ReLU (or `activation`).

    Returns the projected features (`filters` channels), before dropout and logits.
    """
    def conv_bn_relu(x, kernel, rate, branch):
        x = Conv(filters, kernel, dilation_rate=rate, name=f"{branch}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                            synchronized=sync_bn, name=f"{branch}_bn")(x)
        return activation_layer(activation, f"{branch}_relu")(x)

    branches = [conv_bn_relu(features, 1, 1, f"{name}_0")]
    for i, rate in enumerate(rates):
        branches.append(conv_bn_relu(features, 3, rate, f"{name}_{i + 1}"))
    if image_pooling:
        branches.append(ImagePooling(filters, bn_momentum, bn_epsilon, sync_bn, activation,
                                     name=f"{name}_pooling")(features))
    x = keras.layers.Concatenate(name=f"{name}_concat")(branches)
    return conv_bn_relu(x, 1, 1, f"{name}_project")
