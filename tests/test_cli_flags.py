"""One name per idea across the console scripts: a flag that several tools take is defined
once (deeplab_tf/tools/shared_flags.py), and a renamed flag's old name still works, from the
installed console script, with a warning naming the new one."""
import importlib.metadata
import json
import os
import subprocess
import sys

import pytest

from deeplab_tf.tools.shared_flags import RENAMED

BIN = os.path.dirname(sys.executable)   # the console scripts, as users type them
SHARED = "deeplab_tf.tools.shared_flags"
TOOLS = sorted((ep.name, ep.value.split(":")[0]) for ep in importlib.metadata.entry_points(
    group="console_scripts") if ep.value.startswith("deeplab_tf."))

# In its own process (tools define flags globally): a tool's flags as run_main sets them
# up, each with the module that defines it and, for an alias, the flag it stands for.
INTROSPECT = """
import importlib, json, sys
from absl import flags
from deeplab_tf.tools import shared_flags
importlib.import_module(sys.argv[1])
shared_flags.define_renamed(sys.argv[1])
out = {}
for module, defined in flags.FLAGS.flags_by_module_dict().items():
    if not module.startswith("absl."):
        for f in defined:
            out[f.name] = {"module": module, "help": f.help}
print(json.dumps(out))
"""
# Names that two tools use for two different ideas, so one tool's old name may be another
# tool's flag: convert's old --output_dir wrote a model_dir (elsewhere --output_dir is
# where a tool's results go); summary's old --size was the input size (fig4's --size is
# the side of its feature map).
OTHER_IDEAS = {"output_dir", "size"}


@pytest.fixture(scope="module")
def tool_flags():
    found = {}
    for name, module in TOOLS:
        run = subprocess.run([sys.executable, "-c", INTROSPECT, module], capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr[-2000:]
        found[name] = (module, json.loads(run.stdout.strip().splitlines()[-1]))
    return found


def _old_names(module):
    return set(RENAMED.get(module, {}))


def test_a_flag_of_several_tools_is_defined_once(tool_flags):
    users = {}
    for tool, (module, defined) in tool_flags.items():
        for flag, info in defined.items():
            if flag not in _old_names(module):
                users.setdefault(flag, []).append((tool, info["module"]))
    shared = {flag: tools for flag, tools in users.items() if len(tools) > 1}
    assert {"model_dir", "output_stride", "inference_scales", "mixed_precision"} <= set(shared)
    strays = {flag: [t for t, m in tools if m != SHARED] for flag, tools in shared.items()}
    assert not {f: t for f, t in strays.items() if t}, (
        f"flags of several tools defined outside {SHARED}: {strays}")


def test_old_names_are_only_aliases(tool_flags):
    renamed = {old: new for names in RENAMED.values() for old, new in names.items()}
    for tool, (module, defined) in tool_flags.items():
        for old, new in RENAMED.get(module, {}).items():
            assert new in defined and defined[new]["module"] in (SHARED, module), (tool, new)
            assert defined[old]["module"] == SHARED, (tool, old)
            assert defined[old]["help"].startswith(f"Deprecated: use --{new}"), (tool, old)
        # An old name is no tool's flag of its own (for the same idea): one name per idea.
        own = set(defined) - _old_names(module)
        clash = (own & set(renamed)) - OTHER_IDEAS
        assert not clash, f"{tool} defines {clash}, the old names of {[renamed[c] for c in clash]}"


def _run(script, *args, cwd=None):
    return subprocess.run([os.path.join(BIN, script), *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd)


def _warned(run, old, new):
    return (f"--{old} is deprecated and goes in the next release: use --{new}"
            in run.stderr)


def test_renamed_flags_of_eval_reach_the_new_flags(tmp_path):
    # A good value: the warning, then the run goes on (to the missing model_dir).
    run = _run("deeplab-eval", f"--model_dir={tmp_path / 'none'}", "--eval_output_stride=8",
               "--eval_scales=1.0,1.5")
    assert _warned(run, "eval_output_stride", "output_stride"), run.stderr[-2000:]
    assert _warned(run, "eval_scales", "inference_scales")
    assert "Traceback" not in run.stderr
    # A bad value is checked as the new flag's: the old name reaches it.
    run = _run("deeplab-eval", "--model_dir=run", "--eval_output_stride=12")
    assert run.returncode != 0 and "--output_stride=12: expected one of (8, 16" in run.stderr
    run = _run("deeplab-eval", "--model_dir=run", "--eval_scales=0")
    assert "--inference_scales=['0']: expected positive numbers" in run.stderr
    # Both names at once: which one is meant is unclear, an error.
    run = _run("deeplab-eval", "--model_dir=run", "--eval_output_stride=8",
               "--output_stride=16")
    assert run.returncode != 0
    assert "--eval_output_stride and --output_stride are one flag" in run.stderr


def test_renamed_flag_of_summary_works(tmp_path):
    run = _run("deeplab-summary", "--backbone=resnet_tiny", "--width_multiplier=0.125",
               "--aspp_filters=16", "--size=65x97")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "65x97" in run.stdout and _warned(run, "size", "input_size")


def test_renamed_flag_of_convert_works(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("the user's work")
    run = _run("deeplab-convert-checkpoint", "--source=slim", "--checkpoint=ckpt",
               "--output_dir=mine", cwd=tmp_path)
    assert _warned(run, "output_dir", "model_dir"), run.stderr[-2000:]
    assert "mine exists" in run.stderr   # the value went to --model_dir
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "the user's work"


def test_renamed_flag_of_predict_works(tmp_path):
    import numpy as np
    from PIL import Image

    from deeplab_tf.testing import tiny_model_dir as make_model_dir
    make_model_dir(tmp_path / "run")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "photo.png")
    run = _run("deeplab-predict", f"--model={tmp_path / 'run'}",
               f"--input={tmp_path / 'photo.png'}", f"--output_dir={tmp_path / 'out'}",
               "--outputs=label")
    assert run.returncode == 0, run.stderr[-2000:]
    assert _warned(run, "model", "model_dir")
    assert os.listdir(tmp_path / "out") == ["photo_label.png"]


def test_every_renamed_flag_is_tested():
    tested = {("deeplab_tf.tools.evaluate", "eval_output_stride"),
              ("deeplab_tf.tools.evaluate", "eval_scales"),
              ("deeplab_tf.tools.summary", "size"),
              ("deeplab_tf.tools.convert_checkpoint", "output_dir"),
              ("deeplab_tf.tools.predict", "model")}
    assert {(m, old) for m, names in RENAMED.items() for old in names} == tested
