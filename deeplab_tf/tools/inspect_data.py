"""Shows a converted dataset and what the model is fed from it.

USAGE: deeplab-inspect-data --records PATTERN --output_dir DIR [flags]
   or: python -m deeplab_tf.tools.inspect_data --records PATTERN --output_dir DIR

Prints the summary of the `manifest.json` next to the records (if there is one: classes,
examples and shards per split, image sizes, class pixel histogram), then writes
`--num_samples` training samples exactly as the training pipeline makes them (random
scale, pad, crop, flip of Sec. 4.1; `deeplab_tf.data.pipeline` train mode) to DIR:
NN_<name>_image.png (the crop; padding shows the mean pixel), NN_<name>_mask.png (labels
in the dataset's colours, ignored pixels white) and NN_<name>_overlay.png.

Example:
  deeplab-build-data synthetic --output_dir /tmp/synthetic
  deeplab-inspect-data --records '/tmp/synthetic/train-*.tfrecord' --output_dir /tmp/look \\
      --crop_size 128
"""
import os
import sys

import numpy as np
from absl import app, flags

from deeplab_tf import fileio
from deeplab_tf.data.manifest import MANIFEST, read_manifest_json
from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
shared.define_records("TFRecord file pattern (comma-separated globs allowed).")
shared.define_output_dir("Where the sample PNGs go (created if needed; a local folder or "
                         "gs://bucket/...).")
flags.DEFINE_integer("num_samples", 8, "Augmented training samples to write.", lower_bound=0)
flags.DEFINE_list("crop_size", ["513"], "Training crop 'size' or 'height,width' (paper: 513).")
flags.DEFINE_float("min_scale", 0.5, "Smallest random scale (paper: 0.5).")
flags.DEFINE_float("max_scale", 2.0, "Largest random scale (paper: 2.0).")
flags.DEFINE_float("scale_step", 0.25, "Scale grid step (original: 0.25); 0 = continuous.")
shared.define_seed("Data seed of the pipeline.", default=0)


def read_manifest(pattern):
    """The manifest next to the first pattern's files, or None."""
    return read_manifest_json(fileio.dirname(pattern.split(",")[0].strip()) or ".")


def summarize(manifest):
    """Human-readable lines describing a manifest."""
    from deeplab_tf.data.metadata import DatasetMetadata
    meta = DatasetMetadata.from_dict(manifest["metadata"])
    lines = [f"dataset {meta.name}: {meta.num_classes} classes, ignore label "
             f"{meta.ignore_label}"]
    for split, entry in manifest.get("splits", {}).items():
        size = entry.get("image_size", {})
        lines.append(f"  {split}: {entry['num_examples']} examples in {entry['num_shards']} "
                     f"shards; height {size.get('min_height')}-{size.get('max_height')}, "
                     f"width {size.get('min_width')}-{size.get('max_width')}")
        if entry.get("skipped"):
            lines.append(f"    skipped: {entry['skipped']}")
        pixels = np.asarray(entry.get("class_pixels", []), np.float64)
        total = pixels.sum() + entry.get("ignore_pixels", 0)
        if total:
            lines.append("    class pixels:")
            for name, n in zip(meta.class_names, pixels):
                lines.append(f"      {name:<20s} {100 * n / total:6.2f}%")
            lines.append(f"      {'(ignored, 255)':<20s} "
                         f"{100 * entry.get('ignore_pixels', 0) / total:6.2f}%")
    return lines


def write_samples(pattern, output_dir, metadata, num_samples, crop_size, **augmentation):
    """Writes image, coloured mask and overlay PNGs of augmented training samples."""
    from deeplab_tf import visualize
    from deeplab_tf.data import pipeline
    fileio.makedirs(output_dir)
    cmap = metadata.colormap()
    ds = pipeline.build_dataset(pattern, mode="train", global_batch_size=1,
                                crop_size=crop_size, with_metadata=True, **augmentation)
    written = []
    for i, batch in enumerate(ds.take(num_samples).as_numpy_iterator()):
        image = np.clip(np.round(batch["image"][0]), 0, 255).astype(np.uint8)
        label = batch["label"][0, ..., 0]
        name = batch["filename"][0].decode("utf-8", "replace").replace(os.sep, "_")
        stem = fileio.join(output_dir, f"{i:02d}_{name}")
        fileio.save_image(f"{stem}_image.png", image)
        fileio.save_image(f"{stem}_mask.png", visualize.colorize(label, cmap))
        fileio.save_image(f"{stem}_overlay.png", visualize.overlay(image, label, cmap))
        written.append(stem)
    return written


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}")
    if not FLAGS.records or not FLAGS.output_dir:
        raise app.UsageError("--records and --output_dir are required")
    from deeplab_tf.data import pipeline
    from deeplab_tf.data.metadata import VOC, DatasetMetadata
    try:
        files = pipeline.list_files(FLAGS.records)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    manifest = read_manifest(FLAGS.records)
    if manifest is None:
        counts = pipeline.count_records(files)
        print(f"no {MANIFEST} next to the records; {sum(counts)} records in {len(files)} "
              f"files; colours of PASCAL VOC")
        metadata = VOC
    else:
        print("\n".join(summarize(manifest)))
        metadata = DatasetMetadata.from_dict(manifest["metadata"])
    crop = [int(v) for v in FLAGS.crop_size]
    crop = (crop[0], crop[0]) if len(crop) == 1 else tuple(crop)
    written = write_samples(FLAGS.records, FLAGS.output_dir, metadata, FLAGS.num_samples,
                            crop, min_scale=FLAGS.min_scale, max_scale=FLAGS.max_scale,
                            scale_step=FLAGS.scale_step, seed=FLAGS.seed)
    print(f"wrote {len(written)} samples (image, mask, overlay; crop {crop[0]}x{crop[1]}) "
          f"to {FLAGS.output_dir}")
    return 0


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
