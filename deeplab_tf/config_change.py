"""What a resumed run may change in its model_dir's config: the one table of config keys.

A model_dir's checkpoints were trained with its config.json. Resuming with another config
either fails to load (the variables differ), or silently trains another network or on
another data stream than the checkpoints did. So `check` compares the stored config with the
requested one before anything is written, and:

  - REFUSED keys (the variables, the network's computation, the data stream and its
    position) are an error whatever the flags: start a new model_dir with
    train.init_checkpoint=<this model_dir> instead;
  - ALLOWED keys (more steps, checkpoint and logging cadence, the follow-up, eval/export
    settings) pass only with deeplab-train --allow_config_change; the previous config is then
    kept as config-<step>.json (`model_dir.write_config`).

A key missing from both tables is refused: a new config key must be classified here
(tests/test_config_change.py checks that every key is).
"""
import dataclasses

from deeplab_tf import configs

_VARIABLES = "alters the variables: the checkpoints no longer load"
_NETWORK = "changes the network the checkpoints were trained as"
_STREAM = "changes the data stream the checkpoints' position refers to"
_CLASSES = "changes the classes: the logits' variables no longer fit"

REFUSED = {
    **{f"model.{k}": _VARIABLES for k in (
        "backbone", "extra_blocks", "head", "image_pooling", "aspp_filters", "layout", "stem",
        "depths", "width_multiplier", "depth_multiplier")},
    # Same variable shapes, another network: the paper's OS8 fine-tuning (Sec. 4.1) is a
    # stage of its own, a new model_dir initialized from this one.
    **{f"model.{k}": _NETWORK for k in (
        "output_stride", "multi_grid", "aspp_rates", "dropout_rate", "bn_momentum",
        "activation", "input_normalization", "freeze_bn")},
    **{f"data.{k}": _STREAM for k in (
        "train_records", "crop_size", "min_scale", "max_scale", "scale_step",
        "bootstrap_classes", "bootstrap_factor", "shuffle_buffer", "seed",
        "skip_corrupt_records")},
    "train.batch_size": _STREAM,
    "train.seed": "the weights' initialization seed of the run",
    "dataset.class_names": _CLASSES,
}

ALLOWED = {
    "name": "a label",
    "model.backbone_weights": "used only to initialize a fresh run",
    "train.init_checkpoint": "used only to initialize a fresh run",
    "data.eval_records": "used after training (the follow-up)",
    "data.generate_synthetic": "only whether missing synthetic records are generated",
    "train.steps": "trains further (the poly schedule stretches to the new end)",
    "train.precise_bn_batches": "recomputes the BN statistics at the last step only",
    **{f"train.{k}": "changes the optimization from the resumed step on" for k in (
        "base_lr", "lr_power", "warmup_steps", "momentum", "weight_decay")},
    **{f"train.{k}": "the loop's cadence or speed, not what it computes" for k in (
        "steps_per_loop", "checkpoint_every", "keep_checkpoints", "log_every",
        "summary_images_every", "jit_compile", "recompute")},
    **{f"train.{k}": "the follow-up after training" for k in (
        "then_evaluate", "then_export", "then_predict")},
    **{f"eval.{f.name}": "evaluation settings" for f in dataclasses.fields(configs.EvalConfig)},
    **{f"export.{f.name}": "export settings" for f in dataclasses.fields(configs.ExportConfig)},
}

FLAG = "--allow_config_change"


class ConfigChangeError(ValueError):
    """The requested config differs from a model_dir's stored one in a way not allowed."""


def _flat(config, metadata=None):
    out = {}
    for key in configs.valid_keys(config):
        section, _, field = key.partition(".")
        value = getattr(config, section)
        out[key] = getattr(value, field) if field else value
    if metadata is not None:
        out["dataset.class_names"] = tuple(metadata.class_names)
    return out


def differences(stored, requested, stored_metadata=None, requested_metadata=None):
    """[(key, stored value, requested value)] of the keys whose values differ."""
    a = _flat(stored, stored_metadata if requested_metadata is not None else None)
    b = _flat(requested, requested_metadata if stored_metadata is not None else None)
    return [(k, a[k], b[k]) for k in a if a[k] != b.get(k)]


def check(model_dir, stored, requested, allow=False, stored_metadata=None,
          requested_metadata=None):
    """The differences between `stored` (the model_dir's config) and `requested`; raises
    ConfigChangeError listing them unless every one is ALLOWED and `allow` is set. Reads
    nothing and writes nothing: every worker comes to the same decision from the same
    inputs."""
    diffs = differences(stored, requested, stored_metadata, requested_metadata)
    refused = [d for d in diffs if d[0] not in ALLOWED]
    if not diffs or (allow and not refused):
        return diffs
    lines = [f"{model_dir} was trained with another config (its config.json); "
             f"{len(diffs)} difference(s), stored -> requested:"]
    for key, old, new in diffs:
        if key in ALLOWED:
            why = f"allowed with {FLAG}: {ALLOWED[key]}"
        else:
            why = f"refused: {REFUSED.get(key, 'not classified as safe')}"
        lines.append(f"  {key}: {old!r} -> {new!r}  ({why})")
    if refused:
        lines.append(f"To train with these changes, use a new --model_dir with "
                     f"train.init_checkpoint={model_dir} (its weights as the start); to "
                     f"resume this run, drop the refused change(s) from the command.")
    else:
        lines.append(f"Rerun with {FLAG} to resume with them (the stored config is kept "
                     f"as config-<step>.json).")
    raise ConfigChangeError("\n".join(lines))
