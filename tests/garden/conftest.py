"""tests/garden: cross-checks against Model Garden (tf-models-official), which pins its own
TensorFlow and builds tf_keras models, so it lives in its own venv:

    python3.11 -m venv .ci/venv-garden && .ci/venv-garden/bin/pip install ".[garden,test]"
    .ci/venv-garden/bin/pytest -q tests/garden

The main `pytest -q` leaves this folder out (pytest.ini --ignore); run explicitly without
tf-models-official, these tests fail at import: they never skip.
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import deeplab_tf  # noqa: E402,F401  (before any TensorFlow import)

try:
    import official.vision  # noqa: E402,F401
except ImportError as e:
    raise ImportError("tests/garden needs tf-models-official: pip install '.[garden,test]' "
                      "in a venv of its own (see .ci/run)") from e
