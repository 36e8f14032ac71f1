"""Parameter and multiply-add counts of a model, per stage (`deeplab-summary`).

Multiply-adds are read off the traced graph at a fixed input size: every Conv2D / MatMul
op, so nothing the model computes is missed. Two conventions, as in the peers' analytic
counts: "nominal" counts every output position x every kernel tap (what profilers report);
"valid" counts only taps landing inside the unpadded input, which matters at large atrous
rates where most taps hit the padding (Fig. 4) and `valid_tap_conv2d` skips them.
"""
import collections
import re

import tensorflow as tf

from deeplab_tf.modeling.atrous import native_atrous

STAGES = ("input", "stem", "block1", "block2", "block3", "block4", "block5", "block6",
          "block7", "aspp", "logits")


def stage_of(layer_name):
    """Paper stage of a layer: conv1* -> stem, conv{k} -> block{k-1}, aspp*, logits."""
    m = re.match(r"conv(\d+)", layer_name)
    if m:
        k = int(m.group(1))
        return "stem" if k == 1 else f"block{k - 1}"
    if layer_name.startswith("aspp"):
        return "aspp"
    if layer_name.startswith(("logits", "upsample", "dropout")):
        return "logits"
    return "input"


def _pad_beg(op, axis, n, k, stride, rate, out):
    padding = op.get_attr("padding").decode()
    if padding == "VALID":
        return 0
    if padding == "EXPLICIT":
        return op.get_attr("explicit_paddings")[2 * axis]
    eff = (k - 1) * rate + 1
    return max((out - 1) * stride + eff - n, 0) // 2


def conv_costs(model, height, width):
    """One row per convolution / matmul: (layer name, nominal MACs, valid MACs)."""
    fn = tf.function(lambda x: model(x, training=False))
    with native_atrous():   # the architecture's convolutions, not the valid-tap products
        graph = fn.get_concrete_function(tf.TensorSpec([1, height, width, 3], tf.float32)).graph
    rows = []
    for op in graph.get_operations():
        if op.type not in ("Conv2D", "MatMul"):
            continue
        layer = op.name.split("/")[1]
        layer = re.sub(r"_\d+$", "", layer)
        out = op.outputs[0].shape
        if op.type == "MatMul":
            macs = out.num_elements() * op.inputs[0].shape[-1]
            rows.append((layer, macs, macs))
            continue
        kh, kw, cin, cout = op.inputs[1].shape
        n_h, n_w = op.inputs[0].shape[1:3]
        stride = op.get_attr("strides")[1]
        rate = op.get_attr("dilations")[1]
        nominal = out.num_elements() * kh * kw * cin
        valid = 1
        for axis, (n, k, o) in enumerate([(n_h, kh, out[1]), (n_w, kw, out[2])], start=1):
            beg = _pad_beg(op, axis, n, k, stride, rate, o)
            valid *= sum(sum(1 for t in range(k) if 0 <= i * stride - beg + t * rate < n)
                         for i in range(o))
        rows.append((layer, nominal, valid * cin * cout))
    return rows


def summarize(model, height, width):
    """Per stage: {"params", "macs", "valid_macs"}, in the paper's stage order, plus "total"."""
    table = collections.OrderedDict((s, dict(params=0, macs=0, valid_macs=0)) for s in STAGES)
    for layer in model.layers:
        table[stage_of(layer.name)]["params"] += layer.count_params() if layer.weights else 0
    for layer, macs, valid in conv_costs(model, height, width):
        table[stage_of(layer)]["macs"] += macs
        table[stage_of(layer)]["valid_macs"] += valid
    table = collections.OrderedDict((k, v) for k, v in table.items() if any(v.values()))
    table["total"] = {key: sum(v[key] for v in table.values())
                      for key in ("params", "macs", "valid_macs")}
    return table


def format_table(table):
    """Markdown table of the summary: parameters in millions, multiply-adds in billions."""
    lines = ["| stage | params (M) | GMACs | GMACs (valid taps) |", "|---|---:|---:|---:|"]
    for stage, v in table.items():
        lines.append(f"| {stage} | {v['params'] / 1e6:.3f} | {v['macs'] / 1e9:.2f} | "
                     f"{v['valid_macs'] / 1e9:.2f} |")
    return "\n".join(lines)
