"""The synthetic data's own PPL floor: the paraphrase entropy of caption k+1 given its window.

Given a window (k frames + captions), the next *event* is determined (the pixel oracle of
:mod:`storyedge.data.oracle` reads it); only the paraphrase is random, with the distribution
:func:`storyedge.data.paraphrase.caption_options` knows. Over token sequences of the run's
tokenizer (two paraphrases that encode to the same ids are one outcome), per window::

    H = -sum_c p(c) log p(c)            E[T] = sum_c p(c) * (predicted tokens of c, [EOS] included)

and the floor is ``exp(sum H / sum E[T])`` over the eval windows: no model's expected corpus
PPL (training's and the bench's: ``exp(total NLL / total predicted tokens)``) can go below it.
The oracle's exact-match rate is how often the most likely paraphrase is the one written.

Monte-Carlo check: the written captions are the generator's own samples, so the mean of
``-log p(written caption)`` estimates the mean ``H`` (reported with its standard error).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import datasets
import numpy as np

from storyedge.data.oracle import next_event_from_window
from storyedge.data.paraphrase import caption_options
from storyedge.data.pipeline import CaptionTokenizer
from storyedge.data.windows import iter_raw_rows, window_starts
from storyedge.errors import DataError


@dataclass(frozen=True)
class DataFloor:
    """The entropy floor of one split's windows, in PPL units of the given tokenizer."""

    split: str
    windows: int
    #: mean entropy of caption k+1 given its window, nats per caption
    mean_entropy: float
    #: mean expected predicted tokens per caption ([EOS] counted, [BOS] not)
    mean_tokens: float
    #: exp(mean_entropy / mean_tokens)
    floor_ppl: float
    #: share of windows whose written caption is the most likely paraphrase
    oracle_exact_match: float
    #: Monte-Carlo estimate of mean_entropy: mean -log p(written caption), and its standard error
    mc_mean_entropy: float
    mc_standard_error: float

    @property
    def mc_floor_ppl(self) -> float:
        """The floor with the Monte-Carlo entropy estimate."""
        return math.exp(self.mc_mean_entropy / self.mean_tokens)

    def excess(self, ppl: float | None) -> float | None:
        """``ppl - floor_ppl`` (None when ``ppl`` is None)."""
        return None if ppl is None else ppl - self.floor_ppl

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain dict (JSON-serialisable)."""
        return asdict(self)


def _predicted(tokenizer: CaptionTokenizer, text: str, max_len: int) -> tuple[int, ...]:
    """The ids a decoder predicts for ``text``: after [BOS], through [EOS], no padding."""
    ids = list(tokenizer.encode_caption(text, max_len))[1:]
    return tuple(i for i in ids if i != tokenizer.pad_id)


def window_distribution(
    captions: Sequence[str], last_frame: bytes, tokenizer: CaptionTokenizer, max_len: int
) -> dict[tuple[int, ...], float] | None:
    """The distribution of caption k+1's token ids given the window; None when the window is not
    one the synthetic oracle reads."""
    event = next_event_from_window(captions, last_frame)
    if event is None:
        return None
    dist: dict[tuple[int, ...], float] = {}
    for option in caption_options(event):
        ids = _predicted(tokenizer, option.text, max_len)
        dist[ids] = dist.get(ids, 0.0) + option.prob
    return dist


def data_floor(
    split: datasets.Dataset,
    tokenizer: CaptionTokenizer,
    k: int,
    max_caption_len: int,
    split_name: str = "validation",
    max_windows: int | None = None,
) -> DataFloor:
    """The floor over ``split``'s windows (the first ``max_windows``, in the order
    :func:`storyedge.data.pipeline.encode_windows` uses).

    :class:`DataError` naming the split when it has no window, or when a window is not one of
    the synthetic world (its next event cannot be read).
    """
    entropies: list[float] = []
    tokens: list[float] = []
    written_nll: list[float] = []
    exact = 0
    for row in iter_raw_rows(split):
        captions, frames = list(row["captions"]), row["frames"]
        for start in window_starts(min(len(captions), len(frames)), k):
            if max_windows is not None and len(entropies) >= max_windows:
                break
            dist = window_distribution(
                captions[start : start + k], frames[start + k - 1]["bytes"], tokenizer, max_caption_len
            )
            if dist is None:
                raise DataError(
                    f"{split_name} split: story {row.get('story_id')!r} window {start} is not a "
                    "synthetic-world window (no data floor for it)"
                )
            probs = np.array(list(dist.values()))
            entropies.append(float(-(probs * np.log(probs)).sum()))
            tokens.append(float(sum(p * len(ids) for ids, p in dist.items())))
            written = _predicted(tokenizer, captions[start + k], max_caption_len)
            p_written = dist.get(written, 0.0)
            written_nll.append(-math.log(p_written) if p_written > 0 else math.inf)
            exact += written == max(dist, key=lambda ids: dist[ids])
    n = len(entropies)
    if n == 0:
        raise DataError(
            f"{split_name} split has no windows (stories need at least k+1 = {k + 1} frames): "
            "no data floor"
        )
    mean_h, mean_t = float(np.mean(entropies)), float(np.mean(tokens))
    nll = np.array(written_nll)
    se = float(nll.std(ddof=1) / math.sqrt(n)) if n > 1 else math.inf
    return DataFloor(
        split=split_name,
        windows=n,
        mean_entropy=mean_h,
        mean_tokens=mean_t,
        floor_ppl=math.exp(mean_h / mean_t),
        oracle_exact_match=exact / n,
        mc_mean_entropy=float(nll.mean()),
        mc_standard_error=se,
    )
