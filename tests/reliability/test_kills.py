"""Training killed at seeded points, a checkpoint write included, and restarted: each
restart resumes from the last complete checkpoint, no checkpoint is ever corrupt, and the
final weights equal an uninterrupted run's, bit for bit (deterministic ops). Damaged
checkpoints: training falls back to an older one with a warning and keeps the files."""
import glob
import os
import signal

import numpy as np
import tensorflow as tf

from .conftest import STEPS, state_file

EXPECTED_SIGNAL = {"in_write": signal.SIGXFSZ}   # the others kill themselves with SIGKILL


def variables(path):
    """{name: array} of every variable of a checkpoint (model and optimizer), read raw."""
    reader = tf.train.load_checkpoint(path)
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if not k.startswith(("save_counter", "_CHECKPOINTABLE_OBJECT_GRAPH"))}


def test_each_restart_resumes_from_the_last_complete_checkpoint(streams, ledger):
    plan, chain = streams.plan, streams.chain_result()
    ledger.injected(len(plan))
    assert [life["kind"] for life in chain["lives"]] == [k["kind"] for k in plan]
    resume = 0
    for life in chain["lives"]:
        signum = EXPECTED_SIGNAL.get(life["kind"], signal.SIGKILL)
        assert life["returncode"] == -signum, life["tail"]
        assert life["resumed"] == (resume or None), life["tail"]   # None: a fresh start
        assert not life["warned"], life["tail"]                      # nothing was unreadable
        latest, listed = life["state"]
        assert latest == f"ckpt-{life['last_complete']}"
        assert latest in listed
        step_files = os.path.join(life["snapshot"], f"ckpt-{life['step']}")
        if life["kind"] == "mid_save":   # killed with the files written, not yet recorded
            assert os.path.exists(step_files + ".index") and latest != f"ckpt-{life['step']}"
        if life["kind"] == "in_write":   # killed by the kernel half-way through the data
            partial = glob.glob(step_files + "_temp/*.data-*")
            assert partial and os.path.getsize(partial[0]) <= 1 << 20, life["tail"]
            assert not os.path.exists(step_files + ".index")
        resume = life["last_complete"]
    last = chain["last"]
    assert "error" not in last, last
    assert f"at step {resume}" in " ".join(last["warnings"])
    assert last["step"] == STEPS and os.path.basename(last["checkpoint"]) == f"ckpt-{STEPS}"
    ledger.survived(len(plan))


def test_no_checkpoint_is_ever_corrupt(streams):
    """Every checkpoint the state file listed after each kill reads completely (CRCs)."""
    checked = 0
    for life in streams.chain_result()["lives"]:
        latest, listed = state_file(life["snapshot"])
        assert listed
        for name in listed:
            assert all(np.all(np.isfinite(v)) for v in variables(
                os.path.join(life["snapshot"], name)).values() if v.dtype.kind == "f")
            checked += 1
    assert checked >= len(streams.plan)


def test_final_weights_equal_an_uninterrupted_run(streams):
    chain = streams.chain_result()["last"]
    resumed = variables(chain["checkpoint"])
    straight = variables(streams.others()["reference"])
    assert sorted(resumed) == sorted(straight) and len(resumed) > 100
    different = [k for k in resumed if not np.array_equal(resumed[k], straight[k])]
    assert different == []
    # ... and training did move them: the comparison is not between two initial states.
    first = variables(os.path.join(streams.chain_result()["lives"][0]["snapshot"], "ckpt-2"))
    assert sum(not np.array_equal(first[k], straight[k]) for k in first) > 100


def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(streams, ledger):
    fallbacks = streams.others()["fallback"]
    ledger.injected(sum(len(f["damaged"]) for f in fallbacks.values()))
    for name, run in fallbacks.items():
        warnings = "\n".join(run["warnings"])
        expected = run["expected_resume"]
        assert f"ckpt-{expected} at step {expected}" in warnings, warnings
        for newer in range(expected + 2, STEPS + 1, 2):   # each skipped one is named
            assert f"ckpt-{newer} is unreadable" in warnings, warnings
        assert run["step"] == STEPS + 2 and run["latest"] == f"ckpt-{STEPS + 2}"
        ledger.lost(len(run["lost"]))
        assert run["lost"] == []   # every damaged file kept, byte for byte
        assert set(run["damaged"]) <= set(run["unreadable"]), name
    ledger.survived(sum(len(f["damaged"]) for f in fallbacks.values()))
