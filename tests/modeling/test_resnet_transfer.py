"""keras.applications ResNet weights transfer exactly into our backbone."""
import numpy as np
import pytest
import keras

from deeplab_tf.modeling import build_backbone, build_deeplabv3, transfer_keras_applications_weights

APPS = {"resnet50": keras.applications.ResNet50, "resnet101": keras.applications.ResNet101}


def randomized_reference(backbone, seed=0):
    """A keras.applications ResNet with EVERY variable random, BN statistics included, so
    that a swapped gamma/beta/mean/variance cannot go unnoticed."""
    ref = APPS[backbone](include_top=False, weights=None, input_shape=(None, None, 3))
    rng = np.random.default_rng(seed)
    for layer in ref.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)])
        elif isinstance(layer, keras.layers.Conv2D):
            kernel, bias = layer.get_weights()
            fan_in = np.prod(kernel.shape[:3])
            layer.set_weights([rng.normal(0, np.sqrt(1.0 / fan_in), kernel.shape),
                               rng.normal(0, 0.1, bias.shape)])
    return ref


@pytest.mark.parametrize("backbone,size", [("resnet50", (65, 97)), ("resnet101", (129, 81))])
def test_transfer_gives_same_block4_features(backbone, size):
    ref = randomized_reference(backbone)
    ours = build_backbone(backbone, output_stride=32)
    names = transfer_keras_applications_weights(ref, ours)
    assert len(names) == len([l for l in ref.layers if l.weights])

    rng = np.random.default_rng(1)
    image = rng.uniform(0, 255, (2,) + size + (3,)).astype("float32")
    # The reference gets keras' own preprocessing; ours normalizes inside the model.
    want = ref.predict(keras.applications.resnet.preprocess_input(image.copy()), verbose=0)
    got = ours.predict(image, verbose=0)["block4"]
    assert got.shape == want.shape
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


@pytest.mark.parametrize("output_stride", [16, 8])
def test_transfer_loads_every_variable_at_atrous_strides(output_stride):
    ref = randomized_reference("resnet50", seed=output_stride)
    model = build_deeplabv3(21, backbone="resnet50", output_stride=output_stride)
    transfer_keras_applications_weights(ref, model)
    ref_layers = {l.name: l for l in ref.layers if l.weights}
    ours = {l.name for l in model.layers if l.weights and l.name.startswith(("conv1", "conv2",
                                                                               "conv3", "conv4",
                                                                               "conv5"))}
    assert ours == set(ref_layers)
    for name, layer in ref_layers.items():
        for a, b in zip(model.get_layer(name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_backbone_weights_from_a_file(tmp_path):
    ref = randomized_reference("resnet50", seed=3)
    path = str(tmp_path / "resnet50_notop.weights.h5")
    ref.save_weights(path)
    model = build_deeplabv3(21, backbone="resnet50", backbone_weights=path)
    for layer in [l for l in ref.layers if l.weights]:
        for a, b in zip(model.get_layer(layer.name).get_weights(), layer.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_imagenet_weights_need_the_keras_layout():
    with pytest.raises(ValueError, match="layout='keras'"):
        build_deeplabv3(21, backbone="resnet50", layout="slim", backbone_weights="imagenet")
