"""deeplab_tf: DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution") in Keras 3."""
import os

# oneDNN CPU kernels: the native atrous convolution's gradient and bf16 exist only there,
# and TensorFlow enables them by default on Intel CPUs only. Takes effect when deeplab_tf
# is imported before TensorFlow; TF_ENABLE_ONEDNN_OPTS=0 in the environment opts out.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# TensorFlow's C++ INFO lines (CUDA probing, oneDNN notices) drown the progress bars.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
