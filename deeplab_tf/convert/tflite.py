"""Import of research/deeplab's released TFLite DeepLabv3 MobileNetV2 models (e.g.
`deeplabv3_mnv2_pascal_quant.tflite`, `deeplabv3_mnv2_dm05_pascal_quant.tflite`).

The flatbuffer is read with `tf.lite.Interpreter` (from bytes: fileio reads the path). Its
CONV_2D and DEPTHWISE_CONV_2D ops, in execution order, are MobileNetV2's convolutions, then
the head's `aspp0`, `image_pooling`, `concat_projection` and `logits/semantic`: they map in
that order onto our convolutions (`conv_layers`), each shape checked. Weights are dequantized
(w = scale * (q - zero_point), per channel where the file has per-channel scales).

BatchNorm is folded into the file's convolutions (a bias per conv). Our architecture keeps
its BN layers, set to the identity plus that bias: gamma = 1, moving mean = 0, moving
variance = 1 - epsilon, beta = the folded bias. The model computes the same function and
stays trainable as any other (fine-tuning updates those BN variables as usual).

The head's concatenation is [image pooling, 1x1] in the file and [1x1, image pooling] in
ours: the projection's input channels are swapped accordingly.
"""
import numpy as np
import tensorflow as tf

from deeplab_tf import fileio
from deeplab_tf.convert.core import split_path
from deeplab_tf.modeling import mobilenet_v2

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")
HEAD = ("aspp_0_conv", "aspp_pooling/conv", "aspp_project_conv", "logits")
HEAD_BN = ("aspp_0_bn", "aspp_pooling/bn", "aspp_project_bn", None)
# research/deeplab's head BN epsilon: our DeepLabV3 head's on MobileNetV2 (its Backbone).
HEAD_EPSILON = mobilenet_v2.BACKBONE.head_bn_epsilon["slim"]


def conv_layers(depth_multiplier):
    """Our (conv layer, its BN layer or None) in the order the file's conv ops run."""
    del depth_multiplier   # the plan's layer names do not depend on it
    layers = [("Conv1", "bn_Conv1")]
    block = 0
    for t, _, n, _ in mobilenet_v2.STAGES:
        for _ in range(n):
            prefix = f"block_{block}_" if block else "expanded_conv_"
            if t != 1:
                layers.append((prefix + "expand", prefix + "expand_BN"))
            layers.append((prefix + "depthwise", prefix + "depthwise_BN"))
            layers.append((prefix + "project", prefix + "project_BN"))
            block += 1
    return layers + list(zip(HEAD, HEAD_BN))


def _dequantize(details, value):
    q = details["quantization_parameters"]
    scales, zeros = q["scales"], q["zero_points"]
    if not len(scales):
        return value.astype(np.float32)
    shape = [1] * value.ndim
    if len(scales) > 1:
        shape[q["quantized_dimension"]] = len(scales)
    return (scales.reshape(shape) * (value.astype(np.float32) - zeros.reshape(shape))
            ).astype(np.float32)


def read_convs(path):
    """(input shape, the file's conv ops in execution order: dicts with op, kernel (ours:
    [h, w, in, out|1]), bias, their tensor names and the output shape), dequantized."""
    try:
        interpreter = tf.lite.Interpreter(model_content=fileio.read_bytes(path))
        interpreter.allocate_tensors()
    except ValueError as e:
        raise ValueError(f"{path}: not a TFLite model ({e})") from None
    details = {t["index"]: t for t in interpreter.get_tensor_details()}
    convs = []
    for op in interpreter._get_ops_details():   # noqa: SLF001 (no public API for ops)
        if op["op_name"] not in CONV_OPS:
            continue
        w, b = details[op["inputs"][1]], details[op["inputs"][2]]
        kernel = _dequantize(w, interpreter.get_tensor(w["index"]))
        convs.append(dict(op=op["op_name"], kernel=np.transpose(kernel, (1, 2, 3, 0)),
                          kernel_name=w["name"], bias_name=b["name"],
                          bias=_dequantize(b, interpreter.get_tensor(b["index"])),
                          output_shape=tuple(details[op["outputs"][0]]["shape"])))
    return tuple(interpreter.get_input_details()[0]["shape"]), convs


def load_classifier(path):
    """slim's MobileNetV2 ImageNet classifier .tflite (e.g. mobilenet_v2_1.0_224_quant) as
    `mobilenet_v2.classifier`: raw RGB in, 1001 logits out (class 0: background)."""
    _, convs = read_convs(path)
    num_classes = convs[-1]["kernel"].shape[-1]
    depth = convs[-3]["kernel"].shape[-1] / 320
    layers = conv_layers(depth)[:-len(HEAD)] + [("Conv_1", "Conv_1_bn"), ("Logits", None)]
    if len(layers) != len(convs):
        raise ValueError(f"{path}: {len(convs)} convolutions, expected {len(layers)} "
                         f"(a MobileNetV2 classifier)")
    model = mobilenet_v2.classifier(depth, num_classes, layout="slim")
    for conv, (layer, bn) in zip(convs, layers):
        if bn is None:
            model.get_layer(layer).set_weights([conv["kernel"], conv["bias"]])
            continue
        model.get_layer(layer).set_weights([conv["kernel"]])
        b = conv["bias"]
        model.get_layer(bn).set_weights([np.ones_like(b), b, np.zeros_like(b),
                                         np.full_like(b, 1 - mobilenet_v2.BN_EPSILON)])
    return model


class TFLiteReader:
    """The file's conv weights as a checkpoint reader (`get_variable_to_shape_map`,
    `get_tensor`) whose names are the file's tensor names, plus `targets`:
    (our layer, weight) -> name, and `arch` (what the file implies)."""

    def __init__(self, path):
        self.input_shape, convs = read_convs(path)
        self.tensors, self.targets = {}, {}
        last_backbone = len(convs) - len(HEAD)
        if last_backbone < 1:
            raise ValueError(f"{path}: {len(convs)} convolutions, not a DeepLabv3 MobileNetV2")
        features = convs[last_backbone - 1]["kernel"].shape[-1]
        self.depth_multiplier = features / 320
        expected = conv_layers(self.depth_multiplier)
        if len(expected) != len(convs) or self.depth_multiplier not in \
                mobilenet_v2.DEPTH_MULTIPLIERS:
            raise ValueError(f"{path}: {len(convs)} convolutions with {features} backbone "
                             f"features; expected {len(expected)} (DeepLabv3 MobileNetV2, "
                             f"depth multiplier one of {mobilenet_v2.DEPTH_MULTIPLIERS})")
        out_size = convs[last_backbone]["output_shape"][1]
        self.output_stride = int(2 ** round(np.log2((self.input_shape[1] - 1) / (out_size - 1))))
        self.num_classes = int(convs[-1]["kernel"].shape[-1])
        for op, (conv, bn) in zip(convs, expected):
            kernel, bias = op["kernel"], op["bias"]
            w, b = {"name": op["kernel_name"]}, {"name": op["bias_name"]}
            if conv == "aspp_project_conv":                 # [pool, 1x1] -> [1x1, pool]
                half = kernel.shape[2] // 2
                kernel = np.concatenate([kernel[:, :, half:], kernel[:, :, :half]], axis=2)
            weight = "depthwise_kernel" if op["op"] == "DEPTHWISE_CONV_2D" else "kernel"
            self._add(conv, weight, w["name"], kernel)
            if bn is None:
                self._add(conv, "bias", b["name"], bias)
                continue
            eps = mobilenet_v2.BN_EPSILON if conv not in HEAD else HEAD_EPSILON
            self._add(bn, "beta", b["name"], bias)
            folded = f"{b['name']} (BatchNorm folded: "
            self._add(bn, "gamma", folded + "gamma=1)", np.ones_like(bias))
            self._add(bn, "moving_mean", folded + "mean=0)", np.zeros_like(bias))
            self._add(bn, "moving_variance", folded + "variance=1-eps)",
                      np.full_like(bias, 1 - eps))

    def _add(self, layer, weight, name, value):
        self.tensors[name] = value
        self.targets[(layer, weight)] = name

    def get_variable_to_shape_map(self):
        return {n: (list(v.shape) if v is not None else []) for n, v in self.tensors.items()}

    def get_tensor(self, name):
        return self.tensors[name]

    def architecture(self):
        return dict(backbone="mobilenet_v2", depth_multiplier=self.depth_multiplier,
                    layout="slim", input_normalization="tf",
                    output_stride=self.output_stride, aspp_rates=(), image_pooling=True,
                    num_classes=self.num_classes)


def reader(path):
    return TFLiteReader(path)


def infer(shapes, path):
    del shapes
    return TFLiteReader(path).architecture()


def mapper(model, reader_or_shapes):
    """name(unit, kind, weight) -> (file tensor name, None) from the reader's targets."""
    targets = reader_or_shapes.targets
    paths = {split_path(v.path): v.path for v in model.weights}

    def name(unit, kind, weight):
        path = paths.get((unit, kind, weight))
        if path is None:
            return None
        layer, weight = path.rsplit("/", 1)
        found = targets.get((layer, weight))
        return None if found is None else (found, None)
    return name
