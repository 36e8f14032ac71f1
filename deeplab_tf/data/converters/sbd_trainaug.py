"""The PASCAL VOC 2012 `train_aug` set: VOC labels augmented with SBD's (Sec. 4).

Sec. 4: "The dataset is augmented by the extra annotations provided by [25], resulting in
10,582 (trainaug) training images." [25] is the Semantic Boundaries Dataset (SBD,
Hariharan et al. 2011), whose `benchmark_RELEASE/dataset/` holds img/*.jpg, cls/*.mat,
inst/*.mat, train.txt (8,498 names) and val.txt (2,857). Each cls/NAME.mat is a MATLAB
struct `GTcls` with fields `Segmentation` (uint8 HxW class ids 0..20, the VOC classes),
`Boundaries` (a 20x1 cell of sparse per-class edge maps) and `CategoriesPresent`.

train_aug = (SBD train + SBD val + VOC train) minus VOC val: 10,582 names on the real data.
Where VOC has a SegmentationClass label it wins over SBD's (VOC marks borders and
difficult regions 255, SBD does not). Images come from VOC's JPEGImages.
"""
import io
import logging
import os

import numpy as np

from deeplab_tf import extras, fileio
from deeplab_tf.data import writer
from deeplab_tf.data.converters import inputs, voc2012
from deeplab_tf.data.metadata import VOC

DEFAULT_SPLITS = ("train_aug",)
DEFAULT_NUM_SHARDS = 10
TRAIN_AUG_SIZE = 10582  # on the full SBD and VOC 2012 (Sec. 4)

log = logging.getLogger(__name__)


def find_sbd_root(root):
    """SBD's `dataset/` directory, given it or benchmark_RELEASE above it."""
    root = os.fspath(root)
    for candidate in (root, fileio.join(root, "dataset"),
                      fileio.join(root, "benchmark_RELEASE", "dataset")):
        if fileio.isdir(fileio.join(candidate, "cls")):
            return candidate
    raise writer.DatasetError("not an SBD directory: expected cls/, train.txt and val.txt in "
                              "it or in dataset/ below it", root, "missing_file")


def read_sbd_label(path):
    """`GTcls.Segmentation` of an SBD cls/*.mat file, as uint8 class ids."""
    loadmat = extras.require("scipy.io", "deeplab-build-data sbd_trainaug").loadmat
    data = inputs.read_bytes(path)
    try:
        segmentation = loadmat(io.BytesIO(data))["GTcls"][0, 0]["Segmentation"]
    except Exception as e:  # scipy raises many types on a damaged or foreign file
        raise writer.DatasetError(f"not an SBD cls .mat with GTcls.Segmentation ({e!r})", path,
                                  "corrupt_file") from None
    segmentation = np.asarray(segmentation)
    if segmentation.ndim != 2 or not np.issubdtype(segmentation.dtype, np.integer):
        raise writer.DatasetError(f"GTcls.Segmentation is {segmentation.dtype} "
                                  f"{segmentation.shape}; expected integer HxW", path, "bad_label")
    if segmentation.size and (segmentation.min() < 0 or segmentation.max() > 255):
        raise writer.DatasetError(f"GTcls.Segmentation holds values {segmentation.min()}.."
                                  f"{segmentation.max()}; expected class ids 0..20", path,
                                  "label_value")
    return segmentation.astype(np.uint8)


def load_example(example_item):
    name, image_path, label_path = example_item
    if not label_path.endswith(".mat"):
        return voc2012.load_example(example_item)
    data, fmt, height, width, orientation = inputs.read_image(image_path)
    return writer.Example(name, data, fmt, height, width, read_sbd_label(label_path),
                          image_path, label_path, orientation)


def list_train_aug(sbd_root, voc_root):
    """Items of train_aug, sorted by name, and how many labels come from VOC and SBD."""
    sbd_names = inputs.read_split_list(fileio.join(sbd_root, "train.txt"))
    sbd_names += inputs.read_split_list(fileio.join(sbd_root, "val.txt"))
    segmentation_sets = fileio.join(voc_root, "ImageSets", "Segmentation")
    voc_train = inputs.read_split_list(fileio.join(segmentation_sets, "train.txt"))
    voc_val = set(inputs.read_split_list(fileio.join(segmentation_sets, "val.txt")))
    # One listing instead of a request per name (10,582 of them on a bucket).
    label_dir = fileio.join(voc_root, "SegmentationClass")
    voc_labels = set(fileio.listdir(label_dir)) if fileio.isdir(label_dir) else set()
    items, from_voc = [], 0
    for name in sorted((set(sbd_names) | set(voc_train)) - voc_val):
        name_item = voc2012.item(voc_root, name)
        if f"{name}.png" in voc_labels:
            from_voc += 1
        else:
            name_item = (name, name_item[1], fileio.join(sbd_root, "cls", f"{name}.mat"))
        items.append(name_item)
    return items, {"label_sources": {"voc": from_voc, "sbd": len(items) - from_voc}}


def convert(root, voc_root, output_dir, splits=DEFAULT_SPLITS, num_shards=DEFAULT_NUM_SHARDS,
            **write_options):
    """Writes train_aug (and, if asked, val: VOC val with VOC labels) to `output_dir`.

    Args:
      root: SBD's benchmark_RELEASE (or its dataset/ directory).
      voc_root: VOC2012 directory or its VOCdevkit parent.
    """
    sbd_root, voc = find_sbd_root(root), voc2012.find_voc_root(voc_root)
    items, notes = {}, {}
    for split in splits:
        if split == "train_aug":
            items[split], notes[split] = list_train_aug(sbd_root, voc)
            log.info("train_aug: %d images (%d on the full SBD + VOC 2012), labels from %s",
                     len(items[split]), TRAIN_AUG_SIZE, notes[split]["label_sources"])
        elif split == "val":
            items[split] = voc2012.list_split(voc, split)
        else:
            raise writer.DatasetError(f"unknown split {split!r}; sbd_trainaug writes train_aug "
                                      "and val", reason="unknown_split")
    write_options["num_workers"] = inputs.num_workers(write_options.get("num_workers", 1),
                                                      root, voc_root)
    return writer.write_dataset(
        output_dir, items, load_example, VOC, num_shards=num_shards, split_notes=notes,
        converter={"name": "sbd_trainaug", "args": {
            "root": os.fspath(root), "voc_root": os.fspath(voc_root), "splits": list(splits)}},
        **write_options)
