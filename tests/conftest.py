"""Shared test settings: quiet TensorFlow, the location of ../shared, tiny model options."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
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
