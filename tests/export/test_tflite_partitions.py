"""storyedge.export.tflite_partitions: full-int8 loop bodies gather before they quantize, and
gather first, so XNNPACK runs each caption Bi-LSTM body as one partition; outputs unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

litert = pytest.importorskip("ai_edge_litert.interpreter")

from storyedge.export.tflite_loops import subgraph_model  # noqa: E402
from storyedge.export.tflite_partitions import gather_before_quantize, gathers_first  # noqa: E402
from storyedge.tflite_schema import builtin_names, builtin_op_name, pack_model, schema  # noqa: E402

ROWS, WIDTH = 6, 5
SCALE, ZERO_POINT = 0.02, 3


def _quantize_then_gather(second_reader: bool = False) -> object:
    """A ``ModelT``: x float [ROWS, WIDTH] -> QUANTIZE (int8) -> GATHER row i -> DEQUANTIZE ->
    y; ``second_reader``: the int8 array is also dequantized into a second output."""
    s = schema()
    codes = {}

    def code(name: str) -> int:
        if name not in codes:
            op_code = s.OperatorCodeT()
            op_code.builtinCode = getattr(s.BuiltinOperator, name)
            op_code.deprecatedBuiltinCode = min(op_code.builtinCode, 127)
            op_code.version = 1
            codes[name] = (len(codes), op_code)
        return codes[name][0]

    def tensor(name: str, shape: list[int], kind: int, quantized: bool = False) -> object:
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name.encode(), shape, kind, 0
        if quantized:
            t.quantization = s.QuantizationParametersT()
            t.quantization.scale, t.quantization.zeroPoint = [SCALE], [ZERO_POINT]
        return t

    def op(name: str, inputs: list[int], outputs: list[int]) -> object:
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = code(name), inputs, outputs
        if name == "GATHER":
            o.builtinOptionsType = s.BuiltinOptions.GatherOptions
            o.builtinOptions = s.GatherOptionsT()
            o.builtinOptions.axis = 0
        return o

    f32, i8, i32 = s.TensorType.FLOAT32, s.TensorType.INT8, s.TensorType.INT32
    graph = s.SubGraphT()
    graph.tensors = [tensor("x", [ROWS, WIDTH], f32), tensor("i", [], i32), tensor("x_q", [ROWS, WIDTH], i8, True),
                     tensor("row_q", [WIDTH], i8, True), tensor("y", [WIDTH], f32), tensor("all", [ROWS, WIDTH], f32)]
    graph.operators = [op("QUANTIZE", [0], [2]), op("GATHER", [2, 1], [3]), op("DEQUANTIZE", [3], [4])]
    graph.inputs, graph.outputs = [0, 1], [4]
    if second_reader:
        graph.operators.append(op("DEQUANTIZE", [2], [5]))
        graph.outputs = [4, 5]
    model = s.ModelT()
    model.version, model.subgraphs, model.buffers = 3, [graph], [s.BufferT()]
    model.operatorCodes = [c for _, c in sorted(codes.values(), key=lambda kv: kv[0])]
    return model


def _run(model: object, x: np.ndarray, row: int) -> list[np.ndarray]:
    interpreter = litert.Interpreter(model_content=pack_model(model))
    interpreter.allocate_tensors()
    inputs = interpreter.get_input_details()
    interpreter.set_tensor(inputs[0]["index"], x)
    interpreter.set_tensor(inputs[1]["index"], np.array(row, np.int32))
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _op_names(model: object) -> list[str]:
    names = builtin_names()
    return [builtin_op_name(model, op, names) for op in model.subgraphs[0].operators]


def test_a_gather_reads_the_float_rows_and_only_its_row_is_quantized() -> None:
    before, after = _quantize_then_gather(), _quantize_then_gather()
    assert gather_before_quantize(after) == 1
    assert _op_names(after) == ["GATHER", "QUANTIZE", "DEQUANTIZE"]
    gather, quantize = after.subgraphs[0].operators[:2]
    assert list(gather.inputs)[0] == 0  # the float input
    assert list(quantize.outputs) == [3]  # the gather's old int8 output, its quantization unchanged
    x = np.random.default_rng(0).normal(0, 1.5, (ROWS, WIDTH)).astype(np.float32)  # some saturate
    for row in range(ROWS):
        (want,), (got,) = _run(before, x, row), _run(after, x, row)
        np.testing.assert_array_equal(got, want)
        assert np.unique(got).size > 1


def test_a_quantized_array_with_another_reader_is_left_alone() -> None:
    model = _quantize_then_gather(second_reader=True)
    assert gather_before_quantize(model) == 0
    assert _op_names(model) == ["QUANTIZE", "GATHER", "DEQUANTIZE", "DEQUANTIZE"]


def test_gathers_and_what_they_read_go_first() -> None:
    model = _quantize_then_gather(second_reader=True)
    graph = model.subgraphs[0]
    graph.operators = [graph.operators[3], *graph.operators[:3]]  # an unrelated op first
    assert gathers_first(model) > 0
    assert _op_names(model) == ["QUANTIZE", "GATHER", "DEQUANTIZE", "DEQUANTIZE"]
    # the rest keep their order after them: the unrelated op, then the gathered row's reader
    assert [list(op.outputs) for op in graph.operators] == [[2], [3], [5], [4]]


INT8_FILES = ["encoder.int8.tflite", "multi.int8.tflite", "story.int8.tflite"]


@pytest.mark.parametrize("name", INT8_FILES)
def test_no_gather_reads_a_quantized_copy_of_a_float_array(full_export: Path, name: str) -> None:
    s, names = schema(), builtin_names()
    model = s.ModelT.InitFromPackedBuf((full_export / "tflite" / name).read_bytes(), 0)
    gathers = 0
    for graph in model.subgraphs:
        producers = {int(t): op for op in graph.operators for t in op.outputs}
        for op in graph.operators:
            if builtin_op_name(model, op, names) == "GATHER":
                gathers += 1
                source = producers.get(int(op.inputs[0]))
                assert source is None or builtin_op_name(model, source, names) != "QUANTIZE"
    assert gathers >= 2  # the Bi-LSTM bodies read their chunks


@pytest.mark.parametrize("name", INT8_FILES)
def test_each_caption_loop_body_runs_as_one_xnnpack_partition(full_export: Path, name: str) -> None:
    s = schema()
    model = s.ModelT.InitFromPackedBuf((full_export / "tflite" / name).read_bytes(), 0)
    bodies = [i for i, g in enumerate(model.subgraphs)
              if g.name.startswith(b"caption_encoder") and g.name.endswith(b"_body")]
    assert len(bodies) >= 2
    for index in bodies:
        interpreter = litert.Interpreter(model_content=subgraph_model(model, s, index), num_threads=2)
        interpreter.allocate_tensors()
        delegated = [op for op in interpreter._get_ops_details() if op["op_name"] == "DELEGATE"]  # noqa: SLF001
        assert len(delegated) == 1, model.subgraphs[index].name
