"""Wrong and damaged research/deeplab checkpoints given to deeplab-convert-checkpoint: a ResNet
checkpoint as MobileNetV2 and back, a truncated data file, a damaged or empty index, the
model zoo's archive itself, a detection model's MobileNetV2, channels of no depth
multiplier, a block missing. Each is a clear error naming the file (and the variable where
one is at fault), with nothing written; a checkpoint's own file given for its prefix is
read as the prefix."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from convert import mnv2_reference as mnv2
from convert import slim_reference as resnet
from deeplab_tf.convert import convert_checkpoint

BIN = os.path.dirname(sys.executable)
DATA = ".data-00000-of-00001"


def mnv2_variables():
    return mnv2.slim_variables(0.5, 1, 1, np.random.default_rng(0), num_classes=3, filters=8)


def resnet_variables():
    return resnet.slim_variables("resnet_v1_50", (1, 1, 1, 1), 0.125, False, 3, 8,
                                 np.random.default_rng(0))


def convert_cli(source, checkpoint, output_dir):
    return subprocess.run([os.path.join(BIN, "deeplab-convert-checkpoint"), "--source", source,
                           "--checkpoint", str(checkpoint), "--model_dir", str(output_dir)],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("given,source,words", [
    ("resnet", "slim_mobilenet_v2", "a TF-slim ResNet checkpoint (resnet_v1_50/...), not "
                                    "MobileNetV2: convert it with source 'slim'"),
    ("mobilenet", "slim", "a MobileNetV2 checkpoint (MobilenetV2/...), not a resnet_v1_* one: "
                          "convert it with source 'slim_mobilenet_v2'")])
def test_the_other_family_is_named(tmp_path, ledger, given, source, words):
    ledger.inputs()
    v = resnet_variables() if given == "resnet" else mnv2_variables()
    mnv2.write_checkpoint(tmp_path / "model.ckpt-30000", v)
    with pytest.raises(ValueError) as error:
        convert_checkpoint(source, str(tmp_path / "model.ckpt-30000"), str(tmp_path / "run"))
    assert str(error.value) == f"{tmp_path / 'model.ckpt-30000'}: {words}"
    assert not (tmp_path / "run").exists()


def test_a_truncated_data_file_is_named_by_the_command(tmp_path, ledger):
    """As users type it: exit status 2, the error and no traceback (every ValueError of a
    conversion takes this path)."""
    ledger.injected()
    mnv2.write_checkpoint(tmp_path / "model.ckpt-30000", mnv2_variables())
    data = tmp_path / f"model.ckpt-30000{DATA}"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])   # an interrupted copy
    done = convert_cli("slim_mobilenet_v2", tmp_path / "model.ckpt-30000", tmp_path / "run")
    assert done.returncode == 2, done.stdout + done.stderr
    assert re.search(rf"{re.escape(str(tmp_path / 'model.ckpt-30000'))}: checkpoint variable "
                     r"MobilenetV2/\S+ cannot be read \(a truncated or damaged data file\?\)",
                     done.stderr), done.stderr
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt-30000" + DATA, "model.ckpt-30000.index"]
    ledger.survived()


def _damaged(tmp_path, case):
    """The path given, and what the error must say."""
    prefix = tmp_path / "model.ckpt-30000"
    v = mnv2_variables()
    if case == "index_truncated":
        mnv2.write_checkpoint(prefix, v)
        index = tmp_path / "model.ckpt-30000.index"
        index.write_bytes(index.read_bytes()[:100])
        return prefix, "not a readable TensorFlow checkpoint: "
    if case == "index_empty":
        mnv2.write_checkpoint(prefix, v)
        (tmp_path / "model.ckpt-30000.index").write_bytes(b"")
        return prefix, "not a readable TensorFlow checkpoint: file is too short"
    if case == "archive":
        archive = tmp_path / "deeplabv3_mnv2_pascal_train_aug_2018_01_29.tar.gz"
        archive.write_bytes(b"\x1f\x8b\x08\x00" + bytes(range(256)) * 4)
        return archive, "not a readable TensorFlow checkpoint (extract the archive first"
    if case == "detection_model":
        mnv2.write_checkpoint(prefix, {f"FeatureExtractor/{k}": a for k, a in v.items()})
        return prefix, "MobileNetV2 variables under 'FeatureExtractor/' (e.g. an object " \
                       "detection model)"
    if case == "no_depth_multiplier":   # stage 2 (blocks 1, 2) at 20 channels
        for name in ("MobilenetV2/expanded_conv_1/project/weights",
                     "MobilenetV2/expanded_conv_2/project/weights"):
            v[name] = np.concatenate([v[name], v[name][..., :8]], axis=-1)
        mnv2.write_checkpoint(prefix, v)
        return prefix, "output channels [16, 8, 20, 20, 16, " \
                       "16, 16, 32, 32, 32, 32, 48, 48, 48, 80, 80, 80, 160] (stem, then"
    if case == "block_missing":
        mnv2.write_checkpoint(prefix, {k: a for k, a in v.items()
                                       if "/expanded_conv_16/" not in k})
        return prefix, "MobilenetV2/expanded_conv_16/project/weights missing"
    if case == "expand_mismatch":
        v["MobilenetV2/expanded_conv_5/expand/weights"] = \
            v["MobilenetV2/expanded_conv_5/expand/weights"][..., :-8]
        mnv2.write_checkpoint(prefix, v)
        return prefix, "shape mismatch: checkpoint variable MobilenetV2/expanded_conv_5/" \
                       "expand/weights has shape [1, 1, 16, 88], model variable " \
                       "block_5_expand/kernel expects [1, 1, 16, 96]"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["index_truncated", "index_empty", "archive",
                                  "detection_model", "no_depth_multiplier", "block_missing",
                                  "expand_mismatch"])
def test_damaged_or_wrong_checkpoints_are_clear_errors(tmp_path, ledger, case):
    damaged = case.startswith("index")
    ledger.injected() if damaged else ledger.inputs()
    given, words = _damaged(tmp_path, case)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(ValueError) as error:
        convert_checkpoint("slim_mobilenet_v2", str(given), str(tmp_path / "run"))
    assert str(error.value).startswith(f"{given}: "), str(error.value)
    assert words in str(error.value), str(error.value)
    assert sorted(os.listdir(tmp_path)) == before   # nothing written, nothing left
    if damaged:
        ledger.survived()


@pytest.mark.parametrize("suffix", [".index", DATA])
def test_a_checkpoint_file_is_read_as_its_prefix(tmp_path, ledger, suffix):
    ledger.inputs()
    v = mnv2_variables()
    mnv2.write_checkpoint(tmp_path / "model.ckpt-30000", v)
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / f"model.ckpt-30000{suffix}"),
                                str(tmp_path / "run"))
    assert result.checkpoint == str(tmp_path / "model.ckpt-30000")
    assert result.unmapped_model == [] and sorted(result.mapped.values()) == sorted(v)
