"""research/deeplab's MobileNetV2 DeepLabv3 as TF-slim checkpoint variables and a forward
pass, written from TF-slim's nets/mobilenet (mobilenet.py, mobilenet_v2.py V2_DEF,
conv_blocks.expanded_conv) and research/deeplab (core/feature_extractor._mobilenet_v2,
model.py's head), independently of deeplab_tf.modeling: names and shapes by slim's rules,
tf.nn for the backbone, NumPy for the head.
"""
import numpy as np
import tensorflow as tf

SCOPE = "MobilenetV2"
EPS = 1e-3          # slim.batch_norm's default: mobilenet's training_scope sets no epsilon
HEAD_EPS = 1e-5     # model.py: utils.get_batch_norm_params(epsilon=1e-5)
# V2_DEF's spec up to layer_18 (research/deeplab's final endpoint): the stem conv, then
# expanded_conv ops as (stride, num_outputs); the first has expansion 1 (no expand conv).
BLOCKS = [(1, 16), (2, 24), (1, 24), (2, 32), (1, 32), (1, 32), (2, 64), (1, 64), (1, 64),
          (1, 64), (1, 96), (1, 96), (1, 96), (2, 160), (1, 160), (1, 160), (1, 320)]


def _make_divisible(v, divisor, min_value=None):
    """conv_blocks._make_divisible / mobilenet._make_divisible."""
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def block_scope(i):
    return f"{SCOPE}/expanded_conv" + (f"_{i}" if i else "")


def architecture(depth_multiplier, divisible_by, min_depth):
    """[(scope, kind, stride, in, out)] up to layer_18: kind conv | expand | depthwise |
    project. mobilenet.depth_multiplier scales num_outputs (divisible_by, min_depth);
    expand_input_by_factor(6) rounds the expansion to 8 whatever the multiplier."""
    def depth(d):
        return _make_divisible(d * depth_multiplier, divisible_by, min_depth)
    stem = depth(32)
    layers = [(f"{SCOPE}/Conv", "conv", 2, 3, stem)]
    cin = stem
    for i, (stride, outputs) in enumerate(BLOCKS):
        out = depth(outputs)
        inner = cin if i == 0 else _make_divisible(cin * 6, 8)
        if inner > cin:
            layers.append((f"{block_scope(i)}/expand", "expand", 1, cin, inner))
        layers.append((f"{block_scope(i)}/depthwise", "depthwise", stride, inner, inner))
        layers.append((f"{block_scope(i)}/project", "project", 1, inner, out))
        cin = out
    return layers


def slim_variables(depth_multiplier, divisible_by, min_depth, rng, num_classes=None,
                   filters=16, image_pooling=True):
    """{name: array}: MobileNetV2's variables with slim's names and shapes (random values,
    BN statistics included), plus research/deeplab's head when num_classes is given."""
    v = {}

    def bn(scope, c):
        v[f"{scope}/BatchNorm/gamma"] = rng.uniform(0.5, 1.5, c)
        v[f"{scope}/BatchNorm/beta"] = rng.normal(0, 0.2, c)
        v[f"{scope}/BatchNorm/moving_mean"] = rng.normal(0, 0.2, c)
        v[f"{scope}/BatchNorm/moving_variance"] = rng.uniform(0.5, 2.0, c)

    cin = 0
    for scope, kind, _, cin, cout in architecture(depth_multiplier, divisible_by, min_depth):
        if kind == "depthwise":
            v[f"{scope}/depthwise_weights"] = rng.normal(0, np.sqrt(2 / 9), (3, 3, cin, 1))
        else:
            k = 3 if kind == "conv" else 1
            v[f"{scope}/weights"] = rng.normal(0, np.sqrt(2 / (k * k * cin)), (k, k, cin, cout))
        bn(scope, cout)
    if num_classes is not None:
        features = cout
        branches = ["image_pooling", "aspp0"] if image_pooling else ["aspp0"]
        for scope in branches:
            v[f"{scope}/weights"] = rng.normal(0, np.sqrt(2 / features), (1, 1, features, filters))
            bn(scope, filters)
        cat = len(branches) * filters
        v["concat_projection/weights"] = rng.normal(0, np.sqrt(2 / cat), (1, 1, cat, filters))
        bn("concat_projection", filters)
        v["logits/semantic/weights"] = rng.normal(0, np.sqrt(1 / filters),
                                                  (1, 1, filters, num_classes))
        v["logits/semantic/biases"] = rng.normal(0, 0.5, num_classes)
    return {k: np.asarray(a, np.float32) for k, a in v.items()}


def features(v, images, output_stride):
    """mobilenet_base(..., output_stride, final_endpoint='layer_18') on raw RGB images,
    preprocessed as feature_extractor's _preprocess_zero_mean_unit_range."""
    def bn(x, scope, eps=EPS):
        p = f"{scope}/BatchNorm/"
        return (x - v[p + "moving_mean"]) / np.sqrt(v[p + "moving_variance"] + eps) \
            * v[p + "gamma"] + v[p + "beta"]

    x = tf.constant(images, tf.float32) * (2 / 255) - 1
    # mobilenet_base: the stride accumulates; once it equals output_stride, a layer's
    # stride becomes 1 with the current rate, and the rate is multiplied by its stride.
    current, rate = 1, 1

    def plan(stride):
        nonlocal current, rate
        if current == output_stride:
            layer_rate, rate = rate, rate * stride
            return 1, layer_rate
        current *= stride
        return stride, 1

    s, _ = plan(2)
    x = tf.nn.relu6(bn(tf.nn.conv2d(x, v[f"{SCOPE}/Conv/weights"], s, "SAME"),
                       f"{SCOPE}/Conv"))
    for i, (stride, _) in enumerate(BLOCKS):
        s, r = plan(stride)
        scope = block_scope(i)
        y = x
        if f"{scope}/expand/weights" in v:
            y = tf.nn.relu6(bn(tf.nn.conv2d(y, v[f"{scope}/expand/weights"], 1, "SAME"),
                               f"{scope}/expand"))
        y = tf.nn.depthwise_conv2d(y, v[f"{scope}/depthwise/depthwise_weights"],
                                   [1, s, s, 1], "SAME", dilations=[r, r])
        y = tf.nn.relu6(bn(y, f"{scope}/depthwise"))
        y = bn(tf.nn.conv2d(y, v[f"{scope}/project/weights"], 1, "SAME"), f"{scope}/project")
        if s == 1 and y.shape[-1] == x.shape[-1]:     # expanded_conv's residual
            y = y + x
        x = y
    return x.numpy()


def head(v, feats):
    """model.py's DeepLabv3 head in NumPy on the features of a crop-sized image: the image
    pooling branch (global mean, 1x1, BN, ReLU, broadcast), aspp0 (1x1, BN, ReLU),
    concatenated in that order, concat_projection (1x1, BN, ReLU), logits/semantic."""
    def conv_bn_relu(x, scope):
        p = f"{scope}/BatchNorm/"
        y = np.einsum("bhwc,cd->bhwd", x, v[f"{scope}/weights"][0, 0])
        y = (y - v[p + "moving_mean"]) / np.sqrt(v[p + "moving_variance"] + HEAD_EPS) \
            * v[p + "gamma"] + v[p + "beta"]
        return np.maximum(y, 0)

    feats = feats.astype(np.float64)
    branches = []
    if "image_pooling/weights" in v:
        pooled = conv_bn_relu(feats.mean(axis=(1, 2), keepdims=True), "image_pooling")
        branches.append(np.broadcast_to(pooled, feats.shape[:3] + pooled.shape[3:]))
    branches.append(conv_bn_relu(feats, "aspp0"))
    y = conv_bn_relu(np.concatenate(branches, axis=3), "concat_projection")
    return np.einsum("bhwc,cd->bhwd", y, v["logits/semantic/weights"][0, 0]) \
        + v["logits/semantic/biases"]


def write_checkpoint(prefix, variables):
    """A name-based checkpoint, as TF1's tf.compat.v1.train.Saver writes for slim."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])
