"""The README's "Use your own data" path as a user follows it: a folder of images and masks
(the real VOC samples in the README's layout under ~/data/mydata) converted, inspected and
trained on by the README's commands as typed (training shrunk: readme.TINY_TRAIN)."""
import json

from PIL import Image

from . import readme


def test_folder_to_records_to_training(tmp_path):
    # readme.run's HOME is tmp_path/home: the user's folder is ~/data/mydata.
    readme.voc_folder(tmp_path / "home" / "data" / "mydata", {"train": range(6), "val": (6, 7)})
    done = readme.run(readme.command("build_folder"), tmp_path)
    assert "masks: palette" in done.stdout + done.stderr
    manifest = json.loads((tmp_path / "data" / "mydata" / "manifest.json").read_text())
    counts = {split: info["num_examples"] for split, info in manifest["splits"].items()}
    assert counts == {"train": 6, "val": 2}, counts

    readme.run(readme.command("inspect"), tmp_path)
    samples = sorted((tmp_path / "inspect").glob("*.png"))
    assert samples and Image.open(samples[0]).format == "PNG"

    readme.run(readme.shrink(readme.command("train_mydata")), tmp_path)
    run = tmp_path / "runs" / "mydata"
    assert (run / "checkpoints").is_dir()
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["train_records"] == "data/mydata/train-*.tfrecord"
    assert config["train"]["steps"] == 2
    dataset = json.loads((run / "dataset.json").read_text())
    assert dataset["class_names"][15] == "person"
