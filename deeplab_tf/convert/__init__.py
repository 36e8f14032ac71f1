"""Checkpoints of Model Garden and of the original research/deeplab (TF-slim) as model_dirs.

    from deeplab_tf.convert import convert_checkpoint
    result = convert_checkpoint("garden", "ckpt-1000", "runs/from_garden")
    print(result.summary())          # every variable left unmapped, on either side
"""
from deeplab_tf.convert import garden, slim, tflite
from deeplab_tf.convert.core import Conversion, convert

SOURCES = {"garden": garden, "slim": slim, "tflite": tflite}


def convert_checkpoint(source, checkpoint, output_dir, **kwargs):
    """Converts `checkpoint` ("garden" or "slim") into a model_dir; see `core.convert`."""
    if source not in SOURCES:
        raise ValueError(f"source={source!r}, expected one of {sorted(SOURCES)}")
    return convert(SOURCES[source], checkpoint, output_dir, **kwargs)


__all__ = ["Conversion", "SOURCES", "convert_checkpoint"]
