"""Segmentation metrics from a confusion matrix: per-class IoU, mIoU, pixel accuracy.

The paper reports "mean pixel intersection-over-union (mIOU) averaged across the 21
classes" (Sec. 4). Every number here derives from one confusion matrix:

  * rows are ground-truth classes, columns predicted classes (`tf.math.confusion_matrix`);
  * pixels whose ground truth is the ignore value (255: VOC object borders, Cityscapes
    void) never enter it, whatever the prediction;
  * IoU_c = TP_c / (TP_c + FP_c + FN_c), i.e. diag / (row sum + column sum - diag);
  * a class absent from both the ground truth and the predictions (union 0) has no
    defined IoU: it is reported as NaN and left out of the mean, as the original
    research/deeplab (`tf.metrics.mean_iou`) does. A class present in the ground truth
    but never predicted, or predicted but absent, counts with IoU 0.

Under a `tf.distribute` strategy, `ConfusionMatrixAccumulator` keeps one matrix per replica
(an ON_READ variable) and sums them once, when the result is read.
"""
import numpy as np
import tensorflow as tf


def confusion_matrix(labels, predictions, num_classes, ignore_label=255):
    """Confusion matrix (int64 [C, C]; rows = ground truth) of one batch, ignored pixels out.

    Args:
      labels: ground-truth class ids, any shape (e.g. [N, H, W] or [N, H, W, 1]).
      predictions: predicted class ids, the same number of elements as `labels`.
      num_classes: C.
      ignore_label: ground-truth value whose pixels are left out.
    Raises:
      InvalidArgumentError: a label other than `ignore_label`, or a prediction, at or
        above C (a dataset / model mismatch must not pass silently).
    """
    labels = tf.reshape(tf.cast(labels, tf.int64), [-1])
    predictions = tf.reshape(tf.cast(predictions, tf.int64), [-1])
    keep = tf.not_equal(labels, ignore_label)
    labels = tf.boolean_mask(labels, keep)
    predictions = tf.boolean_mask(predictions, keep)
    checks = [tf.debugging.assert_less(
        values, tf.constant(num_classes, tf.int64),
        message=f"{what} outside 0..{num_classes - 1} (ignore value {ignore_label}): do the "
                f"dataset and the model have the same classes?")
        for what, values in (("ground-truth labels", labels), ("predictions", predictions))]
    with tf.control_dependencies(checks):
        return tf.math.confusion_matrix(labels, predictions, num_classes=num_classes,
                                        dtype=tf.int64)


class ConfusionMatrixAccumulator:
    """A running confusion matrix, one per replica, summed once when read.

    Create it inside `strategy.scope()` when evaluating under a strategy; call `update` in
    replica context (inside `strategy.run`) and `result` in cross-replica context.
    """

    def __init__(self, num_classes, ignore_label=255):
        self.num_classes = int(num_classes)
        self.ignore_label = int(ignore_label)
        self.matrix = tf.Variable(
            tf.zeros([self.num_classes, self.num_classes], tf.int64), trainable=False,
            name="confusion_matrix", synchronization=tf.VariableSynchronization.ON_READ,
            aggregation=tf.VariableAggregation.SUM)

    def update(self, labels, predictions):
        self.matrix.assign_add(
            confusion_matrix(labels, predictions, self.num_classes, self.ignore_label))

    def reset(self):
        # Under a strategy an ON_READ variable is assigned per replica; the zeros reach all.
        self.matrix.assign(tf.zeros_like(self.matrix.read_value()))

    def result(self):
        """The summed matrix as a NumPy int64 array."""
        return np.asarray(self.matrix.read_value())


def per_class_iou(matrix):
    """IoU of each class (float64 [C]); NaN where the class is in neither labels nor
    predictions."""
    matrix = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(matrix)
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)


def mean_iou(matrix):
    """Mean of the defined per-class IoUs (classes absent from both sides left out);
    NaN if the matrix is empty."""
    iou = per_class_iou(matrix)
    return float(np.nanmean(iou)) if np.any(~np.isnan(iou)) else float("nan")


def pixel_accuracy(matrix):
    """Correct pixels / counted pixels (ignored pixels are not counted)."""
    matrix = np.asarray(matrix, dtype=np.float64)
    total = matrix.sum()
    return float(np.trace(matrix) / total) if total else float("nan")


def summarize(matrix, class_names):
    """A JSON-ready dict: miou, pixel_accuracy, per-class IoU by name (None when undefined),
    pixel counts, and the matrix itself."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for "
                         f"{len(class_names)} class names")
    iou = per_class_iou(matrix)
    return {
        "miou": _json_float(mean_iou(matrix)),
        "pixel_accuracy": _json_float(pixel_accuracy(matrix)),
        "per_class_iou": {name: _json_float(v) for name, v in zip(class_names, iou)},
        "classes_in_mean": int(np.sum(~np.isnan(iou))),
        "pixels": int(matrix.sum()),
        "confusion_matrix": matrix.tolist(),
    }


def _json_float(value):
    # JSON has no NaN: an undefined IoU is null.
    return None if np.isnan(value) else float(value)
