"""Training augmentation of Sec. 4.1: random scale (0.5-2.0), pad, random crop, random flip.

The original research/deeplab resizes the whole image by a random scale (bilinear for the
image, nearest for the label, align_corners), pads it bottom/right to the crop size (mean
pixel, label 255), crops at a random offset and flips left-right at random. Here the
random choices are the same (scale on the same grid, offset uniform over the same range
of the scaled image), but the crop is mapped back to a WINDOW of the source first and
only that window is resized, straight to the visible part of the crop:

    window (y0..y1, x0..x1 of the source) --flip--> resize to (vis_h, vis_w) --> pad

so at scale 2 a quarter of the source is decoded and resized instead of the whole image
resized to four times its area, and a JPEG can be decoded cropped
(`tf.io.decode_and_crop_jpeg`). Output pixel i of the visible part samples source row
y0 + i * (y1 - y0) / (vis_h - 1): within half a source pixel of where the original
samples it (the window has integer corners), so the scale is off by at most one source
pixel over the crop (0.4% for a 513 crop at scale 2). Image and label
are sampled at exactly the same coordinates (bilinear vs nearest, `_nearest_indices`).

Randomness comes from stateless ops only: the same `seed` (a [2] int tensor) gives the
same crop, eagerly or inside tf.data, in any order or process.
"""
import tensorflow as tf

# Caffe's ImageNet mean RGB: the pixel that normalizes to zero, what padding should be.
MEAN_RGB = (123.68, 116.779, 103.939)
IGNORE_LABEL = 255


def crop_pair(size):
    """(h, w) of an int or a pair."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def sample_scale(seed, min_scale=0.5, max_scale=2.0, scale_step=0.25):
    """A random scale in [min_scale, max_scale]: on a grid of `scale_step` (the original's
    `scale_factor_step_size`, 0.25 for VOC), or continuous if scale_step is 0."""
    if min_scale == max_scale:
        return tf.constant(float(min_scale), tf.float32)
    if scale_step > 0:
        num = int(round((max_scale - min_scale) / scale_step)) + 1
        k = tf.random.stateless_uniform([], seed, 0, num, dtype=tf.int32)
        return tf.cast(min_scale, tf.float32) + tf.cast(k, tf.float32) * float(scale_step)
    return tf.random.stateless_uniform([], seed, float(min_scale), float(max_scale))


def scaled_size(height, width, scale):
    """Size of an image resized by `scale`, truncated as in the original (at least 1)."""
    h = tf.maximum(tf.cast(tf.cast(height, tf.float32) * scale, tf.int32), 1)
    w = tf.maximum(tf.cast(tf.cast(width, tf.float32) * scale, tf.int32), 1)
    return h, w


def _window_1d(size, scaled, offset, crop):
    """Source window [lo, hi] and visible output length along one axis: the source
    positions of the first and last visible pixel, rounded (so within half a pixel)."""
    visible = tf.minimum(crop, scaled - offset)
    step = tf.cast(size - 1, tf.float32) / tf.cast(tf.maximum(scaled - 1, 1), tf.float32)
    at = lambda i: tf.cast(tf.round(tf.cast(i, tf.float32) * step), tf.int32)
    hi = tf.minimum(size - 1, at(offset + visible - 1))
    return tf.minimum(at(offset), hi), hi, visible


def crop_window(height, width, scale, offset, crop_size):
    """The source window and visible size of the crop at `offset` (y, x) of the image
    scaled by `scale` (offsets in 0..max(scaled - crop, 0)).

    Returns a dict of int32 scalars: y0, y1, x0, x1 (inclusive source corners) and
    vis_h, vis_w (the crop's rows/columns that show image; the rest is padding).
    """
    ch, cw = crop_pair(crop_size)
    sh, sw = scaled_size(height, width, scale)
    y0, y1, vh = _window_1d(height, sh, offset[0], ch)
    x0, x1, vw = _window_1d(width, sw, offset[1], cw)
    return {"y0": y0, "y1": y1, "x0": x0, "x1": x1, "vis_h": vh, "vis_w": vw}


def sample_crop(seed, height, width, crop_size=513, min_scale=0.5, max_scale=2.0,
                scale_step=0.25, flip=True):
    """Random scale, crop offset and flip (Sec. 4.1) for an image of the given size, as
    `crop_window`'s dict plus "flip" (bool) and "scale". Needs only the size, so a JPEG
    can be decoded cropped to the window."""
    ch, cw = crop_pair(crop_size)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    scale = sample_scale(seeds[0], min_scale, max_scale, scale_step)
    sh, sw = scaled_size(height, width, scale)
    oy = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(sh - ch, 0) + 1, tf.int32)
    ox = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(sw - cw, 0) + 1, tf.int32)
    crop = crop_window(height, width, scale, tf.stack([oy, ox]), (ch, cw))
    crop["flip"] = (tf.random.stateless_uniform([], seeds[3]) < 0.5) if flip else tf.constant(False)
    crop["scale"] = scale
    return crop


def _nearest_indices(out_size, in_size):
    """Source indices of `resize_nearest_neighbor(align_corners=True)`: roundf(i * scale)
    in float32 as TF's kernel computes it, so labels follow the bilinear image exactly."""
    scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
    x = tf.cast(tf.range(out_size), tf.float32) * scale
    r = tf.floor(x)
    r = r + tf.cast(x - r >= 0.5, tf.float32)  # half away from zero, not tf.round's even
    return tf.minimum(tf.cast(r, tf.int32), in_size - 1)


def _pad(x, crop_h, crop_w, flip, value):
    # Concatenating constant blocks (per-channel values rule out tf.pad), each only when
    # needed: at larger scales the crop is all image and this costs nothing. After a
    # flip the padding is on the left.
    h, w = tf.shape(x)[0], tf.shape(x)[1]
    fill = lambda rows, cols: tf.broadcast_to(value, tf.stack([rows, cols, tf.shape(x)[2]]))

    def pad_width(x):
        right = fill(h, crop_w - w)
        return tf.cond(flip, lambda: tf.concat([right, x], 1), lambda: tf.concat([x, right], 1))

    x = tf.cond(w < crop_w, lambda: pad_width(x), lambda: x)
    return tf.cond(h < crop_h, lambda: tf.concat([x, fill(crop_h - h, crop_w)], 0), lambda: x)


def apply_crop(image_window, label_window, crop, crop_size, pad_value=MEAN_RGB,
               ignore_label=IGNORE_LABEL):
    """Resizes the source window (already cut to crop's y0..y1, x0..x1) to the visible
    size, flips if crop["flip"], pads to `crop_size`.

    Args:
      image_window: [y1-y0+1, x1-x0+1, 3] uint8 or float (raw 0-255).
      label_window: [y1-y0+1, x1-x0+1, 1] integer class ids.
      crop: a `sample_crop` / `crop_window` dict (with "flip").
    Returns:
      (image float32 [crop_h, crop_w, 3], label [crop_h, crop_w, 1] of label's dtype).
    """
    ch, cw = crop_pair(crop_size)
    vh, vw, flip = crop["vis_h"], crop["vis_w"], crop["flip"]
    # Flipping the (small, uint8) window equals flipping the resized output. The label's
    # flip is folded into its column indices (tf.reverse of a 1-channel uint8 tensor costs
    # more than all the rest of the label's resampling).
    image_window = tf.cond(flip, lambda: tf.reverse(image_window, [1]), lambda: image_window)
    # The kernel computes in float32 whatever its input; fed float32 it runs 1.8x faster
    # than fed uint8 (same output, bit for bit).
    # At scale 1 the window is already the visible size: resizing would be the identity.
    image = tf.cast(image_window, tf.float32)
    image = tf.cond(
        tf.reduce_all(tf.shape(image)[:2] == tf.stack([vh, vw])), lambda: image,
        lambda: tf.raw_ops.ResizeBilinear(images=image[None], size=tf.stack([vh, vw]),
                                          align_corners=True)[0])
    lab = label_window[..., 0]
    lab = tf.gather(lab, _nearest_indices(vh, tf.shape(lab)[0]), axis=0)
    # Gathering rows of the transpose is several times faster than gathering columns.
    width = tf.shape(lab)[1]
    cols = _nearest_indices(vw, width)
    cols = tf.where(flip, width - 1 - cols, cols)
    lab = tf.transpose(tf.gather(tf.transpose(lab), cols))
    image = _pad(image, ch, cw, flip, tf.constant(pad_value, tf.float32))
    label = _pad(lab[..., None], ch, cw, flip, tf.constant([ignore_label], label_window.dtype))
    return tf.ensure_shape(image, [ch, cw, 3]), tf.ensure_shape(label, [ch, cw, 1])


def random_scale_crop_flip(image, label, seed, crop_size=513, min_scale=0.5, max_scale=2.0,
                           scale_step=0.25, flip=True, pad_value=MEAN_RGB,
                           ignore_label=IGNORE_LABEL):
    """Sec. 4.1's augmentation of a decoded image, every random choice drawn statelessly
    from `seed` ([2] int tensor). Returns (image float32 [h, w, 3], label [h, w, 1])."""
    shape = tf.shape(image)
    crop = sample_crop(seed, shape[0], shape[1], crop_size, min_scale, max_scale,
                       scale_step, flip)
    window = (slice(crop["y0"], crop["y1"] + 1), slice(crop["x0"], crop["x1"] + 1))
    return apply_crop(image[window], label[window], crop, crop_size, pad_value, ignore_label)
