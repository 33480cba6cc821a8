"""Static int8 ONNX: each Q/DQ pair's own scale and zero point keep ONNX Runtime from merging the
pairs of a tensor that two convolutions read, so both fuse into ``QLinearConv``; one
``QuantizeLinear`` per tensor lets its producer fuse too; the LSTMs get int8 weights."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_graphs import run, save_graph  # noqa: E402 - needs onnx and onnxruntime, skipped above


def two_readers(path: Path) -> None:
    """x [1, 4, 8, 8] -> two 3x3 convolutions of x -> their sum."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}") for i in (0, 1)]
    nodes = [helper.make_node("Conv", ["x", f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1], name=f"conv{i}") for i in (0, 1)]
    nodes.append(helper.make_node("Add", ["y0", "y1"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "two_readers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    save_graph(graph, path)


def optimized_ops(path: Path, tmp_path: Path) -> list[str]:
    """Op types of ONNX Runtime's optimized graph of ``path`` (default session options)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]


def quantized_conv_graph(build: Any, tmp_path: Path) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """``build``'s x [1, 4, 8, 8] graph as static int8 (``int8.onnx`` beside ``fp32.onnx``,
    calibrated on 4 random feeds): ONNX Runtime's optimized op types, and the feeds."""
    from storyedge.export.onnx_quantize import to_int8_static

    build(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(1)
    feeds = [{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)} for _ in range(4)]
    to_int8_static(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds, "minmax")
    return optimized_ops(tmp_path / "int8.onnx", tmp_path), feeds


def test_a_tensor_read_by_two_convolutions_fuses_into_both(tmp_path: Path) -> None:
    ops, feeds = quantized_conv_graph(two_readers, tmp_path)
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
    got, want = run(tmp_path / "int8.onnx", feeds[0])[0], run(tmp_path / "fp32.onnx", feeds[0])[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()  # int8 noise, not a different graph


def relu_then_two_readers(path: Path) -> None:
    """x [1, 4, 8, 8] -> conv -> relu -> two 3x3 convolutions of it -> their sum."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), f"w{i}") for i in range(3)]
    nodes = [helper.make_node("Conv", ["x", "w2"], ["a"], pads=[1, 1, 1, 1], name="stem"),
             helper.make_node("Relu", ["a"], ["r"], name="relu")]
    nodes += [helper.make_node("Conv", ["r", f"w{i}"], [f"y{i}"], pads=[1, 1, 1, 1], name=f"conv{i}") for i in (0, 1)]
    nodes.append(helper.make_node("Add", ["y0", "y1"], ["y"], name="add"))
    graph = helper.make_graph(nodes, "relu_two_readers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], weights)
    save_graph(graph, path)


def test_the_producer_of_a_tensor_two_convolutions_read_fuses_too(tmp_path: Path) -> None:
    from storyedge.export.onnx_quantize import share_quantize_nodes

    ops, feeds = quantized_conv_graph(relu_then_two_readers, tmp_path)
    assert ops.count("QLinearConv") == 3 and "Conv" not in ops and "Transpose" not in ops, ops
    model = onnx.load(str(tmp_path / "int8.onnx"))
    assert [n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"].count("r") == 1
    assert share_quantize_nodes(model) == 0  # already one per tensor
    got, want = run(tmp_path / "int8.onnx", feeds[0])[0], run(tmp_path / "fp32.onnx", feeds[0])[0]
    assert np.abs(got - want).max() < 0.05 * np.abs(want).max()


def test_share_quantize_nodes_keeps_different_scales_apart() -> None:
    from onnx import TensorProto, helper, numpy_helper

    from storyedge.export.onnx_quantize import share_quantize_nodes

    inits = [numpy_helper.from_array(np.array(s, np.float32), f"s{i}") for i, s in enumerate((0.1, 0.1, 0.2))]
    inits.append(numpy_helper.from_array(np.array(0, np.int8), "z"))
    nodes = [helper.make_node("QuantizeLinear", ["x", f"s{i}", "z"], [f"q{i}"], name=f"q{i}") for i in range(3)]
    nodes += [helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", "z"], [f"d{i}"], name=f"d{i}") for i in range(3)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, [2]) for i in range(3)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert share_quantize_nodes(model) == 1
    quants = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quants == ["q0", "q2"]  # 0.1 twice: one node; 0.2 stays its own
    dequant_inputs = {n.name: n.input[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    assert dequant_inputs == {"d0": "q0", "d1": "q0", "d2": "q2"}
    assert "s1" in {i.name for i in model.graph.initializer}  # d1 still reads its own scale


def one_lstm(path: Path) -> None:
    """x [T=5, B=1, 8] -> LSTM (hidden 16) -> Y."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    arrays = {"W": rng.standard_normal((1, 64, 8)) * 0.3, "R": rng.standard_normal((1, 64, 16)) * 0.3,
              "B": rng.standard_normal((1, 128)) * 0.1}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    node = helper.make_node("LSTM", ["x", "W", "R", "B"], ["Y"], hidden_size=16, name="lstm")
    graph = helper.make_graph([node], "lstm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [5, 1, 8])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [5, 1, 1, 16])], inits)
    save_graph(graph, path)


@pytest.mark.parametrize("contrib_ops", [True, False])
def test_static_int8_lstms_take_int8_weights_unless_portable(tmp_path: Path, contrib_ops: bool) -> None:
    from storyedge.export.onnx_quantize import to_int8_static

    one_lstm(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(3)
    feeds = [{"x": rng.standard_normal((5, 1, 8)).astype(np.float32)} for _ in range(4)]
    to_int8_static(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds, "minmax", contrib_ops=contrib_ops)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    ops = [(n.domain, n.op_type) for n in model.graph.node]
    if contrib_ops:
        assert ("com.microsoft", "DynamicQuantizeLSTM") in ops and ("", "LSTM") not in ops, ops
        weights = [i for i in model.graph.initializer if i.data_type == onnx.TensorProto.INT8]
        assert sorted(tuple(w.dims) for w in weights if len(w.dims) == 3) == [(1, 8, 64), (1, 16, 64)]
    else:
        assert ("", "LSTM") in ops and all(op != "DynamicQuantizeLSTM" for _, op in ops), ops
    got, want = run(tmp_path / "int8.onnx", feeds[0])[0], run(tmp_path / "fp32.onnx", feeds[0])[0]
    assert np.abs(got - want).max() < (0.05 if contrib_ops else 1e-6)
