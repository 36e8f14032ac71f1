"""Pretraining on COCO restricted to the VOC classes (Sec. 4.3 "Pretrained on COCO"):
images of trainval_minus_minival with a VOC-class region over 1000 pixels (~60K images);
other COCO classes are background.

Paper: no number for this stage alone; after fine-tuning on VOC (`voc_r101_from_coco`)
82.7% val mIoU (OS8, multi-scale, flip).

    deeplab-build-data coco_voc --root COCO --annotations COCO/annotations/instances_train2014.json \
        --output_dir data/coco_voc
    deeplab-train --experiment=coco_voc_pretrain --model_dir=runs/coco_voc --strategy=mirrored
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp


def get_config(variant=None):
    return derive(
        voc_r101_os16_aspp.get_config(), name="coco_voc_pretrain",
        data=dict(train_records="data/coco_voc/train-*.tfrecord",
                  eval_records="data/coco_voc/val-*.tfrecord"),
        train=dict(steps=300000))
