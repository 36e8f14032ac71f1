"""MobileNetV2 backbone: research/deeplab's atrous plan, the head it uses, no SpaceToBatchND,
and exact transfer of keras.applications.MobileNetV2 variables."""
import keras
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.modeling import mobilenet_v2
from deeplab_tf.modeling.deeplab import build_deeplabv3


def test_layer_plan_matches_slim_output_stride_rule():
    # Nominal strides of the 17 blocks after the stride-2 stem: 1,2,1,2,1,1,2,1,1,1,1,1,1,2,1,1,1.
    plan8 = mobilenet_v2.layer_plan(8)
    # Stride reaches 8 at block 3; block 6 (nominal 2) keeps rate 1, then rate 2; block 13
    # (nominal 2) gets rate 2, then rate 4.
    assert [s for s, _ in plan8] == [1, 2, 1, 2] + [1] * 13
    assert [r for _, r in plan8] == [1] * 7 + [2] * 7 + [4] * 3
    plan16 = mobilenet_v2.layer_plan(16)
    assert [s for s, _ in plan16] == [1, 2, 1, 2, 1, 1, 2] + [1] * 10
    assert [r for _, r in plan16] == [1] * 14 + [2] * 3
    assert mobilenet_v2.layer_plan(32) == [(s, 1) for s in
                                           (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)]
    with pytest.raises(ValueError, match="output_stride=4"):
        mobilenet_v2.layer_plan(4)


@pytest.fixture(scope="module")
def model_dm05_os8():
    return build_deeplabv3(21, backbone="mobilenet_v2", depth_multiplier=0.5, output_stride=8)


def test_head_is_image_pooling_and_1x1_and_normalization_is_tf(model_dm05_os8):
    model = model_dm05_os8
    names = {layer.name for layer in model.layers}
    assert {"aspp_0_conv", "aspp_pooling", "aspp_project_conv"} <= names
    assert "aspp_1_conv" not in names            # no atrous branch (research/deeplab)
    assert model.builder_args["depth_multiplier"] == 0.5
    norm = model.get_layer("input_normalization")
    x = np.array([[[[0.0, 127.5, 255.0]]]], np.float32)
    np.testing.assert_allclose(norm(x).numpy(), x / 127.5 - 1, atol=1e-6)
    # 16 * 0.5 channels out of the last block: 320 * 0.5 = 160.
    assert model.get_layer("block_16_project").kernel.shape[-1] == 160


def test_atrous_depthwise_without_space_to_batch_and_shapes(model_dm05_os8):
    model = model_dm05_os8
    for training in (True, False):
        fn = tf.function(lambda x: model(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec([1, None, None, 3], tf.float32)).graph
        ops = [op.type for op in graph.get_operations()]
        assert not any(t in ("SpaceToBatchND", "BatchToSpaceND") for t in ops)
        rates = {op.get_attr("dilations")[1] for op in graph.get_operations()
                 if op.type == "DepthwiseConv2dNative"}
        assert rates == {1, 2, 4}
    x = tf.random.uniform([1, 65, 65, 3], 0, 255)
    with tf.GradientTape() as tape:
        y = model(x, training=True)
        loss = tf.reduce_mean(y ** 2)
    grads = tape.gradient(loss, model.trainable_variables)
    assert y.shape == (1, 65, 65, 21)
    assert all(g is not None for g in grads)


def _atrous_depthwise_reference(x, k, rate):
    """NumPy: y[i, j, c] = sum_{a,b} xpad[i + a*rate, j + b*rate, c] k[a, b, c] (SAME)."""
    kk = k.shape[0]
    pad = (kk - 1) * rate // 2
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    out = np.zeros_like(x)
    for a in range(kk):
        for b in range(kk):
            out += xp[:, a * rate:a * rate + x.shape[1], b * rate:b * rate + x.shape[2]] \
                * k[a, b, :, 0]
    return out


def test_depthwise_conv_atrous_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1, 11, 13, 4)).astype(np.float32)
    layer = mobilenet_v2.DepthwiseConv(3, dilation_rate=3)
    layer.build(x.shape)
    k = rng.normal(size=(3, 3, 4, 1)).astype(np.float32)
    layer.depthwise_kernel.assign(k)
    np.testing.assert_allclose(layer(x).numpy(), _atrous_depthwise_reference(x, k, 3),
                               atol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 1.0])
def test_keras_applications_weights_transfer_exactly(alpha):
    source = keras.applications.MobileNetV2(input_shape=(None, None, 3), alpha=alpha,
                                            include_top=False, weights=None)
    rng = np.random.default_rng(1)
    for layer in source.layers:     # every variable random, BN statistics included
        layer.set_weights([rng.uniform(0.5, 1.5, w.shape).astype(np.float32)
                           if "variance" in v.name or "gamma" in v.name else
                           rng.normal(0, 0.1, w.shape).astype(np.float32)
                           for v, w in zip(layer.weights, layer.get_weights())])
    model = build_deeplabv3(21, backbone="mobilenet_v2", depth_multiplier=alpha,
                            output_stride=32)
    copied = mobilenet_v2.transfer_keras_applications_weights(model, source)
    backbone_layers = [l for l in model.layers if l.weights and not l.name.startswith(
        ("aspp", "logits"))]
    assert copied == len(backbone_layers)
    # Even sizes at every stride: keras' correct_pad on unknown shapes pads (0, 1), as SAME
    # does on even sizes (on odd ones SAME pads (1, 1), as correct_pad on known shapes).
    image = rng.uniform(0, 255, (1, 64, 96, 3)).astype(np.float32)
    ref = keras.Model(source.input, source.get_layer("block_16_project_BN").output)
    ours = keras.Model(model.input, model.get_layer("block_16_project_BN").output)
    np.testing.assert_allclose(ours(image).numpy(), ref(image / 127.5 - 1).numpy(),
                               rtol=1e-4, atol=1e-4)


def test_slim_layout_rounds_channels_as_research_deeplab_and_rebuilds_at_os8():
    from deeplab_tf.modeling.deeplab import set_output_stride
    # research/deeplab: divisible_by=8 only at depth 1.0, so 24 * 0.5 = 12 channels (keras: 16).
    model = build_deeplabv3(21, backbone="mobilenet_v2", depth_multiplier=0.5, layout="slim",
                            output_stride=16)
    assert model.get_layer("block_1_project").kernel.shape[-1] == 12
    assert model.get_layer("block_2_expand").kernel.shape[-1] == 72
    assert model.get_layer("block_16_project").kernel.shape[-1] == 160
    rebuilt = set_output_stride(model, 8)
    assert rebuilt.builder_args["depth_multiplier"] == 0.5
    assert rebuilt.get_layer("block_6_depthwise").strides == 1
    assert rebuilt.get_layer("block_16_depthwise").dilation_rate == 4
    for a, b in zip(model.get_weights(), rebuilt.get_weights()):
        np.testing.assert_array_equal(a, b)
