"""deeplab_tf: DeepLabv3 (Chen et al. 2017, "Rethinking Atrous Convolution") in Keras 3."""
import os

# CPU kernels: TensorFlow's own default is kept (oneDNN on Intel CPUs, its Eigen kernels
# elsewhere). On our AMD EPYC (AVX2) Eigen measured faster than forcing oneDNN on, for
# every task: forward OS16 1.07 vs 1.28-1.50 s, OS8 3.36 vs 4.63 s, training step 8.4 vs
# 9.6 s (README, Benchmarks). Eigen has no gradient for dilated Conv2D; the model then
# trains through valid-tap atrous convolutions (modeling/atrous.py), which are exact.
# TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow starts selects oneDNN (fast bf16 on CPUs with
# avx512_bf16/AMX).
# TensorFlow's C++ INFO lines (CUDA probing, oneDNN notices) drown the progress bars.
TF_CPP_MIN_LOG_LEVEL_GIVEN = "TF_CPP_MIN_LOG_LEVEL" in os.environ   # tools keep it, else -v
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

__version__ = "0.1.0"
