"""Bootstrapping on hard images (Sec. 4.1, "Test set result and an effective bootstrapping
method"; Fig. 7): images containing a hard class are duplicated in the training set.

The paper duplicates images with bicycle, chair, table, potted-plant or sofa. Which images
those are comes from one pass over the labels (`scan_records`), cached in a small `.npz`
keyed by the record files' names, sizes and modification times; `repeat_factors` turns
it into a per-example count that the pipeline repeats each epoch, exactly.
"""
import json
import os

import numpy as np
import tensorflow as tf

from deeplab_tf.data import tfrecord

# The paper's hard classes on PASCAL VOC 2012 (names of metadata.VOC_CLASSES).
VOC_HARD_CLASSES = ("bicycle", "chair", "diningtable", "pottedplant", "sofa")
# "we duplicate the images": each such image is seen twice per epoch.
DEFAULT_FACTOR = 2


def class_ids(metadata, names):
    """Class ids of `names` in a DatasetMetadata; unknown names raise ValueError."""
    unknown = [n for n in names if n not in metadata.class_names]
    if unknown:
        raise ValueError(f"classes {unknown} are not in {metadata.name!r}: "
                         f"{list(metadata.class_names)}")
    return tuple(metadata.class_names.index(n) for n in names)


def _files_key(files):
    stats = [(f, os.path.getsize(f), int(os.path.getmtime(f))) for f in files]
    return json.dumps(stats)


def scan_records(files, cache_path=None):
    """One pass over the records: per example (in file order) its filename and which
    label values it contains.

    Args:
      files: record files, in the order the pipeline reads them (sorted).
      cache_path: optional `.npz`; reused if it describes the same files, else rewritten.
    Returns:
      {"filenames": [N] str array, "presence": bool [N, 256] (label value present),
       "counts": [num_files] records per file}.
    """
    key = _files_key(files)
    if cache_path and os.path.exists(cache_path):
        with np.load(cache_path, allow_pickle=False) as cached:
            if str(cached["key"]) == key:
                return {k: cached[k] for k in ("filenames", "presence", "counts")}

    def present(serialized):
        features = tfrecord.parse_example(serialized)
        label = tfrecord.decode_label(features[tfrecord.LABEL_ENCODED])
        hist = tf.math.bincount(tf.cast(tf.reshape(label, [-1]), tf.int32), minlength=256,
                                maxlength=256)
        return features[tfrecord.IMAGE_FILENAME], hist > 0

    filenames, presence, counts = [], [], []
    for f in files:
        n = 0
        ds = tf.data.TFRecordDataset(f).map(present, num_parallel_calls=tf.data.AUTOTUNE)
        for names, rows in ds.batch(256).as_numpy_iterator():
            filenames.extend(x.decode("utf-8") for x in names)
            presence.append(rows)
            n += len(rows)
        counts.append(n)
    result = {"filenames": np.array(filenames, dtype=str),
              "presence": (np.concatenate(presence) if presence
                           else np.zeros((0, 256), bool)),
              "counts": np.array(counts, np.int64)}
    if cache_path:
        tmp = f"{cache_path}.tmp-{os.getpid()}.npz"
        np.savez(tmp, key=np.array(key), **result)
        os.replace(tmp, cache_path)
    return result


def repeat_factors(presence, hard_class_ids, factor=DEFAULT_FACTOR):
    """Per-example repeats per epoch: `factor` for images with any hard class, else 1."""
    presence = np.asarray(presence, bool)
    if not hard_class_ids or factor == 1:
        return np.ones(len(presence), np.int64)
    hard = presence[:, list(hard_class_ids)].any(axis=1)
    return np.where(hard, int(factor), 1).astype(np.int64)
