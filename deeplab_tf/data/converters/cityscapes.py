"""Cityscapes (Cordts et al. 2016) fine annotations, 19 evaluation classes (Sec. 4, ref. [13]).

Layout: leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png and
gtFine/{split}/{city}/{stem}_gtFine_labelIds.png. The label ids (0..33) are mapped to the 19
train ids of the official `cityscapesscripts/helpers/labels.py`; every other id (void,
rare and unlabelled classes) becomes the ignore value 255. Images (PNG) are stored as is.
"""
import os

import numpy as np

from deeplab_tf import fileio
from deeplab_tf.data import writer
from deeplab_tf.data.converters import inputs
from deeplab_tf.data.metadata import CITYSCAPES

DEFAULT_SPLITS = ("train", "val")
DEFAULT_NUM_SHARDS = 10  # as the original build_cityscapes_data.py
NUM_LABEL_IDS = 34  # labelIds 0..33 (license plate, id -1, is not drawn in labelIds PNGs)

# labelId -> trainId, from labels.py; the train id order is CITYSCAPES.class_names.
LABEL_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}


def _lookup_table():
    table = np.full(256, CITYSCAPES.ignore_label, np.uint8)
    for label_id, train_id in LABEL_TO_TRAIN_ID.items():
        table[label_id] = train_id
    return table


def to_train_ids(label_ids, path=None):
    """Maps a labelIds array to train ids; an id above 33 is not Cityscapes: an error."""
    unknown = np.unique(label_ids[label_ids >= NUM_LABEL_IDS])
    if unknown.size:
        raise writer.DatasetError(f"label ids {unknown.tolist()} are not Cityscapes labelIds "
                                  f"0..{NUM_LABEL_IDS - 1}", path, "label_value")
    return _lookup_table()[label_ids]


def list_split(root, split):
    image_dir = fileio.join(root, "leftImg8bit", split)
    if not fileio.isdir(image_dir):
        raise writer.DatasetError(f"no split {split!r}: expected leftImg8bit/{split}/CITY/"
                                  "*_leftImg8bit.png and gtFine/ beside it", image_dir,
                                  "missing_file")
    items = []
    for image_path in fileio.glob(fileio.join(fileio.glob_escape(image_dir), "*",
                                              "*_leftImg8bit.png")):
        stem = fileio.basename(image_path)[: -len("_leftImg8bit.png")]
        city = fileio.basename(fileio.dirname(image_path))
        label_path = fileio.join(root, "gtFine", split, city, f"{stem}_gtFine_labelIds.png")
        items.append((stem, image_path, label_path))
    return items


def load_example(example_item):
    name, image_path, label_path = example_item
    data, fmt, height, width, orientation = inputs.read_image(image_path)
    label = to_train_ids(inputs.read_label_png(label_path), label_path)
    return writer.Example(name, data, fmt, height, width, label, image_path, label_path,
                          orientation)


def convert(root, output_dir, splits=DEFAULT_SPLITS, num_shards=DEFAULT_NUM_SHARDS,
            **write_options):
    """Converts Cityscapes `splits` (train, val; test has no public labels) of `root`."""
    root = os.fspath(root)
    items = {split: list_split(root, split) for split in splits}
    write_options["num_workers"] = inputs.num_workers(write_options.get("num_workers", 1), root)
    return writer.write_dataset(
        output_dir, items, load_example, CITYSCAPES, num_shards=num_shards,
        converter={"name": "cityscapes", "args": {"root": root, "splits": list(splits)}},
        **write_options)
