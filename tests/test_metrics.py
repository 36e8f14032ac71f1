"""Confusion-matrix metrics against an independent NumPy computation. The accumulator under
2 replicas is tested in test_eval_lib.py (one subprocess holds one MirroredStrategy)."""
import json

import numpy as np
import pytest
import tensorflow as tf

from deeplab_tf import metrics


def _numpy_confusion(labels, predictions, num_classes, ignore=255):
    """Pixel by pixel, with no bincount trick: the reference the library is checked against."""
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for t, p in zip(labels.ravel(), predictions.ravel()):
        if t != ignore:
            matrix[t, p] += 1
    return matrix


def _numpy_miou(labels, predictions, num_classes, ignore=255):
    """IoU from pixel sets per class; classes in neither labels nor predictions skipped."""
    keep = labels != ignore
    ious = []
    for c in range(num_classes):
        truth, pred = (labels == c) & keep, (predictions == c) & keep
        union = np.count_nonzero(truth | pred)
        if union:
            ious.append(np.count_nonzero(truth & pred) / union)
    return np.mean(ious), np.count_nonzero(labels[keep] == predictions[keep]) / keep.sum()


def _random_maps(seed, num_classes=6, shape=(3, 17, 23), absent=(4,)):
    rng = np.random.default_rng(seed)
    classes = [c for c in range(num_classes) if c not in absent]
    labels = rng.choice(classes, shape).astype(np.uint8)
    labels[rng.random(shape) < 0.2] = 255
    predictions = np.where(rng.random(shape) < 0.6, labels, rng.choice(classes, shape))
    predictions[predictions == 255] = classes[0]   # a model never predicts the ignore value
    return labels, predictions.astype(np.int64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_numpy_on_random_maps_with_ignored_pixels(seed):
    labels, predictions = _random_maps(seed)
    matrix = metrics.confusion_matrix(labels, predictions, 6).numpy()
    np.testing.assert_array_equal(matrix, _numpy_confusion(labels, predictions, 6))
    assert matrix.sum() == np.count_nonzero(labels != 255)
    miou, accuracy = _numpy_miou(labels, predictions, 6)
    assert metrics.mean_iou(matrix) == pytest.approx(miou, abs=1e-12)
    assert metrics.pixel_accuracy(matrix) == pytest.approx(accuracy, abs=1e-12)


def test_class_absent_from_both_sides_is_left_out_of_the_mean():
    labels, predictions = _random_maps(3, absent=(4,))
    matrix = metrics.confusion_matrix(labels, predictions, 6).numpy()
    iou = metrics.per_class_iou(matrix)
    assert np.isnan(iou[4]) and np.count_nonzero(np.isnan(iou)) == 1
    assert metrics.mean_iou(matrix) == pytest.approx(np.mean(np.delete(iou, 4)))
    summary = metrics.summarize(matrix, [f"c{i}" for i in range(6)])
    assert summary["per_class_iou"]["c4"] is None and summary["classes_in_mean"] == 5
    json.dumps(summary, allow_nan=False)   # null, not NaN, in the JSON results


def test_class_present_but_never_predicted_counts_as_zero():
    labels = np.array([[0, 0, 1, 1]])
    predictions = np.array([[0, 0, 0, 0]])
    matrix = metrics.confusion_matrix(labels, predictions, 3).numpy()
    np.testing.assert_allclose(metrics.per_class_iou(matrix), [0.5, 0.0, np.nan])
    assert metrics.mean_iou(matrix) == pytest.approx(0.25)


def test_ignored_pixels_never_counted_whatever_the_prediction():
    labels = np.full((4, 4), 255, np.uint8)
    labels[0, 0] = 1
    predictions = np.full((4, 4), 2)
    matrix = metrics.confusion_matrix(labels, predictions, 3).numpy()
    assert matrix.sum() == 1 and matrix[1, 2] == 1


def test_label_outside_the_classes_is_an_error():
    with pytest.raises(tf.errors.InvalidArgumentError, match="ground-truth labels outside 0..2"):
        metrics.confusion_matrix(np.array([0, 7]), np.array([0, 0]), 3)


def test_accumulator_sums_batches():
    acc = metrics.ConfusionMatrixAccumulator(6)
    expected = 0
    for seed in range(3):
        labels, predictions = _random_maps(seed)
        acc.update(labels, predictions)
        expected = expected + _numpy_confusion(labels, predictions, 6)
    np.testing.assert_array_equal(acc.result(), expected)
    acc.reset()
    assert acc.result().sum() == 0
