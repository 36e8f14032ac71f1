"""Command-line tools (absl mains). Library code never reads FLAGS."""
import sys


def run_main(main, module_name):
    """`absl.app.run(main)` with complete --help under a console script too.

    As a console script, `__main__` is setuptools' wrapper, for which absl's --help would
    list no flags and no description: make the tool module's flags and docstring the main
    module's.
    """
    from absl import app, flags
    for flag in flags.FLAGS.get_flags_for_module(module_name):
        flags.FLAGS.register_key_flag_for_module(sys.argv[0], flag)
    main_module = sys.modules["__main__"]
    if not main_module.__doc__:
        main_module.__doc__ = sys.modules[module_name].__doc__
    app.run(main)
