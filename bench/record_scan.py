"""Scanning a damaged shard (record_scan.scan): one shard of --size_mb MB of 1 MB records
whose record 1 has a damaged length field and whose next --garbage_mb MB are overwritten
(a broken block: no valid frame there), so the reader must search that far for the next
record. Prints the scan's MB/s over the whole shard.

    python bench/record_scan.py [--size_mb 100] [--garbage_mb 50] [--root DIR]
"""
import argparse
import tempfile
import time

import numpy as np
import tensorflow as tf

from deeplab_tf import fileio
from deeplab_tf.data import record_scan

RECORD = 1 << 20


def make_shard(path, size_mb, garbage_mb, seed=0):
    rng = np.random.default_rng(seed)
    n = max(3, size_mb * (1 << 20) // (RECORD + 16))
    with tf.io.TFRecordWriter(path) as writer:
        for _ in range(n):
            writer.write(rng.integers(0, 256, RECORD, np.uint8).tobytes())
    data = bytearray(fileio.read_bytes(path))
    start = RECORD + 16                                # record 1's frame
    data[start + 2] ^= 0xFF                            # its length field
    stop = min(start + 8 + int(garbage_mb * (1 << 20)), len(data) - (RECORD + 16))
    data[start + 8:stop] = rng.integers(0, 256, max(stop - start - 8, 0), np.uint8).tobytes()
    fileio.write_bytes(path, bytes(data))
    return len(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size_mb", type=int, default=100)
    parser.add_argument("--garbage_mb", type=float, default=50)
    parser.add_argument("--root", default=None, help="default: a new temporary folder")
    args = parser.parse_args()
    root = args.root or tempfile.mkdtemp(prefix="record_scan_bench_")
    path = fileio.join(root, "train-00000-of-00001.tfrecord")
    size = make_shard(path, args.size_mb, args.garbage_mb)
    tick = time.perf_counter()
    result = record_scan.scan([path])
    seconds = time.perf_counter() - tick
    print(f"shard {size / 1e6:.1f} MB, {result.counts[0]} records, {len(result.bad)} bad: "
          f"scan {seconds:.2f} s = {size / 1e6 / seconds:.1f} MB/s")


if __name__ == "__main__":
    main()
