"""Sharded TFRecord writing with validation; the manifest is written last.

A converter lists its examples per split and gives a picklable `load_fn(item) -> Example`;
`write_dataset` loads and validates them in worker processes (TF-free for local inputs:
Pillow and NumPy only), then writes `{split}-{i:05d}-of-{n:05d}.tfrecord` shards with the
original DeepLab keys and finally `manifest.json`, the one source of truth about the
converted dataset. The output folder may be on any filesystem TF has (a local disk, gs://,
ram://): every file operation goes through `deeplab_tf.fileio`.

The output folder must be empty, absent, or hold a dataset of the same classes that a
conversion wrote (data/output_folder.py: anything else is refused before any work).
Publishing, the same steps on every filesystem:
  1. Each shard is written under a hidden name unique to this run, beside its final name
     (`.NAME.tmp-PID-UUID`, fileio.temporary_name): a glob such as `train-*.tfrecord`
     never matches it, so a half-written shard is never read.
  2. Only when every shard of every split is complete: each temporary is renamed to its
     final name, which no existing file has (the usual name, or one tagged with this run
     when a shard of the previous dataset has it: output_folder.shard_names), so the
     previous dataset stays whole under its manifest (fileio.rename: atomic on a local
     disk, each shard fsynced first; on an object store a server-side copy and a delete,
     so each final object appears whole). Then the new manifest is written, replacing the
     old one (fileio.write_json: complete or absent).
  3. Only then are the shards the previous manifest listed for the rewritten splits, and
     the new one does not, removed.
On failure this run removes the temporaries it created, and nothing else: another run's
temporaries, and shards no manifest lists, are reported, never deleted. So a reader
(readers take only the shards a manifest lists) sees, at any point of a run killed at any
point, either the previous complete dataset or the new one.
"""
import collections
import dataclasses
import datetime
import io
import logging
import os
import uuid
from typing import Any, Callable, Optional

import numpy as np
from PIL import Image

from deeplab_tf import fileio, lease
from deeplab_tf.progress import Progress
from deeplab_tf.data import output_folder, parallel
# The manifest's reader and the error type live in manifest.py; importers of the writer
# keep finding them here.
from deeplab_tf.data.manifest import (  # noqa: F401
    MANIFEST, MANIFEST_VERSION, DatasetError, Manifest, read_manifest_json, load_manifest)


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
    orientation: int = 1        # the image file's EXIF orientation (stored upright if not 1)


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
        turned = ""
        if example.orientation != 1:
            turned = (f" upright (its EXIF orientation {example.orientation} turns it, as a "
                      "photo viewer shows it" + ("; the label matches the unturned pixels: draw "
                      "it on the upright photo)" if label.shape == (example.width, example.height)
                      else ")"))
        raise DatasetError(
            f"label is {label.shape[0]}x{label.shape[1]} (HxW) but image "
            f"{example.image_path or example.name} is {example.height}x{example.width}{turned}",
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
                     encode_png(ex.label), hist, ex.orientation))
    return rows


# ----------------------------------------------------------------------------- writing

log = logging.getLogger(__name__)


def _write_split(split, items, executor, load_fn, metadata, num_shards, skip_invalid,
                 chunk_size, output_dir, temporaries, fault_hook, progress, tag):
    """Writes one split's shards under temporary names; returns its manifest entry."""
    import tensorflow as tf  # only the parent writes records: workers stay TF-free
    from deeplab_tf.data import tfrecord

    n = len(items)
    if n == 0:
        raise DatasetError(f"split {split!r} has no examples", reason="no_examples")
    shards = max(1, min(num_shards, n))
    names = output_folder.shard_names(output_dir, split, shards, tag,
                                      [final for _, final in temporaries])
    hist = np.zeros(256, np.int64)
    sizes, skipped, skipped_files, count, turned = [], collections.Counter(), [], 0, 0
    jobs = ((load_fn, chunk, metadata.num_classes, metadata.ignore_label, skip_invalid)
            for chunk in _chunks(items, chunk_size))
    bar = Progress(n, unit="example", desc=split, enabled=progress)
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
                    final = fileio.join(output_dir, names[shard])
                    temporaries.append((fileio.temporary_name(final), final))
                    writer = tf.io.TFRecordWriter(temporaries[-1][0])
                if row[0] == "skip":
                    skipped[row[1]] += 1
                    skipped_files.append({"file": row[2], "reason": row[1], "error": row[3]})
                    continue
                _, name, image_bytes, fmt, height, width, label_png, ex_hist, orientation = row
                if fault_hook is not None:
                    fault_hook("record", temporaries[-1][0], in_shard)
                writer.write(tfrecord.make_example(image_bytes, name, fmt, height, width,
                                                   label_png))
                in_shard += 1
                count += 1
                hist += ex_hist
                turned += orientation != 1
                sizes.append((height, width))
            bar.add(len(rows))
        writer.close()
        writer = None
        bar.close()
    except tf.errors.OpError as e:  # e.g. EFBIG arrives as OutOfRangeError: callers get OSError
        raise OSError(f"{temporaries[-1][0]}: writing the shard failed ({e.message})") from e
    finally:
        if writer is not None:
            try:
                writer.close()
            except tf.errors.OpError:
                pass  # already failing; write_dataset removes the temporary
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
        "exif_upright": turned,   # images stored turned upright by their EXIF orientation
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


def _commit(temporaries, fault_hook):
    """Step 2 of the module docstring, up to the manifest: renames the temporaries to their
    final names, which no file has (output_folder.shard_names); each is dropped from
    `temporaries` once in place."""
    for i in range(len(temporaries)):
        tmp, final = temporaries[0]
        fileio.sync(tmp)
        if fault_hook is not None:
            fault_hook("commit", final, i)
        fileio.rename(tmp, final, overwrite=False)
        temporaries.pop(0)


def _remove_replaced(output_dir, previous, manifest):
    """Step 3: the shards the previous manifest listed and the new one does not."""
    for name in sorted(output_folder.listed_shards(previous)
                       - output_folder.listed_shards(manifest)):
        fileio.remove(fileio.join(output_dir, name), missing_ok=True)


def write_dataset(output_dir, splits, load_fn, metadata, *, num_shards=4, num_workers=1,
                  skip_invalid=False, converter=None, command=None, split_notes=None,
                  fault_hook: Optional[Callable[[str, str, int], Any]] = None, progress=True,
                  chunk_size=8):
    """Converts and writes every split, then the manifest; returns the manifest dict.

    Args:
      output_dir: where shards and `manifest.json` go (created if needed); a local
        path or any TF filesystem's (gs://, ram://).
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
        and the manifest write ("manifest", manifest path, 0); raising there simulates
        a failing write (fault-injection tests).
      progress: show a progress bar on stderr.
    """
    output_dir = os.fspath(output_dir)
    previous = read_manifest_json(output_dir)
    output_folder.check(output_dir, metadata, previous)   # before any work
    fileio.makedirs(output_dir)
    holder = lease.Lease(output_dir, what="a dataset conversion",
                         hint="wait for it to finish, or choose another --output_dir")
    try:   # one conversion at a time per folder (lease.py)
        holder.acquire()
    except lease.LeaseHeldError as e:
        raise DatasetError(str(e), output_dir, "output_dir") from None
    try:
        previous = read_manifest_json(output_dir)   # again: another run may have ended
        output_folder.check(output_dir, metadata, previous)
        return _write_all(output_dir, splits, load_fn, metadata, previous, num_shards,
                          num_workers, skip_invalid, converter, command, split_notes,
                          fault_hook, progress, chunk_size)
    finally:
        holder.release()


def _write_all(output_dir, splits, load_fn, metadata, previous, num_shards, num_workers,
               skip_invalid, converter, command, split_notes, fault_hook, progress,
               chunk_size):
    tag = uuid.uuid4().hex[:8]
    temporaries, entries = [], {}
    executor = parallel.OrderedPool(num_workers)
    try:
        for split, items in splits.items():
            if not hasattr(items, "__len__"):
                items = list(items)
            entries[split] = _write_split(split, items, executor, load_fn, metadata,
                                          num_shards, skip_invalid, chunk_size, output_dir,
                                          temporaries, fault_hook, progress, tag)
            entries[split].update((split_notes or {}).get(split, {}))
        executor.close()
        _commit(temporaries, fault_hook)
        kept = {s: e for s, e in (previous or {}).get("splits", {}).items() if s not in entries}
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
        path = fileio.join(output_dir, MANIFEST)
        if fault_hook is not None:
            fault_hook("manifest", path, 0)
        fileio.write_json(path, manifest)
        _remove_replaced(output_dir, previous, manifest)
        return manifest
    finally:
        executor.close()
        for tmp, _ in temporaries:  # this run's only: other runs' are never touched
            fileio.remove(tmp, missing_ok=True)
