"""Bad config files and experiment files given to deeplab-train as users type it (the
console script): unknown keys, wrong types, out-of-range values, broken JSON/YAML, YAML
that asks for Python objects, a missing file, a Python file without get_config() or with
a syntax error. Each is a clear error (exit status 1, no traceback) naming the file and the
key, the value and what was expected, before any work: nothing is written, no code from a
config file runs."""
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

TRAIN = os.path.join(os.path.dirname(sys.executable), "deeplab-train")
CASES = [
    # (file name, its text, flags beside --model_dir=run, words the error must contain)
    ("c.json", json.dumps({"train": {"lr": 0.1}}), ["--config_file=c.json"],
     ["c.json: unknown config key(s) ['train.lr']", "train.base_lr"]),
    ("c.yaml", "modle:\n  output_stride: 8\n", ["--config_file=c.yaml"],
     ["c.yaml: unknown config key(s) ['modle']", "'model'"]),
    ("c.yaml", "train:\n  steps: ten\n", ["--config_file=c.yaml"],
     ["c.yaml: train.steps='ten': expected int"]),
    ("c.json", json.dumps({"model": {"multi_grid": [1, 2.5]}}), ["--config_file=c.json"],
     ["c.json: model.multi_grid=2.5: expected int"]),
    ("c.json", json.dumps({"data": {"crop_size": [513]}}), ["--config_file=c.json"],
     ["c.json: data.crop_size=[513]: expected 2 values"]),
    ("c.yml", "model:\n  output_stride: 12\n", ["--config_file=c.yml"],
     ["c.yml: model.output_stride=12: expected 8, 16 or 32"]),
    ("c.json", '{"train": {"steps": 5', ["--config_file=c.json"],
     ["c.json: not valid JSON: line 1 column"]),
    ("c.yaml", "train: [1\n", ["--config_file=c.yaml"], ["c.yaml: not valid YAML"]),
    ("c.yaml", "train: !!python/object/apply:os.system ['touch PWNED']\n",
     ["--config_file=c.yaml"], ["c.yaml: not valid YAML", "python/object/apply"]),
    ("c.ini", "[train]\nsteps=5\n", ["--config_file=c.ini"],
     ["c.ini: expected a .json, .yaml or .yml config file"]),
    (None, None, ["--config_file=absent.yaml"], ["absent.yaml: no such config file"]),
    ("exp.py", "STEPS = 5\n", ["--experiment=exp.py"], ["exp.py defines no get_config()"]),
    ("exp.py", "def get_config(variant=None)\n", ["--experiment=exp.py"],
     ["exp.py: line 1: expected ':'"]),
    ("exp.py", "VARIANTS = {'a': 1}\ndef get_config(variant=None):\n    return None\n",
     ["--experiment=exp.py:b"], ["exp.py has no variant 'b'; available: a"]),
    ("exp.py", "def get_config(variant=None):\n    return None\n", ["--experiment=exp.py"],
     ["exp.py: get_config() returned NoneType, expected"]),
    (None, None, ["--experiment=absent.py"], ["absent.py: no such experiment file"]),
]


@pytest.mark.parametrize("name,text,flags,words", CASES,
                         ids=[f"{c[0]}:{c[3][0][:40]}" for c in CASES])
def test_bad_config_or_experiment_file_is_a_clear_error(name, text, flags, words, tmp_path,
                                                        ledger):
    ledger.injected()
    ledger.inputs()
    if name:
        (tmp_path / name).write_text(text)
    before = sorted(os.listdir(tmp_path))
    run = subprocess.run([TRAIN, "--model_dir=run", *flags], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert run.returncode == 1, run.stderr[-2000:]
    for word in words:
        assert word in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    assert sorted(os.listdir(tmp_path)) == before   # no run/, no PWNED
    if name:
        assert (tmp_path / name).read_text() == text   # the user's file untouched
    ledger.survived()
