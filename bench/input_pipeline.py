"""Benchmark: training input pipeline throughput (images/s) at 513x513 crops, batch 16.

    python bench/input_pipeline.py                      # 64 generated VOC-like records
    python bench/input_pipeline.py --records 'data/voc/train_aug-*.tfrecord'

Measures `deeplab_tf.data.pipeline.build_dataset` in train mode (decode, random scale
0.5-2.0 in 0.25 steps, pad, crop, flip; Sec. 4.1) on an iterator warmed up for 256 images
(tracing, autotuning): the median over windows of 256 images, batches consumed as a
training step takes them (see `measure`). For comparison it also times the same
augmentation done the obvious way (decode and resize the whole image, pad, crop, flip).
The records, when generated, are made like the Model Garden anchor's
(/work/shared/peers/garden_input_pipeline.py: 500x375 JPEG q90 + PNG labels; its parser
ran at 65-87 images/s on our 2-core machine, 195 on the machine the issue was written on).
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

# TF's default CPU allocator hands large buffers back to the OS, so every 3 MB crop and
# 50 MB batch is page-faulted in afresh; the BFC pool reuses them (1.3-2x faster here).
# It must be chosen before TensorFlow starts. --default_allocator measures without it.
if "--default_allocator" not in sys.argv:
    os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from deeplab_tf.data import augment, pipeline, tfrecord


def make_records(path, n=64, h=375, w=500):
    """Smooth random images (realistic JPEG size, not noise) and blocky labels."""
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(path) as writer:
        for i in range(n):
            base = rng.integers(0, 255, (h // 25 + 1, w // 25 + 1, 3)).astype(np.float32)
            img = tf.image.resize(base[None], (h, w))[0] + rng.normal(0, 12, (h, w, 3))
            img = tf.cast(tf.clip_by_value(img, 0, 255), tf.uint8)
            lab = np.zeros((h, w, 1), np.uint8)
            for _ in range(4):
                y, x = rng.integers(0, h - 50), rng.integers(0, w - 50)
                lab[y:y + rng.integers(30, 200), x:x + rng.integers(30, 250)] = rng.integers(1, 21)
            lab[:3] = lab[:, :3] = 255
            writer.write(tfrecord.make_example(
                tf.io.encode_jpeg(img, quality=90).numpy(), f"{i:06d}", "jpeg", h, w,
                tf.io.encode_png(tf.constant(lab)).numpy()))


def naive_scale_crop_flip(image, label, scale, oy, ox, flip, crop, pad=augment.MEAN_RGB):
    """What the original does: resize the whole image, pad, crop, flip."""
    sh, sw = augment.scaled_size(tf.shape(image)[0], tf.shape(image)[1], scale)
    img = tf.compat.v1.image.resize_bilinear(image[None], [sh, sw], align_corners=True)[0]
    lab = tf.compat.v1.image.resize_nearest_neighbor(label[None], [sh, sw],
                                                     align_corners=True)[0]
    ph, pw = tf.maximum(sh, crop), tf.maximum(sw, crop)
    mean = tf.constant(pad, tf.float32)
    img = tf.pad(img - mean, [[0, ph - sh], [0, pw - sw], [0, 0]]) + mean
    lab = tf.pad(lab, [[0, ph - sh], [0, pw - sw], [0, 0]], constant_values=255)
    img, lab = img[oy:oy + crop, ox:ox + crop], lab[oy:oy + crop, ox:ox + crop]
    img = tf.cond(flip, lambda: tf.reverse(img, [1]), lambda: img)
    lab = tf.cond(flip, lambda: tf.reverse(lab, [1]), lambda: lab)
    return img, lab


def naive_dataset(pattern, batch, crop):
    """The obvious pipeline: decode whole, resize whole, pad, crop, flip."""
    def load(i, record):
        f = tfrecord.parse_example(record)
        image = tfrecord.decode_image(f[tfrecord.IMAGE_ENCODED])
        label = tfrecord.decode_label(f[tfrecord.LABEL_ENCODED])
        seeds = tf.random.experimental.stateless_split(tf.stack([i, i]), 4)
        scale = augment.sample_scale(seeds[0])
        sh, sw = augment.scaled_size(tf.shape(image)[0], tf.shape(image)[1], scale)
        oy = tf.random.stateless_uniform([], seeds[1], 0, tf.maximum(sh - crop, 0) + 1, tf.int32)
        ox = tf.random.stateless_uniform([], seeds[2], 0, tf.maximum(sw - crop, 0) + 1, tf.int32)
        flip = tf.random.stateless_uniform([], seeds[3]) < 0.5
        image, label = naive_scale_crop_flip(image, label, scale, oy, ox, flip, crop)
        return {"image": tf.ensure_shape(image, [crop, crop, 3]),
                "label": tf.ensure_shape(label, [crop, crop, 1])}

    ds = tf.data.TFRecordDataset(pipeline.list_files(pattern)).repeat().enumerate()
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def measure(ds, batch, windows, window_images=256, to_numpy=False):
    """Median images/s over windows of a warm iterator, and CPU ms per image (all threads
    of this process: comparable when other processes share the machine).

    Batches are consumed as a training step consumes them (and as the Model Garden anchor
    does): the tensors are taken, not copied. `to_numpy` adds a `.numpy()` copy of every
    image batch (50 MB at batch 16: about 1.5 CPU ms per image on this machine)."""
    it = iter(ds)
    for _ in range(max(2, 256 // batch)):  # warm-up: tracing, buffers, autotuning
        next(it)
    rates, cpu = [], []
    for _ in range(windows):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(window_images // batch):
            images = next(it)["image"]
            if to_numpy:
                images.numpy()
        rates.append(window_images / (time.perf_counter() - t0))
        cpu.append((time.process_time() - c0) / window_images * 1e3)
    return statistics.median(rates), min(rates), max(rates), statistics.median(cpu)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", default="", help="TFRecord pattern; default: generate")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=513)
    parser.add_argument("--windows", type=int, default=7)
    parser.add_argument("--skip_naive", action="store_true")
    parser.add_argument("--to_numpy", action="store_true",
                        help="also copy every batch to NumPy (not what training does)")
    parser.add_argument("--default_allocator", action="store_true",
                        help="don't set TF_CPU_ALLOCATOR_USE_BFC=1")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pattern = args.records
        if not pattern:
            pattern = os.path.join(tmp, "bench.tfrecord")
            make_records(pattern)
        print(f"tf={tf.__version__} cpus={os.cpu_count()} records={pattern} "
              f"batch={args.batch} crop={args.crop} TF_CPU_ALLOCATOR_USE_BFC="
              f"{os.environ.get('TF_CPU_ALLOCATOR_USE_BFC', '')}", flush=True)
        ds = pipeline.build_dataset(pattern, global_batch_size=args.batch, crop_size=args.crop,
                                    shuffle_buffer=256)
        cores = len(os.sched_getaffinity(0))
        med, lo, hi, cpu = measure(ds, args.batch, args.windows, to_numpy=args.to_numpy)
        print(f"deeplab_tf pipeline (train): {med:7.1f} images/s (min {lo:.1f}, max {hi:.1f}); "
              f"{cpu:.2f} CPU ms/image = {1e3 * cores / cpu:.0f} images/s on {cores} idle "
              f"cores", flush=True)
        if not args.skip_naive:
            med2, lo2, hi2, cpu2 = measure(naive_dataset(pattern, args.batch, args.crop),
                                           args.batch, args.windows, to_numpy=args.to_numpy)
            print(f"resize-whole-then-crop:      {med2:7.1f} images/s (min {lo2:.1f}, "
                  f"max {hi2:.1f}); {cpu2:.2f} CPU ms/image; ours/naive = {med / med2:.2f}x "
                  f"(CPU {cpu2 / cpu:.2f}x)")


if __name__ == "__main__":
    main()
