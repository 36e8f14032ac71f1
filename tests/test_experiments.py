"""Every experiment preset builds a valid config whose model matches the paper's setting."""
import pytest

import experiments
from deeplab_tf import configs
from deeplab_tf.configs import ConfigError


@pytest.mark.parametrize("name", experiments.names())
def test_every_preset_is_valid(name):
    config = experiments.get_config(name)
    configs.validate(config)
    assert configs.from_dict(configs.to_dict(config)) == config
    assert config.name == name or name == config.name.split(".")[0]


def test_paper_settings():
    stage1 = experiments.get_config("voc_r101_os16_aspp")
    assert (stage1.model.output_stride, stage1.model.multi_grid) == (16, (1, 2, 4))
    assert (stage1.train.batch_size, stage1.train.steps, stage1.train.base_lr) == (16, 30000, 0.007)
    assert stage1.model.bn_momentum == 0.9997 and stage1.data.crop_size == (513, 513)
    stage2 = experiments.get_config("voc_r101_os8_aspp_stage2")
    assert stage2.model.freeze_bn and stage2.model.output_stride == 8
    assert stage2.train.base_lr == 0.001 and "bicycle" in stage2.data.bootstrap_classes
    assert experiments.get_config("voc_r101_from_coco").train.base_lr == 0.0001
    t1 = experiments.get_config("table1_output_stride.os256")
    assert (t1.model.extra_blocks, t1.model.head, t1.model.output_stride) == (3, "cascade", 256)
    t3 = experiments.get_config("table3_multi_grid.mg121_block7")
    assert t3.model.multi_grid == (1, 2, 1) and t3.model.extra_blocks == 3
    t5 = experiments.get_config("table5_aspp.mg124_aspp4")
    assert t5.model.aspp_rates == (6, 12, 18, 24) and not t5.model.image_pooling
    t6 = experiments.get_config("table6_aspp_inference.os8_ms_flip")
    assert t6.eval.output_stride == 8 and len(t6.eval.scales) == 6 and t6.eval.flip


def test_table1_model_reaches_its_output_stride():
    import keras
    from deeplab_tf.modeling import build_deeplabv3
    config = experiments.get_config("table1_output_stride.os256")
    kwargs = configs.model_kwargs(config.model, 21)
    kwargs.update(upsample_logits=False, width_multiplier=0.125)
    model = build_deeplabv3(**kwargs)
    assert tuple(model.compute_output_spec(keras.KerasTensor((1, 513, 513, 3))).shape) == \
        (1, 3, 3, 21)


def test_unknown_experiment_lists_the_available_ones():
    with pytest.raises(ConfigError, match="voc_r101_os16_aspp"):
        experiments.get_config("voc_r999")
    with pytest.raises(ConfigError, match="os8"):
        experiments.get_config("table1_output_stride.os12")
