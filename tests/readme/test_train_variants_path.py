"""The README's other training commands that run on one machine, as typed (shrunk:
readme.TINY_TRAIN): MirroredStrategy (all local devices) and a Table 3 preset."""
import json

from . import readme


def test_mirrored_and_a_table_preset(tmp_path):
    readme.voc_records(tmp_path)
    done = readme.run(readme.shrink(readme.command("train_mirrored")), tmp_path)
    assert (tmp_path / "runs" / "voc" / "checkpoints").is_dir(), done.stdout[-2000:]

    readme.run(readme.shrink(readme.command("train_table3")), tmp_path)
    config = json.loads((tmp_path / "runs" / "t3" / "config.json").read_text())
    # Table 3's row: Multi_Grid (1, 2, 1) with cascaded blocks up to block7.
    assert config["model"]["multi_grid"] == [1, 2, 1] and config["model"]["extra_blocks"] == 3
