"""research/deeplab MobileNetV2 checkpoints (TF-slim names) converted into model_dirs:
the backbone equals keras.applications' MobileNetV2 carrying the same random weights, the
logits equal an independent forward pass of the slim variables (mnv2_reference.py), the
released TFLite weights written as a slim checkpoint give the TFLite import's logits."""
import re

import keras
import numpy as np
import pytest

import mnv2_reference as ref
from deeplab_tf import model_dir
from deeplab_tf.convert import convert_checkpoint, slim_mobilenet_v2
from deeplab_tf.modeling import mobilenet_v2


def keras_to_slim():
    """keras.applications.MobileNetV2 layer -> (TF-slim scope, kind): block i is slim's
    expanded_conv_i; the 1280-channel Conv_1 and the classifier are slim's Conv_1 and
    Logits/Conv2d_1c_1x1 (not part of research/deeplab's features)."""
    table = {"Conv1": ("MobilenetV2/Conv", "conv"), "bn_Conv1": ("MobilenetV2/Conv", "bn"),
             "Conv_1": ("MobilenetV2/Conv_1", "conv"), "Conv_1_bn": ("MobilenetV2/Conv_1", "bn"),
             "predictions": ("MobilenetV2/Logits/Conv2d_1c_1x1", "dense")}
    for i in range(17):
        keras_prefix = f"block_{i}_" if i else "expanded_conv_"
        slim_scope = "MobilenetV2/expanded_conv" + (f"_{i}" if i else "")
        for part in ("expand", "depthwise", "project"):
            table[keras_prefix + part] = (f"{slim_scope}/{part}",
                                          "depthwise" if part == "depthwise" else "conv")
            table[keras_prefix + part + "_BN"] = (f"{slim_scope}/{part}", "bn")
    return table


def randomized_keras_mobilenet_v2(alpha, rng):
    """keras.applications.MobileNetV2(weights=None) with every variable random, BN moving
    statistics included."""
    model = keras.applications.MobileNetV2(input_shape=(67, 67, 3), alpha=alpha,
                                           weights=None, include_top=True)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 2.0, c)])
        elif layer.weights:
            fan_in = np.prod(layer.weights[0].shape[:-1]) if "depthwise" not in layer.name \
                else 9
            layer.set_weights([rng.normal(0, np.sqrt(2 / fan_in), w.shape)
                               for w in layer.get_weights()])
    return model


def slim_checkpoint_of(model):
    """The keras model's variables under TF-slim's names, as a TF-slim ImageNet classifier
    checkpoint holds them."""
    table, v = keras_to_slim(), {}
    for layer in model.layers:
        if not layer.weights:
            continue
        scope, kind = table[layer.name]
        w = layer.get_weights()
        if kind == "bn":
            for name, value in zip(("gamma", "beta", "moving_mean", "moving_variance"), w):
                v[f"{scope}/BatchNorm/{name}"] = value
        elif kind == "depthwise":
            v[f"{scope}/depthwise_weights"] = w[0]
        elif kind == "dense":
            v[f"{scope}/weights"], v[f"{scope}/biases"] = w[0][None, None], w[1]
        else:
            v[f"{scope}/weights"] = w[0]
    return {k: np.asarray(a, np.float32) for k, a in v.items()}


def max_relative_error(got, expected):
    return float(np.abs(got - expected).max() / np.abs(expected).max())


# float32 through 17 blocks, summed in other orders: 2.5e-6 to 6.3e-6 measured; a variable
# mapped wrong (or a moving average used, or the concatenation not reordered) gives O(1).
TOLERANCE = 2e-5


@pytest.mark.parametrize("alpha,layout", [(1.0, "slim"), (0.5, "keras")])
def test_backbone_equals_keras_applications(tmp_path, alpha, layout):
    """A TF-slim ImageNet classifier checkpoint (moving-average shadows, RMSProp slots and
    the classifier included) imported for training the head from scratch: the backbone's
    features equal keras.applications' on the same weights. TF-slim's classifiers round
    channels to multiples of 8 at every depth, as keras.applications: at 0.5 that is
    layout "keras" (research/deeplab's own 0.5 models differ: test_logits_... below)."""
    rng = np.random.default_rng(0)
    source = randomized_keras_mobilenet_v2(alpha, rng)
    v = slim_checkpoint_of(source)
    # Shadows hold other values: were one used, the features would differ.
    state = {f"{n}/ExponentialMovingAverage": rng.normal(0, 1, a.shape).astype(np.float32)
             for n, a in v.items()}
    state.update({"MobilenetV2/Conv/weights/RMSProp": v["MobilenetV2/Conv/weights"],
                  "global_step": np.int64(1000)})
    ref.write_checkpoint(tmp_path / "mobilenet_v2.ckpt", dict(v, **state))
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "mobilenet_v2.ckpt"),
                                str(tmp_path / "run"), num_classes=4, allow_partial=True)
    assert result.architecture["depth_multiplier"] == alpha
    assert result.architecture["layout"] == layout
    # Every backbone variable mapped; the head (research/deeplab's: image pooling + 1x1)
    # left initialized; the classifier's Conv_1 and logits reported, the state counted.
    assert not [p for p in result.unmapped_model if not p.startswith(("aspp_", "logits"))]
    assert "aspp_pooling/conv/kernel" in result.unmapped_model
    unused = sorted(set(result.unmapped_checkpoint) - set(result.unmapped_state))
    assert unused == sorted(n for n in v if n.startswith(("MobilenetV2/Conv_1/",
                                                          "MobilenetV2/Logits/")))
    assert sorted(result.unmapped_state) == sorted(state)
    assert len(result.mapped) == len(v) - len(unused)

    x = np.random.default_rng(1).uniform(0, 255, (2, 67, 67, 3)).astype(np.float32)
    expected = keras.Model(source.inputs, source.get_layer("block_16_project_BN").output)(
        x / 127.5 - 1).numpy()
    model, _, _ = model_dir.load_model(str(tmp_path / "run"), output_stride=32)
    got = keras.Model(model.inputs, model.get_layer("block_16_project_BN").output)(x).numpy()
    assert got.shape == expected.shape == (2, 3, 3, int(320 * alpha))
    error = max_relative_error(got, expected)
    print(f"alpha {alpha}: features max |diff| / max |keras| = {error:.2e}")
    assert error <= TOLERANCE


# research/deeplab's feature_extractor: divisible_by and min_depth 8 at depth 1.0, 1 below.
@pytest.mark.parametrize("depth,divisible_by", [(1.0, 8), (0.5, 1)])
def test_logits_equal_research_deeplab(tmp_path, depth, divisible_by):
    v = ref.slim_variables(depth, divisible_by, divisible_by, np.random.default_rng(0),
                           num_classes=5, filters=16)
    ref.write_checkpoint(tmp_path / "model.ckpt-30000", dict(v, global_step=np.int64(30000)))
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "model.ckpt-30000"),
                                str(tmp_path / "run"))
    assert result.unmapped_model == [] and result.unmapped_checkpoint == ["global_step"]
    assert sorted(result.mapped.values()) == sorted(v)
    assert result.architecture["layout"] == "slim"
    assert tuple(result.architecture["aspp_rates"]) == ()
    if depth == 0.5:   # 24 * 0.5 = 12 channels, where keras.applications has 16
        assert v["MobilenetV2/expanded_conv_1/project/weights"].shape[-1] == 12
    x = np.random.default_rng(1).uniform(0, 255, (2, 65, 65, 3)).astype(np.float32)
    for output_stride in (16, 8):   # trained at 16, evaluated at 16 or 8
        expected = ref.head(v, ref.features(v, x, output_stride))
        model, _, _ = model_dir.load_model(str(tmp_path / "run"), output_stride=output_stride)
        got = keras.Model(model.inputs, model.get_layer("logits").output)(x).numpy()
        k = 64 // output_stride + 1
        assert got.shape == expected.shape == (2, k, k, 5)
        error = max_relative_error(got, expected)
        print(f"depth {depth} OS{output_stride}: logits max |diff| / max |ref| = {error:.2e}")
        assert error <= TOLERANCE


def test_image_pooling_off_and_atrous_branches(tmp_path):
    """Without image pooling concat_projection takes aspp0 alone; atrous branches aspp1..
    (their rates not stored) need aspp_rates of the same count."""
    v = ref.slim_variables(0.5, 1, 1, np.random.default_rng(0), num_classes=3, filters=8,
                           image_pooling=False)
    ref.write_checkpoint(tmp_path / "ckpt", v)
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "ckpt"), str(tmp_path / "a"))
    assert result.architecture["image_pooling"] is False and result.unmapped_model == []
    x = np.random.default_rng(1).uniform(0, 255, (1, 33, 33, 3)).astype(np.float32)
    model, _, _ = model_dir.load_model(str(tmp_path / "a"), output_stride=16)
    got = keras.Model(model.inputs, model.get_layer("logits").output)(x).numpy()
    assert max_relative_error(got, ref.head(v, ref.features(v, x, 16))) <= TOLERANCE

    rng = np.random.default_rng(2)
    v["aspp1/weights"] = rng.normal(0, 0.1, (3, 3, 160, 8)).astype(np.float32)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        v[f"aspp1/BatchNorm/{name}"] = rng.uniform(0.5, 1.5, 8).astype(np.float32)
    v["concat_projection/weights"] = rng.normal(0, 0.1, (1, 1, 16, 8)).astype(np.float32)
    ref.write_checkpoint(tmp_path / "ckpt2", v)
    with pytest.raises(ValueError, match=r"ckpt2: the checkpoint has 1 atrous ASPP branches "
                                         r"\(aspp1..\), the model 0: pass aspp_rates with 1"):
        convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "ckpt2"), str(tmp_path / "b"))
    result = convert_checkpoint("slim_mobilenet_v2", str(tmp_path / "ckpt2"),
                                str(tmp_path / "b"), overrides={"aspp_rates": (6,)})
    assert result.unmapped_model == [] and result.mapped["aspp_1_conv/kernel"] == "aspp1/weights"


# 0.5 and 1.0 are converted and run above.
@pytest.mark.parametrize("depth", [0.35, 0.75, 1.4])
def test_depth_and_rounding_read_from_the_shapes(depth):
    """Other depth multipliers, with research/deeplab's rounding (multiples of 8 and at
    least 8 only at depth 1.0) and with TF-slim's classifiers' (always), are recognized."""
    rng = np.random.default_rng(0)
    deeplab_rounding = 8 if depth == 1.0 else 1
    for divisible_by, layout in ((deeplab_rounding, "slim"), (8, "keras")):
        v = ref.slim_variables(depth, divisible_by, divisible_by, rng)
        shapes = {k: list(a.shape) for k, a in v.items()}
        arch = slim_mobilenet_v2.infer(shapes, "ckpt")
        # At depth 1.0 both roundings agree: "slim" is reported.
        assert (arch["depth_multiplier"], arch["layout"]) == \
            (depth, "slim" if depth == 1.0 else layout)
        # The backbone built for it has slim's kernels, in slim's order (expansions included).
        inputs = keras.Input((None, None, 3))
        ours = keras.Model(inputs, mobilenet_v2.mobilenet_v2(
            inputs, arch["depth_multiplier"], 32, layout=arch["layout"]))
        kernels = [tuple(w.shape) for w in ours.weights if w.path.endswith("kernel")]
        theirs = [tuple(v[f"{scope}/{'depthwise_' if kind == 'depthwise' else ''}weights"].shape)
                  for scope, kind, _, _, _ in ref.architecture(depth, divisible_by, divisible_by)]
        assert kernels == theirs
