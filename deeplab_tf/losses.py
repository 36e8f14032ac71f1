"""The training loss: softmax cross-entropy over the non-ignored pixels of the GLOBAL batch,
plus weight decay in TF-slim's convention (Sec. 4.1).
"""
import tensorflow as tf

from deeplab_tf.modeling.layers import Conv, all_layers


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


def weight_decay_loss(model, weight_decay):
    """weight_decay * sum(w^2) / 2 over convolution kernels (TF-slim `l2_regularizer`
    semantics, i.e. Keras L2(weight_decay / 2)); biases, BN and frozen kernels excluded."""
    # Recursive: convs nested in composite layers (ASPP image pooling) count too.
    kernels = [layer.kernel for layer in all_layers(model)
               if isinstance(layer, Conv) and layer.trainable]
    if not weight_decay or not kernels:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(tf.cast(k, tf.float32)) for k in kernels])


def replica_loss(labels, logits, model, weight_decay, ignore_label=255):
    """The loss one replica minimizes so that the SUM of replica gradients (what Keras 3
    optimizers apply under tf.distribute) is the gradient of the global-batch loss.

    Each replica divides its pixel-loss sum by the all-reduced count of valid pixels of the
    whole global batch; weight decay is divided by the replica count so it counts once.
    Returns (loss to differentiate, global mean cross-entropy for logging).
    """
    ctx = tf.distribute.get_replica_context()
    loss_sum, count = pixel_cross_entropy(labels, logits, ignore_label)
    replicas = 1
    if ctx is not None and ctx.num_replicas_in_sync > 1:
        count = ctx.all_reduce(tf.distribute.ReduceOp.SUM, count)
        replicas = ctx.num_replicas_in_sync
    ce = loss_sum / tf.maximum(count, 1.0)
    return ce + weight_decay_loss(model, weight_decay) / replicas, ce
