"""Static int8 ONNX: each Q/DQ pair's own scale and zero point keep ONNX Runtime from merging the
pairs of a tensor that two convolutions read, so both fuse into ``QLinearConv``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")


def two_readers(path: Path) -> None:
    """x [1, 4, 8, 8] -> two 3x3 convolutions of x -> their sum."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}") for i in (0, 1)]
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1], name=f"conv{i}") for i in (0, 1)]
    nodes.append(helper.make_node("Add", ["y0", "y1"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "two_readers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def optimized_ops(path: Path, tmp_path: Path) -> list[str]:
    """Op types of ONNX Runtime's optimized graph of ``path`` (default session options)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def test_a_tensor_read_by_two_convolutions_fuses_into_both(tmp_path: Path) -> None:
    from storyedge.export.onnx_quantize import to_int8_static

    two_readers(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(4)]
    to_int8_static(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds, "minmax")
    ops = optimized_ops(tmp_path / "int8.onnx", tmp_path)
    assert ops.count("QLinearConv") == 2 and "Conv" not in ops, ops
    model = onnx.load(str(tmp_path / "int8.onnx"))
    # the pair in front of each convolution's x reads a scale and zero point no other node reads
    producer = {out: n for n in model.graph.node for out in n.output}
    readers: dict[str, int] = {}
    for n in model.graph.node:
        for name in n.input:
            readers[name] = readers.get(name, 0) + 1
    for conv in (n for n in model.graph.node if n.op_type == "Conv"):
        dq = producer[conv.input[0]]
        quant = producer[dq.input[0]]
        assert (dq.op_type, quant.op_type, quant.input[0]) == ("DequantizeLinear", "QuantizeLinear", "x")
        assert all(readers[name] == 1 for name in [*dq.input[1:], *quant.input[1:]]), conv.name
    session = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    reference = ort.InferenceSession(str(tmp_path / "fp32.onnx"), providers=["CPUExecutionProvider"])
    got, want = session.run(None, feeds[0])[0], reference.run(None, feeds[0])[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # int8 noise, not a different graph
