"""Table 3: Multi_Grid unit rates for ResNet-101 with 0-3 cascaded blocks, output stride 16,
no ASPP. VOC train_aug, val mIoU at OS16. Variant names: mg{r1}{r2}{r3}_block{4..7}.

    deeplab-train --experiment=table3_multi_grid.mg121_block7 --model_dir=runs/t3_best

Paper (val mIoU), block4 / block5 / block6 / block7:
    (1, 1, 1)  68.39 73.21 75.34 75.76
    (1, 2, 1)  70.23 75.67 76.09 76.66   <- best cascaded model, used in Table 4
    (1, 2, 3)  73.14 75.78 75.96 76.11
    (1, 2, 4)  73.45 75.74 75.85 76.02
    (2, 2, 2)  71.45 74.30 74.70 74.62
Hardware: as voc_r101_os16_aspp.
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp

_PAPER = {
    (1, 1, 1): (68.39, 73.21, 75.34, 75.76),
    (1, 2, 1): (70.23, 75.67, 76.09, 76.66),
    (1, 2, 3): (73.14, 75.78, 75.96, 76.11),
    (1, 2, 4): (73.45, 75.74, 75.85, 76.02),
    (2, 2, 2): (71.45, 74.30, 74.70, 74.62),
}
VARIANTS = {f"mg{''.join(map(str, mg))}_block{4 + i}": miou
            for mg, row in _PAPER.items() for i, miou in enumerate(row)}


def get_config(variant=None):
    variant = variant or "mg121_block7"
    mg, block = variant.split("_")
    return derive(
        voc_r101_os16_aspp.get_config(), name=f"table3_multi_grid.{variant}",
        model=dict(head="cascade", extra_blocks=int(block[-1]) - 4,
                   multi_grid=tuple(int(c) for c in mg[2:])),
        eval=dict(output_stride=16, scales=(1.0,), flip=False))
