"""deeplab_tf uses TensorFlow's and Keras' public APIs: no `tensorflow.python` or `keras.src`
imports, no `._private` attribute of an object that is not our own (`self`, `cls`), except
the allowlisted uses below, for which TF 2.21 / Keras 3 have no public equivalent."""
import ast
import pathlib

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "deeplab_tf"
PRIVATE_MODULES = ("tensorflow.python", "keras.src", "tensorflow.lite.python", "tf_keras.src")

# (file relative to deeplab_tf/, the module or attribute): why no public API does it.
ALLOWED = {
    ("modeling/deeplab.py", "_builder_args"):
        "DeepLabV3's own attribute, set by set_weight_decay in the class's own module: not a "
        "TF/Keras API",
    ("export_lib.py", "tensorflow.python.framework.convert_to_constants"):
        "freezing a TF2 function's variables into constants for the TFLite converter; "
        "the converter's own public paths (from_saved_model with the variables, "
        "from_concrete_functions with trackable_obj) give NaN / fail at READ_VARIABLE",
    ("data/record_scan.py", "tensorflow.python.lib.io"):
        "tf_record_random_reader: reads one record at a byte offset with TF's CRC checks, "
        "to walk past a corrupt record; tf.data.TFRecordDataset cannot seek and stops at "
        "the first bad CRC",
    ("convert/tflite.py", "_get_ops_details"):
        "tf.lite.Interpreter (TF 2.21) lists tensors publicly (get_tensor_details) but "
        "not ops; the file's conv ops are what deeplab-convert-checkpoint reads",
    ("modeling/folding.py", "_keras_history"):
        "Keras 3 has no public way to find the layer that produced a KerasTensor",
    ("modeling/folding.py", "_inbound_nodes"):
        "Keras 3 has no public list of a layer's call sites (nodes) in a functional model",
}


def private_uses(path):
    """[(line, module or attribute)] of `path`'s private TF/Keras imports and `x._name`
    attributes (x not self/cls; dunders, e.g. __file__, are not private)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names
                      if a.name.startswith(PRIVATE_MODULES)]
        elif isinstance(node, ast.ImportFrom) and node.module and \
                node.module.startswith(PRIVATE_MODULES):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not (
                node.attr.startswith("__") and node.attr.endswith("__")
                and node.attr != "__internal__"):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                found.append((node.lineno, node.attr))
    return sorted(found)


def test_no_private_tensorflow_or_keras_apis():
    unexpected, used = [], set()
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        for line, name in private_uses(path):
            key = next((k for k in ALLOWED if k[0] == relative and name.startswith(k[1])), None)
            if key is None:
                unexpected.append(f"deeplab_tf/{relative}:{line}: {name}")
            used.add(key)
    assert not unexpected, "private TF/Keras APIs (add a public one, or an ALLOWED entry " \
        "saying why none exists):\n" + "\n".join(unexpected)
    assert used >= set(ALLOWED), f"stale ALLOWED entries: {sorted(set(ALLOWED) - used)}"


def test_the_check_finds_what_it_looks_for(tmp_path):
    """The scanner itself: each kind of private use is found, public ones are not."""
    path = tmp_path / "sample.py"
    path.write_text(
        "import tensorflow.python.ops as a\n"
        "from keras.src.layers import Layer\n"
        "from tensorflow.python.lib.io import tf_record\n"
        "model._flatten_layers()\n"
        "tf.__internal__.tracking\n"
        "self._cache = cls._registry\n"
        "print(module.__file__, tf.io.TFRecordWriter, keras.Model.layers)\n")
    assert private_uses(path) == [(1, "tensorflow.python.ops"), (2, "keras.src.layers"),
                                  (3, "tensorflow.python.lib.io"), (4, "_flatten_layers"),
                                  (5, "__internal__")]
