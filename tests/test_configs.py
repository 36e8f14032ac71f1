"""Typed, safe overrides and the JSON round-trip of experiment configs."""
import dataclasses

import pytest

from deeplab_tf import configs
from deeplab_tf.configs import ConfigError, ExperimentConfig, apply_overrides


def test_overrides_are_typed():
    c = apply_overrides(ExperimentConfig(), "train.steps=100,train.base_lr=0.01,"
                        "model.multi_grid=(1,2,2),data.crop_size=[321,321],"
                        "model.image_pooling=false,model.aspp_rates=none,eval.scales=(0.5,1.0)")
    assert c.train.steps == 100 and isinstance(c.train.steps, int)
    assert c.train.base_lr == 0.01
    assert c.model.multi_grid == (1, 2, 2)
    assert c.data.crop_size == (321, 321)
    assert c.model.image_pooling is False
    assert c.model.aspp_rates is None
    assert c.eval.scales == (0.5, 1.0)
    assert ExperimentConfig().train.steps == 30000  # the original is untouched


@pytest.mark.parametrize("text,match", [
    ("train.stepz=3", "unknown key 'train.stepz'.*train.steps"),
    ("train.steps=1.5", "train.steps='1.5': expected int"),
    ("train.steps=__import__('os').system('x')", "expected int"),
    ("model.output_stride=12", "model.output_stride=12"),
    ("data.crop_size=(0,0)", "data.crop_size"),
    ("train.base_lr=-0.1", "train.base_lr=-0.1"),
    ("data.crop_size=(1,2,3)", "expected 2 values"),
    ("nonsense", "section.key=value"),
])
def test_bad_overrides_are_clear_errors(text, match):
    with pytest.raises(ConfigError, match=match):
        apply_overrides(ExperimentConfig(), text)


def test_json_round_trip(tmp_path):
    c = apply_overrides(ExperimentConfig(name="x"), "model.depths=(1,1,1,3),eval.pad_to=(513,513)")
    configs.save_json(c, tmp_path / "c.json")
    assert configs.load_json(tmp_path / "c.json") == c


def test_unknown_key_in_json(tmp_path):
    d = configs.to_dict(ExperimentConfig())
    d["train"]["lr"] = 1
    with pytest.raises(ConfigError, match="train.lr"):
        configs.from_dict(d)


def test_out_of_range_value_in_json_is_the_error_an_override_gives():
    """from_dict validates as apply_overrides does: a config.json edited by hand to
    output_stride 7 is refused when read, not deep inside the model builder."""
    d = configs.to_dict(ExperimentConfig())
    d["model"]["output_stride"] = 7
    with pytest.raises(ConfigError, match="model.output_stride=7"):
        configs.from_dict(d)


def test_model_kwargs_cover_the_builder():
    import inspect
    from deeplab_tf.modeling import DeepLabV3
    kwargs = configs.model_kwargs(ExperimentConfig().model, 21)
    # weight_decay is train.weight_decay: train_lib sets it (set_weight_decay) for training.
    params = set(inspect.signature(DeepLabV3.__init__).parameters) - {
        "self", "kwargs", "backbone_weights", "input_normalization", "upsample_logits",
        "weight_decay"}
    assert params <= set(kwargs)
    fields = {f.name for f in dataclasses.fields(configs.ModelConfig)}
    assert set(kwargs) - {"num_classes", "sync_bn"} <= fields
