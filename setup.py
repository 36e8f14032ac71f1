"""deeplab_tf: DeepLabv3 (Chen et al. 2017) in TensorFlow / Keras 3."""
from setuptools import find_packages, setup

setup(
    name="deeplab_tf",
    version="0.1.0",
    description="DeepLabv3 (Rethinking Atrous Convolution, Chen et al. 2017) in Keras 3 on TensorFlow",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["deeplab_tf", "deeplab_tf.*", "experiments"]),
    install_requires=[
        "tensorflow>=2.20,<2.22",
        "keras>=3.10,<4",
        "numpy",
        "absl-py",
        "pillow",
        "tensorflow-datasets",
        "tensorboard",
        "matplotlib",
    ],
    extras_require={
        # Everything the test suite needs, so that no test skips for a missing package.
        "test": ["pytest>=8", "pytest-xdist>=3.5", "scipy", "pycocotools"],
        # COCO conversion (`deeplab-build-data coco_voc`).
        "coco": ["pycocotools"],
        # SBD conversion reads MATLAB .mat files.
        "sbd": ["scipy"],
        # Model Garden, for the cross-check tests (tests/garden). It pins tensorflow~=2.20
        # and builds tf_keras (Keras 2) models: install it in its own venv.
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
        ]
    },
)
