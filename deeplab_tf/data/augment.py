"""Training augmentation of Sec. 4.1: random scale (0.5-2.0), pad, random crop, random flip.

The composition the original research/deeplab applies, one op after the other, is

    resize (image bilinear, label nearest, align_corners=True) by a random scale
    -> pad bottom/right to at least the crop size (image: mean pixel, label: 255)
    -> random crop -> random left-right flip

`scale_crop_flip` produces exactly that result (labels bit for bit, images up to float
rounding) without materializing the scaled image: the crop window is mapped back to the
source and only the crop_h x crop_w output pixels are interpolated, in one fused
`crop_and_resize` (whose flipped box also does the flip) for the image and two gathers
for the label. At scale 2 this avoids resampling four times the source area.

Randomness comes from stateless ops only: the same `seed` (a [2] int tensor) gives the
same augmentation, eagerly or inside tf.data, in any order or process.
"""
import tensorflow as tf

# Caffe's ImageNet mean RGB: the pixel that normalizes to zero, what padding should be.
MEAN_RGB = (123.68, 116.779, 103.939)
IGNORE_LABEL = 255


def _pair(size):
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


def _nearest_indices(out_index, in_size, out_size):
    """Source index of `resize_nearest_neighbor(align_corners=True)`: roundf(i * scale) in
    float32, as TF's kernel computes it (round half away from zero, not tf.round's even)."""
    scale = tf.cast(in_size - 1, tf.float32) / tf.cast(tf.maximum(out_size - 1, 1), tf.float32)
    x = tf.cast(out_index, tf.float32) * scale
    r = tf.floor(x)
    r = r + tf.cast(x - r >= 0.5, tf.float32)
    return tf.minimum(tf.cast(r, tf.int32), in_size - 1)


def scale_crop_flip(image, label, scale, offset, flip, crop_size,
                    pad_value=MEAN_RGB, ignore_label=IGNORE_LABEL):
    """Resize by `scale`, pad to `crop_size`, crop at `offset`, flip: the deterministic core.

    Args:
      image: [H, W, 3] uint8 or float (raw 0-255).
      label: [H, W, 1] integer class ids.
      scale: scalar float; the scaled size is `scaled_size(H, W, scale)`.
      offset: [2] int32 (y, x) of the crop in the padded scaled image; valid offsets are
        0..max(scaled - crop, 0) per axis.
      flip: scalar bool, left-right flip after the crop.
      crop_size: int or (crop_h, crop_w).
      pad_value: RGB of padded pixels (the mean pixel, which normalizes to zero).
      ignore_label: label of padded pixels.
    Returns:
      (image float32 [crop_h, crop_w, 3], label [crop_h, crop_w, 1] of label's dtype).
    """
    ch, cw = _pair(crop_size)
    shape = tf.shape(image)
    h, w = shape[0], shape[1]
    sh, sw = scaled_size(h, w, scale)
    oy, ox = offset[0], offset[1]
    rows = oy + tf.range(ch)                 # indices into the padded scaled image
    cols = ox + tf.range(cw)
    cols = tf.where(flip, tf.reverse(cols, [0]), cols)
    valid = (rows < sh)[:, None] & (cols < sw)[None, :]

    # Label: nearest neighbour by index arithmetic, bit-exact with resize_nearest_neighbor.
    ry = _nearest_indices(tf.minimum(rows, sh - 1), h, sh)
    rx = _nearest_indices(tf.minimum(cols, sw - 1), w, sw)
    lab = tf.gather(tf.gather(label, ry, axis=0), rx, axis=1)
    lab = tf.where(valid[..., None], lab, tf.cast(ignore_label, label.dtype))

    # Image: scaled pixel i sits at source i * (H-1)/(sH-1) (align_corners). The box maps
    # the crop's first and last pixel; a flip is a box with x1 > x2. Coordinates shrink by
    # 1e-6 towards the centre so the first and last source pixels stay inside under float
    # rounding (outside, crop_and_resize would extrapolate).
    def norm(i, size):
        return 1e-6 + tf.cast(i, tf.float32) * ((1 - 2e-6) / tf.cast(tf.maximum(size - 1, 1),
                                                                   tf.float32))

    y1, y2 = norm(oy, sh), norm(oy + ch - 1, sh)
    x1, x2 = norm(ox, sw), norm(ox + cw - 1, sw)
    x1, x2 = tf.where(flip, x2, x1), tf.where(flip, x1, x2)
    box = tf.stack([y1, x1, y2, x2])[None]
    img = tf.image.crop_and_resize(image[None], box, [0], [ch, cw], method="bilinear")[0]
    pad = tf.constant(pad_value, tf.float32, [3])
    img = tf.where(valid[..., None], img, pad)
    return img, lab


def random_scale_crop_flip(image, label, seed, crop_size=513, min_scale=0.5, max_scale=2.0,
                           scale_step=0.25, flip=True, pad_value=MEAN_RGB,
                           ignore_label=IGNORE_LABEL):
    """Sec. 4.1's augmentation with every random choice drawn statelessly from `seed`.

    Args:
      image: [H, W, 3] uint8 or float; label: [H, W, 1] integer.
      seed: [2] int32/int64 tensor (e.g. from `tf.random.experimental.stateless_fold_in`).
      crop_size: int or (h, w); 513 in the paper (Sec. 4.1 "Crop size").
      min_scale, max_scale, scale_step: see `sample_scale`; paper 0.5, 2.0.
      flip: random left-right flip with probability 1/2.
      pad_value, ignore_label: what padding is filled with.
    Returns:
      (image float32 [crop_h, crop_w, 3] raw 0-255, label [crop_h, crop_w, 1]).
    """
    ch, cw = _pair(crop_size)
    seeds = tf.random.experimental.stateless_split(seed, 4)
    scale = sample_scale(seeds[0], min_scale, max_scale, scale_step)
    shape = tf.shape(image)
    sh, sw = scaled_size(shape[0], shape[1], scale)
    oy = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(sh - ch, 0) + 1, tf.int32)
    ox = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(sw - cw, 0) + 1, tf.int32)
    do_flip = tf.constant(False)
    if flip:
        do_flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
    return scale_crop_flip(image, label, scale, tf.stack([oy, ox]), do_flip, (ch, cw),
                           pad_value, ignore_label)


def reference_scale_crop_flip(image, label, scale, offset, flip, crop_size,
                              pad_value=MEAN_RGB, ignore_label=IGNORE_LABEL):
    """The same result the slow, obvious way (resize whole, pad, crop, flip), as the
    original implementation does it; for tests and the benchmark's baseline."""
    ch, cw = _pair(crop_size)
    shape = tf.shape(image)
    sh, sw = scaled_size(shape[0], shape[1], scale)
    img = tf.compat.v1.image.resize_bilinear(tf.cast(image, tf.float32)[None], [sh, sw],
                                             align_corners=True)[0]
    lab = tf.compat.v1.image.resize_nearest_neighbor(label[None], [sh, sw],
                                                     align_corners=True)[0]
    ph, pw = tf.maximum(sh, ch), tf.maximum(sw, cw)
    pad = tf.constant(pad_value, tf.float32, [1, 1, 3])
    img = tf.pad(img - pad, [[0, ph - sh], [0, pw - sw], [0, 0]]) + pad
    lab = tf.pad(lab, [[0, ph - sh], [0, pw - sw], [0, 0]], constant_values=ignore_label)
    img = img[offset[0]:offset[0] + ch, offset[1]:offset[1] + cw]
    lab = lab[offset[0]:offset[0] + ch, offset[1]:offset[1] + cw]
    img = tf.cond(flip, lambda: tf.reverse(img, [1]), lambda: img)
    lab = tf.cond(flip, lambda: tf.reverse(lab, [1]), lambda: lab)
    return img, lab
