"""Story mode: caption a story frame after frame without re-encoding what has not changed.

The full-window encoder re-encodes all k frames (and the reason) for every caption. With the
story-mode graphs a manifest declares (:class:`~storyedge.manifest.StorySpec`), a
:class:`StoryEncoder` runs the reason graph once per story, the frame graph once per frame (its
fused vector is cached), and per caption only the small story graph over the last k cached
vectors; where the backend has the frame + story graph, the new frame and the story graph run in
one call. The story graph's outputs are the encoder's, so the decoder starts exactly as after
the full-window encoder. numpy only; backends run the graphs by name (:meth:`Backend.run_graph`).
"""

from __future__ import annotations

import time
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

    def __init__(self, backend: Backend, one_call: bool = True) -> None:
        """``one_call``: encode a window's newest frame and run the story graph in one call,
        where the backend has the frame + story graph (False: always the two graphs)."""
        self.backend = backend
        self.spec = story_spec_of(backend)
        self.one_call = one_call and self.spec.frame_story_graph is not None
        self._fused: deque[np.ndarray] = deque(maxlen=self.spec.window)
        self._reason: dict[str, np.ndarray] | None = None
        self._outputs: dict[str, np.ndarray] | None = None  # the story outputs of the last push, if it made them

    @property
    def frames(self) -> int:
        """Fused frames cached (at most k)."""
        return len(self._fused)

    def begin(self, window_inputs: dict[str, np.ndarray] | None = None) -> None:
        """Start a story: clear the cache and run the reason graph once (the reason is the
        encoder input named in the spec, e.g. ``reason`` [B, R], taken from ``window_inputs``);
        its outputs are kept for the frame / story graph inputs of the same names."""
        self._fused.clear()
        self._reason = self._outputs = None
        spec = self.spec
        if spec.reason_graph:
            if window_inputs is None or any(src not in window_inputs for src in spec.reason_inputs.values()):
                raise UserError("this model reads a reason: story mode needs the story's reason tokens")
            feeds = {name: window_inputs[src] for name, src in spec.reason_inputs.items()}
            self._reason = self.backend.run_graph(spec.reason_graph, feeds)

    def push(self, frame_inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Encode one new (frame, caption) and cache its fused vector; ``frame_inputs`` by the
        encoder's input names with the frame axis dropped (``frames`` [B,S,S,3], ``captions`` [B,L]).

        With ``one_call`` and k-1 frames already cached, the frame + story graph encodes it and
        the window's story outputs in the same call (:meth:`outputs` then returns those). With
        fewer cached, it encodes the frame too where the backend reads the earlier frames' input
        shape from its file (zeros stand in for the missing frames; those story outputs are not
        kept), so that backend never loads the frame graph's weights a second time."""
        spec = self.spec
        feeds = {name: frame_inputs[src] for name, src in spec.frame_inputs.items()}
        if spec.frame_reason:
            feeds[spec.frame_reason] = self._reason_output(spec.frame_reason)
        self._outputs = None
        earlier = self._earlier_frames() if self.one_call else None
        if earlier is not None:
            feeds[str(spec.earlier_fused)] = earlier
            if spec.story_reason:
                feeds[spec.story_reason] = self._reason_output(spec.story_reason)
            outputs = dict(self.backend.run_graph(str(spec.frame_story_graph), feeds))
            fused = outputs.pop(spec.fused)
            if len(self._fused) >= spec.window - 1:
                self._outputs = outputs
        else:
            fused = self.backend.run_graph(spec.frame_graph, feeds)[spec.fused]
        self._fused.append(fused)
        return fused

    def _earlier_frames(self) -> np.ndarray | None:
        """The frame + story graph's earlier frames: the window's other k-1 cached vectors stacked
        on axis 1; with fewer cached, those after zeros where the backend knows the input's shape,
        else None (the frame graph encodes the frame)."""
        spec = self.spec
        need = spec.window - 1
        cached = list(self._fused)[-need:]
        if len(cached) == need:
            return np.ascontiguousarray(np.stack(cached, axis=1))
        shape = self.backend.graph_input_shape(str(spec.frame_story_graph), str(spec.earlier_fused))
        if shape is None:
            return None
        earlier = np.zeros(shape, np.float32)
        if cached:
            earlier[:, need - len(cached):] = np.stack(cached, axis=1)
        return earlier

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
        if self._outputs is not None:
            return self._outputs
        feeds: dict[str, Any] = {spec.story_fused: np.ascontiguousarray(np.stack(self._fused, axis=1))}
        if spec.story_reason:
            feeds[spec.story_reason] = self._reason_output(spec.story_reason)
        return self.backend.run_graph(spec.story_graph, feeds)

    def state(self) -> State:
        """The decoder's initial state from the last k cached frames."""
        return self.backend.decoder.initial_state(self.outputs())

    def _reason_output(self, name: str) -> np.ndarray:
        """The reason graph's output ``name`` (the reason vector, or its cached terms)."""
        if self._reason is None:
            raise ValueError("story mode: begin() the story with its reason first")
        return self._reason[name]


def frame_slice(spec: StorySpec, window_inputs: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Frame ``i`` of a window's encoder inputs (those the frame graph reads), frame axis dropped."""
    return {src: np.ascontiguousarray(window_inputs[src][:, i]) for src in spec.frame_inputs.values()}


def story_window_outputs(backend: Backend, window_inputs: dict[str, np.ndarray],
                         one_call: bool = True) -> dict[str, np.ndarray]:
    """The encoder outputs of one window computed through the story-mode graphs (for parity);
    ``one_call``: the newest frame through the frame + story graph where the backend has it."""
    encoder = StoryEncoder(backend, one_call)
    encoder.push_window(window_inputs)
    return encoder.outputs()


def framed_caption(tokens: list[int], bos_id: int, eos_id: int, pad_id: int, length: int) -> np.ndarray:
    """Generated tokens framed like a dataset caption: ``[BOS] tokens [EOS]`` right-padded to ``length``."""
    ids = [bos_id, *tokens[: length - 2], eos_id]
    return np.asarray(ids + [pad_id] * (length - len(ids)), np.int32)


def caption_story(
    backend: Backend,
    frames: np.ndarray,
    captions: np.ndarray,
    reason: np.ndarray | None,
    decode: Any,
    special: dict[str, int],
    feed: str = "generated",
) -> list[tuple[int, list[int], float]]:
    """Caption every frame after the first k of a story, in story mode.

    ``frames`` [B, n-1, S, S, 3] (frame n's own image is never read: caption j is written from
    frames j-k .. j-1), ``captions`` [B, m, L] framed ids: the first k start the story; with
    ``feed="given"`` caption j is encoded from ``captions[:, j]`` (m >= n-1), with
    ``generated`` from what was generated for it. ``decode(state) -> tokens`` writes one
    caption (greedy or beam). Returns per captioned frame j (0-based, k .. n-1): (j, tokens,
    seconds for its frame + story graph + decoding).
    """
    story = StoryEncoder(backend)
    k = story.spec.window
    n = frames.shape[1] + 1
    length = captions.shape[2]
    window = {"frames": frames, "captions": captions, **({"reason": reason} if reason is not None else {})}
    story.begin(window)
    for i in range(k):
        story.push(frame_slice(story.spec, window, i))
    out: list[tuple[int, list[int], float]] = []
    for j in range(k, n):
        start = time.perf_counter()
        if j > k:  # frame j-1 joins the window: one frame graph call
            story.push({"frames": np.ascontiguousarray(frames[:, j - 1]), "captions": _fed_caption(out, captions, j - 1, feed, special, length)})
        tokens = list(decode(story.state()))
        out.append((j, tokens, time.perf_counter() - start))
    return out


def _fed_caption(out: list[tuple[int, list[int], float]], captions: np.ndarray, j: int, feed: str,
                 special: dict[str, int], length: int) -> np.ndarray:
    """Caption j as the next window reads it: the given one, or the one just generated."""
    if feed == "given":
        return np.ascontiguousarray(captions[:, j])
    tokens = next(t for i, t, _ in out if i == j)
    row = framed_caption(tokens, special["bos_id"], special["eos_id"], special["pad_id"], length)
    return np.repeat(row[None], captions.shape[0], axis=0)
