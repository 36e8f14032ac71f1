"""Tests for the Figure 4 reproduction (DeepLabv3 Sec. 3.3)."""
import csv
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from deeplab_tf.analysis import fig4


def _brute_force(rate, size, kernel=3):
    """Places the dilated kernel at every position and counts in-bounds taps.

    Deliberately 2-D throughout (no per-axis factorisation), so it checks the
    library's product trick rather than repeating it.
    """
    half = kernel // 2
    dy, dx = np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij")
    dy, dx = dy.ravel() * rate, dx.ravel() * rate  # (kernel*kernel,) tap offsets
    y, x = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    ty, tx = y[..., None] + dy, x[..., None] + dx  # (size, size, taps)
    inside = (ty >= 0) & (ty < size) & (tx >= 0) & (tx < size)
    counts = inside.sum(axis=-1)
    return {n: np.count_nonzero(counts == n) / size**2 for n in (1, 4, 9)}


def _assert_matches_brute_force(result, size, kernel=3):
    for i, r in enumerate(result.rate):
        want = _brute_force(int(r), size, kernel)
        assert result.one[i] == pytest.approx(want[1], abs=1e-15), r
        assert result.four[i] == pytest.approx(want[4], abs=1e-15), r
        assert result.nine[i] == pytest.approx(want[9], abs=1e-15), r


def test_matches_brute_force_paper_setting():
    result = fig4.valid_weight_fractions()
    np.testing.assert_array_equal(result.rate, np.arange(1, 65))
    _assert_matches_brute_force(result, 65)


@pytest.mark.parametrize("size,kernel", [(33, 3), (20, 3), (17, 5)])
def test_matches_brute_force_other_settings(size, kernel):
    result = fig4.valid_weight_fractions(range(1, size + 3), size=size, kernel=kernel)
    _assert_matches_brute_force(result, size, kernel)


def test_known_values():
    result = fig4.valid_weight_fractions([1, 65, 100])
    # Rate 1: every position except the one-pixel border sees all 9 taps.
    assert round(result.nine[0] * 65**2) == 63**2
    assert result.nine[0] == pytest.approx((63 / 65) ** 2, rel=1e-15)
    # Rate >= size: any non-centre tap is at least `size` away, so it falls off the map.
    np.testing.assert_array_equal(result.one[1:], 1.0)
    np.testing.assert_array_equal(result.four[1:], 0.0)
    np.testing.assert_array_equal(result.nine[1:], 0.0)

    small = fig4.valid_weight_fractions([1, 9], size=9)
    assert small.nine[0] == pytest.approx((7 / 9) ** 2, rel=1e-15)
    assert small.one[1] == 1.0


@pytest.mark.parametrize(
    "kwargs", [dict(rates=[0]), dict(rates=[]), dict(size=0), dict(kernel=4)]
)
def test_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        fig4.valid_weight_fractions(**kwargs)


def _run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.fig4", *args],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )


def test_cli_writes_png_and_csv(tmp_path):
    proc = _run_cli("--output_dir", "tmp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "tmp"
    assert sorted(os.listdir(out)) == ["fig4.csv", "fig4.png"]  # no temp files left over
    assert "fig4.png" in proc.stdout and "fig4.csv" in proc.stdout

    with Image.open(out / "fig4.png") as img:
        assert img.format == "PNG"
        assert 300 <= img.width <= 3000 and 200 <= img.height <= 3000

    with open(out / "fig4.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["rate", "one", "four", "nine"]
    assert len(rows) == 1 + 64
    table = np.array(rows[1:], dtype=np.float64)
    want = fig4.valid_weight_fractions()
    np.testing.assert_array_equal(table[:, 0], want.rate)
    np.testing.assert_array_equal(table[:, 1], want.one)
    np.testing.assert_array_equal(table[:, 2], want.four)
    np.testing.assert_array_equal(table[:, 3], want.nine)


@pytest.mark.parametrize("args,flag", [(["--size", "2"], "--size"), (["--max_rate", "0"], "--max_rate")])
def test_cli_rejects_bad_flag(tmp_path, args, flag):
    proc = _run_cli("--output_dir", "tmp", *args, cwd=tmp_path)
    assert proc.returncode != 0
    assert flag in proc.stderr
    assert not (tmp_path / "tmp").exists()
