"""Any TensorFlow Datasets dataset with an image and a segmentation mask feature.

E.g. the Oxford-IIIT pets (mask 1 = pet, 2 = background, 3 = border):
  deeplab-build-data tfds --tfds_name oxford_iiit_pet --splits train,test \\
      --label_map 1:1,2:0,3:255 --class_names background,pet --output_dir DIR
The dataset must already be prepared in `data_dir` (`tfds build`, or tfds.load once).
TFDS keeps decoded pixels only, so images are re-encoded as PNG (lossless).
"""
import functools

import numpy as np

from deeplab_tf import extras
from deeplab_tf.data import writer
from deeplab_tf.data.metadata import IGNORE_LABEL, DatasetMetadata

DEFAULT_SPLITS = None  # all the builder lists
DEFAULT_NUM_SHARDS = 4


def parse_label_map(text):
    """'1:1,2:0,3:255' -> {1: 1, 2: 0, 3: 255}."""
    mapping = {}
    for pair in text.split(","):
        try:
            source, target = (int(v) for v in pair.split(":"))
        except ValueError:
            raise ValueError(f"label map entry {pair!r} is not SOURCE:TARGET integers") from None
        if not (0 <= source < 256 and 0 <= target < 256):
            raise ValueError(f"label map entry {pair!r}: values must be in 0..255")
        mapping[source] = target
    return mapping


def make_metadata(name, label_map=None, class_names=None):
    if class_names:
        names = tuple(class_names)
    elif label_map:
        num_classes = max(v for v in label_map.values() if v != IGNORE_LABEL) + 1
        names = tuple(f"class_{i}" for i in range(num_classes))
    else:
        raise writer.DatasetError("give class_names (--class_names) or a label map "
                                  "(--label_map): the number of classes is not in TFDS features",
                                  reason="bad_arguments")
    return DatasetMetadata(name, names)


def load_example(example_item, table=None):
    """Worker: maps the mask through `table` (-1 = unmapped value) and PNG-encodes the image."""
    name, image, mask = example_item
    if mask.ndim == 3 and mask.shape[-1] == 1:
        mask = mask[..., 0]
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or mask.ndim != 2:
        raise writer.DatasetError(f"image {image.dtype} {image.shape} and mask {mask.dtype} "
                                  f"{mask.shape}; expected uint8 HxWx3 and HxW(x1)", name,
                                  "bad_label")
    if mask.size and (mask.min() < 0 or mask.max() > 255):
        raise writer.DatasetError(f"mask values {mask.min()}..{mask.max()} do not fit 0..255",
                                  name, "label_value")
    mask = mask.astype(np.uint8)
    if table is not None:
        unmapped = np.unique(mask[table[mask] < 0])
        if unmapped.size:
            raise writer.DatasetError(f"mask values {unmapped.tolist()} are not in the label map",
                                      name, "label_value")
        mask = table[mask].astype(np.uint8)
    return writer.Example(name, writer.encode_png(image), "png", image.shape[0], image.shape[1],
                          mask)


def _examples(dataset, split, image_key, mask_key):
    """Streams a TFDS split as (name, image, mask) items."""
    tfds = extras.require("tensorflow_datasets", "deeplab-build-data tfds")
    for index, example in enumerate(tfds.as_numpy(dataset)):
        if index == 0:
            for key in (image_key, mask_key):
                if key not in example:
                    raise writer.DatasetError(f"no feature {key!r}; the features are "
                                              f"{sorted(example)}", split, "bad_arguments")
        yield (f"{split}_{index:06d}", example[image_key], example[mask_key])


class _Sized:
    """An iterable with the length TFDS knows, so the writer can stream it into shards."""

    def __init__(self, iterable, length):
        self.iterable, self.length = iterable, length

    def __iter__(self):
        return iter(self.iterable)

    def __len__(self):
        return self.length


def convert(tfds_name, output_dir, splits=DEFAULT_SPLITS, image_key="image",
            mask_key="segmentation_mask", label_map=None, class_names=None, data_dir=None,
            num_shards=DEFAULT_NUM_SHARDS, **write_options):
    """Converts TFDS `tfds_name` (already prepared in `data_dir`).

    Args:
      splits: TFDS split names; default: all the builder lists.
      label_map: {mask value: class id}; values not listed are errors. Default: identity.
      class_names: names in class id order (default class_0..N-1 from the label map).
    """
    # heavy (~220 MB with pyarrow) and only this converter needs it: the [tfds] extra
    tfds = extras.require("tensorflow_datasets", "deeplab-build-data tfds")
    metadata = make_metadata(tfds_name.split(":")[0], label_map, class_names)
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except Exception as e:  # tfds raises its own types for unknown names and versions
        raise writer.DatasetError(f"unknown TFDS dataset ({e})", tfds_name,
                                  "missing_file") from None
    splits = list(splits or builder.info.splits)
    if not splits:
        raise writer.DatasetError(f"{tfds_name} lists no splits (not prepared in {data_dir}?); "
                                  "give them with --splits", reason="bad_arguments")
    items = {}
    for split in splits:
        try:
            dataset = tfds.load(tfds_name, split=split, data_dir=data_dir, download=False)
        except Exception as e:  # not prepared (AssertionError), unknown split (ValueError)...
            raise writer.DatasetError(f"cannot load split {split!r} from data_dir {data_dir} "
                                      f"(prepare it first with `tfds build`): {e}", tfds_name,
                                      "missing_file") from None
        examples = _examples(dataset, split, image_key, mask_key)
        length = int(dataset.cardinality())  # unknown (< 0) e.g. under tfds mock_data
        items[split] = _Sized(examples, length) if length >= 0 else list(examples)
    table = None
    if label_map is not None:
        table = np.full(256, -1, np.int16)
        for source, target in label_map.items():
            table[source] = target
    return writer.write_dataset(
        output_dir, items, functools.partial(load_example, table=table), metadata,
        num_shards=num_shards,
        converter={"name": "tfds", "args": {
            "tfds_name": tfds_name, "splits": splits, "image_key": image_key,
            "mask_key": mask_key, "label_map": {str(k): v for k, v in (label_map or {}).items()},
            "class_names": list(metadata.class_names), "data_dir": data_dir}},
        **write_options)
