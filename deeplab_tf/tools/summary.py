"""deeplab-summary: parameter count and multiply-adds of a DeepLabv3 config, per stage.

  deeplab-summary --backbone resnet101 --output_stride 16 --input_size 513

"GMACs (valid taps)" counts only the kernel taps that land inside the image: at large
atrous rates most taps of a 3x3 filter hit the padding (the paper's Fig. 4).
"""
from absl import app, flags

from deeplab_tf.tools import run_main
from deeplab_tf.tools import shared_flags as shared

FLAGS = flags.FLAGS
flags.DEFINE_string("backbone", "resnet101", "resnet50 | resnet101 | resnet152 | resnet_tiny.")
shared.define_output_stride("8, 16 or 32 (64-256 with --extra_blocks). Paper: 16 to train, 8 "
                            "to evaluate.", default=16)
flags.DEFINE_string("input_size", "513", "Input size: N or HxW (the paper crops 513x513).")
shared.define_num_classes("Number of classes (21 for PASCAL VOC).", default=21)
shared.define_multi_grid("Multi_Grid unit rates of block4 (Sec. 3.2).")
shared.define_aspp_rates("ASPP rates; default 6,12,18 at OS16, doubled at OS8.")
flags.DEFINE_integer("extra_blocks", 0, "Cascaded blocks 5-7 (0..3).")
flags.DEFINE_enum("head", "aspp", ["aspp", "cascade"], "ASPP (Sec. 3.3) or cascade (Table 4).")
flags.DEFINE_boolean("image_pooling", True, "Image-level features in ASPP.")
flags.DEFINE_integer("aspp_filters", 256, "Channels of each ASPP branch (256 in the paper).")
flags.DEFINE_list("depths", None, "Units per block, overriding the backbone's (e.g. 1,1,1,3).")
flags.DEFINE_enum("layout", "keras", ["keras", "slim", "garden"], "ResNet v1 checkpoint layout.")
flags.DEFINE_enum("stem", "7x7", ["7x7", "deep"], "ResNet stem: 7x7 or three 3x3 (beta).")
flags.DEFINE_float("width_multiplier", 1.0, "Scales every backbone channel count.")
flags.DEFINE_string("json", None, "Also write the table to this JSON file.")


def parse_size(text):
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise app.UsageError(f"--input_size={text!r}: expected N or HxW, e.g. 513 or 513x769")
    if len(dims) not in (1, 2) or min(dims) < 1:
        raise app.UsageError(f"--input_size={text!r}: expected N or HxW with positive sizes")
    return (dims[0], dims[-1])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    height, width = parse_size(FLAGS.input_size)
    from deeplab_tf.analysis.complexity import format_table, summarize
    from deeplab_tf.modeling import build_deeplabv3
    try:
        model = build_deeplabv3(
            FLAGS.num_classes, backbone=FLAGS.backbone, output_stride=FLAGS.output_stride,
            multi_grid=[int(m) for m in FLAGS.multi_grid],
            aspp_rates=[int(r) for r in FLAGS.aspp_rates] if FLAGS.aspp_rates else None,
            extra_blocks=FLAGS.extra_blocks, head=FLAGS.head, image_pooling=FLAGS.image_pooling,
            aspp_filters=FLAGS.aspp_filters,
            depths=[int(d) for d in FLAGS.depths] if FLAGS.depths else None,
            layout=FLAGS.layout, stem=FLAGS.stem, width_multiplier=FLAGS.width_multiplier)
    except ValueError as e:
        raise app.UsageError(str(e))
    table = summarize(model, height, width)
    print(f"DeepLabv3 {FLAGS.backbone}, output stride {FLAGS.output_stride}, "
          f"{height}x{width}, {FLAGS.num_classes} classes, layout {FLAGS.layout}")
    print(format_table(table))
    if FLAGS.json:
        from deeplab_tf import fileio
        fileio.write_json(FLAGS.json, table)


def run():
    run_main(main, __name__)


if __name__ == "__main__":
    run()
