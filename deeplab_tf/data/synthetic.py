"""A generated segmentation dataset: the embedded default of the quickstart and the tests.

Each image is a textured background with a few objects of four classes. A class is a
SHAPE filled with a TEXTURE (striped discs, checkered squares, dotted triangles, gridded
crosses); the two colours of every texture, object or background, are drawn from one
distribution (a random hue and a darker shade of it), so a pixel's colour says nothing
about its class. Distractors (solid or
speckled shapes of every class shape, camouflage blobs) are labelled background, so shape
alone does not decide either: the class is visible only in a neighbourhood of a texture
period or more (4-9 px) - context, the thing atrous convolution (Sec. 3.1) buys cheaply.
Object sizes are log-uniform over a 10x range (Sec. 1: objects at multiple scales).

Pure NumPy, deterministic: every example draws from its own generator seeded by
(seed, split, index), so splits never share examples and any example can be regenerated
alone.
"""
import zlib

import numpy as np

from deeplab_tf.data.metadata import IGNORE_LABEL, DatasetMetadata

SYNTHETIC_METADATA = DatasetMetadata(
    name="synthetic",
    class_names=("background", "striped_disc", "checkered_square", "dotted_triangle",
                 "gridded_cross"),
    colors=((0, 0, 0), (230, 25, 75), (60, 180, 75), (0, 130, 200), (255, 225, 25)),
)
DEFAULT_SPLIT_SIZES = {"train": 1000, "val": 200}
DEFAULT_IMAGE_SIZE = (128, 128)

# Object size in pixels (square root of its area), log-uniform: a 10x range.
MIN_SIZE, MAX_SIZE = 9.0, 90.0
# Texture period in pixels; at most size / 2.5 so a small object still shows two periods.
MIN_PERIOD, MAX_PERIOD = 4.0, 9.0
# Brightness of a texture's dark colour relative to its light one.
DARK_MIN, DARK_MAX = 0.15, 0.5
# Objects per image, [low, high); about 30% of the pixels end up in objects.
N_OBJECTS = (3, 7)

_SHAPES = ("disc", "square", "triangle", "cross")      # shape of class id 1..4
_TEXTURES = ("stripes", "checker", "dots", "grid")     # texture of class id 1..4
_SPLIT_IDS = {"train": 0, "val": 1, "test": 2, "trainval": 3}


def split_id(split):
    """A stable integer per split name (crc32 for names outside the usual four)."""
    return _SPLIT_IDS.get(split, zlib.crc32(split.encode("utf-8")) + 16)


def example_rng(seed, split, index):
    """The generator of one example, keyed by (seed, split, index)."""
    return np.random.default_rng([int(seed), split_id(split), int(index)])


def _colour_pair(rng):
    # Same distribution for background and every class: a random hue at a random bright
    # level and a darker shade of it. The texture is a luminance pattern (what small conv
    # filters pick up fastest); the hue carries no information.
    c = rng.uniform(0, 255, 3)
    c *= rng.uniform(150, 255) / max(c.max(), 1.0)
    dark = c * rng.uniform(DARK_MIN, DARK_MAX)
    return (c, dark) if rng.random() < 0.5 else (dark, c)


def _interp_matrix(n_out, n_in):
    """(n_out, n_in) linear-interpolation matrix: smooth fields as two small matmuls."""
    t = np.linspace(0, n_in - 1, n_out)
    i0 = np.minimum(np.floor(t).astype(int), n_in - 2)
    w = t - i0
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), i0] = 1 - w
    m[np.arange(n_out), i0 + 1] = w
    return m


def _smooth_field(rng, h, w, cell):
    gh, gw = max(2, int(h / cell) + 2), max(2, int(w / cell) + 2)
    return _interp_matrix(h, gh) @ rng.standard_normal((gh, gw)) @ _interp_matrix(w, gw).T


def sample_layout(rng, image_size):
    """Draws the objects of one image, largest first (painting order).

    Returns a list of dicts: kind ("object" or a distractor kind), class_id (0 for
    distractors), shape, size (px), centre (cy, cx), angle, period, texture_angle.
    """
    h, w = image_size
    n_obj, n_dis = int(rng.integers(*N_OBJECTS)), int(rng.integers(1, 4))
    items = []
    for i in range(n_obj + n_dis):
        size = float(np.exp(rng.uniform(np.log(MIN_SIZE), np.log(MAX_SIZE))))
        item = {
            "size": size,
            "centre": (rng.uniform(0, h), rng.uniform(0, w)),
            "angle": rng.uniform(0, 2 * np.pi),
            "period": min(rng.uniform(MIN_PERIOD, MAX_PERIOD), max(MIN_PERIOD, size / 2.5)),
            # Axis-aligned textures (stripes either way): rotated ones took a small
            # CNN several times longer to learn, past the quickstart's few minutes.
            "texture_angle": float(rng.integers(0, 2)) * np.pi / 2,
            "colours": _colour_pair(rng),
        }
        if i < n_obj:
            cid = int(rng.integers(1, len(_SHAPES) + 1))
            item.update(kind="object", class_id=cid, shape=_SHAPES[cid - 1])
        else:
            item.update(kind=("solid", "speckle", "camo")[int(rng.integers(0, 3))], class_id=0,
                        shape=_SHAPES[int(rng.integers(0, len(_SHAPES)))])
        items.append(item)
    items.sort(key=lambda it: -it["size"])
    return items


# Circumradius / sqrt(area) of each shape at unit area, so that `size` (sqrt of the area)
# means the same amount of pixels for every class.
_ARM = 0.36  # half-width of a cross arm relative to its half-length
_RADIUS_PER_SIZE = {
    "disc": 1 / np.sqrt(np.pi),
    "square": np.sqrt(0.5),
    "triangle": 1 / np.sqrt(3 * np.sqrt(3) / 4),
    "cross": 1 / np.sqrt(2 * 4 * _ARM - 4 * _ARM ** 2) * np.sqrt(1 + _ARM ** 2),
}


def _shape_mask(shape, dy, dx, size, angle):
    # (dy, dx): offsets from the centre over the object's bounding box.
    c, s = np.cos(angle), np.sin(angle)
    a, b = dx * c + dy * s, -dx * s + dy * c
    r = size * _RADIUS_PER_SIZE[shape]
    if shape == "disc":
        return a * a + b * b <= r * r
    if shape == "square":
        return np.maximum(np.abs(a), np.abs(b)) <= r * np.sqrt(0.5)
    if shape == "triangle":  # equilateral, circumradius r: three half-planes at apothem r/2
        inside = np.ones(a.shape, bool)
        for k in range(3):
            t = 2 * np.pi * k / 3
            inside &= a * np.cos(t) + b * np.sin(t) <= r / 2
        return inside
    if shape == "cross":
        half = r / np.sqrt(1 + _ARM ** 2)
        arm = half * _ARM
        return (((np.abs(a) <= half) & (np.abs(b) <= arm))
                | ((np.abs(b) <= half) & (np.abs(a) <= arm)))
    raise ValueError(shape)


def _texture(texture, dy, dx, period, angle, phase):
    """Boolean pattern (True = second colour) in texture coordinates rotated by angle."""
    c, s = np.cos(angle), np.sin(angle)
    u = (dx * c + dy * s) / period + phase[0]
    v = (-dx * s + dy * c) / period + phase[1]
    fu, fv = u - np.floor(u), v - np.floor(v)
    if texture == "stripes":
        return fu < 0.5
    if texture == "checker":
        return (fu < 0.5) ^ (fv < 0.5)
    if texture == "dots":
        return (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < 0.32 ** 2
    if texture == "grid":
        return (fu < 0.3) | (fv < 0.3)
    raise ValueError(texture)


def _fill(rng, item, dy, dx):
    """Pattern (bool) filling an item's bounding box."""
    kind = item["kind"]
    if kind == "object":
        return _texture(_TEXTURES[item["class_id"] - 1], dy, dx, item["period"],
                        item["texture_angle"], rng.uniform(0, 1, 2))
    if kind == "solid":
        return np.zeros(dy.shape, bool)
    if kind == "speckle":  # i.i.d. texture: high frequency, but no period and no class
        return rng.uniform(size=dy.shape) < 0.5
    return _smooth_field(rng, dy.shape[0], dy.shape[1], item["period"] * 1.5) > 0  # camo


def generate_example(index, seed=0, image_size=DEFAULT_IMAGE_SIZE, split="train",
                     boundary=True):
    """One synthetic example.

    Args:
      index: example index within the split.
      seed: dataset seed; (seed, split, index) fixes the example.
      image_size: (height, width).
      split: split name; examples of different splits never coincide.
      boundary: mark label pixels next to a different label with 255, a thin band like
        VOC's object borders (excluded from loss and mIoU).

    Returns:
      (image uint8 [H, W, 3], label uint8 [H, W]) with labels in 0..4 or 255.
    """
    rng = example_rng(seed, split, index)
    h, w = int(image_size[0]), int(image_size[1])
    # Background: a two-colour camouflage pattern under slow shading. Painting only
    # records which item owns a pixel and which of its two colours it shows; colours are
    # gathered once at the end (cheaper than writing RGB per object).
    background = _colour_pair(rng)
    alt = _smooth_field(rng, h, w, rng.uniform(10, 30)) > 0
    shading = 25 * _smooth_field(rng, h, w, 48)
    items = sample_layout(rng, (h, w))
    palette = np.array([background] + [it["colours"] for it in items], np.float32)
    class_of = np.array([0] + [it["class_id"] for it in items], np.uint8)
    owner = np.zeros((h, w), np.intp)
    for k, item in enumerate(items, start=1):
        cy, cx = item["centre"]
        r = item["size"] * _RADIUS_PER_SIZE[item["shape"]] + 1
        y0, y1 = max(0, int(cy - r)), min(h, int(np.ceil(cy + r)) + 1)
        x0, x1 = max(0, int(cx - r)), min(w, int(np.ceil(cx + r)) + 1)
        if y1 <= y0 or x1 <= x0:
            continue
        dy = (np.arange(y0, y1, dtype=np.float32) + 0.5 - cy)[:, None]
        dx = (np.arange(x0, x1, dtype=np.float32) + 0.5 - cx)[None, :]
        dy, dx = np.broadcast_arrays(dy, dx)
        mask = _shape_mask(item["shape"], dy, dx, item["size"], item["angle"])
        np.copyto(owner[y0:y1, x0:x1], k, where=mask)
        np.copyto(alt[y0:y1, x0:x1], _fill(rng, item, dy, dx), where=mask)
    image = palette[owner, alt.astype(np.intp)]
    image += shading[..., None].astype(np.float32)
    image += rng.standard_normal(image.shape, dtype=np.float32) * 4  # sensor noise
    label = class_of[owner]
    if boundary:
        edge = np.zeros((h, w), bool)
        dv, dh = label[1:] != label[:-1], label[:, 1:] != label[:, :-1]
        edge[1:] |= dv
        edge[:-1] |= dv
        edge[:, 1:] |= dh
        edge[:, :-1] |= dh
        label[edge] = IGNORE_LABEL
    return (np.clip(image, 0, 255) + 0.5).astype(np.uint8), label


def iter_split(split, num_images=None, seed=0, image_size=DEFAULT_IMAGE_SIZE, boundary=True):
    """Yields (name, image, label) for a split; `num_images` defaults to DEFAULT_SPLIT_SIZES."""
    if num_images is None:
        num_images = DEFAULT_SPLIT_SIZES[split]
    for index in range(int(num_images)):
        image, label = generate_example(index, seed, image_size, split=split, boundary=boundary)
        yield f"{split}_{index:06d}", image, label
