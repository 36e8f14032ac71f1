"""deeplab-train as users type it (the console script) with their own configs: an experiment
file kept in their own repository, a run's config.json re-run through --config_file, and a
YAML config file between the experiment and --params_override."""
import json
import os
import subprocess
import sys

from deeplab_tf.data.converters import synthetic

TRAIN = os.path.join(os.path.dirname(sys.executable), "deeplab-train")
USER_EXPERIMENT = '''
"""A tiny variant of the quickstart, kept outside deeplab_tf (the user's repository)."""
from deeplab_tf.configs import derive
from experiments import quickstart

VARIANTS = ("tiny",)


def get_config(variant=None):
    return derive(
        quickstart.get_config(), name="mine" + ("_" + variant if variant else ""),
        model=dict(depths=(1, 1, 1, 1), multi_grid=(1,), width_multiplier=0.125,
                   aspp_filters=16),
        data=dict(train_records={records!r}, crop_size=(65, 65), generate_synthetic=False),
        train=dict(steps=4, batch_size=4, steps_per_loop=1, checkpoint_every=2,
                   base_lr=0.01, then_evaluate=False, then_export=False, then_predict=0))
'''


def train(cwd, *flags):
    run = subprocess.run([TRAIN, *flags], capture_output=True, text=True, timeout=600, cwd=cwd)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def read(path):
    with open(path) as f:
        return f.read()


def test_user_experiment_config_json_round_trip_and_yaml(tmp_path):
    synthetic.convert(str(tmp_path / "data"), splits=("train",), num_train=8,
                      image_size=(65, 65), num_shards=1, num_workers=1)
    repo = tmp_path / "my_repo"
    (repo / "experiments").mkdir(parents=True)   # the user's own package of that name
    (repo / "experiments" / "__init__.py").write_text("raise ImportError('not the presets')\n")
    (repo / "experiment.py").write_text(USER_EXPERIMENT.format(
        records=str(tmp_path / "data" / "train-*.tfrecord")))

    # 1. The user's Python experiment file (with a variant) and an override.
    train(tmp_path, "--experiment=my_repo/experiment.py:tiny", "--model_dir=run1",
          "--params_override=train.steps=2")
    first = json.loads(read(tmp_path / "run1" / "config.json"))
    assert first["name"] == "mine_tiny" and first["train"]["steps"] == 2
    assert first["model"]["width_multiplier"] == 0.125 and first["train"]["base_lr"] == 0.01
    assert (tmp_path / "run1" / "checkpoints" / "ckpt-2.index").exists()

    # 2. That run's config.json re-runs it (over the default --experiment, quickstart).
    train(tmp_path, "--config_file=run1/config.json", "--model_dir=run2")
    assert read(tmp_path / "run2" / "config.json") == read(tmp_path / "run1" / "config.json")
    assert (tmp_path / "run2" / "checkpoints" / "ckpt-2.index").exists()

    # 3. experiment < YAML file < --params_override, key by key.
    (tmp_path / "tweaks.yaml").write_text(
        "train:\n  steps: 3\n  base_lr: 2.0e-2\nmodel:\n  multi_grid: [2]\n")
    train(tmp_path, "--experiment=my_repo/experiment.py", "--config_file=tweaks.yaml",
          "--model_dir=run3", "--params_override=train.steps=1")
    third = json.loads(read(tmp_path / "run3" / "config.json"))
    assert third["train"]["steps"] == 1                  # the override
    assert third["train"]["base_lr"] == 0.02             # the YAML file
    assert third["model"]["multi_grid"] == [2]           # the YAML file
    assert third["train"]["batch_size"] == 4 and third["name"] == "mine"   # the experiment
