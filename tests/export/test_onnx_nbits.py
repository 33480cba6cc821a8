"""An int8-dynamic ONNX decoder step: its one-row products become 8-bit ``MatMulNBits`` (int8
compute) where the block divides their input dim; the others keep ``quantize_dynamic``'s form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx_graphs import run, save_graph  # noqa: E402 - needs onnx and onnxruntime, skipped above


def step_like(path: Path) -> None:
    """x [1, 256] -> MatMul [256, 512] -> Tanh -> Gemm [512, 2000] (+ bias) = logits; u [1, 96] ->
    MatMul [96, 64] = side (96: no block divides it)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    arrays = {"w1": rng.standard_normal((256, 512)) * 0.06, "w2": rng.standard_normal((512, 2000)) * 0.05,
              "b2": rng.standard_normal(2000) * 0.1, "w3": rng.standard_normal((96, 64)) * 0.1}
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in arrays.items()]
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"], name="hidden"),
             helper.make_node("Tanh", ["h"], ["t"], name="tanh"),
             helper.make_node("Gemm", ["t", "w2", "b2"], ["logits"], name="logits"),
             helper.make_node("MatMul", ["u", "w3"], ["side"], name="side")]
    graph = helper.make_graph(
        nodes, "step_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256]), helper.make_tensor_value_info("u", TensorProto.FLOAT, [1, 96])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 2000]),
         helper.make_tensor_value_info("side", TensorProto.FLOAT, [1, 64])], inits)
    save_graph(graph, path)


@pytest.mark.parametrize("decoder_step", [True, False])
def test_step_products_become_8bit_matmulnbits(tmp_path: Path, decoder_step: bool) -> None:
    from storyedge.export.onnx_export import quantize_onnx_dynamic
    from storyedge.export.onnx_quantize import NBITS_ACCURACY_LEVEL

    step_like(tmp_path / "fp32.onnx")
    quantize_onnx_dynamic(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", decoder_step=decoder_step)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    nbits = {n.name: {a.name: a.i for a in n.attribute} for n in model.graph.node if n.op_type == "MatMulNBits"}
    ops = [n.op_type for n in model.graph.node]
    if decoder_step:
        # both products whose input dim 128 divides (the largest's K = 512 picks block 128)
        assert len(nbits) == 2 and all(n.domain == "com.microsoft" for n in model.graph.node if n.op_type == "MatMulNBits")
        assert {(a["K"], a["N"]) for a in nbits.values()} == {(256, 512), (512, 2000)}
        assert all(a["bits"] == 8 and a["block_size"] == 128 and a["accuracy_level"] == NBITS_ACCURACY_LEVEL
                   for a in nbits.values())
        assert ops.count("MatMulInteger") == 1  # the 96-wide product: no block divides it
    else:
        assert not nbits and ops.count("MatMulInteger") == 3
    assert not list(tmp_path.glob("*.nbits8.onnx"))  # the staged file is gone
    rng = np.random.default_rng(1)
    feeds = {"x": rng.standard_normal((1, 256)).astype(np.float32), "u": rng.standard_normal((1, 96)).astype(np.float32)}
    got, want = run(tmp_path / "int8.onnx", feeds), run(tmp_path / "fp32.onnx", feeds)
    for g, w in zip(got, want):
        assert np.abs(g - w).max() < 0.03 * np.abs(w).max()


def test_no_block_divides_the_largest_product(tmp_path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    from storyedge.export.onnx_quantize import step_products_to_nbits8

    w = numpy_helper.from_array(np.ones((40, 8), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="p")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 40])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])], [w])
    save_graph(graph, tmp_path / "a.onnx")
    assert step_products_to_nbits8(tmp_path / "a.onnx", tmp_path / "b.onnx") == ["p"]
    assert [n.op_type for n in onnx.load(str(tmp_path / "b.onnx")).graph.node] == ["MatMul"]


@pytest.mark.parametrize("contrib_ops", [True, False])
def test_static_int8_step_products(tmp_path: Path, contrib_ops: bool) -> None:
    """A static-int8 step: with contrib ops its one-row products are MatMulNBits too, and only
    what the block cannot take stays QDQ; ``--portable`` keeps every product QDQ."""
    from storyedge.export.onnx_quantize import to_int8_static

    step_like(tmp_path / "fp32.onnx")
    rng = np.random.default_rng(4)
    feeds = [{"x": rng.standard_normal((1, 256)).astype(np.float32), "u": rng.standard_normal((1, 96)).astype(np.float32)}
             for _ in range(4)]
    to_int8_static(tmp_path / "fp32.onnx", tmp_path / "int8.onnx", feeds, "minmax", float_state=True,
                   contrib_ops=contrib_ops)
    model = onnx.load(str(tmp_path / "int8.onnx"))
    producer = {o: n for n in model.graph.node for o in n.output}
    nbits = [{a.name: a.i for a in n.attribute} for n in model.graph.node if n.op_type == "MatMulNBits"]
    qdq = [n for n in model.graph.node if n.op_type == "MatMul"
           and all(getattr(producer.get(i), "op_type", "") == "DequantizeLinear" for i in n.input)]
    if contrib_ops:
        assert sorted((a["K"], a["bits"]) for a in nbits) == [(256, 8), (512, 8)]
        assert [n.input[1] for n in qdq] and len(qdq) == 1  # the 96-wide product
    else:
        assert not nbits and len(qdq) == 3
    assert not list(tmp_path.glob("*.prep.onnx"))
    got, want = run(tmp_path / "int8.onnx", feeds[0]), run(tmp_path / "fp32.onnx", feeds[0])
    for g, w in zip(got, want):
        assert np.abs(g - w).max() < 0.05 * np.abs(w).max()
