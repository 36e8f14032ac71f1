"""Model Garden (tf-models-official, official/vision) DeepLabV3 checkpoints.

Model Garden saves `tf.train.Checkpoint(model=SegmentationModel, ...)`: object-graph names
under `model/` (found wherever the backbone sits), read here without Model Garden:

    model/backbone/layer_with_weights-{i}/...      stem conv, BN (x3 for stem_type v1), then
                                                   one BottleneckBlock per unit, in order:
                                                   _conv{1,2,3}, _norm{1,2,3}, _shortcut, _norm0
    model/decoder/aspp/aspp_layers/{0..n+1}/...    1x1, n atrous 3x3, image pooling branches
    model/decoder/aspp/projection/...              the 1x1 projection after the concatenation
    model/head/_classifier/{kernel,bias}           logits (SegmentationHead, num_convs=0)

The DilatedResNet strides the 3x3 conv of a block's first unit, has no conv biases, SAME
padding and BN epsilon 1e-3 (layout "garden"); its inputs are ImageNet mean/std normalized
("torch"). Not told by the variables, hence options: output stride, Multi_Grid, ASPP rates,
activation (the registered configs use swish), `resnetd_shortcut` and `pool_kernel_size`
(both assumed off, as in the registered DeepLabV3 configs).
"""
import re

import numpy as np

from deeplab_tf.convert.core import backbone_name

_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"


def _root(shapes, path):
    marker = "backbone/layer_with_weights-0/"
    roots = {n.split(marker)[0] for n in shapes if marker in n and ".OPTIMIZER_SLOT" not in n}
    if len(roots) != 1:
        raise ValueError(f"{path}: expected one Model Garden model (variables like "
                         f"model/backbone/layer_with_weights-0/kernel{_SUFFIX}), found "
                         f"{sorted(roots) or 'none'}")
    return roots.pop()


def _shape(shapes, name):
    return shapes.get(name + _SUFFIX)


def _layer(i):
    return f"layer_with_weights-{i}"


def infer(shapes, path):
    """ModelConfig fields (and num_classes) implied by a Model Garden DeepLabV3 checkpoint."""
    root = _root(shapes, path)
    backbone = f"{root}backbone/"
    names = [n for n in shapes if n.startswith(root) and ".OPTIMIZER_SLOT" not in n]
    stem_kernel = _shape(shapes, f"{backbone}{_layer(0)}/kernel")
    if stem_kernel is None or stem_kernel[0] not in (3, 7):
        raise ValueError(f"{path}: {backbone}{_layer(0)}/kernel is not a 7x7 or 3x3 stem conv")
    stem, first = ("7x7", 2) if stem_kernel[0] == 7 else ("deep", 6)
    if _shape(shapes, f"{backbone}{_layer(first)}/kernel") is not None:
        raise ValueError(f"{path}: a stem conv replaces the max pool (replace_stem_max_pool), "
                         f"which this model does not have")
    for bad, what in (("/_squeeze_excitation/", "squeeze-and-excitation (se_ratio)"),
                      (f"{root}head/_convs/", "head convolutions (num_convs > 0)"),
                      (f"{root}head/_dlv3p", "DeepLabv3+ feature fusion")):
        hit = next((n for n in names if bad in n), None)
        if hit:
            raise ValueError(f"{path}: {hit}: {what} is not part of DeepLabv3 here")
    depths, i = [], first
    while _shape(shapes, f"{backbone}{_layer(i)}/_conv1/kernel") is not None:
        if _shape(shapes, f"{backbone}{_layer(i)}/_shortcut/kernel") is not None:
            depths.append(0)
        depths[-1] += 1
        i += 1
    if len(depths) != 4:
        raise ValueError(f"{path}: {len(depths)} block groups in the backbone; expected 4 "
                         f"(last_stage_repeats > 1 is not supported)")

    aspp = f"{root}decoder/aspp/"
    branches = sorted({int(m.group(1)) for n in names
                       for m in [re.match(rf"{re.escape(aspp)}aspp_layers/(\d+)/", n)] if m})
    if len(branches) < 2:
        raise ValueError(f"{path}: no Model Garden ASPP decoder ({aspp}aspp_layers/...)")
    for b in branches[1:-1]:
        kernels = [n for n in names if n.startswith(f"{aspp}aspp_layers/{b}/")
                   and n.endswith("kernel" + _SUFFIX)]        # depthwise_kernel too
        if len(kernels) != 1:
            raise ValueError(f"{path}: ASPP branch {b} has {len(kernels)} convs; depthwise "
                             f"ASPP (use_depthwise_convolution) is not supported")
    arch = dict(backbone=backbone_name(depths), depths=tuple(depths), layout="garden",
                stem=stem, input_normalization="torch", head="aspp", extra_blocks=0,
                width_multiplier=stem_kernel[-1] / 64,
                image_pooling=True, num_aspp_rates=len(branches) - 2,
                aspp_filters=int(_shape(shapes, f"{aspp}projection/{_layer(0)}/kernel")[-1]))
    logits = _shape(shapes, f"{root}head/_classifier/bias")
    if logits is not None:
        arch["num_classes"] = int(logits[0])
    return arch


def mapper(model, shapes):
    """name(unit, kind, weight) -> (Model Garden variable, None) for `model`."""
    root = _root(shapes, "the checkpoint")
    args = model.builder_args
    first = 6 if args["stem"] == "deep" else 2
    starts = np.cumsum((0,) + tuple(args["depths"]))
    pooling_branch = sum(1 for layer in model.layers
                         if re.fullmatch(r"aspp_\d+_conv", layer.name))

    def scope(unit, kind):
        j = 0 if kind == "conv" else 1
        if unit == "logits":
            return "head/_classifier"
        if unit == "aspp_project":
            return f"decoder/aspp/projection/{_layer(j)}"
        m = re.fullmatch(r"aspp_(\d+)", unit)
        if m:
            return f"decoder/aspp/aspp_layers/{m.group(1)}/{_layer(j)}"
        if unit == "aspp_pooling":
            # The pooling branch nests its layers one level deeper in tf_keras 2.20.
            branch = f"decoder/aspp/aspp_layers/{pooling_branch}"
            for candidate in (f"{branch}/{_layer(0)}/{_layer(j)}", f"{branch}/{_layer(j)}"):
                if any(n.startswith(f"{root}{candidate}/") for n in shapes):
                    return candidate
            return None
        m = re.fullmatch(r"conv1(?:_(\d))?", unit)
        if m:
            k = int(m.group(1) or 1)
            return f"backbone/{_layer(2 * (k - 1) + j)}"
        m = re.fullmatch(r"conv(\d+)_block(\d+)_(\d)", unit)
        if m:
            stage, u, i = (int(g) for g in m.groups())
            index = first + starts[stage - 2] + u - 1
            part = (("_shortcut" if i == 0 else f"_conv{i}") if kind == "conv"
                    else f"_norm{i}")
            return f"backbone/{_layer(index)}/{part}"
        return None

    def name(unit, kind, weight):
        s = scope(unit, kind)
        return None if s is None else (f"{root}{s}/{weight}{_SUFFIX}", None)
    return name
