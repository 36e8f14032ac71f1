"""Writes that fail part-way (EFBIG under RLIMIT_FSIZE, in scenarios.py's child) while
converting TFRecords, saving a checkpoint and exporting: a clear error, nothing partial
that looks complete, and what was there before unchanged, byte for byte."""
import pytest

EXPECTED = {
    # artifact: what the error must say
    # the shard being written: its name tagged with the run (the previous dataset's shard
    # has the usual name and stays readable: data/output_folder.py)
    "records": [".train-00000-of-00001-", "writing the shard failed", "File too large"],
    "checkpoint": ["writing checkpoint", "ckpt-22 failed", "File too large",
                   "the latest complete checkpoint is", "ckpt-20"],
    "export": ["writing the SavedModel", "File too large", "nothing of it was kept",
               "the export already there is unchanged"],
}


@pytest.mark.parametrize("artifact", sorted(EXPECTED))
def test_a_failed_write_leaves_the_earlier_artifact_intact(streams, ledger, artifact):
    ledger.injected()
    run = streams.others()["write"][artifact]
    assert run["error"], f"no error: the {artifact} write did not fail"
    for words in EXPECTED[artifact]:
        assert words in run["error"], run["error"]
    ledger.lost(len(run["changed"]))
    assert run["changed"] == []     # every earlier file is still there, unchanged
    assert run["new"] == []         # and nothing was added: no partial shard / checkpoint
    assert run.get("leftovers", []) == []   # export: no temporary directory beside it
    ledger.survived()
