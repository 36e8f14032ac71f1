"""Every README command is accounted for (readme.PLAN), the ones that need hardware we do
not have are parsed by their tools' own flag parsers, and the README's Python API example
runs (offline: ImageNet weights are not downloaded)."""
import pathlib
import re

import numpy as np
import pytest

from . import readme

TEST_DIR = pathlib.Path(__file__).parent


def test_every_readme_command_is_planned():
    commands = readme.commands()
    planned = [command for command, _ in readme.PLAN.values()]
    assert [c for c in commands if c not in planned] == [], "README commands not in readme.PLAN"
    assert [c for c in planned if c not in commands] == [], "readme.PLAN commands not in README"


@pytest.mark.parametrize("key", sorted(readme.PLAN))
def test_each_plan_entry_names_where_it_is_proven(key):
    command, how = readme.PLAN[key]
    kind = how.split(":")[0]
    assert kind in ("run", "parse", "ci", "not run (needs Docker and the network)"), how
    if kind == "run":
        where = how.split(":")[1].strip()
        test_file = readme.REPO / where if where.startswith("tests/") else TEST_DIR / where
        source = test_file.read_text()
        assert f'command("{key}")' in source, f"{test_file.name} does not run {key}"
    if kind == "ci":
        ci = (readme.REPO / ".ci" / "run").read_text()
        assert "pip install \".[test]\"" in ci and "pytest -q" in ci
        for path in re.findall(r"tests/\S+\.py", how):
            assert f'command("{key}")' in (readme.REPO / path).read_text(), (key, path)


def _parse(argv):
    """Parses `argv` (a console script and its flags) with that tool's own flags; returns
    the arguments left over (the console script's name)."""
    from importlib.metadata import entry_points

    import tools_in_process   # tests/ is on sys.path (pytest's rootdir package)
    from absl import flags
    (script,) = entry_points(group="console_scripts", name=argv[0])
    tools_in_process.load_tool(script.module.removeprefix("deeplab_tf.tools."))
    try:
        flags.FLAGS.unparse_flags()
        return flags.FLAGS(argv)
    finally:
        flags.FLAGS.unparse_flags()


@pytest.mark.parametrize("key", ["train_tpu", "launch"])
def test_commands_for_other_hardware_parse(key):
    import shlex
    argv = shlex.split(readme.command(key))
    if argv[0] == "deeplab-launch":
        assert _parse(argv[:argv.index("--")]) == ["deeplab-launch"]
        argv = argv[argv.index("--") + 1:]
    assert _parse(argv) == [argv[0]]


def test_python_api_example_runs():
    """The README's model-building example, run with backbone_weights=None (offline); the
    model at output stride 8 has the same weights and stride-8 features."""
    code = readme.python_block("from deeplab_tf.modeling import build_deeplabv3")
    assert 'backbone_weights="imagenet"' in code
    namespace = {}
    exec(compile(code.replace('backbone_weights="imagenet"', "backbone_weights=None"),
                 "README.md", "exec"), namespace)
    model, model_os8 = namespace["model"], namespace["model_os8"]
    for a, b in zip(model.get_weights(), model_os8.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert model.builder_args["output_stride"] == 16
    assert model_os8.builder_args["output_stride"] == 8


# Every README Python example, by its first line, and the test that runs it.
PYTHON = {
    "from deeplab_tf.inference import Segmenter": "tests/readme/test_quickstart_path.py",
    "import base64, json, urllib.request": "tests/test_export.py",
    "from deeplab_tf.modeling import build_deeplabv3, set_output_stride":
        "tests/readme/test_readme_plan.py",
    "import keras": "tests/training/test_fit.py",
}


def test_every_python_example_is_run():
    firsts = [block.splitlines()[0] for block in readme.python_blocks()]
    assert sorted(firsts) == sorted(PYTHON)
    for first, path in PYTHON.items():
        source = (readme.REPO / path).read_text()
        assert first.split(",")[0] in source or "README" in source, (first, path)
