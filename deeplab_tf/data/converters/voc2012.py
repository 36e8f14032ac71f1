"""PASCAL VOC 2012 segmentation (Sec. 4: 1,464 train, 1,449 val images; 21 classes).

Expects the VOCdevkit layout (as research/deeplab `build_voc2012_data.py`):
JPEGImages/*.jpg, SegmentationClass/*.png (palette PNGs whose palette INDICES are the
class ids, 255 on object borders) and ImageSets/Segmentation/{split}.txt. The colour map
need not be removed first (`remove_gt_colormap.py`): palette indices are read directly.
"""
import os

from deeplab_tf import fileio
from deeplab_tf.data import writer
from deeplab_tf.data.converters import inputs
from deeplab_tf.data.metadata import VOC

DEFAULT_SPLITS = ("train", "val")
DEFAULT_NUM_SHARDS = 4  # as the original build_voc2012_data.py


def find_voc_root(root):
    """The VOC2012 directory, given it or its VOCdevkit parent (or the folder above that)."""
    root = os.fspath(root)
    for candidate in (root, fileio.join(root, "VOC2012"),
                      fileio.join(root, "VOCdevkit", "VOC2012")):
        if fileio.isdir(fileio.join(candidate, "JPEGImages")):
            return candidate
    raise writer.DatasetError(
        "not a PASCAL VOC 2012 directory: expected JPEGImages/, SegmentationClass/ and "
        "ImageSets/Segmentation/ in it, or in VOC2012/ or VOCdevkit/VOC2012/ below it",
        root, "missing_file")


def item(voc_root, name):
    """What a worker needs to load one example: (name, image path, label path)."""
    return (name, fileio.join(voc_root, "JPEGImages", f"{name}.jpg"),
            fileio.join(voc_root, "SegmentationClass", f"{name}.png"))


def list_split(voc_root, split):
    names = inputs.read_split_list(
        fileio.join(voc_root, "ImageSets", "Segmentation", f"{split}.txt"))
    return [item(voc_root, name) for name in names]


def load_example(example_item):
    name, image_path, label_path = example_item
    data, fmt, height, width, orientation = inputs.read_image(image_path)
    label = inputs.read_label_png(label_path)
    return writer.Example(name, data, fmt, height, width, label, image_path, label_path,
                          orientation)


def convert(root, output_dir, splits=DEFAULT_SPLITS, num_shards=DEFAULT_NUM_SHARDS,
            **write_options):
    """Converts VOC 2012 `splits` (train, val, trainval) of `root` into `output_dir`."""
    voc_root = find_voc_root(root)
    items = {split: list_split(voc_root, split) for split in splits}
    write_options["num_workers"] = inputs.num_workers(write_options.get("num_workers", 1), root)
    return writer.write_dataset(
        output_dir, items, load_example, VOC, num_shards=num_shards,
        converter={"name": "voc2012", "args": {"root": os.fspath(root), "splits": list(splits)}},
        **write_options)
