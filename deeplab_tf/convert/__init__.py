"""Checkpoints of Model Garden and of the original research/deeplab (TF-slim) as model_dirs.

    from deeplab_tf.convert import convert_checkpoint
    result = convert_checkpoint("garden", "ckpt-1000", "runs/from_garden")
    print(result.summary())          # every variable left unmapped, on either side
"""
from deeplab_tf.convert import garden, slim, slim_mobilenet_v2, tflite
from deeplab_tf.convert.core import Conversion, convert

SOURCES = {"garden": garden, "slim": slim, "slim_mobilenet_v2": slim_mobilenet_v2,
           "tflite": tflite}


def convert_checkpoint(source, checkpoint, output_dir, **kwargs):
    """Converts `checkpoint` (a `SOURCES` key) into a model_dir; see `core.convert`."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r}, expected one of {sorted(SOURCES)}")
    return convert(SOURCES[source], checkpoint, output_dir, **kwargs)


__all__ = ["Conversion", "SOURCES", "convert_checkpoint"]
