"""Fine-tune the COCO-pretrained model on VOC train_aug with lr 0.0001 (Sec. 4.3).

Paper: 82.7% val mIoU evaluated at output stride 8 with multi-scale inputs and flips.

    deeplab-train --experiment=voc_r101_from_coco --model_dir=runs/voc_from_coco \
        --params_override="train.init_checkpoint=runs/coco_voc" --strategy=mirrored
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp


def get_config(variant=None):
    return derive(
        voc_r101_os16_aspp.get_config(), name="voc_r101_from_coco",
        model=dict(backbone_weights=None),
        train=dict(base_lr=0.0001, init_checkpoint="runs/coco_voc"))
