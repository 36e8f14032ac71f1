"""Batch norm folded into the preceding convolution, for inference and export.

In inference mode BN is an affine map per channel, y = s * conv(x) + b with
s = gamma / sqrt(moving_variance + epsilon) and b = beta - s * moving_mean, so it can live in
the convolution's kernel and bias: conv'(x) = conv(x; kernel * s) + b. Keras 3 computes BN
as two element-wise passes over every feature map; folded, the graph is Conv2D + BiasAdd
(+ Add) + ReLU, which TensorFlow's grappler fuses into one oneDNN/cuDNN call. The folded
model computes the same function up to float rounding (tests/modeling/test_folding.py).

`fold_batch_norm` works on any functional model whose BN layers each follow a `Conv` used by
nothing else (all of DeepLabV3's, including cascaded blocks); other BNs (the image-pooling
branch's, inside `ImagePooling`, on a 1x1 map) are kept.
"""
import keras
import numpy as np

from deeplab_tf.modeling.layers import Conv


@keras.saving.register_keras_serializable(package="deeplab_tf")
class FoldedBatchNorm(keras.layers.Layer):
    """Stands where a folded BN stood: the identity (its affine map is in the conv)."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def _producer(tensor):
    return tensor._keras_history.operation


def fold_pairs(model):
    """{conv layer name: its BN layer} for every BN that can be folded."""
    consumers = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for tensor in node.input_tensors:
                consumers.setdefault(_producer(tensor).name, []).append(layer.name)
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or \
                len(layer._inbound_nodes) != 1:
            continue
        conv = _producer(layer._inbound_nodes[0].input_tensors[0])
        if isinstance(conv, Conv) and consumers.get(conv.name) == [layer.name] and \
                layer.axis in (3, -1) and layer.center and layer.scale:
            pairs[conv.name] = layer
    return pairs


def folded_weights(conv, bn):
    """(kernel, bias) of `conv` followed by `bn` in inference mode, in float64 then cast."""
    gamma, beta, mean, var = (np.asarray(w, np.float64) for w in bn.get_weights())
    scale = gamma / np.sqrt(var + bn.epsilon)
    kernel = np.asarray(conv.kernel, np.float64) * scale
    bias = beta - scale * mean
    if conv.use_bias:
        bias = bias + scale * np.asarray(conv.bias, np.float64)
    dtype = conv.kernel.dtype
    return kernel.astype(dtype), bias.astype(dtype)


def fold_batch_norm(model):
    """A copy of `model` for inference with every foldable BN folded into its conv.

    The copy is a plain functional `keras.Model` with the same inputs and outputs, computing
    `model(x, training=False)`; its weights are a snapshot (fold again after training). Call
    it inside the distribution strategy's scope where there is one.
    """
    pairs = fold_pairs(model)
    folded_bns = {bn.name for bn in pairs.values()}

    def clone(layer):
        if layer.name in folded_bns:
            return FoldedBatchNorm(name=layer.name)
        if layer.name in pairs:
            config = layer.get_config()
            config["use_bias"] = True
            new = Conv.from_config(config)
            new.build(layer.input.shape)
            new.set_weights(folded_weights(layer, pairs[layer.name]))
            return new
        new = layer.__class__.from_config(layer.get_config())
        if layer.weights:
            new.build(layer.input.shape)
            new.set_weights(layer.get_weights())
        return new

    folded = keras.models.clone_model(model, clone_function=clone)
    folded.trainable = False
    return folded
