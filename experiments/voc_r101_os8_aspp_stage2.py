"""Stage 2 (Sec. 4.1, 4.3 "Test set result"): fine-tune on the official VOC trainval with
output stride 8, BN frozen, lr 0.001, 30K steps, bootstrapping of the hard classes
(bicycle, chair, dining table, potted plant, sofa duplicated).

Paper: 85.7% on the VOC test set (Table 7), for a model that was also pretrained on COCO
(`coco_voc_pretrain` -> `voc_r101_from_coco` -> this stage). No val number.

    deeplab-train --experiment=voc_r101_os8_aspp_stage2 --model_dir=runs/voc_stage2 \
        --params_override="train.init_checkpoint=runs/voc_os16" --strategy=mirrored

Hardware: as stage 1; OS8 needs about 4x the activation memory of OS16.
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp

HARD_CLASSES = ("bicycle", "chair", "diningtable", "pottedplant", "sofa")


def get_config(variant=None):
    return derive(
        voc_r101_os16_aspp.get_config(), name="voc_r101_os8_aspp_stage2",
        model=dict(output_stride=8, freeze_bn=True, backbone_weights=None),
        data=dict(train_records="data/voc2012/trainval-*.tfrecord",
                  bootstrap_classes=HARD_CLASSES, bootstrap_factor=2),
        train=dict(base_lr=0.001, steps=30000, init_checkpoint="runs/voc_os16"))
