"""Optional pieces are extras: `pip install .` leaves out tensorflow-datasets (~220 MB with
pyarrow), pycocotools and scipy; the quickstart's modules never import them; a converter
that needs a missing one fails with the extra to install, as users run it."""
import os
import runpy
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO
from deeplab_tf import extras

BIN = os.path.dirname(sys.executable)


@pytest.fixture(scope="module")
def setup_arguments():
    module = runpy.run_path(str(REPO / "setup.py"), run_name="setup_under_test")
    return module["arguments"](["tensorflow>=2.20,<2.22"])


def test_optional_packages_are_extras_not_requirements(setup_arguments):
    required = {r.split(">")[0].split("<")[0].split("=")[0] for r in
                setup_arguments["install_requires"]}
    extras_require = setup_arguments["extras_require"]
    for module, (distribution, extra) in extras.OPTIONAL.items():
        assert distribution not in required, distribution
        assert distribution in extras_require[extra], (module, extra)
        assert distribution in extras_require["test"]   # the suite never skips for it
    assert setup_arguments["license"] == "Apache-2.0"
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")


@pytest.fixture(scope="module")
def without_optional(tmp_path_factory):
    """A PYTHONPATH folder whose packages shadow the optional ones as if not installed."""
    root = tmp_path_factory.mktemp("without_optional")
    for module in extras.OPTIONAL:
        (root / module).mkdir()
        (root / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name='{module}')\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    return env


def test_quickstart_modules_do_not_import_optional_packages(without_optional):
    code = textwrap.dedent("""
        import sys
        import deeplab_tf.tools.train   # one tool per process: each defines its flags
        import deeplab_tf.eval_lib, deeplab_tf.export_lib, deeplab_tf.inference
        import deeplab_tf.data.synthetic, deeplab_tf.data.converters.folder
        try:
            import tensorflow_datasets
        except ModuleNotFoundError:
            print("shadowed")
        print(sorted(m for m in ("tensorflow_datasets", "pycocotools", "scipy")
                     if m in sys.modules))
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=without_optional, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.split() == ["shadowed", "[]"], run.stdout


@pytest.mark.parametrize("dataset,flags,extra", [
    ("tfds", ["--tfds_name=oxford_iiit_pet"], "tfds"),
    ("coco_voc", ["--root=coco"], "coco"),
])
def test_a_converter_names_the_extra_it_needs(without_optional, tmp_path, dataset, flags,
                                              extra):
    (tmp_path / "coco" / "annotations").mkdir(parents=True)
    (tmp_path / "coco" / "annotations" / "instances_train2017.json").write_text("{}")
    run = subprocess.run([os.path.join(BIN, "deeplab-build-data"), dataset, *flags,
                          "--output_dir=out"], capture_output=True, text=True,
                         env=without_optional, cwd=tmp_path, timeout=300)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert f'pip install "deeplab_tf[{extra}]"' in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
