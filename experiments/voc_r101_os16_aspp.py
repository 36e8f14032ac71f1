"""DeepLabv3 ResNet-101, ASPP (6, 12, 18) + image pooling, Multi_Grid (1, 2, 4): stage 1.

The paper's final model, first stage (Sec. 4.1, Tables 5 and 6): PASCAL VOC 2012 train_aug
(10,582 images), output stride 16, crop 513, batch 16, 30K steps, lr 0.007 poly, BN trained
(decay 0.9997), ImageNet-initialized ResNet-101.

Paper: 77.21% val mIoU at OS16 (Table 5); evaluated at OS8 78.51%, + multi-scale 79.45%,
+ flip 79.77% (Table 6).

    deeplab-build-data sbd_trainaug --root SBD/benchmark_RELEASE --voc_root VOCdevkit/VOC2012 \
        --output_dir data/voc2012
    deeplab-build-data voc2012 --root VOCdevkit/VOC2012 --output_dir data/voc2012
    deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/voc_os16 \
        --strategy=mirrored          # 8 GPUs x 2 images (sync BN), or --strategy=tpu --tpu=NAME
    deeplab-eval --model_dir=runs/voc_os16 --records='data/voc2012/val-*.tfrecord' \
        --output_stride=8 --inference_scales=0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images

Hardware: the paper's batch of 16 at 513x513 needs synchronized BN over several
accelerators (e.g. 8 GPUs of 16 GB, or a TPU v3-8).
"""
from deeplab_tf.configs import DataConfig, EvalConfig, ExperimentConfig, ModelConfig


def get_config(variant=None):
    return ExperimentConfig(
        name="voc_r101_os16_aspp",
        model=ModelConfig(backbone="resnet101", output_stride=16, multi_grid=(1, 2, 4),
                          head="aspp", image_pooling=True, backbone_weights="imagenet"),
        data=DataConfig(train_records="data/voc2012/train_aug-*.tfrecord",
                        eval_records="data/voc2012/val-*.tfrecord", crop_size=(513, 513)),
        eval=EvalConfig(output_stride=8, scales=(0.5, 0.75, 1.0, 1.25, 1.5, 1.75), flip=True),
    )
