"""deeplab_tf: DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution") in Keras 3."""

__version__ = "0.1.0"
