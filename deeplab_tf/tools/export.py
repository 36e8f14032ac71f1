"""deeplab-export: a model_dir's checkpoint as a SavedModel for TF Serving (and TFLite).

  deeplab-export --model_dir runs/voc --export_dir models/deeplab/1
  # Paper's best inference baked in, probabilities too, plus a 513x513 float TFLite model:
  deeplab-export --model_dir runs/voc --export_dir models/deeplab/1 --output_stride 8 \\
      --inference_scales 0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images --probabilities \\
      --tflite models/deeplab.tflite --tflite_size 513

Signatures (see deeplab_tf/export_lib.py): `serving_default` takes a batch of encoded
JPEG/PNG bytes (EXIF orientation not applied) and returns `labels` padded with 255 to the
largest image plus `image_sizes`; `predict_images` takes uint8 [N, H, W, 3]. Class names
and the colour map are stored in the SavedModel. Unset options come from the model_dir's
config.json `export` section. The export is written to a temporary directory and renamed;
an existing --export_dir is replaced only with --overwrite, and only if it is an earlier
export (saved_model.pb, fingerprint.pb, variables/, assets/ and nothing else): a model_dir,
a folder holding it or any other folder is refused before any work.
"""
import sys

from absl import app, flags

from deeplab_tf.tools import check_flags, run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
shared.define_model_dir("Training output: config.json, dataset.json, checkpoints/.")
shared.define_checkpoint("Checkpoint path (default: the latest).")
flags.DEFINE_string("export_dir", None, "SavedModel directory to write; for TF Serving "
                    "BASE/VERSION, e.g. models/deeplab/1.", required=True)
shared.define_overwrite("Replace an existing --export_dir, only if it is an earlier export "
                        "(nothing but a SavedModel's files in it).")
shared.define_output_stride("Output stride baked into the graph (8: best quality, 16: ~3x "
                            "faster). Default: config export.output_stride.")
shared.define_inference_scales("Scales averaged at inference, e.g. 0.5,0.75,1.0,1.25,1.5,1.75 "
                               "(each one costs a pass). Default: config.")
shared.define_add_flipped_images("Also average left-right flips (doubles the cost). Default: "
                                 "config export.flip.")
flags.DEFINE_boolean("probabilities", None, "Also return per-class probabilities "
                     "(float32 [N, H, W, C]; large). Default: config export.probabilities.")
shared.define_pad_to("Minimum padded size N or HxW (e.g. 513). Default: the next OS*k+1 of "
                     "each image.")
shared.define_max_side("Sliding windows for padded sides above this. Default: config "
                       "eval.max_side.")
flags.DEFINE_string("tflite", None, "Also write a TFLite model to this file (fixed size).")
flags.DEFINE_string("tflite_size", "513", "TFLite input size N or HxW; inputs must be "
                    "resized to it (float32 raw RGB 0-255).")
flags.DEFINE_enum("tflite_quantize", "float", ["float", "int8"], "TFLite weights: float, or "
                  "int8 (calibrated on --representative_images).")
flags.DEFINE_string("representative_images", None, "Glob of images for int8 calibration, "
                    "e.g. 'data/voc/JPEGImages/2007_*.jpg' (100-500 images).")
flags.DEFINE_integer("serving_memory_mb", None, "Memory target of one request, MiB: the "
                     "default --max_pixels is what fits it, from the model's estimated peak "
                     "bytes per pixel at the baked output stride, scales, flip and precision "
                     "(deeplab_tf/serving_budget.py). Default: 1024 (room for 4 concurrent "
                     "requests, the weights and the runtime on an 8 GiB host).")
shared.define_max_pixels("Pixels one request may hold in all (height * width, summed over its "
                         "images); checked from the JPEG/PNG headers before decoding. "
                         "Overrides the budget --serving_memory_mb derives. Default: that "
                         "budget (ResNet-101 OS16, 1024 MiB: ~2.3M).")
shared.define_mixed_precision("baked into the SavedModel's graph (not the TFLite model)")
check_flags(sizes=["tflite_size"], positive=["max_pixels", "serving_memory_mb"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from deeplab_tf import export_lib, fileio
    from deeplab_tf.images import read_image
    from deeplab_tf.inference import parse_scales, parse_size
    try:
        scales = parse_scales(FLAGS.inference_scales, "inference_scales")
        pad_to = parse_size(FLAGS.pad_to, "pad_to")
        tflite_size = parse_size(FLAGS.tflite_size, "tflite_size")
    except ValueError as e:
        raise app.UsageError(str(e))
    if FLAGS.tflite and FLAGS.mixed_precision:
        raise app.UsageError("--tflite: the TFLite model is float32 (or int8 with "
                             "--tflite_quantize): drop --mixed_precision or --tflite")
    representative = None
    if FLAGS.tflite and FLAGS.tflite_quantize == "int8":
        files = fileio.glob(FLAGS.representative_images) if FLAGS.representative_images else []
        if not files:
            raise app.UsageError("--tflite_quantize=int8 needs --representative_images "
                                 f"matching image files (got {FLAGS.representative_images!r})")
        representative = (read_image(f) for f in files)
    try:
        path, model, _, protocol, budget = export_lib.export_model_dir(
            FLAGS.model_dir, FLAGS.export_dir, checkpoint=FLAGS.checkpoint,
            probabilities=FLAGS.probabilities, overwrite=FLAGS.overwrite,
            output_stride=FLAGS.output_stride, scales=scales, flip=FLAGS.add_flipped_images,
            pad_to=pad_to, max_side=FLAGS.max_side, max_pixels=FLAGS.max_pixels,
            precision=FLAGS.mixed_precision, serving_memory_mb=FLAGS.serving_memory_mb)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        raise app.UsageError(str(e))
    except export_lib.ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"SavedModel written to {path} ({protocol})")
    print(f"max_pixels={budget.max_pixels} per request"
          + (" (--max_pixels)" if FLAGS.max_pixels else "")
          + f"; --serving_memory_mb={budget.memory_mb} gives {budget.derived} "
          f"(estimated peak {budget.bytes_per_pixel:.0f} bytes per pixel plus the weights)")
    if FLAGS.tflite:
        export_lib.export_tflite(model, protocol, FLAGS.tflite, *tflite_size,
                                 quantize=FLAGS.tflite_quantize,
                                 representative_images=representative)
        print(f"TFLite ({FLAGS.tflite_quantize}, {tflite_size[0]}x{tflite_size[1]}) written "
              f"to {FLAGS.tflite}")


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
