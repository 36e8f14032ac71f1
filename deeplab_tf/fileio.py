"""Every read and write of a user's path, over `tf.io.gfile`: local paths, `gs://`, `ram://`
(TF's in-memory filesystem, what the tests use) and any filesystem TF has a plugin for
behave the same. No other library module opens, lists, stats, renames or deletes a user's
path (tests/test_fileio.py enforces it).

Publishing. A local rename is atomic; on an object store (gs://, s3://) a rename is a copy
and a delete, and a "directory" is only a name prefix. So:
  * a file (`write_bytes`, `write_text`, `write_json`) is complete or absent: locally it is
    written under a hidden temporary name in the same folder and renamed; on an object
    store an object only appears when its upload completes (`GFile.close`);
  * a folder (`publish.publish_dir`: a SavedModel, a converted model_dir) goes under a hidden
    staging name first; locally it is then renamed into place; on an object store its
    files are copied to the target with the folder's marker (the file readers check:
    `saved_model.pb`, `checkpoint`) written last, and readers trust only a folder whose
    marker exists (`publish.published`).
Datasets (data/writer.py) and checkpoints (TF's CheckpointManager) follow the same rule:
the manifest, the `checkpoint` state file is the object written last.

Reads on local paths in data-loading worker processes, which must not import TensorFlow,
use Python's own files (`read_bytes`); every other operation goes through `tf.io.gfile`.
"""
import io
import json
import os
import posixpath
import re
import uuid

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _gfile():
    import tensorflow as tf
    return tf.io.gfile


def is_local(path):
    """True for a path on this machine's disk (no `scheme://`)."""
    return not _SCHEME.match(os.fspath(path))


# ---------------------------------------------------------------------------- names

def join(path, *parts):
    path = os.fspath(path)
    return (os.path.join if is_local(path) else posixpath.join)(path, *map(os.fspath, parts))


def basename(path):
    return posixpath.basename(os.fspath(path).rstrip("/"))


def dirname(path):
    path = os.fspath(path).rstrip("/")
    if not is_local(path):
        scheme_end = path.index("://") + 3
        head = posixpath.dirname(path[scheme_end:])
        return path[:scheme_end] + head
    return os.path.dirname(path)


def stem(path):
    return os.path.splitext(basename(path))[0]


_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def output_stems(names, taken=None):
    """A safe, unique file-name stem per name (an input path, or a name stored in a record,
    which may be anything: "../x", "/etc/x", "a\\b"): the stem of its last component ("/"
    and "\\" both separate), control characters made "_", leading dots dropped (never "..",
    never hidden; "image" if nothing is left), at most 200 characters; "-2", "-3"... added when
    a stem repeats (compared without case: macOS, Windows) or `taken(stem)` is true (e.g.
    an output of that stem would overwrite an input). Joined to a folder, it stays inside."""
    stems, used = [], set()
    for name in names:
        base = posixpath.basename(os.fspath(name).replace("\\", "/").rstrip("/"))
        clean = _CONTROL.sub("_", os.path.splitext(base)[0]).lstrip(".")[:200] or "image"
        candidate, n = clean, 1
        while candidate.lower() in used or (taken is not None and taken(candidate)):
            n += 1
            candidate = f"{clean}-{n}"
        used.add(candidate.lower())
        stems.append(candidate)
    return stems


def absolute(path):
    """A local path made absolute (for messages and configs); other paths unchanged."""
    path = os.fspath(path)
    return os.path.abspath(path) if is_local(path) else path


def normalized(path):
    """`path` for comparisons: local ones absolute with links resolved, others normalized."""
    path = os.fspath(path)
    if is_local(path):
        return os.path.realpath(path)
    scheme_end = path.index("://") + 3
    return path[:scheme_end] + posixpath.normpath(path[scheme_end:]).lstrip("/")


def glob_escape(path):
    """`path` as a glob pattern matching only itself."""
    return re.sub(r"([*?[])", r"[\1]", os.fspath(path))


# ---------------------------------------------------------------------------- queries

def _listed(path):
    """TF's ram:// filesystem answers exists/isdir for any string prefix of a file name
    ("ram://d/ckpt-1" exists when "ram://d/ckpt-1.index" does); there a path counts only
    when its folder lists it, as on a disk and on gs://."""
    path = os.fspath(path).rstrip("/")
    if not path.startswith("ram://") or path.count("/") < 3:
        return True
    parent = dirname(path)
    return _gfile().exists(parent) and basename(path) in listdir(parent)


def exists(path):
    return _gfile().exists(os.fspath(path)) and _listed(path)


def isdir(path):
    return _gfile().isdir(os.fspath(path)) and _listed(path)


def isfile(path):
    return exists(path) and not isdir(path)


def size_and_mtime_ns(path):
    """(bytes, modification time in ns) from one stat: one request on an object store.
    ram:// reports the time as 0."""
    stat = _gfile().stat(os.fspath(path))
    return stat.length, stat.mtime_nsec


def listdir(path):
    """Sorted names in a folder (without trailing slashes)."""
    return sorted(name.rstrip("/") for name in _gfile().listdir(os.fspath(path)))


def glob(pattern):
    return sorted(_gfile().glob(os.fspath(pattern)))


def walk(path):
    """(folder, subfolders, files) as tf.io.gfile.walk. On ram:// (TF's in-memory filesystem,
    which lists a folder's children by name prefix: `assets` would list `.extra` of a sibling
    `assets.extra`), names that do not exist are left out."""
    path = os.fspath(path)
    gfile = _gfile()
    for folder, subfolders, files in gfile.walk(path):
        if path.startswith("ram://"):
            files = [f for f in files if gfile.exists(join(folder, f))]
        yield folder, subfolders, files


# ---------------------------------------------------------------------------- changes

def makedirs(path):
    _gfile().makedirs(os.fspath(path))


def remove(path, missing_ok=False):
    try:
        _gfile().remove(os.fspath(path))
    except Exception as e:  # tf.errors.NotFoundError, without importing tf here
        if not (missing_ok and type(e).__name__ == "NotFoundError"):
            raise


def rmtree(path, missing_ok=True):
    if missing_ok and not exists(path):
        return
    try:
        _gfile().rmtree(os.fspath(path))
    except Exception as e:  # tf.errors.NotFoundError: removed meanwhile
        if not (missing_ok and type(e).__name__ == "NotFoundError"):
            raise


def rename(src, dst, overwrite=False):
    """Moves a file (atomic on a local disk; copy + delete on an object store)."""
    _gfile().rename(os.fspath(src), os.fspath(dst), overwrite=overwrite)


def copy(src, dst, overwrite=False):
    _gfile().copy(os.fspath(src), os.fspath(dst), overwrite=overwrite)


def temporary_name(path):
    """A hidden sibling of `path` that no other process or run uses."""
    return join(dirname(path), f".{basename(path)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


# ---------------------------------------------------------------------------- contents

def open(path, mode="rb"):  # noqa: A001 (the module's own open)
    return _gfile().GFile(os.fspath(path), mode)


def read_bytes(path):
    path = os.fspath(path)
    if is_local(path):   # data-loading workers stay TensorFlow-free
        with io.open(path, "rb") as f:
            return f.read()
    with open(path, "rb") as f:
        return f.read()


def read_text(path):
    return read_bytes(path).decode("utf-8")


def read_json(path):
    return json.loads(read_text(path))


def write_bytes(path, data):
    """Writes a file completely or not at all (module docstring: publishing)."""
    path = os.fspath(path)
    parent = dirname(path)
    if parent and not exists(parent):
        makedirs(parent)
    if not is_local(path):
        if path.startswith("ram://") and exists(path):
            remove(path)   # ram:// appends to an existing file instead of replacing it
        with open(path, "wb") as f:
            f.write(data)
        return path
    tmp = temporary_name(path)
    try:
        with io.open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text(path, text):
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, data, indent=2):
    return write_text(path, json.dumps(data, indent=indent) + "\n")


def save_image(path, array_or_image, format="PNG"):  # noqa: A002
    """Encodes an image (NumPy array or PIL image) and writes it (`write_bytes`)."""
    from PIL import Image
    image = array_or_image
    if not isinstance(image, Image.Image):
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=format)
    return write_bytes(path, buf.getvalue())


def save_figure(path, figure, **kwargs):
    """A matplotlib figure as PNG (`write_bytes`)."""
    buf = io.BytesIO()
    figure.savefig(buf, format="png", **kwargs)
    return write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------------------- checkpoints

def checkpoint_reader(prefix):
    """A reader of the checkpoint at `prefix` (e.g. .../ckpt-4). tf.train.load_checkpoint
    takes a prefix for a folder when one "exists", as every file-name prefix does on ram://;
    this reader takes the prefix as it is."""
    import tensorflow as tf
    return tf.compat.v1.train.NewCheckpointReader(os.fspath(prefix))


def sync(path):
    """Flushes a written local file to the disk (fsync), so that a rename after it
    survives a power loss; nothing to do elsewhere (an object exists once uploaded)."""
    path = os.fspath(path)
    if is_local(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
