"""MS-COCO restricted to the 20 PASCAL VOC classes, for pre-training (Sec. 4.3).

Sec. 4.3: "From the MS-COCO trainval_minus_minival set, we only select the images that have
annotation regions larger than 1000 pixels and contain the classes defined in PASCAL VOC
2012, resulting in about 60K images for training. Besides, the MS-COCO classes not defined
in PASCAL VOC 2012 are all treated as background class."

So an image is kept when one of its non-crowd annotations of a VOC category has an `area`
(COCO's pixel count of the region) over 1000. Labels: all non-crowd annotations are painted
largest first (so a small object in front of a large one stays visible) with their VOC id,
or 0 for a non-VOC category; crowd regions of VOC categories are 255 (ignored) wherever no
single instance covers them. Masks come from pycocotools `annToMask` (polygons and RLE).

Layout: instances JSON per split (default ROOT/annotations/instances_SPLIT.json); images in
ROOT/SPLIT/, ROOT/, or (2014 names like COCO_val2014_*.jpg) ROOT/val2014/. Several JSONs
joined by "+" make one split, e.g. the paper's trainval_minus_minival 2014 set:
  --splits trainval_minus_minival
  --annotations ANN/instances_train2014.json+ANN/instances_valminusminival2014.json
"""
import os
import re

import numpy as np

from deeplab_tf import extras, fileio
from deeplab_tf.data import writer
from deeplab_tf.data.converters import inputs
from deeplab_tf.data.metadata import VOC

DEFAULT_SPLITS = ("train2017", "val2017")
DEFAULT_NUM_SHARDS = 100  # about 60K images of ~160 KB: ~100 MB shards
MIN_AREA = 1000  # pixels, Sec. 4.3

# COCO category id -> (COCO name, VOC class id). Checked against the categories of the
# annotation file being converted: a different id scheme fails loudly.
COCO_TO_VOC = {
    5: ("airplane", 1), 2: ("bicycle", 2), 16: ("bird", 3), 9: ("boat", 4), 44: ("bottle", 5),
    6: ("bus", 6), 3: ("car", 7), 17: ("cat", 8), 62: ("chair", 9), 21: ("cow", 10),
    67: ("dining table", 11), 18: ("dog", 12), 19: ("horse", 13), 4: ("motorcycle", 14),
    1: ("person", 15), 64: ("potted plant", 16), 20: ("sheep", 17), 63: ("couch", 18),
    7: ("train", 19), 72: ("tv", 20),
}


class _Folders:
    """Names in each folder, listed once: one request per folder on a bucket instead of
    one per image and candidate folder."""

    def __init__(self):
        self.names = {}

    def has(self, folder, name):
        if folder not in self.names:
            self.names[folder] = set(fileio.listdir(folder)) if fileio.isdir(folder) else set()
        return name in self.names[folder]


def _image_path(root, split, file_name, folders):
    candidates = [fileio.join(root, split), root]
    match = re.match(r"COCO_([a-z]+\d+)_", file_name)
    if match:
        candidates.append(fileio.join(root, match.group(1)))
    folder = next((c for c in candidates if folders.has(c, file_name)), candidates[0])
    return fileio.join(folder, file_name)


def _read_coco(path):
    """pycocotools' COCO index of an annotation file read through fileio (COCO(path) would
    open only local files)."""
    COCO = extras.require("pycocotools.coco", "deeplab-build-data coco_voc").COCO
    if not fileio.isfile(path):
        raise writer.DatasetError("COCO annotation file not found", path, "missing_file")
    try:
        dataset = fileio.read_json(path)
    except ValueError as e:
        raise writer.DatasetError(f"not JSON ({e})", path, "bad_annotation") from None
    coco = COCO()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _check_categories(coco, path):
    for cat_id, (name, _) in COCO_TO_VOC.items():
        found = coco.cats.get(cat_id, {}).get("name", name)
        if found != name:
            raise writer.DatasetError(f"category id {cat_id} is {found!r}; expected {name!r} "
                                      "(the COCO 2014/2017 category ids)", path, "bad_annotation")


def list_split(root, split, annotation_files):
    """Items (file name, image path, height, width, annotations, JSON path) of kept images."""
    items, seen, total, folders = [], set(), 0, _Folders()
    for path in annotation_files:
        coco = _read_coco(path)
        _check_categories(coco, path)
        for image_id in sorted(coco.imgs):
            info = coco.imgs[image_id]
            total += 1
            anns = coco.imgToAnns.get(image_id, [])
            if not any(a["category_id"] in COCO_TO_VOC and not a.get("iscrowd", 0)
                       and a["area"] > MIN_AREA for a in anns):
                continue
            if info["file_name"] in seen:
                raise writer.DatasetError(f"image {info['file_name']} listed twice", path,
                                          "bad_annotation")
            seen.add(info["file_name"])
            anns = [{"segmentation": a["segmentation"], "category_id": a["category_id"],
                     "iscrowd": a.get("iscrowd", 0), "area": a["area"], "image_id": 0}
                    for a in anns]
            items.append((info["file_name"], _image_path(root, split, info["file_name"], folders),
                          int(info["height"]), int(info["width"]), anns, os.fspath(path)))
    return items, {"coco_images": total, "dropped_no_voc_region_over_1000px": total - len(items)}


def coco_label(height, width, anns):
    """The VOC label of one COCO image from its annotations (see the module docstring)."""
    COCO = extras.require("pycocotools.coco", "deeplab-build-data coco_voc").COCO
    coco = COCO()  # annToMask needs only the image size, looked up by image_id
    coco.imgs = {0: {"height": height, "width": width}}
    label = np.zeros((height, width), np.uint8)
    for ann in anns:
        if ann["iscrowd"] and ann["category_id"] in COCO_TO_VOC:
            label[coco.annToMask(ann) > 0] = VOC.ignore_label
    for ann in sorted((a for a in anns if not a["iscrowd"]), key=lambda a: -a["area"]):
        voc_id = COCO_TO_VOC.get(ann["category_id"], (None, 0))[1]
        label[coco.annToMask(ann) > 0] = voc_id
    return label


def load_example(example_item):
    file_name, image_path, height, width, anns, annotation_file = example_item
    data, fmt, image_height, image_width, orientation = inputs.read_image(image_path)
    try:
        label = coco_label(height, width, anns)
    except Exception as e:  # pycocotools raises on malformed polygons or RLE
        raise writer.DatasetError(f"bad segmentation of image {file_name} ({e!r})",
                                  annotation_file, "bad_annotation") from None
    return writer.Example(fileio.stem(file_name), data, fmt, image_height, image_width, label,
                          image_path, f"{annotation_file} (image {file_name})", orientation)


def convert(root, output_dir, splits=DEFAULT_SPLITS, annotations=None,
            num_shards=DEFAULT_NUM_SHARDS, **write_options):
    """Converts COCO `splits` of `root`; `annotations`: one JSON path (or "a+b") per split."""
    root = os.fspath(root)
    if annotations is None:
        annotations = [fileio.join(root, "annotations", f"instances_{s}.json") for s in splits]
    if len(annotations) != len(splits):
        raise writer.DatasetError(f"{len(annotations)} annotation files for {len(splits)} splits "
                                  f"{list(splits)}; give one per split", reason="bad_arguments")
    items, notes = {}, {}
    for split, files in zip(splits, annotations):
        items[split], notes[split] = list_split(root, split, files.split("+"))
    write_options["num_workers"] = inputs.num_workers(write_options.get("num_workers", 1), root)
    return writer.write_dataset(
        output_dir, items, load_example, VOC, num_shards=num_shards, split_notes=notes,
        converter={"name": "coco_voc", "args": {"root": root, "splits": list(splits),
                                                "annotations": list(annotations)}},
        **write_options)
