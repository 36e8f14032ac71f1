"""The serving pixel budget: how many pixels one request may hold, from what the exported
graph costs per pixel and a memory target per request.

Peak inference memory is NOT the sum of the graph's tensors (each is freed once its last
consumer has run: summing ResNet-101's overstates ~50x) but the largest set alive at
once. `bytes_per_pixel` estimates it as

  alive across the request:  the request's uint8 image (3 B/px), its float32 copy (12),
                             the running sum of probabilities (4C) and the labels (4),
                             plus the returned probabilities (4C) when exported with them;
  + the largest scale pass:  s^2 x (2 with flip) x [the padded float input (12) +
                             max(largest op of the network, the softmax phase 3 x 4C)],

where "largest op of the network" is the largest (inputs + outputs) of any operation of
the network traced at a reference size (OS*k+1), per input pixel, in the graph's own
dtypes (a mixed_bfloat16 export is cheaper). Weights are the fixed part. Sliding windows
(`max_side`) would bound the network's share; they are ignored, which overstates.

tests/reliability/test_serving_budget.py measures the real peak (VmHWM) of an exported
tiny model and checks the estimate against it.
"""
import numpy as np
import tensorflow as tf

# Memory one request may take by default. TF Serving runs requests concurrently (one
# thread per request; 4-8 at once on a typical 8-16 GiB serving host), so a request must
# fit in a fraction of the host: 1 GiB leaves room for 4 concurrent requests, the weights
# and the runtime in 8 GiB. ResNet-101 (21 classes, one scale, no flip; weights 222 MiB):
# OS16 367 bytes/pixel -> 2.29 MP (e.g. 1900x1200), OS8 510 bytes/pixel -> 1.65 MP.
# Six scales and flip multiply the network's share by 2 x 1.75^2: OS8 then ~0.32 MP.
DEFAULT_SERVING_MEMORY_MB = 1024
_REFERENCE_SIDE = 512   # reference input: OS*k+1 near 513 (the paper's crop)
# Operations whose outputs are weights or shapes, not activations.
_NOT_ACTIVATIONS = {"ReadVariableOp", "Const", "VarHandleOp", "Shape", "Placeholder",
                    "NoOp", "Identity", "Reshape"}


def _tensor_bytes(tensor):
    shape = tensor.shape
    if shape.rank is None or None in shape.as_list() or tensor.dtype == tf.resource:
        return 0
    return int(np.prod(shape.as_list(), dtype=np.int64)) * tensor.dtype.size


def network_peak_bytes_per_pixel(model, output_stride):
    """The largest (inputs + outputs) of one operation of `model` called on a float32
    image of OS*k+1 pixels per side, divided by those pixels: activation bytes per pixel
    of the network's input at its costliest step (weights not counted)."""
    side = output_stride * (_REFERENCE_SIDE // output_stride) + 1
    spec = tf.TensorSpec([1, side, side, 3], tf.float32)
    graph = tf.function(lambda x: model(x, training=False),
                        autograph=False).get_concrete_function(spec).graph
    largest = 0
    for op in graph.get_operations():
        if op.type in _NOT_ACTIVATIONS:
            continue
        inputs = sum(_tensor_bytes(t) for t in op.inputs
                     if t.op.type not in ("ReadVariableOp", "Const"))
        largest = max(largest, inputs + sum(_tensor_bytes(t) for t in op.outputs))
    return largest / float(side * side)


def bytes_per_pixel(model, protocol, probabilities=False):
    """Estimated peak memory of one request, in bytes per pixel of its images (module
    docstring), for `model` at `protocol`'s output stride, scales and flip."""
    num_classes = model.builder_args["num_classes"]
    network = network_peak_bytes_per_pixel(model, protocol.output_stride)
    alive = 3 + 12 + 4 * num_classes + 4 + (4 * num_classes if probabilities else 0)
    copies = 2 if protocol.flip else 1
    one_pass = 12 + max(network, 3 * 4 * num_classes)
    return alive + max(s * s for s in protocol.scales) * copies * one_pass


def fixed_bytes(model):
    """Memory a request needs whatever its size: the weights, in their stored dtypes."""
    return sum(int(np.prod(v.shape)) * tf.as_dtype(v.dtype).size for v in model.variables)


def default_max_pixels(model, protocol, probabilities=False,
                       memory_mb=DEFAULT_SERVING_MEMORY_MB):
    """(max_pixels, bytes_per_pixel): the pixels a request may hold so that its estimated
    peak stays within `memory_mb` MiB (None: the default). ValueError if the weights
    alone exceed it."""
    memory_mb = DEFAULT_SERVING_MEMORY_MB if memory_mb is None else memory_mb
    per_pixel = bytes_per_pixel(model, protocol, probabilities)
    target = int(memory_mb) * 2 ** 20
    fixed = fixed_bytes(model)
    if target - fixed < per_pixel:
        raise ValueError(f"serving memory {memory_mb} MB: the weights alone take "
                         f"{fixed / 2 ** 20:.1f} MB; expected a target above that "
                         f"(--serving_memory_mb)")
    return int((target - fixed) // per_pixel), per_pixel
