"""Training input from TFRecords: the dataset metadata next to the records, the synthetic
set generated once (by the chief), the record scans cached per dataset, and the
`dataset_fn` that `train_lib.train` consumes (Sec. 4.1 augmentation, positioned at the
start step, bootstrapping hard classes).
"""
import logging
import time

from deeplab_tf import fileio

_log = logging.getLogger("deeplab_tf.train")


def mean_rgb(model_config):
    """The pixel the model normalizes to zero: what crops are padded with. Decided where
    the model decides its input normalization (`backbones.mean_rgb`): the family's, per
    layout, unless `model.input_normalization` says otherwise."""
    from deeplab_tf.modeling import backbones
    return backbones.mean_rgb(model_config)


def records_folder(records):
    """The folder of a records pattern's first glob: where its manifest.json is."""
    return fileio.dirname(records.split(",")[0].strip()) or "."


def dataset_metadata(records):
    """The DatasetMetadata in the manifest.json next to a records pattern."""
    from deeplab_tf.data.manifest import load_manifest
    return load_manifest(records_folder(records)).metadata


def ensure_synthetic_records(records, seed=0, is_chief=True, wait_timeout=600.0,
                             poll_seconds=1.0):
    """Writes the synthetic dataset into the folder of `records` unless a finished
    conversion (its manifest) is already there: generated once, then cached.

    In a multi-worker job only the chief (`is_chief`) generates; the others wait up to
    `wait_timeout` seconds for its manifest, then raise TimeoutError saying why (the
    workers must share the folder, e.g. on gs://).
    """
    from deeplab_tf.data import manifest
    from deeplab_tf.data.converters import synthetic
    folder = records_folder(records)
    deadline = time.monotonic() + wait_timeout
    while True:
        try:
            manifest.load_manifest(folder)
            return
        except manifest.DatasetError:
            pass
        if is_chief:
            _log.warning("generating the synthetic dataset into %s", folder)
            synthetic.convert(folder, seed=seed, num_workers=2)
            return
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"waited {wait_timeout:.0f} s for the chief to write the synthetic dataset "
                f"({fileio.join(folder, manifest.MANIFEST)}); every worker must see the same "
                f"data folder (e.g. gs://), or write it beforehand with deeplab-build-data "
                f"synthetic")
        time.sleep(poll_seconds)


def cache_folders(records, model_dir=None):
    """Where the scans of `records` are cached (data/scan_cache.py): beside its manifest;
    `model_dir`'s data_cache/ if that folder cannot be written (a read-only bucket)."""
    return [records_folder(records)] + ([fileio.join(model_dir, "data_cache")]
                                        if model_dir else [])


def scan_records(config, model_dir=None):
    """The record_scan.Scan of data.train_records, made once per dataset (cached,
    `cache_folders`). Corrupt records raise CorruptRecordError (shard, index, reason)
    unless data.skip_corrupt_records, when they are found by decoding every record and
    logged."""
    from deeplab_tf.data import pipeline, record_scan
    files = pipeline.list_files(config.data.train_records)
    skip = config.data.skip_corrupt_records
    scan = record_scan.scan(files, decode=skip,
                            cache=cache_folders(config.data.train_records, model_dir))
    if scan.bad and not skip:
        raise record_scan.CorruptRecordError(scan.bad)
    if scan.bad:
        _log.warning("skipping %d corrupt record(s) of %d:\n  %s", len(scan.bad),
                     sum(scan.counts), "\n  ".join(str(b) for b in scan.bad))
    return scan


def explain_data_error(config, error):
    """A CorruptRecordError naming the records behind a training error raised by the input
    pipeline (a record that fails to decode mid-run), or None if the records are fine."""
    import tensorflow as tf
    from deeplab_tf.data import pipeline, record_scan
    if not isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.DataLossError)):
        return None
    bad = record_scan.find_bad_records(pipeline.list_files(config.data.train_records))
    return record_scan.CorruptRecordError(bad) if bad else None


def records_dataset_fn(config, metadata, records=None, model_dir=None):
    """The `dataset_fn` of `train` for TFRecords: the augmentation of Sec. 4.1, positioned at
    the start step, bootstrapping the configured hard classes. `records`: the
    `scan_records(config, model_dir)` result (made here if None)."""
    from deeplab_tf.data import pipeline
    d = config.data
    records = records if records is not None else scan_records(config, model_dir)
    unknown = [c for c in d.bootstrap_classes if c not in metadata.class_names]
    if unknown:
        raise ValueError(f"data.bootstrap_classes {unknown} are not classes of "
                         f"{metadata.name}: {list(metadata.class_names)}")
    class_ids = tuple(metadata.class_names.index(c) for c in d.bootstrap_classes)

    def fn(input_context, start_step):
        return pipeline.build_dataset(
            d.train_records, mode="train", global_batch_size=config.train.batch_size,
            crop_size=d.crop_size, min_scale=d.min_scale, max_scale=d.max_scale,
            scale_step=d.scale_step, pad_value=mean_rgb(config.model),
            ignore_label=metadata.ignore_label, seed=d.seed, start_step=start_step,
            shuffle_buffer=d.shuffle_buffer, bootstrap_class_ids=class_ids,
            bootstrap_factor=d.bootstrap_factor, input_context=input_context,
            cache=cache_folders(d.train_records, model_dir),
            skip_corrupt_records=d.skip_corrupt_records, records=records)
    return fn
