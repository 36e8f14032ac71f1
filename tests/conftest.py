"""Shared test settings: quiet TensorFlow, the location of ../shared, tiny model options."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite runs on oneDNN's CPU kernels on every host (TensorFlow's default only on Intel
# CPUs; its Eigen kernels elsewhere): same kernels in CI everywhere, and the tiny test
# models train with native dilated gradients, whose graphs trace faster (on Eigen the suite
# took 19 min instead of 15.5). The Eigen training path, valid-tap atrous convolutions,
# is checked against the native one in tests/modeling/test_architecture.py. Child
# processes inherit the setting.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import deeplab_tf  # noqa: E402,F401  (before any TensorFlow import)

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
# CI clones the repository into another folder with a copy of shared/ beside it.
SHARED = REPO.parent / "shared"
VOC_SAMPLES = SHARED / "data" / "voc2012_samples"

# A tiny DeepLabv3 from the same code as the paper's: for fast tests.
TINY = dict(backbone="resnet_tiny", width_multiplier=0.125, aspp_filters=16)


@pytest.fixture
def tiny_kwargs():
    return dict(TINY)
