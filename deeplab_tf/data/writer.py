"""Sharded, atomic TFRecord writing with validation; the manifest is written last.

A converter lists its examples per split and gives a picklable `load_fn(item) -> Example`;
`write_dataset` loads and validates them in worker processes (TF-free: Pillow and NumPy
only), then writes `{split}-{i:05d}-of-{n:05d}.tfrecord` shards with the original DeepLab
keys and finally `manifest.json`, the one source of truth about the converted dataset.

Atomicity: every shard is written under a hidden temporary name; only when every shard of
every split is written are they renamed into place (the old manifest is removed first),
and the manifest comes last. A run that fails or is killed never leaves a `*.tfrecord`
that is incomplete, nor a manifest describing files that are not all there.
"""
import collections
import dataclasses
import datetime
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from deeplab_tf.data import parallel
# The manifest's reader and the error type live in manifest.py; importers of the writer
# keep finding them here.
from deeplab_tf.data.manifest import (  # noqa: F401
    MANIFEST, MANIFEST_VERSION, DatasetError, Manifest, _read_manifest_json, load_manifest)


@dataclasses.dataclass
class Example:
    """One loaded example: the encoded image as stored, and its label of class ids."""
    name: str
    image_bytes: bytes
    image_format: str           # "jpeg" or "png"
    height: int
    width: int
    label: np.ndarray           # uint8 [height, width]
    image_path: str = ""
    label_path: str = ""


# ----------------------------------------------------------------------------- validation

def encode_png(array):
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return buf.getvalue()


def validate(example, num_classes, ignore_label):
    """Raises DatasetError unless the label matches the image size and holds known values."""
    label = example.label
    where = example.label_path or example.name
    if label.dtype != np.uint8 or label.ndim != 2:
        raise DatasetError(f"label must be uint8 [H, W], got {label.dtype} {label.shape}", where,
                           "bad_label")
    if label.shape != (example.height, example.width):
        raise DatasetError(
            f"label is {label.shape[0]}x{label.shape[1]} (HxW) but image "
            f"{example.image_path or example.name} is {example.height}x{example.width}",
            where, "size_mismatch")
    hist = np.bincount(label.ravel(), minlength=256)
    bad = [v for v in np.flatnonzero(hist).tolist() if v >= num_classes and v != ignore_label]
    if bad:
        raise DatasetError(
            f"label values {bad} are outside the {num_classes} classes 0..{num_classes - 1} "
            f"and the ignore value {ignore_label}", where, "label_value")
    return hist


# ----------------------------------------------------------------------------- workers

def _process_chunk(job):
    """Worker: load, validate, PNG-encode labels. Returns ("ok", ...) or ("skip", ...) rows."""
    load_fn, items, num_classes, ignore_label, skip_invalid = job
    rows = []
    for item in items:
        try:
            ex = load_fn(item)
            hist = validate(ex, num_classes, ignore_label)
        except DatasetError as e:
            if not skip_invalid:
                raise
            rows.append(("skip", e.reason, e.path, str(e)))
            continue
        rows.append(("ok", ex.name, ex.image_bytes, ex.image_format, ex.height, ex.width,
                     encode_png(ex.label), hist))
    return rows


# ----------------------------------------------------------------------------- writing

_SHARD = re.compile(r"(.+)-\d{5}-of-\d{5}\.tfrecord")


def shard_name(split, index, num_shards):
    return f"{split}-{index:05d}-of-{num_shards:05d}.tfrecord"


def _shard_split(name):
    """The split of a shard file name, or None (a glob would confuse "val" and "val-hard")."""
    match = _SHARD.fullmatch(name)
    return match and match[1]


def _tmp_path(path):
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _fsync(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_stale_temporaries(output_dir):
    """Removes temporaries of runs that were killed (their process no longer exists)."""
    for path in output_dir.glob(".*.tmp-*"):
        try:
            os.kill(int(path.name.rsplit("-", 1)[1]), 0)
        except (ValueError, ProcessLookupError):
            path.unlink(missing_ok=True)
        except PermissionError:
            pass  # alive, another user's


def _write_split(split, items, executor, load_fn, metadata, num_shards, skip_invalid,
                 chunk_size, output_dir, temporaries, fault_hook, progress):
    """Writes one split's shards under temporary names; returns its manifest entry."""
    import tensorflow as tf  # only the parent writes records: workers stay TF-free
    from deeplab_tf.data import tfrecord

    n = len(items)
    if n == 0:
        raise DatasetError(f"split {split!r} has no examples", reason="no_examples")
    shards = max(1, min(num_shards, n))
    names = [shard_name(split, s, shards) for s in range(shards)]
    hist = np.zeros(256, np.int64)
    sizes, skipped, skipped_files, count = [], collections.Counter(), [], 0
    jobs = ((load_fn, chunk, metadata.num_classes, metadata.ignore_label, skip_invalid)
            for chunk in _chunks(items, chunk_size))
    bar = parallel.Progress(n, split, progress)
    writer, current, in_shard, index = None, -1, 0, 0
    try:
        for rows in executor.map(_process_chunk, jobs):
            for row in rows:
                # By input index, so skipped examples don't shift later ones; shards <= n,
                # so the shard advances by at most one per example.
                shard = index * shards // n
                index += 1
                if shard != current:
                    if writer is not None:
                        writer.close()
                    current, in_shard = shard, 0
                    temporaries.append((_tmp_path(output_dir / names[shard]),
                                        output_dir / names[shard]))
                    writer = tf.io.TFRecordWriter(str(temporaries[-1][0]))
                if row[0] == "skip":
                    skipped[row[1]] += 1
                    skipped_files.append({"file": row[2], "reason": row[1], "error": row[3]})
                    continue
                _, name, image_bytes, fmt, height, width, label_png, ex_hist = row
                if fault_hook is not None:
                    fault_hook("record", str(temporaries[-1][0]), in_shard)
                writer.write(tfrecord.make_example(image_bytes, name, fmt, height, width,
                                                   label_png))
                in_shard += 1
                count += 1
                hist += ex_hist
                sizes.append((height, width))
            bar.update(len(rows))
        writer.close()
        writer = None
    except tf.errors.OpError as e:  # e.g. EFBIG arrives as OutOfRangeError: callers get OSError
        raise OSError(f"{temporaries[-1][0]}: writing the shard failed ({e.message})") from e
    finally:
        if writer is not None:
            try:
                writer.close()
            except tf.errors.OpError:
                pass  # already failing; the caller removes the temporary
    if count == 0:
        raise DatasetError(f"split {split!r}: all {n} examples are invalid "
                           f"({dict(skipped)})", reason="no_examples")
    heights, widths = np.array(sizes).T
    return {
        "num_examples": count, "num_shards": shards, "shards": names,
        "class_pixels": hist[:metadata.num_classes].tolist(),
        "ignore_pixels": int(hist[metadata.ignore_label]),
        "image_size": {"min_height": int(heights.min()), "max_height": int(heights.max()),
                       "min_width": int(widths.min()), "max_width": int(widths.max())},
        "skipped": dict(skipped), "skipped_files": skipped_files,
    }


def _chunks(items, size):
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _write_json_atomic(path, data, fault_hook=None):
    tmp = _tmp_path(path)
    try:
        if fault_hook is not None:
            fault_hook("manifest", str(tmp), 0)
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_dataset(output_dir, splits, load_fn, metadata, *, num_shards=4, num_workers=1,
                  skip_invalid=False, converter=None, command=None, split_notes=None,
                  fault_hook: Optional[Callable[[str, str, int], Any]] = None, progress=True,
                  chunk_size=8):
    """Converts and writes every split, then the manifest; returns the manifest dict.

    Args:
      output_dir: where shards and `manifest.json` go (created if needed).
      splits: split name -> sized iterable of items for `load_fn`.
      load_fn: picklable (module-level or functools.partial) function item -> Example;
        it raises DatasetError for a bad input.
      metadata: the DatasetMetadata labels are validated against and the manifest records.
      num_shards: shards per split (fewer if a split has fewer examples).
      num_workers: worker processes (spawned); 1 runs in this process.
      skip_invalid: skip examples that raise DatasetError, counting them per reason.
      converter: {"name": ..., "args": {...}} recorded in the manifest.
      command: the command line recorded in the manifest.
      split_notes: split -> dict merged into that split's manifest entry (e.g. filter counts).
      fault_hook: called as fault_hook(stage, path, index) before each record ("record",
        temporary shard, index in shard), each rename ("commit", final path, shard number)
        and the manifest write ("manifest", temporary path, 0); raising there simulates
        a failing write (fault-injection tests).
      progress: show a progress bar on stderr.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(output_dir)
    previous = _read_manifest_json(output_dir)
    temporaries, entries = [], {}
    executor = parallel.OrderedPool(num_workers)
    try:
        for split, items in splits.items():
            if not hasattr(items, "__len__"):
                items = list(items)
            entries[split] = _write_split(split, items, executor, load_fn, metadata,
                                          num_shards, skip_invalid, chunk_size, output_dir,
                                          temporaries, fault_hook, progress)
            entries[split].update((split_notes or {}).get(split, {}))
        executor.close()
        # Commit. Without a manifest the directory reads as incomplete while files move.
        (output_dir / MANIFEST).unlink(missing_ok=True)
        for i, (tmp, final) in enumerate(temporaries):
            _fsync(tmp)
            if fault_hook is not None:
                fault_hook("commit", str(final), i)
            os.replace(tmp, final)
        for split, entry in entries.items():  # shards of an earlier run with another count
            for path in output_dir.glob("*.tfrecord"):
                if _shard_split(path.name) == split and path.name not in entry["shards"]:
                    path.unlink()
        kept = {}
        if previous and previous.get("metadata") == metadata.to_dict():
            kept = {s: e for s, e in previous.get("splits", {}).items() if s not in entries}
        run = {
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "converter": None if converter is None else {**converter, "args": {
                **converter.get("args", {}), "num_shards": num_shards,
                "skip_invalid": skip_invalid}},
            "command": list(command) if command is not None else None,
        }
        for entry in entries.values():  # splits kept from earlier runs keep their own
            entry["run"] = run
        manifest = {"format_version": MANIFEST_VERSION, **run, "metadata": metadata.to_dict(),
                    "splits": {**kept, **entries}}
        _write_json_atomic(output_dir / MANIFEST, manifest, fault_hook)
        return manifest
    finally:
        executor.close()
        for tmp, _ in temporaries:
            tmp.unlink(missing_ok=True)
