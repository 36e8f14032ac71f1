"""Benchmark (not a test): the released DeepLabv3 MobileNetV2 models, imported, beside the
TFLite interpreter running the released int8 files, 513x513, batch 1, in one run.

    python bench/mobilenet.py --threads 1   # dm 1.0 and 0.5: about 7 minutes on 2 busy cores
    python bench/mobilenet.py --models dm05 --reps 5   # quicker
    python bench/mobilenet.py --no_memory   # times and labels only

For each released file in ../shared/models/ (read SOURCES.md) it imports the model
(`convert_checkpoint("tflite", ...)`, as `deeplab-convert-checkpoint --source tflite` does)
and times, on the 8 real VOC samples of ../shared/data/voc2012_samples/ (each resized to
513 on its longer side and padded with the model's mean pixel, research/deeplab's input):
  keras OS16     our fp32 Keras model through `Segmenter.segment` (deeplab-predict's path)
                 at output stride 16, the released model's
  keras OS8      the same at the imported model_dir's default eval output stride (8)
  released int8  tf.lite.Interpreter on the released file (uint8 in, labels out)
  ours float     `export_lib.export_tflite(quantize="float")` of the imported model
  ours int8      `export_lib.export_tflite(quantize="int8")`, calibrated on the 6
                 train-split samples (sample_0..5); sample_6, 7 are never seen by it
Timing rounds visit every row in turn (one image per row per round, the same image for all
rows), so load from other processes hits every row alike: compare rows of one run, not
runs. Each row's process CPU time per image (all its threads) is printed too.
TensorFlow gets --threads intra-op and inter-op threads, the interpreter
num_threads=--threads (default: the CPU count). On a machine shared with other jobs,
--threads 1 gives the fairest figures: a multi-threaded kernel waits for its slowest
thread, and the interpreter's thread pool lost more to that than TensorFlow's (2 threads
under load: the released dm 1.0 file took 61 CPU ms but 315 ms wall per image).
Then, per row, a fresh process running that row alone reports its peak RSS (VmHWM; and its
RSS before the first image, TensorFlow and the model loaded), and the script prints each row's
labels against the float Keras model's (pixel agreement) and the mIoU of each against the
ground truth, over the 8 samples and over the 2 val samples the calibration never saw.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import deeplab_tf  # noqa: F401  (before TensorFlow: its log level)
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
MODELS = os.path.join(SHARED, "models")
VOC = os.path.join(SHARED, "data", "voc2012_samples")
FILES = {"dm10": "deeplabv3_mnv2_pascal_quant.tflite",
         "dm05": "deeplabv3_mnv2_dm05_pascal_quant.tflite"}
ROWS = ("keras_os16", "keras_os8", "released_int8", "ours_float", "ours_int8")
LABELS = {"keras_os16": "our Keras fp32, OS16 (Segmenter)",
          "keras_os8": "our Keras fp32, OS8 (Segmenter, model_dir default)",
          "released_int8": "released int8, TFLite interpreter",
          "ours_float": "our float TFLite export, OS16",
          "ours_int8": "our int8 TFLite export, OS16"}
SIZE = 513
CALIBRATION = range(6)   # the train split; sample_6 and sample_7 (val) stay unseen


def voc_samples():
    """[(513x513x3 uint8 image padded with 128, 513x513 ground truth with 255 outside,
    (h, w) of the image part)] for the 8 samples."""
    from PIL import Image
    out = []
    for i in range(8):
        image = Image.open(os.path.join(VOC, "JPEGImages", f"sample_{i}.jpg")).convert("RGB")
        gt = Image.open(os.path.join(VOC, "SegmentationClass", f"sample_{i}.png"))
        scale = SIZE / max(image.size)
        w, h = round(image.size[0] * scale), round(image.size[1] * scale)
        x = np.full((SIZE, SIZE, 3), 128, np.uint8)
        x[:h, :w] = np.asarray(image.resize((w, h), Image.BILINEAR))
        g = np.full((SIZE, SIZE), 255, np.uint8)
        g[:h, :w] = np.asarray(gt.resize((w, h), Image.NEAREST))
        out.append((x, g, (h, w)))
    return out


def set_threads(threads):
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)


def prepare(key, work):
    """Imports the released file into work/<key>/run and writes our two TFLite exports;
    returns {row: path}."""
    from deeplab_tf import export_lib, model_dir
    from deeplab_tf.convert import convert_checkpoint
    from deeplab_tf.inference import Protocol
    run = os.path.join(work, key, "run")
    convert_checkpoint("tflite", os.path.join(MODELS, FILES[key]), run)
    model = model_dir.load_model(run, output_stride=16)[0]
    protocol = Protocol(output_stride=16)
    data = voc_samples()
    paths = {"run": run, "released_int8": os.path.join(MODELS, FILES[key])}
    for quantize in ("float", "int8"):
        start = time.perf_counter()
        paths[f"ours_{quantize}"] = export_lib.export_tflite(
            model, protocol, os.path.join(work, key, f"{quantize}.tflite"), SIZE, SIZE,
            quantize=quantize, representative_images=[data[i][0] for i in CALIBRATION])
        print(f"{key}: {quantize} TFLite export in {time.perf_counter() - start:.0f} s, "
              f"{os.path.getsize(paths[f'ours_{quantize}']) / 1e6:.1f} MB", flush=True)
    return paths


def runner(row, paths, threads):
    """A function uint8 [513, 513, 3] -> labels [513, 513] for one row."""
    import tensorflow as tf
    if row.startswith("keras"):
        from deeplab_tf.inference import Segmenter
        segmenter = Segmenter(paths["run"], output_stride=16 if row == "keras_os16" else None)
        return lambda image: segmenter.segment(image)[0]
    interpreter = tf.lite.Interpreter(model_path=paths[row], num_threads=threads)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]
    out = [d for d in interpreter.get_output_details() if len(d["shape"]) == 3][0]  # labels

    def run(image):
        interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])[0]
    return run


def memory_mb(field):
    """VmRSS (now) or VmHWM (peak) of this process, MiB. Not ru_maxrss: Linux carries it
    over from the parent across fork and exec."""
    with open("/proc/self/status") as fh:
        return [int(line.split()[1]) / 1024 for line in fh if line.startswith(field + ":")][0]


def one_row(args):
    """--row mode: this process runs one row alone; prints its memory as JSON."""
    set_threads(args.threads)
    fn = runner(args.row, json.loads(args.paths), args.threads)
    image = voc_samples()[0][0]
    before = memory_mb("VmRSS")
    for _ in range(3):
        fn(image)
    print("MEMORY " + json.dumps({"loaded_mb": before, "peak_mb": memory_mb("VmHWM")}))


def quality(labels, data):
    """{row: (agreement with keras_os16 on all / on val, mIoU all, mIoU val)}."""
    from deeplab_tf import metrics

    def miou(row, idx):
        matrix = sum(np.asarray(metrics.confusion_matrix(
            data[i][1][:data[i][2][0], :data[i][2][1]],
            labels[row][i][:data[i][2][0], :data[i][2][1]], 21)) for i in idx)
        return metrics.mean_iou(matrix)

    def agree(row, idx):
        same = sum(int(np.sum(labels[row][i][:h, :w] == labels["keras_os16"][i][:h, :w]))
                   for i in idx for h, w in [data[i][2]])
        return same / sum(data[i][2][0] * data[i][2][1] for i in idx)
    val = [i for i in range(8) if i not in CALIBRATION]
    return {row: (agree(row, range(8)), agree(row, val), miou(row, range(8)), miou(row, val))
            for row in labels}


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="dm10,dm05", help="dm10 and/or dm05")
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--reps", type=int, default=3, help="rounds over the 8 images")
    parser.add_argument("--no_memory", action="store_true")
    parser.add_argument("--row", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.row:
        return one_row(args)
    set_threads(args.threads)
    import tensorflow as tf
    rows = args.rows.split(",")
    data = voc_samples()
    report = []
    with tempfile.TemporaryDirectory() as work:
        for key in args.models.split(","):
            paths = prepare(key, work)
            fns = {row: runner(row, paths, args.threads) for row in rows}
            labels = {row: [fn(x) for x, _, _ in data] for row, fn in fns.items()}  # warm-up
            times = {row: [] for row in rows}
            cpu = {row: [] for row in rows}
            for _ in range(args.reps):
                for x, _, _ in data:
                    for row in rows:
                        start, cpu_start = time.perf_counter(), time.process_time()
                        fns[row](x)
                        times[row].append(time.perf_counter() - start)
                        cpu[row].append(time.process_time() - cpu_start)
            memory = {}
            for row in ([] if args.no_memory else rows):
                out = subprocess.run([sys.executable, __file__, "--row", row, "--threads",
                                      str(args.threads), "--paths", json.dumps(paths)],
                                     capture_output=True, text=True)
                line = [s for s in out.stdout.splitlines() if s.startswith("MEMORY ")]
                memory[row] = json.loads(line[0][7:]) if line else None
            report.append((key, times, cpu, memory, quality(labels, data)))
            del fns
    print(f"\n{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}; TensorFlow {tf.__version__}, "
          f"{args.threads} intra/inter-op threads, interpreter num_threads={args.threads}; "
          f"513x513, batch 1, {args.reps} rounds x 8 images\n")
    print("| model | runtime | ms/image min | median | vs Keras OS16 (median) | CPU ms median "
          "| peak RSS MB (loaded) | agreement with Keras OS16 (val) | mIoU 8 samples | mIoU val |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key, times, cpu, memory, qual in report:
        base = statistics.median(times["keras_os16"]) if "keras_os16" in times else None
        for row in times:
            med = statistics.median(times[row])
            mem = memory.get(row)
            a, a_val, m, m_val = qual[row]
            print(f"| {key} | {LABELS[row]} | {1e3 * min(times[row]):.0f} | {1e3 * med:.0f} | "
                  + (f"{base / med:.2f}x" if base else "-")
                  + f" | {1e3 * statistics.median(cpu[row]):.0f} | "
                  + (f"{mem['peak_mb']:.0f} ({mem['loaded_mb']:.0f})" if mem else "-")
                  + f" | {100 * a:.2f}% ({100 * a_val:.2f}%) | {m:.4f} | {m_val:.4f} |")


if __name__ == "__main__":
    sys.exit(main())
