"""Numpy-only metrics of the benchmark: parity accumulators and latency statistics (the gates
that judge them are :class:`storyedge.bench.results.Gates`).

Everything here works on plain arrays so it can be unit-tested with hand-made logits and used
on the runtime-only path (no TensorFlow).

Parity definitions (per backend, against the TF reference, over the same eval windows):

* ``ppl``: ``exp(mean NLL)`` over the non-pad target tokens, the target framed ``[BOS] … [EOS]``
  (position t's logits predict ``target[t+1]``; ``[BOS]`` is never predicted).
* ``ppl_ratio``: ``ppl_backend / ppl_reference``.
* ``kl``: mean over the same positions of ``KL(p_ref ‖ p_backend)`` of the next-token
  distributions (nats).
* ``top1_agreement``: fraction of those positions where both argmaxes agree.
* ``top1_decisive``: the same over the *decisive* positions only, where the reference's top logit
  leads its runner-up by at least ``TOP1_TIE_MARGIN`` (the top-1 gates use it); ``near_ties``: the
  share of positions that are not decisive (1.0 when none is, and ``top1_decisive`` is then NaN).
* ``greedy_agreement``: fraction of windows whose greedy caption (from ``[BOS]`` until ``[EOS]`` or
  ``max_caption_len`` tokens) is token-for-token identical to the reference's.
* ``max_abs_logit_diff``: max ``|logit_backend - logit_ref|`` over those positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from storyedge.bench.results import LatencyStats, ParityStats
from storyedge.constants import TOP1_TIE_MARGIN
from storyedge.runtime.decoding import log_softmax


def token_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``-log p(target)`` per row: logits [N,V], targets [N] → [N]."""
    logp = log_softmax(logits)
    return -np.take_along_axis(logp, np.asarray(targets)[:, None].astype(np.int64), axis=-1)[:, 0]


def kl_divergence(ref_logits: np.ndarray, logits: np.ndarray) -> np.ndarray:
    """``KL(softmax(ref) ‖ softmax(logits))`` per row (nats, ≥ 0): [N,V] x [N,V] → [N]."""
    ref_logp = log_softmax(ref_logits)
    logp = log_softmax(logits)
    kl = (np.exp(ref_logp) * (ref_logp - logp)).sum(axis=-1)
    return np.maximum(kl, 0.0)  # round-off can give -1e-17


def perplexity(nll_sum: float, count: int) -> float:
    """``exp(nll_sum / count)``; NaN when nothing was counted."""
    return math.exp(nll_sum / count) if count else float("nan")


@dataclass
class TokenStats:
    """Running sums over predicted (non-pad) target positions of one backend."""

    nll_sum: float = 0.0
    count: int = 0
    kl_sum: float = 0.0
    top1_agree: int = 0
    #: positions where the reference's top-2 logit margin is >= TOP1_TIE_MARGIN, and agreement there
    decisive: int = 0
    decisive_agree: int = 0
    max_abs_logit_diff: float = 0.0

    def add(self, logits: np.ndarray, targets: np.ndarray, mask: np.ndarray, ref_logits: np.ndarray | None) -> None:
        """Accumulate one decoder position for a batch: logits [B,V], targets [B], mask [B] bool."""
        mask = np.asarray(mask, bool)
        if not mask.any():
            return
        logits, targets = np.asarray(logits)[mask], np.asarray(targets)[mask]
        self.nll_sum += float(token_nll(logits, targets).sum())
        self.count += int(mask.sum())
        if ref_logits is not None:
            ref = np.asarray(ref_logits)[mask]
            self.kl_sum += float(kl_divergence(ref, logits).sum())
            agree = ref.argmax(-1) == logits.argmax(-1)
            self.top1_agree += int(agree.sum())
            top2 = np.partition(ref, -2, axis=-1)[:, -2:]
            decisive = (top2[:, 1] - top2[:, 0]) >= TOP1_TIE_MARGIN
            self.decisive += int(decisive.sum())
            self.decisive_agree += int((agree & decisive).sum())
            diff = float(np.abs(logits.astype(np.float64) - ref.astype(np.float64)).max())
            self.max_abs_logit_diff = max(self.max_abs_logit_diff, diff)

    @property
    def ppl(self) -> float:
        """exp(mean NLL); NaN when nothing was counted."""
        return perplexity(self.nll_sum, self.count)

    @property
    def mean_nll(self) -> float:
        """Mean NLL per counted token; NaN when nothing was counted."""
        return self.nll_sum / self.count if self.count else float("nan")


def parity_result(
    backend: str,
    precision: str,
    stats: TokenStats,
    ref: TokenStats | None,
    greedy_same: int,
    windows: int,
) -> ParityStats:
    """Summarise a backend's :class:`TokenStats` (``ref`` None: this *is* the reference)."""
    result = ParityStats(backend, precision, stats.ppl, stats.mean_nll, stats.count, windows)
    if ref is not None:
        result.ppl_ratio = stats.ppl / ref.ppl if ref.count else float("nan")
        result.kl = stats.kl_sum / stats.count if stats.count else float("nan")
        result.top1_agreement = stats.top1_agree / stats.count if stats.count else float("nan")
        result.top1_decisive = stats.decisive_agree / stats.decisive if stats.decisive else float("nan")
        result.near_ties = 1.0 - stats.decisive / stats.count if stats.count else float("nan")
        result.greedy_agreement = greedy_same / windows if windows else float("nan")
        result.max_abs_logit_diff = stats.max_abs_logit_diff
    return result


# --------------------------------------------------------------------------- latency stats


def latency_stats(seconds: list[float] | np.ndarray) -> LatencyStats:
    """count, mean, p50/p90/p95/p99 (linear interpolation), sample stdev (0 for one sample), min,
    max in ms; NaN figures for no samples."""
    ms = np.asarray(seconds, np.float64) * 1e3
    if ms.size == 0:
        nan = float("nan")
        return LatencyStats(0, nan, nan, nan, nan, nan, nan, nan, nan)
    p50, p90, p95, p99 = (float(p) for p in np.percentile(ms, [50, 90, 95, 99]))
    stdev = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    return LatencyStats(int(ms.size), float(ms.mean()), p50, p90, p95, p99, stdev, float(ms.min()), float(ms.max()))
