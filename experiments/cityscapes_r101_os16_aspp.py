"""Cityscapes (fine annotations, 19 classes): DeepLabv3 ResNet-101, ASPP, output stride 16.

The paper reports no Cityscapes number for DeepLabv3 with ResNet. Settings follow the
peers: crops 769x769 and 90K steps as research/deeplab's Cityscapes recipe; Model Garden and
mmsegmentation train 512x1024 crops for 80-90K iterations and report roughly 79-81% val mIoU
for DeepLabv3 ResNet-101 at OS8 (see their model zoos for the exact figure of each recipe).
Evaluation on the full 1024x2048 images uses sliding windows above `eval.max_side`.

    deeplab-build-data cityscapes --root CITYSCAPES --output_dir data/cityscapes
    deeplab-train --experiment=cityscapes_r101_os16_aspp --model_dir=runs/cityscapes \
        --strategy=mirrored
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp


def get_config(variant=None):
    return derive(
        voc_r101_os16_aspp.get_config(), name="cityscapes_r101_os16_aspp",
        data=dict(train_records="data/cityscapes/train-*.tfrecord",
                  eval_records="data/cityscapes/val-*.tfrecord", crop_size=(769, 769)),
        train=dict(steps=90000, batch_size=8, base_lr=0.01),
        eval=dict(scales=(1.0,), flip=False, max_side=1025))
