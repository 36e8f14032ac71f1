"""Bad flags and overrides through each tool's command line: unknown keys, wrong types,
out-of-range values, code in --params_override. Each is a clear error (exit status 1,
naming the flag or key, the value and what was expected) before any work starts: the
process never gets to write anything (its output folders stay absent) nor run the code."""
import os
import subprocess
import sys

import pytest

from conftest import REPO

CODE = "__import__('os').system('touch PWNED')"
TRAIN = ["train", "--experiment=quickstart", "--model_dir=run"]
CASES = [
    # an old flag name beside its new one; a --log_dir that cannot be a folder
    (["predict", "--model_dir=run", "--model=run", "--input=in", "--output_dir=out"],
     ["--model and --model_dir are one flag", "give --model_dir only"]),
    (TRAIN + ["--log_dir=/dev/null/logs"], ["--log_dir=/dev/null/logs: cannot write a log"]),
    # (tool and flags, words the error must contain)
    (TRAIN + ["--params_override=train.stepz=3"], ["unknown key 'train.stepz'", "train.steps"]),
    (TRAIN + ["--params_override=model.backbone_weight=none"],
     ["unknown key 'model.backbone_weight'"]),
    (TRAIN + ["--params_override=train.steps=ten"], ["train.steps='ten': expected int"]),
    (TRAIN + ["--params_override=train.then_export=maybe"],
     ["train.then_export='maybe': expected bool"]),
    (TRAIN + ["--params_override=model.output_stride=12"],
     ["model.output_stride=12: expected 8, 16 or 32"]),
    (TRAIN + ["--params_override=data.crop_size=(0,0)"],
     ["data.crop_size=(0, 0): expected positive sizes"]),
    (TRAIN + ["--params_override=data.crop_size=(513,513,3)"],
     ["data.crop_size='(513,513,3)': expected 2 values"]),
    (TRAIN + ["--params_override=train.base_lr=-0.007"], ["train.base_lr=-0.007: expected > 0"]),
    (TRAIN + ["--params_override=model.bn_momentum=1.5"], ["model.bn_momentum=1.5: expected"]),
    # Counts that make no sense at 0: no checkpoint kept (the run's work lost), a division
    # by zero in the loop, nothing trained.
    (TRAIN + ["--params_override=train.keep_checkpoints=0"],
     ["train.keep_checkpoints=0: expected >= 1"]),
    (TRAIN + ["--params_override=train.checkpoint_every=0"],
     ["train.checkpoint_every=0: expected >= 1"]),
    (TRAIN + ["--params_override=train.steps_per_loop=0"],
     ["train.steps_per_loop=0: expected >= 1"]),
    (TRAIN + ["--params_override=train.steps=0"], ["train.steps=0: expected >= 1"]),
    (TRAIN + ["--params_override=train.batch_size=-4"], ["train.batch_size=-4: expected >= 1"]),
    (TRAIN + ["--params_override=train.warmup_steps=-1"],
     ["train.warmup_steps=-1: expected >= 0"]),
    (TRAIN + [f"--params_override=train.steps={CODE}"], ["train.steps=", "expected int"]),
    (TRAIN + [f"--params_override=model.multi_grid=(1,2,{CODE})"], ["expected int"]),
    (TRAIN + [f"--params_override={CODE}"], ["expected section.key=value"]),
    (TRAIN + ["--strategy=bogus"], ["--strategy=bogus: value should be one of"]),
    (["train", "--experiment=table9", "--model_dir=run"], ["unknown experiment 'table9'"]),
    (["evaluate", "--model_dir=run", "--output_stride=12", "--output_dir=out"],
     ["--output_stride=12: expected one of (8, 16, 32"]),
    (["evaluate", "--model_dir=run", "--inference_scales=0.5,-1", "--output_dir=out"],
     ["--inference_scales=['0.5', '-1']: expected positive numbers"]),
    (["evaluate", "--model_dir=run", "--inference_scales=big", "--output_dir=out"],
     ["--inference_scales=['big']: expected positive numbers"]),
    (["evaluate", "--model_dir=run", "--pad_to=0", "--output_dir=out"],
     ["--pad_to=0: expected N or HxW"]),
    (["evaluate", "--model_dir=run", "--max_side=-5", "--output_dir=out"],
     ["--max_side=-5: expected a value > 0"]),
    (["export", "--model_dir=run", "--export_dir=out", "--output_stride=12"],
     ["--output_stride=12: expected one of"]),
    (["export", "--model_dir=run", "--export_dir=out", "--inference_scales=x"],
     ["--inference_scales=['x']: expected positive numbers"]),
    (["export", "--model_dir=run", "--export_dir=out", "--tflite_size=0x5"],
     ["--tflite_size=0x5: expected N or HxW"]),
    (["export", "--model_dir=run", "--export_dir=out", "--max_pixels=0"],
     ["--max_pixels=0: expected a value > 0"]),
    (["export", "--model_dir=run", "--export_dir=out", "--serving_memory_mb=0"],
     ["--serving_memory_mb=0: expected a value > 0"]),
    (["export", "--model_dir=run", "--export_dir=out", "--tflite_quantize=int4"],
     ["--tflite_quantize=int4: value should be one of"]),
    (["predict", "--model_dir=run", "--input=in", "--output_dir=out", "--output_stride=12"],
     ["--output_stride=12: expected one of"]),
    (["predict", "--model_dir=run", "--input=in", "--output_dir=out", "--alpha=2"],
     ["--alpha=2.0: expected a value in [0, 1]"]),
    (["predict", "--model_dir=run", "--input=in", "--output_dir=out", "--outputs=mask,movie"],
     ["--outputs=mask,movie: expected some of"]),
    (["predict", "--model_dir=run", "--input=in", "--output_dir=out", "--max_pixels=-1"],
     ["--max_pixels=-1: expected a value >= 0"]),
    (["predict", "--model_dir=run", "--input=in", "--output_dir=out", "--inference_scales=0"],
     ["--inference_scales=['0']: expected positive numbers"]),
]


@pytest.mark.parametrize("args,words", CASES, ids=[" ".join(c[0][:1] + c[0][-1:]) for c in CASES])
def test_bad_flag_is_a_clear_error_before_any_work(args, words, tmp_path, ledger):
    ledger.inputs()
    (tmp_path / "in").mkdir()   # an input folder for deeplab-predict; empty
    run = subprocess.run([sys.executable, "-m", f"deeplab_tf.tools.{args[0]}", *args[1:]],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 1, run.stderr[-2000:]
    for word in words:
        assert word in run.stderr, run.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["in"]   # no run/, out/, PWNED
    assert "Traceback" not in run.stderr
