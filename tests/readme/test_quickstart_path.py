"""The README's quickstart path as a user follows it, in a fresh folder: the quickstart
(smaller: tests/readme/readme.py SMALL_QUICKSTART), predictions of photos, the export, and
the Python examples that use the quickstart's run."""
import json
import os
import shutil

import numpy as np
from PIL import Image

import experiments
from deeplab_tf.data.converters import synthetic

from . import readme

VOC = readme.REPO.parent / "shared" / "data" / "voc2012_samples"


def test_quickstart_then_predict_export_and_python(tmp_path):
    config = experiments.get_config("quickstart")
    assert config.data.generate_synthetic and config.train.then_evaluate
    # The records the quickstart would generate, smaller; the run finds them and reuses them.
    synthetic.convert(str(tmp_path / os.path.dirname(config.data.train_records)), num_train=16,
                      num_val=4, image_size=(65, 81), num_shards=1, num_workers=1)
    done = readme.run(readme.shrink(readme.command("quickstart"), readme.SMALL_QUICKSTART),
                      tmp_path)
    assert "generating the synthetic dataset" not in done.stderr
    run = tmp_path / "runs" / "quickstart"
    record = json.loads((run / "eval" / "results.json").read_text())
    assert record["step"] == 4 and record["images"] == 4
    assert "step 4: mIoU" in done.stdout and "striped_disc" in done.stdout
    for name in ("checkpoint", "SavedModel", "predictions", "per-class IoU chart"):
        assert name in done.stdout
    assert (run / "export" / "saved_model.pb").exists()
    pictures = sorted((run / "predictions").glob("*.png"))
    assert len(pictures) == 2
    # image | ground truth | prediction | overlay, each at the image's own size
    assert np.asarray(Image.open(pictures[0])).shape == (65, 4 * 81, 3)
    for plot in ("class_iou.png", "confusion_matrix.png"):
        assert Image.open(run / "eval" / plot).format == "PNG"

    (tmp_path / "photos").mkdir()
    for i in (0, 1):
        shutil.copy(VOC / "JPEGImages" / f"sample_{i}.jpg", tmp_path / "photos")
    readme.run(readme.command("predict_photos"), tmp_path)
    for i in (0, 1):
        size = Image.open(VOC / "JPEGImages" / f"sample_{i}.jpg").size
        written = sorted(p.name for p in (tmp_path / "predictions").glob(f"sample_{i}*"))
        assert len(written) == 3, written         # mask, overlay, label (the --outputs default)
        for name in written:
            assert Image.open(tmp_path / "predictions" / name).size == size

    readme.run(readme.command("export_quickstart"), tmp_path)
    assert (tmp_path / "exported" / "quickstart" / "saved_model.pb").exists()

    # The README's Segmenter example, with a photo as `image`, on the run and on the export.
    code = readme.python_block("from deeplab_tf.inference import Segmenter")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        image = Image.open(VOC / "JPEGImages" / "sample_2.jpg")
        results = {}
        for source in ("runs/quickstart", "exported/quickstart"):
            namespace = {"image": image}
            exec(compile(code.replace('"runs/quickstart"', repr(source)), "README.md", "exec"),
                 namespace)
            results[source] = namespace["labels"], namespace["probabilities"]
            assert namespace["labels"].shape == (image.height, image.width)
        labels, probabilities = results["runs/quickstart"]
        assert probabilities.shape == (image.height, image.width, 5)
        np.testing.assert_array_equal(labels, np.argmax(probabilities, -1))
        exported, no_probabilities = results["exported/quickstart"]
        assert no_probabilities is None          # exported without --probabilities
        # One protocol (output stride 8, one scale, no flip) in the run and the export.
        assert np.mean(exported == labels) > 0.99
    finally:
        os.chdir(cwd)
