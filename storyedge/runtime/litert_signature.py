"""One LiteRT signature, run without the per-call overhead of ``SignatureRunner.__call__``.

``SignatureRunner.__call__`` resizes every input, re-runs ``AllocateTensors`` and looks every
name up on each call: on the seed-size int8-dynamic decoder step 0.167 ms through the runner
against 0.160 ms set + invoke + get in a quiet phase of the machine, 0.25 against 0.19 ms in a
busy one (32 such steps a caption). A :class:`FastSignature` goes through the runner when the input shapes change
(the first call, a new batch) and otherwise only sets the inputs, invokes and copies the
outputs out, by the tensor indices the runner resolved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError


class FastSignature:
    """A signature of a LiteRT ``Interpreter`` called with numpy inputs by name → outputs by name."""

    def __init__(self, interpreter: Any, key: str) -> None:
        self._runner = interpreter.get_signature_runner(key)
        details = self._runner.get_input_details()
        self.input_dtypes: dict[str, Any] = {n: d["dtype"] for n, d in details.items()}
        self._inputs = [(n, int(d["index"])) for n, d in details.items()]
        self._outputs = [(n, int(d["index"])) for n, d in self._runner.get_output_details().items()]
        # The runner's own handle on the C++ interpreter and the signature's subgraph: private
        # attributes of ai-edge-litert, so without them every call goes through the runner.
        self._wrapper = getattr(self._runner, "_interpreter_wrapper", None)
        self._subgraph = getattr(self._runner, "_subgraph_index", None)
        self._allocated: tuple[tuple[int, ...], ...] | None = None

    @property
    def direct(self) -> bool:
        """Whether calls with unchanged shapes skip the runner."""
        return self._wrapper is not None and self._subgraph is not None

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = [np.asarray(feeds[n], dtype=self.input_dtypes[n]) for n, _ in self._inputs]
        shapes = tuple(v.shape for v in values)
        if not self.direct or shapes != self._allocated:
            outputs = self._runner(**{n: v for (n, _), v in zip(self._inputs, values)})
            self._allocated = shapes
            return outputs
        wrapper, subgraph = self._wrapper, self._subgraph
        for (_, index), value in zip(self._inputs, values):
            wrapper.SetTensor(index, value, subgraph)
        wrapper.Invoke(subgraph)
        return {n: wrapper.GetTensor(index, subgraph) for n, index in self._outputs}


def open_interpreter(path: Path, threads: int | None) -> Any:
    """A LiteRT ``Interpreter`` of the ``.tflite`` at ``path`` (it verifies the flatbuffer);
    :class:`UserError` naming the file when LiteRT cannot load it."""
    from ai_edge_litert.interpreter import Interpreter  # lazy: LiteRT is optional

    try:
        # num_threads=None lets LiteRT choose; ai-edge-litert 2.3 rejects -1 (older versions' "default").
        return Interpreter(model_path=str(path), num_threads=threads if threads else None)
    except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError on bad files
        raise UserError(f"{path}: LiteRT cannot load this file ({str(exc).splitlines()[0][:160]})") from None
