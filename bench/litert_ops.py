"""LiteRT per-op times of a TFLite graph, for ``storyedge bench --profile``.

ai-edge-litert's Python ``Interpreter`` has no op profiler, but each op can be timed alone: the
signature runs once with every tensor kept (no delegate, so every tensor holds its value), then
each op of its subgraph is packed as a model of its own (the op, its tensors, the buffers it
reads, the ``WHILE`` bodies it calls), fed the inputs the whole graph gave it, and timed as the
bench's backends run (XNNPACK, same threads). Ops whose inputs are all constant (LiteRT computes
them once, e.g. a weight's ``DEQUANTIZE``) are left out and their outputs given to their readers
as constants (XNNPACK packs a dequantized fp16 weight as a static one); an op LiteRT cannot run
alone is left out too. The sum of the rest next to the whole graph's time says how much the
pieces cover.

An op that calls subgraphs (a ``WHILE`` loop) is timed through LiteRT's ``CompiledModel`` with
XNNPACK's weight cache where the installed ai-edge-litert has it, as the LiteRT backend runs the
encoder (:mod:`storyedge.runtime.litert_compiled`): the ``Interpreter`` packs a loop body's
recurrent kernel once for each of the u time steps that read it, the cache once, and at the seed
size the int8 encoder's five loops took 4.8-5.2 ms alone through the ``Interpreter`` against
3.4 ms through the cache. That runtime's call costs a few µs more than the ``Interpreter``'s, which only
loops (0.1 ms and more) can carry.
"""

from __future__ import annotations

import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.runtime.litert_compiled import CompiledSignature, compiled_model_available, load_compiled_model
from storyedge.tflite_schema import builtin_names, builtin_op_name, constant_data, pack_variant
from storyedge.tflite_schema import schema as tflite_schema


#: timed calls per op (after one untimed)
OP_ROUNDS = 15


@dataclass
class OpTime:
    """One op of the graph, timed alone: its builtin name and median ms per call."""

    index: int
    op: str
    ms: float


def op_times(path: Path, signature: str, feeds: dict[str, np.ndarray], threads: int,
             rounds: int = OP_ROUNDS, compiled: bool | None = None) -> list[OpTime]:
    """Each op of ``signature``'s subgraph in the file at ``path`` timed alone (see the module doc);
    ``compiled``: time the ops that call subgraphs through a ``CompiledModel`` with the weight
    cache (None: wherever ai-edge-litert has that API)."""
    # lazy: ai_edge_litert is a heavy optional runtime
    from ai_edge_litert.interpreter import Interpreter

    content = Path(path).read_bytes()
    schema = tflite_schema()
    names = builtin_names()
    model = schema.ModelT.InitFromPackedBuf(content, 0)
    sg, values = _signature_values(content, model, signature, feeds)
    graph = model.subgraphs[sg]
    folded = _folded(model, graph)
    compiled = compiled_model_available() if compiled is None else compiled
    times = []
    for index, op in enumerate(graph.operators or []):
        if all(i in folded for i in op.outputs):
            continue  # computed once by LiteRT
        inputs = [i for i in op.inputs if i >= 0 and i in values and i not in folded]
        baked = {i: values[i] for i in op.inputs if i in folded and not _constant(model, graph, i)}
        packed = _one_op_model(model, schema, graph, op, inputs, baked)
        if compiled and _called_buffers(model, op):  # a loop: run as the backend runs the encoder
            ms = _time_compiled(packed, {_name(graph.tensors[i]): values[i] for i in inputs}, threads, rounds)
        else:
            ms = _time_alone(Interpreter, packed, [values[i] for i in inputs], threads, rounds)
        if ms is not None:
            times.append(OpTime(index, builtin_op_name(model, op, names) or "CUSTOM", ms))
    return times


def _one_op_model(model: Any, schema: Any, graph: Any, op: Any, inputs: list[int],
                  baked: dict[int, np.ndarray]) -> bytes:
    """``op`` of ``graph`` as the primary subgraph of a model of its own (``inputs`` its inputs,
    ``baked`` tensors made constants with these values, the loop bodies it calls kept at their
    index, only the buffers they and it read)."""
    one = copy.copy(graph)
    one.operators, one.inputs, one.outputs = [op], inputs, list(op.outputs)
    read = {graph.tensors[i].buffer for i in op.inputs if i >= 0} | _called_buffers(model, op)
    kept = [b if k in read else schema.BufferT() for k, b in enumerate(model.buffers or [])]
    one.tensors = list(graph.tensors)
    for tensor, value in baked.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(value).tobytes(), np.uint8)
        one.tensors[tensor] = copy.copy(graph.tensors[tensor])
        one.tensors[tensor].buffer = len(kept)
        kept.append(buffer)
    return pack_variant(model, [one, *model.subgraphs[1:]], kept)


def _called_buffers(model: Any, op: Any) -> set[int]:
    """Buffers of the subgraphs ``op`` calls (a ``WHILE``'s condition and body, and theirs)."""
    options = op.builtinOptions
    called = [getattr(options, name) for name in ("condSubgraphIndex", "bodySubgraphIndex") if hasattr(options, name)]
    found: set[int] = set()
    for index in called:
        graph = model.subgraphs[index]
        found |= {t.buffer for t in graph.tensors or []}
        for inner in graph.operators or []:
            found |= _called_buffers(model, inner)
    return found


def _folded(model: Any, graph: Any) -> set[int]:
    """Tensors of ``graph`` that are constants or computed from constants only (LiteRT computes
    those once, and XNNPACK packs a dequantized weight as a static one)."""
    folded = {i for i in range(len(graph.tensors or [])) if _constant(model, graph, i)}
    for op in graph.operators or []:
        if all(i < 0 or i in folded for i in op.inputs) and not _called_buffers(model, op):
            folded.update(op.outputs)
    return folded


def _constant(model: Any, graph: Any, tensor: int) -> bool:
    return constant_data(model, graph.tensors[tensor]) is not None


def _signature_values(content: bytes, model: Any, signature: str, feeds: dict[str, np.ndarray]
                      ) -> tuple[int, dict[int, np.ndarray]]:
    """The signature's subgraph index and the value of each of its tensors in one run."""
    # lazy: ai_edge_litert is a heavy optional runtime
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    keys = [s.signatureKey.decode() for s in model.signatureDefs]
    sg = model.signatureDefs[keys.index(signature)].subgraphIndex
    interpreter = Interpreter(model_content=content, experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    runner = interpreter.get_signature_runner(signature)
    runner(**{name: feeds[name] for name in interpreter.get_signature_list()[signature]["inputs"]})
    values = {}
    for i in range(len(model.subgraphs[sg].tensors or [])):
        try:
            values[i] = interpreter.get_tensor(i, sg)
        except ValueError:  # a tensor LiteRT never allocated (unused)
            continue
    return sg, values


def _name(tensor: Any) -> str:
    name = tensor.name
    return name.decode() if isinstance(name, bytes) else str(name)


def _time_compiled(content: bytes, feeds: dict[str, np.ndarray], threads: int, rounds: int) -> float | None:
    """Median ms of one-op model ``content`` on ``feeds`` (by input tensor name) through a
    ``CompiledModel`` with the weight cache; None where LiteRT cannot run it that way."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "op.tflite"
        path.write_bytes(content)
        try:
            model = load_compiled_model(path, threads)
            key = next(iter(model.get_signature_list()))  # a model without signatures has one placeholder
            run = CompiledSignature(model, key)
            run(feeds)
            return _median_ms(lambda: run(feeds), rounds)
        except (UserError, RuntimeError, ValueError):
            return None


def _time_alone(interpreter_type: Any, content: bytes, inputs: list[np.ndarray], threads: int,
                rounds: int) -> float | None:
    """Median ms of one-op model ``content`` on ``inputs``; None where LiteRT cannot run it alone."""
    try:
        interpreter = interpreter_type(model_content=content, num_threads=threads)
        details = interpreter.get_input_details()
        for detail, value in zip(details, inputs):
            interpreter.resize_tensor_input(detail["index"], value.shape)
        interpreter.allocate_tensors()
        for detail, value in zip(details, inputs):
            interpreter.set_tensor(detail["index"], value)
        interpreter.invoke()
        return _median_ms(interpreter.invoke, rounds)
    except (RuntimeError, ValueError):
        return None


def _median_ms(call: Callable[[], Any], rounds: int) -> float:
    """Median ms of ``rounds`` calls of ``call``."""
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples)) * 1e3
