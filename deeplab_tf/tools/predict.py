"""deeplab-predict: segment image files with a model_dir or an exported SavedModel.

  deeplab-predict --model_dir runs/voc --input photos/ --output_dir out/
  deeplab-predict --model_dir models/deeplab/1 --input 'photos/*.jpg,extra.png' \\
      --output_dir out/

--model_dir is a model_dir (the latest checkpoint unless --checkpoint; inference options from
flags or the config's `eval` section) or a SavedModel from deeplab-export (options baked
in at export); which one is detected. --input takes files, directories (their image files,
not recursive) and globs, comma-separated. For each image STEM it writes, by --outputs
(STEM-2, STEM-3... when stems repeat, or when an output would replace an input):
  STEM_mask.png     the classes in the dataset's colours (VOC, Cityscapes or custom)
  STEM_overlay.png  the colours blended over the photo (--alpha)
  STEM_label.png    raw class ids, single channel (what evaluation compares)
Images are read upright by their EXIF orientation, any mode converted to RGB 8-bit. The
size in the header is checked against --max_pixels before decoding.

Exit status: 0 when every image was segmented; 2 when any input failed (unreadable,
corrupt, too large, missing): each is reported and skipped, the rest still processed;
1 for bad flags.
"""
import sys

from absl import app, flags

from deeplab_tf.tools import check_flags, run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
shared.define_model_dir("A model_dir or a SavedModel directory (detected).")
shared.define_checkpoint("With a model_dir: checkpoint path (default latest).")
flags.DEFINE_list("input", None, "Image files, directories and globs, comma-separated.",
                  required=True)
shared.define_output_dir("Where the pictures go (created).", required=True)
flags.DEFINE_list("outputs", ["mask", "overlay", "label"], "Which of mask, overlay, label "
                  "to write.")
flags.DEFINE_float("alpha", 0.5, "Opacity of the colours in the overlay (0-1).")
shared.define_max_pixels("Refuse images with more pixels (checked from the header, before "
                         "decoding); 0: no limit.", default=100_000_000)
shared.define_output_stride("With a model_dir: 8 (best) or 16 (faster). Default: config "
                            "eval.output_stride.")
shared.define_inference_scales("With a model_dir: scales averaged, e.g. "
                               "0.5,0.75,1.0,1.25,1.5,1.75. Default: config eval.scales.")
shared.define_add_flipped_images("With a model_dir: also average left-right flips. Default: "
                                 "config eval.flip.")
shared.define_max_side("With a model_dir: sliding windows above this side. Default: config "
                       "eval.max_side.")
shared.define_mixed_precision("with a model_dir (a SavedModel has its own, from "
                              "deeplab-export)")
check_flags(non_negative=["max_pixels"])

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")
OUTPUTS = ("mask", "overlay", "label")


def list_inputs(entries):
    """(paths, problems): files of each entry (file, directory or glob), in order, once."""
    from deeplab_tf import fileio
    paths, problems = [], []
    for entry in entries:
        if fileio.isdir(entry):
            found = [fileio.join(entry, n) for n in fileio.listdir(entry)
                     if n.lower().endswith(IMAGE_EXTENSIONS)]
        elif fileio.exists(entry):
            found = [entry]
        else:
            found = [p for p in fileio.glob(entry) if fileio.isfile(p)]
        if not found:
            problems.append(f"{entry}: no such file, or no image in that directory or glob")
        paths += [p for p in found if p not in paths]
    return paths, problems


def output_stems(paths, output_dir=None, outputs=OUTPUTS):
    """A unique output name per input (fileio.output_stems): its stem, with -2, -3... when
    stems repeat (a/x.jpg, b/x.jpg), or when an output STEM_KIND.png in `output_dir` would
    be one of the inputs (an output never replaces an input)."""
    from deeplab_tf import fileio
    inputs = {fileio.absolute(p) for p in paths}

    def taken(stem):
        return output_dir is not None and any(
            fileio.absolute(fileio.join(output_dir, f"{stem}_{kind}.png")) in inputs
            for kind in outputs)
    return fileio.output_stems(paths, taken)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    unknown = sorted(set(FLAGS.outputs) - set(OUTPUTS))
    if unknown or not FLAGS.outputs:
        raise app.UsageError(f"--outputs={','.join(FLAGS.outputs)}: expected some of {OUTPUTS}")
    if not 0 <= FLAGS.alpha <= 1:
        raise app.UsageError(f"--alpha={FLAGS.alpha}: expected a value in [0, 1]")
    from deeplab_tf import fileio, visualize
    from deeplab_tf.images import ImageError
    from deeplab_tf.inference import Segmenter, parse_scales
    from deeplab_tf.progress import Progress
    paths, failures = list_inputs(FLAGS.input)
    for problem in failures:
        print(f"error: {problem}", file=sys.stderr)
    if not paths:
        raise app.UsageError(f"--input={','.join(FLAGS.input)}: no image files found")
    try:
        options = dict(output_stride=FLAGS.output_stride, flip=FLAGS.add_flipped_images,
                       scales=parse_scales(FLAGS.inference_scales, "inference_scales"),
                       max_side=FLAGS.max_side, precision=FLAGS.mixed_precision)
        segmenter = Segmenter(FLAGS.model_dir, checkpoint=FLAGS.checkpoint,
                              **{k: v for k, v in options.items() if v is not None})
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(f"--model_dir={FLAGS.model_dir}: {e}")
    colormap = segmenter.metadata.colormap()
    fileio.makedirs(FLAGS.output_dir)
    progress = Progress(len(paths), unit="image")
    done = 0
    for path, stem in zip(paths, output_stems(paths, FLAGS.output_dir, FLAGS.outputs)):
        out = fileio.join(FLAGS.output_dir, stem)
        try:
            rgb, labels, _ = segmenter.segment_file(path, FLAGS.max_pixels or None)
        except ImageError as e:
            failures.append(str(e))
            print(f"error: {e}", file=sys.stderr)
        else:
            if "mask" in FLAGS.outputs:
                fileio.save_image(f"{out}_mask.png", visualize.colorize(labels, colormap))
            if "overlay" in FLAGS.outputs:
                fileio.save_image(f"{out}_overlay.png",
                                  visualize.overlay(rgb, labels, colormap, FLAGS.alpha))
            if "label" in FLAGS.outputs:
                visualize.save_label_png(labels, f"{out}_label.png")
            done += 1
        progress.add(1)
    progress.close()
    print(f"{done} of {len(paths)} images segmented into {FLAGS.output_dir}")
    if failures:
        print(f"{len(failures)} failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 2
    return 0


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
