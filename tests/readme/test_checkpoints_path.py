"""The README's research/deeplab import as typed: a TF-slim DeepLabv3 checkpoint (written
with research/deeplab's variable names, tests/convert/slim_reference.py) converted, then
evaluated on the VOC samples padded to 513 as the original evaluates."""
import json
import sys

import numpy as np

from . import readme

sys.path.insert(0, str(readme.REPO / "tests" / "convert"))
import slim_reference  # noqa: E402


def test_convert_slim_then_evaluate(tmp_path):
    readme.voc_records(tmp_path)
    variables = slim_reference.slim_variables(
        "resnet_v1_50", (2, 2, 2, 3), 0.125, False, 21, 8, np.random.default_rng(0))
    (tmp_path / "deeplab_run").mkdir()
    slim_reference.write_checkpoint(tmp_path / "deeplab_run" / "model.ckpt-30000", variables)
    done = readme.run(readme.command("convert_slim"), tmp_path)
    assert "checkpoint variables not used (0)" in done.stdout
    done = readme.run(readme.command("eval_slim"), tmp_path)
    results = json.loads((tmp_path / "runs" / "from_slim" / "eval" / "results.json").read_text())
    assert results["images"] == 2 and results["protocol"]["pad_to"] == [513, 513]
