"""Layers against independent NumPy computations; the three ResNet layouts."""
import os
import subprocess
import sys
import numpy as np
import pytest
import keras

from deeplab_tf.modeling import build_backbone, build_deeplabv3
from deeplab_tf.modeling.aspp import ImagePooling
from deeplab_tf.modeling.layers import Conv, InputNormalization, ResizeLike
from deeplab_tf.testing import TINY


def numpy_conv(x, w, stride, rate, pad_beg, pad_end):
    """Direct 2-D convolution (Eq. 1 of the paper): y[i] = sum_k x[s*i + r*k] w[k]."""
    x = np.pad(x, [(0, 0), (pad_beg[0], pad_end[0]), (pad_beg[1], pad_end[1]), (0, 0)])
    k = w.shape[0]
    eff = (k - 1) * rate + 1
    oh = (x.shape[1] - eff) // stride + 1
    ow = (x.shape[2] - eff) // stride + 1
    y = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for a in range(k):
        for b in range(k):
            patch = x[:, a * rate: a * rate + stride * (oh - 1) + 1: stride,
                      b * rate: b * rate + stride * (ow - 1) + 1: stride]
            y += patch @ w[a, b]
    return y


@pytest.mark.parametrize("k,stride,rate,padding,size", [
    (3, 1, 1, "same", (9, 11)), (3, 1, 6, "same", (17, 10)), (3, 1, 24, "same", (13, 13)),
    (3, 2, 1, "explicit", (10, 9)), (3, 2, 1, "same", (10, 9)), (7, 2, 1, "explicit", (16, 15)),
    (1, 2, 1, "valid", (10, 11)), (3, 1, 2, "explicit", (8, 8))])
def test_conv_matches_numpy(k, stride, rate, padding, size):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2,) + size + (3,)).astype("float32")
    layer = Conv(4, k, strides=stride, dilation_rate=rate, padding=padding, use_bias=True)
    y = layer(x).numpy()
    w, b = [v.numpy() for v in layer.weights]
    eff = (k - 1) * rate + 1
    if padding == "valid":
        beg, end = (0, 0), (0, 0)
    elif padding == "explicit":
        beg = ((eff - 1) // 2,) * 2
        end = (eff - 1 - (eff - 1) // 2,) * 2
    else:  # TF SAME: the extra pixel goes at the end
        totals = [max((-(-n // stride) - 1) * stride + eff - n, 0) for n in size]
        beg = tuple(t // 2 for t in totals)
        end = tuple(t - t // 2 for t in totals)
    want = numpy_conv(x, w, stride, rate, beg, end) + b
    assert y.shape == want.shape
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-4)
    assert layer.compute_output_shape((2,) + size + (3,)) == y.shape


def test_conv_rejects_stride_with_rate():
    with pytest.raises(ValueError, match="strided or atrous"):
        Conv(4, 3, strides=2, dilation_rate=2)


def test_input_normalization():
    x = np.random.default_rng(0).uniform(0, 255, (1, 4, 5, 3)).astype("float32")
    caffe = keras.applications.resnet.preprocess_input(x.copy())
    np.testing.assert_allclose(InputNormalization("caffe")(x), caffe, atol=1e-4)
    np.testing.assert_allclose(InputNormalization("tf")(x), x / 127.5 - 1, atol=1e-5)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(InputNormalization("torch")(x), (x / 255 - mean) / std,
                               atol=1e-4)


def numpy_resize_align_corners(x, out_h, out_w):
    h, w = x.shape[1:3]
    ys = np.arange(out_h) * ((h - 1) / (out_h - 1) if out_h > 1 else 0)
    xs = np.arange(out_w) * ((w - 1) / (out_w - 1) if out_w > 1 else 0)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    fy, fx = (ys - y0)[None, :, None, None], (xs - x0)[None, None, :, None]
    top = x[:, y0][:, :, x0] * (1 - fx) + x[:, y0][:, :, x1] * fx
    bottom = x[:, y1][:, :, x0] * (1 - fx) + x[:, y1][:, :, x1] * fx
    return top * (1 - fy) + bottom * fy


def test_resize_is_align_corners():
    low = np.random.default_rng(0).normal(size=(1, 5, 7, 2)).astype("float32")
    like = np.zeros((1, 33, 49, 3), "float32")  # OS*k+1 with OS 8
    y = ResizeLike()([low, like]).numpy()
    np.testing.assert_allclose(y, numpy_resize_align_corners(low, 33, 49), atol=1e-5)
    # Feature pixel i sits on input pixel OS*i.
    np.testing.assert_allclose(y[:, ::8, ::8], low, atol=1e-6)


def test_image_pooling_is_broadcast_global_context():
    x = np.random.default_rng(0).normal(size=(2, 6, 9, 5)).astype("float32")
    layer = ImagePooling(4)
    y = layer(x, training=False).numpy()
    w = layer.conv.kernel.numpy()[0, 0]
    bn = layer.bn
    z = x.mean(axis=(1, 2)) @ w
    z = (z - bn.moving_mean.numpy()) / np.sqrt(bn.moving_variance.numpy() + bn.epsilon)
    z = np.maximum(z * bn.gamma.numpy() + bn.beta.numpy(), 0)
    np.testing.assert_allclose(y, np.broadcast_to(z[:, None, None], y.shape), atol=1e-5)


def strided(model):
    return sorted(l.name for l in model.layers if isinstance(l, Conv) and l.strides == 2)


def test_layouts():
    depths = dict(depths=(2, 2, 2, 3), width_multiplier=0.125)
    keras_ = build_backbone("resnet50", layout="keras", **depths)
    slim = build_backbone("resnet50", layout="slim", **depths)
    garden = build_backbone("resnet50", layout="garden", **depths)
    # Where the stride sits (shortcut convs stride with their unit).
    assert strided(keras_) == sorted(["conv1_conv"] + [f"conv{s}_block1_{i}_conv"
                                                       for s in (3, 4, 5) for i in (0, 1)])
    assert strided(slim) == sorted(["conv1_conv"] + [f"conv{s}_block2_2_conv"
                                                     for s in (2, 3, 4)])
    assert strided(garden) == sorted(["conv1_conv"] + [f"conv{s}_block1_{i}_conv"
                                                       for s in (3, 4, 5) for i in (0, 2)])
    # TF-slim subsamples the identity shortcut of a strided last unit.
    assert slim.get_layer("conv2_block2_0_pool").strides == (2, 2)
    for model, bias, eps, norm in [(keras_, True, 1.001e-5, "caffe"), (slim, False, 1e-5, "tf"),
                                   (garden, False, 1e-3, "torch")]:
        convs = [l for l in model.layers if isinstance(l, Conv)]
        assert all(c.use_bias == bias for c in convs)
        bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
        assert all(b.epsilon == eps for b in bns)
        assert model.get_layer("input_normalization").mode == norm
        # Each stride-2 stage halves 65 -> 33 -> ... down to output stride 32: 3x3.
        out = model.compute_output_spec(keras.KerasTensor((1, 65, 65, 3)))["block4"]
        assert tuple(out.shape[1:3]) == (3, 3)


def test_deep_stem():
    model = build_deeplabv3(3, stem="deep", layout="slim", **TINY)
    assert model.get_layer("conv1_1_conv").strides == 2
    assert model.get_layer("conv1_3_conv").filters == 2 * model.get_layer("conv1_2_conv").filters
    assert model.predict(np.zeros((1, 33, 33, 3), "float32"), verbose=0).shape == (1, 33, 33, 3)


def test_mixed_bfloat16_policy():
    x = np.random.default_rng(0).uniform(0, 255, (1, 33, 33, 3)).astype("float32")
    # Weights seeded (tests/conftest.py): over 16 random initialisations the bf16 logits
    # were 0.7-2.1% of the largest fp32 logit away (valid-tap ASPP); the bound is 5%.
    # Before valid taps summed bfloat16 products in float32: up to 2.9% over the same 16,
    # and unseeded runs failed about once in 8.
    fp32 = build_deeplabv3(3, **TINY)
    keras.mixed_precision.set_dtype_policy("mixed_bfloat16")
    try:
        bf16 = build_deeplabv3(3, **TINY)
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    bf16.set_weights(fp32.get_weights())
    assert bf16.get_layer("conv2_block1_2_conv").compute_dtype == "bfloat16"
    assert bf16.get_layer("conv2_block1_2_conv").kernel.dtype == "float32"
    y16, y32 = bf16.predict(x, verbose=0), fp32.predict(x, verbose=0)
    assert y16.dtype == np.float32  # logits leave the model in float32 for the loss
    assert np.max(np.abs(y16 - y32)) < 0.05 * np.max(np.abs(y32)) + 1e-3


@pytest.mark.parametrize("path", ["native", "valid_taps", "valid_taps_lean", "dynamic_lean"])
@pytest.mark.parametrize("r", [3, 8])   # 8: on the 9x8 input some taps miss the image
def test_atrous_gradient_matches_numpy(path, r):
    """Both training paths of the atrous conv (native dilated Conv2D, and the valid-tap
    form used where TF has no native dilated gradient) against a NumPy gradient of
    L = sum(y * g)."""
    import tensorflow as tf
    from deeplab_tf.modeling import atrous
    if path == "native" and not atrous.native_dilated_gradient():
        # TF's default CPU kernels (Eigen, e.g. on AMD) have no dilated gradient; oneDNN's
        # do: run this case again in a process with oneDNN on.
        if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1":
            pytest.fail("no native dilated Conv2D gradient even with TF_ENABLE_ONEDNN_OPTS=1")
        test = f"{__file__}::test_atrous_gradient_matches_numpy[{r}-native]"
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", test],
            env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}, capture_output=True, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return
    rng = np.random.default_rng(0)
    k = 3
    x = tf.constant(rng.normal(size=(2, 9, 8, 3)).astype("float32"))
    w = tf.constant(rng.normal(size=(k, k, 3, 4)).astype("float32"))
    g = rng.normal(size=(2, 9, 8, 4)).astype("float32")
    if path == "native":
        conv = tf.function(lambda x, w: atrous.atrous_conv2d(x, w, r, training=True))
    elif path == "valid_taps":
        conv = tf.function(lambda x, w: atrous.valid_tap_conv2d(x, w, r))
    else:   # the hand-written gradient of training, at static and at unknown sizes
        signature = None if path == "valid_taps_lean" else [
            tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([k, k, 3, 4])]
        conv = tf.function(lambda x, w: atrous.valid_tap_conv2d(x, w, r, lean_gradient=True),
                           input_signature=signature)
    with tf.GradientTape() as tape:
        tape.watch([x, w])
        y = conv(x, w)
        loss = tf.reduce_sum(y * g)
    dx, dw = tape.gradient(loss, [x, w])
    xp = np.pad(x.numpy(), [(0, 0), (r, r), (r, r), (0, 0)])
    want_dw = np.zeros(w.shape)
    want_dxp = np.zeros(xp.shape)
    for a in range(k):
        for b in range(k):
            patch = xp[:, a * r: a * r + 9, b * r: b * r + 8]
            want_dw[a, b] = np.einsum("nhwc,nhwo->co", patch, g)
            want_dxp[:, a * r: a * r + 9, b * r: b * r + 8] += g @ w.numpy()[a, b].T
    np.testing.assert_allclose(dw, want_dw, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, want_dxp[:, r:-r, r:-r], rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("rate", [6, 12])   # 12: most taps miss the 13x11 image
def test_valid_taps_in_bfloat16_sum_in_float32(rate):
    """bfloat16 valid taps, forward (static and dynamic sizes) and the lean gradient,
    against NumPy in float64 on the same bfloat16 inputs: within 1% of the largest value,
    as a native conv's single rounding (0.3% here). Summing 256-channel products in
    bfloat16, as TF's CPU Einsum does, was 2.3-3.8% off."""
    import tensorflow as tf
    from deeplab_tf.modeling import atrous
    rng = np.random.default_rng(rate)
    h, w, c, o = 13, 11, 256, 16
    x = tf.cast(rng.normal(size=(1, h, w, c)), tf.bfloat16)
    kernel = tf.cast(rng.normal(size=(3, 3, c, o)) / 16, tf.bfloat16)
    g = tf.cast(rng.normal(size=(1, h, w, o)), tf.bfloat16)
    xp = np.pad(tf.cast(x, tf.float64).numpy(), [(0, 0), (rate, rate), (rate, rate), (0, 0)])
    k64, g64 = tf.cast(kernel, tf.float64).numpy(), tf.cast(g, tf.float64).numpy()
    want_y, want_dw, want_dxp = np.zeros((1, h, w, o)), np.zeros(k64.shape), np.zeros(xp.shape)
    for i in range(3):
        for j in range(3):
            window = (slice(None), slice(i * rate, i * rate + h), slice(j * rate, j * rate + w))
            want_y += xp[window] @ k64[i, j]
            want_dw[i, j] = np.einsum("nhwc,nhwo->co", xp[window], g64)
            want_dxp[window] += g64 @ k64[i, j].T
    want_dx = want_dxp[:, rate:-rate, rate:-rate]

    def close(got, want):
        error = np.max(np.abs(tf.cast(got, tf.float64).numpy() - want))
        assert error <= 0.01 * np.max(np.abs(want)), error / np.max(np.abs(want))

    for spec in ([None, None, None, c], [1, h, w, c]):
        conv = tf.function(lambda x, k: atrous.valid_tap_conv2d(x, k, rate, lean_gradient=True),
                           input_signature=[tf.TensorSpec(spec, tf.bfloat16),
                                            tf.TensorSpec(kernel.shape, tf.bfloat16)])
        with tf.GradientTape() as tape:
            tape.watch([x, kernel])
            y = conv(x, kernel)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * tf.cast(g, tf.float32))
        dx, dw = tape.gradient(loss, [x, kernel])
        assert y.dtype == dx.dtype == dw.dtype == tf.bfloat16
        close(y, want_y)
        close(dx, want_dx)
        close(dw, want_dw)


@pytest.mark.parametrize("k,rate,h,w", [(3, 2, 9, 7), (3, 6, 9, 7), (3, 12, 9, 7), (5, 3, 11, 13),
                                        (3, 4, 1, 1), (3, 1, 6, 6)])
def test_valid_tap_conv_matches_numpy(k, rate, h, w):
    """The valid-tap form against Eq. (1) with zero padding, including rates at and past
    the image size (only the centre tap sees the image: Fig. 4's degenerate case)."""
    import tensorflow as tf
    from deeplab_tf.modeling import atrous
    rng = np.random.default_rng(k * 100 + rate)
    x = rng.normal(size=(2, h, w, 3)).astype("float32")
    kernel = rng.normal(size=(k, k, 3, 5)).astype("float32")
    c = k // 2
    pad = c * rate
    xp = np.pad(x, [(0, 0), (pad, pad), (pad, pad), (0, 0)])
    want = np.zeros((2, h, w, 5))
    for i in range(k):
        for j in range(k):
            want += xp[:, i * rate:i * rate + h, j * rate:j * rate + w] @ kernel[i, j]
    for spec in ([None, None, None, 3], [2, h, w, 3]):   # dynamic and static sizes
        got = tf.function(lambda x, kernel: atrous.valid_tap_conv2d(x, kernel, rate),
                          input_signature=[tf.TensorSpec(spec),
                                           tf.TensorSpec([k, k, 3, 5])])(x, kernel)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
