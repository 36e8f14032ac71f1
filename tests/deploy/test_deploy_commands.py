"""Every deeplab-* command line in deploy/ and docs/cluster/ is accepted by its tool's own
flag parser (absl, with its parse-time validators), and deeplab-train's experiment and
--params_override by the config loader it runs first: a typo there fails here, not on a
cluster an hour into a queue."""
import collections
import glob
import json
import os
import subprocess
import sys

import pytest
import yaml

import deploy_commands as commands

# Parses each argv as the tool's main() would see it, in one process per tool (absl flags
# are global). For deeplab-train, also the config load that precedes any work.
CHECK = r"""
import importlib, json, sys
from absl import flags
module_name = sys.argv[1]
module = importlib.import_module(module_name)
FLAGS = flags.FLAGS
errors = []
for argv in json.loads(sys.stdin.read()):
    FLAGS.unparse_flags()
    try:
        rest = FLAGS([module_name] + argv)
        if len(rest) > 1:
            raise ValueError(f"unexpected arguments {rest[1:]}")
        if module_name == "deeplab_tf.tools.train":
            module.load_config(FLAGS.experiment, FLAGS.params_override, FLAGS.config_file)
        errors.append(None)
    except Exception as e:
        errors.append(f"{type(e).__name__}: {e}")
print(json.dumps(errors))
"""

# Checks that must fail, so that this test can: an unknown flag, an unknown override key.
BROKEN = {"deeplab-train": [["--model_dir=x", "--params_override=train.stepz=3"],
                            ["--model_dir=x", "--strategy=multiworker"]],
          "deeplab-launch": [["--worker=2"]]}


def spec_invocations():
    """{source: [(tool, args)]} for every spec, script and docs page."""
    found = {}
    for path in sorted(glob.glob(os.path.join(commands.DEPLOY, "kubernetes", "*.yaml"))):
        with open(path) as f:
            for doc in yaml.safe_load_all(f):
                for pod in _pod_templates(doc):
                    for container in pod["spec"]["containers"]:
                        found.setdefault(path, []).extend(
                            commands.invocations(commands.kubernetes_command(container)))
    vertex = os.path.join(commands.DEPLOY, "vertex", "custom_job.yaml")
    with open(vertex) as f:
        for pool in yaml.safe_load(f)["workerPoolSpecs"]:
            found.setdefault(vertex, []).extend(
                commands.invocations(commands.kubernetes_command(pool["containerSpec"])))
    for name in ("tpu/tpu_vm.sh", "slurm/train.sbatch"):
        path = os.path.join(commands.DEPLOY, name)
        found[path] = commands.shell_invocations(commands.read(path))
    dockerfile = os.path.join(commands.DEPLOY, "Dockerfile")
    found[dockerfile] = commands.dockerfile_invocations(commands.read(dockerfile))
    for path in sorted(glob.glob(os.path.join(commands.DOCS, "*.md"))):
        text = "\n".join(commands.markdown_shell_blocks(commands.read(path)))
        found[path] = commands.shell_invocations(text)
    readme = os.path.join(commands.ROOT, "README.md")
    blocks = [block for block in commands.markdown_shell_blocks(commands.read(readme))
              if "deeplab-launch" in block]   # the README's cluster command
    found[readme] = commands.shell_invocations("\n".join(blocks))
    return found


def _pod_templates(doc):
    if doc["kind"] == "Job":
        yield doc["spec"]["template"]
    elif doc["kind"] == "TFJob":
        for replica in doc["spec"]["tfReplicaSpecs"].values():
            yield replica["template"]


def test_every_spec_and_page_runs_the_tools_it_should():
    found = {os.path.relpath(k, commands.ROOT): [tool for tool, _ in v]
             for k, v in spec_invocations().items()}
    # The extraction itself: each file yields the tools it was written to run.
    assert found["deploy/kubernetes/job.yaml"] == ["deeplab-launch", "deeplab-train"]
    assert found["deploy/kubernetes/tfjob.yaml"] == ["deeplab-launch", "deeplab-train"]
    assert found["deploy/vertex/custom_job.yaml"] == ["deeplab-launch", "deeplab-train"] * 2
    assert found["deploy/slurm/train.sbatch"] == ["deeplab-launch", "deeplab-train"]
    assert found["deploy/tpu/tpu_vm.sh"] == ["deeplab-train"] * 2
    assert found["deploy/Dockerfile"] == ["deeplab-launch", "deeplab-train"]
    assert found["README.md"] == ["deeplab-launch", "deeplab-train"]
    pages = [k for k in found if k.startswith("docs/cluster/")]
    assert len(pages) >= 6 and all(found[p] for p in pages), found


def test_every_flag_and_override_is_accepted():
    calls = collections.defaultdict(list)
    for source, found in spec_invocations().items():
        for tool, args in found:
            calls[tool].append((os.path.relpath(source, commands.ROOT), args))
    assert {"deeplab-train", "deeplab-launch", "deeplab-eval", "deeplab-export"} <= set(calls)
    for tool, items in sorted(calls.items()):
        broken = BROKEN.get(tool, [])
        argvs = [args for _, args in items] + broken
        result = subprocess.run([sys.executable, "-c", CHECK, commands.TOOLS[tool]],
                                input=json.dumps(argvs), capture_output=True, text=True,
                                timeout=120, cwd=commands.ROOT)
        assert result.returncode == 0, result.stderr[-3000:]
        errors = json.loads(result.stdout.strip().splitlines()[-1])
        for (source, args), error in zip(items, errors):
            assert error is None, f"{source}: {tool} {' '.join(args)}\n{error}"
        for args, error in zip(broken, errors[len(items):]):
            assert error is not None, f"{tool} {args} was accepted"


@pytest.mark.parametrize("tool,args", [
    ("deeplab-train", ["--model_dir=x", "--strategy=tpu", "--tpu=local"]),
])
def test_checker_reads_flag_values(tool, args):
    """The values parsed are the ones written (the checker does not just swallow argv)."""
    probe = CHECK.replace("errors.append(None)",
                          "errors.append([FLAGS.strategy, FLAGS.tpu, FLAGS.model_dir])")
    result = subprocess.run([sys.executable, "-c", probe, commands.TOOLS[tool]],
                            input=json.dumps([args]), capture_output=True, text=True,
                            timeout=120, cwd=commands.ROOT)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [["tpu", "local", "x"]]
