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
  one given in the environment is kept. The lines TensorFlow's C++ logging writes while it
  loads, before it reads that level, are filtered out of stderr.
"""
import logging
import os
import re
import sys
import threading
import warnings

NOISY_VERBOSITY = 1   # -v at or above which TensorFlow's own output is shown
# C++ log lines (absl/glog format) and absl's notice before its logging is initialised.
_CPP_LINE = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
_CPP_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called"
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
    from absl import app
    from absl import logging as absl_logging

    from deeplab_tf import fileio
    if not flag_values.log_dir or flag_values.logtostderr:
        return
    if not flag_values["stderrthreshold"].present:   # our errors stay on the terminal
        flag_values.stderrthreshold = "warning"
    try:
        fileio.makedirs(flag_values.log_dir)
        absl_logging.get_absl_handler().use_absl_log_file(log_dir=flag_values.log_dir)
    except OSError as e:   # FileNotFoundError: not a local folder (absl writes with open)
        raise app.UsageError(f"--log_dir={flag_values.log_dir}: cannot write a log file "
                             f"there ({e})")


def import_tensorflow(noisy):
    """Imports TensorFlow; unless `noisy`, without the C++ lines it writes while loading."""
    if noisy or "tensorflow" in sys.modules:
        import tensorflow  # noqa: F401
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (AttributeError, OSError, ValueError):   # no stderr file descriptor
        import tensorflow  # noqa: F401
        return
    read_end, write_end = os.pipe()
    chunks = []
    reader = threading.Thread(target=_drain, args=(read_end, chunks), daemon=True)
    reader.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        import tensorflow  # noqa: F401
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)   # also closes the pipe's last write end: the reader ends
        os.close(saved)
        reader.join()
        os.close(read_end)
        kept = [line for line in b"".join(chunks).decode("utf-8", "replace")
                .splitlines(keepends=True) if not is_tensorflow_noise(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


class _QuietLoggers(logging.Filter):
    """Lets through errors only from the loggers named (and their children)."""

    def __init__(self, names):
        super().__init__()
        self.names = names

    def filter(self, record):
        return record.levelno >= logging.ERROR or record.name.split(".")[0] not in self.names


def is_tensorflow_noise(line):
    """A line TensorFlow's C++ logging writes at import (any level) or absl's notice."""
    return bool(_CPP_LINE.match(line)) or line.startswith(_CPP_NOTICE)


def _drain(fd, chunks):
    while True:
        data = os.read(fd, 65536)
        if not data:
            return
        chunks.append(data)
