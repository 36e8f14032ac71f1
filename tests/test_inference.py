"""The prediction protocol against a NumPy re-implementation, sliding windows, Segmenter."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import VOC_SAMPLES
from deeplab_tf import configs
from deeplab_tf.images import read_image
from deeplab_tf.inference import (Protocol, Segmenter, make_predictor, parse_scales,
                                  parse_size, predict_probabilities)
from deeplab_tf.testing import TOY_METADATA as METADATA, tiny_model, tiny_model_dir

MEAN = (120.0, 110.0, 100.0)


# ----------------------------------------------------------------------------- NumPy reference

def np_resize(x, size):
    """Bilinear, aligned corners, on [N, H, W, C]: out pixel i samples in at i*(in-1)/(out-1)."""
    for axis, out in zip((1, 2), size):
        n_in = x.shape[axis]
        src = np.arange(out) * ((n_in - 1) / (out - 1) if out > 1 else 0.0)
        lo = np.floor(src).astype(int)
        hi = np.minimum(lo + 1, n_in - 1)
        w = (src - lo).reshape([-1 if a == axis else 1 for a in range(4)])
        x = np.take(x, lo, axis) * (1 - w) + np.take(x, hi, axis) * w
    return x


def np_stub(x):
    """Logits that depend on each pixel, on its absolute position and on the image mean."""
    h, w = x.shape[1:3]
    rows, cols = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    mean = x.mean(axis=(1, 2, 3), keepdims=True)[..., 0]
    return np.stack([x[..., 0] / 60 - cols / 9,
                     x[..., 1] / 50 + rows / 7 - mean / 40,
                     x[..., 2] / 70 + cols / 11,
                     np.broadcast_to(mean / 30 - 2, x.shape[:3])], axis=-1)


def tf_stub(x, training=False):
    h, w = tf.shape(x)[1], tf.shape(x)[2]
    rows, cols = tf.meshgrid(tf.range(h), tf.range(w), indexing="ij")
    rows, cols = tf.cast(rows, tf.float32), tf.cast(cols, tf.float32)
    mean = tf.reduce_mean(x, axis=(1, 2, 3))[:, None, None]
    return tf.stack([x[..., 0] / 60 - cols / 9,
                     x[..., 1] / 50 + rows / 7 - mean / 40,
                     x[..., 2] / 70 + cols / 11,
                     tf.broadcast_to(mean / 30 - 2, tf.shape(x)[:3])], axis=-1)


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_protocol(images, os_, scales, flip, pad_to=(1, 1)):
    """The protocol written out step by step for one model call per (scale, flip)."""
    h, w = images.shape[1:3]
    total = 0
    for s in scales:
        size = (int((h - 1) * s) + 1, int((w - 1) * s) + 1)
        x = np_resize(images, size)
        for flipped in ([False, True] if flip else [False]):
            xi = x[:, :, ::-1] if flipped else x
            ph, pw = [-(-(max(n, p) - 1) // os_) * os_ + 1 for n, p in zip(size, pad_to)]
            padded = np.empty((len(xi), ph, pw, 3))
            padded[:] = MEAN
            padded[:, :size[0], :size[1]] = xi
            probs = np_softmax(np_stub(padded))[:, :size[0], :size[1]]
            total = total + np_resize(probs[:, :, ::-1] if flipped else probs, (h, w))
    return total / (len(scales) * (2 if flip else 1))


def _run(images, protocol):
    return predict_probabilities(tf_stub, tf.constant(images, tf.float32), protocol, 4,
                                 MEAN).numpy()


IMAGES = np.random.default_rng(0).uniform(0, 255, (2, 21, 30, 3))


@pytest.mark.parametrize("scales,flip,os_", [((1.0,), False, 8), ((1.0,), True, 8),
                                             ((0.5, 1.0, 1.75), True, 8),
                                             ((0.75, 1.25), False, 16)])
def test_protocol_matches_numpy(scales, flip, os_):
    got = _run(IMAGES, Protocol(output_stride=os_, scales=scales, flip=flip))
    want = np_protocol(IMAGES, os_, scales, flip)
    assert got.shape == (2, 21, 30, 4)
    np.testing.assert_allclose(got, want, atol=2e-5)


def test_flip_is_applied_at_a_single_scale():
    plain = _run(IMAGES, Protocol(scales=(1.0,)))
    flipped = _run(IMAGES, Protocol(scales=(1.0,), flip=True))
    assert np.abs(flipped - plain).max() > 0.05
    np.testing.assert_allclose(flipped, np_protocol(IMAGES, 8, (1.0,), True), atol=2e-5)


def test_probabilities_are_averaged_at_the_original_size():
    scales = (0.5, 1.5)
    got = _run(IMAGES, Protocol(scales=scales, flip=True))
    np.testing.assert_allclose(got.sum(-1), 1, atol=1e-5)
    # Averaging logits instead of probabilities gives a measurably different answer, so
    # the match with np_protocol pins down where and what is averaged.
    logits = np.log(np.stack([np_protocol(IMAGES, 8, (s,), True) for s in scales]))
    assert np.abs(np_softmax(logits.mean(0)) - got).max() > 1e-3
    np.testing.assert_allclose(got, np_protocol(IMAGES, 8, scales, True), atol=2e-5)


def test_fixed_pad_size_like_the_original():
    got = _run(IMAGES, Protocol(scales=(1.0,), pad_to=(33, 40)))
    np.testing.assert_allclose(got, np_protocol(IMAGES, 8, (1.0,), False, (33, 40)),
                               atol=2e-5)
    assert np.abs(got - _run(IMAGES, Protocol())).max() > 1e-3   # the image mean moved


def test_sliding_windows_average_overlaps_exactly():
    def pointwise(x, training=False):   # no context: every window must agree with the whole
        return tf.stack([x[..., 0] / 40, x[..., 1] / 30, x[..., 2] / 50, x[..., 0] * 0], -1)
    images = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, 70, 150, 3)),
                         tf.float32)
    options = dict(scales=(1.0, 1.5), flip=True)
    whole = predict_probabilities(pointwise, images, Protocol(**options), 4, MEAN)
    windows = predict_probabilities(pointwise, images, Protocol(max_side=33, **options), 4,
                                    MEAN)
    np.testing.assert_allclose(windows.numpy(), whole.numpy(), atol=1e-6)


def test_sliding_windows_agree_with_whole_image_on_deeplab():
    # No image pooling (global context that no window sees), one block4 unit and small ASPP
    # rates: the effective reach of this random model is ~100 pixels (measured), and
    # 321-pixel windows at a stride of 128 overlap by 193.
    tf.keras.utils.set_random_seed(3)
    model = tiny_model(4, image_pooling=False, output_stride=8, depths=(1, 1, 1, 1),
                       multi_grid=(1,), aspp_rates=(1, 2, 3))
    kernel, bias = model.get_layer("logits").get_weights()
    model.get_layer("logits").set_weights([kernel * 0.05, bias])
    image = tf.constant(read_image(VOC_SAMPLES / "JPEGImages" / "sample_0.jpg")[None],
                        tf.float32)
    whole = make_predictor(model, Protocol(output_stride=8))(image)
    windows = make_predictor(model, Protocol(output_stride=8, max_side=321,
                                             window_overlap=0.6))(image)
    labels_whole, labels_windows = np.argmax(whole, -1), np.argmax(windows, -1)
    assert image.shape[1:3] == (366, 500)   # 2 x 3 windows
    assert len(np.unique(labels_whole)) >= 2
    assert np.mean(labels_whole == labels_windows) >= 0.99


def test_one_trace_for_every_size():
    model = tiny_model(4)
    predict = make_predictor(model, Protocol(scales=(1.0,)))
    for h, w in [(17, 23), (40, 9), (33, 33)]:
        assert predict(tf.zeros([1, h, w, 3])).shape == (1, h, w, 4)
    assert predict.experimental_get_tracing_count() == 1


# ----------------------------------------------------------------------------- Segmenter

def test_segmenter_from_model_dir_any_size_and_mode(tmp_path):
    tiny_model_dir(tmp_path / "run")
    segmenter = Segmenter(tmp_path / "run", output_stride=16)
    assert segmenter.protocol.output_stride == 16 and segmenter.metadata == METADATA
    rgb = np.random.default_rng(2).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    labels, probs = segmenter.segment(rgb)
    assert labels.shape == (37, 51) and probs.shape == (37, 51, 4) and labels.dtype == np.int32
    np.testing.assert_array_equal(labels, probs.argmax(-1))
    # The same pixels as RGBA or as a PIL image give the same answer.
    rgba = np.concatenate([rgb, np.full((37, 51, 1), 7, np.uint8)], -1)
    np.testing.assert_array_equal(segmenter.segment(rgba)[0], labels)
    np.testing.assert_array_equal(segmenter.segment(Image.fromarray(rgb))[0], labels)
    gray_labels, _ = segmenter.segment(rgb[..., 0])
    assert gray_labels.shape == (37, 51)


def test_segmenter_rejects_other_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a SavedModel"):
        Segmenter(tmp_path)


def test_flag_values_parse_with_clear_errors():
    assert parse_scales(["0.5", "1"], "eval_scales") == (0.5, 1.0)
    assert parse_size("513") == (513, 513) and parse_size("65x97") == (65, 97)
    with pytest.raises(ValueError, match="--eval_scales=0.5,x: expected numbers"):
        parse_scales(["0.5", "x"], "eval_scales")
    with pytest.raises(ValueError, match="--pad_to='5x0'"):
        parse_size("5x0", "pad_to")


def test_protocol_rejects_bad_values():
    with pytest.raises(ValueError, match="scales"):
        Protocol(scales=(0.5, -1))
    with pytest.raises(ValueError, match="max_side"):
        Protocol(max_side=8)
    assert Protocol.from_config(configs.EvalConfig(), flip=True).flip
