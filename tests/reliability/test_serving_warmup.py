"""The export's TF Serving warmup requests live in its own folder (assets.extra/): an earlier
export of ours, warmup included, is replaced with --overwrite; an export whose assets.extra
holds a file of the user's (their own warmup requests, a vocabulary) is refused before any
work, every file left byte for byte."""
import os
import subprocess
import sys

import pytest

from deeplab_tf.testing import tiny_model_dir as make_model_dir

from .files import assert_refused, snapshot

BIN = os.path.dirname(sys.executable)   # the console scripts, as users type them
WARMUP = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _export(workdir, *flags):
    return subprocess.run([os.path.join(BIN, "deeplab-export"), "--model_dir=run",
                           "--export_dir=export/1", "--output_stride=16", *flags],
                          capture_output=True, text=True, timeout=300, cwd=workdir)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("warmup_safety")
    make_model_dir(root / "run")
    run = _export(root)
    assert run.returncode == 0, run.stderr[-3000:]
    return root


def test_overwrite_replaces_our_own_warmup(workdir, ledger):
    ledger.inputs()
    first = (workdir / "export" / "1" / WARMUP).read_bytes()
    run = _export(workdir, "--overwrite")
    assert run.returncode == 0, run.stderr[-3000:]
    assert (workdir / "export" / "1" / WARMUP).read_bytes() == first   # deterministic
    assert sorted(os.listdir(workdir / "export")) == ["1"]   # no staging left beside it


def test_overwrite_refuses_an_assets_extra_with_the_users_files(workdir, ledger):
    ledger.injected()
    (workdir / "export" / "1" / "assets.extra" / "my_requests").write_bytes(b"the user's")
    before = snapshot(workdir)
    run = _export(workdir, "--overwrite")
    assert_refused(run, "assets.extra holds my_requests", "refusing to replace it")
    after = snapshot(workdir)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert after == before
    ledger.survived()
