"""research/deeplab (TF-slim) checkpoints converted into model_dirs: the logits equal an
independent forward pass of the slim variables (slim_reference.py); what is not used is
reported; what does not fit is refused, naming the variable."""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import slim_reference as ref
from deeplab_tf import model_dir
from deeplab_tf.convert import convert_checkpoint

CASES = {
    # Real ResNet-50 and ASPP shapes (7x7 stem: RGB minus the mean).
    "resnet_v1_50": dict(scope="resnet_v1_50", depths=(3, 4, 6, 3), width=1.0, beta=False,
                         filters=256),
    # ResNet-101 beta (three 3x3 convs, [-1, 1] inputs) at a quarter of the width.
    "resnet_v1_101_beta": dict(scope="resnet_v1_101", depths=(3, 4, 23, 3), width=0.25,
                               beta=True, filters=32),
}
TINY = ref.TINY_CASE
variables = ref.case_variables


def raw_logits_model(path, output_stride):
    """The model_dir's model as the tools load it, returning logits before upsampling."""
    model, _, _ = model_dir.load_model(path, output_stride=output_stride)
    return keras.Model(model.inputs, model.get_layer("logits").output)


@pytest.mark.parametrize("name", CASES)
def test_logits_equal_research_deeplab(tmp_path, name):
    case = CASES[name]
    v = variables(case)
    ref.write_checkpoint(tmp_path / "model.ckpt-30000", dict(v, global_step=np.int64(30000)))
    result = convert_checkpoint("slim", str(tmp_path / "model.ckpt-30000"), str(tmp_path / "run"))
    assert result.unmapped_model == []
    assert result.unmapped_checkpoint == ["global_step"]
    assert sorted(result.mapped.values()) == sorted(v)
    x = np.random.default_rng(1).uniform(0, 255, (2, 129, 129, 3)).astype(np.float32)
    # Trained at output stride 16, evaluated at 16 and at 8 (ASPP rates doubled, Sec. 4.1).
    for output_stride, rates in ((16, (6, 12, 18)), (8, (12, 24, 36))):
        expected = ref.forward(v, x, case["scope"], case["depths"], case["beta"], (1, 2, 4),
                               output_stride, rates)
        got = raw_logits_model(tmp_path / "run", output_stride).predict(x, verbose=0)
        k = 128 // output_stride + 1
        assert got.shape == expected.shape == (2, k, k, 5)
        error = np.abs(got - expected).max() / np.abs(expected).max()
        assert error <= 1e-5, (output_stride, error)


def test_unused_variables_are_reported(tmp_path):
    v = variables(TINY, num_classes=3)
    extra = {"resnet_v1_50/logits/weights": np.zeros((1, 1, 256, 1000), np.float32),
             "aspp0/weights/Momentum": v["aspp0/weights"], "global_step": np.int64(7)}
    ref.write_checkpoint(tmp_path / "ckpt", dict(v, **extra))
    result = convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))
    assert result.unmapped_checkpoint == sorted(extra)
    assert sorted(result.unmapped_state) == ["aspp0/weights/Momentum", "global_step"]
    summary = result.summary()
    assert "resnet_v1_50/logits/weights" in summary and "not used: 2 variables" in summary
    report = json.loads((tmp_path / "run" / "conversion.json").read_text())
    assert report["unmapped_checkpoint"] == sorted(extra)
    assert report["mapped"]["aspp_project_conv/kernel"] == "concat_projection/weights"
    assert report["architecture"]["input_normalization"] == "rgb_mean"


def test_shape_mismatch_is_refused(tmp_path):
    v = variables(TINY)
    v["aspp2/weights"] = v["aspp2/weights"][..., :-1]
    ref.write_checkpoint(tmp_path / "ckpt", v)
    with pytest.raises(ValueError, match=r"aspp2/weights has shape \[3, 3, 256, 7\], model "
                                         r"variable aspp_2_conv/kernel expects \[3, 3, 256, 8\]"):
        convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))
    assert not os.path.exists(tmp_path / "run")


def test_missing_variables_need_allow_partial(tmp_path):
    v = variables(TINY)
    del v["aspp2/BatchNorm/gamma"]
    ref.write_checkpoint(tmp_path / "ckpt", v)
    with pytest.raises(ValueError, match="aspp_2_bn/gamma"):
        convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))
    result = convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"),
                                allow_partial=True)
    assert result.unmapped_model == ["aspp_2_bn/gamma"]
    with pytest.raises(FileExistsError, match="run exists"):
        convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))
    convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"),
                       allow_partial=True, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["ckpt.data-00000-of-00001", "ckpt.index", "run"]


def test_backbone_only_checkpoint(tmp_path):
    """An ImageNet TF-slim checkpoint: the head stays initialized, and is listed."""
    v = {k: a for k, a in variables(TINY).items() if k.startswith("resnet_v1_50/")}
    ref.write_checkpoint(tmp_path / "ckpt", v)
    with pytest.raises(ValueError, match="no logits: pass num_classes"):
        convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))
    result = convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"),
                                num_classes=4, allow_partial=True)
    assert len(result.mapped) == len(v)
    assert "logits/kernel" in result.unmapped_model
    assert all(n.startswith(("aspp", "logits")) for n in result.unmapped_model)


@pytest.mark.parametrize("extra,message", [
    ("decoder/decoder_conv0_0/weights", "DeepLabv3\\+ decoder"),
    ("aspp1_depthwise/depthwise_weights", "separable ASPP"),
    ("logits/semantic_1/weights", "DeepLab v2"),
])
def test_other_architectures_are_refused(tmp_path, extra, message):
    ref.write_checkpoint(tmp_path / "ckpt", dict(variables(TINY), **{extra: np.zeros(1)}))
    with pytest.raises(ValueError, match=message):
        convert_checkpoint("slim", str(tmp_path / "ckpt"), str(tmp_path / "run"))


def test_command_line_then_predict(tmp_path):
    """deeplab-convert-checkpoint writes a model_dir that deeplab-predict loads."""
    ref.write_checkpoint(tmp_path / "train" / "model.ckpt-5", variables(TINY, num_classes=21))
    # A training directory: its `checkpoint` file names the latest checkpoint.
    (tmp_path / "train" / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-5"\n')
    bin_dir = os.path.dirname(sys.executable)
    convert = [os.path.join(bin_dir, "deeplab-convert-checkpoint"), "--source=slim",
               f"--checkpoint={tmp_path / 'train'}", f"--model_dir={tmp_path / 'run'}"]
    done = subprocess.run(convert, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "checkpoint variables not used (0)" in done.stdout
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)).save(
        tmp_path / "photo.png")
    predict = subprocess.run(
        [os.path.join(bin_dir, "deeplab-predict"), f"--model_dir={tmp_path / 'run'}",
         f"--input={tmp_path / 'photo.png'}", f"--output_dir={tmp_path / 'out'}"],
        capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "out"))
    config, metadata = model_dir.read_config(tmp_path / "run")
    assert metadata.class_names[15] == "person" and config.model.layout == "slim"


def test_command_line_on_ram():
    """deeplab-convert-checkpoint reads a checkpoint from and writes its model_dir to TF's
    in-memory filesystem (the gs:// code path), in-process: the logits are still slim's."""
    from tools_in_process import run_tool
    from deeplab_tf import fileio
    root = f"ram://convert-{os.getpid()}"
    v = variables(TINY)
    ref.write_checkpoint(f"{root}/train/model.ckpt-5", v)
    try:
        assert run_tool("convert_checkpoint", "--source=slim",
                        f"--checkpoint={root}/train/model.ckpt-5",
                        f"--model_dir={root}/run") == 0
        assert fileio.read_json(f"{root}/run/conversion.json")["unmapped_model"] == []
        x = np.random.default_rng(1).uniform(0, 255, (1, 65, 65, 3)).astype(np.float32)
        expected = ref.forward(v, x, TINY["scope"], TINY["depths"], TINY["beta"], (1, 2, 4),
                               16, (6, 12, 18))
        got = raw_logits_model(f"{root}/run", 16).predict(x, verbose=0)
        assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
        assert sorted(fileio.listdir(root)) == ["run", "train"]   # no staging folder left
    finally:
        fileio.rmtree(root)
