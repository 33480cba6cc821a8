"""Story mode: caption a story frame after frame without re-encoding what has not changed.

The full-window encoder re-encodes all k frames (and the reason) for every caption. With the
story-mode graphs a manifest declares (:class:`~storyedge.manifest.StorySpec`), a
:class:`StoryEncoder` runs the reason graph once per story, the frame graph once per frame (its
fused vector is cached), and per caption only the small story graph over the last k cached
vectors. The story graph's outputs are the encoder's, so the decoder starts exactly as after
the full-window encoder. numpy only; backends run the graphs by name (:meth:`Backend.run_graph`).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from storyedge.errors import UserError
from storyedge.manifest import StorySpec
from storyedge.runtime.backend import Backend, State


def story_spec_of(backend: Backend) -> StorySpec:
    """The backend's story spec; :class:`UserError` when it has no story-mode graphs."""
    spec = getattr(backend, "story", None)
    if spec is None:
        raise UserError(
            f"backend {backend.name}: this export has no story-mode graphs (re-export it with this "
            "version of storyedge)"
        )
    return spec


class StoryEncoder:
    """Cached story-mode encoding over one backend (see the module doc)."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.spec = story_spec_of(backend)
        self._fused: deque[np.ndarray] = deque(maxlen=self.spec.window)
        self._reason: np.ndarray | None = None

    @property
    def frames(self) -> int:
        """Fused frames cached (at most k)."""
        return len(self._fused)

    def begin(self, window_inputs: dict[str, np.ndarray] | None = None) -> None:
        """Start a story: clear the cache and run the reason graph once (the reason is the
        encoder input named in the spec, e.g. ``reason`` [B, R], taken from ``window_inputs``)."""
        self._fused.clear()
        self._reason = None
        spec = self.spec
        if spec.reason_graph:
            if window_inputs is None or any(src not in window_inputs for src in spec.reason_inputs.values()):
                raise UserError("this model reads a reason: story mode needs the story's reason tokens")
            feeds = {name: window_inputs[src] for name, src in spec.reason_inputs.items()}
            self._reason = self.backend.run_graph(spec.reason_graph, feeds)[str(spec.reason_output)]

    def push(self, frame_inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Encode one new (frame, caption) and cache its fused vector; ``frame_inputs`` by the
        encoder's input names with the frame axis dropped (``frames`` [B,S,S,3], ``captions`` [B,L])."""
        spec = self.spec
        feeds = {name: frame_inputs[src] for name, src in spec.frame_inputs.items()}
        if spec.frame_reason:
            feeds[spec.frame_reason] = self._reason_vector()
        fused = self.backend.run_graph(spec.frame_graph, feeds)[spec.fused]
        self._fused.append(fused)
        return fused

    def push_window(self, window_inputs: dict[str, np.ndarray]) -> None:
        """Begin a story with a full window's k frames (encoder inputs ``[B, k, ...]``)."""
        self.begin(window_inputs)
        for i in range(self.spec.window):
            self.push(frame_slice(self.spec, window_inputs, i))

    def outputs(self) -> dict[str, np.ndarray]:
        """The story graph's outputs (the encoder's) over the last k cached frames."""
        spec = self.spec
        if len(self._fused) < spec.window:
            raise ValueError(f"story mode needs {spec.window} encoded frames, has {len(self._fused)}")
        feeds: dict[str, Any] = {spec.story_fused: np.ascontiguousarray(np.stack(self._fused, axis=1))}
        if spec.story_reason:
            feeds[spec.story_reason] = self._reason_vector()
        return self.backend.run_graph(spec.story_graph, feeds)

    def state(self) -> State:
        """The decoder's initial state from the last k cached frames."""
        return self.backend.decoder.initial_state(self.outputs())

    def _reason_vector(self) -> np.ndarray:
        if self._reason is None:
            raise ValueError("story mode: begin() the story with its reason first")
        return self._reason


def frame_slice(spec: StorySpec, window_inputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Frame ``i`` of a window's encoder inputs (those the frame graph reads), frame axis dropped."""
    return {src: np.ascontiguousarray(window_inputs[src][:, i]) for src in spec.frame_inputs.values()}


def story_window_outputs(backend: Backend, window_inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The encoder outputs of one window computed through the story-mode graphs (for parity)."""
    encoder = StoryEncoder(backend)
    encoder.push_window(window_inputs)
    return encoder.outputs()
