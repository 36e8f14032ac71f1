"""Per-stage size of the layer outputs a training step can keep for its backward pass.

    python bench/stage_activations.py        # R-101, 513x513, per image, fp32, OS16 and OS8

Sums, per stage, channels x (stage resolution)^2 x 4 bytes over every Keras layer output
(conv, BN, ReLU, add): an upper bound of the activations automatic differentiation keeps
(some ops keep their input, some their output, none keeps both of every layer). No step is
run; the model is built only to read its layers' channels.
"""
import collections
import re

import deeplab_tf  # noqa: F401  (before TensorFlow)
from deeplab_tf.modeling.deeplab import build_deeplabv3


def stage_of(name):
    match = re.match(r"conv(\d)_", name)
    if match and match.group(1) != "1":
        return f"block{int(match.group(1)) - 1}"
    if name.startswith(("conv1", "pool1")):
        return "stem"
    return "head"


def main(size=513):
    for output_stride in (16, 8):
        model = build_deeplabv3(21, backbone="resnet101", output_stride=output_stride)
        feature = -(-size // output_stride)   # 33 at OS16, 65 at OS8
        res = {"stem": -(-size // 4), "block1": -(-size // 4), "block2": -(-size // 8),
               "block3": feature, "block4": feature, "head": feature}
        total = collections.Counter()
        for layer in model.layers:
            if layer.name in ("image", "input_normalization") or isinstance(
                    layer.output, (list, tuple)):
                continue
            stage = stage_of(layer.name)
            side = res[stage]
            if layer.name.startswith("conv1"):
                side = -(-size // 2)
            if layer.name in ("upsample_logits", "logits_fp32"):
                side = size
            total[stage] += layer.output.shape[-1] * side * side * 4 / 2 ** 20
        print(f"OS{output_stride}: MB per image", {k: round(v) for k, v in total.items()},
              "total", round(sum(total.values())))


if __name__ == "__main__":
    main()
