"""checkpointing.save's fault points run in order, and a save that cannot write (here the
model_dir was replaced by a file; TensorFlow recreates a deleted one) is a
CheckpointWriteError naming the checkpoint and the last complete one, not an OpError from
deep inside TensorFlow."""
import shutil

import pytest
import tensorflow as tf

from deeplab_tf import checkpointing


def test_fault_points_and_a_save_that_cannot_write(tmp_path, ledger):
    ledger.injected()
    step = tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(step=step, weights=tf.Variable([1.0, 2.0]))
    manager = checkpointing.make_manager(checkpoint, str(tmp_path / "run" / "checkpoints"), 3,
                                         step)
    calls = []
    hooks = {"before_save": lambda s: calls.append(("before_save", s)),
             "mid_save": lambda s, path: calls.append(("mid_save", s, manager.latest_checkpoint)),
             "after_save": lambda s, path: calls.append(("after_save", s, path))}
    first = checkpointing.save(manager, 2, hooks)
    # mid_save runs with the files written and the previous checkpoint still the latest.
    assert calls == [("before_save", 2), ("mid_save", 2, None), ("after_save", 2, first)]
    shutil.rmtree(tmp_path / "run")
    (tmp_path / "run").write_text("not a directory any more")
    with pytest.raises(checkpointing.CheckpointWriteError) as error:
        checkpointing.save(manager, 4)
    message = str(error.value)
    assert "writing checkpoint" in message and "ckpt-4 failed" in message
    assert f"the latest complete checkpoint is {first}" in message
    assert "function_node" not in message   # TF's graph decoration is left out
    ledger.survived()
