"""Benchmark (not a test): bfloat16 inference against float32 on a trained model_dir.

    python bench/bf16.py --model_dir=runs/quickstart                       # its val images
    python bench/bf16.py --model_dir=runs/voc --images='photos/*.jpg' --output_stride=8

Segments every image twice through the same protocol (deeplab_tf.inference.Segmenter),
once computing in float32 and once with `mixed_bfloat16` (bfloat16 convolutions, float32
weights: `deeplab_tf.model_dir.dtype_policy`), and prints the share of identical labels
(issue 8's goal: >= 99%) and the median seconds per image of each (the goal there: bf16 at
least 2x faster, which needs avx512_bf16/AMX, e.g. with TF_ENABLE_ONEDNN_OPTS=1 on AMD, or a
GPU; on a CPU without them TensorFlow converts each bfloat16 conv back to float32 and bf16 is
slower). Images: --images (globs, comma-separated) or the model_dir's evaluation records
(config data.eval_records, run from the directory the training ran in). Ends with one line
`RESULT {json}`.
"""
import argparse
import glob
import json
import statistics
import sys
import time

import deeplab_tf  # noqa: F401  (before TensorFlow)
import numpy as np
from run_all import cpu_name   # bench/, beside this script


def images_of(args, config):
    if args.images:
        from deeplab_tf.images import read_image
        files = sorted(f for pattern in args.images.split(",") for f in glob.glob(pattern))
        if not files:
            sys.exit(f"--images={args.images}: no files")
        return [read_image(f) for f in files[:args.limit]]
    from deeplab_tf import eval_lib
    if not config.data.eval_records:
        sys.exit(f"{args.model_dir}: no data.eval_records in its config; pass --images")
    dataset = eval_lib.records_dataset(config.data.eval_records).take(args.limit)
    return [eval_lib._whole_image(f)[0][0].numpy().astype(np.uint8) for f in dataset]


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--images", default=None)
    parser.add_argument("--limit", type=int, default=200, help="at most this many images")
    parser.add_argument("--output_stride", type=int, default=None)
    parser.add_argument("--scales", default="1.0", help="comma-separated; paper: 0.5,...,1.75")
    parser.add_argument("--flip", action="store_true")
    args = parser.parse_args()

    from deeplab_tf import model_dir
    from deeplab_tf.inference import Segmenter
    config, _ = model_dir.read_config(args.model_dir)
    images = images_of(args, config)
    options = dict(output_stride=args.output_stride, flip=args.flip,
                   scales=tuple(float(s) for s in args.scales.split(",")))
    results = {}
    for precision in ("float32", "mixed_bfloat16"):
        segmenter = Segmenter(args.model_dir, precision=precision, **options)
        segmenter.segment(images[0])   # traces
        labels, times = [], []
        for image in images:
            start = time.perf_counter()
            labels.append(segmenter.segment(image)[0])
            times.append(time.perf_counter() - start)
        results[precision] = labels, statistics.median(times)
    (fp32, t32), (bf16, t16) = results["float32"], results["mixed_bfloat16"]
    same = [np.mean(a == b) for a, b in zip(fp32, bf16)]
    pixels = sum(a.size for a in fp32)
    overall = sum(int((a == b).sum()) for a, b in zip(fp32, bf16)) / pixels
    result = dict(model_dir=args.model_dir, images=len(images), pixels=pixels,
                  identical_labels=overall, worst_image=float(min(same)),
                  fp32_s=t32, bf16_s=t16, speedup=t32 / t16, cpu=cpu_name(),
                  protocol=options)
    print(f"{len(images)} images, {pixels} pixels: {100 * overall:.3f}% of labels identical "
          f"(worst image {100 * min(same):.2f}%); median per image float32 {t32:.3f} s, "
          f"bfloat16 {t16:.3f} s ({t32 / t16:.2f}x); CPU {result['cpu']}")
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
