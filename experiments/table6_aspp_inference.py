"""Table 6: inference strategies for the final ASPP model (voc_r101_os16_aspp, trained at
output stride 16). The variants differ only in evaluation.

    deeplab-eval --model_dir=runs/voc_os16 --records='data/voc2012/val-*.tfrecord' \
        --output_stride=8 --inference_scales=0.5,0.75,1.0,1.25,1.5,1.75 --add_flipped_images

Paper (val mIoU): OS16 77.21; OS8 78.51; OS8 + multi-scale 79.45; + flip 79.77.
"""
from deeplab_tf.configs import derive
from experiments import voc_r101_os16_aspp
from experiments.table4_cascade_inference import SCALES

VARIANTS = {"os16": 77.21, "os8": 78.51, "os8_ms": 79.45, "os8_ms_flip": 79.77}


def get_config(variant=None):
    variant = variant or "os8_ms_flip"
    return derive(
        voc_r101_os16_aspp.get_config(), name=f"table6_aspp_inference.{variant}",
        eval=dict(output_stride=int(variant.split("_")[0][2:]),
                  scales=SCALES if "ms" in variant else (1.0,), flip="flip" in variant))
