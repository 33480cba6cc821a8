"""The LiteRT backend: ``ai_edge_litert`` signatures (XNNPACK is LiteRT's CPU delegate).

The graphs run once a caption (the encoder, story mode's graphs) go through a ``CompiledModel``
with XNNPACK's weight cache (:mod:`storyedge.runtime.litert_compiled`) where the installed
ai-edge-litert has that API: their LSTM loops then read one packed copy of each recurrent kernel.
The decoder step, called once a token, goes through an ``Interpreter`` and
:class:`FastSignature`, whose call costs less (a seed-size int8-dynamic step: 148-164 µs that
way, 168-205 µs through ``CompiledModel``, the same kernels). A multi-signature file is
therefore opened by both. Its step through the ``CompiledModel`` as well (one XNNPACK thread pool
for both graphs instead of two) gained nothing: seed-size int8 multi file, captions of 32 steps,
interleaved, two runs: each step 18-20 µs slower, the encoder 6.66 → 6.03 and 5.81 → 5.83 ms, the
caption 22.57 → 22.39 and 21.94 → 22.57 ms; story-mode captions 18.49 → 18.87 ms.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from storyedge.constants import DECODER_STEP
from storyedge.errors import UserError
from storyedge.runtime.backend import Backend
from storyedge.runtime.litert_compiled import (
    CompiledSignature,
    compiled_model_available,
    load_compiled_model,
    runs_without_weight_cache,
)
from storyedge.runtime.litert_signature import FastSignature, open_interpreter
from storyedge.runtime.specs import BackendSpec

Signature = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class TFLiteBackend(Backend):
    """The encoder and decoder_step signatures of one or two ``.tflite`` files."""

    format = "tflite"

    def __init__(self, spec: BackendSpec, threads: int | None = None, compiled: bool | None = None) -> None:
        """``compiled``: run through ``CompiledModel`` (None: wherever ai-edge-litert has it)."""
        try:
            from ai_edge_litert.interpreter import Interpreter  # noqa: F401  # lazy: LiteRT is optional (ONNX-only users)
        except ImportError:
            raise UserError("backend tflite: ai-edge-litert is not installed (pip install ai-edge-litert)") from None
        self.name, self.precision, self.threads = spec.name, spec.precision, threads
        self.size_bytes, self.decoder = spec.size_bytes, spec.decoder
        self.compiled = compiled_model_available() if compiled is None else compiled
        self._files: dict[tuple[Path, bool], Any] = {}  # one model per file and runner, shared by its signatures
        start = time.perf_counter()
        self._encoder = self._signature(spec.encoder_path, "encoder")
        self._decoder = self._signature(spec.decoder_path, DECODER_STEP)
        self.load_seconds = time.perf_counter() - start
        self.story, self._story_paths = spec.story, dict(spec.story_paths)
        self._story_runners: dict[str, Signature] = {}

    def _signature(self, path: Path, key: str) -> Signature:
        """The signature ``key`` of the file at ``path`` (the file is loaded on first use):
        compiled unless it is the decoder step (see the module docstring)."""
        compiled = self.compiled and key != DECODER_STEP
        if (path, compiled) not in self._files:
            self._files[path, compiled] = self._compiled(path) if compiled else open_interpreter(path, self.threads)
        model = self._files[path, compiled]
        return CompiledSignature(model, key) if compiled else FastSignature(model, key)

    def _compiled(self, path: Path) -> Any:
        """``path`` as a ``CompiledModel`` (:func:`load_compiled_model`); a note where it runs
        without XNNPACK's weight cache."""
        model = load_compiled_model(path, self.threads)
        if runs_without_weight_cache(model):
            self.notes += (f"{path.name} ran without XNNPACK's weight cache, slower: its int8 products over one "
                           "weight are quantized differently, which the cache computes wrong (a file exported "
                           "before storyedge quantized them alike; export it again to run it with the cache)",)
        return model

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A story-mode graph; its file is loaded on first use."""
        if graph not in self._story_runners:
            if graph not in self._story_paths:
                return super().run_graph(graph, feeds)
            self._story_runners[graph] = self._signature(self._story_paths[graph], graph)
        return self._story_runners[graph](feeds)

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._encoder(inputs)

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._decoder(feeds)

