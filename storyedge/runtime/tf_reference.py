"""The TensorFlow reference backend: the trained Keras model behind static ``tf.function``s.

It runs exactly the graphs the exporter converts (:mod:`storyedge.model.signatures`), so
differences between it and an exported backend are conversion / quantization effects only.
Importing this module imports TensorFlow.
"""

from __future__ import annotations

import time

import numpy as np

from storyedge.model.signatures import decoder_spec, decoder_step_fn, encoder_fn, story_fn, story_spec
from storyedge.model.story_model import StoryModel
from storyedge.runtime.backend import Backend


class TFReferenceBackend(Backend):
    """``run_encoder`` / ``run_step`` through ``tf.function`` with static batch-``batch`` signatures."""

    format = "tf"
    precision = "fp32"

    def __init__(self, model: StoryModel, batch: int = 1, name: str = "tf-reference") -> None:
        start = time.perf_counter()
        self.name = name
        self.decoder = decoder_spec(model, batch)
        self._encoder = encoder_fn(model, batch)
        self._decoder = decoder_step_fn(model, batch)
        self._encoder_inputs = [s.name for s in self._encoder.input_signature]
        self._decoder_inputs = [s.name for s in self._decoder.input_signature]
        self.story = story_spec(model)
        self._model, self._batch = model, batch
        self._story_fns: dict[str, tuple[object, list[str]]] = {}
        self.load_seconds = time.perf_counter() - start

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """A story-mode graph through its own ``tf.function`` (traced on first use)."""
        if graph not in self.story.all_graphs:
            return super().run_graph(graph, feeds)
        if graph not in self._story_fns:
            fn = story_fn(self._model, graph, self._batch)
            self._story_fns[graph] = (fn, [s.name for s in fn.input_signature])
        fn, names = self._story_fns[graph]
        out = fn(*(feeds[name] for name in names))  # type: ignore[operator]
        return {k: v.numpy() for k, v in out.items()}

    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._encoder(*(inputs[name] for name in self._encoder_inputs))
        return {k: v.numpy() for k, v in out.items()}

    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self._decoder(*(feeds[name] for name in self._decoder_inputs))
        return {k: v.numpy() for k, v in out.items()}
