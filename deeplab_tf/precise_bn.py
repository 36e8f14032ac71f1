"""BatchNorm statistics for inference: whether a run's moving averages can have converged,
and "precise BN", which recomputes them (Detectron2's PreciseBN; Wu & Johnson 2021,
"Rethinking 'Batch' in BatchNorm", Sec. 3).

A BN layer's moving mean/variance is an exponential average with `momentum` m: after n
steps its initial value (0 and 1) still weighs m**n, and it trails the changing weights by
about 1/(1-m) steps. A run too short for its momentum (the quickstart's tiny model at
m = 0.99 after 150 steps keeps 22% of the initial values) trains well with batch statistics
and evaluates badly with the moving ones: inference-mode accuracy on its own training
images fell from 0.88 to 0.34 in such a run. `convergence_warning` says so, naming the fix;
`recompute` replaces the moving statistics with the equal-weight average of the batch
statistics over N training batches with the final weights (no weight changes).
"""
import itertools

import keras

# The initial value's weight m**steps above which the moving statistics are reported as
# not converged: at m = 0.99, fewer than 459 steps; at the paper's 0.9997, fewer than 15,350.
RESIDUAL_LIMIT = 0.01
PRECISE_BN_KEY = "train.precise_bn_batches"
MARKER = "precise_bn.json"   # in the model_dir: {"step": ..., "batches": ...}


def convergence_warning(momentum, steps, precise_bn=False, initialized=False):
    """The warning for a run of `steps` steps at BN `momentum`, or None when its moving
    statistics can have converged, were recomputed (`precise_bn`), or started from a
    trained model's (`initialized`: init_checkpoint, frozen BN)."""
    if precise_bn or initialized or steps <= 0:
        return None
    residual = momentum ** steps
    if residual <= RESIDUAL_LIMIT:
        return None
    needed = _steps_for(momentum)
    return (f"BatchNorm moving statistics have not converged: at model.bn_momentum={momentum} "
            f"{steps} steps leave {residual:.0%} of their initial values, so inference "
            f"(evaluation, export, predict) can be far worse than training suggests. Fix: "
            f"{PRECISE_BN_KEY}=100 recomputes them from training batches at the end of "
            f"training (deeplab-train --params_override), or train at least {needed} steps, or lower "
            f"model.bn_momentum")


def _steps_for(momentum):
    import math
    return int(math.ceil(math.log(RESIDUAL_LIMIT) / math.log(momentum)))


def bn_layers(model):
    """Every BatchNormalization layer that trains (nested ones included); frozen ones
    (trainable False: the two-stage recipe's stage 2) keep their statistics."""
    return [layer for layer in model._flatten_layers(include_self=False)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


def recompute(model, images, num_batches, progress=True):
    """Sets every training BN layer's moving mean and variance to the mean over
    `num_batches` batches of `images` (an iterable of float [b, h, w, 3] batches) of its
    batch mean and batch variance, computed with the model's current weights. Runs
    eagerly, one replica; the weights do not change. Returns the number of batches used."""
    layers = bn_layers(model)
    saved = [layer.momentum for layer in layers]
    bar = keras.utils.Progbar(num_batches, verbose=1 if progress else 0)
    used = 0
    try:
        for i, batch in enumerate(itertools.islice(images, num_batches)):
            for layer in layers:   # moving = moving * i/(i+1) + batch / (i+1): the mean
                layer.momentum = i / (i + 1)
            model(batch, training=True)
            used = i + 1
            bar.update(used)
    finally:
        for layer, momentum in zip(layers, saved):
            layer.momentum = momentum
    return used


def applied(model_dir, step):
    """Whether precise BN recomputed the statistics of `model_dir`'s checkpoint at `step`."""
    from deeplab_tf import fileio
    path = fileio.join(model_dir, MARKER)
    if not fileio.isfile(path):
        return False
    try:
        return int(fileio.read_json(path).get("step", -1)) == int(step)
    except (ValueError, TypeError, AttributeError):
        return False
