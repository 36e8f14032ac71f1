"""Experiment presets: runnable documentation of the paper's settings.

Pick one with `deeplab-train --experiment=NAME` or `NAME.VARIANT` (e.g.
`table1_output_stride.os8`). Each module has `get_config(variant=None)`; modules with
variants list them in `VARIANTS`. No registry: the name is the module name. Experiments
kept elsewhere (your own repository) are files of the same form, given by path:
`--experiment=PATH.py` or `PATH.py:VARIANT` (deeplab_tf/config_sources.py).
"""
import importlib
import pkgutil

from deeplab_tf.config_sources import config_of_module
from deeplab_tf.configs import ConfigError


def names():
    """Every experiment (and variant) name."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.append(info.name)
        found += [f"{info.name}.{v}" for v in getattr(module, "VARIANTS", {})]
    return sorted(found)


def get_config(name):
    """The ExperimentConfig of "module" or "module.variant"."""
    module_name, _, variant = name.partition(".")
    available = [i.name for i in pkgutil.iter_modules(__path__) if not i.name.startswith("_")]
    if module_name not in available:
        raise ConfigError(f"unknown experiment {name!r}; available: {', '.join(names())}; "
                          f"or your own Python file, PATH.py or PATH.py:VARIANT")
    module = importlib.import_module(f"{__name__}.{module_name}")
    if variant and not hasattr(module, "VARIANTS"):
        raise ConfigError(f"experiment {module_name} has no variant {variant!r}; available: none")
    # The checks a user's experiment file gets too (variant, an ExperimentConfig, ranges).
    return config_of_module(module, variant or None, where=f"experiment {module_name}")
