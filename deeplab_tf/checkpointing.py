"""Training checkpoints that survive faults: a save never leaves an incomplete checkpoint
listed as the latest, and a restore falls back past a damaged one. Nothing is deleted but
what a failed or killed write left (and, as CheckpointManager does, checkpoints beyond
`keep_checkpoints`).

Saving (`save`). tf.train.CheckpointManager writes a checkpoint's files (through a
`ckpt-N_temp/` directory, then merged into ckpt-N.index and ckpt-N.data-*) and only then
records it in the `checkpoint` state file, which is replaced atomically. A process killed
at any point therefore leaves the previous checkpoint as the latest (the `ckpt-N_temp/` of
a killed write is removed at the next start). A write that fails (disk full, file size
limit, an unwritable directory) raises `CheckpointWriteError`, naming the checkpoint and
the latest complete one, after removing what that write left.

Fault points, the `hooks` of `train_lib.train` (the reliability suite kills the process
at each; tests/reliability/):
  before_save(step)         the step is done, nothing of its checkpoint written yet
  mid_save(step, path)      the checkpoint's files are complete, not yet recorded as latest
  after_save(step, path)    recorded; checkpoints beyond `keep_checkpoints` removed

Restoring (`restore_latest`). The newest checkpoint whose every tensor reads (CRC-checked)
is restored. Each one that does not (truncated, corrupt, files missing) is named in a
warning and its files are moved to `checkpoints/unreadable/`, so that training, reaching
that step again, does not overwrite them. A state file that cannot be parsed is moved
aside the same way and the checkpoints are found by their file names.
"""
import logging
import re

import tensorflow as tf
from google.protobuf.message import DecodeError

from deeplab_tf import fileio
from deeplab_tf.errors import short_message

UNREADABLE = "unreadable"
# What reading a damaged checkpoint raises. A checkpoint of another model (a changed config)
# raises AssertionError or ValueError instead: that is no damage, and stays an error.
_DAMAGED = (tf.errors.OpError, IndexError, EOFError, DecodeError)
_LOG = logging.getLogger("deeplab_tf.train")


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the files of that write were removed."""


class CheckpointRestoreError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


def make_manager(checkpoint, directory, max_to_keep, step_counter, set_aside=True):
    """A CheckpointManager; a `checkpoint` state file that cannot be parsed is moved aside
    (to unreadable/) with a warning instead of stopping the run. With `set_aside` (the
    chief), the temporary directories of writes that were killed are removed."""
    if set_aside:
        for temp in fileio.glob(fileio.join(fileio.glob_escape(directory), "ckpt-*_temp")):
            fileio.rmtree(temp)
    try:
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                          step_counter=step_counter)
    except ValueError as e:   # "Invalid checkpoint state loaded from ..."
        if not set_aside:
            raise
        state = fileio.join(directory, "checkpoint")
        moved = _set_aside([state], directory)
        _LOG.warning("checkpoint state file %s is unreadable (%s); moved to %s", state, e,
                     moved[0] if moved else "nowhere")
        return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=max_to_keep,
                                          step_counter=step_counter)


def indexed(directory):
    """[(step, prefix)] of the ckpt-N.index files in `directory`, oldest first: what is on
    disk, whatever the `checkpoint` state file (possibly the damaged part) says."""
    found = []
    for index in fileio.glob(fileio.join(fileio.glob_escape(directory), "ckpt-*.index")):
        match = re.fullmatch(r"ckpt-(\d+)\.index", fileio.basename(index))
        if match:
            found.append((int(match[1]), index[:-len(".index")]))
    return sorted(found)


def _candidates(manager):
    """Checkpoint prefixes to try, oldest first: the manager's list or, when its state file
    lists none, the ckpt-N.index files found in its directory."""
    if manager.checkpoints:
        return list(manager.checkpoints)
    return [prefix for _, prefix in indexed(manager.directory)]


def restore_latest(checkpoint, manager, set_aside=True):
    """Restores the newest readable checkpoint of `manager` into `checkpoint`.

    Returns its path, or None when there is none. Raises CheckpointRestoreError when there
    are checkpoints but none restores (their files are kept, set aside).
    """
    tried = []
    for path in reversed(_candidates(manager)):
        try:
            verify(path)
        except _DAMAGED as e:
            files = fileio.glob(fileio.glob_escape(path) + ".*")
            moved = _set_aside(files, manager.directory) if set_aside else []
            _LOG.warning("checkpoint %s is unreadable (%s: %s); files %s%s; falling back to "
                         "the previous checkpoint", path, type(e).__name__,
                         short_message(e), [fileio.basename(f) for f in files],
                         f" moved to {fileio.dirname(moved[0])}" if moved else "")
            tried.append(path)
            continue
        checkpoint.restore(path).assert_existing_objects_matched()
        if tried:
            _LOG.warning("restored %s instead of the unreadable %s", path, tried[0])
        return path
    if tried:
        raise CheckpointRestoreError(
            f"none of the checkpoints in {manager.directory} can be restored ({tried}); "
            f"their files are kept in {fileio.join(manager.directory, UNREADABLE)}. "
            f"Move the checkpoints directory away to start from scratch.")
    return None


def verify(path):
    """Reads every tensor of a checkpoint (their CRCs checked); raises if one cannot be.
    Done before restoring: a restore that fails half-way leaves pending restorations in
    the model's objects that break the next restore, of a good checkpoint."""
    reader = fileio.checkpoint_reader(path)
    for name in reader.get_variable_to_shape_map():
        reader.get_tensor(name)


def _set_aside(files, directory):
    """Moves files into DIRECTORY/unreadable/ (never overwriting); returns the new paths."""
    target = fileio.join(directory, UNREADABLE)
    moved = []
    for path in files:
        if not fileio.exists(path):
            continue
        fileio.makedirs(target)
        name, n = fileio.basename(path), 1
        dest = fileio.join(target, name)
        while fileio.exists(dest):
            n += 1
            dest = fileio.join(target, f"{name}.{n}")
        fileio.rename(path, dest)
        moved.append(dest)
    return moved


def save(manager, step, hooks=None):
    """Saves checkpoint `step` (module docstring: atomicity, fault points). Returns its path.

    Raises CheckpointWriteError if the write fails; the previous checkpoint stays the latest.
    """
    hooks = hooks or {}
    if "before_save" in hooks:
        hooks["before_save"](step)
    prefix = fileio.join(manager.directory, f"ckpt-{step}")
    callbacks = None
    if "mid_save" in hooks:   # runs before the manager records the checkpoint as latest
        callbacks = [lambda path: hooks["mid_save"](step, path)]
    before = _files_of(prefix)
    try:
        path = manager.save(checkpoint_number=step, options=tf.train.CheckpointOptions(
            experimental_write_callbacks=callbacks))
    except (tf.errors.OpError, OSError) as e:
        left = _remove_partial(prefix, before)
        raise CheckpointWriteError(
            f"writing checkpoint {prefix} failed ({type(e).__name__}: "
            f"{short_message(e)}); removed what it wrote ({left or 'nothing'}); "
            f"the latest complete checkpoint is {manager.latest_checkpoint or 'none'}") from e
    if "after_save" in hooks:
        hooks["after_save"](step, path)
    return path


def _files_of(prefix):
    """{path: (size, mtime_ns)} of a checkpoint's files and its temporary directory."""
    pattern = fileio.glob_escape(prefix)
    stats = {}
    for path in fileio.glob(pattern + ".*") + fileio.glob(pattern + "_temp*/*"):
        try:
            stats[path] = fileio.size_and_mtime_ns(path)
        except Exception as e:  # removed meanwhile (tf.errors.NotFoundError)
            if type(e).__name__ != "NotFoundError":
                raise
    return stats


def _remove_partial(prefix, before):
    """Removes the files a failed save of `prefix` created or changed; returns their names."""
    removed = []
    for path, stat in _files_of(prefix).items():
        if before.get(path) != stat:
            try:
                fileio.remove(path)
                removed.append(fileio.basename(path))
            except Exception:  # noqa: BLE001 (gone already, or not removable: reported)
                pass
    for temp in fileio.glob(fileio.glob_escape(prefix) + "_temp*"):
        if fileio.isdir(temp) and not fileio.listdir(temp):
            fileio.rmtree(temp)   # empty now, unless it held files we did not write
    return removed
