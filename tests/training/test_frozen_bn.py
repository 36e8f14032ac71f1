"""The paper's two-stage recipe (Sec. 4.1): train at output stride 16, then continue at 8
from those weights with BN frozen (model.freeze_bn=true). Stage 2 must leave every BN
layer's moving mean/variance, gamma and beta exactly as stage 1 left them while the convs
keep learning, and must start from stage 1's weights through train.init_checkpoint."""
import logging

import numpy as np
import pytest

from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf import train_lib
from deeplab_tf.testing import tiny_config
from helpers import META, dataset_fn, max_relative_difference

BN_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


def weights(model_dir):
    model, config, _ = model_dir_lib.load_model(model_dir)
    return {v.path: v.numpy() for v in model.weights}, config


def is_bn(path):
    return path.rsplit("/", 1)[-1] in BN_WEIGHTS


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """One OS16 step with BN training (momentum 0.9): BN statistics and scales that are no
    longer their initial 0/1, so "unchanged" cannot pass by both sides being initial. Seed 1:
    other initial weights than stage 2's seed 0, so "started from stage 1" is not mere
    agreement of two fresh initializations."""
    model_dir = str(tmp_path_factory.mktemp("stage1") / "os16")
    train_lib.train(tiny_config("train.steps=1,train.seed=1"), model_dir, META, dataset_fn(4))
    w, config = weights(model_dir)
    assert config.model.output_stride == 16 and not config.model.freeze_bn
    moved = [k for k in w if k.endswith("/moving_mean") and np.any(w[k] != 0)]
    assert len(moved) == sum(k.endswith("/moving_mean") for k in w)   # every BN saw a batch
    return model_dir, w


def assert_bn_unchanged(before, after):
    bn = [k for k in before if is_bn(k)]
    # 23 BN layers: the stem's, 4 in each of the 4 stages' single block, 4 ASPP branches,
    # the projection, and image pooling's, which sits inside a custom layer.
    assert len(bn) == 4 * 23 and "aspp_pooling/bn/moving_mean" in bn, sorted(bn)
    changed = [k for k in bn if before[k].tobytes() != after[k].tobytes()]
    assert not changed, f"frozen BN weights changed: {changed}"


def test_frozen_bn_steps_keep_bn_bit_identical_while_convs_train(stage1, tmp_path):
    source, before = stage1
    config = tiny_config(f"train.steps=2,train.steps_per_loop=2,model.freeze_bn=true,"
                         f"train.init_checkpoint={source}")
    result = train_lib.train(config, str(tmp_path), META, dataset_fn(4))
    assert result.step == 2 and np.isfinite(result.loss)
    after, _ = weights(str(tmp_path))
    assert_bn_unchanged(before, after)
    kernels = [k for k in before if k.endswith("/kernel")]   # 23 convs before a BN, logits
    still = [k for k in kernels if np.array_equal(before[k], after[k])]
    assert len(kernels) == 24 and not still, f"kernels that did not train: {still}"


def test_os16_run_initializes_the_os8_frozen_bn_stage(stage1, tmp_path, caplog):
    source, before = stage1
    config = tiny_config(f"train.steps=1,model.output_stride=8,model.freeze_bn=true,"
                         f"train.init_checkpoint={source},train.base_lr=1e-9")
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.train"):
        train_lib.train(config, str(tmp_path), META, dataset_fn(4))
    assert f"initialized {len(before)} variables from {source}; skipped 0" in caplog.text
    after, stored = weights(str(tmp_path))
    assert stored.model.output_stride == 8 and stored.model.freeze_bn
    assert set(after) == set(before)   # same variables at either output stride
    # A step of lr 1e-9 moves nothing measurable: stage 2 holds stage 1's weights...
    assert max_relative_difference(after, before) <= 1e-6
    # ...and not those of a fresh initialization (seed 0), which are far from them.
    fresh = {v.path: v.numpy() for v in model_dir_lib.build_model(config, META).weights}
    assert max_relative_difference({k: after[k] for k in fresh if not is_bn(k)},
                                   {k: fresh[k] for k in fresh if not is_bn(k)}) > 0.1
    assert_bn_unchanged(before, after)
