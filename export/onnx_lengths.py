"""The padding-exact Bi-LSTMs' ONNX ``LSTM`` nodes run each row for its real tokens only.

tf2onnx turns each direction of a :class:`~storyedge.model.layers.CaptionEncoder` into one
``LSTM`` node over the whole padded length, its optional ``sequence_lens`` input left empty. The
model never reads a direction's output at padding (the forward direction reads the real tokens
in order, the backward one the real tokens reversed to the front: both are a prefix of the row),
so giving the node each row's real-token count changes no output the graph computes: ONNX
Runtime's LSTM then stops every row at its length (outputs after it zero) and the batch after
the longest, as the TFLite loops do (:func:`storyedge.export.graphs.length_bounded_direction`).

A Bi-LSTM node is one whose input ``X`` depends on exactly one graph input and that input is a
token sequence (int32, rank ≥ 2: ``captions`` [B, k, L], ``caption`` [B, L], ``reason`` [B, R]);
the temporal LSTM depends on the frames as well and stays as it is. The lengths are computed in
the graph from that input (non-pad tokens per row, flattened to the node's batch in the order the
model folds it), at least 1: an all-pad row runs one step whose outputs the model masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: name prefix of the nodes and tensors added here
PREFIX = "storyedge_real_tokens"


def token_inputs(graph: Any) -> list[str]:
    """The graph inputs that are token sequences (int32, rank ≥ 2)."""
    import onnx  # lazy: onnx is a heavy optional runtime

    return [v.name for v in graph.input
            if v.type.tensor_type.elem_type == onnx.TensorProto.INT32 and len(v.type.tensor_type.shape.dim) >= 2]


def _graph_inputs_of(graph: Any) -> dict[str, frozenset[str]]:
    """For every tensor of ``graph``, the graph inputs it depends on (initializers are not inputs)."""
    inputs = {v.name for v in graph.input} - {i.name for i in graph.initializer}
    depends: dict[str, frozenset[str]] = {name: frozenset({name}) for name in inputs}
    for node in graph.node:  # ONNX graphs are topologically sorted
        found = frozenset().union(*(depends.get(name, frozenset()) for name in node.input if name))
        for out in node.output:
            depends[out] = found
    return depends


def _lengths_nodes(tensor: str, pad_id: int) -> tuple[list[Any], list[Any], str]:
    """Nodes computing max(non-pad tokens per row, 1) of ``tensor`` as int32 [rows], their
    initializers and the output name."""
    from onnx import TensorProto, helper, numpy_helper  # lazy: onnx is a heavy optional runtime

    base = f"{PREFIX}_{tensor}"
    consts = [numpy_helper.from_array(np.array(pad_id, np.int32), f"{base}_pad"),
              numpy_helper.from_array(np.array([-1], np.int64), f"{base}_axes"),
              numpy_helper.from_array(np.array([-1], np.int64), f"{base}_rows"),
              numpy_helper.from_array(np.array(1, np.int32), f"{base}_one")]
    out = f"{base}_lengths"
    nodes = [
        helper.make_node("Equal", [tensor, f"{base}_pad"], [f"{base}_is_pad"], name=f"{base}_Equal"),
        helper.make_node("Not", [f"{base}_is_pad"], [f"{base}_is_real"], name=f"{base}_Not"),
        helper.make_node("Cast", [f"{base}_is_real"], [f"{base}_real"], to=TensorProto.INT32, name=f"{base}_Cast"),
        helper.make_node("ReduceSum", [f"{base}_real", f"{base}_axes"], [f"{base}_per_row"], keepdims=0,
                         name=f"{base}_ReduceSum"),
        helper.make_node("Reshape", [f"{base}_per_row", f"{base}_rows"], [f"{base}_flat"], name=f"{base}_Reshape"),
        helper.make_node("Max", [f"{base}_flat", f"{base}_one"], [out], name=f"{base}_Max"),
    ]
    return nodes, consts, out


def bound_bilstm_lengths(proto: Any, pad_id: int) -> dict[str, int]:
    """Give every Bi-LSTM ``LSTM`` node of ``proto`` its rows' real-token counts as
    ``sequence_lens`` (see the module doc), in place; returns, per token input, how many nodes
    got its lengths."""
    graph = proto.graph
    bounded = dict.fromkeys(token_inputs(graph), 0)
    depends = _graph_inputs_of(graph)
    lengths: dict[str, str] = {}
    added: list[Any] = []
    for node in graph.node:
        if node.op_type != "LSTM" or (len(node.input) > 4 and node.input[4]):
            continue
        sources = depends.get(node.input[0], frozenset())
        if len(sources) != 1 or not sources <= bounded.keys():
            continue
        (source,) = sources
        if source not in lengths:
            nodes, consts, lengths[source] = _lengths_nodes(source, pad_id)
            added.extend(nodes)
            graph.initializer.extend(consts)
        while len(node.input) < 5:
            node.input.append("")
        node.input[4] = lengths[source]
        bounded[source] += 1
    # the lengths depend on graph inputs only: computed first, the order stays topological
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(added + old)
    return bounded
