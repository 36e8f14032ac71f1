"""Runs deeplab_tf's command-line tools in this process, as their console scripts would
(absl parses the argv, then the tool's main runs), for tests on TF's in-memory ram://
filesystem: it lives in one process, so a subprocess cannot see it. The console scripts
themselves are tested in subprocesses elsewhere (tests/test_cli_help.py,
tests/training/test_train_cli.py, tests/readme/)."""
import importlib
import sys

from absl import app, flags

def load_tool(name):
    """The module deeplab_tf.tools.NAME imported afresh, its flags defined (and no other
    tool's: several tools define the same names)."""
    FLAGS = flags.FLAGS
    by_module = {m: list(f) for m, f in FLAGS.flags_by_module_dict().items()}
    for module, defined in by_module.items():
        if module.startswith("deeplab_tf.tools"):
            for flag in defined:
                if flag.name in FLAGS:
                    delattr(FLAGS, flag.name)
    for module in [m for m in sys.modules if m.startswith("deeplab_tf.tools.")]:
        del sys.modules[module]
    return importlib.import_module(f"deeplab_tf.tools.{name}")


def run_tool(name, *args):
    """`deeplab-NAME args...` in-process; returns the exit status (0, or SystemExit's)."""
    FLAGS = flags.FLAGS
    module = load_tool(name)
    FLAGS.unparse_flags()
    argv = FLAGS([f"deeplab-{name}", *args])
    try:
        return module.main(argv) or 0
    except SystemExit as e:
        return e.code
    except app.UsageError as e:   # app.run prints it and exits with status 2
        print(f"FATAL Flags parsing error: {e}", file=sys.stderr)
        return 2
    finally:
        FLAGS.unparse_flags()
