"""Loss, weight decay and learning rate against independent NumPy computations."""
import numpy as np
import tensorflow as tf

from deeplab_tf.losses import pixel_cross_entropy, regularization_loss
from deeplab_tf.modeling import build_deeplabv3
from deeplab_tf.schedules import PolyWithWarmup
from deeplab_tf.testing import TINY


def test_loss_matches_numpy_and_ignores_255():
    rng = np.random.default_rng(0)
    logits = tf.Variable(rng.normal(size=(2, 5, 7, 4)).astype("float32"))
    labels = rng.integers(0, 4, (2, 5, 7, 1))
    labels[rng.uniform(size=labels.shape) < 0.3] = 255
    with tf.GradientTape() as tape:
        total, count = pixel_cross_entropy(labels, logits)
        mean = total / count
    z = logits.numpy()
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    valid = labels[..., 0] != 255
    picked = np.take_along_axis(logp, np.where(valid, labels[..., 0], 0)[..., None], -1)[..., 0]
    assert count.numpy() == valid.sum()
    np.testing.assert_allclose(mean.numpy(), -picked[valid].mean(), rtol=1e-5)
    grad = tape.gradient(mean, logits).numpy()
    assert np.all(grad[~valid] == 0)
    assert np.all(np.abs(grad[valid]).sum(-1) > 0)


def test_weight_decay_is_slim_l2_on_conv_kernels():
    model = build_deeplabv3(3, **TINY, weight_decay=1e-4)
    kernels = [v.numpy() for v in model.weights if v.path.endswith("kernel")]
    assert any("aspp_pooling" in v.path for v in model.weights if v.path.endswith("kernel"))
    want = 1e-4 * sum((k.astype(np.float64) ** 2).sum() for k in kernels) / 2
    np.testing.assert_allclose(regularization_loss(model).numpy(), want, rtol=1e-5)


def test_poly_learning_rate():
    schedule = PolyWithWarmup(0.007, 1000, power=0.9)
    for step in (0, 500, 1000):
        np.testing.assert_allclose(float(schedule(step)),
                                   0.007 * (1 - step / 1000) ** 0.9, rtol=1e-6, atol=1e-12)
    warm = PolyWithWarmup(0.01, 100, power=0.9, warmup_steps=10)
    np.testing.assert_allclose(float(warm(4)), 0.01 * (1 - 4 / 100) ** 0.9 * 0.5, rtol=1e-6)
    assert PolyWithWarmup(**warm.get_config()).get_config() == warm.get_config()
