"""BN folded into convolutions (modeling/folding.py): same function, no BN left."""
import keras
import numpy as np
import pytest

from deeplab_tf.modeling import build_deeplabv3
from deeplab_tf.modeling.folding import fold_batch_norm, fold_pairs, folded_weights
from deeplab_tf.modeling.layers import Conv
from deeplab_tf.testing import TINY


def randomize_bn(model, seed=0):
    """Every BN variable random, moving statistics included (else folding is near identity)."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.5, n),
                               rng.normal(0, 0.5, n), rng.uniform(0.3, 2.0, n)])
    return model


def top_level_bns(model):
    return [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]


def test_folded_weights_match_numpy_conv_then_bn():
    rng = np.random.default_rng(1)
    conv = Conv(4, 1, use_bias=True)
    bn = keras.layers.BatchNormalization(epsilon=1e-3)
    x = rng.normal(size=(1, 5, 5, 3)).astype("float32")
    bn(conv(x))
    randomize_bn(bn)
    conv.bias.assign(rng.normal(size=4))
    kernel, bias = folded_weights(conv, bn)
    # NumPy: the 1x1 conv is a matmul; BN in inference is (y - mean) / sqrt(var + eps) * g + b
    gamma, beta, mean, var = bn.get_weights()
    y = x @ np.asarray(conv.kernel)[0, 0] + np.asarray(conv.bias)
    expected = (y - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(x @ kernel[0, 0] + bias, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layout,output_stride,extra_blocks", [
    ("keras", 8, 0), ("slim", 16, 1), ("garden", 16, 0)])
def test_folded_model_computes_the_same_logits(layout, output_stride, extra_blocks):
    model = build_deeplabv3(6, output_stride=output_stride, extra_blocks=extra_blocks,
                            layout=layout, stem="deep" if layout == "garden" else "7x7",
                            **TINY)
    randomize_bn(model)
    folded = fold_batch_norm(model)
    # Every BN of the graph is folded; only the image-pooling branch keeps its own.
    assert len(fold_pairs(model)) == len(top_level_bns(model)) > 0
    assert not top_level_bns(folded)
    x = np.random.default_rng(2).uniform(0, 255, (2, 65, 81, 3)).astype("float32")
    ref = model(x, training=False).numpy()
    out = folded(x, training=False).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() <= 1e-5 * np.abs(ref).max()
    # The original model is untouched and still has its BN layers.
    assert len(top_level_bns(model)) == len(fold_pairs(model))


def test_predictor_with_folded_bn_gives_the_same_probabilities():
    from deeplab_tf import inference
    model = randomize_bn(build_deeplabv3(4, output_stride=16, **TINY), seed=3)
    protocol = inference.Protocol(output_stride=16, scales=(1.0,), flip=True)
    x = np.random.default_rng(4).uniform(0, 255, (1, 37, 50, 3)).astype("float32")
    ref = inference.make_predictor(model, protocol)(x).numpy()
    folded = inference.make_predictor(model, protocol, fold_batch_norm=True)(x).numpy()
    # float32 rounding of the folded products: up to ~5e-5 on probabilities where the
    # randomized BNs make logits large (seen in CI); a misfolded BN is off by O(0.1).
    np.testing.assert_allclose(folded, ref, atol=2e-4)
