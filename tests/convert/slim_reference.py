"""A research/deeplab (TF-slim) DeepLabv3 checkpoint and its forward pass, written from
research/deeplab's model.py, core/resnet_v1_beta.py and slim's resnet_utils, independently
of deeplab_tf.modeling: variables by name, tf.nn ops, slim's stride/rate bookkeeping.
"""
import numpy as np
import tensorflow as tf

EPS = 1e-5                                  # research/deeplab: BN epsilon 1e-5 everywhere
MEAN_RGB = np.array([123.15, 115.90, 103.06], np.float32)   # feature_extractor._MEAN_RGB


def slim_variables(scope, depths, width, beta, num_classes, filters, rng, rates=3):
    """{name: array} with TF-slim's names and shapes; random values, BN statistics included."""
    v = {}

    def conv(name, k, cin, cout, bias=False):
        v[f"{name}/weights"] = rng.normal(0, np.sqrt(2 / (k * k * cin)), (k, k, cin, cout))
        if bias:
            v[f"{name}/biases"] = rng.normal(0, 0.5, (cout,))
        else:
            bn = f"{name}/BatchNorm/"
            v[bn + "gamma"] = rng.uniform(0.5, 1.5, cout)
            v[bn + "beta"] = rng.normal(0, 0.2, cout)
            v[bn + "moving_mean"] = rng.normal(0, 0.2, cout)
            v[bn + "moving_variance"] = rng.uniform(0.5, 2.0, cout)

    w = lambda c: int(c * width)  # noqa: E731
    if beta:
        conv(f"{scope}/conv1_1", 3, 3, w(64))
        conv(f"{scope}/conv1_2", 3, w(64), w(64))
        conv(f"{scope}/conv1_3", 3, w(64), w(128))
        cin = w(128)
    else:
        conv(f"{scope}/conv1", 7, 3, w(64))
        cin = w(64)
    for b, units in enumerate(depths):
        base = w(64 * 2 ** b)
        for u in range(units):
            unit = f"{scope}/block{b + 1}/unit_{u + 1}/bottleneck_v1"
            if cin != 4 * base:
                conv(f"{unit}/shortcut", 1, cin, 4 * base)
            conv(f"{unit}/conv1", 1, cin, base)
            conv(f"{unit}/conv2", 3, base, base)
            conv(f"{unit}/conv3", 1, base, 4 * base)
            cin = 4 * base
    conv("image_pooling", 1, cin, filters)
    conv("aspp0", 1, cin, filters)
    for i in range(1, rates + 1):
        conv(f"aspp{i}", 3, cin, filters)
    conv("concat_projection", 1, (rates + 2) * filters, filters)
    conv("logits/semantic", 1, filters, num_classes, bias=True)
    return {k: a.astype(np.float32) for k, a in v.items()}


# A small slim checkpoint for tests of the conversion itself (not of the numbers).
TINY_CASE = dict(scope="resnet_v1_50", depths=(2, 2, 2, 3), width=0.125, beta=False, filters=8)


def case_variables(case, num_classes=5, seed=0):
    """`slim_variables` of a case dict (scope, depths, width, beta, filters)."""
    c = dict(case)
    return slim_variables(c["scope"], c["depths"], c["width"], c["beta"], num_classes,
                          c["filters"], np.random.default_rng(seed))


def write_checkpoint(prefix, variables):
    """A name-based (TF1/slim style) checkpoint, as tf.compat.v1.train.Saver writes."""
    names = sorted(variables)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(variables[n]) for n in names])


def forward(v, images, scope, depths, beta, multi_grid, output_stride, aspp_rates):
    """research/deeplab's logits (before any upsampling) for `images` of crop size."""
    def bn(x, name, relu=True):
        p = f"{name}/BatchNorm/"
        x = (x - v[p + "moving_mean"]) / np.sqrt(v[p + "moving_variance"] + EPS) \
            * v[p + "gamma"] + v[p + "beta"]
        return tf.nn.relu(x) if relu else x

    def conv2d_same(x, name, stride=1, rate=1, relu=True):
        k = v[f"{name}/weights"]
        if stride == 1:
            y = tf.nn.conv2d(x, k, 1, "SAME", dilations=rate)
        else:   # resnet_utils.conv2d_same: explicit symmetric padding, then VALID
            total = (k.shape[0] - 1) * rate
            beg, end = total // 2, total - total // 2
            x = tf.pad(x, [[0, 0], [beg, end], [beg, end], [0, 0]])
            y = tf.nn.conv2d(x, k, stride, "VALID", dilations=rate)
        return bn(y, name, relu)

    def bottleneck(x, name, depth, stride, rate):
        if x.shape[-1] == depth:
            shortcut = x[:, ::stride, ::stride] if stride > 1 else x   # subsample
        else:
            shortcut = bn(tf.nn.conv2d(x, v[f"{name}/shortcut/weights"], stride, "SAME"),
                          f"{name}/shortcut", relu=False)
        r = conv2d_same(x, f"{name}/conv1")
        r = conv2d_same(r, f"{name}/conv2", stride, rate)
        r = conv2d_same(r, f"{name}/conv3", relu=False)
        return tf.nn.relu(shortcut + r)

    x = tf.constant(images, tf.float32)
    x = x * (2 / 255) - 1 if beta else x - MEAN_RGB
    if beta:
        for i, s in ((1, 2), (2, 1), (3, 1)):
            x = conv2d_same(x, f"{scope}/conv1_{i}", s)
    else:
        x = conv2d_same(x, f"{scope}/conv1", 2)
    x = tf.nn.max_pool2d(x, 3, 2, "SAME")
    # resnet_utils.stack_blocks_dense with output_stride / 4 after the root block.
    target, current, rate = output_stride // 4, 1, 1
    for b, units in enumerate(depths):
        for u in range(units):
            if b < 3:
                stride, unit_rate = (2 if u == units - 1 else 1), 1
            else:
                stride, unit_rate = 1, multi_grid[u]
            depth = 4 * v[f"{scope}/block{b + 1}/unit_1/bottleneck_v1/conv1/weights"].shape[-1]
            name = f"{scope}/block{b + 1}/unit_{u + 1}/bottleneck_v1"
            if current == target:
                x = bottleneck(x, name, depth, 1, rate * unit_rate)
                rate *= stride
            else:
                x = bottleneck(x, name, depth, stride, unit_rate)
                current *= stride
    features = x
    # model._extract_features: image pooling first, then aspp0, aspp1..n.
    crop = images.shape[1]
    pool = int((crop - 1) / output_stride + 1)       # scale_dimension(crop, 1 / OS)
    p = tf.nn.avg_pool2d(features, pool, pool, "VALID")
    p = bn(tf.nn.conv2d(p, v["image_pooling/weights"], 1, "SAME"), "image_pooling")
    branches = [tf.broadcast_to(p, features.shape[:3] + p.shape[3:])]
    branches.append(conv2d_same(features, "aspp0"))
    for i, r in enumerate(aspp_rates, 1):
        branches.append(conv2d_same(features, f"aspp{i}", 1, r))
    y = conv2d_same(tf.concat(branches, 3), "concat_projection")
    y = tf.nn.conv2d(y, v["logits/semantic/weights"], 1, "SAME") + v["logits/semantic/biases"]
    return y.numpy()
