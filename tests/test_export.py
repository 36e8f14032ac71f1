"""Export parity: the SavedModel, loaded in a fresh TensorFlow-only process, and the TFLite
model give Segmenter's predictions on the real VOC samples."""
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import REPO, VOC_SAMPLES
from deeplab_tf import export_lib, model_dir
from deeplab_tf.images import read_image
from deeplab_tf.inference import Protocol, Segmenter
from deeplab_tf.testing import TOY_METADATA as METADATA, tiny_model, tiny_model_dir

# Options baked into the export and given to Segmenter: they must agree everywhere.
OPTIONS = dict(output_stride=8, scales=(0.75, 1.0), flip=True)
FILES = sorted((VOC_SAMPLES / "JPEGImages").glob("*.jpg"))

_FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    export_dir, pixels, files, out = sys.argv[1:]
    files = json.loads(files)
    loaded = tf.saved_model.load(export_dir)
    served = loaded.signatures["serving_default"](
        images=tf.constant([open(f, "rb").read() for f in files]))
    pixels = np.load(pixels)
    results = {k: v.numpy() for k, v in served.items()}
    for i in range(len(files)):
        one = loaded.signatures["predict_images"](images=tf.constant(pixels[f"rgb_{i}"][None]))
        results[f"labels_{i}"] = one["labels"][0].numpy()
        results[f"probabilities_{i}"] = one["probabilities"][0].numpy()
    try:
        loaded.signatures["serving_default"](images=tf.constant([b"GIF89a, not ours"]))
        error = None
    except tf.errors.InvalidArgumentError as e:
        error = e.message
    np.savez(out, colormap=loaded.colormap.numpy(), **results)
    print(json.dumps(dict(
        error=error, class_names=[n.decode() for n in loaded.class_names.numpy()],
        dataset=json.loads(loaded.dataset_json.numpy()),
        protocol=json.loads(loaded.protocol_json.numpy()),
        outputs=sorted(served), deeplab_tf_imported="deeplab_tf" in sys.modules)))
""")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The SavedModel and a float TFLite model, both written by the deeplab-export CLI."""
    root = tmp_path_factory.mktemp("export")
    tiny_model_dir(root / "run")
    run = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.export", f"--model_dir={root / 'run'}",
         f"--export_dir={root / 'saved_model'}", "--output_stride=8",
         "--inference_scales=0.75,1.0", "--add_flipped_images", "--probabilities",
         f"--tflite={root / 'model.tflite'}", "--tflite_size=193x257"],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert run.returncode == 0, run.stderr[-3000:]
    return root, Segmenter(root / "run", **OPTIONS), root / "saved_model"


def test_saved_model_in_a_fresh_process_matches_segmenter(exported):
    root, segmenter, export_dir = exported
    images = [read_image(f) for f in FILES]
    expected = [segmenter.segment(image) for image in images]
    assert len(np.unique(np.concatenate([l.ravel() for l, _ in expected]))) >= 2
    np.savez(root / "pixels.npz", **{f"rgb_{i}": image for i, image in enumerate(images)})
    run = subprocess.run(
        [sys.executable, "-c", _FRESH, str(export_dir), str(root / "pixels.npz"),
         json.dumps([str(f) for f in FILES]), str(root / "out.npz")],
        capture_output=True, text=True, timeout=300, cwd=root)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    got = np.load(root / "out.npz")
    assert not info["deeplab_tf_imported"]
    assert info["outputs"] == ["image_sizes", "labels", "probabilities"]
    # Metadata and options travel with the SavedModel.
    assert info["class_names"] == list(METADATA.class_names)
    assert info["dataset"]["colors"] == [list(c) for c in METADATA.colors]
    np.testing.assert_array_equal(got["colormap"], METADATA.colormap())
    assert Protocol(**info["protocol"]) == segmenter.protocol
    # serving_default: every image at its own size inside a batch padded with 255.
    sizes = got["image_sizes"]
    assert got["labels"].shape == (len(FILES), sizes[:, 0].max(), sizes[:, 1].max())
    for i, (labels, probs) in enumerate(expected):
        h, w = labels.shape
        np.testing.assert_array_equal(sizes[i], (h, w))
        np.testing.assert_array_equal(got["labels"][i, :h, :w], labels)
        assert np.all(got["labels"][i, h:] == 255) and np.all(got["labels"][i, :, w:] == 255)
        np.testing.assert_allclose(got["probabilities"][i, :h, :w], probs, atol=1e-5)
        np.testing.assert_array_equal(got[f"labels_{i}"], labels)
        np.testing.assert_allclose(got[f"probabilities_{i}"], probs, atol=1e-5)
    # A non-image is a clear InvalidArgument, not a crash.
    assert "images[0] (16 bytes) is not a JPEG or PNG image" in info["error"]


def test_segmenter_reads_the_saved_model(exported):
    root, segmenter, export_dir = exported
    served = Segmenter(export_dir)
    assert served.metadata == METADATA and served.protocol == segmenter.protocol
    image = read_image(FILES[1])[:301, :257]
    labels, probs = served.segment(image)
    want_labels, want_probs = segmenter.segment(image)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_allclose(probs, want_probs, atol=1e-5)
    with pytest.raises(ValueError, match="fixed at export"):
        Segmenter(export_dir, output_stride=16)
    with pytest.raises(ValueError, match="fixed at export"):
        Segmenter(export_dir, precision="mixed_bfloat16")


def _conv_dtypes(function):
    """The dtypes (T) of every Conv2D in a concrete function's graph and its library."""
    graph = function.graph.as_graph_def()
    nodes = list(graph.node) + [n for f in graph.library.function for n in f.node_def]
    return {tf.dtypes.as_dtype(n.attr["T"].type).name for n in nodes if n.op == "Conv2D"}


def test_bfloat16_export_computes_in_bfloat16(exported, tmp_path):
    """--mixed_precision=mixed_bfloat16 bakes bfloat16 convolutions into the SavedModel,
    whose predictions are Segmenter's at the same precision; the Keras policy is restored."""
    root, _, _ = exported
    options = dict(output_stride=16, scales=(1.0,), flip=False)
    export_lib.export_model_dir(root / "run", tmp_path / "bf16", probabilities=True,
                                precision="mixed_bfloat16", **options)
    assert keras.mixed_precision.global_policy().name == "float32"
    served = Segmenter(tmp_path / "bf16")
    assert _conv_dtypes(served._signature) == {"bfloat16"}
    image = read_image(FILES[2])[:201, :233]
    labels, probs = served.segment(image)
    want_labels, want_probs = Segmenter(root / "run", precision="mixed_bfloat16",
                                        **options).segment(image)
    assert np.mean(labels == want_labels) >= 0.99
    np.testing.assert_allclose(probs, want_probs, atol=2e-2)
    with pytest.raises(ValueError, match="precision 'bfloat16': expected one of float32, "
                                         "mixed_bfloat16, mixed_float16"):
        Segmenter(root / "run", precision="bfloat16")


def test_tflite_float_matches_segmenter(exported):
    root, segmenter, _ = exported
    height, width = 193, 257
    runner = tf.lite.Interpreter(model_path=str(root / "model.tflite")).get_signature_runner()
    agree, total = 0, 0
    for f in FILES[:3]:
        image = np.asarray(Image.fromarray(read_image(f)).resize((width, height)))
        out = runner(images=image[None].astype(np.float32))
        labels, probs = segmenter.segment(image)
        agree += np.count_nonzero(out["labels"][0] == labels)
        total += labels.size
        np.testing.assert_allclose(out["probabilities"][0], probs, atol=1e-4)
    assert agree / total >= 0.999


def test_tflite_int8_stays_close(exported):
    root, segmenter, _ = exported
    model, _, _ = model_dir.load_model(root / "run", output_stride=8)
    images = [read_image(f) for f in FILES]
    path = export_lib.export_tflite(model, segmenter.protocol, str(root / "int8.tflite"),
                                    129, 161, quantize="int8", representative_images=images[:4])
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    image = np.asarray(Image.fromarray(images[5]).resize((161, 129)))
    labels = runner(images=image[None].astype(np.float32))["labels"][0]
    assert np.mean(labels == segmenter.segment(image)[0]) >= 0.95


def test_probabilities_only_on_request():
    protocol = Protocol(output_stride=16)
    for wanted, keys in [(False, {"labels"}), (True, {"labels", "probabilities"})]:
        module = export_lib._Serving(tiny_model(), METADATA, protocol, wanted)
        function = module.predict_images.get_concrete_function()
        assert set(function.structured_outputs) == keys


def test_export_is_atomic_and_never_clobbers(exported, tmp_path, monkeypatch):
    _, segmenter, export_dir = exported
    model = tiny_model()
    target = tmp_path / "models" / "1"
    target.mkdir(parents=True)
    (target / "saved_model.pb").write_text("the previous export")
    with pytest.raises(FileExistsError, match="--overwrite"):
        export_lib.export_saved_model(model, METADATA, target, segmenter.protocol)

    def failing_save(obj, path, signatures=None, options=None):
        (tmp_path / "models" / path.split("/")[-1] / "partial").parent.mkdir()
        raise OSError("disk full")
    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        export_lib.export_saved_model(model, METADATA, target, segmenter.protocol,
                                      overwrite=True)
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["1"]
    assert (target / "saved_model.pb").read_text() == "the previous export"

    def fine_save(obj, path, signatures=None, options=None):
        import os
        os.makedirs(path)
        open(os.path.join(path, "saved_model.pb"), "w").write("new")
    monkeypatch.setattr(tf.saved_model, "save", fine_save)
    export_lib.export_saved_model(model, METADATA, target, segmenter.protocol, overwrite=True)
    assert (target / "saved_model.pb").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["1"]


def test_existing_export_refused_before_any_work(exported, monkeypatch):
    root, _, export_dir = exported
    monkeypatch.setattr(model_dir, "load_model", None)   # must not get that far
    with pytest.raises(FileExistsError, match="exists: pass overwrite"):
        export_lib.export_model_dir(root / "run", export_dir)


class _FakeServing:
    """TF Serving's REST predict API (row format) over a loaded SavedModel, in-process:
    `{"signature_name": ..., "instances": [...]}`, `{"b64": ...}` for bytes, one dict of
    outputs per instance under "predictions"."""

    def __init__(self, export_dir):
        self.loaded = tf.saved_model.load(str(export_dir))
        self.urls = []

    def urlopen(self, url, data):
        import base64
        import io as _io
        self.urls.append(url)
        request = json.loads(data)
        signature = self.loaded.signatures[request.get("signature_name", "serving_default")]
        (name,) = signature.structured_input_signature[1]   # one named input
        values = [base64.b64decode(i["b64"]) if isinstance(i, dict) else i
                  for i in request["instances"]]
        out = signature(**{name: tf.constant(values)})
        predictions = [{k: v[i].numpy().tolist() for k, v in out.items()}
                       for i in range(len(values))]
        return _io.BytesIO(json.dumps({"predictions": predictions}).encode())


def test_readme_rest_request_runs_against_the_signature(exported, tmp_path, monkeypatch):
    """The README's TF Serving client, run as written (urlopen answered in-process as TF
    Serving's REST API answers it): its body fits serving_default and `labels` is the
    photo's label map, the Segmenter's labels."""
    import re
    import urllib.request
    _, segmenter, export_dir = exported
    readme = (REPO / "README.md").read_text()
    snippet = next(block for block in re.findall(r"```python\n(.*?)```", readme, re.S)
                   if "v1/models/deeplab:predict" in block)
    (tmp_path / "photo.jpg").write_bytes(FILES[0].read_bytes())
    server = _FakeServing(export_dir)
    monkeypatch.setattr(urllib.request, "urlopen", server.urlopen)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(snippet, "README.md", "exec"), namespace)
    assert server.urls == ["http://localhost:8501/v1/models/deeplab:predict"]
    expected, _ = segmenter.segment(read_image(FILES[0]))
    np.testing.assert_array_equal(np.array(namespace["labels"]), expected)
