"""Your own dataset from a folder: images/, masks/ and classes.txt.

Layout:
  images/STEM.jpg|.jpeg|.png   stored unchanged; a photo with an EXIF orientation other
                               than 1 is stored upright (PNG): draw its mask upright
  masks/STEM.png               class ids (grayscale or palette PNG, palette INDICES are the
                               ids, as VOC) or colours (RGB PNG) matched to classes.txt
  classes.txt                  one class per line in id order: `name` or `name R G B`
                               (# comments and blank lines are skipped)
  splits/SPLIT.txt             optional: the stems of each split. Without it, train/val
                               are drawn by a hash of the stem: stable as files are added.

In colour masks, pixels of the ignore colour (white by default, as in
`DatasetMetadata.colormap()`) become the ignore value 255; any other colour not in
classes.txt is an error naming the file and the colour.

label_map ({mask value: class id}, the tfds converter's --label_map syntax, e.g. `11:255`
for CamVid's void) rewrites id masks (grayscale/palette) before validation; values not
listed are kept. A mask holding only 0 and 255 (a 0/255 binary mask, where 255 would be
read as ignore) is refused unless label_map says what 255 is (`255:1`, or `255:255`).
"""
import functools
import hashlib
import os

import numpy as np

from deeplab_tf import fileio
from deeplab_tf.data import writer
from deeplab_tf.data.converters import inputs
from deeplab_tf.data.metadata import DatasetMetadata

DEFAULT_SPLITS = ("train", "val")
DEFAULT_NUM_SHARDS = 4
DEFAULT_VAL_FRACTION = 0.1
IGNORE_COLOR = (255, 255, 255)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def read_classes(path, name):
    """DatasetMetadata from classes.txt; colours only if every line gives one."""
    try:
        lines = inputs.read_text(path).splitlines()
    except writer.DatasetError as e:
        if e.reason != "missing_file":
            raise
        raise writer.DatasetError("class list not found: expected one class per line, `name` "
                                  "or `name R G B`", path, "missing_file") from None
    names, colors = [], []
    for number, line in enumerate(lines, 1):
        fields = line.split("#")[0].split()
        if not fields:
            continue
        if len(fields) not in (1, 4) or not all(f.isdigit() and int(f) < 256 for f in fields[1:]):
            raise writer.DatasetError(f"line {number} is {line!r}; expected `name` or "
                                      "`name R G B` with R, G, B in 0..255", path, "bad_classes")
        names.append(fields[0])
        if len(fields) == 4:
            colors.append(tuple(int(v) for v in fields[1:]))
    if not names:
        raise writer.DatasetError("no classes listed", path, "no_examples")
    if colors and len(colors) != len(names):
        raise writer.DatasetError("give a colour on every line or on none", path, "bad_classes")
    if len(set(colors)) != len(colors):
        raise writer.DatasetError("two classes share a colour", path, "bad_classes")
    return DatasetMetadata(name, tuple(names), tuple(colors) if colors else None)


def colors_to_ids(rgb, colors, ignore_color, ignore_label, path=None):
    """Class ids of an RGB mask by exact colour; an unlisted colour is an error."""
    rgb = rgb.astype(np.int64)
    codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, inverse = np.unique(codes, return_inverse=True)
    lookup = {(r << 16) | (g << 8) | b: i for i, (r, g, b) in enumerate(colors)}
    ignore_code = (ignore_color[0] << 16) | (ignore_color[1] << 8) | ignore_color[2]
    ids = np.empty(len(values), np.uint8)
    for i, code in enumerate(values.tolist()):
        if code in lookup:
            ids[i] = lookup[code]
        elif code == ignore_code:
            ids[i] = ignore_label
        else:
            raise writer.DatasetError(
                f"colour {(code >> 16, (code >> 8) & 255, code & 255)} is not in classes.txt "
                f"{list(colors)} nor the ignore colour {tuple(ignore_color)}", path,
                "unknown_color")
    return ids[inverse.reshape(codes.shape)]


def check_label_map(label_map, metadata):
    """label_map targets must be class ids or the ignore label (error names the flag)."""
    for source, target in (label_map or {}).items():
        if target >= metadata.num_classes and target != metadata.ignore_label:
            raise writer.DatasetError(
                f"--label_map {source}:{target}: target {target} is neither a class id "
                f"(0..{metadata.num_classes - 1}, from classes.txt) nor the ignore label "
                f"{metadata.ignore_label}", reason="bad_arguments")


def map_ids(label, label_map, ignore_label, path=None):
    """Applies label_map to an id mask; refuses a 0/255 binary mask 255 is not mapped for."""
    label_map = label_map or {}
    values = set(np.unique(label).tolist())
    if values == {0, ignore_label} and ignore_label not in label_map:
        raise writer.DatasetError(
            f"mask holds only the values 0 and {ignore_label}: a 0/{ignore_label} binary mask? "
            f"{ignore_label} is the ignore label, so its foreground would never be learned; pass "
            f"--label_map={ignore_label}:1 to make it class 1 (or --label_map="
            f"{ignore_label}:{ignore_label} to keep it ignored)", path, "binary_mask")
    if not label_map:
        return label
    table = np.arange(256, dtype=np.uint8)
    for source, target in label_map.items():
        table[source] = target
    return table[label]


def load_example(example_item, label_map=None):
    name, image_path, mask_path, colors, ignore_color, ignore_label = example_item
    data, fmt, height, width, orientation = inputs.read_image(image_path)
    mask = inputs.open_image(mask_path)
    if mask.mode in ("P", "L"):
        label = map_ids(np.asarray(mask, dtype=np.uint8), label_map, ignore_label, mask_path)
    elif mask.mode in ("RGB", "RGBA") and colors:
        label = colors_to_ids(np.asarray(mask.convert("RGB")), colors, ignore_color,
                              ignore_label, mask_path)
    else:
        raise writer.DatasetError(
            f"mask in mode {mask.mode}; expected a grayscale/palette PNG of class ids" +
            ("" if colors else ", or an RGB mask with colours listed in classes.txt"),
            mask_path, "unsupported_format")
    return writer.Example(name, data, fmt, height, width, label, image_path, mask_path,
                          orientation)


MASK_KINDS = {"P": "palette (indices are class ids)", "L": "grayscale class ids",
              "RGB": "colour (mapped by classes.txt)", "RGBA": "colour (mapped by classes.txt)"}


def mask_kind(masks):
    """What the first mask (by stem) is: palette, grayscale or colour; reported and recorded."""
    if not masks:
        return None
    mode = inputs.open_image(masks[min(masks)]).mode
    return MASK_KINDS.get(mode, f"mode {mode} (unsupported)")


def _stems(directory, suffixes):
    """Stem -> path of the files in `directory` with one of `suffixes` (one listing)."""
    if not fileio.isdir(directory):
        raise writer.DatasetError("directory not found", directory, "missing_file")
    return {os.path.splitext(n)[0]: fileio.join(directory, n) for n in fileio.listdir(directory)
            if os.path.splitext(n)[1].lower() in suffixes}


def _hash_fraction(stem):
    return int.from_bytes(hashlib.sha1(stem.encode("utf-8")).digest()[:8], "big") / 2.0 ** 64


def split_stems(root, splits, stems, val_fraction):
    """Stems per split: splits/SPLIT.txt if splits/ exists, else a stable hash split."""
    if fileio.isdir(fileio.join(root, "splits")):
        return {s: inputs.read_split_list(fileio.join(root, "splits", f"{s}.txt"))
                for s in splits}
    unknown = set(splits) - {"train", "val"}
    if unknown:
        raise writer.DatasetError(f"no splits/ directory, so only train and val exist, not "
                                  f"{sorted(unknown)}", fileio.join(root, "splits"),
                                  "missing_file")
    val = {s for s in stems if _hash_fraction(s) < val_fraction}
    chosen = {"train": sorted(set(stems) - val), "val": sorted(val)}
    return {s: chosen[s] for s in splits}


def convert(root, output_dir, splits=DEFAULT_SPLITS, val_fraction=DEFAULT_VAL_FRACTION,
            ignore_color=IGNORE_COLOR, name=None, num_shards=DEFAULT_NUM_SHARDS,
            label_map=None, **write_options):
    """Converts a folder dataset; `name` (default: the folder's name) goes in the metadata.

    label_map: {mask value: class id} applied to grayscale/palette masks (see above).
    """
    root = os.fspath(root)
    if len(ignore_color) != 3 or not all(0 <= int(v) < 256 for v in ignore_color):
        raise ValueError(f"ignore_color {ignore_color} is not an (R, G, B) triple in 0..255")
    classes = fileio.join(root, "classes.txt")
    metadata = read_classes(classes, name or fileio.basename(fileio.absolute(root)))
    if metadata.colors and tuple(ignore_color) in metadata.colors:
        raise writer.DatasetError(f"ignore colour {tuple(ignore_color)} is also a class colour",
                                  classes, "bad_classes")
    check_label_map(label_map, metadata)
    images = _stems(fileio.join(root, "images"), IMAGE_SUFFIXES)
    masks = _stems(fileio.join(root, "masks"), (".png",))
    stems = sorted(set(images) | set(masks))
    if not stems:
        raise writer.DatasetError("no images in images/ (.jpg, .jpeg, .png) nor masks in masks/",
                                  root, "no_examples")
    items = {}
    for split, names in split_stems(root, splits, stems, val_fraction).items():
        # A stem without an image or mask keeps a path that does not exist: the worker's read
        # fails with "file not found" naming it, or --skip_invalid counts it.
        items[split] = [(s, images.get(s, fileio.join(root, "images", f"{s}.jpg")),
                         masks.get(s, fileio.join(root, "masks", f"{s}.png")), metadata.colors,
                         tuple(ignore_color), metadata.ignore_label) for s in names]
    write_options["num_workers"] = inputs.num_workers(write_options.get("num_workers", 1), root)
    return writer.write_dataset(
        output_dir, items, functools.partial(load_example, label_map=label_map), metadata,
        num_shards=num_shards,
        converter={"name": "folder", "args": {"root": root, "splits": list(splits),
                                              "val_fraction": val_fraction,
                                              "ignore_color": list(ignore_color),
                                              "masks": mask_kind(masks),
                                              "label_map": {str(k): v for k, v in
                                                            (label_map or {}).items()}}},
        **write_options)
