"""The README's "Start from released weights" path as a user follows it: research/deeplab's
released MobileNetV2 DeepLabv3 (../shared/models, a file the user downloads) converted,
then a photo segmented and the model exported, by the README's commands as typed."""
import numpy as np
from PIL import Image

from . import readme

SHARED = readme.REPO.parent / "shared"
VOC = SHARED / "data" / "voc2012_samples"


def test_convert_predict_export(tmp_path):
    (tmp_path / "deeplabv3_mnv2_pascal_quant.tflite").symlink_to(
        SHARED / "models" / "deeplabv3_mnv2_pascal_quant.tflite")
    (tmp_path / "photo.jpg").write_bytes((VOC / "JPEGImages" / "sample_4.jpg").read_bytes())
    readme.run(readme.command("convert_tflite"), tmp_path)
    readme.run(readme.command("predict_mnv2"), tmp_path)
    labels = [p for p in (tmp_path / "out").iterdir() if "label" in p.name]
    assert len(labels) == 1, sorted(p.name for p in (tmp_path / "out").iterdir())
    predicted = np.asarray(Image.open(labels[0]))
    truth = np.asarray(Image.open(VOC / "SegmentationClass" / "sample_4.png"))
    assert predicted.shape == truth.shape
    valid = truth != 255
    # The released model segments the VOC photo (independent: VOC's own ground truth).
    assert np.mean(predicted[valid] == truth[valid]) > 0.9
    assert set(np.unique(truth[valid])) <= set(np.unique(predicted)) | {0}

    readme.run(readme.command("export_mnv2"), tmp_path)
    assert (tmp_path / "export" / "mnv2" / "saved_model.pb").exists()
