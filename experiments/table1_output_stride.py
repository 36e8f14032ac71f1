"""Table 1: going deeper with atrous convolution, ResNet-50 with block7 (3 cascaded copies
of block4, Sec. 3.2), trained and evaluated at output strides 8 ... 256 (256 = no atrous
convolution at all). No Multi_Grid, no ASPP: logits on block7. VOC train_aug, val mIoU.

    deeplab-train --experiment=table1_output_stride.os16 --model_dir=runs/t1_os16
    deeplab-eval --model_dir=runs/t1_os16 --records='data/voc2012/val-*.tfrecord' \
        --output_stride=16

Paper (val mIoU): OS8 75.18, OS16 73.88, OS32 70.06, OS64 59.99, OS128 42.34, OS256 20.29.
Hardware: as voc_r101_os16_aspp (batch 16 at 513x513); OS8 needs the most memory.
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp

VARIANTS = {"os8": 75.18, "os16": 73.88, "os32": 70.06, "os64": 59.99, "os128": 42.34,
            "os256": 20.29}


def get_config(variant=None):
    variant = variant or "os16"
    output_stride = int(variant[2:])
    return derive(
        voc_r101_os16_aspp.get_config(), name=f"table1_output_stride.{variant}",
        model=dict(backbone="resnet50", head="cascade", extra_blocks=3, multi_grid=(1, 1, 1),
                   output_stride=output_stride),
        eval=dict(output_stride=output_stride, scales=(1.0,), flip=False))
