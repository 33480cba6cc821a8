"""The LiteRT backend: ``ai_edge_litert`` signatures, run through :class:`FastSignature` (XNNPACK is
LiteRT's default CPU delegate)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.runtime.backend import Backend
from storyedge.runtime.litert_signature import FastSignature
from storyedge.runtime.specs import BackendSpec


class TFLiteBackend(Backend):
    """The encoder and decoder_step signatures of one or two ``.tflite`` files."""

    format = "tflite"

    def __init__(self, spec: BackendSpec, threads: int | None = None) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter  # lazy: LiteRT is optional (ONNX-only users)
        except ImportError:
            raise UserError("backend tflite: ai-edge-litert is not installed (pip install ai-edge-litert)") from None
        self.name, self.precision, self.threads = spec.name, spec.precision, threads
        self.size_bytes, self.decoder = spec.size_bytes, spec.decoder
        start = time.perf_counter()
        encoder_interpreter = _litert_interpreter(Interpreter, spec.encoder_path, threads)
        decoder_interpreter = (
            encoder_interpreter
            if spec.decoder_path == spec.encoder_path
            else _litert_interpreter(Interpreter, spec.decoder_path, threads)
        )
        self._encoder = FastSignature(encoder_interpreter, "encoder")
        self._decoder = FastSignature(decoder_interpreter, "decoder_step")
        self.load_seconds = time.perf_counter() - start
        self.story, self._story_paths = spec.story, dict(spec.story_paths)
        self._story_runners: dict[str, FastSignature] = {}
        self._story_interpreters: dict[Path, Any] = {}

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A story-mode graph; its file is loaded on first use."""
        if graph not in self._story_runners:
            if graph not in self._story_paths:
                return super().run_graph(graph, feeds)
            # lazy: LiteRT is optional; imported (and checked) in __init__ already
            from ai_edge_litert.interpreter import Interpreter

            path = self._story_paths[graph]
            if path not in self._story_interpreters:  # one interpreter per file, shared by its signatures
                self._story_interpreters[path] = _litert_interpreter(Interpreter, path, self.threads)
            self._story_runners[graph] = FastSignature(self._story_interpreters[path], graph)
        return self._story_runners[graph](feeds)

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._encoder(inputs)

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._decoder(feeds)


def _litert_interpreter(interpreter_cls: Any, path: Path, threads: int | None) -> Any:
    try:
        # num_threads=None lets LiteRT choose; ai-edge-litert 2.3 rejects -1 (older versions' "default").
        return interpreter_cls(model_path=str(path), num_threads=threads if threads else None)
    except Exception as exc:  # noqa: BLE001 - LiteRT raises ValueError/RuntimeError on bad files
        raise UserError(f"{path}: LiteRT cannot load this file ({str(exc).splitlines()[0][:160]})") from None
