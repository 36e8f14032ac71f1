"""Colour masks, overlays and the evaluation plots."""
import numpy as np
import pytest
from PIL import Image

from deeplab_tf import visualize
from deeplab_tf.data.metadata import CITYSCAPES, VOC


def test_colorize_uses_the_dataset_colours():
    labels = np.array([[0, 1, 255], [18, 2, 0]])
    np.testing.assert_array_equal(visualize.colorize(labels, CITYSCAPES.colormap())[1, 0],
                                  (119, 11, 32))   # bicycle
    voc = visualize.colorize(labels, VOC.colormap())
    np.testing.assert_array_equal(voc[0, 1], (128, 0, 0))     # aeroplane
    np.testing.assert_array_equal(voc[0, 2], (255, 255, 255))  # ignored
    with pytest.raises(ValueError, match="outside the colour map"):
        visualize.colorize(np.array([[300]]), VOC.colormap())


def test_overlay_blends():
    image = np.full((2, 3, 3), 100, np.uint8)
    labels = np.ones((2, 3), np.int64)
    out = visualize.overlay(image, labels, VOC.colormap(), alpha=0.25)
    np.testing.assert_array_equal(out[0, 0], np.round(0.75 * 100 + 0.25 * np.array([128, 0, 0])))
    with pytest.raises(ValueError, match="differ in size"):
        visualize.overlay(image, labels[:1], VOC.colormap())


def test_label_png_round_trip(tmp_path):
    labels = np.arange(12).reshape(3, 4)
    visualize.save_label_png(labels, tmp_path / "l.png")
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "l.png")), labels)
    visualize.save_label_png(labels * 100, tmp_path / "wide.png")   # ids above 255: 16-bit
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "wide.png")), labels * 100)


def _is_drawn_png(path, min_size):
    image = Image.open(path)
    assert image.format == "PNG" and min(image.size) >= min_size
    pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 5   # something is drawn, not a blank canvas


def test_plots_are_pngs(tmp_path):
    rng = np.random.default_rng(0)
    matrix = rng.integers(0, 1000, (21, 21)) + np.diag(rng.integers(1000, 9000, 21))
    matrix[4] = 0
    matrix[:, 4] = 0   # class 4 absent: its IoU is undefined
    iou = np.diag(matrix) / (matrix.sum(0) + matrix.sum(1) - np.diag(matrix) + 1e-9)
    iou[4] = np.nan
    visualize.plot_class_iou(iou, VOC.class_names, tmp_path / "iou.png")
    visualize.plot_confusion_matrix(matrix, VOC.class_names, tmp_path / "cm.png")
    _is_drawn_png(tmp_path / "iou.png", 300)
    _is_drawn_png(tmp_path / "cm.png", 500)
    with pytest.raises(ValueError, match="class names"):
        visualize.plot_confusion_matrix(matrix[:3, :3], VOC.class_names, tmp_path / "x.png")
