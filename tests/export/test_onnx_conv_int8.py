"""Dynamic int8 convolutions as patch products: the rewritten graph computes the float
convolution (3x3 / 1x1, strided, asymmetric 'same' padding, with and without bias) to within its
8-bit quantization, ONNX Runtime runs it on its fused integer kernel, and what cannot be rewritten
is left float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_graphs import run, save_graph  # noqa: E402 - needs onnx and onnxruntime, skipped above

from storyedge.export.onnx_conv_int8 import (  # noqa: E402
    MIN_PATCH,
    WEIGHT_QMAX,
    convs_to_int8,
    int8_convs_in_file,
    quantize_weights,
)

#: (name, out channels, kernel, strides, pads top/left/bottom/right, bias): the seed CNN's kinds
CONVS = (
    ("same", 24, 3, 1, (1, 1, 1, 1), False),
    ("strided", 24, 3, 2, (0, 0, 1, 1), True),  # TF 'same' at stride 2 pads after only
    ("shortcut", 24, 1, 2, (0, 0, 0, 0), False),
    ("pointwise", 24, 1, 1, (0, 0, 0, 0), True),
)
CHANNELS, SIZE = MIN_PATCH, 10  # the 1x1 convolutions read just enough channels


def conv_graph(path: Path, convs=CONVS, channels: int = CHANNELS, group: int = 1, size: int | str = SIZE) -> None:
    """x [2, channels, size, size] -> one Conv per entry of ``convs``, each a graph output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits, outputs = [], [], []
    for name, out, k, stride, pads, bias in convs:
        inits.append(numpy_helper.from_array(
            (rng.standard_normal((out, channels // group, k, k)) * 0.1).astype(np.float32), f"{name}_w"))
        inputs = ["x", f"{name}_w"]
        if bias:
            inits.append(numpy_helper.from_array(rng.standard_normal(out).astype(np.float32), f"{name}_b"))
            inputs.append(f"{name}_b")
        nodes.append(helper.make_node("Conv", inputs, [name], kernel_shape=[k, k], strides=[stride, stride],
                                      pads=list(pads), group=group, name=name))
        side = (size - 1) // stride + 1 if isinstance(size, int) else "out"
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [2, out, side, side]))
    graph = helper.make_graph(nodes, "convs", [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, [2, channels, size, size])], outputs, inits)
    save_graph(graph, path)


def test_rewritten_convolutions_compute_the_float_ones(tmp_path: Path) -> None:
    conv_graph(tmp_path / "fp32.onnx")
    model = onnx.load(str(tmp_path / "fp32.onnx"))
    assert sorted(convs_to_int8(model)) == sorted(c[0] for c in CONVS)
    onnx.checker.check_model(model)
    onnx.save(model, str(tmp_path / "int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert "Conv" not in ops and ops.count("DynamicQuantizeLinear") == 1  # x quantized once for its 4 readers
    x = np.random.default_rng(1).standard_normal((2, CHANNELS, SIZE, SIZE)).astype(np.float32)
    expected, got = run(tmp_path / "fp32.onnx", {"x": x}), run(tmp_path / "int8.onnx", {"x": x})
    for (name, out, k, stride, _, _), want, have in zip(CONVS, expected, got):
        rows = (SIZE - 1) // stride + 1
        assert have.shape == want.shape == (2, out, rows, rows), name
        # 8-bit activations and 7-bit weights: ~1-2 % of the output's range, far below a wrong tap
        assert np.abs(have - want).max() < 0.03 * np.abs(want).max(), name


def test_onnx_runtime_runs_them_on_its_integer_kernel(tmp_path: Path) -> None:
    conv_graph(tmp_path / "fp32.onnx")
    int8_convs_in_file(tmp_path / "fp32.onnx")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "fp32.onnx"), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
    # MatMulInteger -> Cast -> Mul fused: the product's int32 result is never materialized
    assert ops.count("MatMulIntegerToFloat") == len(CONVS) and "MatMulInteger" not in ops and "Cast" not in ops


def test_the_patches_gather_each_outputs_taps_in_weight_order() -> None:
    from storyedge.export.onnx_conv_int8 import _patch_pixels

    # a 4x5 grid, 3x3 kernel, stride 2 rows / 1 column: 1 x 3 outputs
    pixels = _patch_pixels(4, 5, 3, 3, 2, 1).reshape(1, 3, 3, 3)
    assert pixels[0, 0].tolist() == [[0, 1, 2], [5, 6, 7], [10, 11, 12]]
    assert pixels[0, 2].tolist() == [[2, 3, 4], [7, 8, 9], [12, 13, 14]]
    assert _patch_pixels(5, 5, 1, 1, 2, 2).tolist() == [0, 2, 4, 10, 12, 14, 20, 22, 24]


def test_weights_are_7_bit_per_output_channel() -> None:
    weight = np.random.default_rng(2).standard_normal((8, 4, 3, 3)).astype(np.float32)
    weight[3] = 0.0  # a dead channel keeps a usable scale
    quantized, scales = quantize_weights(weight)
    assert quantized.shape == (36, 8) and quantized.dtype == np.int8 and scales.shape == (8,)
    assert np.abs(quantized).max() == WEIGHT_QMAX and not quantized[:, 3].any() and scales[3] == 1.0
    restored = (quantized * scales).reshape(3, 3, 4, 8).transpose(3, 2, 0, 1)
    assert np.abs(restored - weight).max() <= scales.max() / 2 + 1e-7


def test_what_cannot_be_rewritten_stays_float(tmp_path: Path) -> None:
    narrow = (("rgb_stem", 8, 3, 2, (0, 0, 1, 1), False),)  # 3 x 3 x 3 = 27 < MIN_PATCH inputs
    assert 3 * 9 < MIN_PATCH <= CHANNELS * 9
    conv_graph(tmp_path / "stem.onnx", narrow, channels=3)
    conv_graph(tmp_path / "grouped.onnx", CONVS[:1], group=2)
    conv_graph(tmp_path / "any_size.onnx", CONVS[:1], size="side")  # the patch indices need the grid
    conv_graph(tmp_path / "computed_bias.onnx", CONVS[1:2])
    computed = onnx.load(str(tmp_path / "computed_bias.onnx"))
    bias = computed.graph.initializer.pop()  # the bias becomes an input the graph computes
    computed.graph.input.append(onnx.helper.make_tensor_value_info(bias.name, onnx.TensorProto.FLOAT, [24]))
    onnx.save(computed, str(tmp_path / "computed_bias.onnx"))
    for name in ("stem", "grouped", "any_size", "computed_bias"):
        model = onnx.load(str(tmp_path / f"{name}.onnx"))
        assert convs_to_int8(model) == [] and [n.op_type for n in model.graph.node] == ["Conv"], name
