"""The one backend interface: ``encode(inputs) -> state`` and ``step(token, state) -> (logits, state)``.

Parity, latency, export validation and generation are written once against :class:`Backend`.
A concrete backend only runs its two graphs by tensor name (:meth:`Backend.run_encoder`,
:meth:`Backend.run_step`); what the state is comes from the :class:`~storyedge.manifest.DecoderSpec`
it was created with, so the state is opaque here: a dict of named tensors, whatever the decoder.
numpy only.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.manifest import DecoderSpec, StorySpec

#: The decoder state between steps: the step's non-token inputs by name (see DecoderSpec).
State = dict[str, np.ndarray]


def state_batch(state: State) -> int:
    """The batch size of a state (every state tensor leads with the batch axis)."""
    return int(next(iter(state.values())).shape[0])


class Backend(ABC):
    """A runnable encoder + decoder step."""

    name: str
    format: str
    precision: str
    decoder: DecoderSpec
    #: Seconds spent creating the runtime session(s) / interpreter(s).
    load_seconds: float = 0.0
    #: Bytes on disk of the files it runs (0 for the in-memory TF reference).
    size_bytes: int = 0
    #: Thread count the runtime was asked to use (None: runtime default).
    threads: int | None = None
    #: A vocabulary-shortlist step: the vocabulary id of each logit (None: logit i is token i).
    vocab_ids: np.ndarray | None = None
    #: What a reader of this backend's figures should know about how it runs its files (one line
    #: each, filled as files load), e.g. a runtime feature a file could not use.
    notes: tuple[str, ...] = ()

    def token_ids(self, indices: np.ndarray) -> np.ndarray:
        """Vocabulary ids (int32) of logit indices, e.g. an argmax (identity without a shortlist)."""
        indices = np.asarray(indices)
        return (indices if self.vocab_ids is None else self.vocab_ids[indices]).astype(np.int32)
    #: Story mode's graphs (:mod:`storyedge.runtime.story`); None when the backend has none.
    story: StorySpec | None = None

    @abstractmethod
    def run_encoder(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the encoder graph: its inputs by name → its outputs by name."""

    @abstractmethod
    def run_step(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the decoder-step graph once: its inputs by name → its outputs by name."""

    def run_graph(self, graph: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one story-mode graph (``frame_encoder`` ...) by name: inputs → outputs by name."""
        raise UserError(f"backend {self.name}: no story-mode graph {graph!r} (this export has none)")

    def graph_input_shape(self, graph: str, name: str) -> tuple[int, ...] | None:
        """The static shape of story-mode graph ``graph``'s input ``name`` where the backend reads
        it from the graph file, else None (the default)."""
        return None

    def encode(self, inputs: dict[str, np.ndarray]) -> State:
        """Run the encoder → the decoder's initial state."""
        return self.decoder.initial_state(self.run_encoder(inputs))

    def step(self, token: np.ndarray, state: State) -> tuple[np.ndarray, State]:
        """One decoder step: ``token`` [B] int32 → (logits [B,V] float32, next state)."""
        out = self.run_step({self.decoder.token: np.asarray(token, np.int32), **state})
        return out[self.decoder.logits], self.decoder.advance(state, out)

    def describe(self) -> dict[str, Any]:
        """Static facts about the backend for reports."""
        return {
            "name": self.name,
            "format": self.format,
            "precision": self.precision,
            "threads": self.threads,
            "load_seconds": self.load_seconds,
            "size_bytes": self.size_bytes,
        }
