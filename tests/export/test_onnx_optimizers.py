"""tf2onnx's optimizer passes without their per-pass protobuf copy (export.onnx_export) convert to
the same graph: the same ops with the same attributes, the same constants, the same outputs."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from storyedge.export import onnx_export as ox  # noqa: E402


def _feeds(session: "ort.InferenceSession") -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for value in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in value.shape]
        feeds[value.name] = (rng.integers(1, 40, shape).astype(np.int32) if "int" in value.type
                             else rng.random(shape, dtype=np.float32))
    return feeds


def _ops(proto) -> list[tuple[str, str, list[bytes]]]:
    """Every node's op, domain and attributes (the topological order may differ)."""
    return sorted((n.op_type, n.domain, [a.SerializeToString() for a in n.attribute]) for n in proto.graph.node)


def _constants(proto) -> list[tuple[tuple[int, ...], bytes]]:
    arrays = [onnx.numpy_helper.to_array(t) for t in proto.graph.initializer]
    return sorted((a.shape, a.tobytes()) for a in arrays)


@pytest.mark.parametrize("graph", ["encoder", "decoder_step"])
def test_optimizers_without_proto_sync_convert_to_the_same_graph(export_env, graph: str, monkeypatch) -> None:
    from storyedge.run_dir import load_bundle

    model = load_bundle(export_env.run_dir).model
    fast = ox.convert_onnx(model, graph, 1, 17)
    monkeypatch.setattr(ox, "optimizers_without_proto_sync", contextlib.nullcontext)
    synced = ox.convert_onnx(model, graph, 1, 17)
    assert _ops(fast) == _ops(synced)
    assert _constants(fast) == _constants(synced)
    a, b = (ort.InferenceSession(p.SerializeToString(), providers=["CPUExecutionProvider"]) for p in (fast, synced))
    feeds = _feeds(a)
    for x, y in zip(a.run(None, feeds), b.run(None, feeds)):
        np.testing.assert_array_equal(x, y)


def test_the_optimizers_get_their_own_method_back() -> None:
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    original = GraphOptimizerBase.optimize
    with pytest.raises(RuntimeError), ox.optimizers_without_proto_sync():
        assert GraphOptimizerBase.optimize is not original
        raise RuntimeError("a failed conversion")
    assert GraphOptimizerBase.optimize is original
