"""DeepLabv3 models: a backbone family (backbones.py: dilated ResNet v1 with Multi_Grid and
cascaded blocks, MobileNetV2) under ASPP or the cascade head."""
from deeplab_tf.modeling.aspp import default_aspp_rates
from deeplab_tf.modeling.backbones import load_backbone_weights
from deeplab_tf.modeling.deeplab import (DeepLabV3, build_backbone, build_deeplabv3,
                                         set_output_stride, set_weight_decay)
from deeplab_tf.modeling.resnet import transfer_keras_applications_weights

__all__ = ["DeepLabV3", "build_backbone", "build_deeplabv3", "set_output_stride",
           "set_weight_decay",
           "default_aspp_rates", "load_backbone_weights", "transfer_keras_applications_weights"]
