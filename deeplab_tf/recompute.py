"""Activation checkpointing for training (`train.recompute`): less memory, one more forward.

Backpropagation keeps every layer's output of the forward pass until the backward pass
has used it; for ResNet-101 at output stride 8 that is ~3.4 GB per 513x513 image, 62% of
it in block3 (docs/benchmarks.md). For each stage named in `train.recompute`, the training
step keeps only the input of each of its residual units and recomputes the unit's
activations when the backward pass reaches it (`tf.recompute_grad`), one unit at a time,
as mmsegmentation's ResNet `with_cp`. The gradients are the same operations on the same
values, hence the same numbers (tests/training/test_recompute.py); the cost is one more
forward pass of the chosen stages.

The checkpointed forward is built from the model's own layers: per-segment functional
sub-models that share the layer objects, so there are no new variables, and checkpoints,
SavedModels and evaluation are unchanged (only the training step calls it).

BatchNorm in the recomputation runs in training mode again (same batch statistics, same
output), but its moving averages must move once per step: the recomputed forward runs in
a `keras.StatelessScope`, which discards variable assignments.

Stages: "stem" (conv1 + max pool), "block1".."block4" and the cascaded "block5".."block7"
of ResNet backbones. The head (ASPP) is not offered: it holds ~2-4% of the activations,
and its dropout would draw another mask when recomputed.
"""
import contextlib
import re

import keras
import tensorflow as tf

from deeplab_tf.configs import RECOMPUTE_STAGES as STAGES


def _cuts(model):
    """[(stage, tensor)] in forward order: the stem's output (after the max pool) and the
    output of every residual unit, each tagged with the stage it ends."""
    cuts = [("stem", model.get_layer("pool1_pool").output)]
    units = []
    for layer in model.layers:
        match = re.fullmatch(r"conv(\d+)_block(\d+)_out", layer.name)
        if match:
            units.append((int(match[1]), int(match[2]), layer))
    for stage, _, layer in sorted(units, key=lambda u: u[:2]):
        cuts.append((f"block{stage - 1}", layer.output))
    return cuts


def _checkpointed(sub):
    """sub(x, training=True), its activations recomputed in the backward pass."""
    def call(x):
        calls = []

        def forward(x):
            # tf.recompute_grad calls this for the forward pass, then again for the
            # gradient: BN's moving averages are updated by the first call only.
            scope = keras.StatelessScope(initialize_variables=False) if calls \
                else contextlib.nullcontext()
            calls.append(1)
            with scope:
                return sub(x, training=True)
        return tf.recompute_grad(forward)(x)
    return call


def training_forward(model, stages=(), replicas=1):
    """images -> logits as `model(images, training=True)`, with the residual units of
    `stages` (and the stem) checkpointed. `()` returns that call itself.

    Build it once, outside tf.function (it creates functional sub-models of `model`).
    `replicas`: the strategy's replicas in sync; more than one is refused for now:
    under MirroredStrategy the recomputation's synchronized-BN all-reduces were paired
    with other replicas' all-reduces of another shape at run time ("Shape mismatch in
    the collective instance"; the traced order matches), not yet understood.
    """
    stages = tuple(stages)
    if not stages:
        return lambda images: model(images, training=True)
    if replicas > 1:
        raise ValueError(f"train.recompute={stages}: activation checkpointing runs on one "
                         f"replica only for now (this strategy has {replicas}); train with "
                         f"train.recompute=() or on one device")
    if "pool1_pool" not in [layer.name for layer in model.layers]:
        raise ValueError(f"train.recompute={stages}: activation checkpointing is for ResNet "
                         f"backbones (stages {STAGES})")
    cuts = _cuts(model)
    present = {stage for stage, _ in cuts}
    missing = [s for s in stages if s not in present]
    if missing:
        raise ValueError(f"train.recompute={stages}: the model has no stage(s) {missing}; "
                         f"it has {sorted(present, key=STAGES.index)}")
    image = model.inputs[0]
    # Segments between consecutive cuts; uncheckpointed neighbours are merged into one.
    segments, start, plain_from = [], image, image
    for stage, end in cuts:
        if stage in stages:
            if plain_from is not start:
                segments.append((keras.Model(plain_from, start), False))
            segments.append((keras.Model(start, end), True))
            plain_from = end
        start = end
    # The rest: the remaining blocks and the head (whose resize reads the image's size).
    head = keras.Model([plain_from, image], model.outputs[0])
    run = [(_checkpointed(sub) if checkpointed else
            (lambda x, sub=sub: sub(x, training=True))) for sub, checkpointed in segments]

    def forward(images):
        x = images = tf.convert_to_tensor(images)
        for step in run:
            x = step(x)
        return head([x, images], training=True)
    return forward
