"""Shared test settings: quiet TensorFlow, the location of ../shared, the tiny model options
as a fixture (the tiny models themselves: deeplab_tf.testing), and how pytest-xdist shares
the tests between its two workers (pytest.ini: -n 2)."""
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The suite runs on oneDNN's CPU kernels on every host (TensorFlow's default only on CPUs
# with AVX512_VNNI/AVX512_BF16/AVX_VNNI/AMX; its Eigen kernels on AVX2-only CPUs, see
# deeplab_tf/__init__.py): same kernels in CI everywhere, and the tiny test models train
# with native dilated gradients, whose graphs trace faster (on Eigen the suite took 19 min
# instead of 15.5). The Eigen training path, valid-tap atrous convolutions, is checked
# against the native one in tests/modeling/test_architecture.py and test_atrous_memory.py.
# Child processes inherit the setting.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
import deeplab_tf  # noqa: E402,F401  (before any TensorFlow import)

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
# CI clones the repository into another folder with a copy of shared/ beside it.
SHARED = REPO.parent / "shared"
VOC_SAMPLES = SHARED / "data" / "voc2012_samples"

from deeplab_tf.testing import TINY  # noqa: E402


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds (Python, NumPy, Keras' weight initialisers),
    whichever worker runs it and after whatever test: a model's random weights are the
    same in every run, so a comparison between two computations either passes or fails,
    not one run in ten (some initialisations amplify float32 rounding many-fold)."""
    import keras
    keras.utils.set_random_seed(0)


@pytest.fixture
def tiny_kwargs():
    return dict(TINY)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope with one scope per test file, and one for all of tests/reliability:
    module-scoped fixtures (an exported SavedModel, a written dataset) are built once, and
    the reliability tests' child-process streams and fault ledger are per session
    (tests/reliability/conftest.py). (xdist's own loadgroup marks do not reach its
    scheduler under pytest 9.2.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class FileScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            path = nodeid.split("::", 1)[0]
            return "tests/reliability" if path.startswith("tests/reliability/") else path

    return FileScheduling(config, log)


_WORKER_LINES = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """Collects the summary lines xdist workers hand back (the reliability ledger)."""
    _WORKER_LINES.extend(getattr(node, "workeroutput", {}).get("summary_lines", []))


def pytest_terminal_summary(terminalreporter):
    for line in _WORKER_LINES:
        terminalreporter.write_line(line)
