"""deeplab_tf/lease.py: one holder per folder, on a local disk and on ram:// (in-process, as
gs:// is reached through tf.io.gfile); stale leases (old heartbeat, or this host and a dead
process) taken over with a warning; a live one refused naming its holder; a holder whose
lease was broken stops beating without overwriting the new holder. No test waits on time:
heartbeats are written by calling `beat()`."""
import json
import logging
import os
import socket
import subprocess
import sys
import time
import uuid

import pytest

from deeplab_tf import fileio, lease


def write_record(folder, **fields):
    record = dict(host="another-host", pid=12345, run_id="other", what="deeplab-train",
                  started=time.time() - 100, heartbeat=time.time(), timeout=300.0)
    record.update(fields)
    fileio.write_json(fileio.join(folder, lease.NAME), record)
    return record


def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_held_folder_refuses_a_second_holder_on_ram(ledger):
    ledger.injected(2)
    folder = f"ram://lease-{uuid.uuid4().hex[:8]}/run"
    first = lease.Lease(folder, what="deeplab-train", heartbeat_seconds=3600)
    with first:
        record = fileio.read_json(fileio.join(folder, lease.NAME))
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        assert record["run_id"] == first.run_id and record["heartbeat"] >= record["started"]
        with pytest.raises(lease.LeaseHeldError) as error:
            lease.Lease(folder, hint="rerun with --break_lease").acquire()
        message = str(error.value)
        assert f"pid {os.getpid()}" in message and "last heartbeat" in message
        assert "since" in message and "--break_lease" in message
        assert fileio.read_json(fileio.join(folder, lease.NAME)) == record   # untouched
        first.beat()
        assert fileio.read_json(fileio.join(folder, lease.NAME))["heartbeat"] >= \
            record["heartbeat"]
        # broken on request: the old holder finds out at its next beat and writes nothing
        with lease.Lease(folder, break_lease=True, heartbeat_seconds=3600) as second:
            first.beat()
            assert first.lost and "taken over" in first.lost
            assert fileio.read_json(fileio.join(folder, lease.NAME))["run_id"] == \
                second.run_id
        assert not fileio.exists(fileio.join(folder, lease.NAME))
    # the first one's release leaves what is not its own alone (nothing left here)
    assert not fileio.exists(fileio.join(folder, lease.NAME))
    fileio.rmtree(folder)
    ledger.survived(2)


@pytest.mark.parametrize("case", ["old heartbeat", "dead pid on this host", "unreadable"])
def test_a_stale_lease_is_taken_over_with_a_warning(tmp_path, case, caplog, ledger):
    ledger.injected()
    folder = str(tmp_path)
    if case == "old heartbeat":
        write_record(folder, heartbeat=time.time() - 301, timeout=300.0)
        expected = "no heartbeat for"
    elif case == "dead pid on this host":   # heartbeat fresh: stale at once all the same
        write_record(folder, host=socket.gethostname(), pid=dead_pid())
        expected = "no longer exists"
    else:
        (tmp_path / lease.NAME).write_text('{"host": "a", "pid"')   # a cut-off write
        expected = "unreadable"
    with caplog.at_level(logging.WARNING, logger="deeplab_tf.lease"):
        with lease.Lease(folder, heartbeat_seconds=3600) as held:
            assert json.loads((tmp_path / lease.NAME).read_text())["run_id"] == held.run_id
    assert any("taking over the lease" in r.getMessage() and expected in r.getMessage()
               for r in caplog.records), caplog.text
    assert not (tmp_path / lease.NAME).exists()
    ledger.survived()


def test_a_live_lease_of_another_host_is_refused_and_released_on_error(tmp_path, ledger):
    ledger.injected(2)
    record = write_record(str(tmp_path), heartbeat=time.time() - 299, timeout=300.0)
    with pytest.raises(lease.LeaseHeldError, match="another-host pid 12345"):
        lease.Lease(str(tmp_path)).acquire()
    assert json.loads((tmp_path / lease.NAME).read_text()) == record
    (tmp_path / lease.NAME).unlink()
    with pytest.raises(SystemExit):   # exit 75 of a preempted trainer: released all the same
        with lease.Lease(str(tmp_path), heartbeat_seconds=3600):
            sys.exit(75)
    assert not (tmp_path / lease.NAME).exists()
    ledger.survived(2)
