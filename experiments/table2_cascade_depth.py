"""Table 2: ResNet-50 and ResNet-101 with 0-3 cascaded blocks (block4 ... block7) at output
stride 16, no Multi_Grid, no ASPP. VOC train_aug, val mIoU at OS16.

    deeplab-train --experiment=table2_cascade_depth.r101_block7 --model_dir=runs/t2_r101_b7

Paper (val mIoU):
    ResNet-50:  block4 64.81, block5 72.14, block6 74.29, block7 73.88
    ResNet-101: block4 68.39, block5 73.21, block6 75.34, block7 75.76
Hardware: as voc_r101_os16_aspp.
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp

VARIANTS = {
    "r50_block4": 64.81, "r50_block5": 72.14, "r50_block6": 74.29, "r50_block7": 73.88,
    "r101_block4": 68.39, "r101_block5": 73.21, "r101_block6": 75.34, "r101_block7": 75.76,
}


def get_config(variant=None):
    variant = variant or "r101_block7"
    net, block = variant.split("_")
    return derive(
        voc_r101_os16_aspp.get_config(), name=f"table2_cascade_depth.{variant}",
        model=dict(backbone="resnet" + net[1:], head="cascade", extra_blocks=int(block[-1]) - 4,
                   multi_grid=(1, 1, 1)),
        eval=dict(output_stride=16, scales=(1.0,), flip=False))
