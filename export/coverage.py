"""What an exported file really is: :class:`~storyedge.manifest.Coverage` of a TFLite flatbuffer
or an ONNX model.

Per op a compute class (see :class:`~storyedge.manifest.Coverage`), weight bytes and elements
per storage dtype, the 4-bit payload / scale / zero-point bytes, and portability: TFLite files
are portable when they hold builtin ops only; ONNX files when every node is in the standard
domain (``com.microsoft`` contrib ops such as ``DynamicQuantizeLSTM`` or ``MatMulNBits`` run
on ONNX Runtime only).

Classification rules. TFLite: an op with an int8 / int16 activation (non-constant input or
output) is ``integer``; with a quantized constant input but float activations ``hybrid`` (the
kernel quantizes activations on the fly, or dequantizes the weights); with float16 activations
``fp16``; ``QUANTIZE`` / ``DEQUANTIZE`` / ``CAST`` are ``convert``; the rest ``float``. ONNX: the
``*Integer`` / ``QLinear*`` / ``DynamicQuantize*`` ops are ``integer``; a node of a QDQ graph
whose float inputs all come from ``DequantizeLinear`` and whose outputs all go to
``QuantizeLinear`` is ``integer`` (ONNX Runtime fuses such a group into an integer kernel),
any other node reading a ``DequantizeLinear`` ``float``; ``MatMulNBits`` / ``GatherBlockQuantized`` are
``hybrid``; a node with a float16 input or output ``fp16``.
"""

from __future__ import annotations

import collections
from typing import Any

import numpy as np

from storyedge.export.tflite import _builtin_names, _schema, op_name
from storyedge.manifest import COMPUTE_CLASSES, Coverage

CONVERT_TFLITE = ("QUANTIZE", "DEQUANTIZE", "CAST")
CONVERT_ONNX = ("QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "Cast")
INTEGER_ONNX = ("MatMulInteger", "ConvInteger", "com.microsoft.DynamicQuantizeLSTM", "com.microsoft.DynamicQuantizeMatMul",
                "com.microsoft.MatMulIntegerToFloat", "QLinearMatMul", "QLinearConv")
HYBRID_ONNX = ("com.microsoft.MatMulNBits", "com.microsoft.GatherBlockQuantized")
#: ONNX domains that every ONNX runtime implements.
STANDARD_DOMAINS = ("", "ai.onnx")


def _ordered(compute: dict[str, collections.Counter[str]]) -> dict[str, dict[str, int]]:
    return {c: dict(sorted(compute[c].items())) for c in COMPUTE_CLASSES if compute.get(c)}


# ----------------------------------------------------------------------------------- TFLite


def buffer_bytes(model: Any, index: int) -> int:
    """Bytes of a flatbuffer buffer: inline data, or (ai-edge-quantizer writes larger files so)
    data appended after the flatbuffer and addressed by ``offset`` / ``size``."""
    buf = model.Buffers(index)
    return buf.DataLength() or (int(buf.Size()) if buf.Offset() > 1 else 0)


def tflite_coverage(content: bytes) -> Coverage:
    """Coverage of a ``.tflite`` flatbuffer (every subgraph)."""
    schema = _schema()
    names = _builtin_names()
    model = schema.Model.GetRootAs(content, 0)
    types = {v: k.lower() for k, v in vars(schema.TensorType).items() if not k.startswith("_") and isinstance(v, int)}
    int_acts = {schema.TensorType.INT8, schema.TensorType.INT16, schema.TensorType.UINT8}
    quant_weights = {schema.TensorType.INT8, schema.TensorType.INT4, schema.TensorType.INT16, schema.TensorType.UINT8}
    compute: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    custom: collections.Counter[str] = collections.Counter()
    weight_bytes: collections.Counter[str] = collections.Counter()
    weight_elems: collections.Counter[str] = collections.Counter()
    int4 = collections.Counter()
    seen_buffers: set[int] = set()
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)

        def constant(t: int) -> bool:
            b = graph.Tensors(t).Buffer()
            return b > 0 and buffer_bytes(model, b) > 0

        for t in range(graph.TensorsLength()):
            tensor = graph.Tensors(t)
            b = tensor.Buffer()
            if b <= 0 or b in seen_buffers or buffer_bytes(model, b) == 0:
                continue
            seen_buffers.add(b)
            dtype = types.get(tensor.Type(), str(tensor.Type()))
            size = buffer_bytes(model, b)
            elems = int(np.prod(tensor.ShapeAsNumpy())) if tensor.ShapeLength() else 1
            weight_bytes[dtype] += size
            weight_elems[dtype] += elems
            if tensor.Type() == schema.TensorType.INT4:
                params = _tflite_int4_params(schema, model, graph, tensor)
                block_size = params.pop("block_size", None)
                int4.update(elements=elems, payload_bytes=size, **params)
                if block_size:
                    int4["block_size"] = block_size
        for o in range(graph.OperatorsLength()):
            op = graph.Operators(o)
            name, is_custom = op_name(schema, model, op, names)
            if is_custom:
                custom[name] += 1
            ins = [op.Inputs(i) for i in range(op.InputsLength()) if op.Inputs(i) >= 0]
            outs = [op.Outputs(i) for i in range(op.OutputsLength()) if op.Outputs(i) >= 0]
            act_types = {graph.Tensors(t).Type() for t in ins if not constant(t)} | {graph.Tensors(t).Type() for t in outs}
            const_types = {graph.Tensors(t).Type() for t in ins if constant(t)}
            if name in CONVERT_TFLITE:
                cls = "convert"
            elif act_types & int_acts:
                cls = "integer"
            elif const_types & quant_weights and schema.TensorType.FLOAT32 in act_types:
                cls = "hybrid"
            elif schema.TensorType.FLOAT16 in act_types:
                cls = "fp16"
            else:
                cls = "float"
            compute[cls][name] += 1
    notes = []
    if weight_bytes.get("float16"):
        notes.append("float16 weights are dequantized to float32 when the file is loaded; the math is float32")
    return Coverage(
        compute=_ordered(compute), weight_bytes=dict(sorted(weight_bytes.items())),
        weight_elements=dict(sorted(weight_elems.items())), portable=not custom,
        nonportable_ops=dict(sorted(custom.items())), int4=dict(int4), notes=notes,
    )


def _tflite_int4_params(schema: Any, model: Any, graph: Any, tensor: Any) -> dict[str, int]:
    """Blocks and scale / zero-point bytes of one int4 tensor: blockwise (ai-edge-quantizer keeps
    the scales in their own float16 tensor) or per-channel (float32 scales, int64 zero points in
    the quantization parameters)."""
    q = tensor.Quantization()
    if q is None:
        return {}
    if q.DetailsType() == schema.QuantizationDetails.BlockwiseQuantization:
        table = q.Details()
        block = schema.BlockwiseQuantization()
        block.Init(table.Bytes, table.Pos)

        def tensor_bytes(index: int) -> tuple[int, int]:
            if index < 0:
                return 0, 0
            t = graph.Tensors(index)
            n = int(np.prod(t.ShapeAsNumpy())) if t.ShapeLength() else 1
            return n, buffer_bytes(model, t.Buffer()) if t.Buffer() > 0 else 0

        blocks, scale_bytes = tensor_bytes(block.Scales())
        _, zp_bytes = tensor_bytes(block.ZeroPoints()) if block.ZeroPoints() != block.Scales() else (0, 0)
        return {"blocks": blocks, "scale_bytes": scale_bytes, "zero_point_bytes": zp_bytes,
                "block_size": block.BlockSize()}
    return {"blocks": q.ScaleLength(), "scale_bytes": 4 * q.ScaleLength(), "zero_point_bytes": 8 * q.ZeroPointLength()}


# ------------------------------------------------------------------------------------- ONNX


def _op_name(node: Any) -> str:
    return node.op_type if node.domain in STANDARD_DOMAINS else f"{node.domain}.{node.op_type}"


def _value_types(proto: Any) -> dict[str, int]:
    """Tensor name → ONNX elem type, from shape inference (inputs, outputs, initializers too)."""
    # lazy: onnx is a heavy optional runtime
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(proto)
    except Exception:  # noqa: BLE001 - contrib ops may not infer; fall back to what is declared
        inferred = proto
    g = inferred.graph
    out = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def _onnx_weights(proto: Any, coverage: dict[str, collections.Counter]) -> None:
    # lazy: onnx is a heavy optional runtime
    import onnx
    from onnx import numpy_helper

    names = {v: k.lower() for k, v in onnx.TensorProto.DataType.items()}
    for init in proto.graph.initializer:
        dtype = names.get(init.data_type, str(init.data_type))
        elems = int(np.prod(init.dims)) if len(init.dims) else 1
        nbytes = len(init.raw_data) if init.HasField("raw_data") else numpy_helper.to_array(init).nbytes
        coverage["bytes"][dtype] += nbytes
        coverage["elements"][dtype] += elems


def _int4_params(proto: Any) -> dict[str, int]:
    """Payload / scale / zero-point bytes of the 4-bit MatMulNBits weights (an int8-dynamic
    decoder step's 8-bit ones are not int4)."""
    inits = {i.name: i for i in proto.graph.initializer}
    out: collections.Counter[str] = collections.Counter()
    for node in proto.graph.node:
        attrs = {a.name: a.i for a in node.attribute}
        k, n, bits = attrs.get("K", 0), attrs.get("N", 0), attrs.get("bits", 4)
        if node.op_type != "MatMulNBits" or bits != 4:
            continue
        payload = inits.get(node.input[1])
        scales = inits.get(node.input[2]) if len(node.input) > 2 else None
        zps = inits.get(node.input[3]) if len(node.input) > 3 and node.input[3] else None
        out["elements"] += k * n
        out["payload_bytes"] += len(payload.raw_data) if payload is not None else 0
        out["scale_bytes"] += len(scales.raw_data) if scales is not None else 0
        out["zero_point_bytes"] += len(zps.raw_data) if zps is not None else 0
        out["blocks"] += int(np.prod(scales.dims)) if scales is not None else 0
        out["bits"] = bits
    return dict(out)


def onnx_coverage(proto: Any) -> Coverage:
    """Coverage of an ``onnx.ModelProto`` (main graph; our files have no subgraphs)."""
    types = _value_types(proto)
    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = collections.defaultdict(list)
    for n in graph.node:
        for i in n.input:
            consumers[i].append(n)
    inits = {i.name for i in graph.initializer}
    fp16 = 10
    compute: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    nonportable: collections.Counter[str] = collections.Counter()
    for node in graph.node:
        name = _op_name(node)
        if node.domain not in STANDARD_DOMAINS:
            nonportable[name] += 1
        if node.op_type in CONVERT_ONNX:
            cls = "convert"
        elif name in INTEGER_ONNX:
            cls = "integer"
        elif name in HYBRID_ONNX:
            cls = "hybrid"
        else:
            dq_in = [i for i in node.input if i and getattr(producers.get(i), "op_type", "") == "DequantizeLinear"]
            act_in = [i for i in node.input if i and i not in inits and getattr(producers.get(i), "op_type", "") != "Constant"]
            q_out = node.output and all(
                consumers.get(o) and all(c.op_type == "QuantizeLinear" for c in consumers[o]) for o in node.output
            )
            if dq_in and q_out and all(i in dq_in for i in act_in):
                cls = "integer"
            elif dq_in:
                cls = "float"  # outside a Q/DQ group ONNX Runtime computes on the dequantized floats
            elif any(types.get(t) == fp16 for t in list(node.input) + list(node.output) if t):
                cls = "fp16"
            else:
                cls = "float"
        compute[cls][name] += 1
    weights: dict[str, collections.Counter] = {"bytes": collections.Counter(), "elements": collections.Counter()}
    _onnx_weights(proto, weights)
    notes = []
    if nonportable:
        notes.append(f"needs ONNX Runtime contrib ops ({', '.join(sorted(nonportable))}): other ONNX runtimes cannot run it")
    if compute.get("fp16"):
        notes.append("ONNX Runtime's CPU provider lacks float16 kernels for many ops and runs those in float32 "
                     "behind inserted casts; GPU providers run them in float16")
    return Coverage(
        compute=_ordered(compute), weight_bytes=dict(sorted(weights["bytes"].items())),
        weight_elements=dict(sorted(weights["elements"].items())), portable=not nonportable,
        nonportable_ops=dict(sorted(nonportable.items())), int4=_int4_params(proto), notes=notes,
    )


def float_compute_ops(coverage: Coverage) -> list[str]:
    """Op names with at least one instance computing in float32 (what stayed float)."""
    return sorted(coverage.compute.get("float", {}))
