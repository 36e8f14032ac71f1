"""DeepLabv3: the model and its builder (Sec. 3, Fig. 3 and 5; Tables 1-6).

    image (raw RGB, 0-255) -> InputNormalization -> ResNet v1 (atrous beyond output_stride,
    Multi_Grid, cascaded blocks) -> ASPP + image pooling | cascade -> 1x1 logits
    -> bilinear upsampling (align-corners) to the input size
"""
import keras

from deeplab_tf.modeling import mobilenet_v2, resnet
from deeplab_tf.modeling.aspp import aspp, default_aspp_rates
from deeplab_tf.modeling.layers import Conv, InputNormalization, ResizeLike

HEADS = ("aspp", "cascade")


@keras.saving.register_keras_serializable(package="deeplab_tf")
class DeepLabV3(keras.Model):
    """DeepLabv3 as a functional Keras model whose config is its builder arguments.

    One built model serves any image size: input shape (None, None, None, 3). Being
    rebuilt from its arguments (not from a layer graph), it can be rebuilt with another
    output stride and the same weights (`set_output_stride`), and saves to `.keras`.

    Args:
      num_classes: logits channels (21 for PASCAL VOC).
      backbone: "resnet50", "resnet101", "resnet152", "resnet_tiny" (`resnet.DEPTHS`) or
        "mobilenet_v2" (`mobilenet_v2.py`, with `depth_multiplier`).
      output_stride: 8, 16 or 32 (64-256 with extra_blocks); Sec. 3.1. Paper: 16 for
        training, 8 for the final evaluation.
      multi_grid: unit rates of block4 and the cascaded blocks (Sec. 3.2). Paper: (1, 2, 4).
      aspp_rates: the 3x3 branch rates; None = (6, 12, 18) at output stride 16, doubled at 8.
      extra_blocks: cascaded copies of block4 (blocks 5-7), 0..3 (Sec. 3.2, Tables 1-4).
      head: "aspp" (Sec. 3.3, Fig. 5) or "cascade": logits on the last block, blocks 5-7
        with extra_blocks (Sec. 3.2, Tables 1-4; extra_blocks=0 is Table 2's "block4").
      image_pooling: the image-level feature branch of ASPP (Table 5).
      aspp_filters: channels of every ASPP branch and of the projection (256).
      dropout_rate: dropout after the ASPP projection (0 in the paper; 0.1 in the original
        implementation).
      bn_momentum: BN moving-average decay, 0.9997 as the original; short runs from
        scratch need less (e.g. 0.99).
      sync_bn: synchronized BN across replicas.
      activation: "relu" (the paper) or "swish" (Model Garden's registered configs).
      layout: "keras", "slim" or "garden" (`resnet.LAYOUTS`): stride position, conv bias,
        BN epsilon and padding of the checkpoints to be loaded.
      stem: "7x7" or "deep" (TF-slim `resnet_v1_*_beta`).
      depths: units per block, overriding the backbone's (e.g. (1, 1, 1, 3)).
      width_multiplier: scales every backbone channel count (1.0 for ImageNet weights).
      input_normalization: "caffe", "tf", "torch" or "rgb_mean" (`layers.NORMALIZATIONS`);
        None = what the layout's weights expect.
      upsample_logits: resize logits to the input size inside the model (the paper keeps
        the ground truth intact, Sec. 4.1); False returns logits at the output stride.
      backbone_weights: None, "imagenet" or a keras.applications weights file (layout
        "keras", full width). Used once when building; not part of the saved config.
      depth_multiplier: MobileNetV2 channel multiplier (backbone "mobilenet_v2", whose
        default head is research/deeplab's: image pooling + 1x1, aspp_rates=()); with it,
        layout "slim" rounds channels as research/deeplab, "keras" as keras.applications.
      weight_decay: L2 regularization of the convolution kernels in TF-slim's convention,
        weight_decay * sum(w^2) / 2 (`set_weight_decay`), in `model.losses`: what
        `model.fit` adds to the compiled loss. Paper: 1e-4 for training; 0 adds nothing.
    """

    def __init__(self, num_classes, backbone="resnet101", output_stride=16,
                 multi_grid=(1, 2, 4), aspp_rates=None, extra_blocks=0, head="aspp",
                 image_pooling=True, aspp_filters=256, dropout_rate=0.0, bn_momentum=0.9997,
                 sync_bn=False, activation="relu", layout="keras", stem="7x7", depths=None,
                 width_multiplier=1.0, input_normalization=None, upsample_logits=True,
                 backbone_weights=None, depth_multiplier=1.0, weight_decay=0.0, **kwargs):
        if layout not in resnet.LAYOUTS:
            raise ValueError(f"layout={layout!r}, expected one of {sorted(resnet.LAYOUTS)}")
        mobilenet = backbone == "mobilenet_v2"
        if depths is None and backbone not in resnet.DEPTHS and not mobilenet:
            raise ValueError(f"backbone={backbone!r}, expected one of "
                             f"{sorted(resnet.DEPTHS) + ['mobilenet_v2']}")
        if mobilenet and extra_blocks:
            raise ValueError(f"extra_blocks={extra_blocks}: cascaded blocks are ResNet "
                             f"blocks; backbone='mobilenet_v2' needs extra_blocks=0")
        if head not in HEADS:
            raise ValueError(f"head={head!r}, expected one of {HEADS}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes}: expected >= 1")
        lay = resnet.LAYOUTS[layout]
        depths = tuple(depths) if depths is not None else resnet.DEPTHS.get(backbone, ())
        multi_grid = tuple(int(m) for m in multi_grid)
        if aspp_rates is not None:
            aspp_rates = tuple(int(r) for r in aspp_rates)
        input_normalization = input_normalization or ("tf" if mobilenet else lay.normalization)
        head_epsilon = 1e-5 if mobilenet else lay.bn_epsilon

        inputs = keras.Input((None, None, 3), name="image")
        x = InputNormalization(input_normalization, name="input_normalization")(inputs)
        if mobilenet:
            endpoints = {"block4": mobilenet_v2.mobilenet_v2(
                x, depth_multiplier, output_stride, bn_momentum=bn_momentum, sync_bn=sync_bn,
                layout=layout)}
        else:
            endpoints = resnet.resnet_v1(
                x, depths, width_multiplier=width_multiplier, output_stride=output_stride,
                multi_grid=multi_grid, extra_blocks=extra_blocks,
                stride_position=lay.stride_position, conv_bias=lay.conv_bias,
                bn_epsilon=lay.bn_epsilon, padding=lay.padding, pool_padding=lay.pool_padding,
                stem=stem, bn_momentum=bn_momentum, sync_bn=sync_bn, activation=activation)
        features = endpoints[f"block{4 + extra_blocks}"]
        if head == "aspp":
            rates = aspp_rates
            if rates is None:
                rates = () if mobilenet else default_aspp_rates(output_stride)
            features = aspp(features, rates,
                            filters=aspp_filters, image_pooling=image_pooling,
                            bn_momentum=bn_momentum, bn_epsilon=head_epsilon,
                            sync_bn=sync_bn, activation=activation)
        if dropout_rate:
            features = keras.layers.Dropout(dropout_rate, name="dropout")(features)
        logits = Conv(num_classes, 1, use_bias=True, kernel_initializer="glorot_uniform",
                      name="logits")(features)
        if upsample_logits:
            logits = ResizeLike(name="upsample_logits")([logits, inputs])
        # Softmax and loss in float32 under mixed precision.
        logits = keras.layers.Activation("linear", dtype="float32", name="logits_fp32")(logits)
        super().__init__(inputs=inputs, outputs=logits, **kwargs)

        self._builder_args = dict(
            num_classes=int(num_classes), backbone=backbone, output_stride=int(output_stride),
            multi_grid=multi_grid, aspp_rates=aspp_rates, extra_blocks=int(extra_blocks),
            head=head, image_pooling=bool(image_pooling), aspp_filters=int(aspp_filters),
            dropout_rate=float(dropout_rate), bn_momentum=float(bn_momentum),
            sync_bn=bool(sync_bn), activation=activation, layout=layout, stem=stem,
            depths=depths,
            width_multiplier=float(width_multiplier),
            input_normalization=input_normalization, upsample_logits=bool(upsample_logits),
            depth_multiplier=float(depth_multiplier), weight_decay=0.0)
        set_weight_decay(self, weight_decay)
        if backbone_weights is not None and mobilenet:
            if mobilenet_v2.channel_divisor(depth_multiplier, layout) != 8:
                raise ValueError(f"backbone_weights={backbone_weights!r} loads keras.applications "
                                 f"MobileNetV2 weights: needs layout='keras' at "
                                 f"depth_multiplier={depth_multiplier}")
            mobilenet_v2.load_backbone_weights(self, depth_multiplier, backbone_weights)
        elif backbone_weights is not None:
            if backbone_weights == "imagenet" and (layout != "keras" or stem != "7x7"
                                                   or width_multiplier != 1.0):
                raise ValueError("backbone_weights='imagenet' loads keras.applications "
                                 "weights: needs layout='keras', stem='7x7', width 1.0")
            resnet.load_backbone_weights(self, backbone, backbone_weights)

    @property
    def builder_args(self):
        """The builder arguments this model was made from (a copy)."""
        return dict(self._builder_args)

    @property
    def mean_rgb(self):
        """The pixel value that normalizes to zero: what images are padded with."""
        return self.get_layer("input_normalization").mean_rgb

    def get_config(self):
        return dict(self._builder_args, name=self.name, trainable=self.trainable)

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_deeplabv3(num_classes, backbone="resnet101", output_stride=16, multi_grid=(1, 2, 4),
                    aspp_rates=None, extra_blocks=0, head="aspp", **kwargs):
    """Builds DeepLabv3; see `DeepLabV3` for every argument and the paper's values."""
    return DeepLabV3(num_classes, backbone=backbone, output_stride=output_stride,
                     multi_grid=multi_grid, aspp_rates=aspp_rates, extra_blocks=extra_blocks,
                     head=head, **kwargs)


def set_output_stride(model, output_stride, aspp_rates=None):
    """The same weights in a model rebuilt at another output stride (Sec. 4.1: train at 16,
    evaluate at 8). Only strides and atrous rates change, so every variable maps one to one.

    `aspp_rates` keeps the model's explicit rates unless given; rates left to the default
    follow the output stride ((6, 12, 18) at 16, (12, 24, 36) at 8).
    """
    args = model.builder_args
    args["output_stride"] = output_stride
    if aspp_rates is not None:
        args["aspp_rates"] = tuple(aspp_rates)
    rebuilt = DeepLabV3(**args, name=model.name)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def set_weight_decay(model, weight_decay):
    """Weight decay through Keras kernel regularizers: `keras.regularizers.L2(weight_decay
    / 2)` on every convolution kernel (`Conv`, nested ones included), i.e. TF-slim's
    `l2_regularizer(weight_decay)`: weight_decay * sum(w^2) / 2. Biases, BN scales and
    offsets and depthwise kernels (MobileNetV2) are not decayed, as in research/deeplab and
    Model Garden. Keras counts a regularizer only while its variable is trainable: frozen
    layers are not decayed. 0 removes the regularizers. The value is kept in the model's
    config (`.keras` files keep it); variables are unchanged (checkpoints are unaffected).
    Returns the model."""
    weight_decay = float(weight_decay)
    if not weight_decay >= 0:
        raise ValueError(f"weight_decay={weight_decay}: expected a value >= 0")
    regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
    for layer in _conv_layers(model):
        layer.kernel_regularizer = regularizer
        layer.kernel.regularizer = regularizer
    model._builder_args["weight_decay"] = weight_decay
    return model


def _conv_layers(layer, seen=None):
    """Every `Conv` in `layer`: a model's layers, and the layers a composite layer (ASPP's
    image pooling) holds as public attributes."""
    seen = set() if seen is None else seen
    if id(layer) in seen:
        return []
    seen.add(id(layer))
    if isinstance(layer, Conv):
        return [layer]
    children = layer.layers if isinstance(layer, keras.Model) else [
        value for name, value in vars(layer).items()
        if not name.startswith("_") and isinstance(value, keras.layers.Layer)]
    return [conv for child in children for conv in _conv_layers(child, seen)]


def build_backbone(backbone="resnet101", output_stride=32, **kwargs):
    """A standalone ResNet v1 `keras.Model` (raw RGB in) whose outputs are the endpoint dict.

    kwargs: `resnet.resnet_v1` options, plus `layout`, `input_normalization`.
    """
    lay = resnet.LAYOUTS[kwargs.pop("layout", "keras")]
    norm = kwargs.pop("input_normalization", None) or lay.normalization
    depths = kwargs.pop("depths", None) or resnet.DEPTHS[backbone]
    options = dict(stride_position=lay.stride_position, conv_bias=lay.conv_bias,
                   bn_epsilon=lay.bn_epsilon, padding=lay.padding,
                   pool_padding=lay.pool_padding)
    options.update(kwargs)
    inputs = keras.Input((None, None, 3), name="image")
    x = InputNormalization(norm, name="input_normalization")(inputs)
    endpoints = resnet.resnet_v1(x, depths, output_stride=output_stride, **options)
    return keras.Model(inputs, endpoints, name=backbone)
