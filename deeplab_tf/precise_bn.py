"""BN moving statistics: precise BN, and a warning when a run is too short for them.

BN layers keep moving (EMA) statistics, `moving = momentum * moving + (1 - momentum) * batch`,
used at inference. After s steps the initial values (mean 0, variance 1) still weigh
momentum**s, and the EMA averages over ~1/(1 - momentum) steps of changing weights: a short
run (e.g. 150 steps at momentum 0.99: 0.99**150 = 0.22) evaluates far below what its batch
statistics give, silently. Two answers:

* `recompute` (precise BN, Detectron2's PreciseBN; Wu & Johnson 2021, "Rethinking Batch in
  BatchNorm"): with the final weights, no weight update, run N training batches forward and set
  every trainable BN layer's moving mean and variance to the equal-weight mean of the batch
  means and of the batch variances. `train.precise_bn_batches=N` does it before the final
  checkpoint. Frozen BN layers (model.freeze_bn, trainable=False) are left untouched. Under
  MirroredStrategy (synchronized BN) the batch statistics are those of the global batch; every
  worker runs the same N batches (the training input repeats).
* `convergence_warning`: the message deeplab-train and deeplab-eval print when momentum**steps
  is still above `INITIAL_WEIGHT_LIMIT` and precise BN was not applied, naming the fixes.
"""
import keras
import numpy as np
import tensorflow as tf

from deeplab_tf.modeling.layers import all_layers
from deeplab_tf.progress import Progress

INITIAL_WEIGHT_LIMIT = 0.05   # momentum**steps above this: the EMA has not converged


def bn_layers(model):
    """Every BatchNormalization layer whose statistics train, nested ones included."""
    return [layer for layer in all_layers(model)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recompute(model, iterator, num_batches, strategy=None, progress=True):
    """Sets each trainable BN layer's moving mean/variance to the mean over `num_batches`
    batches (from `iterator`, distributed values of `strategy` if given, else plain dicts
    with "image") of its batch means and batch variances. Returns the layers updated."""
    strategy = strategy or tf.distribute.get_strategy()
    layers = bn_layers(model)
    momenta = [layer.momentum for layer in layers]
    sums = [[np.zeros(layer.moving_mean.shape, np.float64),
             np.zeros(layer.moving_variance.shape, np.float64)] for layer in layers]
    bar = Progress(num_batches, unit="batch", desc="precise BN", enabled=progress)
    try:
        for layer in layers:   # momentum 0: the moving statistics become the batch's own
            layer.momentum = 0.0

        @tf.function
        def forward(batch):
            strategy.run(lambda b: model(b["image"], training=True), args=(batch,))

        for i in range(num_batches):
            forward(next(iterator))
            for layer, acc in zip(layers, sums):
                acc[0] += np.asarray(layer.moving_mean.numpy(), np.float64)
                acc[1] += np.asarray(layer.moving_variance.numpy(), np.float64)
            bar.update(i + 1)
        bar.close()
        for layer, (mean, var) in zip(layers, sums):
            layer.moving_mean.assign((mean / num_batches).astype("float32"))
            layer.moving_variance.assign((var / num_batches).astype("float32"))
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return layers


def initial_weight(momentum, steps):
    """The weight the initial moving statistics still have after `steps` EMA updates."""
    return float(momentum) ** max(int(steps), 0)


def convergence_warning(momentum, steps, precise_bn_batches=0, freeze_bn=False):
    """A message when the BN moving statistics cannot have converged, else None."""
    if precise_bn_batches > 0 or freeze_bn or momentum == 0:
        return None
    left = initial_weight(momentum, steps)
    if left <= INITIAL_WEIGHT_LIMIT:
        return None
    needed = int(np.ceil(np.log(INITIAL_WEIGHT_LIMIT) / np.log(momentum)))
    return (f"BN moving statistics have not converged: {steps} steps at model.bn_momentum="
            f"{momentum} leave {left:.0%} weight on their initial values (EMA window "
            f"{1 / (1 - momentum):.0f} steps), so inference-mode accuracy can be far below "
            f"training's. Fix: recompute them with train.precise_bn_batches=N (e.g. 100), "
            f"or train >= {needed} steps, or lower model.bn_momentum")
