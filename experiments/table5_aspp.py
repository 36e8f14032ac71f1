"""Table 5: ASPP with Multi_Grid and image-level features, ResNet-101, output stride 16.
VOC train_aug, val mIoU at OS16.

    deeplab-train --experiment=table5_aspp.mg124_aspp4 --model_dir=runs/t5_aspp4

Paper (val mIoU): MG (1,1,1) + ASPP (6,12,18) 75.36; MG (1,2,1) 75.93; MG (1,2,4) 76.58;
MG (1,2,4) + ASPP (6,12,18,24) 76.46; MG (1,2,4) + ASPP (6,12,18) + image pooling 77.21
(= voc_r101_os16_aspp).
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp

VARIANTS = {"mg111_aspp": 75.36, "mg121_aspp": 75.93, "mg124_aspp": 76.58,
            "mg124_aspp4": 76.46, "mg124_aspp_pool": 77.21}


def get_config(variant=None):
    variant = variant or "mg124_aspp_pool"
    mg, aspp = variant.split("_", 1)
    return derive(
        voc_r101_os16_aspp.get_config(), name=f"table5_aspp.{variant}",
        model=dict(multi_grid=tuple(int(c) for c in mg[2:]),
                   aspp_rates=(6, 12, 18, 24) if aspp == "aspp4" else (6, 12, 18),
                   image_pooling=aspp == "aspp_pool"),
        eval=dict(output_stride=16, scales=(1.0,), flip=False))
