"""How the tools log, as absl users expect, with TensorFlow's own noise kept out by default.

- Our messages go through absl logging: INFO and up by default (absl's default
  verbosity), `-v 1` adds DEBUG, `-v -1` keeps warnings and errors only; `--log_dir`
  writes absl's log file there (warnings and errors still on stderr unless
  `--stderrthreshold` says otherwise); `--logtostderr`, `--alsologtostderr`,
  `--logger_levels` as absl defines them.
- TensorFlow's and Keras' own output (C++ lines such as CUDA probing, cost-model and
  rendezvous warnings; the `tensorflow` logger; Python warnings such as deprecations) is
  hidden unless `-v 1` or more. Its C++ level (TF_CPP_MIN_LOG_LEVEL, read when TensorFlow
  is imported) is set here, after the flags are parsed and before TensorFlow is imported;
  one given in the environment is kept. The C++ lines that level does not cover (those
  written while TensorFlow loads, ERROR lines of absl's C++ logging) are filtered out of
  stderr (`filter_stderr`).
"""
import logging
import os
import re
import sys
import warnings

NOISY_VERBOSITY = 1   # -v at or above which TensorFlow's own output is shown
# TensorFlow's C++ log lines below FATAL (absl/glog format, a C++ source file) and absl's
# notice before its logging is initialised.
_CPP_LINE = rb"^[IWE]\d{4} [\d:.]+\s+\d+ [^\s:]+\.(cc|cpp|h|c):\d+\] "
_CPP_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called"
# The filter process (-S: no site-packages; it only needs os and re).
_FILTER = f"""
import os, re
noise, notice = re.compile({_CPP_LINE!r}), {_CPP_NOTICE!r}
def write(data):
    while data:
        data = data[os.write(1, data):]
def maybe_noise(part):   # an unfinished line that may still become a noise line
    return (part[:1] in (b"I", b"W", b"E") and (len(part) == 1 or part[1:2].isdigit())
            or notice.startswith(part) or part.startswith(notice[:20]))
held = b""
try:
    while True:
        data = os.read(0, 65536)
        if not data:
            break
        lines = (held + data).split(b"\\n")
        held = lines.pop()
        write(b"".join(line + b"\\n" for line in lines
                       if not noise.match(line) and not line.startswith(notice)))
        if held and not maybe_noise(held):
            write(held)
            held = b""
    write(held)
except OSError:
    pass
"""
# Loggers TensorFlow and Keras write through ("absl": checkpoint and SavedModel saving).
_QUIET_LOGGERS = ("tensorflow", "absl", "keras", "h5py")
_NOISY_MODULES = r"(tensorflow|keras|tf_keras|tensorboard|h5py|google|absl|ml_dtypes)(\.|$)"


def configure(flag_values):
    """Sets up logging from the parsed absl flags, before TensorFlow is imported; returns
    True when TensorFlow's output is shown."""
    import deeplab_tf
    noisy = flag_values.verbosity >= NOISY_VERBOSITY
    if not deeplab_tf.TF_CPP_MIN_LOG_LEVEL_GIVEN and "tensorflow" not in sys.modules:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0" if noisy else "3"
    if not noisy:   # a filter: TF resets the absl logger's level (set_verbosity) as it saves
        from absl import logging as absl_logging
        quiet = _QuietLoggers(set(_QUIET_LOGGERS) - set(flag_values.logger_levels))
        absl_logging.get_absl_handler().addFilter(quiet)
    if noisy:
        logging.captureWarnings(True)   # into the log (and its file), as py.warnings
    else:
        for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category)
        warnings.filterwarnings("ignore", module=_NOISY_MODULES)
    return noisy


def start_log_file(flag_values):
    """With --log_dir (created if needed): absl's log file there; warnings and errors also
    on stderr unless --stderrthreshold is given."""
    if not flag_values.log_dir or flag_values.logtostderr:
        return
    import tensorflow as tf
    from absl import app
    from absl import logging as absl_logging

    from deeplab_tf import fileio
    if not flag_values["stderrthreshold"].present:   # our errors stay on the terminal
        flag_values.stderrthreshold = "warning"
    try:
        fileio.makedirs(flag_values.log_dir)
        absl_logging.get_absl_handler().use_absl_log_file(log_dir=flag_values.log_dir)
    except (OSError, tf.errors.OpError) as e:   # absl writes with open(): a local folder
        raise app.UsageError(f"--log_dir={flag_values.log_dir}: cannot write a log file "
                             f"there ({e})")


def filter_stderr():
    """Passes this process's stderr (file descriptor 2: C++ writes too, and the child
    processes') through a small filter process that drops TensorFlow's C++ INFO, WARNING
    and ERROR lines (TF_CPP_MIN_LOG_LEVEL does not cover those absl's C++ logging writes
    while TensorFlow loads, nor its ERROR lines); everything else, FATAL lines included,
    goes through at once. The filter runs in its own session (a Ctrl-C or a signal to the
    job's process group does not stop it) and ends when this process's stderr closes, so
    it forwards the last lines of a crash too."""
    import subprocess
    try:
        sys.stderr.flush()
        target = os.dup(2)
    except (AttributeError, OSError, ValueError):   # no stderr file descriptor
        return
    try:
        child = subprocess.Popen([sys.executable, "-S", "-c", _FILTER], stdin=subprocess.PIPE,
                                 stdout=target, stderr=subprocess.DEVNULL,
                                 start_new_session=True)
    except OSError:
        os.close(target)
        return
    os.dup2(child.stdin.fileno(), 2)
    child.stdin.close()
    os.close(target)
    child.returncode = 0   # never waited for: it outlives us by a moment


class _QuietLoggers(logging.Filter):
    """Lets through errors only from the loggers named (and their children)."""

    def __init__(self, names):
        super().__init__()
        self.names = names

    def filter(self, record):
        return record.levelno >= logging.ERROR or record.name.split(".")[0] not in self.names


def is_tensorflow_noise(line):
    """A line the stderr filter drops: TensorFlow's C++ INFO/WARNING/ERROR, absl's notice."""
    data = line.encode("utf-8", "replace")
    return bool(re.match(_CPP_LINE, data)) or data.startswith(_CPP_NOTICE)
