"""The tf.data input pipeline: TFRecords -> augmented training batches (Sec. 4.1), or whole
images for evaluation.

Train mode is reproducible and resumable. Every example has a fixed identity, its index
in the sorted record files. An epoch's order (a per-epoch permutation of the files, a
random starting record in each, interleaved, then a shuffle within blocks of
`shuffle_buffer` records) and every augmentation (keyed by seed, epoch, example index and
repeat copy) come from stateless random ops, never from TF's global seed. So the stream
is a pure function of (seed, files, input pipeline id, number of input pipelines), and
`start_step=k` yields exactly the batches an uninterrupted run yields from step k on
(whole epochs are skipped without being read), on each input pipeline (worker) alike.

Sharding over input pipelines (one per worker of a multi-worker job): with at least as many
files as pipelines, pipeline i reads only files i, i+n, i+2n... (file-level sharding: no
worker reads another's data); its epochs are epochs of its own files (of unequal length if
the files differ; streams are endless), whose examples keep their global indices
(augmentation keys). With fewer files each pipeline reads every file and keeps the
examples whose index % n is its id (data-level sharding, logged once: it reads n times
the data). Either way the split depends on n: resume with the same number of workers for
the exact stream.

Bootstrapping (Sec. 4.1) repeats the images that contain hard classes `bootstrap_factor`
times per epoch (`deeplab_tf.data.bootstrap`).

Speed: only the source window of a crop is decoded (JPEG) and resized (`augment`). TF's
default CPU allocator page-faults every fresh crop and batch buffer in;
`TF_CPU_ALLOCATOR_USE_BFC=1` in the environment before TensorFlow starts makes the
pipeline 1.4x faster (bench/input_pipeline.py on 2 cores: 340-390 images/s of 513x513
crops with it, 235 without). It is not set for you: on the CPU it made the model's
training step no faster (9.1 s default, 10.0 s BFC, one run each), so it pays where the
host only feeds accelerators.

    strategy.distribute_datasets_from_function(
        lambda ctx: build_dataset("train-*.tfrecord", global_batch_size=16,
                                  input_context=ctx, start_step=step))
"""
import logging

import numpy as np
import tensorflow as tf

from deeplab_tf import fileio
from deeplab_tf.data import augment, bootstrap, record_scan, tfrecord

_MAX_EPOCHS = 2 ** 62
_MAX_OPEN_FILES = 16
_warned = set()   # (files, pipelines) told about data-level sharding in this process


def list_files(pattern):
    """Sorted record files of a glob pattern, a comma-separated list or a list of them.
    Readers trust only published shards: a file that its folder's manifest.json does not
    list is left out, with a warning naming it (`manifest.published`)."""
    from deeplab_tf.data.manifest import published
    patterns = pattern.split(",") if isinstance(pattern, str) else list(pattern)
    files, unlisted = published(sorted({f for p in patterns for f in fileio.glob(p.strip())}))
    if unlisted:
        logging.getLogger("deeplab_tf.data").warning(
            "%d file(s) matching %r are not listed in their folder's manifest.json (a "
            "conversion that did not finish, or was replaced) and are not read: %s",
            len(unlisted), pattern, ", ".join(unlisted))
    if not files:
        raise FileNotFoundError(f"no TFRecord file matches {pattern!r}"
                                + (" among the shards a manifest.json lists" if unlisted
                                   else ""))
    return files


def count_records(files):
    """Records per file (one read pass, no decoding)."""
    return [int(tf.data.TFRecordDataset(f).reduce(np.int64(0), lambda n, _: n + 1))
            for f in files]


def _decode(serialized):
    features = tfrecord.parse_example(serialized)
    image = tfrecord.decode_image(features[tfrecord.IMAGE_ENCODED])
    label = tfrecord.decode_label(features[tfrecord.LABEL_ENCODED])
    return image, label, features[tfrecord.IMAGE_FILENAME]


def _decode_crop(serialized, key, crop_size, min_scale, max_scale, scale_step, flip,
                 pad_value, ignore_label):
    """Parses, decodes only the source window of a random crop (JPEG: cropped decoding,
    the same pixels as a full decode) and augments it (augment.apply_crop)."""
    features = tfrecord.parse_example(serialized)
    encoded = features[tfrecord.IMAGE_ENCODED]
    size = tfrecord.image_size(encoded)
    crop = augment.sample_crop(key, size[0], size[1], crop_size, min_scale, max_scale,
                               scale_step, flip)
    y0, x0 = crop["y0"], crop["x0"]
    h, w = crop["y1"] - y0 + 1, crop["x1"] - x0 + 1

    def jpeg():
        # A cropped decode differs from a full one in its outermost row/column (chroma
        # upsampling lacks the neighbour there): decode one pixel more on every side.
        my0, mx0 = tf.maximum(y0 - 1, 0), tf.maximum(x0 - 1, 0)
        my1, mx1 = tf.minimum(y0 + h, size[0] - 1), tf.minimum(x0 + w, size[1] - 1)
        wide = tf.io.decode_and_crop_jpeg(
            encoded, tf.stack([my0, mx0, my1 - my0 + 1, mx1 - mx0 + 1]), channels=3,
            dct_method="INTEGER_ACCURATE")
        return wide[y0 - my0:y0 - my0 + h, x0 - mx0:x0 - mx0 + w]

    image = tf.cond(tf.io.is_jpeg(encoded), jpeg,
                    lambda: tf.io.decode_png(encoded, channels=3)[y0:y0 + h, x0:x0 + w])
    label = tfrecord.decode_label(features[tfrecord.LABEL_ENCODED])
    check = tf.debugging.assert_equal(tf.shape(label)[:2], size, message=(
        "image and label sizes differ in record"))
    with tf.control_dependencies([check]):
        label = label[y0:y0 + h, x0:x0 + w]
    image, label = augment.apply_crop(image, label, crop, crop_size, pad_value, ignore_label)
    return image, label, features[tfrecord.IMAGE_FILENAME]


def _shard(input_context):
    if input_context is None:
        return 1, 0, 1
    per_pipeline = input_context.num_replicas_in_sync // input_context.num_input_pipelines
    return input_context.num_input_pipelines, input_context.input_pipeline_id, per_pipeline


def _split(files, num_shards, shard_id):
    """(indices of the files this pipeline reads, whether it keeps only every
    num_shards-th record of them): module docstring, "Sharding"."""
    if num_shards == 1:
        return list(range(len(files))), False
    if len(files) >= num_shards:
        return list(range(shard_id, len(files), num_shards)), False
    if (tuple(files), num_shards) not in _warned:
        _warned.add((tuple(files), num_shards))
        logging.getLogger("deeplab_tf.data").warning(
            "%d record file(s) for %d input pipelines (workers): each reads all of them and "
            "keeps every %d-th record (data-level sharding, %dx the reading); write at least "
            "%d shards (e.g. deeplab-build-data --num_shards=%d) so that each worker reads "
            "only its own files", len(files), num_shards, num_shards, num_shards, num_shards,
            num_shards)
    return list(range(len(files))), True


def _epoch_stream(records, seed, epoch, mine, num_shards, shard_id, repeats, block):
    """(index, copy, record) of one epoch of this input pipeline, in shuffled order;
    `records` is the record_scan.Scan of all files (bad records are left out), `mine`
    `_split`'s result."""
    file_ids, by_record = mine
    key = tf.random.experimental.stateless_fold_in(tf.constant([seed, 1], tf.int64), epoch)
    k_files, k_start, k_blocks = tf.unstack(tf.random.experimental.stateless_split(key, 3))
    counts_t = tf.constant(records.counts, tf.int64)
    order = tf.gather(tf.constant(file_ids, tf.int64),
                      tf.argsort(tf.random.stateless_uniform([len(file_ids)], k_files)))
    starts = tf.cast(tf.random.stateless_uniform([len(records.files)], k_start) *
                     tf.cast(counts_t, tf.float32), tf.int64)
    read = record_scan.read_fn(records)

    def read_file(i):
        shard = read(i)
        return shard.skip(starts[i]).concatenate(shard.take(starts[i]))

    ds = tf.data.Dataset.from_tensor_slices(order).interleave(
        read_file, cycle_length=min(len(file_ids), _MAX_OPEN_FILES), block_length=1)
    valid = records.valid()
    if not valid.all():
        valid_t = tf.constant(valid)
        ds = ds.filter(lambda g, record: tf.gather(valid_t, g))
    if by_record:
        ds = ds.filter(lambda g, record: g % num_shards == shard_id)
    if repeats is None:
        ds = ds.map(lambda g, record: (g, tf.constant(0, tf.int64), record))
    else:
        repeats_t = tf.constant(repeats, tf.int64)
        ds = ds.flat_map(lambda g, record: tf.data.Dataset.range(repeats_t[g]).map(
            lambda k: (g, k, record)))

    def shuffle_block(b, elements):
        perm = tf.argsort(tf.random.stateless_uniform(
            tf.shape(elements[0]), tf.random.experimental.stateless_fold_in(k_blocks, b)))
        return tf.data.Dataset.from_tensor_slices(tuple(tf.gather(e, perm) for e in elements))

    return ds.batch(block).enumerate().flat_map(lambda b, elements: shuffle_block(b, elements))


def build_dataset(file_pattern, *, mode="train", global_batch_size=16, crop_size=513,
                  min_scale=0.5, max_scale=2.0, scale_step=0.25, flip=True,
                  pad_value=augment.MEAN_RGB, ignore_label=augment.IGNORE_LABEL, seed=0,
                  start_step=0, shuffle_buffer=1000, num_epochs=None,
                  bootstrap_class_ids=(), bootstrap_factor=bootstrap.DEFAULT_FACTOR,
                  cache=None, input_context=None, with_metadata=False,
                  num_parallel_calls=tf.data.AUTOTUNE, skip_corrupt_records=False,
                  records=None):
    """The input pipeline of one input pipeline (host) in train or eval mode.

    Args:
      file_pattern: glob, comma-separated globs or a list (`list_files`).
      mode: "train" (augmented crops, endless unless num_epochs) or "eval" (whole images).
      global_batch_size: batch over all replicas; each yielded batch is one replica's,
        `input_context.get_per_replica_batch_size(global_batch_size)`.
      crop_size: int or (h, w); the paper uses 513 (Sec. 4.1 "Crop size").
      min_scale, max_scale, scale_step, flip: Sec. 4.1 "Data augmentation" (0.5, 2.0;
        0.25 steps as the original; 0 for continuous).
      pad_value: RGB that pads images (the model's mean pixel, normalizing to zero).
      ignore_label: label of padded pixels (255).
      seed: data seed: example order and augmentation.
      start_step: first global step to produce (resume); skips exactly what steps
        0..start_step-1 consumed.
      shuffle_buffer: records per shuffled block (memory: that many encoded records).
      num_epochs: None repeats forever (train); eval mode reads once.
      bootstrap_class_ids: hard classes (e.g. `bootstrap.class_ids(VOC,
        bootstrap.VOC_HARD_CLASSES)`); images containing any repeat `bootstrap_factor`
        times per epoch.
      cache: folder(s) where the record and label scans are kept once made
        (data/scan_cache.py); None: made at every call.
      input_context: a tf.distribute.InputContext: files (or, with fewer files than
        pipelines, examples) are split over input pipelines (module docstring).
      with_metadata: train mode also yields "filename", "index", "epoch", "copy".
      skip_corrupt_records: train without records that fail their CRC or do not decode
        (found by one decoding pass, `record_scan`); otherwise a corrupt record is a
        CorruptRecordError naming shard and record, before any batch.
      records: the record_scan.Scan of the files if already made (train mode).
    Returns:
      train: {"image": float32 [b, h, w, 3] raw 0-255, "label": uint8 [b, h, w, 1]},
      eval: the same padded to the largest image of the batch (pad value, 255), plus
      "height", "width" (int32 [b], the true size) and "filename" (string [b]).
    """
    if mode not in ("train", "eval"):
        raise ValueError(f"mode={mode!r}, expected 'train' or 'eval'")
    files = list_files(file_pattern)
    num_shards, shard_id, per_pipeline = _shard(input_context)
    batch = (input_context.get_per_replica_batch_size(global_batch_size)
             if input_context is not None else int(global_batch_size))
    mine = _split(files, num_shards, shard_id)
    if mode == "eval":
        return _eval_dataset(files, batch, mine, num_shards, shard_id, pad_value,
                             ignore_label, num_parallel_calls)

    if records is None:
        records = record_scan.scan(files, decode=skip_corrupt_records, cache=cache)
    if records.bad and not skip_corrupt_records:
        raise record_scan.CorruptRecordError(records.bad)
    repeats = None
    if bootstrap_class_ids and bootstrap_factor != 1:
        if records.bad:
            raise record_scan.CorruptRecordError(
                records.bad, "bootstrapping reads every label: rebuild the shards")
        scan = bootstrap.scan_records(files, cache)
        repeats = bootstrap.repeat_factors(scan["presence"], bootstrap_class_ids,
                                           bootstrap_factor)
    total = sum(records.counts)
    file_of = np.repeat(np.arange(len(files)), records.counts)
    kept = np.isin(file_of, mine[0]) & records.valid()
    if mine[1]:
        kept &= np.arange(total) % num_shards == shard_id
    epoch_length = int((repeats if repeats is not None else np.ones(total, np.int64))[kept].sum())
    if epoch_length < batch:
        raise ValueError(f"input pipeline {shard_id} has {epoch_length} examples per epoch, "
                         f"fewer than one batch of {batch}")
    skip = int(start_step) * batch * per_pipeline
    first_epoch, skip_in_first = divmod(skip, epoch_length)
    last_epoch = _MAX_EPOCHS if num_epochs is None else int(num_epochs)

    def epoch_stream(epoch):
        ds = _epoch_stream(records, seed, epoch, mine, num_shards, shard_id, repeats,
                           int(shuffle_buffer))
        ds = ds.map(lambda g, k, record: (epoch, g, k, record))
        return ds.skip(tf.where(epoch == first_epoch, np.int64(skip_in_first), np.int64(0)))

    base_key = tf.constant([seed, 2], tf.int64)
    fold = tf.random.experimental.stateless_fold_in

    def load(epoch, g, k, record):
        key = fold(fold(fold(base_key, epoch), g), k)
        image, label, filename = _decode_crop(record, key, crop_size, min_scale, max_scale,
                                              scale_step, flip, pad_value, ignore_label)
        out = {"image": image, "label": label}
        if with_metadata:
            out.update(filename=filename, index=g, epoch=epoch, copy=k)
        return out

    ds = tf.data.Dataset.range(first_epoch, last_epoch).flat_map(epoch_stream)
    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    ds = ds.batch(batch, drop_remainder=True)
    return ds.prefetch(tf.data.AUTOTUNE)


def _eval_dataset(files, batch, mine, num_shards, shard_id, pad_value, ignore_label,
                  num_parallel_calls):
    """Whole images in file order; no crop, no augmentation (Sec. 4.1 evaluates whole)."""
    file_ids, by_record = mine
    ds = tf.data.TFRecordDataset([files[i] for i in file_ids])
    if by_record:
        ds = ds.shard(num_shards, shard_id)

    def load(record):
        image, label, filename = _decode(record)
        shape = tf.shape(image)
        return {"image": tf.cast(image, tf.float32), "label": label,
                "height": shape[0], "width": shape[1], "filename": filename}

    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    # Padding is marked with -1 and replaced by the per-channel pad value after batching
    # (padded_batch takes one scalar per component).
    ds = ds.padded_batch(batch, padding_values={
        "image": -1.0, "label": tf.constant(ignore_label, tf.uint8), "height": 0, "width": 0,
        "filename": ""})
    pad = tf.constant(pad_value, tf.float32)

    def fill(features):
        image = features["image"]
        return dict(features, image=tf.where(image < 0, pad, image))

    return ds.map(fill).prefetch(tf.data.AUTOTUNE)
