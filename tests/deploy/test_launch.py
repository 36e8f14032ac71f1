"""deeplab-launch as users run it (the installed console script, in a subprocess), and the
Kubernetes spec's own container command training 2 workers on localhost."""
import json
import os
import subprocess
import sys

import yaml

import deploy_commands as commands
from deeplab_tf import testing
from deeplab_tf.data.converters import synthetic
from localhost import free_ports

BIN = os.path.dirname(sys.executable)
LAUNCH = os.path.join(BIN, "deeplab-launch")
ENV = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}")
for name in ("TF_CONFIG", "JOB_COMPLETION_INDEX", "SLURM_PROCID", "DEEPLAB_WORKER_HOSTS"):
    ENV.pop(name, None)


def launch(args, timeout=60, **env):
    return subprocess.run([LAUNCH] + args, env=dict(ENV, **env), capture_output=True,
                          text=True, timeout=timeout)


def test_prints_the_tf_config_of_a_slurm_task():
    result = launch(["--platform=auto", "--port=2222"], SLURM_PROCID="1",
                    SLURM_STEP_NODELIST="gpu[01-02]", SLURM_STEP_TASKS_PER_NODE="1(x2)")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"cluster": {"worker": ["gpu01:2222", "gpu02:2222"]},
                                         "task": {"type": "worker", "index": 1}}


def test_the_command_gets_tf_config_and_keeps_the_process():
    """exec: the command is this very process (same pid: signals reach it), its exit
    status is the launcher's, and it sees the TF_CONFIG."""
    probe = ("import json, os, sys; print(os.getpid(), os.environ['TF_CONFIG'], flush=True);"
             " sys.exit(75)")
    proc = subprocess.Popen([LAUNCH, "--workers=2", "--host_pattern=w{index}.svc", "--",
                             sys.executable, "-c", probe], env=dict(ENV, JOB_COMPLETION_INDEX="0"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 75, err
    pid, config = out.split(" ", 1)
    assert int(pid) == proc.pid
    assert json.loads(config)["cluster"]["worker"] == ["w0.svc:2222", "w1.svc:2222"]


def test_no_cluster_runs_the_command_without_tf_config():
    # A Cloud TPU VM: TPUStrategy needs no TF_CONFIG.
    result = launch(["--", "sh", "-c", "echo ${TF_CONFIG-unset}"], TPU_NAME="local")
    assert result.returncode == 0 and result.stdout.strip() == "unset", result.stderr


def test_bad_environment_and_command_are_named():
    bad = launch(["--", "true"], TF_CONFIG='{"cluster": {"worker": ["a:1"]}, '
                                            '"task": {"type": "worker", "index": 3}}')
    assert bad.returncode == 1 and "TF_CONFIG" in bad.stderr and "not in its cluster" in bad.stderr
    missing = launch(["--", "no-such-tool-here"])
    assert missing.returncode == 1 and "'no-such-tool-here': not found on PATH" in missing.stderr


# A tiny quickstart (as tests/training/test_train_cli.py trains it).
TINY = testing.tiny_overrides("data.crop_size=(65,65),train.batch_size=4,"
                              "train.steps_per_loop=1,train.checkpoint_every=2,"
                              "train.then_evaluate=false,train.then_export=false,"
                              "train.then_predict=0,data.generate_synthetic=false")


def test_kubernetes_spec_command_trains_two_workers_on_localhost(tmp_path):
    """The Job's container command, as written, for pods 0 and 1. Substituted: the values
    of the spec's own env variables (tiny model, local run and records),
    JOB_COMPLETION_INDEX (which the Job sets) and DEEPLAB_WORKER_HOSTS (127.0.0.1 for the
    pods' DNS names, with a free port each: both "pods" share one host)."""
    with open(os.path.join(commands.DEPLOY, "kubernetes", "job.yaml")) as f:
        job = next(d for d in yaml.safe_load_all(f) if d["kind"] == "Job")
    container = job["spec"]["template"]["spec"]["containers"][0]
    data = tmp_path / "data"
    synthetic.convert(str(data), splits=("train",), num_train=16, image_size=(65, 65),
                      num_shards=2, num_workers=1)
    model_dir = tmp_path / "run"
    values = {"EXPERIMENT": "quickstart", "MODEL_DIR": str(model_dir),
              "PARAMS_OVERRIDE": f"{TINY},train.steps=2,"
                                 f"data.train_records={data / 'train-*.tfrecord'}"}
    assert {e["name"] for e in container["env"]} == set(values)  # nothing else differs
    command = commands.kubernetes_command(container, values)
    assert command[0] == "deeplab-launch" and "deeplab-train" in command
    hosts = ",".join(f"127.0.0.1:{p}" for p in free_ports(job["spec"]["completions"]))
    pods = [subprocess.Popen(command, env=dict(ENV, JOB_COMPLETION_INDEX=str(index),
                                               DEEPLAB_WORKER_HOSTS=hosts),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path)
            for index in range(job["spec"]["completions"])]
    outputs = [pod.communicate(timeout=400) for pod in pods]
    for index, (pod, (out, err)) in enumerate(zip(pods, outputs)):
        assert pod.returncode == 0, err[-3000:]
        assert f'"task": {{"type": "worker", "index": {index}}}' in err
    assert "trained to step 2" in outputs[0][0]
    assert (model_dir / "checkpoints" / "ckpt-2.index").exists()
    assert json.loads((model_dir / "config.json").read_text())["train"]["steps"] == 2
    assert not list(model_dir.glob("worker_tmp_*"))
