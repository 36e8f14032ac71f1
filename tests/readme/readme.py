"""The README's commands and Python examples, as a user copies them, and how each is proven.

Every shell command of every ```bash block of the README is listed in `PLAN` with how the
tests prove it: "run" (tests/readme/test_*_path.py run it in a subprocess through bash, as
typed, in a fresh folder, with `shrink` appending options that make the paper's models and
step counts tiny), "parse" (its flags are parsed by the tool's own parser: needs hardware
or a bucket we do not have), "ci" (`.ci/run` runs it), or another test that runs it.
`test_readme_plan.py` fails when the README gains, loses or changes a command that `PLAN`
does not account for in the same words.
"""
import os
import pathlib
import re
import shlex
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
README = REPO / "README.md"
BIN = os.path.dirname(sys.executable)

# Options appended to `deeplab-train` commands of the paper's presets: the same code path
# with a tiny ResNet, no ImageNet download, small crops and two steps.
TINY_TRAIN = ("model.backbone=resnet_tiny,model.width_multiplier=0.125,model.aspp_filters=16,"
              "model.backbone_weights=None,data.crop_size=(65,65),data.shuffle_buffer=8,"
              "train.steps=2,train.batch_size=2,train.steps_per_loop=1,train.checkpoint_every=2")
# The quickstart, smaller (its own model is tiny already): tests/readme/test_quickstart_path.py.
SMALL_QUICKSTART = ("train.steps=4,train.steps_per_loop=2,train.checkpoint_every=4,"
                    "train.batch_size=4,train.then_predict=2,model.width_multiplier=0.125,"
                    "model.aspp_filters=16,data.crop_size=(65,65),eval.scales=(1.0,),"
                    "eval.flip=false")


def text():
    return README.read_text()


def commands(readme=None):
    """The shell commands of the README's ```bash blocks, in order: continuation lines
    joined, comments dropped, `a && b` as two commands."""
    found = []
    for block in re.findall(r"```bash\n(.*?)```", readme or text(), re.S):
        block = re.sub(r"\\\n\s*", "", block)
        for line in block.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            for command in line.split(" && "):
                if command.strip() not in found:
                    found.append(command.strip())
    return found


def python_blocks(readme=None):
    return re.findall(r"```python\n(.*?)```", readme or text(), re.S)


def python_block(first_line):
    """The README's Python example that starts with `first_line`."""
    blocks = [b for b in python_blocks() if b.startswith(first_line)]
    assert len(blocks) == 1, f"README: {len(blocks)} Python blocks start with {first_line!r}"
    return blocks[0]


def shrink(command, extra=TINY_TRAIN):
    """`command` with `extra` overrides appended to its --params_override (or a new one)."""
    m = re.search(r'--params_override="([^"]*)"', command)
    if m:
        return command[:m.end(1)] + "," + extra + command[m.end(1):]
    return f"{command} --params_override={shlex.quote(extra)}"


def run(command, cwd, timeout=900, env=None):
    """`command` through bash in `cwd`, the venv's console scripts first on PATH, HOME
    cwd/home (the README's ~/...). Returns the CompletedProcess; fails the test on a
    non-zero exit or a deprecated flag."""
    environment = dict(os.environ, PATH=BIN + os.pathsep + os.environ.get("PATH", ""),
                       HOME=str(pathlib.Path(cwd) / "home"))
    environment.update(env or {})
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (f"README command failed ({done.returncode}): {command}\n"
                                  f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    renamed = [line for line in done.stderr.splitlines()
               if "deprecat" in line.lower() and "--" in line]
    assert not renamed, f"README command uses a deprecated flag: {command}\n{renamed}"
    return done


def voc_folder(root, splits):
    """The real VOC 2012 samples as the README's folder layout under `root` (images/, masks/,
    classes.txt, splits/): `splits` maps a split name to sample numbers."""
    from deeplab_tf.data.metadata import VOC_CLASSES
    voc = REPO.parent / "shared" / "data" / "voc2012_samples"
    root = pathlib.Path(root)
    for sub in ("images", "masks", "splits"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i in range(8):
        (root / "images" / f"sample_{i}.jpg").write_bytes(
            (voc / "JPEGImages" / f"sample_{i}.jpg").read_bytes())
        (root / "masks" / f"sample_{i}.png").write_bytes(
            (voc / "SegmentationClass" / f"sample_{i}.png").read_bytes())
    (root / "classes.txt").write_text("\n".join(VOC_CLASSES) + "\n")
    for split, numbers in splits.items():
        (root / "splits" / f"{split}.txt").write_text(
            "".join(f"sample_{i}\n" for i in numbers))
    return root


# Every README command, by a short id: (command exactly as the README has it, how proven).
PLAN = {
    "venv": ("python3.11 -m venv .venv", "ci: .ci/run makes its venv the same way"),
    "activate": ("source .venv/bin/activate", "ci: .ci/run"),
    "install": ("pip install .", "ci: .ci/run installs .[test]: the package and its test "
                                 "extra"),
    "install_test": ('pip install ".[test]"', "ci: .ci/run"),
    "pytest": ("pytest -q", "ci: .ci/run"),
    "quickstart": ("deeplab-train --experiment=quickstart --model_dir=runs/quickstart",
                   "run: test_quickstart_path.py"),
    "predict_photos": ("deeplab-predict --model_dir runs/quickstart --input 'photos/*.jpg' "
                       "--output_dir predictions/", "run: test_quickstart_path.py"),
    "export_quickstart": ("deeplab-export --model_dir runs/quickstart "
                          "--export_dir exported/quickstart", "run: test_quickstart_path.py"),
    "docker": ('docker run -p 8501:8501 -v "$PWD/exported/quickstart:/models/deeplab/1" '
               "-e MODEL_NAME=deeplab tensorflow/serving",
               "not run (needs Docker and the network): tests/test_export.py answers the "
               "README's REST client from the exported signature"),
    "convert_tflite": ("deeplab-convert-checkpoint --source tflite --checkpoint "
                       "deeplabv3_mnv2_pascal_quant.tflite --model_dir runs/mnv2",
                       "run: test_released_path.py"),
    "predict_mnv2": ("deeplab-predict --model_dir runs/mnv2 --input photo.jpg --output_dir out",
                     "run: test_released_path.py"),
    "export_mnv2": ("deeplab-export --model_dir runs/mnv2 --export_dir export/mnv2 "
                    "--output_stride 16", "run: test_released_path.py"),
    "convert_slim_mnv2": ("deeplab-convert-checkpoint --source slim_mobilenet_v2 --checkpoint "
                          "deeplabv3_mnv2_pascal_train_aug/model.ckpt-30000 "
                          "--model_dir runs/mnv2_slim",
                          "run: tests/convert/test_slim_mobilenet_v2_use.py"),
    "predict_slim_mnv2": ("deeplab-predict --model_dir runs/mnv2_slim --input photo.jpg "
                          "--output_dir out", "run: tests/convert/test_slim_mobilenet_v2_use.py"),
    "train_own_experiment": ("deeplab-train --experiment=my_repo/my_experiment.py "
                             "--config_file=tweaks.yaml --model_dir=runs/mine",
                             "run: test_config_path.py"),
    "train_config_json": ("deeplab-train --config_file=runs/mine/config.json "
                          "--model_dir=runs/mine_again", "run: test_config_path.py"),
    "build_folder": ("deeplab-build-data folder --root ~/data/mydata --output_dir data/mydata",
                     "run: test_own_data_path.py"),
    "inspect": ("deeplab-inspect-data --records 'data/mydata/train-*.tfrecord' "
                "--output_dir inspect/", "run: test_own_data_path.py"),
    "train_mydata": ('deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/mydata '
                     '--params_override="data.train_records=data/mydata/train-*.tfrecord,'
                     'data.eval_records=data/mydata/val-*.tfrecord"',
                     "run: test_own_data_path.py"),
    "train_voc": ('deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/voc_os16 '
                  '--params_override="train.steps=30000,'
                  'data.train_records=data/voc2012/train_aug-*.tfrecord"',
                  "run: test_train_eval_path.py"),
    "train_mirrored": ("deeplab-train --experiment=voc_r101_os16_aspp --model_dir=runs/voc "
                       "--strategy=mirrored", "run: test_train_variants_path.py"),
    "train_tpu": ("deeplab-train --experiment=voc_r101_os16_aspp --model_dir=gs://bucket/voc "
                  "--strategy=tpu --tpu=my-tpu --mixed_precision=mixed_bfloat16",
                  "parse: needs a Cloud TPU and a bucket; the TPU and gs:// code paths are "
                  "tested in tests/cluster and tests/data/test_remote_fs.py"),
    "launch": ("deeplab-launch -- deeplab-train --experiment=voc_r101_os16_aspp "
               "--model_dir=gs://BUCKET/runs/voc_os16 --strategy=multi_worker",
               "parse: needs a cluster; tests/deploy/test_launch.py and "
               "tests/cluster/test_multi_worker_cli.py run it on localhost workers"),
    "train_table3": ("deeplab-train --experiment=table3_multi_grid.mg121_block7 "
                     "--model_dir=runs/t3 --strategy=mirrored", "run: test_train_variants_path.py"),
    "eval_paper": ("deeplab-eval --model_dir=runs/voc_os16 --records='data/voc2012/val-*.tfrecord' "
                   "--output_stride=8 --inference_scales=0.5,0.75,1.0,1.25,1.5,1.75 "
                   "--add_flipped_images", "run: test_train_eval_path.py"),
    "eval_watch": ("deeplab-eval --model_dir=runs/voc_os16 "
                   "--records='data/voc2012/val-*.tfrecord' --watch", "run: test_train_eval_path.py"),
    "convert_garden": ("deeplab-convert-checkpoint --source garden --checkpoint garden_run/ "
                       "--model_dir runs/from_garden --activation swish",
                       "ci: tests/garden/test_model_garden.py (Model Garden's venv) converts "
                       "a checkpoint Model Garden's own code trained"),
    "convert_slim": ("deeplab-convert-checkpoint --source slim --checkpoint "
                     "deeplab_run/model.ckpt-30000 --model_dir runs/from_slim",
                     "run: test_checkpoints_path.py"),
    "eval_slim": ("deeplab-eval --model_dir runs/from_slim --records='data/voc2012/val-*.tfrecord' "
                  "--pad_to 513", "run: test_checkpoints_path.py"),
}


def command(key):
    return PLAN[key][0]


def voc_records(cwd):
    """data/voc2012/{train_aug,val}-*.tfrecord under `cwd`, as the paper presets expect
    them (the real VOC samples: 6 train_aug, 2 val), written by the folder converter."""
    from deeplab_tf.data.converters import folder
    source = voc_folder(pathlib.Path(cwd) / "voc_samples",
                        {"train_aug": range(6), "val": (6, 7)})
    folder.convert(str(source), str(pathlib.Path(cwd) / "data" / "voc2012"),
                   splits=("train_aug", "val"), name="voc2012", num_shards=1, num_workers=1,
                   progress=False)
