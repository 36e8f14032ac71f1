"""Command-line tools (absl mains). Library code never reads FLAGS."""
import sys


def run_main(main, module_name, tensorflow=True):
    """`absl.app.run(main)` with complete --help under a console script too, the old names
    of renamed flags (shared_flags.RENAMED) and absl logging (tools/logs.py).

    As a console script, `__main__` is setuptools' wrapper, for which absl's --help would
    list no flags and no description: make the tool's flags and docstring the main
    module's. The tool's flags are all it accepts beyond absl's own (those are in
    --helpfull): its module's and those defined for it elsewhere in deeplab_tf (e.g.
    shared_flags). `tensorflow`: the tool uses TensorFlow (its stderr is filtered and
    --log_dir honoured, tools/logs.py).
    """
    from absl import app, flags

    from deeplab_tf.tools import logs, shared_flags
    spec = getattr(sys.modules[module_name], "__spec__", None)
    tool = spec.name if spec else module_name   # "__main__" under python -m: its real name
    shared_flags.define_renamed(tool)
    for module, defined in flags.FLAGS.flags_by_module_dict().items():
        if module == module_name or module.split(".")[0] in ("deeplab_tf", "experiments"):
            for flag in defined:
                flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:
        main_module.__doc__ = sys.modules[module_name].__doc__

    def logged_main(argv):
        noisy = logs.configure(flags.FLAGS)
        shared_flags.warn_renamed(tool)
        if tensorflow:
            if not noisy:
                logs.filter_stderr()
            logs.start_log_file(flags.FLAGS)
        return main(argv)
    app.run(logged_main)


# Flag checks that run when flags are parsed, before main() imports TensorFlow or touches
# a file: a bad value is an error at once (absl: "FATAL Flags parsing error", status 1).
OUTPUT_STRIDES = (8, 16, 32, 64, 128, 256)


def _scales_ok(values):
    try:
        return values is None or (len(values) > 0 and all(float(v) > 0 for v in values))
    except ValueError:
        return False


def _size_ok(text):
    try:
        dims = [int(p) for p in text.lower().split("x")] if text is not None else [1]
    except ValueError:
        return False
    return len(dims) in (1, 2) and min(dims) >= 1


def check_flags(output_stride=(), scales=(), sizes=(), positive=(), non_negative=()):
    """Registers parse-time validators for the named flags of a tool."""
    from absl import flags
    for name in output_stride:
        flags.register_validator(name, lambda v: v is None or v in OUTPUT_STRIDES,
                                 f"expected one of {OUTPUT_STRIDES} (8: best, 16: faster)")
    for name in scales:
        flags.register_validator(name, _scales_ok,
                                 "expected positive numbers, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")
    for name in sizes:
        flags.register_validator(name, _size_ok, "expected N or HxW with positive sizes")
    for name in positive:
        flags.register_validator(name, lambda v: v is None or v > 0, "expected a value > 0")
    for name in non_negative:
        flags.register_validator(name, lambda v: v is None or v >= 0, "expected a value >= 0")
