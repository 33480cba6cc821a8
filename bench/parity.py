"""Teacher-forced perplexity and greedy-caption parity of every backend against the reference.

One pass over the eval windows drives all backends side by side: per static batch of windows
each backend encodes, then steps through the target ``[BOS] … [EOS]`` (teacher forcing: the
true token is fed at each position, position t's logits predict ``target[t+1]``), and each
backend's logits are compared with the reference's at the same position, so no logits are
stored. Then each backend greedy-decodes a caption per window from its own encoder state, and
its captions are compared with the reference's. Written against :class:`Backend` only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from storyedge.bench.inputs import encoder_feed, iter_batches, num_windows
from storyedge.bench.metrics import TokenStats, parity_result
from storyedge.bench.results import ParityStats
from storyedge.runtime import Backend, greedy_decode


@dataclass
class GreedySample:
    """One eval window: its target ids and each backend's greedy caption ids."""

    window: int
    target: list[int]
    greedy: dict[str, list[int]]


@dataclass
class ParityRun:
    """Results of :func:`run_parity`."""

    results: list[ParityStats]
    windows: int
    #: a few windows' greedy captions per backend, for the report
    samples: list[GreedySample] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    #: every window's greedy caption ids per backend (with the final [EOS] where it ended), in window order
    captions: dict[str, list[list[int]]] = field(default_factory=dict)
    #: every window's target ids (``[BOS] … [EOS]`` padded), in window order
    targets: list[list[int]] = field(default_factory=list)


def _timed(seconds: dict[str, float], name: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, adding its wall time to ``seconds[name]``."""
    start = time.perf_counter()
    out = fn()
    seconds[name] += time.perf_counter() - start
    return out


def _teacher_force(
    everyone: list[Backend], states: dict[str, Any], target: np.ndarray, real: np.ndarray,
    stats: dict[str, TokenStats], seconds: dict[str, float],
) -> None:
    """Step every backend through ``target`` (``everyone[0]`` is the reference), stopping after the
    batch's last real target token, and compare each position's logits with the reference's."""
    last = int(np.nonzero(real.any(axis=0))[0].max()) + 1 if real.any() else 0
    states = dict(states)
    for t in range(last):
        token, next_token, mask = target[:, t], target[:, t + 1], real[:, t]
        ref_logits = None
        for b in everyone:
            logits, states[b.name] = _timed(seconds, b.name, lambda: b.step(token, states[b.name]))
            stats[b.name].add(logits, next_token, mask, ref_logits)
            if ref_logits is None:
                ref_logits = logits


def run_parity(
    reference: Backend,
    backends: list[Backend],
    windows: dict[str, np.ndarray],
    *,
    batch: int,
    pad_id: int,
    bos_id: int,
    eos_id: int,
    max_new: int,
    samples: int = 3,
    progress: Callable[[int], Any] | None = None,
) -> ParityRun:
    """Parity of ``backends`` against ``reference`` on ``windows`` (see module doc).

    ``max_new``: greedy captions stop after this many tokens (``max_caption_len - 1``: the
    framed caption ``[BOS] … [EOS]`` then fits the caption length).
    """
    everyone = [reference, *backends]
    stats = {b.name: TokenStats() for b in everyone}
    greedy_same = {b.name: 0 for b in backends}
    seconds = {b.name: 0.0 for b in everyone}
    sample_rows: list[GreedySample] = []
    all_captions: dict[str, list[list[int]]] = {b.name: [] for b in everyone}
    all_targets: list[list[int]] = []
    seen = 0
    for chunk, valid in iter_batches(windows, batch):
        feed = encoder_feed(chunk)
        target = chunk["target"].astype(np.int32)
        states = {b.name: _timed(seconds, b.name, lambda: b.encode(feed)) for b in everyone}
        _teacher_force(everyone, states, target, (target[:, 1:] != pad_id) & valid[:, None], stats, seconds)
        # Greedy captions from each backend's own encoder state.
        captions = {
            b.name: [h.tokens for h in _timed(
                seconds, b.name, lambda: greedy_decode(b, states[b.name], bos_id, eos_id, max_new))]
            for b in everyone
        }
        for row in np.nonzero(valid)[0]:
            all_targets.append([int(x) for x in target[row]])
            for b in everyone:
                all_captions[b.name].append(captions[b.name][row])
            for b in backends:
                greedy_same[b.name] += int(captions[b.name][row] == captions[reference.name][row])
            if len(sample_rows) < samples:
                greedy = {name: caps[row] for name, caps in captions.items()}
                sample_rows.append(GreedySample(seen + int(row), [int(x) for x in target[row]], greedy))
        seen += int(valid.sum())
        if progress is not None:
            progress(int(valid.sum()))
    n = num_windows(windows)
    ref_stats = stats[reference.name]
    results = [parity_result(reference.name, reference.precision, ref_stats, None, 0, n)]
    results += [
        parity_result(b.name, b.precision, stats[b.name], ref_stats, greedy_same[b.name], n) for b in backends
    ]
    return ParityRun(results, n, sample_rows, seconds, all_captions, all_targets)
