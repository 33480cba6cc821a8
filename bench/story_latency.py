"""Story mode's next-caption latency, against the :class:`Backend` interface (numpy only).

Story mode (:mod:`storyedge.runtime.story`) caches each frame's fused vector, so the next
caption of a story costs one frame-graph call (the new frame), one story-graph call (the last k
cached vectors → the decoder state), or one call of both where the backend has the frame + story
graph, and the decoding. After the window's k frames are cached
and ``warmup`` untimed captions, each of ``runs`` timed captions pushes one frame of the window
again (cycling), then decodes ``caption_tokens`` greedy steps forced to full length, like the
full-window caption it is reported beside (``encoder_vs_full`` / ``caption_vs_full``: p50
ratios to the full-window figures of the same backend in the same run). The reason graph runs
once per story: its time is reported apart (``reason``), not in the caption.
"""

from __future__ import annotations

import time

import numpy as np

from storyedge.bench.latency import repeat_timed
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


def measure_story_latency(
    backend: Backend, inputs: dict[str, np.ndarray], bos_id: int, caption_tokens: int, warmup: int, runs: int,
    full: Latency | None = None,
) -> StoryLatency | None:
    """Story mode's next-caption latency (see the module doc); None when the backend has no
    story-mode graphs. ``full``: the backend's full-window latency, for the ratios."""
    if getattr(backend, "story", None) is None:
        return None
    story = StoryEncoder(backend)
    story.begin(inputs)  # the first call loads the graph files (or traces): not timed
    t0 = time.perf_counter()
    story.begin(inputs)
    reason_s = time.perf_counter() - t0
    k = story.spec.window
    frames = [frame_slice(story.spec, inputs, i) for i in range(k)]
    for frame in frames:
        story.push(frame)
    timed = repeat_timed(lambda i: _timed_story_caption(story, frames[i % k], bos_id, caption_tokens), warmup, runs)
    frame_s, encoder_s, caption_s = zip(*timed)
    encoder = latency_stats(encoder_s)
    caption = latency_stats(caption_s)
    return StoryLatency(
        caption_tokens=caption_tokens, warmup=warmup, runs=runs, window=k,
        frame=latency_stats(frame_s), encoder=encoder, caption=caption,
        reason_ms=reason_s * 1e3 if story.spec.reason_graph else None,
        encoder_vs_full=encoder.p50_ms / full.encoder.p50_ms if full else None,
        caption_vs_full=caption.p50_ms / full.caption.p50_ms if full else None,
        one_call=story.one_call,
    )
