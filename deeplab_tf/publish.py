"""Publishing folders (a SavedModel, a converted model_dir) so that readers never see half
of one and a command never replaces a folder it did not write (fileio's module docstring:
publishing on a local disk and on object stores). All file access goes through fileio."""
import os

from deeplab_tf import fileio


def published(path, marker):
    """True when the folder `path` is complete: its marker file exists."""
    return fileio.exists(fileio.join(path, marker))


def _within(path, folder):
    """True when `path` is `folder` or lies inside it (both normalized)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def check_replaceable(target, marker, overwrite=False, expected_names=None,
                      required_names=None, protected=()):
    """The one rule for replacing a folder (publish_dir applies it; callers also apply it
    before long work): a command replaces only what it created itself. So an existing
    `target` is replaced only with `overwrite`, and only when it is a folder that is empty
    or holds each of `required_names` (default: `marker`) and no top-level name outside
    `expected_names` (the names the writer itself creates; None: any); and never when it is,
    or holds, one of the `protected` paths (what the command reads, e.g. the model_dir being
    exported), whether it exists or not. Raises FileExistsError naming the target and why."""
    target = os.fspath(target).rstrip("/")
    normal = fileio.normalized(target)
    for path in protected:
        if path and _within(fileio.normalized(path), normal):
            raise FileExistsError(f"{target} is or contains {os.fspath(path)}, which this "
                                  f"command reads: refusing to replace it; choose another "
                                  f"output folder")
    if not fileio.exists(target):
        return
    if not overwrite:
        raise FileExistsError(f"{target} exists; pass overwrite to replace it")
    if not fileio.isdir(target):
        raise FileExistsError(f"{target} is a file, not a folder this command wrote: "
                              f"refusing to replace it")
    names = set(fileio.listdir(target))
    if not names:
        return
    required = {marker} if required_names is None else set(required_names)
    missing = sorted(required - names)
    foreign = sorted(names - set(expected_names)) if expected_names is not None else []
    if missing or foreign:
        why = [f"it has no {', '.join(missing)}"] if missing else []
        if foreign:
            why.append(f"it holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}"
                       f", which this command does not write")
        why = "; ".join(why)
        raise FileExistsError(f"{target} is not a folder this command wrote ({why}): "
                              f"refusing to replace it; choose another output folder, or "
                              f"move its contents away")


def publish_dir(target, write_fn, marker, overwrite=False, expected_names=None,
                required_names=None, protected=()):
    """Writes a folder with `write_fn(staging_path)` and publishes it at `target`.

    An existing target is replaced only as `check_replaceable` allows (`overwrite`, and a
    folder of this writer's own kind: `expected_names`, `required_names`, never one of the
    `protected` paths or a folder holding one), checked before anything is written, and
    only after the write succeeded; nothing outside `target` (and its staging sibling) is
    touched. Locally the staging folder is renamed into place; on an object store its files
    are copied with `marker` last (fileio's module docstring). Returns `target`.
    """
    target = os.fspath(target).rstrip("/")
    check_replaceable(target, marker, overwrite, expected_names, required_names, protected)
    parent = fileio.dirname(target)
    if parent and not fileio.exists(parent):
        fileio.makedirs(parent)
    staging = fileio.temporary_name(target)
    try:
        write_fn(staging)
        if not fileio.exists(fileio.join(staging, marker)):
            raise RuntimeError(f"writing {target} left no {marker}")
        # Again: the target may have changed during the write.
        check_replaceable(target, marker, overwrite, expected_names, required_names, protected)
        if fileio.is_local(target):
            if fileio.exists(target):
                old = fileio.temporary_name(target)
                fileio.rename(target, old)   # a local rename of a folder: atomic
                fileio.rename(staging, target)
                fileio.rmtree(old)
            else:
                fileio.rename(staging, target)
        else:
            fileio.rmtree(target)
            _copy_tree(staging, target, marker)
    finally:
        fileio.rmtree(staging)
    return target


def _copy_tree(src, dst, last):
    """Copies folder `src` (on an object store) to `dst`, its top-level `last` at the end."""
    for folder, _, files in fileio.walk(src):
        rel = folder[len(src):].strip("/")
        out = fileio.join(dst, rel) if rel else dst
        fileio.makedirs(out)
        for name in files:
            if rel or name != last:
                fileio.copy(fileio.join(folder, name), fileio.join(out, name), overwrite=True)
    fileio.copy(fileio.join(src, last), fileio.join(dst, last), overwrite=True)
