"""setup.py requires the TensorFlow build already installed (tensorflow-tpu, -cpu, ...), so
that pip does not install `tensorflow` over it; DEEPLAB_TENSORFLOW overrides the choice."""
import json
import os
import runpy
import subprocess
import sys
import sysconfig

import pytest

import deploy_commands as commands

SETUP = os.path.join(commands.ROOT, "setup.py")
RANGE = ">=2.20,<2.22"


@pytest.fixture(scope="module")
def setup_module():
    return runpy.run_path(SETUP, run_name="setup_under_test")  # setup() runs as __main__ only


@pytest.mark.parametrize("installed,expected", [
    (set(), ["tensorflow" + RANGE]),
    ({"numpy"}, ["tensorflow" + RANGE]),
    ({"tensorflow-tpu", "libtpu"}, ["tensorflow-tpu" + RANGE]),
    ({"tensorflow-cpu"}, ["tensorflow-cpu" + RANGE]),
    ({"tensorflow", "tensorflow-intel"}, ["tensorflow" + RANGE]),   # Windows' pair
    ({"tf-nightly"}, ["tf-nightly"]),
    ({"tensorflow-macos"}, ["tensorflow-macos" + RANGE]),
])
def test_the_installed_build_is_required(setup_module, installed, expected):
    assert setup_module["tensorflow_requirement"](installed) == expected


@pytest.mark.parametrize("override,expected", [
    ("tensorflow[and-cuda]", ["tensorflow[and-cuda]" + RANGE]),   # deploy/Dockerfile, GPU
    ("tensorflow", ["tensorflow" + RANGE]),
    ("tensorflow-tpu==2.20.0", ["tensorflow-tpu==2.20.0"]),
    ("", []),
    ("none", []),
])
def test_override(setup_module, override, expected):
    assert setup_module["tensorflow_requirement"]({"tensorflow-tpu"}, override) == expected


def test_this_environment_is_seen(setup_module):
    """Independent check: importlib.metadata finds tensorflow here, so does setup.py."""
    import importlib.metadata
    assert importlib.metadata.version("tensorflow")
    assert "tensorflow" in setup_module["installed_distributions"]()


# Runs setup.py as pip's build backend does (as __main__), with setup() replaced by a
# printer of its install_requires.
PRINT_REQUIREMENTS = """
import json, runpy, setuptools
setuptools.setup = lambda **kw: print(json.dumps(kw["install_requires"]))
runpy.run_path("setup.py", run_name="__main__")
"""


@pytest.mark.parametrize("planted,expected", [
    ("tensorflow_tpu-2.20.0", "tensorflow-tpu" + RANGE), (None, "tensorflow" + RANGE)])
def test_target_environment_seen_through_an_isolated_build(tmp_path, planted, expected):
    """A fresh venv as the target, holding only a planted tensorflow-tpu distribution; the
    build tools (setuptools) and a `tensorflow` come from PYTHONPATH, as pip's isolated
    build environment puts them on sys.path. setup.py must look at the target."""
    venv = tmp_path / "target"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = str(venv / "bin" / "python")
    site = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()"
                           "['purelib'])"], capture_output=True, text=True, check=True).stdout
    if planted:
        info = os.path.join(site.strip(), f"{planted}.dist-info")
        os.makedirs(info)
        name, version = planted.split("-")
        with open(os.path.join(info, "METADATA"), "w") as f:
            f.write(f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\n"
                    f"Version: {version}\n")
    env = dict(os.environ, PYTHONPATH=sysconfig.get_paths()["purelib"], PYTHONNOUSERSITE="1")
    env.pop("DEEPLAB_TENSORFLOW", None)
    result = subprocess.run([python, "-c", PRINT_REQUIREMENTS], cwd=commands.ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    requires = json.loads(result.stdout.strip().splitlines()[-1])
    assert [r for r in requires if "tensorflow" in r and "datasets" not in r] == [expected]
