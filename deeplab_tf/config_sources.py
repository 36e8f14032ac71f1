"""Where a run's config comes from, applied in this order:

1. the experiment: a preset of experiments/ by name (`voc_r101_os16_aspp`,
   `table1_output_stride.os8`), or a Python file of the user's own, outside this package,
   defining `get_config(variant=None)` as the presets do (`PATH.py` or `PATH.py:VARIANT`);
2. a config file, JSON (.json) or YAML (.yaml, .yml), with the schema of the config.json a
   run writes into its model_dir: any subset of its sections and keys, applied on top of
   the experiment (a whole config.json replaces it: a run re-runs from its config.json);
3. the typed overrides ("train.steps=100,...", `configs.apply_overrides`).

    deeplab-train --experiment=../my_repo/city.py:small --config_file=tweaks.yaml \\
        --params_override=train.steps=100 --model_dir=runs/city

Every value goes through the same typed checks (`configs.from_dict`, never evaluated as
code; YAML through `yaml.safe_load`): a bad key or value is a ConfigError naming the file,
the key, the value and what was expected. A user's experiment file is Python, run as the
presets are; its own exceptions keep their traceback, which points into the user's code.
"""
import contextlib
import importlib.util
import json
import os
import re
import sys

from deeplab_tf import configs, fileio
from deeplab_tf.configs import ConfigError

JSON_SUFFIXES = (".json",)
YAML_SUFFIXES = (".yaml", ".yml")
_PYTHON_FILE = re.compile(r"^(?P<path>.+\.py)(?::(?P<variant>[^:/]*))?$")


def resolve(experiment, config_file=None, overrides=""):
    """The effective ExperimentConfig: `experiment` (a preset name or PATH.py[:VARIANT]),
    then `config_file` (JSON or YAML) if given, then `overrides`."""
    config = experiment_config(experiment)
    if config_file:
        config = apply_config_file(config, config_file)
    return configs.apply_overrides(config, overrides)


# ----------------------------------------------------------------------------- experiments

def is_experiment_file(experiment):
    """Whether `experiment` names a Python file (PATH.py or PATH.py:VARIANT), not a preset."""
    return _PYTHON_FILE.match(experiment) is not None


def experiment_config(experiment):
    """The ExperimentConfig of a preset name or of a user's PATH.py[:VARIANT]."""
    # The presets' package, imported before a user's folder goes on sys.path: a package of
    # the same name in the user's repository does not hide them.
    import experiments
    if not is_experiment_file(experiment):
        return experiments.get_config(experiment)
    match = _PYTHON_FILE.match(experiment)
    path, variant = match.group("path"), match.group("variant") or None
    source = _read(path, "experiment file")
    # The file's folder comes first on sys.path while it runs, as for `python FILE`, for
    # its sibling modules (a shared base config), imported at the top or in get_config.
    with _importable(fileio.dirname(path) if fileio.is_local(path) else None):
        return config_of_module(_module(path, source), variant, where=path)


def config_of_module(module, variant, where):
    """`module.get_config(variant)`, checked: the variant is one of VARIANTS (if the
    module lists them) and the result an ExperimentConfig. `where` names the module."""
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"{where} defines no get_config(); an experiment defines "
                          f"get_config(variant=None) returning a deeplab_tf.configs."
                          f"ExperimentConfig, as the presets in experiments/ do")
    variants = getattr(module, "VARIANTS", None)
    if variant and variants is not None and variant not in variants:
        raise ConfigError(f"{where} has no variant {variant!r}; available: "
                          f"{', '.join(variants) or 'none'}")
    try:
        config = get_config(variant) if variant else get_config()
    except ConfigError as e:   # e.g. a derive() out of range: name the file too
        raise ConfigError(f"{where}: {e}") from None
    if not isinstance(config, configs.ExperimentConfig):
        raise ConfigError(f"{where}: get_config() returned {type(config).__name__}, "
                          f"expected a deeplab_tf.configs.ExperimentConfig")
    return configs.validate(config)


def _module(path, source):
    """A user's experiment file run as a module, named after the file and registered in
    sys.modules as an import would (dataclasses defined there need it)."""
    name = "deeplab_user_experiment_" + re.sub(r"\W", "_", fileio.stem(path))
    spec = importlib.util.spec_from_loader(name, loader=None, origin=path)
    module = importlib.util.module_from_spec(spec)
    module.__file__ = path
    try:
        code = compile(source, path, "exec")
    except SyntaxError as e:
        raise ConfigError(f"{path}: line {e.lineno}: {e.msg} (a Python experiment file)") \
            from None
    sys.modules[name] = module
    exec(code, module.__dict__)   # the user's own code, as for a preset module
    return module


@contextlib.contextmanager
def _importable(folder):
    if folder is None:
        yield
        return
    folder = fileio.absolute(folder or ".")
    sys.path.insert(0, folder)
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


# ----------------------------------------------------------------------------- config files

def read_config_file(path):
    """The mapping in a JSON (.json) or YAML (.yaml, .yml) config file."""
    lower = os.fspath(path).lower()
    if not lower.endswith(JSON_SUFFIXES + YAML_SUFFIXES):
        raise ConfigError(f"{path}: expected a .json, .yaml or .yml config file")
    text = _read(path, "config file")
    if lower.endswith(JSON_SUFFIXES):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON: line {e.lineno} column {e.colno}: "
                              f"{e.msg}") from None
    else:
        import yaml   # PyYAML; safe_load builds plain values only, never objects or code
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ("
                          f"{', '.join(configs.to_dict(configs.ExperimentConfig()))}), got "
                          f"{type(data).__name__}")
    return data


def apply_config_file(config, path):
    """`config` with the sections and keys in the file at `path` replaced."""
    merged = _merge(configs.to_dict(config), read_config_file(path))
    try:
        return configs.from_dict(merged)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def _merge(base, update):
    """`base` (a nested dict) with `update`'s values; nested mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            value = _merge(merged[key], value)
        merged[key] = value
    return merged


def _read(path, what):
    """The text of a user's file; a missing or unreadable one is a ConfigError naming it."""
    if not fileio.is_local(path) and not fileio.isfile(path):
        raise ConfigError(f"{path}: no such {what}")
    try:
        return fileio.read_text(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such {what}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the {what} ({e.strerror or e})") from None
