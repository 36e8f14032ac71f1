"""bench/run_all.py needs the peers' scripts, which a clone does not have: without them it
stops at once (exit status 1, no traceback, nothing written), naming --peers_dir and the
scripts it needs; with --only ours it needs only the lower bound's ceiling_tf.py."""
import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO

from .files import assert_refused

RUN_ALL = REPO / "bench" / "run_all.py"


def _run(script, cwd, *flags):
    return subprocess.run([sys.executable, str(script), *flags], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_missing_peers_dir_is_named(tmp_path, ledger):
    ledger.injected()
    empty = tmp_path / "peers"
    empty.mkdir()
    out = tmp_path / "results"
    run = _run(RUN_ALL, tmp_path, f"--peers_dir={empty}", f"--output_dir={out}")
    assert_refused(run, f"--peers_dir={empty} lacks", "garden_deeplabv3.py",
                   "ceiling_tf.py", "not part of this repository", "--peers_dir=FOLDER")
    assert not out.exists()
    ledger.survived()


def test_a_clone_without_shared_peers_says_so(tmp_path, ledger):
    """The default, ../shared/peers beside the clone, absent: the message names the flag."""
    ledger.injected()
    clone = tmp_path / "clone" / "bench"
    clone.mkdir(parents=True)
    shutil.copy(RUN_ALL, clone / "run_all.py")
    run = _run(clone / "run_all.py", tmp_path, "--only", "ours",
               f"--output_dir={tmp_path / 'results'}")
    default = os.path.normpath(tmp_path / "shared" / "peers")
    assert_refused(run, f"no --peers_dir given, and the default {default} lacks ceiling_tf.py",
                   "pass --peers_dir=FOLDER")
    assert sorted(os.listdir(tmp_path)) == ["clone"]
    ledger.survived()


def test_only_ours_needs_only_the_ceiling_script(tmp_path, ledger):
    ledger.inputs(2)
    spec = importlib.util.spec_from_file_location("run_all", RUN_ALL)
    run_all = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(run_all)
    (tmp_path / "ceiling_tf.py").write_text("")
    assert run_all.check_peers_dir(str(tmp_path), "ours") == str(tmp_path)
    with pytest.raises(SystemExit, match="lacks garden_deeplabv3.py, torchvision_deeplabv3.py"):
        run_all.check_peers_dir(str(tmp_path), "all")
