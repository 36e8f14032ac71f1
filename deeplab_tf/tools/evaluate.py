"""deeplab-eval: mIoU of a trained model_dir on TFRecords, as the paper evaluates (Sec. 4.1).

  # The paper's best inference (Table 6): output stride 8, six scales, left-right flips.
  deeplab-eval --model_dir runs/voc --records 'data/voc/val-*.tfrecord' \\
      --output_stride 8 --inference_scales 0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images

  # A sidecar evaluator, on any machine that sees the model_dir (e.g. gs://): waits for
  # the run to start, evaluates each new checkpoint once, stops after its last step.
  deeplab-eval --model_dir gs://bucket/runs/voc --watch

Whole images are predicted (padded with the mean pixel to OS*k+1, cut back to the original
size; windows above --max_side) and compared with full-resolution labels, 255 ignored.
Unset options come from the model_dir's config.json `eval` section. Results go to
--output_dir (default MODEL_DIR/eval): results-STEP.json, results.json, TensorBoard
scalars, class_iou.png, confusion_matrix.png. Under several GPUs a MirroredStrategy
spreads the images over them. deeplab-train run as TF_CONFIG's "evaluator" task does what
--watch does.

Records of another dataset than the model's (their manifest.json: class count, names,
ignore label) are refused; the mIoU is printed before the results are written, so a
failed write (a full disk) is an error that still shows it.
"""
import sys

from absl import app, flags

from deeplab_tf.tools import check_flags, run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
shared.define_model_dir("Training output: config.json, dataset.json, checkpoints/.")
shared.define_checkpoint("Checkpoint path (default: the latest in MODEL_DIR/checkpoints). "
                         "Ignored with --watch.")
shared.define_records("TFRecord file pattern of the evaluation split, e.g. "
                      "'data/voc/val-*.tfrecord' (default: the config's data.eval_records).")
shared.define_output_stride("Output stride at evaluation, same weights (paper: train at 16, "
                            "evaluate at 8). Default: config eval.output_stride.")
shared.define_inference_scales("Input scales whose probabilities are averaged; paper's best: "
                               "0.5,0.75,1.0,1.25,1.5,1.75. Default: config eval.scales.")
shared.define_add_flipped_images("Also average left-right flipped inputs, at every scale "
                                 "(paper: +0.3 mIoU). Default: config eval.flip.")
shared.define_pad_to("Minimum padded size N or HxW, e.g. 513 as the original "
                     "research/deeplab. Default: the next OS*k+1 of each image.")
shared.define_max_side("Sliding windows for padded sides above this many pixels "
                       "(Cityscapes). Default: config eval.max_side (2048).")
shared.define_output_dir("Where results go (default: MODEL_DIR/eval).")
flags.DEFINE_boolean("watch", False, "Follow a training run from its model_dir: wait for "
                     "it to start, evaluate every new checkpoint once, stop after the run's "
                     "last step (train.steps) or after --watch_timeout.")
flags.DEFINE_float("watch_timeout", 3600, "With --watch: stop when the run has not started, "
                   "or no new checkpoint came, for this many seconds.")
shared.define_mixed_precision("for the evaluated model (the checkpoint's weights at that "
                              "precision)")
check_flags(positive=["watch_timeout"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    import tensorflow as tf

    from deeplab_tf import eval_lib, model_dir
    from deeplab_tf.inference import Protocol, parse_scales, parse_size
    try:
        overrides = dict(output_stride=FLAGS.output_stride,
                         scales=parse_scales(FLAGS.inference_scales, "inference_scales"),
                         flip=FLAGS.add_flipped_images,
                         pad_to=parse_size(FLAGS.pad_to, "pad_to"), max_side=FLAGS.max_side)
    except ValueError as e:
        raise app.UsageError(str(e))
    if FLAGS.watch:
        try:
            eval_lib.follow(FLAGS.model_dir, FLAGS.records, FLAGS.output_dir, overrides,
                            FLAGS.watch_timeout, strategy=_strategy(tf),
                            precision=FLAGS.mixed_precision)
        except (TimeoutError, eval_lib.DatasetMismatchError, eval_lib.ResultsWriteError) as e:
            sys.exit(f"deeplab-eval: {e}")
        return
    try:
        config, metadata = model_dir.read_config(FLAGS.model_dir)
        protocol = Protocol.from_config(config.eval, **overrides)
    except (ValueError, FileNotFoundError) as e:
        raise app.UsageError(str(e))
    records = FLAGS.records or config.data.eval_records
    if not records:
        raise app.UsageError("--records: no evaluation TFRecords given, and the config's "
                             "data.eval_records is empty")
    try:
        dataset = eval_lib.records_dataset(records, metadata, FLAGS.model_dir)
    except FileNotFoundError as e:
        raise app.UsageError(f"--records: {e}")
    except eval_lib.DatasetMismatchError as e:
        sys.exit(f"deeplab-eval: --records: {e}")
    try:
        eval_lib.run_evaluation(
            FLAGS.model_dir, dataset, checkpoint=FLAGS.checkpoint,
            output_dir=FLAGS.output_dir, protocol=protocol, strategy=_strategy(tf),
            precision=FLAGS.mixed_precision)
    except eval_lib.ResultsWriteError as e:   # the numbers were printed before the write
        sys.exit(f"deeplab-eval: {e}")


def _strategy(tf):
    """A MirroredStrategy over several GPUs, else None (the default strategy)."""
    gpus = tf.config.list_logical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else None


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
