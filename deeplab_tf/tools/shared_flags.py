"""The flags more than one tool takes, each defined here once: one name, type and check per
idea in every tool (tests/test_cli_flags.py fails when two tools define a flag of one name
elsewhere, or when an old name comes back as a flag of its own).

A tool picks a definition and may give its own help and default; the name is fixed here.
Names follow the original research/deeplab and Model Garden tools (`--model_dir`,
`--output_stride`, `--inference_scales`, `--add_flipped_images`).
"""
import logging

from absl import app, flags

from deeplab_tf.tools import OUTPUT_STRIDES, _scales_ok, _size_ok

log = logging.getLogger(__name__)

# Old names still accepted for one release (the next one removes them), per tool module:
# the value goes to the new flag and a warning names it. run_main defines them.
RENAMED = {
    "deeplab_tf.tools.evaluate": {"eval_output_stride": "output_stride",
                                  "eval_scales": "inference_scales"},
    "deeplab_tf.tools.predict": {"model": "model_dir"},
    "deeplab_tf.tools.convert_checkpoint": {"output_dir": "model_dir"},
    "deeplab_tf.tools.summary": {"size": "input_size"},
}


# ------------------------------------------------------------------ models and checkpoints

def define_model_dir(help, required=True):
    flags.DEFINE_string("model_dir", None, help, required=required)


def define_checkpoint(help, required=False):
    flags.DEFINE_string("checkpoint", None, help, required=required)


def define_mixed_precision(uses):
    """--mixed_precision; `uses`: what it does in the tool."""
    flags.DEFINE_enum("mixed_precision", None, ["mixed_bfloat16", "mixed_float16"],
                      f"Keras mixed-precision policy {uses}: bfloat16 on TPUs, GPUs and CPUs "
                      f"with avx512_bf16/AMX (on AMD CPUs with TF_ENABLE_ONEDNN_OPTS=1), "
                      f"float16 on GPUs. The weights stay float32.")


def define_overwrite(help):
    flags.DEFINE_boolean("overwrite", False, help)


# ------------------------------------------------------------------ the architecture

def define_output_stride(help, default=None):
    """--output_stride: 8, 16 (paper: train at 16, evaluate at 8), ... (Sec. 3.1)."""
    flags.DEFINE_integer("output_stride", default, help)
    flags.register_validator("output_stride", lambda v: v is None or v in OUTPUT_STRIDES,
                             f"expected one of {OUTPUT_STRIDES} (8: best, 16: faster)")


def define_multi_grid(help):
    flags.DEFINE_list("multi_grid", ["1", "2", "4"], help)


def define_aspp_rates(help):
    flags.DEFINE_list("aspp_rates", None, help)


def define_num_classes(help, default=None):
    flags.DEFINE_integer("num_classes", default, help)
    flags.register_validator("num_classes", lambda v: v is None or v > 0,
                             "expected a value > 0")


def define_class_names(help):
    flags.DEFINE_list("class_names", None, help)


# ------------------------------------------------------------------ inference options

def define_inference_scales(help):
    flags.DEFINE_list("inference_scales", None, help)
    flags.register_validator("inference_scales", _scales_ok,
                             "expected positive numbers, e.g. 0.5,0.75,1.0,1.25,1.5,1.75")


def define_add_flipped_images(help):
    flags.DEFINE_boolean("add_flipped_images", None, help)


def define_pad_to(help):
    flags.DEFINE_string("pad_to", None, help)
    flags.register_validator("pad_to", _size_ok, "expected N or HxW with positive sizes")


def define_max_side(help):
    flags.DEFINE_integer("max_side", None, help)
    flags.register_validator("max_side", lambda v: v is None or v > 0,
                             "expected a value > 0")


def define_max_pixels(help, default=None):
    """--max_pixels; its check (0 allowed or not) is the tool's."""
    flags.DEFINE_integer("max_pixels", default, help)


# ------------------------------------------------------------------ data and outputs

def define_records(help):
    flags.DEFINE_string("records", None, help)


def define_output_dir(help, required=False):
    flags.DEFINE_string("output_dir", None, help, required=required)


def define_seed(help, default=None):
    flags.DEFINE_integer("seed", default, help)


# ------------------------------------------------------------------ old names

def define_renamed(module_name):
    """Defines the old names of `module_name`'s renamed flags (RENAMED) as aliases."""
    for old, new in RENAMED.get(module_name, {}).items():
        if old not in flags.FLAGS:
            flags.DEFINE_alias(old, new, module_name=__name__)
            flags.FLAGS[old].help = (f"Deprecated: use --{new} (this name goes in the next "
                                     f"release).")


def warn_renamed(module_name):
    """After parsing: a warning per old name given; both names given is a usage error."""
    for old, new in RENAMED.get(module_name, {}).items():
        if old not in flags.FLAGS or not flags.FLAGS[old].present:
            continue
        if flags.FLAGS[new].present > flags.FLAGS[old].present:
            raise app.UsageError(f"--{old} and --{new} are one flag (--{old} is its old "
                                 f"name): give --{new} only")
        log.warning("--%s is deprecated and goes in the next release: use --%s", old, new)
