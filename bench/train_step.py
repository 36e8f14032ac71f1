"""Benchmark (not a test): the training step of DeepLabv3 ResNet-101, OS16, 513x513, batch 2,
through the real loop (deeplab_tf.train_lib.train), on random data.

    python bench/train_step.py [--output_stride 16] [--batch 2] [--steps 5]
        [--mixed_precision mixed_bfloat16] [--backbone resnet101]

Prints the median seconds per step after one warm-up step (tracing excluded).
"""
import argparse
import statistics
import tempfile
import time

import deeplab_tf  # noqa: F401  (before TensorFlow: oneDNN)
import numpy as np
import tensorflow as tf


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_stride", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--mixed_precision", default=None)
    args = parser.parse_args()

    import keras
    from deeplab_tf import configs, train_lib
    from deeplab_tf.data.metadata import VOC
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    config = configs.apply_overrides(configs.ExperimentConfig(), (
        f"model.backbone={args.backbone},model.output_stride={args.output_stride},"
        f"model.backbone_weights=none,train.batch_size={args.batch},"
        f"train.steps={args.steps + 1},train.steps_per_loop=1,"
        f"train.checkpoint_every={args.steps + 1}"))
    rng = np.random.default_rng(0)
    batch = {"image": rng.uniform(0, 255, (args.batch, args.size, args.size, 3)).astype("float32"),
             "label": rng.integers(0, 21, (args.batch, args.size, args.size, 1)).astype("int32")}

    def dataset_fn(ctx, start_step):
        return tf.data.Dataset.from_tensors(batch).repeat()

    times = []
    last = [time.perf_counter()]

    def tick(step):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    with tempfile.TemporaryDirectory() as model_dir:
        train_lib.train(config, model_dir, VOC, dataset_fn, hooks={"after_loop": tick})
    steady = times[1:]
    print(f"\nDeepLabv3 {args.backbone} OS{args.output_stride} {args.size}x{args.size} "
          f"batch {args.batch} {args.mixed_precision or 'float32'}: "
          f"{statistics.median(steady):.3f} s/step (median of {len(steady)}, "
          f"min {min(steady):.3f})")


if __name__ == "__main__":
    main()
