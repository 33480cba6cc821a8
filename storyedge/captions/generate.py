"""Captions of eval windows through any :class:`~storyedge.runtime.Backend`: greedy or beam.

numpy only (the backend may be the TF reference). Windows are a dict of arrays with a leading
window axis (``frames``, ``captions``, optionally ``reason``; a ``target`` key is ignored), fed
in static batches of ``batch`` rows, the last one padded by repeating its last window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from storyedge.runtime import Backend, beam_search, greedy_decode

#: window arrays that are not encoder inputs
NOT_ENCODER_INPUTS = ("target",)


def window_captions(
    backend: Backend,
    windows: dict[str, np.ndarray],
    *,
    batch: int,
    bos_id: int,
    eos_id: int,
    max_new: int,
    beam: int = 1,
    length_penalty: float = 1.0,
    progress: Callable[[int], Any] | None = None,
) -> list[list[int]]:
    """One caption per window (token ids, without ``[EOS]``): greedy for ``beam == 1``, else the
    best hypothesis of :func:`~storyedge.runtime.beam_search` with ``beam`` beams."""
    feed_keys = [k for k in windows if k not in NOT_ENCODER_INPUTS]
    n = int(next(iter(windows.values())).shape[0])
    out: list[list[int]] = []
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        index = np.arange(start, start + batch).clip(max=stop - 1)
        state = backend.encode({k: windows[k][index] for k in feed_keys})
        if beam == 1:
            hyps = greedy_decode(backend, state, bos_id, eos_id, max_new)[: stop - start]
        else:
            hyps = [beam_search(backend, _row(state, r, batch), bos_id, eos_id, max_new, beam, length_penalty)[0]
                    for r in range(stop - start)]
        out.extend(h.caption_ids(eos_id) for h in hyps)
        if progress is not None:
            progress(stop - start)
    return out


def _row(state: dict[str, np.ndarray], row: int, batch: int) -> dict[str, np.ndarray]:
    """Row ``row`` of ``state`` repeated to the static batch (beam search reads row 0)."""
    return {k: np.repeat(v[row : row + 1], batch, axis=0) for k, v in state.items()}


def texts(tokenizer: Any, captions: Iterable[Iterable[int]]) -> list[str]:
    """Each caption's text through the run tokenizer (stops at ``[EOS]``, drops special tokens)."""
    return [tokenizer.decode(list(ids)) for ids in captions]
