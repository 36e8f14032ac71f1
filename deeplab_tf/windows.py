"""Sliding-window prediction for images whose padded side exceeds `Protocol.max_side`
(inference.py, step 4): overlapping windows of at most max_side pixels at offsets that
are multiples of the output stride, their probabilities averaged where they overlap,
weighted down towards each window's cut edges."""
import tensorflow as tf


def window_plan(side, output_stride, max_side, overlap):
    """(window side, stride, count) along one padded side (OS*k+1) of the image."""
    window = output_stride * ((max_side - 1) // output_stride) + 1
    stride = output_stride * max(1, int(round((window - 1) * (1 - overlap) / output_stride)))
    count = tf.where(side <= window, 1, (side - window + stride - 1) // stride + 1)
    return tf.minimum(side, window), stride, count


def window_weights(offset, window, side, ramp):
    """1-D weights of a window: 1 inside, falling over `ramp` pixels (the overlap) towards
    an edge that lies inside the image, where the window's view is cut off, but not towards
    the image's own border, which every window sees alike.

    The ramp is squared: near its cut edge a window's context is missing, so its
    prediction there should count little next to a neighbour that sees the pixel from
    inside. On a tiny random DeepLab (tests/test_inference.py), uniform weights left ~7% of
    the pixels disagreeing with whole-image inference, linear ramps ~2%, squared ~0.5%.
    """
    t = tf.range(window, dtype=tf.float32)
    ramp = float(ramp + 1)
    left = tf.where(offset > 0, tf.minimum(1.0, (t + 1) / ramp), 1.0)
    right = tf.where(offset + window < side,
                     tf.minimum(1.0, (tf.cast(window, tf.float32) - t) / ramp), 1.0)
    return tf.square(left * right)


def windowed_probabilities(model, x, protocol, num_classes):
    """Softmax of the model on padded images x, by overlapping windows above max_side."""
    def window_probs(crop):
        return tf.nn.softmax(tf.cast(model(crop, training=False), tf.float32))

    if protocol.max_side is None:
        return window_probs(x)
    shape = tf.shape(x)
    os_, side, overlap = protocol.output_stride, protocol.max_side, protocol.window_overlap
    win_h, stride_h, n_h = window_plan(shape[1], os_, side, overlap)
    win_w, stride_w, n_w = window_plan(shape[2], os_, side, overlap)
    # Overlap lengths of full windows; where a side has one window no ramp applies.
    full = os_ * ((side - 1) // os_) + 1
    ramp_h, ramp_w = full - stride_h, full - stride_w

    def body(i, total, count):
        # Offsets are multiples of OS (the last one too: both sides are OS*k+1), so every
        # window's feature grid coincides with the whole image's.
        y0 = tf.minimum((i // n_w) * stride_h, shape[1] - win_h)
        x0 = tf.minimum((i % n_w) * stride_w, shape[2] - win_w)
        probs = window_probs(x[:, y0:y0 + win_h, x0:x0 + win_w])
        weights = (window_weights(y0, win_h, shape[1], ramp_h)[None, :, None, None]
                   * window_weights(x0, win_w, shape[2], ramp_w)[None, None, :, None])
        pads = [[0, 0], [y0, shape[1] - y0 - win_h], [x0, shape[2] - x0 - win_w], [0, 0]]
        return (i + 1, total + tf.pad(probs * weights, pads), count + tf.pad(weights, pads))

    total = tf.zeros(tf.concat([shape[:3], [num_classes]], 0))
    count = tf.zeros(tf.concat([[1], shape[1:3], [1]], 0))
    _, total, count = tf.while_loop(lambda i, *_: i < n_h * n_w, body,
                                    (tf.constant(0), total, count))
    return total / count
