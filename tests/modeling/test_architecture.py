"""The paper's architectures: output stride, Multi_Grid, cascaded blocks, ASPP (Sec. 3)."""
import numpy as np
import pytest
import keras
import tensorflow as tf

from deeplab_tf.modeling import build_backbone, build_deeplabv3, default_aspp_rates
from deeplab_tf.modeling.layers import Conv
from deeplab_tf.testing import TINY


def spec_shape(model, size):
    return model.compute_output_spec(keras.KerasTensor((1, size, size, 3)))


@pytest.mark.parametrize("output_stride,extra_blocks,side", [
    (8, 0, 65), (16, 0, 33), (32, 0, 17), (256, 3, 3)])
def test_backbone_feature_size_at_513(output_stride, extra_blocks, side):
    backbone = build_backbone("resnet50", output_stride=output_stride, extra_blocks=extra_blocks)
    out = spec_shape(backbone, 513)[f"block{4 + extra_blocks}"]
    assert tuple(out.shape) == (1, side, side, 2048)


def test_resnet101_deeplab_logits_at_513():
    model = build_deeplabv3(21, backbone="resnet101", output_stride=16)
    assert tuple(model.input_shape) == (None, None, None, 3)
    assert tuple(spec_shape(model, 513).shape) == (1, 513, 513, 21)


def test_one_model_runs_any_size(tiny_kwargs):
    model = build_deeplabv3(5, output_stride=8, **tiny_kwargs)
    for h, w in [(321, 481), (129, 129)]:
        y = model.predict(np.zeros((1, h, w, 3), "float32"), verbose=0)
        assert y.shape == (1, h, w, 5) and np.all(np.isfinite(y))


def test_logits_at_output_stride(tiny_kwargs):
    model = build_deeplabv3(3, output_stride=16, upsample_logits=False, **tiny_kwargs)
    assert tuple(spec_shape(model, 513).shape) == (1, 33, 33, 3)


def rates(model, stage):
    return tuple(model.get_layer(f"conv{stage}_block{u}_2_conv").dilation_rate
                 for u in (1, 2, 3))


@pytest.mark.parametrize("layout", ["keras", "slim", "garden"])
def test_multi_grid_rates_of_block4(layout):
    # Tiny widths: the rate logic is the same as ResNet-50's (block4 has 3 units).
    os16 = build_deeplabv3(21, output_stride=16, layout=layout, **TINY)
    os8 = build_deeplabv3(21, output_stride=8, layout=layout, **TINY)
    assert rates(os16, 5) == (2, 4, 8)
    assert rates(os8, 5) == (4, 8, 16)
    # No stride is left after the output stride is reached.
    for model, first_atrous_stage in [(os16, 5), (os8, 4)]:
        for layer in model.layers:
            if isinstance(layer, Conv) and layer.name.startswith("conv") \
                    and int(layer.name[4]) >= first_atrous_stage:
                assert layer.strides == 1, layer.name


def test_cascaded_blocks_rates_fig3b():
    model = build_deeplabv3(21, output_stride=16, extra_blocks=3, head="cascade", **TINY)
    # Blocks 4-7 are stages conv5-conv8; base rates 2, 4, 8, 16, each times Multi_Grid.
    for stage, base in zip((5, 6, 7, 8), (2, 4, 8, 16)):
        assert rates(model, stage) == tuple(base * m for m in (1, 2, 4))


def test_cascade_without_atrous_reaches_os256():
    model = build_deeplabv3(21, output_stride=256, extra_blocks=3, head="cascade",
                            multi_grid=(1, 1, 1), upsample_logits=False, **TINY)
    assert all(l.dilation_rate == 1 for l in model.layers if isinstance(l, Conv))
    assert tuple(spec_shape(model, 513).shape) == (1, 3, 3, 21)


def test_aspp_rates_follow_output_stride():
    assert default_aspp_rates(16) == (6, 12, 18)
    assert default_aspp_rates(8) == (12, 24, 36)
    model = build_deeplabv3(21, output_stride=8, **TINY)
    assert [model.get_layer(f"aspp_{i}_conv").dilation_rate for i in (1, 2, 3)] == [12, 24, 36]
    given = build_deeplabv3(21, output_stride=8, aspp_rates=(6, 12, 18), **TINY)
    assert [given.get_layer(f"aspp_{i}_conv").dilation_rate for i in (1, 2, 3)] == [6, 12, 18]


def test_parameter_count_equals_independent_count():
    model = build_deeplabv3(21, backbone="resnet101", output_stride=16)
    resnet = keras.applications.ResNet101(include_top=False, weights=None).count_params()
    c_in, f, k = 2048, 256, 21
    bn = 4 * f  # gamma, beta, moving mean and variance
    head = (c_in * f + bn)                  # 1x1 branch
    head += 3 * (9 * c_in * f + bn)         # three 3x3 atrous branches
    head += c_in * f + bn                   # image pooling
    head += 5 * f * f + bn                  # projection of the concatenation
    head += f * k + k                       # logits with bias
    assert model.count_params() == resnet + head


@pytest.mark.parametrize("output_stride", [8, 16])
def test_no_space_to_batch_in_the_graph(output_stride, tiny_kwargs):
    from deeplab_tf.modeling.atrous import native_dilated_gradient
    model = build_deeplabv3(21, output_stride=output_stride, **tiny_kwargs)
    largest = max(default_aspp_rates(output_stride))
    for training in (True, False):
        fn = tf.function(lambda x: model(x, training=training))
        graph = fn.get_concrete_function(tf.TensorSpec([1, None, None, 3], tf.float32)).graph
        ops = [op.type for op in graph.get_operations()]
        assert not any(t in ("SpaceToBatchND", "BatchToSpaceND") for t in ops)
        dilations = {tuple(op.get_attr("dilations")) for op in graph.get_operations()
                     if op.type == "Conv2D"}
        # Training: ASPP's atrous convs are dilated Conv2D ops (where TF differentiates
        # them natively); inference: valid-tap matrix products instead.
        native = training and native_dilated_gradient()
        assert ((1, largest, largest, 1) in dilations) == native
        assert ("Einsum" in ops) == (not native)


def test_valid_tap_training_equals_native_training(tiny_kwargs, monkeypatch):
    """Where TF has no native dilated gradient (its Eigen CPU kernels, e.g. on AMD), every
    atrous conv trains through valid taps: loss, gradients and BN statistics of a training
    step at OS8 (Multi_Grid rates 2, 4, 8 and ASPP 12/24/36) equal the native path's."""
    from deeplab_tf.modeling import atrous
    if not atrous.native_dilated_gradient():
        pytest.fail("needs the native dilated gradient (tests/conftest.py enables oneDNN)")
    # Weights seeded (tests/conftest.py): some random initialisations (BN channels of tiny
    # variance) amplify the paths' different float32 summation orders 30-fold; over seeds
    # 0-9 the largest error was 0.31 of the bound below (seed 0), unseeded runs failed ~1
    # in 10.
    model = build_deeplabv3(5, output_stride=8, **tiny_kwargs)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(0, 255, (2, 49, 41, 3)).astype("float32"))
    y = tf.constant(rng.integers(0, 5, (2, 49, 41)))
    bn = [v for v in model.non_trainable_variables if "moving_mean" in v.path]

    def step():
        start = [v.numpy() for v in bn]
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, tf.image.resize(logits, (49, 41)), from_logits=True))
        grads = tape.gradient(loss, model.trainable_variables)
        moved = [v.numpy() for v in bn]
        for v, value in zip(bn, start):
            v.assign(value)
        graph = tf.function(lambda: model(x, training=True)).get_concrete_function().graph
        dilated = any(op.type == "Conv2D" and max(op.get_attr("dilations")) > 1
                      for op in graph.get_operations())
        return loss.numpy(), [g.numpy() for g in grads], moved, dilated

    loss_n, grads_n, moved_n, dilated_n = step()
    monkeypatch.setitem(atrous._NATIVE_DILATED_GRADIENT, tf.float32, False)
    loss_v, grads_v, moved_v, dilated_v = step()
    assert dilated_n and not dilated_v  # the two paths really differ
    np.testing.assert_allclose(loss_v, loss_n, rtol=1e-5)
    names = [v.path for v in model.trainable_variables] + [v.path for v in bn]
    # A conv bias right before a BN (keras.applications' ResNets have them) has a zero
    # gradient in exact arithmetic: BN in training subtracts the batch mean. Both paths
    # give float32 rounding noise there, which no tolerance relative to it can compare:
    # those are checked to be ~0 against the largest gradient instead.
    layers = {layer.name for layer in model.layers}
    before_bn = [v.path.endswith("_conv/bias") and
                 f"{v.path.rsplit('/', 1)[0][:-len('_conv')]}_bn" in layers
                 for v in model.trainable_variables] + [False] * len(bn)
    assert sum(before_bn) > 10   # the test model has them (see the backbone's conv_bias)
    largest = max(np.max(np.abs(g)) for g in grads_n)
    is_grad = [True] * len(grads_n) + [False] * len(bn)
    for name, a, b, zero, grad in zip(names, grads_v + moved_v, grads_n + moved_n, before_bn,
                                      is_grad):
        if zero:
            assert max(np.max(np.abs(a)), np.max(np.abs(b))) <= 1e-4 * largest, name
            continue
        # Per tensor, relative to its norm: float32 sums in another order differ by ~1e-4
        # of it; a wrong tap or padding would be off by O(1). A gradient far smaller than
        # the model's (the image-pooling conv's, ~1e-3 of the others per element: its BN
        # normalizes 2 pooled pixels, which leaves it epsilon's gradient only) carries the
        # rounding noise of the large ones, up to 3e-7 of the largest element measured:
        # hence a floor of 1e-5 of it per element.
        error = np.linalg.norm(a - b)
        floor = 1e-5 * largest * np.sqrt(b.size) if grad else 0.0
        assert error <= 2e-3 * np.linalg.norm(b) + floor, (name, error)


def test_invalid_arguments_are_clear_errors(tiny_kwargs):
    with pytest.raises(ValueError, match="output_stride=12"):
        build_deeplabv3(21, output_stride=12, **tiny_kwargs)
    with pytest.raises(ValueError, match="output_stride=64"):
        build_deeplabv3(21, output_stride=64, **tiny_kwargs)
    with pytest.raises(ValueError, match="multi_grid"):
        build_deeplabv3(21, multi_grid=(1, 2), **tiny_kwargs)
    with pytest.raises(ValueError, match="extra_blocks=4"):
        build_deeplabv3(21, extra_blocks=4, **tiny_kwargs)
    with pytest.raises(ValueError, match="head='fpn'"):
        build_deeplabv3(21, head="fpn", **tiny_kwargs)
    with pytest.raises(ValueError, match="layout='caffe'"):
        build_deeplabv3(21, layout="caffe", **tiny_kwargs)
