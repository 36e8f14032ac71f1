"""A sidecar evaluator follows a training run from its model_dir alone, in a process of its
own, started as users start it, before the run exists: `deeplab-eval --watch`, and
`deeplab-train` as TF_CONFIG's "evaluator" task. A tiny run of 4 steps (checkpoints at 2
and 4) is then trained into the model_dir; each evaluator evaluates the checkpoints it
sees, each once, and exits after the final one. In process on ram://: a restarted
evaluator does not evaluate a step again."""
import glob
import json
import os
import subprocess
import sys
import time
import uuid

import tensorflow as tf

from deeplab_tf import testing
from deeplab_tf.data import tfrecord
from deeplab_tf.data.converters import synthetic

BIN = os.path.dirname(sys.executable)
SMALL = testing.tiny_overrides("train.steps=4,train.steps_per_loop=2,train.checkpoint_every=2,"
                               "train.batch_size=2,data.crop_size=(33,33),eval.scales=(1.0,),"
                               "eval.flip=false,train.then_evaluate=false,"
                               "train.then_export=false,train.then_predict=0")


def start(command, log, cwd, **env):
    with open(log, "w") as f:
        return subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, cwd=cwd,
                                env=dict(os.environ, PYTHONUNBUFFERED="1", **env))


def wait_for_text(log, text, proc, timeout=300):
    deadline = time.monotonic() + timeout
    while text not in log.read_text():
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)


def test_sidecar_evaluators_follow_a_run_to_its_last_step(tmp_path):
    synthetic.convert(str(tmp_path / "data" / "synthetic"), num_train=8, num_val=2,
                      image_size=(33, 41), num_shards=1, num_workers=1, progress=False)
    run = tmp_path / "runs" / "tiny"
    train = [os.path.join(BIN, "deeplab-train"), "--experiment=quickstart",
             f"--model_dir={run}", f"--params_override={SMALL}"]
    logs = {name: tmp_path / f"{name}.log" for name in ("watch", "evaluator", "train")}
    evaluators = {
        "watch": start([os.path.join(BIN, "deeplab-eval"), f"--model_dir={run}", "--watch",
                        "--watch_timeout=300", f"--output_dir={run / 'watch'}"],
                       logs["watch"], tmp_path),
        # The same command as the training job's, as a cluster launcher would start it.
        "evaluator": start(train, logs["evaluator"], tmp_path, TF_CONFIG=json.dumps({
            "cluster": {"chief": ["127.0.0.1:1"]}, "task": {"type": "evaluator", "index": 0}})),
    }
    procs = list(evaluators.values())
    try:
        for name, proc in evaluators.items():   # both wait before the run exists
            wait_for_text(logs[name], "waiting for a training run", proc)
        procs.append(start(train, logs["train"], tmp_path))
        assert procs[-1].wait(timeout=600) == 0, logs["train"].read_text()[-3000:]
        for name, proc in evaluators.items():
            assert proc.wait(timeout=300) == 0, logs[name].read_text()[-3000:]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    matrices = []
    for name, out in (("watch", run / "watch"), ("evaluator", run / "eval")):
        text = logs[name].read_text()
        steps = sorted(int(p.stem.split("-")[1]) for p in out.glob("results-*.json"))
        assert steps in ([2, 4], [4]), (steps, text[-3000:])   # the checkpoints' steps
        for step in steps:
            assert text.count(f"(step {step})") == 1, text[-3000:]   # each evaluated once
        latest = json.loads((out / "results.json").read_text())
        assert latest["step"] == 4 and latest["images"] == 2
        assert latest["checkpoint"].endswith("ckpt-4")
        assert list(out.glob("events.out.tfevents.*")) and (out / "class_iou.png").exists()
        matrices.append(latest["confusion_matrix"])
    assert matrices[0] == matrices[1]   # two processes, one checkpoint, one result
    labels = [tfrecord.decode_label(tfrecord.parse_example(r)[tfrecord.LABEL_ENCODED])
              for r in tf.data.TFRecordDataset(glob.glob(str(tmp_path / "data/synthetic/val-*")))]
    assert sum(map(sum, matrices[0])) == sum(int(tf.reduce_sum(tf.cast(label != 255, tf.int32)))
                                             for label in labels)   # every labelled pixel


def test_follow_on_ram_evaluates_each_step_once_across_restarts():
    """In process, every path on ram:// (the code path of gs://): a restarted evaluator
    does not evaluate a step again, and stops at once when the last step is done."""
    from deeplab_tf import eval_lib, fileio, model_dir
    from deeplab_tf.testing import tiny_model_dir
    root = f"ram://test_sidecar_eval/{uuid.uuid4().hex}"
    run, records = f"{root}/run", f"{root}/data/val-00000-of-00001.tfrecord"
    try:
        model = tiny_model_dir(run, metadata=synthetic.synthetic.SYNTHETIC_METADATA, steps=2)
        with tf.io.TFRecordWriter(records) as writer:
            for i in range(2):
                image, label = synthetic.synthetic.generate_example(i, 0, (33, 41), "val")
                writer.write(tfrecord.make_example(
                    tf.io.encode_png(image).numpy(), f"v{i}", "png", 33, 41,
                    tf.io.encode_png(label[..., None]).numpy()))
        follow = lambda timeout: [r["step"] for r in eval_lib.follow(  # noqa: E731
            run, records, protocol_overrides=dict(scales=(1.0,), flip=False),
            timeout=timeout, verbose=0)]
        assert follow(timeout=1) == [1]   # ckpt-1; no other came within the timeout
        tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                   model_dir.checkpoint_dir(run), max_to_keep=3).save(2)
        assert follow(timeout=60) == [2]   # ckpt-2 is the last step: done
        assert follow(timeout=60) == []    # restarted: step 2 evaluated already
        out = fileio.listdir(f"{run}/eval")
        assert {"results-1.json", "results-2.json", "results.json", "class_iou.png"} <= set(out)
        assert fileio.read_json(f"{run}/eval/results.json")["step"] == 2
    finally:
        fileio.rmtree(root)
