"""Every console script's --help is complete: its description and every flag its parser
accepts (also those defined outside the tool's module, like --mixed_precision), when run as
the installed console script (whose __main__ is setuptools' wrapper)."""
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

SCRIPTS = sorted((ep.name, ep.value) for ep in importlib.metadata.entry_points(
    group="console_scripts") if ep.value.startswith("deeplab_tf."))

# Tools define flags globally: in its own process, import a tool and read every flag the
# parser then accepts, wherever it was defined, except absl's own (--helpfull lists those).
INTROSPECT = """
import importlib, json, sys
from absl import flags
module = importlib.import_module(sys.argv[1])
accepted = sorted({f.name for m, defined in flags.FLAGS.flags_by_module_dict().items()
                   if not m.startswith("absl.") for f in defined})
print(json.dumps({"flags": accepted, "doc": module.__doc__}))
"""


def test_all_tools_are_installed():
    names = {name for name, _ in SCRIPTS}
    assert {"deeplab-train", "deeplab-eval", "deeplab-export", "deeplab-predict",
            "deeplab-build-data", "deeplab-inspect-data", "deeplab-fig4",
            "deeplab-summary", "deeplab-convert-checkpoint"} <= names


@pytest.mark.parametrize("name,target", SCRIPTS)
def test_help_lists_every_flag(name, target):
    module_name = target.split(":")[0]
    info = subprocess.run([sys.executable, "-c", INTROSPECT, module_name], capture_output=True,
                          text=True, timeout=120)
    assert info.returncode == 0, info.stderr[-2000:]
    info = json.loads(info.stdout.strip().splitlines()[-1])
    assert info["flags"], f"{module_name} defines no flags"
    # The installed script sits next to the interpreter (the venv's bin/).
    script = os.path.join(os.path.dirname(sys.executable), name)
    assert os.path.exists(script), f"{script} missing: install the package (pip install .)"
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    # absl's --help exits with status 1 after printing the usage.
    assert result.returncode in (0, 1) and "Traceback" not in result.stderr, result.stderr
    text = result.stdout + result.stderr
    missing = sorted(f for f in info["flags"] if f"--{f}" not in text and f"--[no]{f}" not in text)
    assert not missing, f"{name} --help lacks {missing}"
    assert info["doc"].strip().splitlines()[0].split(":")[0] in text
