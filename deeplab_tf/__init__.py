"""deeplab_tf: DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution") in Keras 3."""
import os

# CPU kernels: TensorFlow's own default is kept. On Linux TF 2.21 turns its oneDNN kernels
# on for CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or AMX, whatever the vendor, and keeps
# its Eigen kernels on the others (tensorflow/core/util/port.cc, DefaultOneDnnPolicy);
# TF_ENABLE_ONEDNN_OPTS=0/1 before TensorFlow starts overrides it. Measured (docs/
# benchmarks.md): on an AVX2-only AMD EPYC the default is Eigen, faster than forcing oneDNN
# (forward OS16 1.32 vs 1.50 s, training step 10.2 vs 11.2 s); on an AVX-512 EPYC (Zen 4)
# the default is oneDNN, as fast as or faster than Eigen (forward OS16 0.69 vs 0.71 s,
# training step OS16 5.3 vs 5.8 s). Eigen has no gradient for dilated Conv2D; the model
# then trains through valid-tap atrous convolutions (modeling/atrous.py), which are exact.
# oneDNN also gives fast bf16 on CPUs with avx512_bf16/AMX.
# TensorFlow's C++ INFO lines (CUDA probing, oneDNN notices) drown the progress bars.
TF_CPP_MIN_LOG_LEVEL_GIVEN = "TF_CPP_MIN_LOG_LEVEL" in os.environ   # tools keep it, else -v
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
