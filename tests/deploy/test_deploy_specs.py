"""The launch recipes in deploy/ parse, and their parts agree with each other: what a
platform would reject or silently run wrong (a port in one place and not another, a pod
subdomain that is not the Service, 75 mapped for a container that does not exist)."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import deploy_commands as commands


def load(name):
    with open(os.path.join(commands.DEPLOY, name)) as f:
        return list(yaml.safe_load_all(f))


def flag(args, name):
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, (name, args)
    return values[0]


def test_indexed_job_and_service_agree():
    docs = {d["kind"]: d for d in load("kubernetes/job.yaml")}
    assert set(docs) == {"Service", "Job"}
    service, job = docs["Service"], docs["Job"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    launch, train = commands.invocations(commands.kubernetes_command(container))
    assert launch[0] == "deeplab-launch" and train[0] == "deeplab-train"
    workers, port = int(flag(launch[1], "workers")), int(flag(launch[1], "port"))
    # Headless Service selecting the Job's pods; pods named JOB-INDEX.SUBDOMAIN.
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"job-name": job["metadata"]["name"]}
    assert pod["subdomain"] == service["metadata"]["name"]
    assert flag(launch[1], "host_pattern") == \
        f"{job['metadata']['name']}-{{index}}.{service['metadata']['name']}"
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == workers
    assert [p["port"] for p in service["spec"]["ports"]] == [port]
    assert [p["containerPort"] for p in container["ports"]] == [port]
    # Exit status 75 is a retry that does not count as a failure.
    assert pod["restartPolicy"] == "Never"
    rules = spec["podFailurePolicy"]["rules"]
    on_75 = [r for r in rules if 75 in r.get("onExitCodes", {}).get("values", [])]
    assert len(on_75) == 1 and on_75[0]["action"] == "Ignore"
    assert on_75[0]["onExitCodes"]["operator"] == "In"
    assert on_75[0]["onExitCodes"]["containerName"] == container["name"]
    assert flag(train[1], "strategy") == "multi_worker"


def test_tfjob_lets_the_operator_set_tf_config():
    (tfjob,) = load("kubernetes/tfjob.yaml")
    assert tfjob["apiVersion"] == "kubeflow.org/v1" and tfjob["kind"] == "TFJob"
    (kind, replica), = tfjob["spec"]["tfReplicaSpecs"].items()
    assert kind == "Worker" and replica["restartPolicy"] == "OnFailure"
    container = replica["template"]["spec"]["containers"][0]
    assert container["name"] == "tensorflow"
    assert [p["name"] for p in container["ports"]] == ["tfjob-port"]
    launch, train = commands.invocations(commands.kubernetes_command(container))
    assert launch[1] == ["--platform=tf_config"]
    assert flag(train[1], "strategy") == "multi_worker"


def test_vertex_job_has_one_chief_and_the_same_command_everywhere():
    (job,) = load("vertex/custom_job.yaml")
    pools = job["workerPoolSpecs"]
    assert len(pools) == 2 and pools[0]["replicaCount"] == 1
    runs = [commands.kubernetes_command(p["containerSpec"]) for p in pools]
    assert runs[0] == runs[1]
    launch, train = commands.invocations(runs[0])
    assert launch[1] == ["--platform=tf_config"]
    assert flag(train[1], "model_dir").startswith("gs://")
    for pool in pools:
        machine = pool["machineSpec"]
        assert machine["machineType"] and machine["acceleratorCount"] >= 1


def test_dockerfile_structure():
    text = commands.read(os.path.join(commands.DEPLOY, "Dockerfile"))
    lines = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines()
             if line.strip() and not line.lstrip().startswith("#")]
    keywords = [line.split()[0] for line in lines]
    assert set(keywords) <= {"ARG", "FROM", "ENV", "WORKDIR", "COPY", "RUN", "CMD"}, keywords
    assert keywords.index("FROM") < keywords.index("RUN")
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim$", text, re.M)
    # The GPU build argument, after FROM (an ARG before FROM is not seen by RUN).
    tf_arg = next(i for i, line in enumerate(lines) if line.startswith("ARG TENSORFLOW="))
    assert tf_arg > keywords.index("FROM")
    # The README's install (`pip install .`), with setup.py told which TensorFlow to require.
    (install,) = [line for line in lines if line.startswith("RUN") and "pip install" in line]
    assert re.search(r'DEEPLAB_TENSORFLOW="\$\{TENSORFLOW\}" pip install --no-cache-dir \. ',
                     install + " ")
    copied = {line.split()[1] for line in lines if line.startswith("COPY")}
    assert {"setup.py", "deeplab_tf", "experiments"} <= copied
    ignore = commands.read(os.path.join(commands.DEPLOY, "Dockerfile.dockerignore"))
    for name in ("setup.py", "README.md", "deeplab_tf/", "experiments/"):
        assert f"!{name}" in ignore


@pytest.mark.parametrize("script", ["tpu/tpu_vm.sh", "slurm/train.sbatch"])
def test_shell_scripts_parse(script):
    path = os.path.join(commands.DEPLOY, script)
    result = subprocess.run(["bash", "-n", path], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(path, os.X_OK)


def fake_tools(tmp_path, **exit_codes):
    """A bin/ of stand-ins that log their argv (one JSON line each) and exit as told."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.jsonl"
    bin_dir.mkdir()
    for name, code in exit_codes.items():
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\nimport json, sys\n"
                        f"open({str(log)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                        f"sys.exit({code})\n")
        tool.chmod(0o755)
    return bin_dir, log


def calls(log):
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("srun_status,requeued", [(75, True), (0, False), (1, False)])
def test_sbatch_requeues_on_75(tmp_path, srun_status, requeued):
    script = os.path.join(commands.DEPLOY, "slurm/train.sbatch")
    text = commands.read(script)
    directives = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(\S+))?", text, re.M))
    assert directives["ntasks-per-node"] == "1" and "requeue" in directives
    assert directives["signal"].startswith("TERM@")
    bin_dir, log = fake_tools(tmp_path, srun=srun_status, scontrol=0)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_ID="4242",
               MODEL_DIR="gs://b/runs/r")
    result = subprocess.run(["bash", script], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == srun_status, result.stderr
    srun, *rest = calls(log)
    launch, train = commands.invocations(srun)
    assert launch == ("deeplab-launch", ["--platform=slurm", "--port=2222"])
    assert flag(train[1], "model_dir") == "gs://b/runs/r"   # the script's variable
    assert flag(train[1], "strategy") == "multi_worker"
    assert rest == ([["requeue", "4242"]] if requeued else [])


@pytest.mark.parametrize("mode", ["single", "pod"])
def test_tpu_script_runs_gcloud_on_every_host(tmp_path, mode):
    bin_dir, log = fake_tools(tmp_path, gcloud=0, git=0)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", TPU_NAME="my-tpu",
               BUCKET="gs://b", VERSION="tpu-vm-tf-x-pod-pjrt")
    result = subprocess.run(["bash", os.path.join(commands.DEPLOY, "tpu/tpu_vm.sh"), mode],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    create, archive, scp, install, train = calls(log)
    assert create[:4] == ["compute", "tpus", "tpu-vm", "create"] and "my-tpu" in create
    assert archive[0] == "archive"
    for step in (scp, install):
        assert "--worker=all" in step
    (command,) = [a for a in install if a.startswith("--command=")]
    assert "pip install ./deeplab_tf" in command
    assert ("DEEPLAB_TENSORFLOW=none" in command) == (mode == "pod")
    assert ("tensorflow-tpu==" in command) == (mode == "single")
    assert ("--worker=0" if mode == "pod" else "--worker=all") in train
    (command,) = [a for a in train if a.startswith("--command=")]
    (tool, args), = commands.invocations([command])
    assert tool == "deeplab-train" and flag(args, "strategy") == "tpu"
    assert flag(args, "tpu") == ("my-tpu" if mode == "pod" else "local")
    assert flag(args, "model_dir") == "gs://b/runs/voc_os16"
    assert ("TPU_LOAD_LIBRARY=0" in command) == (mode == "pod")
