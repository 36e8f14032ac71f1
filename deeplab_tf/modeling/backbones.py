"""The backbone families DeepLabV3 can be built on: one line each (a `backbone.Backbone`).

Adding a family is one new module ending with its `Backbone`, and its line here. Every
other module asks here: which family answers to a `backbone` name, what input
normalization (hence padding pixel) a model expects, which weights it can load.
"""
from deeplab_tf.modeling import mobilenet_v2, resnet
from deeplab_tf.modeling.layers import NORMALIZATIONS

FAMILIES = (
    resnet.BACKBONE,          # resnet50, resnet101, resnet152, resnet_tiny (+ resnet<N>)
    mobilenet_v2.BACKBONE,    # mobilenet_v2 (depth_multiplier)
)


def names():
    """Every `backbone` name some family answers to."""
    return [n for family in FAMILIES for n in family.names]


def lookup(name, depths=None):
    """The `Backbone` answering to `name` (a ValueError listing the names otherwise)."""
    for family in FAMILIES:
        if family.answers_to(name, depths):
            return family
    raise ValueError(f"backbone={name!r}, expected one of {sorted(names())}")


def input_normalization(backbone, layout="keras", input_normalization=None, depths=None):
    """The `layers.NORMALIZATIONS` mode of a model: `input_normalization` if given, else
    what the family's weights expect in `layout`. The one place it is decided, for the
    model's first layer and for the training crops' padding alike."""
    family = lookup(backbone, depths)
    family.check_layout(backbone, layout)
    mode = input_normalization or family.normalization[layout]
    if mode not in NORMALIZATIONS:
        raise ValueError(f"input_normalization={mode!r}, expected one of "
                         f"{sorted(NORMALIZATIONS)}")
    return mode


def mean_rgb(model_config):
    """The pixel a model of `model_config` (configs.ModelConfig) normalizes to zero: what
    training crops, evaluation and predict windows are padded with (`DeepLabV3.mean_rgb`
    of the built model is the same value)."""
    m = model_config
    mode = input_normalization(m.backbone, m.layout, m.input_normalization, m.depths)
    return NORMALIZATIONS[mode][0]


def load_backbone_weights(model, backbone, weights):
    """Loads ImageNet weights (keras.applications: "imagenet" or a weights file) into the
    backbone of `model`, a DeepLabV3 (or a `build_backbone` model) of `backbone`.
    Returns the names of the layers that received weights."""
    args = dict(getattr(model, "builder_args", {}), backbone=backbone)
    family = lookup(backbone, args.get("depths"))
    if family.load_weights is None:
        raise ValueError(f"backbone_weights={weights!r}: backbone {backbone!r} "
                         f"({family.family}) has no keras.applications weights; use "
                         f"backbone_weights=None")
    return family.load_weights(model, args, weights)
