"""The backbone interface: everything DeepLabV3 knows about a backbone family.

A family (ResNet v1, MobileNetV2, ...) is one module ending with a `Backbone` that describes
it, and one line in `backbones.FAMILIES`. DeepLabV3, `build_backbone`, training, evaluation,
export and predict reach a family only through this description:

  names, pattern      the `backbone` values it answers to ("resnet101", "mobilenet_v2")
  build               normalized image -> named endpoints, at an output stride (atrous
                      beyond it, Sec. 3.1), with Multi_Grid where the family has it
  options             which family builder options it takes (`OPTIONS`); a family given
                      one it does not take is a ValueError naming the option
  normalization       per checkpoint layout, the input normalization its weights expect,
                      hence the padding pixel (`layers.NORMALIZATIONS` mean: it
                      normalizes to zero)
  head_bn_epsilon     per layout, the BN epsilon of the DeepLabv3 head on top of it
  default_aspp_rates  output stride -> the head's atrous rates when none are given
  load_weights        ImageNet weights through keras.applications, where they exist
"""
import dataclasses
import re
from typing import Callable, Mapping, Optional, Tuple

# The family builder options of DeepLabV3 (its keyword arguments), each with the value
# that means "not given": a family that does not take an option sees it at this value.
OPTIONS = {
    "multi_grid": (1, 2, 4),
    "extra_blocks": 0,
    "stem": "7x7",
    "depths": None,
    "width_multiplier": 1.0,
    "depth_multiplier": 1.0,
}


def given(option, value):
    """Whether a family option is set to something other than "not given" (`OPTIONS`;
    depths None or ())."""
    neutral = OPTIONS[option]
    if value is None:
        return False
    if isinstance(value, (tuple, list)):
        return len(value) > 0 and tuple(value) != neutral
    return value != neutral


@dataclasses.dataclass(frozen=True)
class Backbone:
    """One backbone family.

    Args:
      family: its name ("resnet").
      names: the `backbone` values it answers to.
      build: `build(x, name, output_stride, layout=, bn_momentum=, sync_bn=, activation=,
        **options)` -> {endpoint name: tensor}, in order of depth; the head reads the last
        one. `x` is the normalized image; `options` are the family's `options`, at their
        values (`OPTIONS`' value when not given).
      options: the names of the `OPTIONS` it takes.
      normalization: {layout: `layers.NORMALIZATIONS` mode its weights expect}; its keys
        are the layouts the family can be built in.
      head_bn_epsilon: {layout: BN epsilon of the DeepLabv3 head}.
      default_aspp_rates: output stride -> the head's 3x3 atrous rates (() for none).
      load_weights: `load_weights(model, builder_args, weights)` -> names of the layers
        that received weights; `weights` is "imagenet" or a keras.applications weights
        file. None: the family has no such weights.
      pattern: a regular expression for more names, valid only with explicit `depths`
        (e.g. "resnet26" from an imported checkpoint).
      resolve: `resolve(name, options)` -> options with the family's defaults filled in
        (e.g. a ResNet's units per block from its name); stored in the model's config.
    """
    family: str
    names: Tuple[str, ...]
    build: Callable
    options: Tuple[str, ...]
    normalization: Mapping[str, str]
    head_bn_epsilon: Mapping[str, float]
    default_aspp_rates: Callable[[int], Tuple[int, ...]]
    load_weights: Optional[Callable] = None
    pattern: Optional[str] = None
    resolve: Optional[Callable] = None

    def answers_to(self, name, depths=None):
        if name in self.names:
            return True
        return bool(self.pattern and depths and re.fullmatch(self.pattern, name))

    def check_options(self, name, values):
        """`values`: {option: value} for options of `OPTIONS`. Raises a ValueError naming
        an option this family does not take that is set to anything but "not given"."""
        for option, value in values.items():
            if option not in self.options and given(option, value):
                takes = ", ".join(self.options) or f"none of {', '.join(OPTIONS)}"
                raise ValueError(f"{option}={value!r}: backbone {name!r} ({self.family}) "
                                 f"does not take {option}; it takes {takes}")

    def check_layout(self, name, layout):
        if layout not in self.normalization:
            raise ValueError(f"layout={layout!r}, expected one of "
                             f"{sorted(self.normalization)} for backbone {name!r}")
