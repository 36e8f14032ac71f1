"""A run too short for its BN momentum: inference-mode accuracy on its own training images
falls far below what the batch statistics give, and the tools say so (deeplab-train at the
end, deeplab-eval for the checkpoint), naming the fix; precise BN (train.precise_bn_batches)
recomputes the moving statistics from training batches, after which inference matches the
batch statistics and no warning is given (deeplab_tf/precise_bn.py)."""
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from deeplab_tf import model_dir as model_dir_lib
from deeplab_tf import precise_bn, train_lib
from deeplab_tf.data.converters import synthetic

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "training"))
import helpers  # noqa: E402

BIN = os.path.dirname(sys.executable)
SHORT = "train.steps=60,model.bn_momentum=0.99,train.checkpoint_every=60,train.base_lr=0.05"
IMAGES, LABELS = helpers.toy_examples(16, 33)


def _accuracy(logits):
    truth = LABELS[..., 0]
    valid = truth != 255
    return float((np.argmax(logits, -1)[valid] == truth[valid]).mean())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same short run twice (same seeds), the second with precise BN; the warnings
    each logged."""
    root = tmp_path_factory.mktemp("bn")
    out = {}
    for name, extra in (("plain", ""), ("precise", ",train.precise_bn_batches=4")):
        records = []
        handler = logging.Handler()
        handler.emit = records.append
        logger = logging.getLogger("deeplab_tf.train")
        logger.addHandler(handler)
        try:
            train_lib.train(helpers.tiny_config(SHORT + extra), str(root / name), helpers.META,
                            helpers.dataset_fn(4))
        finally:
            logger.removeHandler(handler)
        out[name] = (str(root / name), " ".join(r.getMessage() for r in records))
    return out


def test_short_run_warns_and_precise_bn_restores_inference_accuracy(runs, ledger):
    ledger.injected()
    (plain, plain_log), (precise, precise_log) = runs["plain"], runs["precise"]
    model, _, _ = model_dir_lib.load_model(plain)
    inference = _accuracy(model(IMAGES, training=False).numpy())
    batch = _accuracy(np.concatenate([model(IMAGES[i:i + 4], training=True).numpy()
                                      for i in range(0, 16, 4)]))
    assert batch - inference > 0.1, (batch, inference)   # the fault: measured 0.51 vs 0.34
    assert "have not converged" in plain_log and precise_bn.PRECISE_BN_KEY in plain_log
    model, _, _ = model_dir_lib.load_model(precise)
    recomputed = _accuracy(model(IMAGES, training=False).numpy())
    assert abs(recomputed - batch) < 0.05 and recomputed - inference > 0.08, (
        inference, batch, recomputed)                    # measured 0.48
    assert "have not converged" not in precise_log
    assert precise_bn.applied(precise, 60) and not precise_bn.applied(plain, 60)
    ledger.survived()


def test_precise_statistics_are_the_mean_of_batch_statistics(runs):
    """Against NumPy: the first BN layer's new moving mean and variance are the averages of
    its input's per-batch mean and (biased) variance; frozen BN layers keep theirs."""
    model, _, _ = model_dir_lib.load_model(runs["plain"][0])
    first = precise_bn.bn_layers(model)[0]
    frozen = precise_bn.bn_layers(model)[-1]
    frozen.trainable = False
    kept = [w.numpy().copy() for w in frozen.weights]
    weights = [w.numpy().copy() for w in model.trainable_weights]
    batches = [IMAGES[i:i + 4] for i in range(0, 16, 4)]
    feature = keras.Model(model.inputs, first.input)
    inputs = [feature(b, training=False).numpy().astype(np.float64) for b in batches]
    precise_bn.recompute(model, iter(batches), len(batches), progress=False)
    axes = (0, 1, 2)
    mean = np.mean([x.mean(axes) for x in inputs], 0)
    var = np.mean([x.var(axes) for x in inputs], 0)
    np.testing.assert_allclose(first.moving_mean.numpy(), mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(first.moving_variance.numpy(), var, rtol=1e-4, atol=1e-5)
    for before, w in zip(kept, frozen.weights):
        np.testing.assert_array_equal(before, w.numpy())
    for before, w in zip(weights, [w for w in model.trainable_weights]):
        np.testing.assert_array_equal(before, w.numpy())   # no weight changes


def test_the_tools_warn_as_users_run_them(tmp_path, ledger):
    """deeplab-train (2 steps at momentum 0.99) and deeplab-eval of its checkpoint both
    print the warning with the fix."""
    ledger.injected()
    synthetic.convert(str(tmp_path / "data" / "synthetic"), num_train=4, num_val=1,
                      image_size=(33, 33), num_shards=1, num_workers=1, progress=False)
    small = ("train.steps=2,train.steps_per_loop=1,train.checkpoint_every=2,"
             "train.batch_size=2,model.depths=(1,1,1,1),model.multi_grid=(1,),"
             "model.width_multiplier=0.125,model.aspp_filters=16,data.crop_size=(33,33),"
             "train.then_evaluate=false,train.then_export=false,train.then_predict=0")
    train = subprocess.run([os.path.join(BIN, "deeplab-train"), "--experiment=quickstart",
                            "--model_dir=run", f"--params_override={small}"],
                           capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert train.returncode == 0, train.stderr[-3000:]
    evaluate = subprocess.run([os.path.join(BIN, "deeplab-eval"), "--model_dir=run",
                               "--eval_scales=1.0", "--noadd_flipped_images",
                               "--eval_output_stride=16"],
                              capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr[-3000:]
    for run in (train, evaluate):
        text = run.stdout + run.stderr
        assert "have not converged" in text and "train.precise_bn_batches=100" in text, \
            text[-3000:]
    ledger.survived()
