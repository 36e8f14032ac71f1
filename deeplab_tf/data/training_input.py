"""Training input from TFRecords: the dataset metadata next to the records, the synthetic
set generated once, and the `dataset_fn` that `train_lib.train` consumes (Sec. 4.1
augmentation, positioned at the start step, bootstrapping hard classes).
"""
import logging
import os


def mean_rgb(model_config):
    """The pixel the model normalizes to zero: what crops are padded with."""
    from deeplab_tf.modeling.layers import NORMALIZATIONS
    from deeplab_tf.modeling.resnet import LAYOUTS
    return NORMALIZATIONS[LAYOUTS[model_config.layout].normalization][0]


def dataset_metadata(records):
    """The DatasetMetadata in the manifest.json next to a records pattern."""
    from deeplab_tf.data.manifest import load_manifest
    first = records.split(",")[0]
    return load_manifest(os.path.dirname(first) or ".").metadata


def ensure_synthetic_records(records, seed=0):
    """Writes the synthetic dataset into the folder of `records` unless a finished
    conversion (its manifest) is already there: generated once, then cached."""
    from deeplab_tf.data import manifest
    from deeplab_tf.data.converters import synthetic
    folder = os.path.dirname(records.split(",")[0]) or "."
    try:
        manifest.load_manifest(folder)
    except manifest.DatasetError:
        logging.getLogger("deeplab_tf.train").warning(
            "generating the synthetic dataset into %s", folder)
        synthetic.convert(folder, seed=seed, num_workers=2)


def scan_records(config):
    """The record_scan.Scan of data.train_records, read once before training. Corrupt
    records raise CorruptRecordError (shard, index, reason) unless
    data.skip_corrupt_records, when they are found by decoding every record and logged."""
    from deeplab_tf.data import pipeline, record_scan
    files = pipeline.list_files(config.data.train_records)
    if not config.data.skip_corrupt_records:
        return record_scan.Scan(files, record_scan.require_intact(files), [], {})
    scan = record_scan.scan(files, decode=True)
    if scan.bad:
        logging.getLogger("deeplab_tf.train").warning(
            "skipping %d corrupt record(s) of %d:\n  %s", len(scan.bad), sum(scan.counts),
            "\n  ".join(str(b) for b in scan.bad))
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


def records_dataset_fn(config, metadata, records=None):
    """The `dataset_fn` of `train` for TFRecords: the augmentation of Sec. 4.1, positioned at
    the start step, bootstrapping the configured hard classes. `records`: the
    `scan_records(config)` result (made here if None)."""
    from deeplab_tf.data import pipeline
    d = config.data
    records = records if records is not None else scan_records(config)
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
            skip_corrupt_records=d.skip_corrupt_records, records=records)
    return fn
