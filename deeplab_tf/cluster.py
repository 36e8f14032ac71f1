"""TF_CONFIG for one worker of a multi-worker run, built from what its platform provides.

MultiWorkerMirroredStrategy reads the cluster from TF_CONFIG. Each platform tells a process
its place differently; `tf_config()` turns every one of them into the same TF_CONFIG, so that
all platforms run one training command (`deeplab-launch ... -- deeplab-train
--strategy=multi_worker ...`, deeplab_tf/tools/launch.py):

- tf_config: TF_CONFIG is already set (Vertex AI, Kubeflow TFJob, by hand): checked, kept.
- kubernetes: an Indexed Job gives each pod JOB_COMPLETION_INDEX; the peers are
  HOST_PATTERN with {index} = 0 .. workers-1, port PORT (a headless Service names them).
- slurm: srun gives SLURM_PROCID, the step's node list (compressed: node[01-04],gpu7) and
  its tasks per node (2(x3),1). Tasks are numbered node by node in node-list order (Slurm's
  default block distribution); a node's tasks use ports PORT, PORT+1, ...
- none: no TF_CONFIG (one process, `mirrored` on one machine, or a Cloud TPU, whose
  TPUStrategy finds its hosts itself).

DEEPLAB_WORKER_HOSTS=host:port,... replaces the peers' addresses (in index order) on
kubernetes and slurm: for networks without per-pod DNS, and for the localhost tests.
"""
import itertools
import json
import re

PLATFORMS = ("auto", "tf_config", "kubernetes", "slurm", "none")
WORKER_HOSTS = "DEEPLAB_WORKER_HOSTS"
DEFAULT_PORT = 2222


class ClusterError(ValueError):
    """The environment or the arguments do not describe a usable cluster."""


def detect(environ):
    """The platform whose variables `environ` holds (the first in PLATFORMS order)."""
    if environ.get("TF_CONFIG"):
        return "tf_config"
    if "JOB_COMPLETION_INDEX" in environ:
        return "kubernetes"
    if "SLURM_PROCID" in environ and _first(environ, _SLURM_NODELIST, required=False):
        return "slurm"
    return "none"


def tf_config(environ, platform="auto", workers=None, host_pattern=None, port=DEFAULT_PORT):
    """TF_CONFIG (a dict) for the process whose environment is `environ`, or None.

    Args:
      environ: the environment variables (a mapping).
      platform: one of PLATFORMS; "auto" picks with detect().
      workers, host_pattern, port: the Kubernetes peers (host_pattern contains "{index}");
        port is also the first port of a Slurm node.
    """
    if platform not in PLATFORMS:
        raise ClusterError(f"platform {platform!r}: expected one of {PLATFORMS}")
    if platform == "auto":
        platform = detect(environ)
    if platform == "none":
        return None
    if platform == "tf_config":
        return check_tf_config(environ.get("TF_CONFIG", ""))
    listed = _listed_hosts(environ)
    if platform == "kubernetes":
        index = _int(environ, "JOB_COMPLETION_INDEX")
        hosts = listed or kubernetes_hosts(workers, host_pattern, port)
        if workers is not None and len(hosts) != workers:
            raise ClusterError(f"{WORKER_HOSTS} lists {len(hosts)} workers, --workers={workers}")
    else:
        index, hosts = slurm_task(environ, port)
        hosts = listed or hosts
    if not 0 <= index < len(hosts):
        raise ClusterError(f"task index {index} is outside the {len(hosts)} workers {hosts}")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": index}}


def check_tf_config(text):
    """TF_CONFIG's JSON as a dict, after checking that it names this task's place."""
    try:
        config = json.loads(text)
    except ValueError as e:
        raise ClusterError(f"TF_CONFIG is not JSON ({e}): {text!r}")
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ClusterError(f"TF_CONFIG needs 'cluster' and 'task' objects: {text!r}")
    kind, index = task.get("type"), task.get("index", 0)
    # Vertex AI and TF list no "evaluator" in the cluster: it stands beside the training.
    if kind != "evaluator":
        members = cluster.get(kind)
        if not isinstance(members, list) or not isinstance(index, int) \
                or not 0 <= index < len(members):
            raise ClusterError(f"TF_CONFIG task {task} is not in its cluster {cluster}")
    return config


def kubernetes_hosts(workers, host_pattern, port=DEFAULT_PORT):
    """["HOST_PATTERN with {index}=i:PORT" for each worker i]."""
    if not workers or workers < 1:
        raise ClusterError("kubernetes: --workers (the Job's completions) is required")
    if not host_pattern or "{index}" not in host_pattern:
        raise ClusterError(f"kubernetes: --host_pattern={host_pattern!r} must contain "
                           f"{{index}}, e.g. JOB-{{index}}.SERVICE")
    return [f"{host_pattern.replace('{index}', str(i))}:{port}" for i in range(workers)]


# Inside an srun step the STEP_ variables describe the step; the job's are a fallback.
_SLURM_NODELIST = ("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
_SLURM_TASKS_PER_NODE = ("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
_SLURM_NUM_TASKS = ("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS")


def slurm_task(environ, port=DEFAULT_PORT):
    """(rank, worker addresses) of a Slurm task, numbered as block distribution numbers them.

    TF's SlurmClusterResolver sorts host names as strings (node10 before node9), which
    numbers tasks differently from Slurm on such lists: the node list's order is kept here.
    """
    rank = _int(environ, "SLURM_PROCID")
    name, nodelist = _first(environ, _SLURM_NODELIST)
    nodes = expand_hostlist(nodelist, name)
    name_tpn, text = _first(environ, _SLURM_TASKS_PER_NODE)
    per_node = expand_tasks_per_node(text, name_tpn)
    if len(per_node) != len(nodes):
        raise ClusterError(f"{name_tpn}={text!r} gives {len(per_node)} nodes, "
                           f"{name}={nodelist!r} {len(nodes)}")
    hosts = [f"{node}:{port + local}" for node, count in zip(nodes, per_node)
             for local in range(count)]
    found = _first(environ, _SLURM_NUM_TASKS, required=False)
    if found and int(found[1]) != len(hosts):
        raise ClusterError(f"{found[0]}={found[1]} but the node list holds {len(hosts)} tasks")
    node, local = environ.get("SLURMD_NODENAME"), environ.get("SLURM_LOCALID")
    if node is not None and local is not None and rank < len(hosts) \
            and hosts[rank] != f"{node}:{port + int(local)}":
        raise ClusterError(f"task {rank} runs on {node} (local task {local}), where block "
                           f"distribution would put it on {hosts[rank]}: run srun "
                           f"--distribution=block, or one task per node")
    return rank, hosts


def expand_hostlist(text, name="node list"):
    """Slurm's compressed host list: "n[01-03,7],gpu1,r[1-2]-c[1-2]" -> its host names."""
    hosts = []
    for part in _split_outside_brackets(text, name):
        pieces = re.split(r"(\[[^\]]*\])", part)
        choices = []
        for piece in pieces:
            if piece.startswith("["):
                choices.append(_expand_range(piece[1:-1], text, name))
            elif "[" in piece or "]" in piece:
                raise ClusterError(f"{name}={text!r}: unbalanced brackets in {part!r}")
            else:
                choices.append([piece])
        hosts.extend("".join(combo) for combo in itertools.product(*choices))
    return hosts


def expand_tasks_per_node(text, name="tasks per node"):
    """Slurm's tasks per node: "2(x3),1" -> [2, 2, 2, 1]."""
    counts = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if not match:
            raise ClusterError(f"{name}={text!r}: expected counts like 2(x3),1")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    return counts


def _split_outside_brackets(text, name):
    parts, depth, current = [], 0, ""
    for char in text.strip():
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ClusterError(f"{name}={text!r}: unbalanced brackets")
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    if depth or not all(parts):
        raise ClusterError(f"{name}={text!r}: expected host names like node[01-04],gpu7")
    return parts


def _expand_range(body, text, name):
    values = []
    for item in body.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item.strip())
        if not match or (match.group(2) and int(match.group(2)) < int(match.group(1))):
            raise ClusterError(f"{name}={text!r}: bad range [{body}]")
        low, high = match.group(1), match.group(2) or match.group(1)
        values += [str(i).zfill(len(low)) for i in range(int(low), int(high) + 1)]
    return values


def _listed_hosts(environ):
    text = environ.get(WORKER_HOSTS, "").strip()
    if not text:
        return None
    hosts = [h.strip() for h in text.split(",")]
    if not all(re.fullmatch(r"[^\s:]+:\d+", h) for h in hosts):
        raise ClusterError(f"{WORKER_HOSTS}={text!r}: expected host:port,host:port,...")
    return hosts


def _first(environ, names, required=True):
    for name in names:
        if environ.get(name):
            return name, environ[name]
    if required:
        raise ClusterError(f"none of {', '.join(names)} is set: not inside a Slurm job step?")
    return None


def _int(environ, name):
    value = environ.get(name)
    if value is None or not value.strip().isdigit():
        raise ClusterError(f"{name}={value!r}: expected a task index (0, 1, ...)")
    return int(value)
