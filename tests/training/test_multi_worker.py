"""Two MultiWorkerMirroredStrategy workers on localhost train like one process."""
import json
import os
import subprocess
import sys

import numpy as np

from localhost import free_ports

HELPERS = os.path.join(os.path.dirname(__file__), "helpers.py")


def test_two_workers_match_one_process(tmp_path):
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    # This checkout's deeplab_tf first: the workers run the code the parent tests.
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    base = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(tests), tests]))
    workers = []
    for index in range(2):
        env = dict(base, TF_CONFIG=json.dumps({"cluster": cluster,
                                               "task": {"type": "worker", "index": index}}))
        workers.append(subprocess.Popen([sys.executable, HELPERS, "worker", str(tmp_path)],
                                        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        text=True))
    outputs = [w.communicate(timeout=600) for w in workers]
    for w, (_, err) in zip(workers, outputs):
        assert w.returncode == 0, err[-3000:]
    single = subprocess.run([sys.executable, HELPERS, "single", str(tmp_path)], env=base,
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    w0, w1, ref = (np.load(tmp_path / f"{n}.npz") for n in ("worker0", "worker1", "single"))
    assert set(w0.files) == set(ref.files)
    for key in ref.files:
        np.testing.assert_array_equal(w0[key], w1[key])  # the workers agree exactly
        # 1e-5 relative to the variable's magnitude, absolute for values below 1 (conv biases
        # before BN have ~0 gradient and hold only round-off, ~1e-10).
        scale = max(np.max(np.abs(ref[key])), 1.0)
        assert np.max(np.abs(w0[key] - ref[key])) <= 1e-5 * scale, key
