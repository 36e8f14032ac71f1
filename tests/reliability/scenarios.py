"""The fault scenarios that run in child processes (tests/reliability/conftest.py drives them).

    python scenarios.py life WORKDIR KIND STEP   one life of the kill chain: trains the
        chain's model_dir and dies at (KIND, STEP) through the trainer's fault points:
        SIGKILL at after_loop / before_save / mid_save / after_save, or, for in_write,
        killed by the kernel (SIGXFSZ) half-way through writing the checkpoint's data file.
    python scenarios.py last WORKDIR             the chain's last life, without a fault.
    python scenarios.py others WORKDIR           in turn (beside the chain, on the other
        core): the uninterrupted reference run, damaged-checkpoint fallbacks, write
        failures (checkpoint, TFRecords, export), then the SavedModel fuzz in a child of
        its own (`fuzz`), so that its peak memory is the fuzz's alone.
Each prints one JSON line.
"""
import contextlib
import json
import logging
import os
import re
import resource
import shutil
import signal
import subprocess
import sys

import deeplab_tf  # noqa: F401  (before TensorFlow)
import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "training")]
import inputs  # noqa: E402
from files import snapshot  # noqa: E402
from deeplab_tf.testing import tiny_config  # noqa: E402
from helpers import META, dataset_fn  # noqa: E402

from deeplab_tf import checkpointing, train_lib  # noqa: E402

STEPS, EVERY = 20, 2
CHAIN_OVERRIDES = f"train.steps={STEPS},train.checkpoint_every={EVERY},train.keep_checkpoints=3"
WRITE_LIMIT = 1 << 20   # bytes: above logs and configs, below a checkpoint's 2 MB data file


def chain_config(steps=STEPS):
    return tiny_config(f"{CHAIN_OVERRIDES},train.steps={steps}")


def train(model_dir, steps=STEPS, hooks=None):
    # more steps on a finished chain: a config change the resume check allows with the flag
    return train_lib.train(chain_config(steps), model_dir, META, dataset_fn(4), hooks=hooks,
                           allow_config_change=steps != STEPS)


# ----------------------------------------------------------------------------- the chain

def life(workdir, kind, step):
    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    def at(fn):
        return lambda s, *rest: fn() if s == step else None

    if kind == "in_write":
        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_DFL)   # Python starts with it ignored
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            resource.setrlimit(resource.RLIMIT_FSIZE, (WRITE_LIMIT, resource.RLIM_INFINITY))
        hooks = {"before_save": at(limit)}   # SIGXFSZ's default action kills, mid-write
    else:
        hooks = {kind: at(die)}
    train(os.path.join(workdir, "chain"), hooks=hooks)
    raise SystemExit(f"{kind} at step {step} was never reached")


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def warnings_of_training():
    handler = _Warnings()
    logger = logging.getLogger("deeplab_tf.train")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


# ----------------------------------------------------------------------------- fallbacks

def _truncate(path, keep=0.5):
    with open(path, "r+b") as f:
        f.truncate(int(os.path.getsize(path) * keep))


def _flip(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGE = {
    # name: (damage(ckpt_dir), checkpoint the run must resume from)
    "truncated_data_and_empty_state_file": (
        lambda d: (_truncate(f"{d}/ckpt-20.data-00000-of-00001"), _truncate(f"{d}/checkpoint", 0)),
        18),
    "flipped_byte_and_truncated_index": (
        lambda d: (_flip(f"{d}/ckpt-20.data-00000-of-00001"), _truncate(f"{d}/ckpt-18.index")),
        16),
}


def fallback(workdir, chain, name):
    damage, expected = DAMAGE[name]
    model_dir = os.path.join(workdir, name)
    shutil.copytree(chain, model_dir)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    damage(ckpt_dir)
    damaged = {k: v for k, v in snapshot(ckpt_dir).items()
               if v != snapshot(os.path.join(chain, "checkpoints")).get(k)}
    with warnings_of_training() as warnings:
        result = train(model_dir, steps=STEPS + 2)
    kept = snapshot(ckpt_dir)
    # Every damaged file is still there, byte for byte (set aside, or left in place).
    lost = [k for k, v in damaged.items() if v not in kept.values()]
    return {"expected_resume": expected, "warnings": warnings, "step": result.step,
            "latest": os.path.basename(result.checkpoint), "damaged": sorted(damaged),
            "lost": lost, "unreadable": sorted(os.listdir(os.path.join(
                ckpt_dir, checkpointing.UNREADABLE))) if os.path.isdir(os.path.join(
                    ckpt_dir, checkpointing.UNREADABLE)) else []}


# ----------------------------------------------------------------------------- write failures

@contextlib.contextmanager
def file_size_limit(limit):
    """Writes past `limit` bytes fail with EFBIG (SIGXFSZ ignored) inside the block."""
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _outcome(directory, before, error):
    after = snapshot(directory) if os.path.isdir(directory) else {}
    return {"error": error,
            "changed": sorted(k for k in before if after.get(k) != before[k]),
            "new": sorted(k for k in after if k not in before)}


def checkpoint_write_fails(workdir, chain):
    model_dir = os.path.join(workdir, "checkpoint_efbig")
    shutil.copytree(chain, model_dir)
    ckpt_dir = os.path.join(model_dir, "checkpoints")
    before, error = snapshot(ckpt_dir), None
    with file_size_limit(WRITE_LIMIT):
        try:
            train(model_dir, steps=STEPS + 2)
        except checkpointing.CheckpointWriteError as e:
            error = str(e)
    return _outcome(ckpt_dir, before, error)


def records_write_fail(workdir):
    from deeplab_tf.data.converters import synthetic
    out = os.path.join(workdir, "records")
    options = dict(splits=("train",), image_size=(48, 48), num_shards=1, progress=False)
    synthetic.convert(out, num_train=4, **options)
    before, error = snapshot(out), None
    limit = 3 * max(len(v) for v in before.values())
    with file_size_limit(limit):
        try:
            synthetic.convert(out, num_train=40, seed=1, **options)
        except OSError as e:
            error = str(e)
    return dict(_outcome(out, before, error), limit=limit)


def export_write_fails(workdir, chain):
    from deeplab_tf import export_lib
    export_dir = os.path.join(workdir, "export")
    options = dict(output_stride=16, max_pixels=inputs.MAX_PIXELS, probabilities=True)
    export_lib.export_model_dir(chain, export_dir, **options)
    before, error = snapshot(export_dir), None
    with file_size_limit(64 << 10):
        try:
            export_lib.export_model_dir(chain, export_dir, overwrite=True, **options)
        except export_lib.ExportError as e:
            error = str(e)
    leftovers = sorted(n for n in os.listdir(workdir) if n.startswith("export."))
    return dict(_outcome(export_dir, before, error), leftovers=leftovers)


# ----------------------------------------------------------------------------- SavedModel fuzz

def peak_rss_mb():
    """This process's own high-water mark (VmHWM: ru_maxrss would count the forking
    parent's pages too)."""
    with open("/proc/self/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1)) / 1024


def savedmodel_fuzz(workdir):
    """Each input through both signatures: labels, or the error's first line."""
    loaded = tf.saved_model.load(os.path.join(workdir, "export"))
    serve, pixels = loaded.signatures["serving_default"], loaded.signatures["predict_images"]
    cases = inputs.encoded_inputs()
    serve(images=tf.constant([cases[-1][1]]))   # a good image: the first call's costs
    before, results = peak_rss_mb(), {}
    for name, data, expected in cases:
        try:
            out = serve(images=tf.constant([data]))
            row = {"labels": out["labels"][0].numpy().tolist()}
            if expected is not None:   # the same image given as pixels decoded by NumPy/PIL
                row["from_pixels"] = pixels(images=tf.constant(expected[None]))[
                    "labels"][0].numpy().tolist()
        except tf.errors.InvalidArgumentError as e:
            row = {"error": e.message[:1000]}
        results[name] = row
    for name, array, expected in inputs.array_inputs():
        if array.ndim != 3 or array.dtype != np.uint8:
            continue   # the signature's input spec refuses these before any graph runs
        try:
            labels = pixels(images=tf.constant(array[None]))["labels"][0].numpy()
            results[f"pixels_{name}"] = {"labels": labels.tolist()}
            if expected is not None and array.shape[-1] != 3:   # grey or RGBA: as RGB
                results[f"pixels_{name}_as_rgb"] = {"labels": pixels(images=tf.constant(
                    expected[None]))["labels"][0].numpy().tolist()}
        except tf.errors.InvalidArgumentError as e:
            results[f"pixels_{name}"] = {"error": e.message[:1000]}
    for name, batch, _ in inputs.batch_inputs():
        try:
            pixels(images=tf.constant(batch))
            results[f"batch_{name}"] = {}
        except tf.errors.InvalidArgumentError as e:
            results[f"batch_{name}"] = {"error": e.message[:1000]}
    try:
        serve(images=tf.constant([], tf.string))
        results["serving_default_empty_batch"] = {}
    except tf.errors.InvalidArgumentError as e:
        results["serving_default_empty_batch"] = {"error": e.message[:1000]}
    return {"results": results, "rss_before_mb": before, "rss_after_mb": peak_rss_mb()}


def last(workdir):
    with warnings_of_training() as warnings:
        result = train(os.path.join(workdir, "chain"))
    print(json.dumps({"step": result.step, "checkpoint": result.checkpoint,
                      "warnings": warnings}))


def others(workdir):
    reference = train(os.path.join(workdir, "reference")).checkpoint
    model_dir = os.path.dirname(os.path.dirname(reference))
    out = {"reference": reference,
           "fallback": {name: fallback(workdir, model_dir, name) for name in DAMAGE},
           "write": {"checkpoint": checkpoint_write_fails(workdir, model_dir),
                     "records": records_write_fail(workdir),
                     "export": export_write_fails(workdir, model_dir)},
           "fuzz": json.loads(subprocess.run(
               [sys.executable, __file__, "fuzz", workdir], capture_output=True, text=True,
               check=True, timeout=600).stdout.strip().splitlines()[-1])}
    print(json.dumps(out))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    tf.config.experimental.enable_op_determinism()
    if sys.argv[1] == "life":
        life(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        {"last": last, "others": others,
         "fuzz": lambda workdir: print(json.dumps(savedmodel_fuzz(workdir)))}[sys.argv[1]](
            sys.argv[2])
