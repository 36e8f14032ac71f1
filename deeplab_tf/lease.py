"""A lease on a folder: one writer at a time (a trainer in its model_dir, a dataset writer in
its output folder), over `fileio` only, so local disks, gs:// and ram:// alike.

    with lease.Lease(model_dir, what="deeplab-train"):
        ...   # a second Lease on model_dir raises LeaseHeldError meanwhile

The lease is the file <folder>/lease.json: {host, pid, run_id, what, started, heartbeat,
timeout}. A background thread rewrites `heartbeat` every `heartbeat_seconds`; the lease is
removed on leaving the block, whether normally, by an exception or by sys.exit (exit 75 of a
preempted trainer included).

A lease is stale, and taken over with a warning, when its heartbeat is older than its
`timeout` seconds (default STALE_SECONDS: 10 heartbeats; hosts' clocks must agree to well
within it), or at once when it names this host and a process that no longer exists (a
trainer killed with SIGKILL). `break_lease=True` takes over a live one (deeplab-train
--break_lease): only when you know its holder is gone.

Taking a lease writes lease.json, then reads it back: the one whose run_id is read back
holds it. On a local disk the write is an atomic rename, so two takers who both read "free"
end with one file and one holder, but the loser may have read back its own record before the
winner's rename landed. On an object store (gs://) there is no compare-and-swap through
tf.io.gfile either: two takers within one round trip of each other can both believe they
hold it. The heartbeat thread narrows the window: each beat reads the file first, and a
holder that finds another run_id there stops beating and reports it (`lost`), without
overwriting the other. The lease keeps honest users apart; it is no mutual exclusion
against a simultaneous start.
"""
import json
import logging
import os
import socket
import threading
import time
import uuid

from deeplab_tf import fileio

NAME = "lease.json"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 10 * HEARTBEAT_SECONDS

_LOG = logging.getLogger("deeplab_tf.lease")


class LeaseHeldError(RuntimeError):
    """Another live process holds the lease; the message says who, since when, and what to do."""


def _iso(t):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True
    return True


def read(folder):
    """The lease record of `folder` (a dict), or None if there is none; an unreadable one is
    {"unreadable": reason} (treated as stale)."""
    path = fileio.join(folder, NAME)
    if not fileio.exists(path):
        return None
    try:
        record = fileio.read_json(path)
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
        return record
    except (OSError, ValueError) as e:
        return {"unreadable": str(e)}


def stale_reason(record, now=None):
    """Why `record` no longer holds its folder, or None while it does."""
    if "unreadable" in record:
        return f"unreadable ({record['unreadable']})"
    now = time.time() if now is None else now
    try:
        heartbeat = float(record["heartbeat"])
        timeout = float(record.get("timeout", STALE_SECONDS))
    except (KeyError, TypeError, ValueError):
        return "no heartbeat in it"
    if record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1))):
        return f"its process {record.get('pid')} on this host no longer exists"
    if now - heartbeat > timeout:
        return f"no heartbeat for {now - heartbeat:.0f} s (stale after {timeout:.0f} s)"
    return None


class Lease:
    """Holds `folder`'s lease while in its `with` block (module docstring).

    Args:
      folder: the folder to hold (created if missing).
      what: who holds it, for the messages ("deeplab-train").
      timeout: seconds without a heartbeat after which the lease is stale (STALE_SECONDS).
      heartbeat_seconds: how often the holder rewrites its heartbeat (HEARTBEAT_SECONDS).
      break_lease: take it over even from a live holder.
      hint: what a refused user should do, appended to LeaseHeldError's message.
    """

    def __init__(self, folder, what="a writer", timeout=STALE_SECONDS,
                 heartbeat_seconds=HEARTBEAT_SECONDS, break_lease=False, hint=""):
        self.folder, self.what, self.timeout = folder, what, float(timeout)
        self.heartbeat_seconds, self.break_lease, self.hint = heartbeat_seconds, break_lease, hint
        self.path = fileio.join(folder, NAME)
        self.run_id = uuid.uuid4().hex
        self.started = None
        self.lost = None   # why the lease was lost while held (another took it), or None
        self._stop = threading.Event()
        self._thread = None

    def _record(self, now):
        return {"host": socket.gethostname(), "pid": os.getpid(), "run_id": self.run_id,
                "what": self.what, "started": self.started, "heartbeat": now,
                "timeout": self.timeout}

    def acquire(self):
        current = read(self.folder)
        if current is not None:
            reason = stale_reason(current)
            who = (f"{current.get('what', '?')} on host {current.get('host')} pid "
                   f"{current.get('pid')}")
            if reason is None and not self.break_lease:
                heartbeat = float(current["heartbeat"])
                raise LeaseHeldError(
                    f"{self.folder} is in use by {who} (run {current.get('run_id')}), since "
                    f"{_iso(float(current.get('started') or heartbeat))}, last heartbeat "
                    f"{_iso(heartbeat)} ({time.time() - heartbeat:.0f} s ago; stale after "
                    f"{float(current.get('timeout', STALE_SECONDS)):.0f} s without one). Wait "
                    f"for it to finish or stop it; "
                    + (self.hint or f"if it is gone, remove {self.path}"))
            _LOG.warning("taking over the lease of %s from %s: %s", self.folder, who,
                         reason or "broken on request (break_lease)")
        self.started = time.time()
        fileio.write_json(self.path, self._record(self.started))
        back = read(self.folder) or {}
        if back.get("run_id") != self.run_id:
            raise LeaseHeldError(f"{self.folder}: another process took the lease at the same "
                                 f"time ({back.get('host')} pid {back.get('pid')})")
        self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(self.heartbeat_seconds):
            self.beat()

    def beat(self):
        """Rewrites the heartbeat, unless another run took the lease (then `lost` says so)."""
        try:
            current = read(self.folder) or {}
            if current.get("run_id") != self.run_id:
                self.lost = (f"{self.path} now names {current.get('host')} pid "
                             f"{current.get('pid')}: the lease was taken over")
                _LOG.error("%s; this run keeps going but no longer holds it", self.lost)
                self._stop.set()
                return
            fileio.write_json(self.path, self._record(time.time()))
        except Exception as e:   # a failed beat is retried at the next one
            _LOG.warning("lease heartbeat of %s failed: %s", self.path, e)

    def release(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        current = read(self.folder)
        if current is not None and current.get("run_id") == self.run_id:
            fileio.remove(self.path, missing_ok=True)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False
