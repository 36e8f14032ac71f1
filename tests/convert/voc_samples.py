"""The 8 real VOC samples (../shared/data/voc2012_samples/) as the released DeepLabv3
MobileNetV2 TFLite models see them, and a NumPy mIoU: shared by the tests that run those
models (test_tflite_import.py, test_int8_export.py)."""
import numpy as np
from PIL import Image

from conftest import SHARED, VOC_SAMPLES

MODELS = SHARED / "models"
SIZE = 513


def samples():
    """(513x513x3 uint8 image, 513x513 ground truth with 255 outside, (h, w) of the image)
    for sample_0..7: research/deeplab's convention, the longer side resized to 513, padded
    at the bottom/right with the mean, 128 in uint8 = the models' zero point."""
    out = []
    for i in range(8):
        image = Image.open(VOC_SAMPLES / "JPEGImages" / f"sample_{i}.jpg").convert("RGB")
        gt = Image.open(VOC_SAMPLES / "SegmentationClass" / f"sample_{i}.png")
        scale = SIZE / max(image.size)
        w, h = round(image.size[0] * scale), round(image.size[1] * scale)
        x = np.full((SIZE, SIZE, 3), 128, np.uint8)
        x[:h, :w] = np.asarray(image.resize((w, h), Image.BILINEAR))
        g = np.full((SIZE, SIZE), 255, np.uint8)
        g[:h, :w] = np.asarray(gt.resize((w, h), Image.NEAREST))
        out.append((x, g, (h, w)))
    return out


def miou(pairs, num_classes=21):
    """NumPy mIoU of (prediction, ground truth) pairs over the classes present in either
    (ground truth 255 ignored)."""
    conf = np.zeros((num_classes, num_classes), np.int64)
    for pred, gt in pairs:
        m = gt != 255
        conf += np.bincount(num_classes * gt[m].astype(np.int64) + pred[m],
                            minlength=num_classes ** 2).reshape(num_classes, num_classes)
    inter = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - inter
    return float(np.mean(inter[union > 0] / union[union > 0]))
