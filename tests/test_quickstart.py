"""The quickstart's code path end to end, at reduced steps and sizes: deeplab-train
--experiment=quickstart trains, evaluates, exports and writes predictions."""
import json
import os
import subprocess
import sys

import numpy as np
from PIL import Image

import experiments
from deeplab_tf.data.converters import synthetic

SMALL = ("train.steps=4,train.steps_per_loop=2,train.checkpoint_every=4,train.batch_size=4,"
         "train.then_predict=2,model.width_multiplier=0.125,model.aspp_filters=16,"
         "data.crop_size=(65,65),eval.scales=(1.0,),eval.flip=false")
# (the multi-scale + flip protocol has tests of its own: tests/test_inference.py)


def test_quickstart_end_to_end(tmp_path):
    config = experiments.get_config("quickstart")
    assert config.data.generate_synthetic and config.train.then_evaluate
    # The records the quickstart would generate, smaller; the run finds them and reuses them.
    data = tmp_path / os.path.dirname(config.data.train_records)
    synthetic.convert(str(data), num_train=16, num_val=4, image_size=(65, 81), num_shards=1,
                      num_workers=1)
    result = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.train", "--experiment=quickstart",
         "--model_dir=runs/quickstart", f"--params_override={SMALL}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "generating the synthetic dataset" not in result.stderr
    run = tmp_path / "runs" / "quickstart"
    record = json.loads((run / "eval" / "results.json").read_text())
    assert record["step"] == 4 and record["images"] == 4
    assert "step 4: mIoU" in result.stdout and "striped_disc" in result.stdout
    for name in ("checkpoint", "SavedModel", "predictions", "per-class IoU chart"):
        assert name in result.stdout
    assert (run / "export" / "saved_model.pb").exists()
    pictures = sorted((run / "predictions").glob("*.png"))
    assert len(pictures) == 2
    # image | ground truth | prediction | overlay, each at the image's own size
    assert np.asarray(Image.open(pictures[0])).shape == (65, 4 * 81, 3)
    for plot in ("class_iou.png", "confusion_matrix.png"):
        assert Image.open(run / "eval" / plot).format == "PNG"
