"""Bootstrapping on hard images (Sec. 4.1, "Test set result and an effective bootstrapping
method"; Fig. 7): images containing a hard class are duplicated in the training set.

The paper duplicates images with bicycle, chair, table, potted-plant or sofa. Which images
those are comes from one pass over the labels (`scan_records`), cached as a small JSON file
beside the records (data/scan_cache.py: once per dataset, for every worker and restart);
`repeat_factors` turns it into a per-example count that the pipeline repeats each epoch,
exactly.
"""
import json

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


def _dump(key, result):
    """JSON: per example its filename and the label values it contains (a few each)."""
    return json.dumps({
        "key": key, "filenames": result["filenames"].tolist(),
        "present": [np.flatnonzero(row).tolist() for row in result["presence"]],
        "counts": result["counts"].tolist()}).encode()


def _load(data):
    d = json.loads(data)
    presence = np.zeros((len(d["present"]), 256), bool)
    for i, values in enumerate(d["present"]):
        presence[i, values] = True
    return d["key"], {"filenames": np.array(d["filenames"], dtype=str), "presence": presence,
                      "counts": np.array(d["counts"], np.int64)}


def scan_records(files, cache=None):
    """One pass over the records: per example (in file order) its filename and which
    label values it contains.

    Args:
      files: record files, in the order the pipeline reads them (sorted).
      cache: a scan_cache.Cache, or folder(s) for one; None: scanned at every call.
    Returns:
      {"filenames": [N] str array, "presence": bool [N, 256] (label value present),
       "counts": [num_files] records per file}.
    """
    from deeplab_tf.data import scan_cache
    files = list(files)
    cache = scan_cache.cache_or_none(cache)
    if cache is not None:
        return cache.get("labels", files, lambda: scan_records(files), _dump, _load)

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
    return result


def repeat_factors(presence, hard_class_ids, factor=DEFAULT_FACTOR):
    """Per-example repeats per epoch: `factor` for images with any hard class, else 1."""
    presence = np.asarray(presence, bool)
    if not hard_class_ids or factor == 1:
        return np.ones(len(presence), np.int64)
    hard = presence[:, list(hard_class_ids)].any(axis=1)
    return np.where(hard, int(factor), 1).astype(np.int64)
