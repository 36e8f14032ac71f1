"""deeplab-convert-checkpoint: a Model Garden or research/deeplab checkpoint as a model_dir.

  # Model Garden (tf-models-official) DeepLabV3, e.g. seg_deeplabv3_pascal (swish):
  deeplab-convert-checkpoint --source garden --checkpoint garden_run/ckpt-30000 \\
      --model_dir runs/from_garden --activation swish
  # research/deeplab (TF-slim) resnet_v1_101 / resnet_v1_101_beta + DeepLabv3 ASPP head:
  deeplab-convert-checkpoint --source slim --checkpoint deeplab_run/model.ckpt-30000 \\
      --model_dir runs/from_slim
  deeplab-eval --model_dir runs/from_slim --records 'data/voc2012/val-*.tfrecord'
  # research/deeplab MobileNetV2 DeepLabv3 (model zoo's deeplabv3_mnv2_pascal_train_aug):
  deeplab-convert-checkpoint --source slim_mobilenet_v2 \\
      --checkpoint deeplabv3_mnv2_pascal_train_aug/model.ckpt-30000 --model_dir runs/mnv2

The backbone depth, stem, number of classes and ASPP branches are read from the checkpoint;
what it does not store (output stride, Multi_Grid, ASPP rates, activation) comes from the
flags, whose defaults are the paper's. Every variable left unmapped on either side is
printed (and listed in MODEL_DIR/conversion.json); a shape mismatch is an error naming
both variables and shapes. Exit status 2 when the checkpoint cannot be converted.
"""
from absl import app, flags

from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
flags.DEFINE_enum("source", None, ["garden", "slim", "slim_mobilenet_v2", "tflite"],
                  "garden: Model Garden (official/vision) DeepLabV3; slim: research/deeplab "
                  "with TF-slim resnet_v1_*; slim_mobilenet_v2: research/deeplab with TF-slim "
                  "MobileNetV2, or a TF-slim mobilenet_v2_*_224 ImageNet checkpoint (with "
                  "--num_classes --allow_partial); tflite: research/deeplab's released "
                  "MobileNetV2 .tflite (quantized weights dequantized, folded BN as identity "
                  "BN + bias).", required=True)
shared.define_checkpoint("Checkpoint prefix (e.g. model.ckpt-30000) or a directory (its "
                         "latest checkpoint).", required=True)
shared.define_model_dir("model_dir to write (config.json, dataset.json, checkpoints/).")
shared.define_output_stride("Output stride of the model_dir's config (Sec. 3.1); evaluation "
                            "rebuilds at deeplab-eval --output_stride anyway.", default=16)
shared.define_multi_grid("Multi_Grid unit rates of block4 the checkpoint was trained with "
                         "(Sec. 3.2).")
shared.define_aspp_rates("ASPP rates at --output_stride; default 6,12,18 at OS16, doubled at "
                         "OS8.")
flags.DEFINE_enum("activation", "relu", ["relu", "swish"], "Nonlinearity the checkpoint was "
                  "trained with (Model Garden's registered configs: swish).")
shared.define_num_classes("Needed only for a checkpoint without logits (with "
                          "--allow_partial).")
shared.define_class_names("Class names for dataset.json (default: VOC's for 21 classes, "
                          "Cityscapes' for 19, else class_N).")
flags.DEFINE_boolean("allow_partial", False, "Write the model_dir even if model variables "
                     "are missing from the checkpoint (e.g. an ImageNet backbone only).")
shared.define_overwrite("Replace an existing --model_dir, only if it is a model_dir converted "
                        "before (conversion.json, nothing else added) and does not hold "
                        "--checkpoint.")


def _ints(values, name):
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise app.UsageError(f"--{name}={','.join(values)}: expected integers") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from deeplab_tf.convert import convert_checkpoint
    overrides = dict(output_stride=FLAGS.output_stride, activation=FLAGS.activation,
                     multi_grid=_ints(FLAGS.multi_grid, "multi_grid"))
    if FLAGS.aspp_rates:
        overrides["aspp_rates"] = _ints(FLAGS.aspp_rates, "aspp_rates")
    try:
        result = convert_checkpoint(
            FLAGS.source, FLAGS.checkpoint, FLAGS.model_dir, overrides=overrides,
            num_classes=FLAGS.num_classes, class_names=FLAGS.class_names,
            allow_partial=FLAGS.allow_partial, overwrite=FLAGS.overwrite)
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        raise app.UsageError(str(e), exitcode=2)
    print(result.summary())


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
