"""Preemption: a notice that this machine is going away, agreed on by every worker, becomes
one complete checkpoint and exit status 75 (`train_lib.Preempted`, `deeplab-train`).

Notices (`Watcher`, one per process, for the length of `train_lib.train`):
  * SIGTERM: GKE pod eviction and node drain, Slurm (scancel; the time limit with
    `--signal=TERM@120`), `docker stop`, a VM's shutdown, TPU VM maintenance. SIGINT:
    Ctrl-C. The handler only sets a flag; the loop reads it between loops of steps.
  * The GCE metadata server (GCE and Cloud TPU VMs, GKE nodes), polled every second in a
    daemon thread: `instance/preempted` = TRUE (Spot and preemptible VMs: about 30 s left)
    and `instance/maintenance-event` = TERMINATE_ON_HOST_MAINTENANCE (GPU and TPU hosts
    cannot live-migrate). MIGRATE_ON_HOST_MAINTENANCE is a live migration, after which the
    VM runs on: logged, not a stop. Any other value but NONE is taken as a stop (losing a
    restart is cheaper than losing the steps). The thread runs only where
    `instance/hostname` answers with `Metadata-Flavor: Google`, the check TF's own
    `failure_handling_util.on_gcp` makes, at the address TF uses (`GCE_METADATA_IP`
    overrides metadata.google.internal).

Agreement (`Agreement`). At every loop boundary each worker puts its flag into one
all-gather through the strategy; every worker sees the same values, so all stop after the
same step and all save it (the chief into checkpoints/, the others into temporary folders
that are then removed: saving is collective). One scalar collective per loop of steps;
MultiWorkerMirroredStrategy only: under the default, Mirrored and TPU strategies one Python
process drives every replica, so its own flag is the decision.

Why not tf.distribute.experimental.PreemptionCheckpointHandler (TF 2.21,
distribute/failure_handling/failure_handling.py):
  1. It switches itself off ("does not support usage with TPU or CPU device on GCP") on
     GCE CPU VMs, Cloud TPU VMs and therefore GKE CPU nodes: there it saves nothing.
  2. On GCE GPU VMs it polls the maintenance event only, so a SIGTERM (GKE eviction) is
     lost, and by default it trains on for an hour's grace period before saving.
  3. Its constructor restores the latest checkpoint itself, past checkpointing's fallback
     over damaged checkpoints; given our manager on a non-chief worker it restores that
     worker's temporary folder. It adds a `checkpointed_runs` variable to the checkpoint,
     so checkpoints would differ by platform.
  4. It saves with CheckpointManager.save, not checkpointing.save (no CheckpointWriteError,
     no fault points), and leaves through `exit_fn` from inside the loop, so `train`
     cannot report the step or clean up.
  5. Where it does work (SIGTERM on Mirrored or MultiWorkerMirrored off GCE), it does what
     the flag and the all-gather do: agree on a step (through the coordination service)
     and save there. Both at once would race for SIGTERM and save twice.
So one mechanism serves every strategy and platform, the one the tests run (SIGTERM to
one of two workers on localhost, a simulated metadata server), and the handler is not used.

Limits: a notice is acted on at the next loop boundary, so `train.steps_per_loop` steps
must fit in the grace period (GKE: terminationGracePeriodSeconds, 30 s by default; Spot VMs:
30 s). On a multi-host TPU slice the hosts that run no Python see their own signals only.
"""
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request

import numpy as np

_LOG = logging.getLogger("deeplab_tf.train")
SIGNALS = (signal.SIGTERM, signal.SIGINT)
METADATA_ENV = "GCE_METADATA_IP"   # TF's name for the metadata server's address
HOLD_ENV = "DEEPLAB_TF_TEST_HOLD_AT_STEP"   # a test hook (`hold_until_notice`)
_KEEP_RUNNING = ("NONE", "MIGRATE_ON_HOST_MAINTENANCE")


class Watcher:
    """This process's notice of a coming stop; `reason` is None until there is one.

    A context manager: SIGTERM/SIGINT handlers (main thread only; the previous handlers are
    put back on exit) and, with `metadata`, the metadata-server thread (module docstring).
    """

    def __init__(self, metadata=True, poll_seconds=1.0):
        self.reason = None
        self._metadata, self._poll_seconds = metadata, poll_seconds
        self._previous, self._stop = {}, threading.Event()
        self.thread = None   # the metadata-server watcher, while it runs

    def notify(self, reason):
        if self.reason is None:
            self.reason = reason
            _LOG.warning("preemption notice: %s; stopping at the end of this loop", reason)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._on_signal) for s in SIGNALS}
        if self._metadata:
            self.thread = threading.Thread(target=self._watch_metadata, daemon=True,
                                           name="gce-metadata-watcher")
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()   # the thread ends after its current request (daemon: not joined)
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def _on_signal(self, signum, frame):
        self.notify(signal.Signals(signum).name)

    def _watch_metadata(self):
        if metadata_get("instance/hostname") is None:
            return   # not on GCE
        _LOG.info("watching the GCE metadata server for maintenance and preemption")
        migrating = False
        while not self._stop.is_set():
            event = metadata_get("instance/maintenance-event")
            if metadata_get("instance/preempted") == "TRUE":
                self.notify("GCE preemption (instance/preempted=TRUE)")
                return
            if event is not None and event not in _KEEP_RUNNING:
                self.notify(f"GCE maintenance (instance/maintenance-event={event})")
                return
            if event == "MIGRATE_ON_HOST_MAINTENANCE" and not migrating:
                _LOG.warning("GCE live migration announced: training continues")
            migrating = event == "MIGRATE_ON_HOST_MAINTENANCE"
            self._stop.wait(self._poll_seconds)


def metadata_get(path, timeout=2.0):
    """A value from the GCE metadata server, or None: unreachable, not 200, or not the
    metadata server (no `Metadata-Flavor: Google` in its answer)."""
    host = os.environ.get(METADATA_ENV, "metadata.google.internal")
    request = urllib.request.Request(f"http://{host}/computeMetadata/v1/{path}",
                                     headers={"Metadata-Flavor": "Google"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.headers.get("Metadata-Flavor") != "Google":
                return None
            return response.read().decode("utf-8").strip()
    except (OSError, ValueError):   # URLError, HTTPError, timeouts, a malformed address
        return None


# ---------------------------------------------------------------------------- agreement

class Agreement:
    """Values every worker sees alike: `any_true(flag)` (stop?) and `from_chief(value)`.

    Under MultiWorkerMirroredStrategy an all-gather over every replica of every worker
    (all workers must call in the same order); elsewhere the local value.
    """

    def __init__(self, strategy):
        import tensorflow as tf
        self._gather = None
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            @tf.function
            def gather(value):
                def replica_fn():
                    context = tf.distribute.get_replica_context()
                    return context.all_gather(value[None], axis=0)
                return strategy.experimental_local_results(strategy.run(replica_fn))[0]
            self._gather = lambda v: gather(tf.constant(v, tf.int64)).numpy()

    def any_true(self, flag):
        return bool(flag) if self._gather is None else bool(np.max(self._gather(int(flag))))

    def from_chief(self, value, chief):
        """The chief's integer `value` (>= -2^62) on every worker."""
        if self._gather is None:
            return value
        return int(np.max(self._gather(value if chief else -(1 << 62))))


def hold_until_notice(hold_step, timeout=300):
    """A test hook (tests/cluster/, `HOLD_ENV`): `fn(step, watcher)` that, after step
    `hold_step`, waits until the watcher has a notice (a signal or a metadata event the
    test sends once it reads the line logged here), so the step a run stops at is exact
    without any timing. Under several workers the others wait in the agreement."""
    def hold(step, watcher):
        if step != hold_step:
            return
        _LOG.warning("holding after step %d until a preemption notice (%s)", step, HOLD_ENV)
        deadline = time.monotonic() + timeout
        while watcher.reason is None and time.monotonic() < deadline:
            time.sleep(0.05)
    return hold
