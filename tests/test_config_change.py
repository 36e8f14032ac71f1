"""deeplab_tf/config_change.py: every config key is classified once; the check on a
model_dir (model_dir.check_resume) reads its stored config and decides without writing."""
import dataclasses

import pytest

from deeplab_tf import config_change, configs, fileio
from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf.data.metadata import DatasetMetadata

META = DatasetMetadata("toy", ("background", "a", "b"))


def test_every_config_key_is_classified_exactly_once():
    keys = set(configs.valid_keys(configs.ExperimentConfig()))
    assert keys <= set(config_change.ALLOWED) | set(config_change.REFUSED)
    assert not set(config_change.ALLOWED) & set(config_change.REFUSED)


def fake_model_dir(path, config, checkpoint=True):
    """A model_dir as check_resume sees it: config, dataset, a checkpoint's index."""
    model_dir_lib.write_config(path, config, META)
    if checkpoint:
        ckpt = model_dir_lib.checkpoint_dir(path)
        fileio.write_text(fileio.join(ckpt, "ckpt-4.index"), "")
        fileio.write_text(fileio.join(ckpt, "checkpoint"),
                          'model_checkpoint_path: "ckpt-4"\n')
    return path


@pytest.mark.parametrize("override,allowed", [
    ("model.output_stride=8", False), ("model.depths=(3,4,6,3)", False),
    ("data.crop_size=(321,321)", False), ("train.batch_size=8", False),
    ("data.seed=1", False), ("train.steps=40000", True), ("eval.flip=true", True)])
def test_a_change_is_refused_or_allowed_with_the_flag(tmp_path, override, allowed):
    stored = configs.ExperimentConfig()
    model_dir = fake_model_dir(str(tmp_path), stored)
    requested = configs.apply_overrides(stored, override)
    key = override.split("=")[0]
    for allow in (False, True):
        if allowed and allow:
            diffs = model_dir_lib.check_resume(model_dir, requested, META, allow)
            assert [d[0] for d in diffs] == [key]
            continue
        with pytest.raises(config_change.ConfigChangeError) as error:
            model_dir_lib.check_resume(model_dir, requested, META, allow)
        line = [l for l in str(error.value).splitlines() if l.strip().startswith(key + ":")]
        assert len(line) == 1 and ("allowed with --allow_config_change" in line[0]) == allowed


def test_other_classes_are_refused_and_a_fresh_or_checkpointless_dir_is_not_checked(tmp_path):
    stored = configs.ExperimentConfig()
    model_dir = fake_model_dir(str(tmp_path / "a"), stored)
    other = DatasetMetadata("toy", ("background", "a", "b", "c"))
    with pytest.raises(config_change.ConfigChangeError, match="dataset.class_names"):
        model_dir_lib.check_resume(model_dir, stored, other, True)
    assert model_dir_lib.check_resume(model_dir, stored, META) == []
    changed = dataclasses.replace(stored, train=dataclasses.replace(stored.train, steps=1))
    assert model_dir_lib.check_resume(str(tmp_path / "none"), changed) == []
    no_ckpt = fake_model_dir(str(tmp_path / "b"), stored, checkpoint=False)
    assert model_dir_lib.check_resume(no_ckpt, changed) == []


def test_write_config_keeps_the_replaced_config_by_step(tmp_path):
    stored = configs.ExperimentConfig()
    model_dir = fake_model_dir(str(tmp_path), stored)
    first = fileio.read_text(fileio.join(model_dir, "config.json"))
    for steps in (40000, 50000):
        changed = configs.apply_overrides(stored, f"train.steps={steps}")
        model_dir_lib.write_config(model_dir, changed, META)
    assert fileio.read_text(fileio.join(model_dir, "config-4.json")) == first
    assert configs.load_json(fileio.join(model_dir, "config-4.2.json")).train.steps == 40000
    assert configs.load_json(fileio.join(model_dir, "config.json")).train.steps == 50000
    assert not fileio.exists(fileio.join(model_dir, "dataset-4.json"))   # unchanged
