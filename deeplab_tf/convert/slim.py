"""research/deeplab (TF-slim) checkpoints: `resnet_v1_50/101` and `resnet_v1_*_beta`
backbones with the DeepLabv3 head of research/deeplab/model.py.

    resnet_v1_101/conv1/weights, .../conv1/BatchNorm/{gamma,beta,moving_mean,moving_variance}
    resnet_v1_101/conv1_{1,2,3}/...                     (the _beta variants' stem)
    resnet_v1_101/block{1-4}/unit_{u}/bottleneck_v1/{shortcut,conv1,conv2,conv3}/...
    aspp0/, aspp{1,2,3}/ (plain 3x3 atrous convs), image_pooling/, concat_projection/
    logits/semantic/{weights,biases}

research/deeplab concatenates [image_pooling, aspp0, aspp1, ...]; we concatenate the image
pooling branch last, so concat_projection's input channels are reordered. Strides sit in
the 3x3 conv of a block's last unit (layout "slim"), BN epsilon 1e-5 everywhere; the inputs
are RGB minus research/deeplab's ImageNet mean for resnet_v1_50/101 ("rgb_mean") and
scaled to [-1, 1] for the _beta variants ("tf"), as its feature_extractor.py does.
"""
import re

import numpy as np

from deeplab_tf.convert.core import backbone_name

_BN = "BatchNorm"
_CONV_WEIGHTS = {"kernel": "weights", "bias": "biases"}


def _prefix(shapes, path):
    prefixes = sorted({m.group(1) for n in shapes for m in [re.match(r"(resnet_v1_\d+)/", n)]
                       if m})
    if not prefixes and any(n.startswith("MobilenetV2/") for n in shapes):
        raise ValueError(f"{path}: a MobileNetV2 checkpoint (MobilenetV2/...), not a "
                         f"resnet_v1_* one: convert it with source 'slim_mobilenet_v2'")
    if len(prefixes) != 1:
        raise ValueError(f"{path}: expected the variables of one TF-slim resnet_v1_* network "
                         f"(e.g. resnet_v1_101/conv1/weights), found scopes {prefixes or 'none'}")
    return prefixes[0]


def infer(shapes, path):
    """ModelConfig fields (and num_classes) implied by a research/deeplab checkpoint."""
    p = _prefix(shapes, path)
    check_head(shapes, path)
    depths = []
    for b in range(1, 5):
        units = sum(1 for n in shapes if re.fullmatch(
            rf"{p}/block{b}/unit_\d+/bottleneck_v1/conv1/weights", n))
        if not units:
            raise ValueError(f"{path}: no {p}/block{b}/unit_*/bottleneck_v1 variables")
        depths.append(units)
    if f"{p}/conv1_1/weights" in shapes:
        stem, normalization, first = "deep", "tf", f"{p}/conv1_1/weights"
    elif f"{p}/conv1/weights" in shapes:
        stem, normalization, first = "7x7", "rgb_mean", f"{p}/conv1/weights"
    else:
        raise ValueError(f"{path}: neither {p}/conv1/weights nor {p}/conv1_1/weights (beta)")
    arch = dict(backbone=backbone_name(depths), depths=tuple(depths), layout="slim",
                stem=stem, input_normalization=normalization, extra_blocks=0,
                width_multiplier=shapes[first][-1] / 64)
    arch.update(infer_head(shapes))
    return arch


def check_head(shapes, path):
    """Refuses, by variable name, the heads of research/deeplab that are not DeepLabv3's."""
    for name in shapes:
        if name.startswith("decoder/"):
            raise ValueError(f"{path}: {name} belongs to the DeepLabv3+ decoder, which this "
                             f"DeepLabv3 implementation does not have")
        if re.match(r"aspp\d+_(depthwise|pointwise)/", name):
            raise ValueError(f"{path}: {name} is a separable ASPP conv (DeepLabv3+); "
                             f"DeepLabv3's ASPP uses plain 3x3 atrous convs (aspp1/weights)")
        if re.match(r"logits/semantic_\d+/", name):
            raise ValueError(f"{path}: {name}: logits summed over several atrous rates "
                             f"(DeepLab v2's ASPP) are not DeepLabv3's head")


def infer_head(shapes):
    """ModelConfig head fields of research/deeplab's model.py head, plus "num_aspp_rates"
    (atrous branches aspp1..n) and "num_classes" where the checkpoint has them; {} for a
    backbone checkpoint (the builder's default head)."""
    arch = {}
    if "aspp0/weights" in shapes:
        rates = sum(1 for n in shapes if re.fullmatch(r"aspp[1-9]\d*/weights", n))
        arch.update(head="aspp", image_pooling="image_pooling/weights" in shapes,
                    aspp_filters=int(shapes["aspp0/weights"][-1]), num_aspp_rates=rates)
    elif "logits/semantic/weights" in shapes:
        arch["head"] = "cascade"    # logits straight on the backbone (no ASPP)
    if "logits/semantic/biases" in shapes:
        arch["num_classes"] = int(shapes["logits/semantic/biases"][0])
    return arch


def head_scope(unit):
    """research/deeplab's scope of one of our head units, else None."""
    if unit == "logits":
        return "logits/semantic"
    if unit == "aspp_pooling":
        return "image_pooling"
    if unit == "aspp_project":
        return "concat_projection"
    m = re.fullmatch(r"aspp_(\d+)", unit)
    return f"aspp{m.group(1)}" if m else None


def head_name(unit, kind, weight, image_pooling):
    """(research/deeplab variable, transform) for a weight of our head, else None."""
    scope = head_scope(unit)
    if scope is None:
        return None
    if kind == "bn":
        return f"{scope}/{_BN}/{weight}", None
    transform = _pooling_last if unit == "aspp_project" and image_pooling else None
    return f"{scope}/{_CONV_WEIGHTS[weight]}", transform


def _scope(unit, prefix):
    m = re.fullmatch(r"conv1(_\d)?", unit)
    if m:
        return f"{prefix}/{unit}"
    m = re.fullmatch(r"conv(\d+)_block(\d+)_(\d)", unit)
    if m:
        stage, u, i = (int(g) for g in m.groups())
        part = "shortcut" if i == 0 else f"conv{i}"
        return f"{prefix}/block{stage - 1}/unit_{u}/bottleneck_v1/{part}"
    return None


def _pooling_last(kernel):
    """concat_projection [1, 1, (n + 2) * F, F]: [pool, aspp0..n] -> [aspp0..n, pool]."""
    f = kernel.shape[3]
    return np.concatenate([kernel[:, :, f:], kernel[:, :, :f]], axis=2)


def mapper(model, shapes):
    """name(unit, kind, weight) -> (research/deeplab variable, transform) for `model`."""
    prefix = _prefix(shapes, "the checkpoint")
    pooling = model.builder_args["image_pooling"]

    def name(unit, kind, weight):
        head = head_name(unit, kind, weight, pooling)
        if head is not None:
            return head
        scope = _scope(unit, prefix)
        if scope is None:
            return None
        if kind == "bn":
            return f"{scope}/{_BN}/{weight}", None
        return f"{scope}/{_CONV_WEIGHTS[weight]}", None
    return name
