"""Training startup on 100 shards: the record integrity scan and the bootstrapping label
scan, at a run's first start (no cache: what every start of every worker cost before the
scans were cached beside the manifest) and at a restart or on any later worker.

    python bench/startup_scan.py [--shards 100] [--records_per_shard 10] [--root DIR]
"""
import argparse
import tempfile
import time

import tensorflow as tf

from deeplab_tf import configs, fileio
from deeplab_tf.data import bootstrap, pipeline, synthetic, tfrecord, training_input


def make_shards(root, shards, per_shard, size=64):
    for f in range(shards):
        with tf.io.TFRecordWriter(fileio.join(root, f"train-{f:05d}-of-{shards:05d}.tfrecord")) as w:
            for i in range(per_shard):
                image, label = synthetic.generate_example(f * per_shard + i, 0, (size, size))
                w.write(tfrecord.make_example(
                    tf.io.encode_png(image).numpy(), f"e{f}_{i}", "png", size, size,
                    tf.io.encode_png(label[..., None]).numpy()))


def startup(config):
    files = pipeline.list_files(config.data.train_records)
    tick = time.perf_counter()
    training_input.scan_records(config)
    middle = time.perf_counter()
    bootstrap.scan_records(files, training_input.cache_folders(config.data.train_records))
    return middle - tick, time.perf_counter() - middle


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--records_per_shard", type=int, default=10)
    parser.add_argument("--root", default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="deeplab_startup_")
    make_shards(root, args.shards, args.records_per_shard)
    config = configs.apply_overrides(configs.ExperimentConfig(),
                                     f"data.train_records={root}/train-*.tfrecord")
    for name in ("first start (no cache)", "restart (cached)"):
        integrity, labels = startup(config)
        print(f"{name:<24} integrity scan {integrity:6.2f} s, label scan {labels:6.2f} s, "
              f"total {integrity + labels:6.2f} s")


if __name__ == "__main__":
    main()
