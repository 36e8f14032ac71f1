"""Table 4: inference strategies for the best cascaded model (ResNet-101, block7,
Multi_Grid (1, 2, 1), trained at output stride 16). The variants differ only in evaluation.

    deeplab-train --experiment=table4_cascade_inference --model_dir=runs/t4
    deeplab-eval --model_dir=runs/t4 --records='data/voc2012/val-*.tfrecord' \
        --output_stride=8 --inference_scales=0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images

Paper (val mIoU): OS16 76.66; OS8 78.05; OS8 + multi-scale 78.93; + flip 79.35.
"""
from deeplab_tf.configs import derive
from experiments import table3_multi_grid

SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
VARIANTS = {"os16": 76.66, "os8": 78.05, "os8_ms": 78.93, "os8_ms_flip": 79.35}


def get_config(variant=None):
    variant = variant or "os8_ms_flip"
    return derive(
        table3_multi_grid.get_config("mg121_block7"), name=f"table4_cascade_inference.{variant}",
        eval=dict(output_stride=int(variant.split("_")[0][2:]),
                  scales=SCALES if "ms" in variant else (1.0,), flip="flip" in variant))
