"""A conversion writes only into an empty folder or one holding its own dataset: deeplab-
build-data (and the quickstart's synthetic data) aimed at a folder of the user's photos, at
another tool's records without a manifest, or at another dataset's folder is refused before
any work, every file byte for byte; killed while publishing, a rerun leaves the previous
dataset whole under its manifest (data/output_folder.py, data/writer.py)."""
import os
import subprocess
import sys

import pytest

from deeplab_tf.data import writer
from deeplab_tf.data.converters import synthetic

from .files import snapshot

BIN = os.path.dirname(sys.executable)
SMALL = ["--num_train=2", "--num_val=1", "--image_size=24,24", "--num_shards=1",
         "--num_workers=1"]


def _build(cwd, *flags):
    return subprocess.run([os.path.join(BIN, "deeplab-build-data"), *flags],
                          capture_output=True, text=True, timeout=300, cwd=cwd)


def _folder_dataset(root):
    """A 'folder' dataset of 3 classes (not synthetic's 5), one image."""
    import numpy as np
    from PIL import Image
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(root / "masks" / "a.png")
    (root / "classes.txt").write_text("background\nroad\ncar\n")


def _photos(folder):
    folder.mkdir()
    (folder / "holiday.jpg").write_bytes(b"the user's photo")


def _other_tools_records(folder):
    folder.mkdir()
    (folder / "train-00000-of-00004.tfrecord").write_bytes(b"research/deeplab's shard")


def _another_dataset(folder):
    synthetic.convert(str(folder), num_train=2, num_val=1, image_size=(24, 24), num_shards=1,
                      num_workers=1, progress=False)


# target folder maker, the words of the refusal
TARGETS = {
    "a folder of photos": (_photos, "holiday.jpg"),
    "another tool's records": (_other_tools_records, "train-00000-of-00004.tfrecord"),
    "another dataset's folder": (_another_dataset, "holds another dataset (5 classes"),
}


@pytest.mark.parametrize("case", sorted(TARGETS))
def test_build_data_refuses_a_folder_it_did_not_write(tmp_path, ledger, case):
    ledger.injected()
    make, words = TARGETS[case]
    _folder_dataset(tmp_path / "mydata")
    make(tmp_path / "out")
    before = snapshot(tmp_path)
    run = _build(tmp_path, "folder", "--root=mydata", "--output_dir=out", "--num_workers=1")
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert words in run.stderr and "choose another --output_dir" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    after = snapshot(tmp_path)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert after == before
    ledger.survived()


def test_synthetic_generation_never_writes_into_a_folder_of_user_records(tmp_path, ledger):
    """The quickstart generates its dataset when data.train_records' folder has no
    manifest: a folder of the user's own records (no manifest) is refused, not filled."""
    ledger.injected()
    _other_tools_records(tmp_path / "records")
    before = snapshot(tmp_path)
    run = subprocess.run(
        [os.path.join(BIN, "deeplab-train"), "--experiment=quickstart", "--model_dir=run",
         "--params_override=data.train_records=records/train-*.tfrecord,train.steps=1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "record shards that no manifest.json lists" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    after = snapshot(tmp_path)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert {k: after.get(k) for k in before} == before
    assert not [k for k in after if k.startswith("records/") and k not in before]
    ledger.survived()


def test_rerun_replaces_its_own_dataset_and_only_its_listed_shards(tmp_path, ledger):
    """Its own folder: rewritten (a new seed), the old shards gone once the new manifest is
    there, a stray shard of a killed run (listed nowhere) left alone and reported."""
    ledger.injected()
    assert _build(tmp_path, "synthetic", "--output_dir=out", *SMALL).returncode == 0
    first = writer.load_manifest(tmp_path / "out")
    stray = tmp_path / "out" / "train-00000-of-00002.tfrecord"
    stray.write_bytes((tmp_path / "out" / first.splits["train"]["shards"][0]).read_bytes())
    run = _build(tmp_path, "synthetic", "--output_dir=out", "--seed=3", *SMALL)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "train-00000-of-00002.tfrecord" in run.stderr and "left alone" in run.stderr
    second = writer.load_manifest(tmp_path / "out")
    assert second.data["converter"]["args"]["seed"] == 3
    assert stray.exists()
    names = set(os.listdir(tmp_path / "out"))
    assert names == ({"manifest.json", stray.name}
                     | {n for s in second.splits.values() for n in s["shards"]}), names
    ledger.survived()


@pytest.mark.parametrize("stage", ["commit", "manifest"])
def test_killed_while_publishing_the_previous_dataset_stays_whole(tmp_path, ledger, stage):
    ledger.injected()
    options = dict(num_train=3, num_val=1, image_size=(24, 24), num_shards=2, num_workers=1,
                   progress=False)
    synthetic.convert(str(tmp_path), **options)
    before = snapshot(tmp_path)

    def die(at, path, index):
        if at == stage:
            raise OSError("killed (injected)")
    with pytest.raises(OSError, match="injected"):
        synthetic.convert(str(tmp_path), seed=5, fault_hook=die, **options)
    after = snapshot(tmp_path)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert {k: after.get(k) for k in before} == before
    assert writer.load_manifest(tmp_path).num_examples("train") == 3
    ledger.survived()


def test_a_second_conversion_into_a_folder_being_written_is_refused(tmp_path, ledger):
    """One conversion at a time per output folder: a live lease of another conversion
    (another host's, heartbeat fresh) refuses deeplab-build-data naming the holder; the
    folder is unchanged and its lease left to its holder."""
    import json
    import time
    from deeplab_tf import lease
    ledger.injected()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / lease.NAME).write_text(json.dumps(dict(
        host="another-host", pid=12345, run_id="other", what="a dataset conversion",
        started=time.time() - 10, heartbeat=time.time(), timeout=300.0)))
    before = snapshot(tmp_path)
    run = _build(tmp_path, "synthetic", "--output_dir=out", *SMALL)
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    assert "another-host" in run.stderr and "12345" in run.stderr, run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    after = snapshot(tmp_path)
    ledger.lost(sum(after.get(k) != v for k, v in before.items()))
    assert after == before
    ledger.survived()
