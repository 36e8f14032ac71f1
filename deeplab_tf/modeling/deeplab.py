"""DeepLabv3: the model and its builder (Sec. 3, Fig. 3 and 5; Tables 1-6).

    image (raw RGB, 0-255) -> InputNormalization -> backbone (backbones.py: ResNet v1 with
    atrous beyond output_stride, Multi_Grid, cascaded blocks; MobileNetV2) -> ASPP + image
    pooling | cascade -> 1x1 logits -> bilinear upsampling (align-corners) to the input size

The backbone family is reached only through its `backbone.Backbone` description: its
endpoints, normalization, head defaults and weights.
"""
import keras

from deeplab_tf.modeling import backbones
from deeplab_tf.modeling.aspp import aspp
from deeplab_tf.modeling.backbone import OPTIONS
from deeplab_tf.modeling.layers import Conv, InputNormalization, ResizeLike, all_layers

HEADS = ("aspp", "cascade")


@keras.saving.register_keras_serializable(package="deeplab_tf")
class DeepLabV3(keras.Model):
    """DeepLabv3 as a functional Keras model whose config is its builder arguments.

    One built model serves any image size: input shape (None, None, None, 3). Being
    rebuilt from its arguments (not from a layer graph), it can be rebuilt with another
    output stride and the same weights (`set_output_stride`), and saves to `.keras`.

    Args:
      num_classes: logits channels (21 for PASCAL VOC).
      backbone: a name of `backbones.FAMILIES`: "resnet50", "resnet101", "resnet152",
        "resnet_tiny" (`resnet.DEPTHS`; "resnet<N>" with `depths`) or "mobilenet_v2"
        (`mobilenet_v2.py`). Family options (multi_grid, extra_blocks, stem, depths,
        width_multiplier: ResNet; depth_multiplier: MobileNetV2) given to a family that
        does not take them are a ValueError.
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
      layout: "keras", "slim" or "garden" (ResNet, `resnet.LAYOUTS`: stride position, conv
        bias, BN epsilon and padding of the checkpoints to be loaded); "keras" or "slim"
        (MobileNetV2: channel rounding).
      stem: "7x7" or "deep" (TF-slim `resnet_v1_*_beta`).
      depths: units per block, overriding the backbone's (e.g. (1, 1, 1, 3)).
      width_multiplier: scales every backbone channel count (1.0 for ImageNet weights).
      input_normalization: "caffe", "tf", "torch" or "rgb_mean" (`layers.NORMALIZATIONS`);
        None = what the family's weights expect in the layout
        (`backbones.input_normalization`).
      upsample_logits: resize logits to the input size inside the model (the paper keeps
        the ground truth intact, Sec. 4.1); False returns logits at the output stride.
      backbone_weights: None, "imagenet" or a keras.applications weights file (layout
        "keras", full width; `Backbone.load_weights`). Used once when building; not part of
        the saved config.
      depth_multiplier: MobileNetV2 channel multiplier (backbone "mobilenet_v2", whose
        default head is research/deeplab's: image pooling + 1x1, aspp_rates=()); with it,
        layout "slim" rounds channels as research/deeplab, "keras" as keras.applications.
      weight_decay: TF-slim's weight decay as kernel regularizers (`set_weight_decay`), so
        `model.fit` and deeplab-train minimize the same objective; 0: none.
    """

    def __init__(self, num_classes, backbone="resnet101", output_stride=16,
                 multi_grid=(1, 2, 4), aspp_rates=None, extra_blocks=0, head="aspp",
                 image_pooling=True, aspp_filters=256, dropout_rate=0.0, bn_momentum=0.9997,
                 sync_bn=False, activation="relu", layout="keras", stem="7x7", depths=None,
                 width_multiplier=1.0, input_normalization=None, upsample_logits=True,
                 backbone_weights=None, depth_multiplier=1.0, weight_decay=0.0, **kwargs):
        family = backbones.lookup(backbone, depths)
        family.check_options(backbone, dict(
            multi_grid=multi_grid, extra_blocks=extra_blocks, stem=stem, depths=depths,
            width_multiplier=width_multiplier, depth_multiplier=depth_multiplier))
        input_normalization = backbones.input_normalization(backbone, layout,
                                                            input_normalization, depths)
        if head not in HEADS:
            raise ValueError(f"head={head!r}, expected one of {HEADS}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes={num_classes}: expected >= 1")
        multi_grid = tuple(int(m) for m in multi_grid)
        if aspp_rates is not None:
            aspp_rates = tuple(int(r) for r in aspp_rates)
        options = dict(multi_grid=multi_grid, extra_blocks=int(extra_blocks), stem=stem,
                       depths=tuple(depths) if depths is not None else (),
                       width_multiplier=float(width_multiplier),
                       depth_multiplier=float(depth_multiplier))
        if family.resolve is not None:
            options = family.resolve(backbone, options)

        inputs = keras.Input((None, None, 3), name="image")
        x = InputNormalization(input_normalization, name="input_normalization")(inputs)
        endpoints = family.build(x, backbone, output_stride, layout=layout,
                                 bn_momentum=bn_momentum, sync_bn=sync_bn,
                                 activation=activation,
                                 **{k: options[k] for k in family.options})
        features = list(endpoints.values())[-1]
        if head == "aspp":
            rates = aspp_rates
            if rates is None:
                rates = family.default_aspp_rates(output_stride)
            features = aspp(features, rates,
                            filters=aspp_filters, image_pooling=image_pooling,
                            bn_momentum=bn_momentum, bn_epsilon=family.head_bn_epsilon[layout],
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
            aspp_rates=aspp_rates, head=head, image_pooling=bool(image_pooling),
            aspp_filters=int(aspp_filters), dropout_rate=float(dropout_rate),
            bn_momentum=float(bn_momentum), sync_bn=bool(sync_bn), activation=activation,
            layout=layout, input_normalization=input_normalization,
            upsample_logits=bool(upsample_logits), **options, weight_decay=0.0)
        set_weight_decay(self, weight_decay)
        if backbone_weights is not None:
            backbones.load_backbone_weights(self, backbone, backbone_weights)

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
    for layer in all_layers(model):
        if isinstance(layer, Conv):
            layer.kernel_regularizer = regularizer
            layer.kernel.regularizer = regularizer
    model._builder_args["weight_decay"] = weight_decay
    return model


def build_backbone(backbone="resnet101", output_stride=32, layout="keras",
                   input_normalization=None, **options):
    """A standalone backbone `keras.Model` (raw RGB in) whose outputs are its endpoint dict
    (`Backbone.build`).

    options: the family's builder options (`backbone.OPTIONS`: e.g. depths, extra_blocks;
    left out: the family's own defaults, for ResNet a Multi_Grid of ones), bn_momentum,
    sync_bn, activation.
    """
    common = {k: options.pop(k) for k in ("bn_momentum", "sync_bn", "activation")
              if k in options}
    for option in options:
        if option not in OPTIONS:
            raise ValueError(f"{option}={options[option]!r}: not a backbone option; "
                             f"expected some of {sorted(OPTIONS)}")
    family = backbones.lookup(backbone, options.get("depths"))
    family.check_options(backbone, options)
    norm = backbones.input_normalization(backbone, layout, input_normalization,
                                         options.get("depths"))
    inputs = keras.Input((None, None, 3), name="image")
    x = InputNormalization(norm, name="input_normalization")(inputs)
    endpoints = family.build(x, backbone, output_stride, layout=layout, **common,
                             **{k: v for k, v in options.items() if k in family.options})
    return keras.Model(inputs, endpoints, name=backbone)
