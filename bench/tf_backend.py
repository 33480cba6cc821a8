"""The TensorFlow reference backend: the trained Keras model behind static ``tf.function``s.

It runs exactly the graphs the exporter converts (:mod:`storyedge.model.signatures`), so
differences between it and an exported backend are conversion / quantization effects only.
"""

from __future__ import annotations

import time

import numpy as np

from storyedge.bench.backends import Backend, State
from storyedge.model.signatures import decoder_step_fn, encoder_fn, encoder_input_names
from storyedge.model.story_model import StoryModel


class TFReferenceBackend(Backend):
    """``encode`` / ``step`` through ``tf.function`` with static batch-``batch`` signatures."""

    format = "tf"
    precision = "fp32"

    def __init__(self, model: StoryModel, batch: int = 1, name: str = "tf-reference") -> None:
        start = time.perf_counter()
        self.name = name
        self._encoder = encoder_fn(model, batch)
        self._decoder = decoder_step_fn(model, batch)
        self._input_names = encoder_input_names(model)
        self.load_seconds = time.perf_counter() - start

    def encode(self, inputs: dict[str, np.ndarray]) -> State:
        out = self._encoder(*(inputs[name] for name in self._input_names))
        return {"h": out["h0"].numpy(), "c": out["c0"].numpy(), "context": out["context"].numpy()}

    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        out = self._decoder(
            np.asarray(token, np.int32), state["h"], state["c"], state["context"]
        )
        next_state = {"h": out["h_out"].numpy(), "c": out["c_out"].numpy(), "context": state["context"]}
        return out["logits"].numpy(), next_state
