"""The README's own-experiment commands as typed: a user's experiment file kept in their
repository (derived from the quickstart preset), a YAML file of tweaks on top, then the
run's config.json re-running it in a new model_dir."""
import json
import os

import experiments
from deeplab_tf.data.converters import synthetic

from . import readme

EXPERIMENT = '''
from deeplab_tf.configs import derive
from experiments import quickstart


def get_config(variant=None):
    return derive(quickstart.get_config(), name="mine",
                  train=dict(steps=2000, base_lr=0.02, then_evaluate=False,
                             then_export=False, then_predict=0),
                  data=dict(generate_synthetic=False))
'''
# The user's tweaks: a short run of a tiny model (as readme.TINY_TRAIN).
TWEAKS = '''
model:
  width_multiplier: 0.125
  aspp_filters: 16
data:
  crop_size: [65, 65]
train:
  steps: 2
  batch_size: 2
  steps_per_loop: 1
  checkpoint_every: 2
'''


def test_own_experiment_file_and_config_file(tmp_path):
    (tmp_path / "my_repo").mkdir()
    (tmp_path / "my_repo" / "my_experiment.py").write_text(EXPERIMENT)
    (tmp_path / "tweaks.yaml").write_text(TWEAKS)
    records = experiments.get_config("quickstart").data.train_records
    synthetic.convert(str(tmp_path / os.path.dirname(records)), num_train=8, num_val=2,
                      image_size=(65, 81), num_shards=1, num_workers=1, progress=False)
    readme.run(readme.command("train_own_experiment"), tmp_path)
    first = json.loads((tmp_path / "runs" / "mine" / "config.json").read_text())
    assert first["name"] == "mine" and first["train"]["base_lr"] == 0.02   # the file
    assert first["train"]["steps"] == 2 and first["data"]["crop_size"] == [65, 65]  # YAML
    readme.run(readme.command("train_config_json"), tmp_path)
    again = json.loads((tmp_path / "runs" / "mine_again" / "config.json").read_text())
    assert again == first
    assert (tmp_path / "runs" / "mine_again" / "checkpoints").is_dir()
