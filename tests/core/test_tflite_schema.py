"""storyedge.tflite_schema: a weight buffer's readers grouped by quantization, and whether a file
is safe for XNNPACK's weight cache (hand-built flatbuffers, no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pytest

from storyedge.tflite_schema import builtin_names, pack_model, schema, weight_cache_safe, weight_readers


def _quantized(sch, scale: float, zero_point: int):
    q = sch.QuantizationParametersT()
    q.scale, q.zeroPoint = [scale], [zero_point]
    return q


def _tensor(sch, name: str, shape: list[int], buffer: int, quantization=None):
    t = sch.TensorT()
    t.name, t.shape, t.type, t.buffer, t.quantization = name.encode(), shape, sch.TensorType.INT8, buffer, quantization
    return t


def _two_readers(second_input_scale: float, second_output_scale: float) -> bytes:
    """x0 -> FC(w) -> y0 and x1 -> FC(w) -> y1 over one int8 weight buffer; the second reader's
    input and output scales as given (the first's are 0.1 and 0.2)."""
    sch = schema()
    code = sch.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = next(k for k, v in builtin_names().items() if v == "FULLY_CONNECTED")
    empty, weights = sch.BufferT(), sch.BufferT()
    weights.data = np.arange(8, dtype=np.int8).view(np.uint8)
    graph = sch.SubGraphT()
    graph.tensors = [
        _tensor(sch, "w", [2, 4], 1, _quantized(sch, 0.05, 0)),
        _tensor(sch, "x0", [1, 4], 0, _quantized(sch, 0.1, 0)),
        _tensor(sch, "y0", [1, 2], 0, _quantized(sch, 0.2, 0)),
        _tensor(sch, "x1", [1, 4], 0, _quantized(sch, second_input_scale, 0)),
        _tensor(sch, "y1", [1, 2], 0, _quantized(sch, second_output_scale, 0)),
    ]
    graph.operators = []
    for x, y in ((1, 2), (3, 4)):
        op = sch.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = 0, [x, 0, -1], [y]
        graph.operators.append(op)
    graph.inputs, graph.outputs = [1, 3], [2, 4]
    model = sch.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [empty, weights]
    return pack_model(model)


def test_readers_quantized_alike_share_one_group_and_are_safe() -> None:
    content = _two_readers(0.1, 0.2)
    groups = weight_readers(schema().ModelT.InitFromPackedBuf(content, 0))
    assert list(groups) == [1] and [len(ops) for ops in groups[1].values()] == [2]
    assert weight_cache_safe(content)


@pytest.mark.parametrize(("input_scale", "output_scale"), [(0.3, 0.2), (0.1, 0.4)])
def test_a_reader_with_its_own_input_or_output_scale_is_not_safe(input_scale: float, output_scale: float) -> None:
    content = _two_readers(input_scale, output_scale)
    groups = weight_readers(schema().ModelT.InitFromPackedBuf(content, 0))
    assert [len(ops) for ops in groups[1].values()] == [1, 1]
    assert not weight_cache_safe(content)
