"""Dataset converters to sharded TFRecords: a plain dict from dataset name to module.

Each module has `convert(..., output_dir, ...) -> manifest dict`, taking its arguments
explicitly (no flags), plus the options of `deeplab_tf.data.writer.write_dataset`
(num_workers, skip_invalid, command, fault_hook, progress). Modules are imported on demand
so that, e.g., pycocotools is needed only for COCO.
"""
import importlib

CONVERTERS = {
    "voc2012": "deeplab_tf.data.converters.voc2012",
    "sbd_trainaug": "deeplab_tf.data.converters.sbd_trainaug",
    "coco_voc": "deeplab_tf.data.converters.coco_voc",
    "cityscapes": "deeplab_tf.data.converters.cityscapes",
    "folder": "deeplab_tf.data.converters.folder",
    "tfds": "deeplab_tf.data.converters.tfds",
    "synthetic": "deeplab_tf.data.converters.synthetic",
}


def get_converter(name):
    """The converter module of a dataset name; ValueError listing the valid names."""
    if name not in CONVERTERS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(CONVERTERS)}")
    return importlib.import_module(CONVERTERS[name])
