"""Augmentation (Sec. 4.1): scale, pad, crop, flip; every check eagerly AND inside tf.data.

Alignment is checked against a label computed from the image (the red channel encodes
the class of big flat regions); the resampling against a NumPy implementation of
bilinear/nearest align-corners sampling; the crop geometry against where the original
(resize whole, pad, crop) samples.
"""
import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf.data import augment

PAD = augment.MEAN_RGB


def _run(fn, *args, graph):
    """fn(*args) eagerly, or as a tf.data map (the graph mode the pipeline uses)."""
    if not graph:
        return tf.nest.map_structure(lambda t: t.numpy(), fn(*args))
    ds = tf.data.Dataset.from_tensors(tuple(args)).map(fn)
    return next(iter(ds.as_numpy_iterator()))


def _regions(h, w, rng, num_classes=6):
    """Label of flat rectangles (>= 10 px), and an image whose red channel is 20 * class + 10
    (green/blue random, away from the pad value), so the class is readable from the image."""
    label = np.zeros((h, w), np.uint8)
    for _ in range(8):
        y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
        label[y0:y0 + rng.integers(10, h), x0:x0 + rng.integers(10, w)] = rng.integers(0, num_classes)
    image = np.stack([20 * label + 10, rng.integers(0, 60, (h, w)), rng.integers(0, 60, (h, w))],
                     -1).astype(np.uint8)
    return image, label[..., None]


def _uniform_5x5(label):
    """Pixels whose 5x5 neighbourhood (in the output, inside the crop) holds one label."""
    h, w = label.shape
    p = np.pad(label.astype(np.int16), 2, constant_values=-1)
    same = np.ones((h, w), bool)
    for dy in range(5):
        for dx in range(5):
            same &= p[dy:dy + h, dx:dx + w] == label
    return same



@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.data"])
def test_labels_keep_values_and_align_with_image(graph):
    rng = np.random.default_rng(0)
    checked = 0
    for trial in range(8 if graph else 12):
        h, w = rng.integers(40, 120, 2)
        image, label = _regions(h, w, rng)
        crop = (int(rng.integers(30, 160)), int(rng.integers(30, 160)))
        img, lab = _run(lambda i, l, s: augment.random_scale_crop_flip(
            i, l, s, crop, scale_step=0.0), image, label,
            tf.constant([trial, 7], tf.int64), graph=graph)
        assert img.shape == crop + (3,) and lab.shape == crop + (1,)
        assert img.dtype == np.float32 and lab.dtype == np.uint8
        assert set(np.unique(lab)) <= set(np.unique(label)) | {255}
        lab = lab[..., 0]
        padded = lab == 255  # the source has no 255: all of it is padding
        np.testing.assert_allclose(img[padded], np.broadcast_to(PAD, img[padded].shape))
        assert not np.isclose(img[~padded], PAD).all(-1).any()
        # Away from region borders the image's red channel tells the label exactly.
        inner = _uniform_5x5(lab) & ~padded
        np.testing.assert_allclose(img[..., 0][inner], 20.0 * lab[inner] + 10, atol=0.01)
        checked += inner.sum()
    assert checked > 10000




def _numpy_apply_crop(image, label, c, crop):
    """NumPy reference: flip the window, sample it at y0 + i * (y1 - y0) / (vis_h - 1)
    (bilinear in float64; nearest rounding half away from zero in float32, as TF's
    align_corners kernels), pad bottom and right (left after a flip)."""
    win_i = image[c["y0"]:c["y1"] + 1, c["x0"]:c["x1"] + 1].astype(np.float64)
    win_l = label[c["y0"]:c["y1"] + 1, c["x0"]:c["x1"] + 1, 0]
    if c["flip"]:
        win_i, win_l = win_i[:, ::-1], win_l[:, ::-1]
    (nh, nw), vh, vw = win_l.shape, c["vis_h"], c["vis_w"]
    y = np.arange(vh) * ((nh - 1) / max(vh - 1, 1))
    x = np.arange(vw) * ((nw - 1) / max(vw - 1, 1))
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, nh - 1), np.minimum(x0 + 1, nw - 1)
    dy, dx = (y - y0)[:, None, None], (x - x0)[None, :, None]
    top = win_i[y0][:, x0] * (1 - dx) + win_i[y0][:, x1] * dx
    bottom = win_i[y1][:, x0] * (1 - dx) + win_i[y1][:, x1] * dx
    img = top * (1 - dy) + bottom * dy

    def near(n, m):
        step = np.float32(n - 1) / np.float32(max(m - 1, 1))
        pos = np.arange(m, dtype=np.float32) * step
        return np.minimum(np.floor(pos + np.float32(0.5)).astype(int), n - 1)

    lab = win_l[near(nh, vh)][:, near(nw, vw)]
    out_i = np.empty(crop + (3,))
    out_i[:] = PAD
    out_l = np.full(crop, 255, np.uint8)
    cols = slice(crop[1] - vw, crop[1]) if c["flip"] else slice(0, vw)
    out_i[:vh, cols], out_l[:vh, cols] = img, lab
    return out_i, out_l[..., None]


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.data"])
def test_resampling_matches_numpy_reference(graph):
    rng = np.random.default_rng(1)
    for trial in range(8 if graph else 16):
        h, w = (int(v) for v in rng.integers(2, 90, 2))
        image = rng.integers(0, 256, (h, w, 3)).astype(np.uint8)
        label = rng.integers(0, 21, (h, w, 1)).astype(np.uint8)
        crop = (int(rng.integers(1, 120)), int(rng.integers(1, 120)))
        seed = tf.constant([trial, 5], tf.int64)
        c = {k: v.numpy() for k, v in augment.sample_crop(
            seed, h, w, crop, 0.3, 3.0, 0.0).items()}
        img, lab = _run(lambda i, l, s: augment.random_scale_crop_flip(
            i, l, s, crop, 0.3, 3.0, 0.0), image, label, seed, graph=graph)
        ref_img, ref_lab = _numpy_apply_crop(image, label, c, crop)
        np.testing.assert_array_equal(lab, ref_lab)
        np.testing.assert_allclose(img, ref_img, atol=0.01)


def test_crop_geometry_follows_the_original_resize_pad_crop():
    """Output row i of the visible part samples source y0 + i (y1 - y0) / (vis_h - 1);
    the original samples (offset + i) (H - 1) / (sH - 1): within half a source pixel
    (so the scale is off by at most one source pixel over the crop); the visible size
    is the original's."""
    rng = np.random.default_rng(4)
    for _ in range(300):
        size = int(rng.integers(2, 800))
        scale = float(rng.uniform(0.25, 3.0))
        crop = int(rng.integers(1, 600))
        scaled = int(augment.scaled_size(size, size, scale)[0])
        offset = int(rng.integers(0, max(scaled - crop, 0) + 1))
        c = {k: int(v) for k, v in augment.crop_window(
            size, size, scale, tf.constant([offset, offset]), crop).items()}
        vis = c["vis_h"]
        assert vis == min(crop, scaled - offset) and 0 <= c["y0"] <= c["y1"] < size
        i = np.arange(vis)
        ours = c["y0"] + i * (c["y1"] - c["y0"]) / max(vis - 1, 1)
        original = (offset + i) * (size - 1) / max(scaled - 1, 1)
        assert np.abs(ours - original).max() <= 0.5 + 1e-3


def test_padding_and_flip_positions():
    """A 20x30 window shown 1:1 in a 32x48 crop: the bottom 12 rows and the right 18
    columns are padding (the left 18 after a flip), and the flip mirrors the content."""
    image = np.random.default_rng(2).integers(0, 256, (20, 30, 3)).astype(np.uint8)
    label = np.full((20, 30, 1), 3, np.uint8)
    crop = {k: tf.constant(v) for k, v in dict(y0=0, y1=19, x0=0, x1=29, vis_h=20,
                                                vis_w=30).items()}
    img, lab = augment.apply_crop(image, label, dict(crop, flip=tf.constant(False)), (32, 48))
    img_f, lab_f = augment.apply_crop(image, label, dict(crop, flip=tf.constant(True)), (32, 48))
    for im, lb, cols in ((img, lab, slice(0, 30)), (img_f, lab_f, slice(18, 48))):
        expect = np.full((32, 48), 255)
        expect[:20, cols] = 3
        np.testing.assert_array_equal(lb.numpy()[..., 0], expect)
        np.testing.assert_allclose(im.numpy()[expect == 255],
                                   np.tile(PAD, (32 * 48 - 20 * 30, 1)))
    np.testing.assert_allclose(img.numpy()[:20, :30], image, atol=1e-3)
    np.testing.assert_allclose(img_f.numpy()[:20, 18:], image[:, ::-1], atol=1e-3)


@pytest.mark.parametrize("graph", [False, True], ids=["eager", "tf.data"])
def test_same_seed_same_result_and_seeds_differ(graph):
    image, label = _regions(70, 90, np.random.default_rng(3))
    fn = lambda i, l, s: augment.random_scale_crop_flip(i, l, s, 64)
    a = _run(fn, image, label, tf.constant([1, 2], tf.int64), graph=graph)
    b = _run(fn, image, label, tf.constant([1, 2], tf.int64), graph=graph)
    c = _run(fn, image, label, tf.constant([1, 3], tf.int64), graph=graph)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    other = _run(fn, image, label, tf.constant([1, 2], tf.int64), graph=not graph)
    np.testing.assert_array_equal(a[0], other[0])  # eager and graph draw the same


def test_scale_distribution():
    seeds = [tf.constant([i, 0], tf.int64) for i in range(200)]
    stepped = {round(float(augment.sample_scale(s, 0.5, 2.0, 0.25)), 6) for s in seeds}
    assert stepped == {0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0}
    cont = np.array([float(augment.sample_scale(s, 0.5, 2.0, 0.0)) for s in seeds])
    assert cont.min() >= 0.5 and cont.max() <= 2.0 and len(np.unique(cont)) == 200
    assert float(augment.sample_scale(seeds[0], 1.0, 1.0)) == 1.0
    # Flip happens about half of the time.
    image = np.arange(2 * 8 * 3, dtype=np.uint8).reshape(2, 8, 3)
    label = np.zeros((2, 8, 1), np.uint8)
    flips = [augment.random_scale_crop_flip(image, label, s, (2, 8), 1.0, 1.0)[0][0, 0, 0] > 1
             for s in seeds[:200]]
    assert 70 < sum(bool(f) for f in flips) < 130
