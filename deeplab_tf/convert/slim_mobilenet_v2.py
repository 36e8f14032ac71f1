"""research/deeplab (TF-slim) MobileNetV2 checkpoints: DeepLabv3 models trained by
research/deeplab (`model_variant=mobilenet_v2`, e.g. the model zoo's
`deeplabv3_mnv2_pascal_train_aug`) and TF-slim's ImageNet classifiers
(`mobilenet_v2_1.0_224.ckpt`, `mobilenet_v2_0.5_224.ckpt`, ...), backbone only.

    MobilenetV2/Conv/weights, MobilenetV2/Conv/BatchNorm/{gamma,beta,moving_mean,moving_variance}
    MobilenetV2/expanded_conv/{depthwise,project}/...             block 0 (no expansion)
    MobilenetV2/expanded_conv_{1-16}/{expand,depthwise,project}/... (depthwise_weights)
    image_pooling/, aspp0/, concat_projection/, logits/semantic/   the head (slim.py's)

Ours are keras.applications' names (`Conv1`, `bn_Conv1`, `expanded_conv_depthwise`,
`block_{i}_expand`, ... `_BN`): block i is slim's `expanded_conv_i`. The 1280-channel
`MobilenetV2/Conv_1` and the classifier's `MobilenetV2/Logits/` are not part of
research/deeplab's features (they end at `layer_18`) and are reported as unused.

The depth multiplier and the channel rounding are read from the output channels of the
stem and of the 17 blocks. research/deeplab rounds channels to multiples of 8 only at depth
1.0 (layout "slim": 12 channels at 0.5 where TF-slim's classifiers have 16); TF-slim's
ImageNet classifiers round to multiples of 8 at every depth, as keras.applications does
(layout "keras"). Inputs are scaled to [-1, 1] ("tf"), as research/deeplab's
feature_extractor does for mobilenet_v2; BN epsilon 1e-3 in the backbone (slim's default),
1e-5 in the head (model.py), as our builder has them.

Moving averages: TF-slim's released classifiers also hold `.../ExponentialMovingAverage`
shadows of every weight. research/deeplab initializes its training from the variables
themselves (train_utils.get_model_init_fn restores model variables by their own names), so
they are what is imported; the shadows are reported with the optimizer state, not used.
"""
import re

from deeplab_tf.convert import slim
from deeplab_tf.modeling import mobilenet_v2

SCOPE = "MobilenetV2"
_WEIGHTS = {"kernel": "weights", "depthwise_kernel": "depthwise_weights"}
_UNIT = re.compile(r"(expanded_conv|block_(\d+))_(expand|depthwise|project)(_BN)?")
LAYOUTS = ("slim", "keras")   # tried in this order: at depth 1.0 both round alike


def _block_scope(block):
    return f"{SCOPE}/expanded_conv" + (f"_{block}" if block else "")


def _check_family(shapes, path):
    if f"{SCOPE}/Conv/weights" in shapes:
        return
    names = sorted(shapes)
    resnet = sorted({n.split("/")[0] for n in names if n.startswith("resnet_v1")})
    if resnet:
        raise ValueError(f"{path}: a TF-slim ResNet checkpoint ({resnet[0]}/...), not "
                         f"MobileNetV2: convert it with source 'slim'")
    nested = sorted({n[:n.index(f"/{SCOPE}/") + 1] for n in names if f"/{SCOPE}/" in n})
    if nested:
        raise ValueError(f"{path}: MobileNetV2 variables under {nested[0]!r} (e.g. an object "
                         f"detection model); expected research/deeplab's top-level "
                         f"{SCOPE}/Conv/weights")
    scopes = sorted({n.split("/")[0] for n in names if "/" in n})
    raise ValueError(f"{path}: no {SCOPE}/Conv/weights, not a TF-slim MobileNetV2 checkpoint "
                     f"(top-level scopes: {', '.join(scopes[:8]) or 'none'})")


def output_channels(depth_multiplier, layout):
    """{slim conv scope: output channels} of the stem and the 17 blocks' projections, as
    our builder (mobilenet_v2.mobilenet_v2) rounds them for `layout`."""
    divisor = mobilenet_v2.channel_divisor(depth_multiplier, layout)
    channels = {f"{SCOPE}/Conv": mobilenet_v2.make_divisible(32 * depth_multiplier, divisor)}
    block = 0
    for _, c, n, _ in mobilenet_v2.STAGES:
        for _ in range(n):
            channels[f"{_block_scope(block)}/project"] = mobilenet_v2.make_divisible(
                c * depth_multiplier, divisor)
            block += 1
    return channels


def _depth_and_layout(shapes, path):
    """(depth multiplier, layout) whose channel counts are the checkpoint's."""
    scopes = output_channels(1.0, "slim")
    missing = [f"{s}/weights" for s in scopes if f"{s}/weights" not in shapes]
    if missing:
        raise ValueError(f"{path}: {missing[0]} missing ({len(missing)} of MobileNetV2's "
                         f"stem and 17 block projections are): not research/deeplab's "
                         f"MobileNetV2")
    found = {s: int(shapes[f"{s}/weights"][-1]) for s in scopes}
    for depth in mobilenet_v2.DEPTH_MULTIPLIERS:
        for layout in LAYOUTS:
            if output_channels(depth, layout) == found:
                return depth, layout
    raise ValueError(
        f"{path}: MobileNetV2 output channels {list(found.values())} (stem, then the 17 "
        f"blocks) match no depth multiplier of {mobilenet_v2.DEPTH_MULTIPLIERS} rounded as "
        f"research/deeplab or TF-slim's classifiers round them")


def infer(shapes, path):
    """ModelConfig fields (and num_classes) implied by a research/deeplab MobileNetV2
    checkpoint; the head's as `slim.infer_head` reads them."""
    _check_family(shapes, path)
    slim.check_head(shapes, path)
    depth, layout = _depth_and_layout(shapes, path)
    arch = dict(backbone="mobilenet_v2", depth_multiplier=depth, layout=layout,
                input_normalization="tf", extra_blocks=0)
    head = slim.infer_head(shapes)
    if head.get("num_aspp_rates") == 0:
        # research/deeplab's MobileNetV2 head: image pooling + aspp0, no atrous branch.
        del head["num_aspp_rates"]
        head["aspp_rates"] = ()
    else:
        head.pop("num_aspp_rates", None)   # the mapper checks the branch count
    arch.update(head)
    return arch


def backbone_scope(unit):
    """(slim scope, is BN) of one of our MobileNetV2 layers, else None."""
    if unit in ("Conv1", "bn_Conv1"):
        return f"{SCOPE}/Conv", unit == "bn_Conv1"
    m = _UNIT.fullmatch(unit)
    if m is None:
        return None
    block = int(m.group(2) or 0)
    return f"{_block_scope(block)}/{m.group(3)}", m.group(4) is not None


def _check_atrous_branches(model, shapes):
    """The checkpoint's atrous ASPP branches (aspp1..n; it does not store their rates)
    against the model's, before any variable is assigned."""
    if "aspp0/weights" not in shapes:
        return
    theirs = sum(1 for n in shapes if re.fullmatch(r"aspp[1-9]\d*/weights", n))
    ours = sum(1 for layer in model.layers if re.fullmatch(r"aspp_[1-9]\d*_conv", layer.name))
    if theirs != ours:
        raise ValueError(f"the checkpoint has {theirs} atrous ASPP branches (aspp1..), the "
                         f"model {ours}: pass aspp_rates with {theirs} rates (the checkpoint "
                         f"does not store them)")


def mapper(model, shapes):
    """name(unit, kind, weight) -> (research/deeplab variable, transform) for `model`."""
    _check_atrous_branches(model, shapes)
    pooling = model.builder_args["image_pooling"]

    def name(unit, kind, weight):
        head = slim.head_name(unit, kind, weight, pooling)
        if head is not None:
            return head
        found = backbone_scope(unit)
        if found is None:
            return None
        scope, is_bn = found
        if is_bn:
            return f"{scope}/BatchNorm/{weight}", None
        return f"{scope}/{_WEIGHTS.get(weight, weight)}", None
    return name
