"""In-memory datasets and scenarios for the training tests (also run as subprocesses); the
tiny config is deeplab_tf.testing's."""
import numpy as np
import tensorflow as tf

from deeplab_tf.data.metadata import DatasetMetadata
from deeplab_tf.testing import tiny_config

META = DatasetMetadata("toy", ("background", "a", "b"))


def toy_examples(n=16, size=33, seed=0):
    """Images whose label is computable from the image: class = which third of the red
    channel's range a pixel's block lies in; a band of 255 (ignored) on top."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, (n, size // 4 + 1, size // 4 + 1))
    labels = labels.repeat(4, 1).repeat(4, 2)[:, :size, :size]
    images = rng.uniform(0, 255, (n, size, size, 3))
    images[..., 0] = labels * 100 + rng.uniform(0, 50, labels.shape)
    labels = labels.astype("int32")[..., None]
    labels[:, :2] = 255
    return images.astype("float32"), labels


def dataset_fn(global_batch, nan_from_step=None, n=16, size=33):
    """A dataset_fn for train_lib.train: batch of global step s is examples
    [s*B, (s+1)*B) mod n, whatever the replica count and the start step."""
    images, labels = toy_examples(n, size)

    def make(ctx, start_step):
        per_replica = ctx.get_per_replica_batch_size(global_batch)
        replicas_here = ctx.num_replicas_in_sync // ctx.num_input_pipelines
        ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": labels}).repeat()
        ds = ds.batch(per_replica, drop_remainder=True)
        # Consecutive per-replica batches form a global batch, spread over the workers.
        ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
        ds = ds.enumerate().skip(start_step * replicas_here)
        if nan_from_step is not None:
            def poison(i, batch):
                step = i // replicas_here + 1
                batch = dict(batch)
                batch["image"] = tf.where(step >= nan_from_step, float("nan"), batch["image"])
                return i, batch
            ds = ds.map(poison)
        return ds.map(lambda i, batch: batch)
    return make


def _weights(model_dir):
    from deeplab_tf import model_dir as model_dir_lib
    model, _, _ = model_dir_lib.load_model(model_dir)
    return {v.path: v.numpy() for v in model.weights}


def max_relative_difference(a, b):
    """Worst variable's max |a - b| relative to its magnitude, absolute below 1 (conv biases
    that precede BN have ~0 gradient and hold only round-off)."""
    return max(float(np.max(np.abs(a[k] - b[k])) / max(np.max(np.abs(b[k])), 1.0)) for k in a)


def scenario_replicas(workdir):
    """One MirroredStrategy step (2 replicas x 2, synchronized BN) vs one default-strategy
    step on the batch of 4: loss, weights and BN moving statistics."""
    import json
    import os
    from deeplab_tf import train_lib
    config = tiny_config("train.steps=1")
    single = train_lib.train(config, os.path.join(workdir, "one"), META, dataset_fn(4))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    double = train_lib.train(config, os.path.join(workdir, "two"), META, dataset_fn(4),
                             strategy=mirrored)
    a, b = _weights(os.path.join(workdir, "two")), _weights(os.path.join(workdir, "one"))
    stats = [k for k in a if "moving" in k]
    initial = _initial_weights(config)
    print(json.dumps({
        "loss": [single.loss, double.loss],
        "weights": max_relative_difference(a, b),
        "moving_stats": max_relative_difference({k: a[k] for k in stats},
                                                {k: b[k] for k in stats}),
        "moved": max(float(np.max(np.abs(b[k] - initial[k]))) for k in stats),
    }))


def scenario_precise_replicas(workdir):
    """Precise BN over 4 batches after 2 steps: MirroredStrategy (2 replicas x 2, synchronized
    BN: statistics of the global batch) vs the default strategy; BN moving statistics."""
    import json
    import os
    from deeplab_tf import train_lib
    config = tiny_config("train.steps=2,train.checkpoint_every=2,train.precise_bn_batches=4")
    train_lib.train(config, os.path.join(workdir, "one"), META, dataset_fn(4))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    train_lib.train(config, os.path.join(workdir, "two"), META, dataset_fn(4),
                    strategy=mirrored)
    a, b = _weights(os.path.join(workdir, "two")), _weights(os.path.join(workdir, "one"))
    stats = [k for k in a if "moving" in k]
    print(json.dumps({"moving_stats": max_relative_difference({k: a[k] for k in stats},
                                                              {k: b[k] for k in stats})}))


def _initial_weights(config):
    from deeplab_tf import model_dir as model_dir_lib
    model = model_dir_lib.build_model(config, META)
    return {v.path: v.numpy() for v in model.weights}


def scenario_resume(workdir):
    """6 steps straight vs 3 steps, a crash, and a resumed run of the other 3."""
    import json
    import os
    from deeplab_tf import train_lib
    tf.config.experimental.enable_op_determinism()
    config = tiny_config("train.steps=6,train.checkpoint_every=3")
    train_lib.train(config, os.path.join(workdir, "straight"), META, dataset_fn(4))

    def crash(step):
        if step == 4:
            raise KeyboardInterrupt("simulated crash after step 4")
    try:
        train_lib.train(config, os.path.join(workdir, "resumed"), META, dataset_fn(4),
                        hooks={"after_loop": crash})
    except KeyboardInterrupt:
        pass
    latest = tf.train.latest_checkpoint(os.path.join(workdir, "resumed", "checkpoints"))
    train_lib.train(config, os.path.join(workdir, "resumed"), META, dataset_fn(4))
    a = _weights(os.path.join(workdir, "resumed"))
    b = _weights(os.path.join(workdir, "straight"))
    print(json.dumps({"crash_checkpoint": os.path.basename(latest),
                      "max_abs": max(float(np.max(np.abs(a[k] - b[k]))) for k in a)}))


def scenario_worker(workdir):
    """One of two MultiWorkerMirroredStrategy workers (TF_CONFIG set by the test)."""
    import json
    import os
    from deeplab_tf import model_dir as model_dir_lib
    from deeplab_tf import train_lib
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    config = tiny_config("train.steps=3,train.checkpoint_every=3")
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]

    def keep(step, path):  # each worker's own copy (worker 1's is removed after the save)
        model = model_dir_lib.build_model(config, META)
        tf.train.Checkpoint(model=model).restore(path).expect_partial()
        np.savez(os.path.join(workdir, f"worker{task}.npz"),
                 **{v.path.replace("/", "|"): v.numpy() for v in model.weights})
    train_lib.train(config, os.path.join(workdir, "multi"), META, dataset_fn(4),
                    strategy=strategy, hooks={"after_save": keep})


def scenario_single(workdir):
    """The reference for the workers: one process, the global batch of 4."""
    import os
    from deeplab_tf import train_lib
    config = tiny_config("train.steps=3,train.checkpoint_every=3")
    train_lib.train(config, os.path.join(workdir, "single"), META, dataset_fn(4))
    w = _weights(os.path.join(workdir, "single"))
    np.savez(os.path.join(workdir, "single.npz"), **{k.replace("/", "|"): v for k, v in w.items()})
    print("{}")


if __name__ == "__main__":
    import sys
    scenario, workdir = sys.argv[1], sys.argv[2]
    if scenario in ("replicas", "precise_replicas"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    {"replicas": scenario_replicas, "precise_replicas": scenario_precise_replicas, "resume": scenario_resume, "worker": scenario_worker,
     "single": scenario_single}[scenario](workdir)
