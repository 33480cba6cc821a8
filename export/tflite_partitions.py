"""Full-int8 TFLite loop bodies laid out so that XNNPACK runs each as one partition.

LiteRT hands XNNPACK the ops it can run in *partitions*, one XNNPACK runtime each, and the
delegate creates every runtime with ``XNN_FLAG_YIELD_WORKERS``: after a partition's last op its
worker threads go to sleep, and the next partition's first parallel op wakes them. A ``WHILE``
body runs its partitions once an iteration. ``GATHER`` (the LSTM body's read of its chunk of
inputs) is not an XNNPACK op, so the body's ops before it and after it fall into two
partitions, and a full-int8 body had two: ``mlir_quantize`` quantizes the whole float input
array *before* the gather (one int8 copy of every chunk, every iteration), so the ``QUANTIZE``,
and the first time step's recurrent product, which needs only the loop's carried state, ran in a
partition of their own ahead of the gather. Two exact rewrites give the caption Bi-LSTM's bodies
one partition:

* :func:`gather_before_quantize`: ``GATHER(QUANTIZE(x), i)`` becomes ``QUANTIZE(GATHER(x, i))``
  (the same int8 values: quantization is element-wise with one scale and zero point, and the
  gather moves elements), so only the chunk is quantized;
* :func:`gathers_first`: every ``GATHER`` and the ops it depends on move to the front of their
  subgraph's operator list (still an order in which every op's inputs come first), so LiteRT's
  partitioner meets them before any XNNPACK op and puts the rest of the body in one partition.

Seed size, LiteRT ``CompiledModel`` with the weight cache, 2 threads, outputs bit-identical
(interleaved A/Bs of the same files): the full-int8 encoders 3-7 % faster back to back (two
runs) and 4-13 % inside captions (three runs; figures in the README's *How the graphs are
converted*); the story-mode graphs, whose loops run one row, no faster. The rewrites run on every
subgraph: the int8 decoder step's embedding gather moves first too, leaving the step one partition
instead of two, with no measurable change (0.4965 -> 0.4954 ms a step).
"""

from __future__ import annotations

import copy
from typing import Any

from storyedge.tflite_schema import builtin_names, builtin_op_name, quantization_key, schema


def one_partition_loop_bodies(model: Any) -> int:
    """Both rewrites (see the module doc) on a quantized ``ModelT``, in place; returns the number
    of changes (gathers rewritten plus ops moved), 0 where the model is as it was."""
    return gather_before_quantize(model) + gathers_first(model)


def gather_before_quantize(model: Any) -> int:
    """Rewrite each ``GATHER`` whose input is a per-tensor ``QUANTIZE`` of a float tensor that no
    other op reads into a gather of the float tensor followed by that quantization; returns how
    many were rewritten."""
    module, names = schema(), builtin_names()
    rewritten = 0
    for graph in model.subgraphs or []:
        producers = {int(t): op for op in graph.operators or [] for t in op.outputs}
        for gather in list(graph.operators or []):
            if builtin_op_name(model, gather, names) != "GATHER":
                continue
            quantize = producers.get(int(gather.inputs[0]))
            if quantize is None or not _movable_quantize(model, graph, quantize, gather, module, names):
                continue
            gathered = graph.tensors[int(gather.outputs[0])]
            float_chunk = copy.deepcopy(gathered)
            float_chunk.type, float_chunk.quantization = module.TensorType.FLOAT32, None
            float_chunk.name = gathered.name + b"/float"
            graph.tensors.append(float_chunk)
            chunk = len(graph.tensors) - 1
            gather.inputs = [int(quantize.inputs[0]), *(int(i) for i in gather.inputs[1:])]
            quantize.inputs, quantize.outputs, gather.outputs = [chunk], [int(gather.outputs[0])], [chunk]
            graph.operators.remove(quantize)
            graph.operators.insert(graph.operators.index(gather) + 1, quantize)
            rewritten += 1
    return rewritten


def _movable_quantize(model: Any, graph: Any, quantize: Any, gather: Any, module: Any, names: dict[int, str]) -> bool:
    """Whether ``quantize`` feeds only ``gather``, from a float tensor, with one scale and zero
    point that the gather's output shares (a per-channel quantization does not commute with it)."""
    if builtin_op_name(model, quantize, names) != "QUANTIZE":
        return False
    out = int(quantize.outputs[0])
    readers = [op for op in graph.operators or [] if out in (int(t) for t in op.inputs)]
    if readers != [gather] or out in (int(t) for t in graph.outputs):
        return False
    source, quantized = graph.tensors[int(quantize.inputs[0])], graph.tensors[out]
    gathered = graph.tensors[int(gather.outputs[0])]
    return source.type == module.TensorType.FLOAT32 and _same_scale(quantized, gathered)


def _same_scale(a: Any, b: Any) -> bool:
    """Whether ``a`` has one scale and zero point, and ``b`` the same ones and the same type."""
    key = quantization_key(a)
    return bool(key) and len(key[0]) == 1 and key == quantization_key(b) and a.type == b.type


def gathers_first(model: Any) -> int:
    """Move every ``GATHER`` and the ops it depends on (in their order) to the front of its
    subgraph's operator list; returns how many ops changed place."""
    names = builtin_names()
    moved = 0
    for graph in model.subgraphs or []:
        ops = list(graph.operators or [])
        producers = {int(t): op for op in ops for t in op.outputs}
        front: set[int] = set()
        pending = [op for op in ops if builtin_op_name(model, op, names) == "GATHER"]
        while pending:
            op = pending.pop()
            if id(op) not in front:
                front.add(id(op))
                pending += [producers[int(t)] for t in op.inputs if int(t) in producers]
        order = [op for op in ops if id(op) in front] + [op for op in ops if id(op) not in front]
        moved += sum(a is not b for a, b in zip(order, ops))
        graph.operators = order
    return moved
