"""The file-system layer: only deeplab_tf/fileio.py touches user paths (an architecture
check over every library module's syntax tree), and its publishing rules hold on a local
disk and on TF's in-memory filesystem (ram://), which takes the same code path as gs://."""
import ast
import pathlib
import uuid

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import checkpointing, fileio, publish

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "deeplab_tf"

# What touches a file system. Pure string functions (os.path.join, basename, splitext) are
# allowed; anything that opens, lists, stats, renames, deletes or resolves a path is not.
FORBIDDEN_MODULES = {"shutil", "glob", "pathlib", "tempfile"}
FORBIDDEN_OS = {"open", "fdopen", "makedirs", "mkdir", "replace", "rename", "renames",
                "remove", "unlink", "rmdir", "removedirs", "listdir", "scandir", "walk",
                "stat", "lstat", "chmod", "utime", "link", "symlink", "truncate", "fsync"}
FORBIDDEN_OS_PATH = {"exists", "lexists", "isdir", "isfile", "islink", "getsize",
                     "getmtime", "getctime", "getatime", "abspath", "realpath", "samefile"}
# Writers and readers of other libraries that take a path.
FORBIDDEN_METHODS = {"savefig", "savez", "savez_compressed", "tofile", "fromfile"}


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _path_like(node):
    """A string or f-string argument: a path, not a file object."""
    return isinstance(node, (ast.JoinedStr, ast.BinOp)) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str))


def violations(source, name="<source>"):
    """(line, what) for every file-system access outside fileio in `source`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, f"import {a.name}") for a in node.names
                      if a.name.split(".")[0] in FORBIDDEN_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in FORBIDDEN_MODULES:
                found.append((node.lineno, f"from {node.module} import"))
        elif isinstance(node, ast.Call):
            dotted = _dotted(node.func) or ""
            last = dotted.rsplit(".", 1)[-1]
            if dotted in ("open", "io.open"):
                found.append((node.lineno, f"{dotted}()"))
            elif dotted.startswith("os.path.") and last in FORBIDDEN_OS_PATH:
                found.append((node.lineno, dotted))
            elif dotted.startswith("os.") and dotted.count(".") == 1 and last in FORBIDDEN_OS:
                found.append((node.lineno, dotted))
            elif dotted in ("np.save", "np.load", "numpy.save", "numpy.load"):
                found.append((node.lineno, dotted))
            elif isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_METHODS:
                found.append((node.lineno, f".{node.func.attr}()"))
            elif (isinstance(node.func, ast.Attribute) and node.func.attr in ("save", "open")
                  and node.args and _path_like(node.args[0])):
                found.append((node.lineno, f".{node.func.attr}(<path>)"))
    return [(name, line, what) for line, what in found]


def test_checker_flags_each_kind_of_access():
    """The check can fail: every kind of access it must catch is caught."""
    source = "\n".join([
        "import shutil", "from pathlib import Path", "import glob", "import tempfile",
        "open('x')", "io.open(p)", "os.path.exists(p)", "os.path.abspath(p)", "os.makedirs(p)",
        "os.replace(a, b)", "os.remove(p)", "os.listdir(p)", "os.stat(p)", "np.load(p)",
        "np.savez(p, a=1)", "figure.savefig(p)", "Image.fromarray(a).save(f'{p}.png')",
        "Image.open('a.png')",
        # allowed: pure string functions, environment, file objects
        "os.path.join(a, b)", "os.path.basename(p)", "os.environ.get('X')", "os.getpid()",
        "image.save(buf, format='PNG')", "Image.open(f)"])
    found = violations(source)
    assert len(found) == 18, found
    assert max(line for _, line, _ in found) == 18


def test_only_fileio_touches_user_paths():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "fileio.py" and path.parent == PACKAGE:
            continue
        found += violations(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    assert not found, "file-system access outside deeplab_tf/fileio.py:\n" + "\n".join(
        f"  {name}:{line}: {what}" for name, line, what in found)


# ---------------------------------------------------------------------------- publishing

@pytest.fixture
def ram():
    root = f"ram://test_fileio/{uuid.uuid4().hex}"
    yield root
    fileio.rmtree(root)


@pytest.fixture(params=["local", "ram"])
def root(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path)
    else:
        path = f"ram://test_fileio/{uuid.uuid4().hex}"
        yield path
        fileio.rmtree(path)


def test_names_on_every_filesystem():
    assert fileio.join("gs://b/run", "ckpt", "x") == "gs://b/run/ckpt/x"
    assert fileio.dirname("gs://b/run/config.json") == "gs://b/run"
    assert fileio.basename("gs://b/run/") == "run"
    assert fileio.absolute("gs://b/run") == "gs://b/run"
    assert not fileio.is_local("ram://x") and fileio.is_local("runs/x")
    assert fileio.glob_escape("a[1]*?") == "a[[]1][*][?]"


def test_files_are_written_whole_and_read_back(root):
    path = fileio.join(root, "a", "b", "c.json")
    fileio.write_json(path, {"x": [1, 2]})
    assert fileio.read_json(path) == {"x": [1, 2]}
    assert fileio.listdir(fileio.join(root, "a", "b")) == ["c.json"]  # no temporaries left
    fileio.save_image(fileio.join(root, "i.png"), np.full((3, 4, 3), 7, np.uint8))
    from PIL import Image
    with fileio.open(fileio.join(root, "i.png")) as f:
        assert np.asarray(Image.open(f)).shape == (3, 4, 3)


def _writer(files):
    def write(staging):
        for name, text in files.items():
            fileio.write_text(fileio.join(staging, name), text)
    return write


def test_publish_dir_replaces_only_after_a_complete_write(root):
    target = fileio.join(root, "export", "1")
    publish.publish_dir(target, _writer({"saved_model.pb": "v1", "variables/v": "1"}),
                       "saved_model.pb")
    with pytest.raises(FileExistsError):
        publish.publish_dir(target, _writer({"saved_model.pb": "v2"}), "saved_model.pb")

    def failing(staging):
        fileio.write_text(fileio.join(staging, "variables", "v"), "half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        publish.publish_dir(target, failing, "saved_model.pb", overwrite=True)
    with pytest.raises(RuntimeError, match="no saved_model.pb"):
        publish.publish_dir(target, _writer({"other": "x"}), "saved_model.pb", overwrite=True)
    assert fileio.read_text(fileio.join(target, "variables", "v")) == "1"  # old one intact
    publish.publish_dir(target, _writer({"saved_model.pb": "v2", "variables/v": "2"}),
                       "saved_model.pb", overwrite=True)
    assert fileio.read_text(fileio.join(target, "saved_model.pb")) == "v2"
    assert fileio.listdir(fileio.join(root, "export")) == ["1"]   # no staging left behind


def test_on_an_object_store_the_marker_is_written_last(ram, monkeypatch):
    copied = []
    real_copy = fileio.copy
    monkeypatch.setattr(fileio, "copy", lambda s, d, overwrite=False: (
        copied.append(fileio.basename(d)), real_copy(s, d, overwrite)))
    publish.publish_dir(fileio.join(ram, "m"), _writer(
        {"saved_model.pb": "pb", "fingerprint.pb": "f", "variables/variables.index": "i"}),
        "saved_model.pb")
    assert sorted(copied) == ["fingerprint.pb", "saved_model.pb", "variables.index"]
    assert copied[-1] == "saved_model.pb"


EXPORT = dict(expected_names={"saved_model.pb", "variables"})


def test_publish_dir_replaces_only_a_folder_of_its_own_kind(root):
    """overwrite replaces an earlier folder of the writer's kind, never one holding files it
    does not write, a file, or a folder holding what the command reads (protected)."""
    target = fileio.join(root, "export")
    fileio.write_text(fileio.join(target, "saved_model.pb"), "mine")
    fileio.write_text(fileio.join(target, "notes.txt"), "the user's")
    new = _writer({"saved_model.pb": "v2"})
    with pytest.raises(FileExistsError, match="holds notes.txt, which this command does not"):
        publish.publish_dir(target, new, "saved_model.pb", overwrite=True, **EXPORT)
    assert fileio.read_text(fileio.join(target, "notes.txt")) == "the user's"
    with pytest.raises(FileExistsError, match="holds export"):   # its parent
        publish.publish_dir(root, new, "saved_model.pb", overwrite=True, **EXPORT)
    with pytest.raises(FileExistsError, match="has no conversion.json"):
        publish.publish_dir(target, new, "saved_model.pb", overwrite=True,
                           required_names=("saved_model.pb", "conversion.json"))
    user_file = fileio.join(root, "model.bin")
    fileio.write_text(user_file, "weights")
    with pytest.raises(FileExistsError, match="is a file"):
        publish.publish_dir(user_file, new, "saved_model.pb", overwrite=True, **EXPORT)
    assert fileio.read_text(user_file) == "weights"
    # What the command reads: never replaced, nor a folder holding it, overwrite or not.
    model = fileio.join(root, "runs", "voc")
    fileio.write_text(fileio.join(model, "config.json"), "{}")
    for folder in (model, fileio.join(root, "runs"), fileio.join(model, "..", "..")):
        with pytest.raises(FileExistsError, match="is or contains"):
            publish.publish_dir(folder, new, "saved_model.pb", overwrite=True,
                               protected=[fileio.join(model, "checkpoints", "ckpt-1")])
    assert fileio.read_text(fileio.join(model, "config.json")) == "{}"
    # An earlier folder of its kind is replaced, and a folder inside the protected one is fine.
    fileio.remove(fileio.join(target, "notes.txt"))
    publish.publish_dir(target, new, "saved_model.pb", overwrite=True, protected=[model],
                       **EXPORT)
    assert fileio.read_text(fileio.join(target, "saved_model.pb")) == "v2"
    inside = fileio.join(model, "export")
    publish.publish_dir(inside, new, "saved_model.pb", protected=[model], **EXPORT)
    assert fileio.listdir(model) == ["config.json", "export"]


def test_publish_dir_replaces_an_empty_folder(tmp_path):
    (tmp_path / "1").mkdir()
    publish.publish_dir(str(tmp_path / "1"), _writer({"saved_model.pb": "pb"}),
                       "saved_model.pb", overwrite=True, **EXPORT)
    assert (tmp_path / "1" / "saved_model.pb").read_text() == "pb"


def test_output_stems_stay_inside_and_never_collide():
    names = ["../../x.jpg", "/etc/passwd", "a\\b.png", "..", ".hidden.jpg", "a/x.jpg",
             "b/x.jpg", "X.JPG", "p q.png", "c\x00d.png", ""]
    stems = fileio.output_stems(names)
    assert stems == ["x", "passwd", "b", "image", "hidden", "x-2", "x-3", "X-4", "p q",
                     "c_d", "image-2"]
    assert fileio.output_stems(["a/x.jpg", "x-2.png", "b/x.jpg"]) == ["x", "x-2", "x-3"]
    assert fileio.output_stems(["x.jpg"], taken=lambda s: s == "x") == ["x-2"]
    assert len(fileio.output_stems(["y" * 1000])[0]) == 200


# ---------------------------------------------------------------------------- checkpoints

def _manager(directory):
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, w=tf.Variable(np.arange(1000, dtype=np.float32)))
    return checkpoint, checkpointing.make_manager(checkpoint, directory, 5, step)


def test_damaged_latest_checkpoint_on_ram_falls_back_and_keeps_the_files(ram):
    directory = fileio.join(ram, "run", "checkpoints")
    checkpoint, manager = _manager(directory)
    checkpoint.w.assign(tf.fill([1000], 1.0))
    checkpointing.save(manager, 1)
    checkpoint.w.assign(tf.fill([1000], 2.0))
    latest = checkpointing.save(manager, 2)
    data = latest + ".data-00000-of-00001"
    original = fileio.read_bytes(data)
    fileio.write_bytes(data, original[: len(original) // 2])   # truncated by a crash
    checkpoint.w.assign(tf.zeros([1000]))
    restored = checkpointing.restore_latest(checkpoint, manager)
    assert restored.endswith("ckpt-1")
    np.testing.assert_array_equal(checkpoint.w.numpy(), np.ones(1000, np.float32))
    unreadable = fileio.join(directory, checkpointing.UNREADABLE)
    assert sorted(fileio.listdir(unreadable)) == ["ckpt-2.data-00000-of-00001", "ckpt-2.index"]
    assert fileio.read_bytes(fileio.join(unreadable, "ckpt-2.data-00000-of-00001")) == \
        original[: len(original) // 2]   # set aside, byte for byte


def test_partial_write_on_ram_is_removed_and_never_the_latest(ram):
    directory = fileio.join(ram, "run", "checkpoints")
    checkpoint, manager = _manager(directory)
    first = checkpointing.save(manager, 1)

    def crash(step, path):
        raise tf.errors.ResourceExhaustedError(None, None, "no space left")
    with pytest.raises(checkpointing.CheckpointWriteError, match="ckpt-2 failed"):
        checkpointing.save(manager, 2, {"mid_save": crash})
    assert manager.latest_checkpoint == first
    assert not fileio.glob(fileio.join(directory, "ckpt-2*"))   # what it wrote is gone
    # A killed write's temporary folder is removed when the next run starts.
    fileio.write_text(fileio.join(directory, "ckpt-3_temp", "part"), "x")
    checkpoint, manager = _manager(directory)
    assert not fileio.exists(fileio.join(directory, "ckpt-3_temp"))
    assert checkpointing.restore_latest(checkpoint, manager) == first


def test_walk_on_ram_lists_only_what_exists():
    """TF's ram:// filesystem lists children by name prefix (`assets` would list `.extra`
    of a sibling `assets.extra`, as a SavedModel with warmup requests has): fileio.walk
    gives only real files, so a copy of such a tree finds every file it lists."""
    import uuid
    root = f"ram://walk-{uuid.uuid4().hex[:8]}/x"
    fileio.makedirs(fileio.join(root, "assets"))
    fileio.write_bytes(fileio.join(root, "assets.extra", "w"), b"1")
    listed = {folder[len(root):]: files for folder, _, files in fileio.walk(root)}
    assert listed == {"": [], "/assets": [], "/assets.extra": ["w"]}
