"""The TFLite flatbuffer schema and its object API, shared by the export (conversion,
calibration, coverage), the bench (per-op profile) and the runtime (whether a file is safe for
XNNPACK's weight cache): the schema module, builtin op names, packing a ``ModelT`` back into a
file's bytes, and the readers of each weight buffer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import flatbuffers
import numpy as np


def schema() -> Any:
    """The TFLite flatbuffer schema module (ai-edge-litert's, else TensorFlow's copy)."""
    try:
        from ai_edge_litert import schema_py_generated as module  # lazy: heavy optional runtime
    except ImportError:  # older ai-edge-litert
        from tensorflow.lite.python import schema_py_generated as module  # lazy: imports TensorFlow
    return module


def builtin_names() -> dict[int, str]:
    """Builtin operator code -> name (``FULLY_CONNECTED`` ...)."""
    return {
        value: name
        for name, value in vars(schema().BuiltinOperator).items()
        if not name.startswith("_") and isinstance(value, int)
    }


def builtin_op_name(model: Any, op: Any, names: dict[int, str]) -> str | None:
    """The builtin name of ``op`` in an object-API ``model`` (``ModelT``); None for custom ops
    (the flatbuffer reader's twin: :func:`storyedge.export.tflite.op_name`)."""
    code = model.operatorCodes[op.opcodeIndex]
    return names.get(max(code.builtinCode, code.deprecatedBuiltinCode))


def pack_model(model: Any, size: int = 1024) -> bytes:
    """An object-API ``model`` as ``.tflite`` bytes (``size``: the builder's first buffer)."""
    builder = flatbuffers.Builder(size)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def pack_variant(model: Any, subgraphs: list[Any], buffers: list[Any]) -> bytes:
    """``model`` packed with these ``subgraphs`` and ``buffers`` instead of its own and no
    signatures (a piece of it as a model of its own); ``model`` is left as it was."""
    kept = model.subgraphs, model.signatureDefs, model.buffers
    model.subgraphs, model.signatureDefs, model.buffers = subgraphs, [], buffers
    try:
        return pack_model(model)
    finally:
        model.subgraphs, model.signatureDefs, model.buffers = kept


def constant_data(model: Any, tensor: Any) -> Any | None:
    """The bytes (uint8 array) of a tensor's buffer in an object-API ``model``; None for an
    activation (no buffer, or an empty one)."""
    data = model.buffers[tensor.buffer].data if 0 <= tensor.buffer < len(model.buffers) else None
    return data if data is not None and len(data) > 0 else None


#: Ops whose input 0 is the activation and input 1 the weights XNNPACK packs (and its weight cache
#: shares between the ops reading one weight buffer).
PACKED_WEIGHT_OPS = frozenset({"FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "BATCH_MATMUL"})


def quantization_key(tensor: Any) -> tuple:
    """A tensor's scales and zero points as a hashable tuple (empty when it has none)."""
    q = tensor.quantization
    if q is None:
        return ()
    return tuple(tuple(np.asarray(v if v is not None else []).ravel().tolist()) for v in (q.scale, q.zeroPoint))


def packed_weight_reads(model: Any) -> Iterator[tuple[int, Any, Any]]:
    """(subgraph index, op, weight tensor) for every op of an object-API ``model`` in
    :data:`PACKED_WEIGHT_OPS` whose weights (input 1) are a constant: a buffer with data."""
    names = builtin_names()
    for sg_index, graph in enumerate(model.subgraphs):
        for op in graph.operators or []:
            inputs = list(op.inputs) if op.inputs is not None else []
            if builtin_op_name(model, op, names) not in PACKED_WEIGHT_OPS or len(inputs) < 2 or min(inputs[:2]) < 0:
                continue
            weights = graph.tensors[inputs[1]]
            if constant_data(model, weights) is not None:
                yield sg_index, op, weights


def weight_readers(model: Any) -> dict[int, dict[tuple, list[tuple[Any, Any]]]]:
    """Per constant weight buffer of an object-API ``model`` read by :data:`PACKED_WEIGHT_OPS`:
    its readers (subgraph, op) grouped by their input's and output's quantization.

    XNNPACK packs an int8 product's requantization scales (input scale x weight scale / output
    scale) with its weights, and its weight cache packs a buffer once for all its readers: a
    buffer with readers in more than one group computes wrong for some of them through the cache.
    """
    readers: dict[int, dict[tuple, list[tuple[Any, Any]]]] = {}
    for sg_index, op, weights in packed_weight_reads(model):
        graph = model.subgraphs[sg_index]
        key = (quantization_key(graph.tensors[op.inputs[0]]), quantization_key(graph.tensors[op.outputs[0]]))
        readers.setdefault(weights.buffer, {}).setdefault(key, []).append((graph, op))
    return readers


def weight_cache_safe(content: bytes) -> bool:
    """Whether every weight buffer of a ``.tflite`` file is read by products quantized alike
    (see :func:`weight_readers`), so XNNPACK's weight cache computes what the file says."""
    model = schema().ModelT.InitFromPackedBuf(content, 0)
    return all(len(groups) == 1 for groups in weight_readers(model).values())
