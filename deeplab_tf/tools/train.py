"""deeplab-train: train DeepLabv3 with one of the experiments/ presets or your own config.

    deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/voc_os16 \
        --strategy=mirrored --params_override="train.steps=1000,train.base_lr=0.01"
    deeplab-train --experiment=../my_repo/my_experiment.py --model_dir=runs/mine
    deeplab-train --config_file=runs/voc_os16/config.json --model_dir=runs/again

The config: --experiment, then --config_file (JSON/YAML), then --params_override.

The run resumes from the latest checkpoint in --model_dir. Exit status: 0 done; 75 stopped
by SIGTERM/SIGINT or a GCE maintenance/preemption event after saving a checkpoint (every
worker at the same step), rerun the same command to resume; 1 on a non-finite loss (the
last good checkpoint is kept), a checkpoint that cannot be written, corrupt records (named:
shard and index; data.skip_corrupt_records=true trains without them and reports how
many), bad flags (before any work), a config that differs from the one --model_dir was
trained with (the differences listed; --allow_config_change accepts the safe ones, like more
steps), or a --model_dir in use by another deeplab-train (its lease.json: host, pid, last
heartbeat; --break_lease when it is gone). Nothing is written in these cases.
"""
import logging
import os
import sys
import time

from absl import app, flags

from deeplab_tf import fileio
from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
flags.DEFINE_string("experiment", "quickstart",
                    "Preset in experiments/: NAME or NAME.VARIANT (e.g. voc_r101_os16_aspp, "
                    "table1_output_stride.os8), or your own Python file PATH.py or "
                    "PATH.py:VARIANT defining get_config(variant=None) as the presets do.")
flags.DEFINE_string("config_file", None,
                    "JSON or YAML file with config.json's schema (any subset of its keys), "
                    "applied on top of --experiment and before --params_override; a run's "
                    "MODEL_DIR/config.json re-runs it.")
shared.define_model_dir("Where config, checkpoints and logs go; resumed from.")
flags.DEFINE_string("params_override", "",
                    'Comma-separated typed overrides, e.g. "train.steps=100,train.base_lr=0.01,'
                    'model.multi_grid=(1,2,1)". Unknown keys are errors listing the valid ones.')
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker", "tpu"],
                  "default: one CPU/GPU; mirrored: all local GPUs (sync BN); multi_worker: "
                  "TF_CONFIG cluster; tpu: --tpu.")
flags.DEFINE_string("tpu", None, "TPU name or address for --strategy=tpu.")
flags.DEFINE_bool("allow_config_change", False,
                  "Resume although the config differs from --model_dir's config.json in safe "
                  "keys (train.steps, checkpoint/log cadence, follow-up, eval/export); the "
                  "previous config is kept as config-<step>.json. Changes to the model's "
                  "variables or the data stream are refused regardless.")
flags.DEFINE_bool("break_lease", False,
                  "Take over --model_dir's lease.json from a trainer that is still marked "
                  "live (only when you know it is gone; a stale lease is taken over anyway).")
shared.define_mixed_precision("for training (float16 with loss scaling)")


def load_config(experiment, overrides, config_file=None):
    """The experiment's config, then the config file, then the overrides
    (deeplab_tf/config_sources.py); bad input is a UsageError (exit status 1)."""
    from deeplab_tf import config_sources
    from deeplab_tf.configs import ConfigError
    try:
        return config_sources.resolve(experiment, config_file, overrides)
    except ConfigError as e:
        raise app.UsageError(str(e))


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    start = time.time()
    config = load_config(FLAGS.experiment, FLAGS.params_override, FLAGS.config_file)
    import keras
    from deeplab_tf import train_lib
    if tf_config_task_type() == "evaluator":   # a sidecar evaluator: follows, never trains
        from deeplab_tf import eval_lib
        eval_lib.follow(FLAGS.model_dir)
        return
    # The strategy comes first: MultiWorkerMirroredStrategy configures collective ops at
    # program startup, before any TensorFlow op runs (the record scan below runs some).
    strategy = train_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)
    if FLAGS.mixed_precision:
        keras.mixed_precision.set_global_policy(FLAGS.mixed_precision)
    from deeplab_tf import config_change, lease
    from deeplab_tf import model_dir as model_dir_lib
    from deeplab_tf.configs import ConfigError
    try:   # before anything is written (train() checks again, with the dataset's classes)
        model_dir_lib.check_resume(FLAGS.model_dir, config, None, FLAGS.allow_config_change)
    except (config_change.ConfigChangeError, ConfigError, OSError) as e:   # or unreadable
        logging.error("%s", e)
        sys.exit(1)
    if not train_lib.is_chief(strategy):   # the chief holds the lease for the job
        return train_and_report(config, strategy, start, FLAGS.model_dir,
                                FLAGS.allow_config_change)
    holder = lease.Lease(FLAGS.model_dir, what="deeplab-train", break_lease=FLAGS.break_lease,
                         hint="if it is gone, rerun with --break_lease")
    try:
        holder.acquire()
    except lease.LeaseHeldError as e:
        logging.error("--model_dir: %s", e)
        sys.exit(1)
    try:
        return train_and_report(config, strategy, start, FLAGS.model_dir,
                                FLAGS.allow_config_change)
    finally:   # sys.exit (75, 1) included
        holder.release()


def train_and_report(config, strategy, start, model_dir, allow_config_change):
    """Everything after the checks: data, training, the follow-up (chief)."""
    import keras
    from deeplab_tf import train_lib
    from deeplab_tf.data import training_input
    from deeplab_tf.checkpointing import CheckpointRestoreError, CheckpointWriteError
    from deeplab_tf.config_change import ConfigChangeError
    from deeplab_tf.data.manifest import DatasetError
    from deeplab_tf.data.record_scan import CorruptRecordError
    if config.data.generate_synthetic:   # by the chief; other workers wait for it
        try:
            training_input.ensure_synthetic_records(config.data.train_records,
                                                    config.data.seed,
                                                    is_chief=train_lib.is_chief(strategy))
        except (TimeoutError, DatasetError) as e:   # DatasetError: a folder not its own
            logging.error("%s", e)
            sys.exit(1)
    try:
        metadata = training_input.dataset_metadata(config.data.train_records)
        records = training_input.scan_records(config, model_dir)
        dataset_fn = training_input.records_dataset_fn(config, metadata, records,
                                                       model_dir)
    except CorruptRecordError as e:
        logging.error("data.train_records=%r: %s", config.data.train_records, e)
        sys.exit(1)
    except (OSError, ValueError) as e:
        raise app.UsageError(f"data.train_records={config.data.train_records!r}: {e}")
    from deeplab_tf import preemption
    hold = os.environ.get(preemption.HOLD_ENV)   # tests/cluster/ only: an exact stop step
    hooks = {"at_boundary": preemption.hold_until_notice(int(hold))} if hold else None
    try:
        result = train_lib.train(config, model_dir, metadata, dataset_fn, strategy,
                                 hooks=hooks, allow_config_change=allow_config_change)
    except train_lib.Preempted as e:
        logging.warning("%s; exiting with status %d", e, train_lib.PREEMPTED_EXIT_CODE)
        sys.exit(train_lib.PREEMPTED_EXIT_CODE)
    except (train_lib.NonFiniteLossError, CheckpointWriteError, CheckpointRestoreError,
            ConfigChangeError) as e:
        logging.error("%s", e)
        sys.exit(1)
    except Exception as e:  # a record that fails mid-run: name it (one scan of the data)
        explained = training_input.explain_data_error(config, e)
        if explained is None:
            raise
        logging.error("training stopped, the input failed (%s): %s", type(e).__name__,
                      explained)
        sys.exit(1)
    if not train_lib.is_chief(strategy):   # the chief evaluates, exports and reports
        print(f"\nworker done at step {result.step}")
        return
    if records.bad:
        print(f"\nskipped {len(records.bad)} corrupt record(s) of {sum(records.counts)} "
              f"(data.skip_corrupt_records)")
    artifacts = [("checkpoint", result.checkpoint),
                 ("config", fileio.join(model_dir, "config.json")),
                 ("TensorBoard logs", fileio.join(model_dir, "train"))]
    if result.loss == result.loss:  # not NaN: steps were run
        print(f"\ntrained to step {result.step} in {time.time() - start:.0f} s, final loss "
              f"{result.loss:.4f}")
    else:
        print(f"\nalready trained: step {result.step} of {config.train.steps}")
    # The follow-up evaluates and exports in float32, as deeplab-eval and deeplab-export do
    # by default: --mixed_precision is about training (a float16 SavedModel is a choice,
    # made with deeplab-export --mixed_precision).
    keras.mixed_precision.set_global_policy("float32")
    artifacts += after_training(config, model_dir, metadata)
    print(f"\ndone in {time.time() - start:.0f} s. Artifacts:")
    for name, path in artifacts:
        print(f"  {name:<22} {path}")


def after_training(config, model_dir, metadata):
    """The quickstart's follow-up (train.then_*): evaluation with the per-class table, a
    SavedModel, coloured predictions of a few validation images. Returns the artifacts."""
    t, artifacts = config.train, []
    if t.then_evaluate:
        from deeplab_tf import eval_lib
        dataset = eval_lib.records_dataset(config.data.eval_records, metadata, model_dir)
        # prints the mIoU and the per-class table, then writes the results
        eval_lib.run_evaluation(model_dir, dataset)
        eval_dir = fileio.join(model_dir, "eval")
        artifacts += [("eval results", fileio.join(eval_dir, "results.json")),
                      ("per-class IoU chart", fileio.join(eval_dir, "class_iou.png")),
                      ("confusion matrix", fileio.join(eval_dir, "confusion_matrix.png"))]
    if t.then_export:
        from deeplab_tf import export_lib
        export_dir = fileio.join(model_dir, "export")
        try:   # replaces only an earlier export there (export_lib.SAVED_MODEL_NAMES)
            export_lib.export_model_dir(model_dir, export_dir, overwrite=True)
            artifacts.append(("SavedModel", export_dir))
        except FileExistsError as e:
            print(f"\nerror: train.then_export: not exported: {e}", file=sys.stderr)
    if t.then_predict:
        artifacts.append(("predictions", write_predictions(config, model_dir, t.then_predict)))
    return artifacts


def write_predictions(config, model_dir, count):
    """Coloured masks and overlays of the first `count` validation images, named by the
    records' stored file names made safe (fileio.output_stems: never outside the folder,
    never two images on one file)."""
    import numpy as np
    import tensorflow as tf
    from deeplab_tf import visualize
    from deeplab_tf.data import pipeline, tfrecord
    from deeplab_tf.inference import Segmenter
    segmenter = Segmenter(model_dir)
    out_dir = fileio.join(model_dir, "predictions")
    fileio.makedirs(out_dir)
    colormap = segmenter.metadata.colormap()
    records = tf.data.TFRecordDataset(pipeline.list_files(config.data.eval_records))
    examples = [tfrecord.parse_example(serialized) for serialized in records.take(count)]
    names = [e[tfrecord.IMAGE_FILENAME].numpy().decode("utf-8", "replace") for e in examples]
    for features, stem in zip(examples, fileio.output_stems(names)):
        image = tfrecord.decode_image(features[tfrecord.IMAGE_ENCODED]).numpy()
        truth = tfrecord.decode_label(features[tfrecord.LABEL_ENCODED]).numpy()[..., 0]
        labels, _ = segmenter.segment(image)
        row = np.concatenate([image, visualize.colorize(truth, colormap),
                              visualize.colorize(labels, colormap),
                              visualize.overlay(image, labels, colormap)], axis=1)
        fileio.save_image(fileio.join(out_dir, f"{stem}.png"), row)
    return out_dir


def tf_config_task_type():
    """This process's task type in TF_CONFIG ("chief", "worker", "evaluator"), or None."""
    import json
    return json.loads(os.environ.get("TF_CONFIG") or "{}").get("task", {}).get("type")


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
