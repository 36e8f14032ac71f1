"""Valid-weight counts of a dilated 3x3 filter: the paper's Figure 4 (Sec. 3.3).

DeepLabv3 (Chen et al. 2017), Sec. 3.3, observes that with SAME zero padding a
3x3 atrous convolution on a 65x65 feature map applies fewer and fewer of its
weights to real features as the atrous rate grows: once the rate approaches the
map size only the centre tap lands inside the map, so the filter degenerates
into a 1x1 convolution and stops capturing long-range context. That is why the
improved ASPP adds an image-level (global average pooling) branch. Figure 4
plots, per rate, the fraction of output positions where exactly 1, 4 and 9 of
the 9 taps are valid; this module recomputes those curves.
"""
from __future__ import annotations

import dataclasses
from typing import Iterable

import numpy as np

from deeplab_tf import fileio


@dataclasses.dataclass(frozen=True)
class ValidWeightFractions:
    """Figure 4 curves: fractions of the size*size output positions.

    `one`, `four` and `nine` hold, per entry of `rate`, the fraction of output
    positions where exactly 1, 4 and 9 filter taps fall inside the feature map
    (taps on the zero padding do not count).
    """

    rate: np.ndarray
    one: np.ndarray
    four: np.ndarray
    nine: np.ndarray
    size: int
    kernel: int


def valid_weight_fractions(
    rates: Iterable[int] = range(1, 65), size: int = 65, kernel: int = 3
) -> ValidWeightFractions:
    """Computes the Figure 4 fractions for a `kernel`x`kernel` filter.

    A tap at offset (dy, dx) is valid at (y, x) iff both y + dy and x + dx lie
    inside the map, and the two conditions are independent, so the 2-D count
    of valid taps is exactly the product of the per-axis counts. Only the
    per-axis counts (rates x size) are computed; the 2-D counts are their outer
    product, which keeps the whole computation vectorised and exact (integers).
    """
    rate = np.asarray(list(rates), dtype=np.int64)
    if rate.ndim != 1 or rate.size == 0 or np.any(rate < 1):
        raise ValueError(f"rates must be a non-empty sequence of ints >= 1, got {rate}")
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    if kernel < 1 or kernel % 2 == 0:
        # Even kernels have no centre tap and asymmetric SAME padding; the
        # figure's argument (degeneration to the centre tap) needs an odd one.
        raise ValueError(f"kernel must be a positive odd int, got {kernel}")

    offsets = np.arange(kernel) - kernel // 2
    pos = np.arange(size)
    taps = pos[None, :, None] + rate[:, None, None] * offsets[None, None, :]
    per_axis = np.sum((taps >= 0) & (taps < size), axis=-1)  # (rates, size)
    counts = per_axis[:, :, None] * per_axis[:, None, :]  # (rates, size, size)

    def fraction(n: int) -> np.ndarray:
        return np.sum(counts == n, axis=(1, 2)) / float(size * size)

    return ValidWeightFractions(
        rate=rate, one=fraction(1), four=fraction(4), nine=fraction(9),
        size=size, kernel=kernel,
    )


def write_csv(path: str, result: ValidWeightFractions) -> None:
    """Writes `rate,one,four,nine`, one row per rate, floats in round-trip form."""

    # repr(float) is the shortest string that parses back to the same double.
    rows = [f"{int(r)},{float(a)!r},{float(b)!r},{float(c)!r}\n"
            for r, a, b, c in zip(result.rate, result.one, result.four, result.nine)]
    fileio.write_text(path, "rate,one,four,nine\n" + "".join(rows))


def plot(path: str, result: ValidWeightFractions) -> None:
    """Draws the three Figure 4 curves into a PNG at `path`."""
    # Figure + Agg canvas rather than pyplot: no global backend switch and no
    # figure registry to leak when called from library code or tests.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.8), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for values, label, style in (
        (result.one, "1 valid weight", "-o"),
        (result.four, "4 valid weights", "-s"),
        (result.nine, "9 valid weights", "-^"),
    ):
        ax.plot(result.rate, values, style, markersize=3, linewidth=1.5, label=label)
    ax.set_xlabel("atrous rate")
    ax.set_ylabel("normalized count")
    ax.set_xlim(0, int(result.rate.max()) + 1)
    ax.set_ylim(-0.02, 1.02)
    k, s = result.kernel, result.size
    ax.set_title(f"Valid weights of a {k}x{k} filter on a {s}x{s} feature map")
    ax.grid(True, alpha=0.3)
    # At the paper's settings the area above the 9/4-valid crossing stays empty.
    ax.legend(loc="upper left", bbox_to_anchor=(0.14, 0.99))
    fig.tight_layout()
    fileio.save_figure(path, fig)
