"""Dynamic-range int8 convolutions for ONNX Runtime: each float ``Conv`` becomes an integer
product over its input's patches, in standard-domain ops only.

ONNX Runtime's ``ConvInteger`` (what ``quantize_dynamic`` writes for a ``Conv``) ran the
seed-size encoder at half the speed of its float convolutions, so the int8-dynamic files kept
them float. Written instead as the patches of the input (im2col) times the int8 weights, a
convolution runs on the same u8 x s8 kernels as the file's other products:

``Transpose`` (channels last) -> ``DynamicQuantizeLinear`` (the activations once, uint8) ->
[``Pad`` with the zero point, the quantized 0.0, so padding stays exact] -> ``Gather`` of the
patches' pixels from the flattened grid (one node: per-tap ``Slice`` + ``Concat`` nodes cost
more than the product itself at one frame) -> ``MatMulInteger`` with the per-output-channel int8
weights -> ``Cast`` -> ``Mul`` by the scales [-> ``Add`` bias] -> ``Transpose`` back.

ONNX Runtime fuses the ``MatMulInteger`` -> ``Cast`` -> ``Mul`` chain into its
``MatMulIntegerToFloat`` kernel and cancels the transposes between consecutive convolutions,
so the rewrite is portable and fast. Seed size, 2 threads, interleaved, both orders: the
full-window int8-dynamic encoder 10.03 / 9.67 ms -> 6.78 / 6.55 ms, story mode 3.83 / 3.72 ->
2.99 / 2.94 ms; a lone 3x3 convolution (3 x 128 x 16 x 16) 0.97 ms as a float ``Conv``, 1.17 ms
as ``ConvInteger``, 0.41 ms as a patch product.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from storyedge.export.onnx_graph import drop_unread_initializers

#: Largest |int8 weight|: 7-bit weights, as ``quantize_dynamic``'s ``reduce_range`` (u8 x s8
#: kernels without VNNI saturate their int16 sums with full-range weights).
WEIGHT_QMAX = 63
#: Convolutions with fewer inputs per output (channels x kernel taps) stay float: the RGB stem's
#: 27 make too short a product for the integer kernels to pay for the quantization (seed size:
#: 0.33 ms as a patch product + 0.2 ms of patches against 0.30 ms as a float ``Conv``).
MIN_PATCH = 32


def int8_convs_in_file(path: str | Path) -> list[str]:
    """:func:`convs_to_int8` on an ONNX file, in place; returns the rewritten convolutions' names."""
    # lazy: onnx is a heavy optional runtime
    import onnx

    proto = onnx.load(str(path))
    rewritten = convs_to_int8(proto)
    if rewritten:
        onnx.save(proto, str(path))
    return rewritten


def convs_to_int8(proto: Any) -> list[str]:
    """Rewrite each eligible float ``Conv`` of ``proto`` (2-D, ``group`` 1, no dilation, constant
    weights and bias, at least :data:`MIN_PATCH` inputs per output, a known input size) as a dynamic-range int8 patch product.
    Returns the rewritten nodes' names."""
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    sizes = _spatial_sizes(proto)
    quantized: dict[str, str] = {}  # input -> the prefix of its quantized tensors (shared by its readers)
    rewritten: list[str] = []
    for conv in [n for n in graph.node if n.op_type == "Conv"]:
        weight = _weights(conv, inits)
        if weight is None or conv.input[0] not in sizes:
            continue
        index = list(graph.node).index(conv)
        nodes, tensors = _patch_product(conv, weight, _bias(conv, inits), sizes[conv.input[0]], quantized)
        graph.node.remove(conv)
        for offset, node in enumerate(nodes):
            graph.node.insert(index + offset, node)
        graph.initializer.extend(tensors)
        rewritten.append(conv.name)
    if rewritten:
        drop_unread_initializers(graph)
    return rewritten


def _spatial_sizes(proto: Any) -> dict[str, tuple[int, int]]:
    """``(height, width)`` of every 4-D NCHW tensor whose spatial dims shape inference fixes."""
    # lazy: onnx is a heavy optional runtime
    import onnx

    inferred = onnx.shape_inference.infer_shapes(proto)
    sizes = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input]:
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            sizes[info.name] = (dims[2].dim_value, dims[3].dim_value)
    return sizes


def _attrs(node: Any) -> dict[str, Any]:
    # lazy: onnx is a heavy optional runtime
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _weights(conv: Any, inits: dict[str, Any]) -> np.ndarray | None:
    """The convolution's float weights ``[out, in, kh, kw]`` when it is eligible, else None."""
    # lazy: onnx is a heavy optional runtime
    from onnx import numpy_helper

    attrs = _attrs(conv)
    if conv.input[1] not in inits or attrs.get("group", 1) != 1 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        return None
    if any(d != 1 for d in attrs.get("dilations", [1, 1])):
        return None
    if len(conv.input) > 2 and conv.input[2] and conv.input[2] not in inits:
        return None  # a computed bias
    weight = numpy_helper.to_array(inits[conv.input[1]])
    if weight.ndim != 4 or weight.dtype != np.float32 or int(np.prod(weight.shape[1:])) < MIN_PATCH:
        return None
    return weight


def _bias(conv: Any, inits: dict[str, Any]) -> np.ndarray | None:
    # lazy: onnx is a heavy optional runtime
    from onnx import numpy_helper

    if len(conv.input) < 3 or not conv.input[2]:
        return None
    return numpy_helper.to_array(inits[conv.input[2]])


def quantize_weights(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[out, in, kh, kw]`` float weights as the patch product's ``[kh * kw * in, out]`` int8
    matrix (rows in the patches' order: kernel row, kernel column, channel) and its per-column
    scales."""
    matrix = weight.transpose(2, 3, 1, 0).reshape(-1, weight.shape[0])
    scales = np.abs(matrix).max(axis=0) / WEIGHT_QMAX
    scales = np.where(scales > 0, scales, 1.0).astype(np.float32)
    quantized = np.clip(np.round(matrix / scales), -WEIGHT_QMAX, WEIGHT_QMAX).astype(np.int8)
    return quantized, scales


def _patch_product(conv: Any, weight: np.ndarray, bias: np.ndarray | None, size: tuple[int, int],
                   quantized: dict[str, str]) -> tuple[list[Any], list[Any]]:
    """The nodes and initializers replacing ``conv`` (same input and output names); its input is
    quantized once for all its rewritten readers (``quantized``: input -> prefix of ``q``,
    ``q_scale``, ``q_zero``, updated)."""
    # lazy: onnx is a heavy optional runtime
    from onnx import TensorProto, helper, numpy_helper

    prefix = f"{conv.name or conv.output[0]}/int8/"
    tensors: list[Any] = []

    def const(suffix: str, value: np.ndarray) -> str:
        tensors.append(numpy_helper.from_array(value, prefix + suffix))
        return prefix + suffix

    nodes = []
    if conv.input[0] not in quantized:
        quantized[conv.input[0]] = prefix
        nodes += [
            helper.make_node("Transpose", [conv.input[0]], [prefix + "nhwc"], perm=[0, 2, 3, 1], name=prefix + "to_nhwc"),
            helper.make_node("DynamicQuantizeLinear", [prefix + "nhwc"], [prefix + x for x in ("q", "q_scale", "q_zero")],
                             name=prefix + "quantize"),
        ]
    source = quantized[conv.input[0]]
    nodes += _patches(conv, weight.shape, size, prefix, source, const)
    matrix, scales = quantize_weights(weight)
    t = prefix.__add__
    nodes += [
        helper.make_node("MatMulInteger", [t("patches"), const("weight", matrix), source + "q_zero"], [t("int32")],
                         name=t("matmul")),
        helper.make_node("Cast", [t("int32")], [t("float")], to=TensorProto.FLOAT, name=t("cast")),
        helper.make_node("Mul", [source + "q_scale", const("weight_scale", scales)], [t("scale")], name=t("scale")),
        helper.make_node("Mul", [t("float"), t("scale")], [t("scaled")], name=t("rescale")),
    ]
    out = t("scaled")
    if bias is not None:
        nodes.append(helper.make_node("Add", [out, const("bias", bias.astype(np.float32))], [t("biased")],
                                      name=t("bias")))
        out = t("biased")
    nodes.append(helper.make_node("Transpose", [out], [conv.output[0]], perm=[0, 3, 1, 2], name=t("to_nchw")))
    return nodes, tensors


def _patches(conv: Any, shape: tuple[int, ...], size: tuple[int, int], prefix: str, source: str, const: Any
             ) -> list[Any]:
    """Nodes gathering ``conv``'s patches from its quantized channels-last input ``source + "q"``
    as ``prefix + "patches"`` ``[N, rows, cols, kh * kw * C]``."""
    # lazy: onnx is a heavy optional runtime
    from onnx import helper

    attrs = _attrs(conv)
    channels, kh, kw = shape[1:]
    sh, sw = attrs.get("strides", [1, 1])
    top, left, bottom, right = attrs.get("pads", [0, 0, 0, 0])
    t = prefix.__add__
    nodes = []
    grid = source + "q"
    if any((top, left, bottom, right)):
        # padded with the zero point: the quantized zero, as the float padding was
        pads = const("pads", np.array([0, top, left, 0, 0, bottom, right, 0], np.int64))
        nodes.append(helper.make_node("Pad", [grid, pads, source + "q_zero"], [t("padded")], name=t("pad")))
        grid = t("padded")
    height, width = size[0] + top + bottom, size[1] + left + right
    rows, cols = (height - kh) // sh + 1, (width - kw) // sw + 1
    if (kh, kw, sh, sw) == (1, 1, 1, 1):
        return [*nodes, helper.make_node("Identity", [grid], [t("patches")], name=t("patches"))]
    # one Gather of whole pixels (their channels contiguous) from the flattened grid
    flat_shape = const("grid_shape", np.array([0, height * width, channels], np.int64))
    patch_shape = const("patch_shape", np.array([0, rows, cols, kh * kw * channels], np.int64))
    pixels = const("pixels", _patch_pixels(height, width, kh, kw, sh, sw))
    return [
        *nodes,
        helper.make_node("Reshape", [grid, flat_shape], [t("grid")], name=t("grid")),
        helper.make_node("Gather", [t("grid"), pixels], [t("taps")], axis=1, name=t("taps")),
        helper.make_node("Reshape", [t("taps"), patch_shape], [t("patches")], name=t("patches")),
    ]


def _patch_pixels(height: int, width: int, kh: int, kw: int, sh: int, sw: int) -> np.ndarray:
    """Flat grid indices of every output position's kernel taps, row-major: ``[rows * cols * kh * kw]``."""
    rows, cols = (height - kh) // sh + 1, (width - kw) // sw + 1
    r = np.arange(rows)[:, None, None, None] * sh + np.arange(kh)[None, None, :, None]
    c = np.arange(cols)[None, :, None, None] * sw + np.arange(kw)[None, None, None, :]
    return (r * width + c).reshape(-1).astype(np.int32)
