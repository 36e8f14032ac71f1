"""Pictures of segmentations and of evaluation results.

Colour masks and overlays use the dataset's colour map (`DatasetMetadata.colormap()`: VOC,
Cityscapes or a custom one; the ignore value is white). The plots (per-class IoU bars,
row-normalized confusion matrix) are drawn with matplotlib's Agg canvas, without pyplot,
so they work headless and leave no global figure state behind.
"""
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from deeplab_tf import fileio


def colorize(labels, colormap):
    """RGB uint8 [H, W, 3] of class ids [H, W] through a (256, 3) colour map."""
    labels = np.asarray(labels)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(colormap):
        raise ValueError(f"labels in [{labels.min()}, {labels.max()}]: outside the colour "
                         f"map's 0..{len(colormap) - 1}")
    return np.asarray(colormap, dtype=np.uint8)[labels]


def overlay(image, labels, colormap, alpha=0.5):
    """The colour mask blended over the photo: (1 - alpha) * image + alpha * mask."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape[:2] != np.shape(labels):
        raise ValueError(f"image {image.shape[:2]} and labels {np.shape(labels)} differ in size")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha={alpha}: expected a value in [0, 1]")
    mask = colorize(labels, colormap).astype(np.float32)
    return np.round((1 - alpha) * image[..., :3] + alpha * mask).astype(np.uint8)


def save_label_png(labels, path):
    """Raw class ids as a single-channel PNG (8-bit; 16-bit when an id exceeds 255)."""
    labels = np.asarray(labels)
    dtype = np.uint8 if labels.max(initial=0) <= 255 else np.uint16
    fileio.save_image(path, labels.astype(dtype))


def _canvas(width, height):
    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def plot_class_iou(iou, class_names, path, title="Per-class IoU"):
    """Horizontal bar chart of per-class IoU (NaN: class absent, drawn as "n/a") with the
    mean IoU as a dashed line; writes a PNG."""
    iou = np.asarray(iou, dtype=np.float64)
    if len(iou) != len(class_names):
        raise ValueError(f"{len(iou)} IoU values for {len(class_names)} class names")
    figure = _canvas(7, 1.2 + 0.28 * len(class_names))
    ax = figure.add_subplot()
    rows = np.arange(len(class_names))
    ax.barh(rows, np.nan_to_num(iou), color="tab:blue")
    for row, value in zip(rows, iou):
        ax.text(min(np.nan_to_num(value), 0.88) + 0.01, row,
                "n/a" if np.isnan(value) else f"{100 * value:.1f}", va="center", fontsize=8)
    if np.any(~np.isnan(iou)):
        miou = float(np.nanmean(iou))
        ax.axvline(miou, color="tab:red", linestyle="--", label=f"mIoU {100 * miou:.2f}")
        ax.legend(loc="lower right")
    ax.set_yticks(rows, class_names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("IoU")
    ax.set_title(title)
    fileio.save_figure(path, figure, bbox_inches="tight")


def plot_confusion_matrix(matrix, class_names, path, title="Confusion matrix"):
    """Row-normalized confusion matrix (each ground-truth class sums to 1) as a PNG."""
    matrix = np.asarray(matrix, dtype=np.float64)
    n = len(class_names)
    if matrix.shape != (n, n):
        raise ValueError(f"matrix of shape {matrix.shape} for {n} class names")
    rows = matrix.sum(axis=1, keepdims=True)
    normalized = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    side = 2.5 + 0.35 * n
    figure = _canvas(side + 1, side)
    ax = figure.add_subplot()
    shown = ax.imshow(normalized, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(shown, ax=ax, fraction=0.046, label="fraction of the row's pixels")
    if n <= 30:   # numbers stay readable up to about Cityscapes' 19 classes
        for i, j in zip(*np.nonzero(normalized >= 0.005)):
            ax.text(j, i, f"{normalized[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="white" if normalized[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title)
    fileio.save_figure(path, figure, bbox_inches="tight")
