"""deeplab_tf.cluster: the TF_CONFIG built from each platform's environment."""
import json
import os
from unittest import mock

import pytest
import tensorflow as tf

from deeplab_tf import cluster
from deeplab_tf.cluster import ClusterError

PATTERN = "deeplab-{index}.deeplab-workers"


def workers(hosts, index):
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def test_kubernetes_indexed_job():
    env = {"JOB_COMPLETION_INDEX": "2", "HOSTNAME": "deeplab-2"}
    assert cluster.detect(env) == "kubernetes"
    hosts = [f"deeplab-{i}.deeplab-workers:2222" for i in range(3)]
    assert cluster.tf_config(env, workers=3, host_pattern=PATTERN) == workers(hosts, 2)
    with pytest.raises(ClusterError, match="--workers"):
        cluster.tf_config(env, host_pattern=PATTERN)
    with pytest.raises(ClusterError, match="{index}"):
        cluster.tf_config(env, workers=3, host_pattern="deeplab.deeplab-workers")
    with pytest.raises(ClusterError, match="outside the 2 workers"):
        cluster.tf_config(env, workers=2, host_pattern=PATTERN)


def test_worker_hosts_replace_the_pattern():
    env = {"JOB_COMPLETION_INDEX": "1", cluster.WORKER_HOSTS: "127.0.0.1:5000,127.0.0.1:5001"}
    assert cluster.tf_config(env, workers=2, host_pattern=PATTERN) == \
        workers(["127.0.0.1:5000", "127.0.0.1:5001"], 1)
    with pytest.raises(ClusterError, match="lists 2 workers, --workers=3"):
        cluster.tf_config(env, workers=3, host_pattern=PATTERN)
    with pytest.raises(ClusterError, match="host:port"):
        cluster.tf_config(dict(env, **{cluster.WORKER_HOSTS: "a,b"}), workers=2,
                          host_pattern=PATTERN)


VERTEX = {"cluster": {"chief": ["workerpool0-0:2222"],
                      "worker": ["workerpool1-0:2222", "workerpool1-1:2222"]},
          "task": {"type": "worker", "index": 1, "trial": ""},
          "environment": "cloud", "job": '{"worker_pool_specs": []}'}


def test_vertex_tf_config_is_kept_as_it_is():
    env = {"TF_CONFIG": json.dumps(VERTEX), "JOB_COMPLETION_INDEX": "0"}
    assert cluster.detect(env) == "tf_config"   # before any other platform's variables
    config = cluster.tf_config(env)
    assert config == VERTEX
    # TensorFlow reads it back as the strategy will.
    assert _resolve_tf_config(config) == (VERTEX["cluster"], "worker", 1)
    chief = dict(VERTEX, task={"type": "chief", "index": 0})
    assert cluster.tf_config({"TF_CONFIG": json.dumps(chief)}) == chief
    evaluator = dict(VERTEX, task={"type": "evaluator", "index": 0})
    assert cluster.tf_config({"TF_CONFIG": json.dumps(evaluator)}) == evaluator


def _resolve_tf_config(config):
    with mock.patch.dict(os.environ, {"TF_CONFIG": json.dumps(config)}):
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        return resolver.cluster_spec().as_dict(), resolver.task_type, resolver.task_id


@pytest.mark.parametrize("text,message", [
    ("{not json", "not JSON"),
    (json.dumps({"cluster": {"worker": ["a:1"]}}), "'cluster' and 'task'"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}),
     "not in its cluster"),
    (json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "chief", "index": 0}}),
     "not in its cluster"),
])
def test_bad_tf_config_is_named(text, message):
    with pytest.raises(ClusterError, match=message):
        cluster.tf_config({"TF_CONFIG": text})


@pytest.mark.parametrize("text,hosts", [
    ("node[01-02]", ["node01", "node02"]),
    ("n[1-3,5],gpu7", ["n1", "n2", "n3", "n5", "gpu7"]),
    ("a[8-11]", ["a8", "a9", "a10", "a11"]),
    ("r[1-2]-c[09-10]", ["r1-c09", "r1-c10", "r2-c09", "r2-c10"]),
    ("login", ["login"]),
])
def test_slurm_hostlist(text, hosts):
    assert cluster.expand_hostlist(text) == hosts


@pytest.mark.parametrize("text", ["node[02-01]", "node[01", "node]", "a,,b", "n[x]"])
def test_bad_slurm_hostlist_is_named(text):
    with pytest.raises(ClusterError, match=text.replace("[", r"\[").replace("]", r"\]")):
        cluster.expand_hostlist(text)


def test_slurm_hostlist_agrees_with_tensorflow():
    from tensorflow.python.distribute.cluster_resolver import slurm_cluster_resolver as slurm
    for text in ("node[01-02]", "n[1-3,5],gpu7", "a[8-11],b[001-003,010]"):
        assert cluster.expand_hostlist(text) == slurm.expand_hostlist(text)
    assert cluster.expand_tasks_per_node("2(x3),1") == slurm.expand_tasks_per_node("2(x3),1")


SLURM = {"SLURM_PROCID": "3", "SLURM_STEP_NODELIST": "node[01-02]",
         "SLURM_STEP_TASKS_PER_NODE": "2(x2)", "SLURM_STEP_NUM_TASKS": "4",
         "SLURMD_NODENAME": "node02", "SLURM_LOCALID": "1",
         "SLURM_JOB_NODELIST": "node[01-02]", "SLURM_TASKS_PER_NODE": "2(x2)"}


def test_slurm_matches_tensorflows_resolver(monkeypatch):
    assert cluster.detect(SLURM) == "slurm"
    config = cluster.tf_config(SLURM, port=2222)
    assert config == workers(["node01:2222", "node01:2223", "node02:2222", "node02:2223"], 3)
    for name, value in SLURM.items():
        monkeypatch.setenv(name, value)
    resolver = tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=2222, gpus_per_node=2, gpus_per_task=1, auto_set_gpu=False)
    assert resolver.cluster_spec().as_dict() == config["cluster"]
    assert (resolver.task_type, resolver.task_id) == ("worker", 3)


def test_slurm_keeps_the_node_lists_order():
    env = {"SLURM_PROCID": "0", "SLURM_STEP_NODELIST": "node[9-10]",
           "SLURM_STEP_TASKS_PER_NODE": "1(x2)", "SLURMD_NODENAME": "node9",
           "SLURM_LOCALID": "0"}
    assert cluster.tf_config(env) == workers(["node9:2222", "node10:2222"], 0)


@pytest.mark.parametrize("change,message", [
    ({"SLURMD_NODENAME": "node01"}, "block distribution"),   # a cyclic distribution
    ({"SLURM_STEP_NUM_TASKS": "3"}, "holds 4 tasks"),
    ({"SLURM_STEP_TASKS_PER_NODE": "2(x3)"}, "gives 3 nodes"),
    ({"SLURM_PROCID": "x"}, "SLURM_PROCID"),
])
def test_inconsistent_slurm_environment_is_named(change, message):
    with pytest.raises(ClusterError, match=message):
        cluster.tf_config(dict(SLURM, **change))


def test_tpu_vm_and_one_machine_need_no_tf_config():
    # A TPU VM's environment (TPUStrategy finds the TPU itself) and a plain machine.
    for env in ({"TPU_NAME": "local", "HOSTNAME": "t1v-n-0-w-0"}, {}):
        assert cluster.detect(env) == "none"
        assert cluster.tf_config(env) is None


def test_make_strategy_hands_local_to_the_tpu_resolver(monkeypatch):
    """--tpu=local reaches TPUClusterResolver as "local" (attached chips, no lookup)."""
    from deeplab_tf import train_lib
    seen = []

    class Stop(Exception):
        pass

    def resolver(tpu=None, **kwargs):
        seen.append(tpu)
        raise Stop
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", resolver)
    with pytest.raises(Stop):
        train_lib.make_strategy("tpu", "local")
    assert seen == ["local"]
    # and TensorFlow's resolver takes "local" without a Cloud TPU lookup
    monkeypatch.undo()
    assert tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local").master() == ""
