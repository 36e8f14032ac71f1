"""modeling.all_layers (public attributes only) lists what Keras' private
`Layer._flatten_layers()` lists, in the same order: weight decay sums the same kernels in
the same order, precise BN and frozen BN reach the same layers."""
import keras
import pytest

from deeplab_tf.modeling import build_deeplabv3
from deeplab_tf.modeling.aspp import ImagePooling
from deeplab_tf.modeling.folding import fold_batch_norm
from deeplab_tf.modeling.layers import Conv, all_layers


def nested_model():
    """A functional model holding a Sequential, a composite layer and a shared layer."""
    inner = keras.Sequential([Conv(4, 3, name="inner_conv"), keras.layers.BatchNormalization()],
                             name="inner")
    shared = Conv(4, 1, name="shared")
    x = keras.Input((9, 9, 3))
    y = shared(inner(x))
    y = ImagePooling(filters=4, name="pool")(shared(y))
    return keras.Model(x, y)


MODELS = {
    "aspp_image_pooling": lambda kw: build_deeplabv3(21, output_stride=8, **kw),
    "cascade": lambda kw: build_deeplabv3(5, output_stride=16, head="cascade", extra_blocks=2,
                                          multi_grid=(1, 2, 1), **kw),
    "mobilenet_v2": lambda kw: build_deeplabv3(3, backbone="mobilenet_v2",
                                               depth_multiplier=0.25, aspp_filters=16),
    "folded": lambda kw: fold_batch_norm(build_deeplabv3(3, **kw)),
    "nested": lambda kw: nested_model(),
}


@pytest.mark.parametrize("name", MODELS)
def test_all_layers_is_flatten_layers(name, tiny_kwargs):
    model = MODELS[name](tiny_kwargs)
    # the private reference, here only; a Sequential's implicit InputLayer left out
    expected = [layer for layer in model._flatten_layers() if not (
        isinstance(layer, keras.layers.InputLayer) and layer not in model.layers)]
    found = all_layers(model)
    assert [id(layer) for layer in found] == [id(layer) for layer in expected]
    assert any(isinstance(layer, ImagePooling) for layer in found) or name != "nested"
    # the nested conv of the image pooling is reached (weight decay counts it)
    assert sum(isinstance(layer, Conv) for layer in found) == \
        sum(isinstance(layer, Conv) for layer in expected) > 0
