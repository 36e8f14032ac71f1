"""A run's config from an experiment (preset or the user's own Python file), a JSON/YAML
config file and the overrides, in that order; bad files are errors naming file and key."""
import json
import textwrap

import pytest

import experiments
from deeplab_tf import config_sources, configs
from deeplab_tf.configs import ConfigError

USER_EXPERIMENT = '''
"""An experiment kept in the user's own repository, beside a module it imports."""
from deeplab_tf.configs import derive
from experiments import quickstart

VARIANTS = {"short": 3, "long": 900}


def get_config(variant=None):
    from my_base import STEPS   # a sibling module, imported when the config is made
    return derive(quickstart.get_config(), name="mine",
                  train=dict(steps=VARIANTS.get(variant, STEPS), base_lr=0.02),
                  model=dict(multi_grid=(1, 2, 1)))
'''


@pytest.fixture
def user_repo(tmp_path):
    repo = tmp_path / "my_repo"
    repo.mkdir()
    (repo / "my_base.py").write_text("STEPS = 77\n")
    (repo / "mine.py").write_text(USER_EXPERIMENT)
    return repo


def test_user_experiment_file_outside_the_package(user_repo):
    config = config_sources.resolve(str(user_repo / "mine.py"))
    assert (config.name, config.train.steps, config.train.base_lr) == ("mine", 77, 0.02)
    assert config.model.multi_grid == (1, 2, 1)
    assert config.data == experiments.get_config("quickstart").data   # derived, not copied
    assert config_sources.resolve(f"{user_repo / 'mine.py'}:short").train.steps == 3


def test_presets_are_still_found_by_name():
    assert config_sources.resolve("table1_output_stride.os8") == \
        experiments.get_config("table1_output_stride.os8")
    assert not config_sources.is_experiment_file("table1_output_stride.os8")
    assert config_sources.is_experiment_file("gs://bucket/exp/city.py:small")


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_config_file_then_overrides(tmp_path, suffix):
    """experiment < config file < overrides, key by key; keys the file does not name keep
    the experiment's values."""
    path = tmp_path / f"c{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps({"train": {"steps": 11, "base_lr": 0.5},
                                    "model": {"multi_grid": [1, 2, 2]}}))
    else:   # YAML 1.1 reads 1e-3 as a string: the field's type makes it a float
        path.write_text("train:\n  steps: 11\n  base_lr: 1e-3\nmodel:\n  multi_grid: [1, 2, 2]\n")
    config = config_sources.resolve("quickstart", str(path), "train.steps=5")
    preset = experiments.get_config("quickstart")
    assert config.train.steps == 5                              # the override wins
    assert config.train.base_lr == (0.5 if suffix == ".json" else 0.001)   # the file's
    assert config.model.multi_grid == (1, 2, 2) and isinstance(config.model.multi_grid, tuple)
    assert config.train.warmup_steps == preset.train.warmup_steps   # the experiment's
    assert config.data == preset.data


def test_a_runs_config_json_re_runs_it(tmp_path):
    """config.json -> --config_file on top of any experiment gives the identical config."""
    original = configs.apply_overrides(experiments.get_config("voc_r101_os8_aspp_stage2"),
                                       "eval.pad_to=(513,513),model.aspp_rates=none")
    configs.save_json(original, tmp_path / "config.json")
    again = config_sources.resolve("quickstart", str(tmp_path / "config.json"))
    assert again == original
    assert configs.to_json(again) == (tmp_path / "config.json").read_text()
    (tmp_path / "config.yaml").write_text(   # the same as YAML (JSON is YAML too)
        (tmp_path / "config.json").read_text())
    assert config_sources.resolve("quickstart", str(tmp_path / "config.yaml")) == original


@pytest.mark.parametrize("name,text,words", [
    ("unknown.json", {"train": {"lr": 1}}, ["unknown.json", "train.lr", "train.base_lr"]),
    ("section.json", {"trian": {}}, ["section.json", "'trian'", "'train'"]),
    ("type.json", {"train": {"steps": 1.5}}, ["type.json", "train.steps=1.5", "expected int"]),
    ("type.yaml", "train:\n  steps: ten\n", ["type.yaml", "train.steps='ten'", "expected int"]),
    ("tuple.yaml", "model:\n  multi_grid: [1, x]\n",
     ["tuple.yaml", "model.multi_grid='x'", "expected int"]),
    ("bool.json", {"train": {"then_export": "maybe"}},
     ["bool.json", "train.then_export='maybe'", "expected bool"]),
    ("range.json", {"model": {"output_stride": 12}}, ["range.json", "model.output_stride=12"]),
    ("notmap.yaml", "train: 5\n", ["notmap.yaml", "train=5", "expected a mapping"]),
    ("list.yaml", "- 1\n- 2\n", ["list.yaml", "expected a mapping of sections", "list"]),
    ("empty.yaml", "", ["empty.yaml", "expected a mapping", "NoneType"]),
    ("syntax.json", '{"train": {"steps": 1,}}', ["syntax.json", "not valid JSON", "line 1"]),
    ("syntax.yaml", "train:\n  steps: [1\n", ["syntax.yaml", "not valid YAML", "line"]),
    ("code.yaml", "train: !!python/object/apply:os.system [touch PWNED]\n",
     ["code.yaml", "not valid YAML"]),
    ("config.txt", "{}", ["config.txt", "expected a .json, .yaml or .yml"]),
])
def test_bad_config_file_names_file_and_key(tmp_path, name, text, words):
    path = tmp_path / name
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    with pytest.raises(ConfigError) as error:
        config_sources.resolve("quickstart", str(path))
    for word in words:
        assert word in str(error.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]   # no PWNED


@pytest.mark.parametrize("source,words", [
    ("", ["defines no get_config()"]),
    ("def get_config(variant=None):\n    return {'train': {}}\n",
     ["get_config() returned dict", "ExperimentConfig"]),
    ("def get_config(variant=None)\n    pass\n", ["line 1", "Python experiment file"]),
    ("from deeplab_tf.configs import ExperimentConfig, derive\n"
     "def get_config(variant=None):\n"
     "    return derive(ExperimentConfig(), model=dict(output_stride=12))\n",
     ["model.output_stride=12"]),
])
def test_bad_experiment_file_names_it(tmp_path, source, words):
    path = tmp_path / "exp.py"
    path.write_text(textwrap.dedent(source))
    with pytest.raises(ConfigError) as error:
        config_sources.resolve(str(path))
    assert str(path) in str(error.value)
    for word in words:
        assert word in str(error.value)


def test_missing_files_and_unknown_variants(user_repo, tmp_path):
    with pytest.raises(ConfigError, match="no such experiment file"):
        config_sources.resolve(str(tmp_path / "nope.py"))
    with pytest.raises(ConfigError, match="no such config file"):
        config_sources.resolve("quickstart", str(tmp_path / "nope.yaml"))
    with pytest.raises(ConfigError, match="has no variant 'medium'; available: short, long"):
        config_sources.resolve(f"{user_repo / 'mine.py'}:medium")
    with pytest.raises(ConfigError, match="PATH.py"):   # the hint for a mistyped name
        config_sources.resolve("my_experiment")
