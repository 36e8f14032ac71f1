"""Optional dependencies: which extra of `pip install "deeplab_tf[EXTRA]"` brings which
module, in one table, and the error that names it when one is missing."""
import importlib

# module -> (distribution, extra). setup.py's extras_require lists the same distributions.
OPTIONAL = {
    "tensorflow_datasets": ("tensorflow-datasets", "tfds"),
    "pycocotools": ("pycocotools", "coco"),
    "scipy": ("scipy", "sbd"),
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


def require(module, purpose):
    """Imports `module` (a key of OPTIONAL or one of its submodules) for `purpose`
    (e.g. "deeplab-build-data tfds"), or raises MissingExtraError naming the extra."""
    top = module.split(".")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name is None or e.name.split(".")[0] != top:
            raise   # the package is there but something it imports is not: TF's own error
        distribution, extra = OPTIONAL[top]
        raise MissingExtraError(
            f"{purpose} needs {distribution}, which is not installed: "
            f"pip install \"deeplab_tf[{extra}]\" (or pip install {distribution})") from None
