"""deeplab-summary's counts against the peers' independent analytic count."""
import importlib.util
import json
import subprocess
import sys

import pytest

from conftest import SHARED
from deeplab_tf.analysis.complexity import summarize
from deeplab_tf.modeling import build_deeplabv3


def peer_flops():
    path = SHARED / "peers" / "deeplab_flops.py"
    spec = importlib.util.spec_from_file_location("deeplab_flops", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("output_stride", [8])
def test_macs_equal_the_analytic_count(output_stride):
    # The analytic count strides in the first unit's 3x3 with SAME padding: layout "garden".
    model = build_deeplabv3(21, backbone="resnet101", output_stride=output_stride,
                            layout="garden")
    ours = summarize(model, 129, 129)
    counter, _ = peer_flops().deeplabv3_r101(size=129, os_=output_stride, stem="v0",
                                             head="paper", sched="garden")
    nominal, valid, _ = counter.total()
    assert ours["total"]["macs"] == nominal
    assert ours["total"]["valid_macs"] == valid
    for stage, prefix in [("stem", "stem"), ("block1", "res2"), ("block2", "res3"),
                          ("block3", "res4"), ("block4", "res5"), ("aspp", "aspp")]:
        assert ours[stage]["macs"] == counter.total(prefix)[0], stage
    assert ours["total"]["params"] == model.count_params()


def test_cli(tmp_path):
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [sys.executable, "-m", "deeplab_tf.tools.summary", "--backbone", "resnet_tiny",
         "--width_multiplier", "0.125", "--output_stride", "8", "--input_size", "65x97",
         "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| block4 |" in result.stdout
    table = json.loads(out.read_text())
    assert table["total"]["macs"] == sum(v["macs"] for k, v in table.items() if k != "total")
    bad = subprocess.run([sys.executable, "-m", "deeplab_tf.tools.summary", "--output_stride",
                          "12", "--backbone", "resnet_tiny"], capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode != 0 and "output_stride=12" in bad.stderr
