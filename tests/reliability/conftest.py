"""The fault suite's ledger and summary line, and the child processes that run beside it.

Every test records the faults it injects and the odd or bad inputs it tries, and, only once its
checks have passed, that the faults were survived; data lost is what the tests find
missing or changed of what existed before a fault. At the end of the run:

    reliability: N faults injected, N survived, M inputs tried, 0 data lost; peak memory ...

Two streams of child processes start with the first test of this directory and run on
the second core while the other tests run (scenarios.py):
  - the kill chain: seeded (kind, step) kill points, one training process per life, each
    resuming the one before, then a last life without a fault;
  - "others": the uninterrupted reference run, damaged-checkpoint fallbacks, write
    failures under a file size limit, and the SavedModel fuzz, in turn in one process.
"""
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SCENARIOS = os.path.join(HERE, "scenarios.py")
SEED = 10
STEPS, EVERY = 20, 2   # scenarios.py's chain: 20 steps, a checkpoint every 2
KINDS = ("after_loop", "before_save", "mid_save", "after_save", "in_write")

LEDGER = collections.Counter()
PEAKS = {}   # what: peak memory in MB


class Ledger:
    def injected(self, n=1):
        LEDGER["injected"] += n

    def survived(self, n=1):
        LEDGER["survived"] += n

    def inputs(self, n=1):
        LEDGER["inputs"] += n

    def lost(self, n):
        LEDGER["lost"] += n

    def peak_memory(self, what, megabytes):
        PEAKS[what] = int(megabytes)


@pytest.fixture(scope="session")
def ledger():
    return Ledger()


def summary_line():
    line = (f"reliability: {LEDGER['injected']} faults injected, {LEDGER['survived']} "
            f"survived, {LEDGER['inputs']} inputs tried, {LEDGER['lost']} data lost")
    if PEAKS:
        line += "; peak memory " + ", ".join(f"{k} {v} MB" for k, v in sorted(PEAKS.items()))
    return line


def pytest_terminal_summary(terminalreporter):
    if LEDGER:
        terminalreporter.write_line(summary_line())


def pytest_sessionfinish(session):
    """In an xdist worker: hands the line to the controller, which prints it
    (tests/conftest.py)."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None and LEDGER:
        workeroutput["summary_lines"] = [summary_line()]


# ----------------------------------------------------------------------------- the streams

def kill_plan(seed=SEED, kills=len(KINDS)):
    """[{kind, step, last_complete}]: every kind once, in a seeded order, each at a seeded
    step after the previous kill's resume point; `last_complete` is the checkpoint the
    next life must resume from."""
    rng = random.Random(seed)
    kinds = list(KINDS)
    rng.shuffle(kinds)
    plan, resume = [], 0
    for kind in kinds[:kills]:
        steps = [s for s in range(resume + 1, min(resume + 6, STEPS)) if
                 kind == "after_loop" or s % EVERY == 0]
        step = rng.choice(steps)
        last = {"after_loop": (step - 1) // EVERY * EVERY, "after_save": step}.get(
            kind, step - EVERY)   # before_save, mid_save, in_write: the previous save
        plan.append({"kind": kind, "step": step, "last_complete": last})
        resume = last
    return plan


def state_file(ckpt_dir):
    """(latest, [listed]) from a CheckpointManager state file; (None, []) if none."""
    path = os.path.join(ckpt_dir, "checkpoint")
    if not os.path.exists(path):
        return None, []
    with open(path) as f:
        text = f.read()
    latest = re.search(r'^model_checkpoint_path: "([^"]+)"', text, re.M)
    return latest and latest[1], re.findall(r'^all_model_checkpoint_paths: "([^"]+)"', text,
                                            re.M)


ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")


def _run(running, *args):
    """Runs scenarios.py ARGS; `running["proc"]` holds the child while it runs."""
    running["proc"] = proc = subprocess.Popen(
        [sys.executable, SCENARIOS, *map(str, args)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=ENV)
    stdout, stderr = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _chain(workdir, plan, out, running):
    """Runs the lives in turn; after each kill, notes the exit and copies the checkpoints."""
    ckpt_dir = os.path.join(workdir, "chain", "checkpoints")
    try:
        for i, kill in enumerate(plan):
            if running.get("stop"):
                return
            proc = _run(running, "life", workdir, kill["kind"], kill["step"])
            resumed = re.search(r"resumed from \S+ at step (\d+)", proc.stderr)
            snapshot = os.path.join(workdir, f"after_kill_{i}")
            shutil.copytree(ckpt_dir, snapshot)
            out["lives"].append(dict(kill, returncode=proc.returncode, snapshot=snapshot,
                                     resumed=resumed and int(resumed[1]),
                                     warned=("unreadable" in proc.stderr),
                                     state=state_file(ckpt_dir), tail=proc.stderr[-3000:]))
        proc = _run(running, "last", workdir)
        out["last"] = (json.loads(proc.stdout.strip().splitlines()[-1])
                       if proc.returncode == 0 else {"error": proc.stderr[-3000:]})
    except Exception as e:  # noqa: BLE001  (reported by the tests that wait for it)
        out["last"] = {"error": repr(e)}


class Streams:
    def __init__(self, workdir):
        self.workdir, self.plan = workdir, kill_plan()
        self.chain, self._running = {"lives": [], "last": None}, {}
        self._thread = threading.Thread(target=_chain, daemon=True,
                                        args=(workdir, self.plan, self.chain, self._running))
        self._log = open(os.path.join(workdir, "others.log"), "w+")
        self._others = subprocess.Popen(
            [sys.executable, SCENARIOS, "others", str(workdir)], stdout=subprocess.PIPE,
            stderr=self._log, text=True, env=ENV)
        self._thread.start()
        self._others_result = None

    def chain_result(self):
        self._thread.join(timeout=1200)
        return self.chain

    def others(self):
        if self._others_result is None:
            stdout, _ = self._others.communicate(timeout=1200)
            self._log.seek(0)
            assert self._others.returncode == 0, self._log.read()[-5000:]
            self._others_result = json.loads(stdout.strip().splitlines()[-1])
        return self._others_result

    def close(self):
        """Stops what still runs (a run that was interrupted, or selected tests only)."""
        self._running["stop"] = True
        for proc in (self._others, self._running.get("proc")):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        self._thread.join(timeout=60)
        self._log.close()


_WANTED = {"streams": False}


def pytest_collection_finish(session):   # after -k / -m deselection
    _WANTED["streams"] = any("streams" in getattr(item, "fixturenames", ())
                             for item in session.items)


@pytest.fixture(scope="session")
def streams(tmp_path_factory):
    started = Streams(tmp_path_factory.mktemp("faults"))
    yield started
    started.close()


@pytest.fixture(scope="session", autouse=True)
def _start_streams_early(request):
    """Starts the streams with the first test of this directory, if any selected test
    needs them, so that they run while the tests that do not need them run."""
    if _WANTED["streams"]:
        request.getfixturevalue("streams")
