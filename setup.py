"""deeplab_tf: DeepLabv3 (Chen et al. 2017) in TensorFlow / Keras 3."""
import os
import re
import site
import sys
import sysconfig
from importlib import metadata

from setuptools import find_packages, setup

TENSORFLOW_VERSIONS = ">=2.20,<2.22"
# TensorFlow is published under several names that all install the `tensorflow` package:
# requiring `tensorflow` beside tensorflow-tpu (or -cpu, ...) makes pip install a second
# TensorFlow over it. First match wins ("tensorflow" comes with tensorflow-intel on Windows).
TENSORFLOW_BUILDS = ("tensorflow", "tensorflow-tpu", "tensorflow-cpu", "tensorflow-macos",
                     "tensorflow-aarch64", "tensorflow-rocm", "tensorflow-intel",
                     "intel-tensorflow", "tf-nightly", "tf-nightly-cpu", "tf-nightly-tpu")


def tensorflow_requirement(installed, override=None):
    """The TensorFlow requirement, as a list of at most one requirement string.

    override: the DEEPLAB_TENSORFLOW environment variable: a distribution name, optionally
    with extras ("tensorflow[and-cuda]") or its own version specifier; "" or "none": no
    TensorFlow requirement. Otherwise the TensorFlow build already installed in the target
    environment (`installed`: normalized distribution names), else `tensorflow`. Nightly
    builds are taken at any version.
    """
    if override is not None:
        override = override.strip()
        if override.lower() in ("", "none"):
            return []
        return [override if re.search(r"[<>=!~@ ;]", override)
                else override + TENSORFLOW_VERSIONS]
    name = next((n for n in TENSORFLOW_BUILDS if n in installed), "tensorflow")
    return [name if name.startswith("tf-nightly") else name + TENSORFLOW_VERSIONS]


def installed_distributions():
    """Normalized names of the distributions installed in the environment being installed
    into. Read from its site directories, not sys.path: under pip's build isolation sys.path
    holds the build environment, sysconfig and site still name the target's directories."""
    paths = {sysconfig.get_paths()[key] for key in ("purelib", "platlib")}
    paths.update(getattr(site, "getsitepackages", lambda: [])())
    if sys.prefix == sys.base_prefix:  # not a venv: `pip install --user` goes here
        paths.add(site.getusersitepackages())
    found = metadata.distributions(path=sorted(p for p in paths if os.path.isdir(p)))
    return {re.sub(r"[-_.]+", "-", d.metadata["Name"] or "").lower() for d in found}


def main():
    setup(**arguments(tensorflow_requirement(installed_distributions(),
                                             os.environ.get("DEEPLAB_TENSORFLOW"))))


def arguments(tensorflow):
    """setup()'s arguments; `tensorflow`: the list tensorflow_requirement() returns."""
    return dict(
        name="deeplab_tf",
        version="0.1.0",
        description="DeepLabv3 (Rethinking Atrous Convolution, Chen et al. 2017) in Keras 3 "
                    "on TensorFlow",
        long_description=open("README.md", encoding="utf-8").read(),
        long_description_content_type="text/markdown",
        license="Apache-2.0",
        license_files=["LICENSE"],
        classifiers=[
            "Development Status :: 4 - Beta",
            "Intended Audience :: Science/Research",
            "Intended Audience :: Developers",
            "Operating System :: OS Independent",
            "Programming Language :: Python :: 3",
            "Programming Language :: Python :: 3.11",
            "Topic :: Scientific/Engineering :: Artificial Intelligence",
            "Topic :: Scientific/Engineering :: Image Recognition",
        ],
        keywords="deeplab deeplabv3 semantic-segmentation atrous-convolution aspp tensorflow keras",
        python_requires=">=3.10",
        packages=find_packages(include=["deeplab_tf", "deeplab_tf.*", "experiments"]),
        install_requires=tensorflow + [
            "keras>=3.10,<4",
            "numpy",
            "absl-py",
            "pillow",
            "tensorboard",
            "matplotlib",
            # deeplab-train --config_file=*.yaml (yaml.safe_load; ~0.7 MB, no dependencies).
            "pyyaml",
        ],
        extras_require={
            # Everything the test suite needs, so that no test skips for a missing package.
            "test": ["pytest>=8", "pytest-xdist>=3.5", "scipy", "pycocotools",
                     "tensorflow-datasets"],
            # `deeplab-build-data tfds` (TensorFlow Datasets, ~220 MB with pyarrow).
            "tfds": ["tensorflow-datasets"],
            # COCO conversion (`deeplab-build-data coco_voc`).
            "coco": ["pycocotools"],
            # SBD conversion reads MATLAB .mat files.
            "sbd": ["scipy"],
            # Model Garden, for the cross-check tests (tests/garden). It pins
            # tensorflow~=2.20 and builds tf_keras (Keras 2) models: install it in its own venv.
            "garden": ["tf-models-official==2.20.0"],
        },
        entry_points={
            "console_scripts": [
                "deeplab-fig4=deeplab_tf.tools.fig4:run",
                "deeplab-summary=deeplab_tf.tools.summary:run",
                "deeplab-build-data=deeplab_tf.tools.build_data:run",
                "deeplab-inspect-data=deeplab_tf.tools.inspect_data:run",
                "deeplab-train=deeplab_tf.tools.train:run",
                "deeplab-eval=deeplab_tf.tools.evaluate:run",
                "deeplab-export=deeplab_tf.tools.export:run",
                "deeplab-predict=deeplab_tf.tools.predict:run",
                "deeplab-convert-checkpoint=deeplab_tf.tools.convert_checkpoint:run",
                "deeplab-launch=deeplab_tf.tools.launch:run",
            ]
        },
    )


# setuptools' build backend, pip and `python setup.py` all run this file as __main__; the
# tests import it to check the requirement logic.
if __name__ == "__main__":
    main()
