"""The training loss: softmax cross-entropy over the non-ignored pixels of the GLOBAL batch,
plus weight decay in TF-slim's convention (Sec. 4.1), carried by the model's kernel
regularizers (`modeling.set_weight_decay`) so that `model.fit` and train_lib's loop minimize
the same objective. With `model.fit`, `keras.losses.SparseCategoricalCrossentropy(
from_logits=True, ignore_class=255)` is this module's cross-entropy.
"""
import tensorflow as tf


def pixel_cross_entropy(labels, logits, ignore_label=255):
    """(sum of pixel losses, number of valid pixels) of one replica's batch.

    labels: [B, H, W] or [B, H, W, 1] integer class ids, `ignore_label` where unlabeled.
    logits: [B, H, W, C] float (cast to float32). Ignored pixels contribute neither loss nor
    gradient (the ground truth is kept intact: logits are at the label resolution).
    """
    labels = tf.cast(labels, tf.int32)
    if labels.shape.rank == 4:
        labels = labels[..., 0]
    valid = tf.not_equal(labels, ignore_label)
    safe = tf.where(valid, labels, tf.zeros_like(labels))
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(safe, tf.cast(logits, tf.float32))
    ce = tf.where(valid, ce, tf.zeros_like(ce))
    return tf.reduce_sum(ce), tf.reduce_sum(tf.cast(valid, tf.float32))


def regularization_loss(model):
    """The sum of `model.losses`: the kernel regularizers that carry weight decay
    (`modeling.set_weight_decay`, TF-slim's weight_decay * sum(w^2) / 2 over trainable
    convolution kernels), exactly what `model.fit` adds to the compiled loss."""
    terms = [tf.cast(term, tf.float32) for term in model.losses]
    return tf.add_n(terms) if terms else tf.constant(0.0)


def replica_loss(labels, logits, model, ignore_label=255):
    """The loss one replica minimizes so that the SUM of replica gradients (what Keras 3
    optimizers apply under tf.distribute) is the gradient of the global-batch loss.

    Each replica divides its pixel-loss sum by the all-reduced count of valid pixels of the
    whole global batch; weight decay (the model's kernel regularizers, `regularization_loss`)
    is divided by the replica count so it counts once.
    Returns (loss to differentiate, global mean cross-entropy for logging).
    """
    ctx = tf.distribute.get_replica_context()
    loss_sum, count = pixel_cross_entropy(labels, logits, ignore_label)
    replicas = 1
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        replicas = ctx.num_replicas_in_sync
    ce = loss_sum / tf.maximum(count, 1.0)
    return ce + regularization_loss(model) / replicas, ce
