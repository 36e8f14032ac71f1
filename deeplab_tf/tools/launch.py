"""deeplab-launch: sets TF_CONFIG for this worker from its platform, then runs a command.

  # each pod of a 4-pod Indexed Job (deploy/kubernetes/job.yaml)
  deeplab-launch --workers=4 --host_pattern=deeplab-{index}.deeplab-workers -- \\
      deeplab-train --experiment=voc_r101_os16_aspp --model_dir=gs://BUCKET/runs/voc \\
      --strategy=multi_worker
  # each task of an srun step (deploy/slurm/train.sbatch)
  srun deeplab-launch -- deeplab-train ... --strategy=multi_worker

--platform=auto picks the first that applies: tf_config (TF_CONFIG already set: Vertex AI,
Kubeflow TFJob; checked and kept), kubernetes (JOB_COMPLETION_INDEX of an Indexed Job; peers
named by --host_pattern and --port), slurm (SLURM_PROCID, the step's node list and tasks per
node; a node's tasks use ports --port, --port+1, ...), none (no TF_CONFIG: one machine, or a
Cloud TPU). DEEPLAB_WORKER_HOSTS=host:port,... replaces the peers' addresses (networks
without per-pod DNS). The command replaces this process: its exit status (75 after a
preemption, see deeplab-train) and the signals it gets are its own. Without a command, the
TF_CONFIG is printed. Docs: docs/cluster/.
"""
import json
import os
import sys

from absl import app, flags

from deeplab_tf.tools import run_main

FLAGS = flags.FLAGS
flags.DEFINE_enum("platform", "auto", ["auto", "tf_config", "kubernetes", "slurm", "none"],
                  "Where the worker's place comes from; auto: the first that applies.")
flags.DEFINE_integer("workers", None, "kubernetes: number of workers (the Job's completions).")
flags.DEFINE_string("host_pattern", None, "kubernetes: a worker's host name with {index}, "
                    "e.g. JOB-{index}.SERVICE for an Indexed Job whose pods have "
                    "subdomain SERVICE (a headless Service).")
flags.DEFINE_integer("port", 2222, "Port of each worker (slurm: of a node's first task).")
flags.register_validator("port", lambda v: 0 < v < 65536, "expected a port, 1-65535")


def main(argv):
    from deeplab_tf import cluster
    command = argv[1:]
    try:
        config = cluster.tf_config(os.environ, FLAGS.platform, FLAGS.workers,
                                   FLAGS.host_pattern, FLAGS.port)
    except cluster.ClusterError as e:
        raise app.UsageError(str(e))
    import deeplab_tf
    env = dict(os.environ)
    if not deeplab_tf.TF_CPP_MIN_LOG_LEVEL_GIVEN:   # deeplab_tf's default, not the user's:
        env.pop("TF_CPP_MIN_LOG_LEVEL", None)       # the command's own -v decides
    if config is None:
        print("deeplab-launch: no cluster (one process or a Cloud TPU): TF_CONFIG not set",
              file=sys.stderr)
    else:
        env["TF_CONFIG"] = json.dumps(config)
        task = config["task"]
        print(f"deeplab-launch: {task['type']} {task['index']}, TF_CONFIG={env['TF_CONFIG']}",
              file=sys.stderr)
    if not command:
        if config is not None:
            print(env["TF_CONFIG"])
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except FileNotFoundError:
        raise app.UsageError(f"cannot run {command[0]!r}: not found on PATH")
    except OSError as e:
        raise app.UsageError(f"cannot run {command[0]!r}: {e.strerror}")


def run():
    run_main(main, __name__, tensorflow=False)


if __name__ == "__main__":
    run()
