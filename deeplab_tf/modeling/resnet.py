"""ResNet v1 backbones with output stride control, Multi_Grid and cascaded blocks 5-7.

One builder expresses every ResNet v1 layout for which ImageNet checkpoints exist, through
a few explicit options (see `LAYOUTS`):

| layout   | stride in               | conv bias | BN epsilon | stem, pool padding          |
|----------|-------------------------|-----------|------------|-----------------------------|
| keras    | 1x1 of a block's 1st unit | yes     | 1.001e-5   | zero-pad + VALID            |
| slim     | 3x3 of a block's last unit| no      | 1e-5       | conv2d_same, SAME pool      |
| garden   | 3x3 of a block's 1st unit | no      | 1e-3       | SAME                        |

`stem="deep"` gives the three 3x3 convolutions of TF-slim's `resnet_v1_*_beta`.
Layer names follow keras.applications (`conv{stage}_block{unit}_{i}_conv`, stage = paper
block + 1), so `keras.applications.ResNet50/101/152` weights transfer by name; cascaded
blocks 5, 6, 7 are stages conv6, conv7, conv8.
"""
import dataclasses

import keras

from deeplab_tf.modeling.aspp import default_aspp_rates
from deeplab_tf.modeling.backbone import Backbone
from deeplab_tf.modeling.layers import Conv, MaxPool, activation_layer

# Units per block (block1..block4) of each named backbone.
DEPTHS = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
    # For tests and the quickstart; pair with a small width_multiplier.
    "resnet_tiny": (1, 1, 1, 3),
}

STRIDE_POSITIONS = ("1x1_first", "3x3_first", "3x3_last")


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a family of ResNet v1 checkpoints places strides, biases and padding."""
    stride_position: str
    conv_bias: bool
    bn_epsilon: float
    padding: str          # padding of strided convs: "explicit" (slim/keras) or "same"
    pool_padding: str     # "explicit" (keras zero pad) or "same"
    normalization: str    # InputNormalization mode the checkpoints expect


LAYOUTS = {
    "keras": Layout("1x1_first", True, 1.001e-5, "explicit", "explicit", "caffe"),
    "slim": Layout("3x3_last", False, 1e-5, "explicit", "same", "tf"),
    "garden": Layout("3x3_first", False, 1e-3, "same", "same", "torch"),
}


def block_rates(num_blocks, output_stride, stride_position="1x1_first"):
    """Per block: (unit strides, base atrous rate of each unit) for a target output stride.

    Every block but one is nominally strided (all but the first when the stride sits in a
    block's first unit, all but the last when it sits in the last unit, as TF-slim); the
    stem contributes a factor 4. Once the running stride reaches `output_stride`, further
    strides become atrous rates (Sec. 3.1): with the stride in the first unit the whole
    block takes the new rate; with it in the last unit, the following blocks do.
    """
    max_stride = 4 * 2 ** (num_blocks - 1)
    if output_stride not in [2 ** k for k in range(2, 9)] or output_stride > max_stride:
        raise ValueError(
            f"output_stride={output_stride}: expected a power of 2 between 4 and {max_stride} "
            f"for {num_blocks} blocks (8, 16 or 32; 64-256 need extra_blocks)")
    current, rate, plan = 4, 1, []
    for b in range(num_blocks):
        last_unit_layout = stride_position == "3x3_last"
        nominal = 2 if (b < num_blocks - 1 if last_unit_layout else b > 0) else 1
        stride = nominal
        if nominal > 1 and current * nominal > output_stride:
            stride = 1
        if last_unit_layout:
            plan.append((stride, rate))
            if stride == nominal:
                current *= nominal
            else:
                rate *= nominal
        else:
            if stride == nominal:
                current *= nominal
            else:
                rate *= nominal
            plan.append((stride, rate))
    return plan


def resnet_v1(inputs, depths, width_multiplier=1.0, output_stride=16, multi_grid=None,
              extra_blocks=0, stride_position="1x1_first", conv_bias=True, bn_epsilon=1.001e-5,
              padding="explicit", pool_padding="explicit", stem="7x7", bn_momentum=0.9997,
              sync_bn=False, activation="relu"):
    """Builds ResNet v1 (bottleneck units) on `inputs`; returns a dict of endpoints.

    Args:
      inputs: a normalized image tensor (NHWC).
      depths: units per block for block1..block4, e.g. (3, 4, 23, 3) for ResNet-101.
      width_multiplier: scales every channel count (1.0 for the ImageNet networks).
      output_stride: input / feature resolution (Sec. 3.1): 8, 16, 32, or up to 256 with
        extra blocks. Strides beyond it become atrous rates.
      multi_grid: unit rates of block4 and every cascaded block, multiplied by the block's
        base rate (Sec. 3.2, "Multi-grid Method"): one entry per unit of block4.
      extra_blocks: 0..3 cascaded copies of block4 (blocks 5-7, Sec. 3.2, Fig. 3).
      stride_position, conv_bias, bn_epsilon, padding, pool_padding: see `LAYOUTS`.
      stem: "7x7" (ResNet) or "deep" (three 3x3 convs, `resnet_v1_*_beta`).
      bn_momentum: BN moving-average decay (0.9997 in the paper's implementation).
      sync_bn: synchronized BN across replicas (batch statistics over the global batch).
      activation: "relu" (the paper) or "swish" (`layers.ACTIVATIONS`).

    Returns:
      {"stem": ..., "block1": ..., "block{4 + extra_blocks}": ...}: block outputs.
    """
    if stride_position not in STRIDE_POSITIONS:
        raise ValueError(f"stride_position={stride_position!r}, expected one of "
                         f"{STRIDE_POSITIONS}")
    if not 0 <= extra_blocks <= 3:
        raise ValueError(f"extra_blocks={extra_blocks}: expected 0..3 (blocks 5-7, Sec. 3.2)")
    if len(depths) != 4:
        raise ValueError(f"depths={depths}: expected 4 units counts (block1..block4)")
    if multi_grid is None:
        multi_grid = (1,) * depths[3]
    if len(multi_grid) != depths[3]:
        raise ValueError(f"multi_grid={tuple(multi_grid)} has {len(multi_grid)} entries; "
                         f"block4 has {depths[3]} units")
    depths = tuple(depths) + (depths[3],) * extra_blocks

    def width(c):
        return max(1, int(round(c * width_multiplier)))

    def conv_bn(x, filters, kernel, name, strides=1, rate=1, pad="same", relu=True):
        x = Conv(filters, kernel, strides=strides, dilation_rate=rate, padding=pad,
                 use_bias=conv_bias, name=f"{name}_conv")(x)
        x = keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=bn_epsilon,
                                            synchronized=sync_bn, name=f"{name}_bn")(x)
        return activation_layer(activation, f"{name}_relu")(x) if relu else x

    if stem == "7x7":
        x = conv_bn(inputs, width(64), 7, "conv1", strides=2, pad=padding)
    elif stem == "deep":
        x = conv_bn(inputs, width(64), 3, "conv1_1", strides=2, pad=padding)
        x = conv_bn(x, width(64), 3, "conv1_2")
        x = conv_bn(x, width(128), 3, "conv1_3")
    else:
        raise ValueError(f"stem={stem!r}, expected '7x7' or 'deep'")
    endpoints = {"stem": x}
    x = MaxPool(3, 2, padding=pool_padding, name="pool1_pool")(x)

    plan = block_rates(len(depths), output_stride, stride_position)
    for b, (units, (stride, rate)) in enumerate(zip(depths, plan)):
        filters = width(64 * 2 ** min(b, 3))
        grid = multi_grid if b >= 3 else (1,) * units
        for u in range(units):
            name = f"conv{b + 2}_block{u + 1}"
            if stride_position == "3x3_last":
                unit_stride = stride if u == units - 1 else 1
            else:
                unit_stride = stride if u == 0 else 1
            s1 = unit_stride if stride_position == "1x1_first" else 1
            s3 = unit_stride if stride_position != "1x1_first" else 1
            if u == 0:
                shortcut = conv_bn(x, 4 * filters, 1, f"{name}_0", strides=unit_stride,
                                   relu=False)
            elif stride_position == "3x3_last" and u == units - 1 and b < len(depths) - 1:
                # TF-slim subsamples the identity of a strided last unit. The layer exists
                # (stride 1 when atrous) at every output stride: object-based checkpoints
                # match layers by position, so the layer list must not depend on it.
                shortcut = keras.layers.MaxPooling2D(1, unit_stride, name=f"{name}_0_pool")(x)
            else:
                shortcut = x
            y = conv_bn(x, filters, 1, f"{name}_1", strides=s1)
            y = conv_bn(y, filters, 3, f"{name}_2", strides=s3, rate=rate * grid[u],
                        pad=padding if s3 > 1 else "same")
            y = conv_bn(y, 4 * filters, 1, f"{name}_3", relu=False)
            x = keras.layers.Add(name=f"{name}_add")([shortcut, y])
            x = activation_layer(activation, f"{name}_out")(x)
        endpoints[f"block{b + 1}"] = x
    return endpoints


def transfer_keras_applications_weights(source, target):
    """Copies every weight of a keras.applications ResNet into `target`, layer by name.

    Returns the list of transferred layer names. Raises if a weighted layer of `source`
    has no counterpart or a shape differs, so a partial transfer never passes silently.
    """
    names = []
    for layer in source.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        try:
            dest = target.get_layer(layer.name)
        except ValueError:
            raise ValueError(f"{target.name} has no layer {layer.name!r} for the "
                             f"keras.applications weights") from None
        got = [w.shape for w in dest.get_weights()]
        want = [w.shape for w in weights]
        if got != want:
            raise ValueError(f"layer {layer.name}: shapes {got} in {target.name}, {want} in "
                             f"the keras.applications model")
        dest.set_weights(weights)
        names.append(layer.name)
    return names


KERAS_APPLICATIONS = {
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "resnet152": "ResNet152",
}


def load_backbone_weights(model, backbone, weights):
    """Loads ImageNet weights into the backbone of `model` through keras.applications.

    Args:
      model: a model built with the "keras" layout, full width, 7x7 stem.
      backbone: "resnet50", "resnet101" or "resnet152".
      weights: "imagenet" (downloaded by keras.applications on a networked machine) or the
        path of a keras.applications weights file (`*_weights_tf_dim_ordering_tf_kernels_notop.h5`).
    Returns:
      The names of the layers that received weights.
    """
    if backbone not in KERAS_APPLICATIONS:
        raise ValueError(f"backbone={backbone!r}: ImageNet weights exist for "
                         f"{sorted(KERAS_APPLICATIONS)}")
    app = getattr(keras.applications, KERAS_APPLICATIONS[backbone])
    source = app(include_top=False, weights=weights, input_shape=(None, None, 3))
    return transfer_keras_applications_weights(source, model)


def load_imagenet_weights(model, args, weights):
    """`Backbone.load_weights`: keras.applications weights into a DeepLabV3 of `args`."""
    if weights == "imagenet" and (args.get("layout", "keras") != "keras"
                                  or args.get("stem", "7x7") != "7x7"
                                  or args.get("width_multiplier", 1.0) != 1.0):
        raise ValueError("backbone_weights='imagenet' loads keras.applications "
                         "weights: needs layout='keras', stem='7x7', width 1.0")
    return load_backbone_weights(model, args["backbone"], weights)


def build(x, name, output_stride, layout="keras", bn_momentum=0.9997, sync_bn=False,
          activation="relu", depths=None, width_multiplier=1.0, multi_grid=None,
          extra_blocks=0, stem="7x7"):
    """`Backbone.build`: `resnet_v1` in a checkpoint layout (`LAYOUTS`); `depths` (None or
    ()) default to the name's (`DEPTHS`), `multi_grid` to 1 for every unit of block4."""
    lay = LAYOUTS[layout]
    return resnet_v1(x, tuple(depths) if depths else DEPTHS[name],
                     width_multiplier=width_multiplier, output_stride=output_stride,
                     multi_grid=multi_grid, extra_blocks=extra_blocks,
                     stride_position=lay.stride_position, conv_bias=lay.conv_bias,
                     bn_epsilon=lay.bn_epsilon, padding=lay.padding,
                     pool_padding=lay.pool_padding, stem=stem, bn_momentum=bn_momentum,
                     sync_bn=sync_bn, activation=activation)


def _resolve(name, options):
    depths = options.get("depths")
    return dict(options, depths=tuple(depths) if depths else DEPTHS[name])


BACKBONE = Backbone(
    family="resnet", names=tuple(DEPTHS), build=build,
    options=("depths", "width_multiplier", "multi_grid", "extra_blocks", "stem"),
    normalization={k: lay.normalization for k, lay in LAYOUTS.items()},
    head_bn_epsilon={k: lay.bn_epsilon for k, lay in LAYOUTS.items()},
    default_aspp_rates=default_aspp_rates, load_weights=load_imagenet_weights,
    pattern=r"resnet\d+", resolve=_resolve)
