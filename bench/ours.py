"""Benchmark (not a test): deeplab_tf's DeepLabv3 on random data, one measurement per run.

    python bench/ours.py --task fwd   --output_stride 16          # inference, batch 1
    python bench/ours.py --task train --output_stride 16 --batch 2  # the real training loop
    python bench/ours.py --task eval  --output_stride 8            # 6 scales + flip, 1 image

Switches that bring back a slower path, for before/after numbers:
  --fold             inference with BN folded into the convs (modeling/folding.py; off by
                     default: slower with TF's oneDNN fused kernels on the CPU we measured)
  --keras_atrous     atrous convs through tf.nn.convolution (SpaceToBatchND, what Keras
                     Conv2D(dilation_rate=r) does) instead of the direct dilated Conv2D
  --native_atrous    inference atrous convs through the dilated Conv2D (all taps) instead of
                     the valid-tap form (modeling/atrous.py valid_tap_conv2d)
  --atrous_gradient valid_taps   training through the valid-tap atrous gradient even where
                     TensorFlow differentiates the dilated Conv2D natively (oneDNN): the
                     kernel library and the atrous gradient measured apart
  --jit              XLA jit_compile (forward function / training step)
  --mixed_precision mixed_bfloat16
  --recompute S,S    training with activation checkpointing of these stages
                     (train.recompute, deeplab_tf/recompute.py), e.g. block3 or
                     stem,block1,block2,block3,block4

Prints the median seconds after warm-up, then one line `RESULT {json}` that bench/run_all.py
reads (with the conv gradient path: "native" dilated Conv2D gradients or the valid-tap
fallback, deeplab_tf/modeling/atrous.py), the process's peak RSS and the peak bytes held by
TensorFlow's CPU allocator (BFC, which this script turns on).
"""
import argparse
import contextlib
import json
import os
import resource
import statistics
import sys
import tempfile
import time

os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")  # as the tools do (deeplab_tf.tools)

import deeplab_tf  # noqa: E402,F401  (before TensorFlow)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SIX_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)   # Table 6's best evaluation


def use_keras_atrous():
    """Atrous convs the way Keras Conv2D(dilation_rate=r) computes them on TensorFlow."""
    from deeplab_tf.modeling import atrous
    atrous.atrous_conv2d = lambda x, w, rate, padding="SAME", training=False: \
        tf.nn.convolution(x, w, padding=padding, dilations=rate)


CPU_TIMES = []   # process CPU seconds per timed repeat (all threads): robust to other load


def timed(fn, warm, reps):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        CPU_TIMES.append(time.process_time() - cpu)
    return times


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN CPU kernels (TF_ENABLE_ONEDNN_OPTS, or its
    default: on for Intel CPUs) rather than its Eigen ones."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def peak_alloc_mb():
    """Peak bytes TensorFlow's CPU allocator held (tensors only, no code or Python), in MB;
    None where the allocator keeps no statistics (TF_CPU_ALLOCATOR_USE_BFC unset)."""
    try:
        return round(tf.config.experimental.get_memory_info("CPU:0")["peak"] / 2**20)
    except (ValueError, tf.errors.OpError):
        return None


def build_model(args):
    from deeplab_tf.modeling import build_deeplabv3
    return build_deeplabv3(21, backbone=args.backbone, output_stride=args.output_stride)


def inference_model(model, args):
    if not args.fold:
        return model
    from deeplab_tf.modeling.folding import fold_batch_norm
    return fold_batch_norm(model)


def bench_fwd(args):
    model = inference_model(build_model(args), args)
    x = tf.random.uniform([1, args.size, args.size, 3], 0, 255)
    fwd = tf.function(lambda x: model(x, training=False), jit_compile=args.jit or None)
    return timed(lambda: fwd(x).numpy(), args.warm, args.reps), 1


def bench_eval(args):
    from deeplab_tf import inference
    model = build_model(args)
    protocol = inference.Protocol(output_stride=args.output_stride, scales=SIX_SCALES,
                                  flip=True)
    predict = inference.make_predictor(model, protocol, fold_batch_norm=args.fold)
    x = tf.random.uniform([1, args.size, args.size, 3], 0, 255)
    return timed(lambda: predict(x).numpy(), 1, args.reps), 1


def bench_train(args):
    from deeplab_tf import configs, train_lib
    from deeplab_tf.data.metadata import VOC
    config = configs.apply_overrides(configs.ExperimentConfig(), (
        f"model.backbone={args.backbone},model.output_stride={args.output_stride},"
        f"model.backbone_weights=none,train.batch_size={args.batch},"
        f"train.steps={args.warm + args.reps},train.steps_per_loop=1,"
        f"train.checkpoint_every={args.warm + args.reps},train.jit_compile={args.jit},"
        f"train.recompute=({args.recompute})"))
    rng = np.random.default_rng(0)
    label = rng.integers(0, 21, (args.batch, args.size, args.size, 1)).astype("int32")
    label[:, :40] = 255   # as the peers' scripts
    batch = {"image": rng.uniform(0, 255, (args.batch, args.size, args.size, 3))
             .astype("float32"), "label": label}

    def dataset_fn(ctx, start_step):
        return tf.data.Dataset.from_tensors(batch).repeat()

    times, last = [], [time.perf_counter(), time.process_time()]

    def tick(step):
        now, cpu = time.perf_counter(), time.process_time()
        times.append(now - last[0])
        CPU_TIMES.append(cpu - last[1])
        last[:] = [now, cpu]

    with tempfile.TemporaryDirectory() as model_dir:
        train_lib.train(config, model_dir, VOC, dataset_fn, hooks={"after_loop": tick})
    del CPU_TIMES[:args.warm]
    return times[args.warm:], args.batch


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("fwd", "train", "eval"), default="fwd")
    parser.add_argument("--output_stride", type=int, default=16)
    parser.add_argument("--backbone", default="resnet101")
    parser.add_argument("--size", type=int, default=513)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--reps", type=int, default=None, help="fwd 9, train 5, eval 3")
    parser.add_argument("--warm", type=int, default=2)
    parser.add_argument("--fold", action="store_true")
    parser.add_argument("--keras_atrous", action="store_true")
    parser.add_argument("--native_atrous", action="store_true")
    parser.add_argument("--atrous_gradient", choices=("auto", "valid_taps"), default="auto")
    parser.add_argument("--jit", action="store_true")
    parser.add_argument("--mixed_precision", default=None)
    parser.add_argument("--recompute", default="", help="stages, e.g. block3 (train only)")
    args = parser.parse_args()
    args.reps = args.reps or {"fwd": 9, "train": 5, "eval": 3}[args.task]
    if args.keras_atrous:
        use_keras_atrous()
    if args.mixed_precision:
        import keras
        keras.mixed_precision.set_global_policy(args.mixed_precision)
    from deeplab_tf.modeling import atrous
    from deeplab_tf.modeling.atrous import native_atrous
    if args.atrous_gradient == "valid_taps":   # as on TensorFlows without a native gradient
        atrous.native_dilated_gradient = lambda dtype=None: False
    task = {"fwd": bench_fwd, "train": bench_train, "eval": bench_eval}[args.task]
    # --native_atrous holds for the whole measurement: every trace takes the dilated Conv2D.
    with native_atrous() if args.native_atrous else contextlib.nullcontext():
        times, images = task(args)
    median = statistics.median(times)
    result = {
        "task": args.task, "output_stride": args.output_stride, "backbone": args.backbone,
        "size": args.size, "batch": images, "median_s": median, "min_s": min(times),
        "max_s": max(times), "n": len(times),
        "cpu_s": statistics.median(CPU_TIMES), "fold_bn": args.fold,
        "keras_atrous": args.keras_atrous, "native_atrous": args.native_atrous, "jit": args.jit,
        "dtype": args.mixed_precision or "float32",
        "recompute": [s for s in args.recompute.split(",") if s],
        "conv_gradient": "native" if atrous.native_dilated_gradient() else "valid_taps",
        "cpu_kernels": "oneDNN" if onednn_enabled() else "Eigen",
        "tf": tf.__version__,
        # Peak resident memory of this process (one model, one task): Linux reports KiB.
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_alloc_mb": peak_alloc_mb()}
    print(f"\n{args.task} {args.backbone} OS{args.output_stride} {args.size}x{args.size} "
          f"batch {images}: {median:.3f} s (median of {len(times)}, min {min(times):.3f}; "
          f"{result['cpu_s']:.3f} CPU s; peak RSS {result['peak_rss_mb']} MB, "
          f"allocator {result['peak_alloc_mb']} MB)")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
