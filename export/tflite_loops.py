"""Calibration ranges inside TFLite ``WHILE`` loops: each loop replayed iteration by iteration.

After a run LiteRT's tensors hold only a loop body's last iteration, so the full-int8 calibration
(``storyedge.export.tflite._calibration_ranges``) would see one chunk of time steps of each
LSTM. Here every ``WHILE`` op a signature ran is replayed outside the loop: its condition and its
body, each packed as a one-subgraph model, run in turn from the loop's inputs (read from the run,
all tensors kept) until the condition is false, and the body's tensors are observed at every
iteration. That is what the ``WHILE`` kernel itself does, one subgraph call after another.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from storyedge.errors import CheckFailed
from storyedge.tflite_schema import builtin_op_name, pack_variant

#: A loop that has not ended after this many iterations is a bug, not a long sequence.
MAX_ITERATIONS = 100_000

#: ``observe(subgraph index, tensor index, value)``
Observer = Callable[[int, int, np.ndarray], None]


def subgraph_model(model: Any, schema: Any, index: int) -> bytes:
    """Subgraph ``index`` of ``model`` (a flatbuffer object-API ``ModelT`` of ``schema``) as a
    model of its own: its tensor indices unchanged, only the buffers it reads kept (the others
    left empty)."""
    graph = model.subgraphs[index]
    used = {t.buffer for t in graph.tensors or []}
    return pack_variant(model, [graph], [b if i in used else schema.BufferT() for i, b in enumerate(model.buffers or [])])


class LoopReplay:
    """Replays the ``WHILE`` loops of a model's subgraphs (see the module doc); the one-subgraph
    interpreters are made once per condition / body and kept for every sample. ``wanted(subgraph,
    tensor)``: whether a body tensor is read at all (the weights need not be, every iteration)."""

    def __init__(self, model: Any, schema: Any, builtin_names: dict[int, str],
                 wanted: Callable[[int, int], bool]) -> None:
        self.model, self.schema, self.names, self.wanted = model, schema, builtin_names, wanted
        self._interpreters: dict[int, Any] = {}

    def loops(self, subgraph: int) -> list[Any]:
        """The ``WHILE`` ops of ``subgraph``."""
        ops = self.model.subgraphs[subgraph].operators or []
        return [op for op in ops if builtin_op_name(self.model, op, self.names) == "WHILE"]

    def observe(self, interpreter: Any, subgraph: int, observe: Observer) -> int:
        """Replay every loop ``subgraph`` ran in ``interpreter`` (all tensors kept), observing
        each body tensor at every iteration; returns the iterations replayed."""
        iterations = 0
        for op in self.loops(subgraph):
            values = [interpreter.get_tensor(i, subgraph) for i in op.inputs]
            options = op.builtinOptions
            iterations += self._replay(options.condSubgraphIndex, options.bodySubgraphIndex, values, observe)
        return iterations

    def _replay(self, cond: int, body: int, values: list[np.ndarray], observe: Observer) -> int:
        if self.loops(body):
            raise CheckFailed("int8 calibration: a WHILE loop inside a loop body is not supported")
        read = [i for i in range(len(self.model.subgraphs[body].tensors or [])) if self.wanted(body, i)]
        for iteration in range(MAX_ITERATIONS):
            if not bool(np.asarray(self._run(cond, values)[0]).reshape(-1)[0]):
                return iteration
            values = self._run(body, values)
            runner = self._interpreters[body]
            for index in read:
                try:
                    value = runner.get_tensor(index)
                except ValueError:  # a tensor LiteRT does not hold (optional input)
                    continue
                observe(body, index, value)
        raise CheckFailed(f"int8 calibration: a WHILE loop ran more than {MAX_ITERATIONS} iterations")

    def _run(self, subgraph: int, values: list[np.ndarray]) -> list[np.ndarray]:
        """Run the one-subgraph model of ``subgraph`` on its inputs ``values``; its outputs."""
        runner = self._interpreters.get(subgraph)
        if runner is None:
            # lazy: ai_edge_litert is a heavy optional runtime
            from ai_edge_litert.interpreter import Interpreter, OpResolverType

            runner = self._interpreters[subgraph] = Interpreter(
                model_content=subgraph_model(self.model, self.schema, subgraph),
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
                experimental_preserve_all_tensors=True,
            )
            runner.allocate_tensors()
        inputs = runner.get_input_details()
        resized = False
        for detail, value in zip(inputs, values):
            if tuple(detail["shape"]) != tuple(np.shape(value)):
                runner.resize_tensor_input(detail["index"], list(np.shape(value)))
                resized = True
        if resized:
            runner.allocate_tensors()
        for detail, value in zip(inputs, values):
            runner.set_tensor(detail["index"], np.asarray(value, detail["dtype"]))
        runner.invoke()
        return [runner.get_tensor(d["index"]) for d in runner.get_output_details()]
