"""The README's "Train" and "Evaluate" commands as typed, on the real VOC samples in the
paper presets' record layout (training shrunk: readme.TINY_TRAIN): a run, the paper's
evaluation (output stride 8, six scales, flips), and the sidecar evaluator on the run."""
import json

from . import readme


def test_train_then_evaluate_as_the_paper(tmp_path):
    readme.voc_records(tmp_path)
    readme.run(readme.shrink(readme.command("train_voc")), tmp_path)
    run = tmp_path / "runs" / "voc_os16"
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["output_stride"] == 16 and config["model"]["multi_grid"] == [1, 2, 4]

    done = readme.run(readme.command("eval_paper"), tmp_path)
    results = json.loads((run / "eval" / "results.json").read_text())
    assert results["images"] == 2 and 0 <= results["miou"] <= 1
    protocol = results["protocol"]
    assert protocol["output_stride"] == 8 and protocol["flip"] is True
    assert protocol["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert "mIoU" in done.stdout

    # The sidecar evaluator on the finished run: its one checkpoint was evaluated above.
    done = readme.run(readme.command("eval_watch"), tmp_path, timeout=600)
    assert "step 2: evaluated before" in done.stdout
    (run / "eval" / "results-2.json").unlink()
    done = readme.run(readme.command("eval_watch"), tmp_path, timeout=600)
    assert "step 2: mIoU" in done.stdout
