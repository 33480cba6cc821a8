"""Story mode's next-caption latency, against the :class:`Backend` interface (numpy only).

Story mode (:mod:`storyedge.runtime.story`) caches each frame's fused vector, so the next
caption of a story costs one frame-graph call (the new frame), one story-graph call (the last k
cached vectors → the decoder state), or one call of both where the backend has the frame + story
graph, and the decoding. After the window's k frames are cached and ``warmup`` untimed
captions, each of ``runs`` timed captions pushes one frame of the window again (cycling), then
decodes ``caption_tokens`` greedy steps forced to full length, like the full-window caption it
is reported beside (``encoder_vs_full`` / ``caption_vs_full``: p50 ratios to the full-window
figures of the same backend, whose captions the bench times in turn with these, round by round).
The reason graph runs once per story: its time is reported apart (``reason``), not in the caption.
"""

from __future__ import annotations

import time

import numpy as np

from storyedge.bench.metrics import latency_stats
from storyedge.bench.results import Latency, StoryLatency
from storyedge.runtime import Backend, StoryEncoder, frame_slice, state_batch


def _timed_story_caption(story: StoryEncoder, frame: dict[str, np.ndarray], bos_id: int,
                         tokens: int) -> tuple[float, float, float]:
    """(new frame's call s, frame + story graph s, whole caption s) of one next caption."""
    clock = time.perf_counter
    start = clock()
    story.push(frame)
    after_frame = clock()
    state = story.state()
    after_story = clock()
    backend = story.backend
    token = np.full((state_batch(state),), bos_id, np.int32)
    for _ in range(tokens):
        logits, state = backend.step(token, state)
        token = backend.token_ids(logits.argmax(axis=-1))  # a shortlist step: logit index -> vocabulary id
    end = clock()
    return after_frame - start, after_story - start, end - start


class StoryCaptions:
    """Story mode's next captions on one backend, ready to time: the story begun (its reason graph
    run and timed once), the window's k frames cached. Calling it with ``i`` times one next caption
    that pushes frame ``i % k`` of the window again (see the module doc)."""

    def __init__(self, backend: Backend, inputs: dict[str, np.ndarray], bos_id: int, caption_tokens: int) -> None:
        self.story = StoryEncoder(backend)
        self.bos_id, self.caption_tokens = bos_id, caption_tokens
        self.story.begin(inputs)  # the first call loads the graph files (or traces): not timed
        t0 = time.perf_counter()
        self.story.begin(inputs)
        self.reason_s = time.perf_counter() - t0
        self.frames = [frame_slice(self.story.spec, inputs, i) for i in range(self.story.spec.window)]
        for frame in self.frames:
            self.story.push(frame)

    def __call__(self, i: int) -> tuple[float, float, float]:
        return _timed_story_caption(self.story, self.frames[i % len(self.frames)], self.bos_id, self.caption_tokens)

    def latency(self, timed: list[tuple[float, float, float]], warmup: int, runs: int,
                full: Latency | None = None) -> StoryLatency:
        """The :class:`StoryLatency` of ``runs`` timed calls; ``full``: the same backend's
        full-window latency, for the ratios."""
        frame_s, encoder_s, caption_s = zip(*timed)
        encoder = latency_stats(encoder_s)
        caption = latency_stats(caption_s)
        return StoryLatency(
            caption_tokens=self.caption_tokens, warmup=warmup, runs=runs, window=len(self.frames),
            frame=latency_stats(frame_s), encoder=encoder, caption=caption,
            reason_ms=self.reason_s * 1e3 if self.story.spec.reason_graph else None,
            encoder_vs_full=encoder.p50_ms / full.encoder.p50_ms if full else None,
            caption_vs_full=caption.p50_ms / full.caption.p50_ms if full else None,
            one_call=self.story.one_call,
        )


def story_captions(backend: Backend, inputs: dict[str, np.ndarray], bos_id: int,
                   caption_tokens: int) -> StoryCaptions | None:
    """:class:`StoryCaptions` of ``backend``; None when it has no story-mode graphs."""
    if getattr(backend, "story", None) is None:
        return None
    return StoryCaptions(backend, inputs, bos_id, caption_tokens)
