"""deeplab-train: train DeepLabv3 with one of the experiments/ presets.

    deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/voc_os16 \
        --strategy=mirrored --params_override="train.steps=1000,train.base_lr=0.01"

The run resumes from the latest checkpoint in --model_dir. Exit status: 0 done; 75 stopped
by SIGTERM/SIGINT (or preemption) after saving a checkpoint, rerun the same command to
resume; 1 on a non-finite loss (the last good checkpoint is kept); 2 on bad flags.
"""
import logging
import sys

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", "quickstart",
                    "Preset in experiments/: NAME or NAME.VARIANT (e.g. voc_r101_os16_aspp, "
                    "table1_output_stride.os8).")
flags.DEFINE_string("model_dir", None, "Where config, checkpoints and logs go; resumed from.")
flags.DEFINE_string("params_override", "",
                    'Comma-separated typed overrides, e.g. "train.steps=100,train.base_lr=0.01,'
                    'model.multi_grid=(1,2,1)". Unknown keys are errors listing the valid ones.')
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "default: one CPU/GPU; mirrored: all local GPUs (sync BN); multi_worker: "
                  "TF_CONFIG cluster; tpu: --tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
flags.DEFINE_enum("mixed_precision", None, ["mixed_bfloat16", "mixed_float16"],
                  "Keras mixed-precision policy (bfloat16 on TPU and CPUs with avx512_bf16/AMX; "
                  "float16 on GPUs, with loss scaling).")
flags.mark_flag_as_required("model_dir")


def load_config(experiment, overrides):
    """The experiment's config with overrides applied; bad input is a UsageError (exit 2)."""
    import experiments
    from deeplab_tf.configs import ConfigError, apply_overrides
    try:
        return apply_overrides(experiments.get_config(experiment), overrides)
    except ConfigError as e:
        raise app.UsageError(str(e))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = load_config(FLAGS.experiment, FLAGS.params_override)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    import keras
    from deeplab_tf import train_lib
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    if config.data.generate_synthetic:
        train_lib.ensure_synthetic_records(config.data.train_records, config.data.seed)
    try:
        metadata = train_lib.dataset_metadata(config.data.train_records)
        dataset_fn = train_lib.records_dataset_fn(config, metadata)
    except (OSError, ValueError) as e:
        raise app.UsageError(f"data.train_records={config.data.train_records!r}: {e}")
    strategy = train_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)
    try:
        result = train_lib.train(config, FLAGS.model_dir, metadata, dataset_fn, strategy)
    except train_lib.Preempted as e:
        logging.warning("%s; exiting with status %d", e, train_lib.PREEMPTED_EXIT_CODE)
        sys.exit(train_lib.PREEMPTED_EXIT_CODE)
    except train_lib.NonFiniteLossError as e:
        logging.error("%s", e)
        sys.exit(1)
    print(f"trained {result.step} steps, final loss {result.loss:.4f}, "
          f"checkpoint {result.checkpoint}")


def run():
    app.run(main)


if __name__ == "__main__":
    run()
