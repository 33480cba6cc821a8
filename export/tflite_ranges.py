"""Calibrated ranges and weight buffers of a full-int8 TFLite file.

Before ``mlir_quantize`` turns the ranges into scales and zero points: :func:`table_ranges` gives
a lookup in a constant table the whole table's range (one int8 copy of the shared embedding);
:func:`shared_weight_ranges` gives the products that read the same weights one input range and
one output range. After it, :func:`separate_disagreeing_weights` gives each quantization of a
shared weight that still differs (the quantizer ties some tensors' scales together on its own)
a buffer of its own.

Why: XNNPACK packs an int8 product's requantization scales (input scale x weight scale / output
scale, per channel) with its weights, and its weight cache (LiteRT's ``CompiledModel`` keeps one
in memory) packs each weight buffer once for every op that reads it. Readers quantized
differently then computed with one packing: the steps of an LSTM loop body, whose inputs and
outputs each had a range of their own, put a trained encoder's ``h0`` off by 1.8 of 1.0 (the
``Interpreter``, without the cache, was right). Unifying the inputs' ranges alone left it wrong;
the outputs' too made the two runtimes agree bit for bit.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any

import numpy as np

from storyedge.tflite_schema import builtin_names, builtin_op_name, constant_data, packed_weight_reads, weight_readers

#: (subgraph, tensor) -> observed [min, max]
Ranges = dict[tuple[int, int], list[float]]
#: Ops TFLite's quantizer gives one scale for their data inputs and their outputs (it moves values,
#: or picks among them, without arithmetic).
SAME_SCALE_OPS = frozenset({
    "CONCATENATION", "GATHER", "MAXIMUM", "MINIMUM", "PACK", "RESHAPE", "SELECT", "SELECT_V2", "SLICE",
    "SQUEEZE", "EXPAND_DIMS", "STRIDED_SLICE", "SPLIT", "TRANSPOSE", "UNPACK", "PAD", "TILE", "BROADCAST_TO",
})
#: The data inputs of :data:`SAME_SCALE_OPS` other than input 0 alone.
SAME_SCALE_INPUTS = {"CONCATENATION": slice(None), "PACK": slice(None), "MAXIMUM": slice(None),
                     "MINIMUM": slice(None), "SELECT": slice(1, 3), "SELECT_V2": slice(1, 3), "SPLIT": slice(1, 2)}


def table_ranges(model: Any, schema: Any, ranges: Ranges) -> None:
    """A ``GATHER`` from a constant float table (the shared token embedding) gets the whole
    table's range, not the range of the rows the samples happened to look up.

    The quantizer gives the table the range of the gather's output, so with observed ranges
    each lookup (captions, reason, decoder token) gets its own int8 copy of the embedding
    (3 x 9.2 MB at the seed size). With one range the copies are byte-identical and buffer
    de-duplication keeps one.
    """
    names = builtin_names()
    for sg_index, graph in enumerate(model.subgraphs):
        for op in graph.operators or []:
            if builtin_op_name(model, op, names) != "GATHER" or op.inputs is None or len(op.inputs) < 1:
                continue
            table = graph.tensors[op.inputs[0]]
            data = constant_data(model, table)
            if table.type != schema.TensorType.FLOAT32 or data is None:
                continue
            values = np.frombuffer(bytes(np.asarray(data, np.uint8)), dtype=np.float32)
            for out in op.outputs:
                if (sg_index, out) in ranges:
                    ranges[(sg_index, out)] = [float(values.min()), float(values.max())]


def shared_weight_groups(model: Any) -> list[list[tuple[int, int]]]:
    """Tensors (subgraph, index) that products over the same constant weights must quantize
    alike: for each weight read by more than one op (e.g. an LSTM's recurrent kernel at each step
    a loop body unrolls, or a layer every signature of a multi-graph file runs), its readers'
    inputs, and their outputs. Weights are matched by content, as the buffer de-duplication
    after quantization merges them."""
    readers: dict[tuple[bytes, tuple[int, ...]], list[tuple[int, Any]]] = {}
    for sg_index, op, weights in packed_weight_reads(model):
        data = bytes(np.asarray(constant_data(model, weights), np.uint8))
        readers.setdefault((hashlib.sha1(data).digest(), tuple(weights.shape)), []).append((sg_index, op))
    groups = []
    for ops in readers.values():
        if len(ops) > 1:
            groups.append(sorted({(sg, int(op.inputs[0])) for sg, op in ops}))
            groups.append(sorted({(sg, int(op.outputs[0])) for sg, op in ops}))
    return [group for group in groups if len(group) > 1]


def quantizer_ties(model: Any) -> list[list[tuple[int, int]]]:
    """Tensors the quantizer gives one scale whatever their ranges: the operands and results of
    ops that keep their input's scale (:data:`SAME_SCALE_OPS`, by :data:`SAME_SCALE_INPUTS`),
    and per value a ``WHILE`` carries its operand and result in the calling graph, the matching
    inputs of the loop's condition and body and output of its body. It picks one of their ranges
    for all, so a product's input or output tied to another tensor takes that one's range."""
    names = builtin_names()
    groups = []
    for sg_index, graph in enumerate(model.subgraphs):
        for op in graph.operators or []:
            name = builtin_op_name(model, op, names)
            if name == "WHILE":
                cond, body = op.builtinOptions.condSubgraphIndex, op.builtinOptions.bodySubgraphIndex
                for i, operand in enumerate(op.inputs):
                    groups.append([(sg_index, int(operand)), (sg_index, int(op.outputs[i])),
                                   (cond, int(model.subgraphs[cond].inputs[i])),
                                   (body, int(model.subgraphs[body].inputs[i])),
                                   (body, int(model.subgraphs[body].outputs[i]))])
            elif name in SAME_SCALE_OPS:
                inputs = list(op.inputs)[SAME_SCALE_INPUTS.get(name, slice(0, 1))]
                groups.append([(sg_index, int(t)) for t in [*inputs, *op.outputs] if t >= 0])
    return groups


def shared_weight_ranges(model: Any, ranges: Ranges) -> int:
    """Give the tensors of each :func:`shared_weight_groups` group one range, the union of theirs,
    together with every tensor :func:`quantizer_ties` binds to them (transitively); returns how
    many tensors changed. Ties that reach no shared weight are left to the quantizer."""
    parent: dict[tuple[int, int], tuple[int, int]] = {}

    def root(key: tuple[int, int]) -> tuple[int, int]:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    weight_groups = shared_weight_groups(model)
    for group in weight_groups + quantizer_ties(model):
        members = [key for key in group if key in ranges and np.isfinite(ranges[key]).all()]
        for key in members[1:]:
            parent[root(key)] = root(members[0])
    shared = {root(key) for group in weight_groups for key in group if key in parent}
    components: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for key in parent:
        if root(key) in shared:
            components.setdefault(root(key), []).append(key)
    changed = 0
    for keys in components.values():
        union = [min(ranges[k][0] for k in keys), max(ranges[k][1] for k in keys)]
        for k in keys:
            changed += ranges[k] != union
            ranges[k] = list(union)
    return changed


def separate_disagreeing_weights(model: Any) -> int:
    """In a quantized ``ModelT``: where the readers of one weight buffer differ in their input or
    output quantization (:func:`~storyedge.tflite_schema.weight_readers`), every way of quantizing
    them after the first gets its own copy of the buffer (so a weight cache packs each
    separately); returns how many copies were added."""
    copies = 0
    for buffer, by_quantization in weight_readers(model).items():
        for ops in list(by_quantization.values())[1:]:
            model.buffers.append(copy.deepcopy(model.buffers[buffer]))
            for graph, op in ops:
                tensor = copy.deepcopy(graph.tensors[op.inputs[1]])
                tensor.buffer = len(model.buffers) - 1
                graph.tensors.append(tensor)
                op.inputs = [int(i) for i in op.inputs]  # the unpacked vector is read-only
                op.inputs[1] = len(graph.tensors) - 1
            copies += 1
    return copies
