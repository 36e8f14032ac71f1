"""Converts a segmentation dataset into sharded TFRecords with the original DeepLab keys.

USAGE: deeplab-build-data DATASET --output_dir DIR [--root DIR] [flags]
   or: python -m deeplab_tf.tools.build_data DATASET --output_dir DIR [--root DIR] [flags]

DATASET, with its --root and flags (layouts in datasets/README.md):
  voc2012       PASCAL VOC 2012 (Sec. 4). --root VOCdevkit/VOC2012 or VOCdevkit.
                Splits train,val (also trainval).
  sbd_trainaug  The train_aug set (Sec. 4: 10,582 images) = SBD train + SBD val + VOC train
                minus VOC val. --root SBD benchmark_RELEASE (or its dataset/), --voc_root VOC.
                Splits train_aug (also val = VOC val).
  coco_voc      COCO images with a VOC-class region over 1000 pixels, other classes as
                background (Sec. 4.3). Needs pycocotools. --root COCO folder; one
                --annotations JSON per split (default ROOT/annotations/instances_SPLIT.json);
                images in ROOT/SPLIT/ or ROOT/. Splits train2017,val2017 by default.
  cityscapes    Cityscapes gtFine, 19 train ids. --root with leftImg8bit/ and gtFine/.
  folder        Your own data: --root with images/, masks/, classes.txt, optional splits/.
                Without splits/, --val_fraction of the images (by name hash) go to val.
  tfds          A TFDS dataset with image and mask features: --tfds_name, --image_key,
                --mask_key, --label_map and/or --class_names; --root is the TFDS data_dir.
  synthetic     The generated dataset of deeplab_tf.data.synthetic: --num_train, --num_val,
                --seed, --image_size. No --root.

Writes OUTPUT_DIR/{split}-{i:05d}-of-{n:05d}.tfrecord and, last, OUTPUT_DIR/manifest.json
(counts, shards, class pixel histograms, image sizes, the command, the dataset metadata).
Images are stored byte-identical, except a photo with an EXIF orientation other than 1
(stored sideways, as phones do), which is stored upright as a lossless PNG, as predict reads
it: draw its mask on the upright photo. Labels are single-channel PNGs of class ids (255 = ignore).
An invalid input stops the run with an error naming the file; --skip_invalid skips it and
counts it per reason in the manifest.

Examples:
  deeplab-build-data voc2012 --root ~/data/VOCdevkit --output_dir ~/data/voc_tfrecord
  deeplab-build-data sbd_trainaug --root ~/data/benchmark_RELEASE \\
      --voc_root ~/data/VOCdevkit --output_dir ~/data/voc_tfrecord
  deeplab-build-data folder --root ~/data/mine --output_dir ~/data/mine_tfrecord
  deeplab-build-data synthetic --output_dir /tmp/synthetic --num_train 200 --num_val 50
  deeplab-build-data voc2012 --root gs://BUCKET/VOCdevkit --output_dir gs://BUCKET/voc_tfrecord

--root and --output_dir may be on any filesystem TensorFlow reads (gs://...): shards are
written under hidden temporary names, renamed once all are complete (on a bucket a
server-side copy), and manifest.json comes last; readers trust only what it lists.
"""
import inspect
import os
import sys

from absl import app, flags

from deeplab_tf import fileio
from deeplab_tf.extras import MissingExtraError
from deeplab_tf.data import converters
from deeplab_tf.data.manifest import MANIFEST, DatasetError

from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
# Common to every dataset.
flags.DEFINE_string("root", None, "Dataset root directory (see DATASET above).")
shared.define_output_dir("Where shards and manifest.json are written (a local folder or "
                         "gs://bucket/...).")
flags.DEFINE_list("splits", None, "Splits to convert; default: the dataset's usual splits.")
flags.DEFINE_integer("num_shards", None, "Shards per split; default: 4 (VOC as the original "
                     "tools), 10 for train_aug and Cityscapes, 100 for COCO.", lower_bound=1)
flags.DEFINE_boolean("skip_invalid", False, "Skip invalid examples (corrupt, mismatched or "
                     "missing files, unknown label values) instead of stopping; counted per "
                     "reason in the manifest.")
flags.DEFINE_integer("num_workers", os.cpu_count() or 1,
                     "Worker processes; 1 converts in this process.", lower_bound=1)
# Dataset-specific.
flags.DEFINE_string("voc_root", None, "sbd_trainaug: the VOC 2012 directory (or VOCdevkit).")
flags.DEFINE_list("annotations", None, "coco_voc: instances JSON per split, in --splits order.")
flags.DEFINE_float("val_fraction", None, "folder: fraction of images for val when there is no "
                   "splits/ directory (default 0.1).")
flags.DEFINE_string("ignore_color", None, "folder: 'R,G,B' colour of ignored pixels in colour "
                    "masks (default 255,255,255).")
flags.DEFINE_string("tfds_name", None, "tfds: dataset name, e.g. oxford_iiit_pet:4.*.*.")
flags.DEFINE_string("image_key", None, "tfds: image feature key (default 'image').")
flags.DEFINE_string("mask_key", None, "tfds: mask feature key (default 'segmentation_mask').")
flags.DEFINE_string("label_map", None, "tfds, folder: mask value to class id, e.g. "
                    "'1:1,2:0,3:255' (tfds: values not listed are errors; folder: kept, e.g. "
                    "'11:255' for CamVid's void, '255:1' for 0/255 binary masks).")
shared.define_class_names("tfds: class names, in class id order.")
flags.DEFINE_integer("num_train", None, "synthetic: train images (default 1000).")
flags.DEFINE_integer("num_val", None, "synthetic: val images (default 200).")
shared.define_seed("synthetic: dataset seed (default 0).")
flags.DEFINE_list("image_size", None, "synthetic: 'height,width' (default 128,128).")

# Which dataset-specific flags each dataset takes; giving another is a usage error.
_DATASET_FLAGS = {
    "voc2012": ("root",),
    "sbd_trainaug": ("root", "voc_root"),
    "coco_voc": ("root", "annotations"),
    "cityscapes": ("root",),
    "folder": ("root", "val_fraction", "ignore_color", "label_map"),
    "tfds": ("root", "tfds_name", "image_key", "mask_key", "label_map", "class_names"),
    "synthetic": ("num_train", "num_val", "seed", "image_size"),
}
_SPECIFIC = sorted({f for names in _DATASET_FLAGS.values() for f in names})


def _converter_kwargs(dataset):
    kwargs = {"output_dir": FLAGS.output_dir, "num_workers": FLAGS.num_workers,
              "skip_invalid": FLAGS.skip_invalid, "command": sys.argv}
    if FLAGS.splits:
        kwargs["splits"] = FLAGS.splits
    if FLAGS.num_shards is not None:
        kwargs["num_shards"] = FLAGS.num_shards
    for name in _DATASET_FLAGS[dataset]:
        if FLAGS[name].value is not None:
            kwargs[name] = FLAGS[name].value
    if dataset == "tfds" and "root" in kwargs:
        kwargs["data_dir"] = kwargs.pop("root")
    if "label_map" in kwargs:
        kwargs["label_map"] = converters.get_converter("tfds").parse_label_map(kwargs["label_map"])
    if "ignore_color" in kwargs:
        kwargs["ignore_color"] = tuple(int(v) for v in kwargs["ignore_color"].split(","))
        if len(kwargs["ignore_color"]) != 3:
            raise ValueError(f"--ignore_color {FLAGS.ignore_color}: expected R,G,B")
    if "image_size" in kwargs:
        kwargs["image_size"] = tuple(int(v) for v in kwargs["image_size"])
    return kwargs


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(f"give exactly one DATASET, one of: {', '.join(converters.CONVERTERS)}"
                             f" (got {argv[1:]})")
    dataset = argv[1]
    try:
        module = converters.get_converter(dataset)
    except ValueError as e:
        raise app.UsageError(str(e))
    if FLAGS.output_dir is None:
        raise app.UsageError("--output_dir is required")
    wrong = [f"--{f}" for f in _SPECIFIC if FLAGS[f].present and f not in _DATASET_FLAGS[dataset]]
    if wrong:
        raise app.UsageError(f"{', '.join(wrong)} not used by {dataset}; it takes "
                             f"{', '.join('--' + f for f in _DATASET_FLAGS[dataset])}")
    try:
        kwargs = _converter_kwargs(dataset)
    except ValueError as e:
        raise app.UsageError(f"bad flag value: {e}")
    missing = [name for name, p in inspect.signature(module.convert).parameters.items()
               if p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD and name not in kwargs]
    if missing:
        raise app.UsageError(f"{dataset} needs {', '.join('--' + f for f in missing)}")
    try:
        manifest = module.convert(**kwargs)
    except (DatasetError, MissingExtraError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for split in kwargs.get("splits") or module.DEFAULT_SPLITS or manifest["splits"]:
        entry = manifest["splits"][split]
        skipped = f", skipped {entry['skipped']}" if entry.get("skipped") else ""
        turned = (f", {entry['exif_upright']} photos stored upright by their EXIF orientation"
                  if entry.get("exif_upright") else "")
        print(f"{split}: {entry['num_examples']} examples in {entry['num_shards']} shards"
              f"{skipped}{turned}")
    kind = (manifest.get("converter") or {}).get("args", {}).get("masks")
    if kind:
        print(f"masks: {kind}")
    print(f"wrote {fileio.join(FLAGS.output_dir, MANIFEST)}")
    return 0


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
