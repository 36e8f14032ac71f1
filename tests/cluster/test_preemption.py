"""Preemption notices (deeplab_tf/preemption.py): signals and the GCE metadata server, as a
process sees them, and MirroredStrategy over 2 logical CPU devices stopped by SIGTERM.

The default strategy is covered by tests/training/test_train_loop.py (library) and
tests/training/test_train_cli.py (deeplab-train, exit status 75); two workers by
test_multi_worker_cli.py. Run as a script, this file is the Mirrored child process:
    python test_preemption.py mirrored WORKDIR
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from deeplab_tf import preemption
from gce_metadata import MetadataServer

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_until(condition, what, timeout=60):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def gce(monkeypatch):
    with MetadataServer() as server:
        monkeypatch.setenv(preemption.METADATA_ENV, server.address)
        yield server


def test_the_simulated_server_is_a_gce_cpu_vm_to_tensorflow(gce):
    """The simulation is one where TF's PreemptionCheckpointHandler switches itself off."""
    from tensorflow.python.distribute.failure_handling import failure_handling_util as util
    assert util.detect_platform() == util.PlatformDevice.GCE_CPU
    assert util.termination_watcher_function_gce() is False
    gce.values["instance/maintenance-event"] = "TERMINATE_ON_HOST_MAINTENANCE"
    assert util.termination_watcher_function_gce() is True


def test_sigterm_and_sigint_set_the_notice_and_the_handlers_are_put_back():
    before = {s: signal.getsignal(s) for s in preemption.SIGNALS}
    for signum, name in ((signal.SIGTERM, "SIGTERM"), (signal.SIGINT, "SIGINT")):
        with preemption.Watcher(metadata=False) as watcher:
            assert watcher.reason is None
            os.kill(os.getpid(), signum)
            wait_until(lambda: watcher.reason is not None, "the signal handler")
            assert watcher.reason == name
        assert {s: signal.getsignal(s) for s in preemption.SIGNALS} == before


@pytest.mark.parametrize("path,value,reason", [
    ("instance/maintenance-event", "TERMINATE_ON_HOST_MAINTENANCE",
     "GCE maintenance (instance/maintenance-event=TERMINATE_ON_HOST_MAINTENANCE)"),
    ("instance/preempted", "TRUE", "GCE preemption (instance/preempted=TRUE)"),
])
def test_a_metadata_event_is_a_notice_a_live_migration_is_not(gce, path, value, reason):
    with preemption.Watcher(poll_seconds=0.02) as watcher:
        polls = lambda: gce.requests["instance/maintenance-event"]  # noqa: E731
        wait_until(lambda: polls() >= 3, "polls while all is normal")
        gce.values["instance/maintenance-event"] = "MIGRATE_ON_HOST_MAINTENANCE"
        seen = polls()
        wait_until(lambda: polls() >= seen + 3, "polls during a live migration")
        assert watcher.reason is None
        gce.values[path] = value
        wait_until(lambda: watcher.reason is not None, "the event")
        assert watcher.reason == reason
        watcher.thread.join(timeout=10)   # the thread ends with the notice
        assert not watcher.thread.is_alive()


def test_a_server_that_is_not_the_metadata_server_is_not_watched(monkeypatch):
    """Something answering at the address without `Metadata-Flavor: Google` (or nothing
    there: off GCE) is not GCE: no polling."""
    with MetadataServer(flavor_header=False) as server:
        monkeypatch.setenv(preemption.METADATA_ENV, server.address)
        server.values["instance/maintenance-event"] = "TERMINATE_ON_HOST_MAINTENANCE"
        with preemption.Watcher(poll_seconds=0.02) as watcher:
            watcher.thread.join(timeout=10)
            assert not watcher.thread.is_alive()
        assert server.requests["instance/hostname"] == 1
        assert server.requests["instance/maintenance-event"] == 0 and watcher.reason is None


# ---------------------------------------------------------------------------- Mirrored

def test_sigterm_stops_two_mirrored_replicas_with_one_checkpoint(tmp_path):
    proc = subprocess.Popen([sys.executable, __file__, "mirrored", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "w"),
                            env=dict(os.environ, **{preemption.HOLD_ENV: "2"}))
    log = lambda: (tmp_path / "log").read_text()  # noqa: E731
    try:
        wait_until(lambda: "holding after step 2" in log() or proc.poll() is not None,
                   "step 2", timeout=300)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 75, log()[-3000:]
    out = json.loads((tmp_path / "result.json").read_text())
    assert out == {"replicas": 2, "step": 2, "reason": "SIGTERM",
                   "checkpoints": ["ckpt-2"], "latest": "ckpt-2"}


def mirrored(workdir):
    """2 replicas on 2 logical CPUs; held after step 2 until the test's SIGTERM; exits 75
    on Preempted, as deeplab-train does."""
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "training"))
    from deeplab_tf.testing import tiny_config
    from helpers import META, dataset_fn
    from deeplab_tf import checkpointing, train_lib
    from deeplab_tf import model_dir as model_dir_lib
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    config = tiny_config("train.steps=50,train.checkpoint_every=100")
    hold = preemption.hold_until_notice(int(os.environ[preemption.HOLD_ENV]))
    try:
        train_lib.train(config, workdir, META, dataset_fn(4), strategy=strategy,
                        hooks={"at_boundary": hold})
    except train_lib.Preempted as e:
        checkpointing.verify(e.checkpoint)   # every tensor reads: the checkpoint is complete
        state = tf.train.get_checkpoint_state(model_dir_lib.checkpoint_dir(workdir))
        out = json.dumps({"replicas": strategy.num_replicas_in_sync, "step": e.step,
                          "reason": e.reason, "latest": os.path.basename(e.checkpoint),
                          "checkpoints": [os.path.basename(p) for p in
                                          state.all_model_checkpoint_paths]})
        with open(os.path.join(workdir, "result.json"), "w") as f:
            f.write(out)
        sys.exit(train_lib.PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
    import logging
    logging.basicConfig(level=logging.WARNING)
    {"mirrored": mirrored}[sys.argv[1]](sys.argv[2])
