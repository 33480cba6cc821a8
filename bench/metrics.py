"""Numpy-only metrics of the benchmark: parity accumulators, latency statistics and gates.

Everything here works on plain arrays so it can be unit-tested with hand-made logits and used
on the runtime-only path (no TensorFlow).

Parity definitions (per backend, against the TF reference, over the same eval windows):

* ``ppl``: ``exp(mean NLL)`` over the non-pad target tokens, the target framed ``[BOS] … [EOS]``
  (position t's logits predict ``target[t+1]``; ``[BOS]`` is never predicted).
* ``ppl_ratio``: ``ppl_backend / ppl_reference``.
* ``kl``: mean over the same positions of ``KL(p_ref ‖ p_backend)`` of the next-token
  distributions (nats).
* ``top1_agreement``: fraction of those positions where both argmaxes agree.
* ``greedy_agreement``: fraction of windows whose greedy caption (from ``[BOS]`` until ``[EOS]`` or
  ``max_caption_len`` tokens) is token-for-token identical to the reference's.
* ``max_abs_logit_diff``: max ``|logit_backend - logit_ref|`` over those positions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
            self.top1_agree += int((ref.argmax(-1) == logits.argmax(-1)).sum())
            diff = float(np.abs(logits.astype(np.float64) - ref.astype(np.float64)).max())
            self.max_abs_logit_diff = max(self.max_abs_logit_diff, diff)

    @property
    def ppl(self) -> float:
        return perplexity(self.nll_sum, self.count)

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.count if self.count else float("nan")


@dataclass
class ParityResult:
    """Parity of one backend against the reference (the reference's own row has ratio 1)."""

    backend: str
    precision: str
    ppl: float
    mean_nll: float
    tokens: int
    windows: int
    ppl_ratio: float = 1.0
    kl: float = 0.0
    top1_agreement: float = 1.0
    greedy_agreement: float = 1.0
    max_abs_logit_diff: float = 0.0
    #: gate name → {"value", "limit", "op", "passed"}
    gates: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return all(g["passed"] for g in self.gates.values())


def parity_result(
    backend: str,
    precision: str,
    stats: TokenStats,
    ref: TokenStats | None,
    greedy_same: int,
    windows: int,
) -> ParityResult:
    """Summarise a backend's :class:`TokenStats` (``ref`` None: this *is* the reference)."""
    result = ParityResult(backend, precision, stats.ppl, stats.mean_nll, stats.count, windows)
    if ref is not None:
        result.ppl_ratio = stats.ppl / ref.ppl if ref.count else float("nan")
        result.kl = stats.kl_sum / stats.count if stats.count else float("nan")
        result.top1_agreement = stats.top1_agree / stats.count if stats.count else float("nan")
        result.greedy_agreement = greedy_same / windows if windows else float("nan")
        result.max_abs_logit_diff = stats.max_abs_logit_diff
    return result


# ----------------------------------------------------------------------------------- gates


@dataclass
class Gates:
    """Parity gates per precision (defaults: :class:`storyedge.config.BenchConfig`)."""

    fp32_ppl_ratio_tol: float = 1e-3
    fp32_greedy_agreement: float = 1.0
    fp16_ppl_ratio_max: float = 1.005
    int8_dynamic_ppl_ratio_max: float = 1.02
    int8_dynamic_top1_min: float = 0.95
    int8_ppl_ratio_max: float = 1.05

    @classmethod
    def from_bench_config(cls, bench: Any, **overrides: float | None) -> "Gates":
        gates = cls(
            fp32_ppl_ratio_tol=bench.gate_fp32_ppl_ratio_tol,
            fp32_greedy_agreement=bench.gate_fp32_greedy_agreement,
            fp16_ppl_ratio_max=bench.gate_fp16_ppl_ratio_max,
            int8_dynamic_ppl_ratio_max=bench.gate_int8_dynamic_ppl_ratio_max,
            int8_dynamic_top1_min=bench.gate_int8_dynamic_top1_min,
            int8_ppl_ratio_max=bench.gate_int8_ppl_ratio_max,
        )
        for key, value in overrides.items():
            if value is not None:
                setattr(gates, key, float(value))
        return gates

    def checks(self, precision: str) -> list[tuple[str, str, str, float]]:
        """(gate name, metric attribute, op, limit) for a precision; op is ``<=``, ``>=`` or ``|1-x|<=``."""
        if precision == "fp32":
            return [
                ("ppl_ratio", "ppl_ratio", "|x-1|<=", self.fp32_ppl_ratio_tol),
                ("greedy_agreement", "greedy_agreement", ">=", self.fp32_greedy_agreement),
            ]
        if precision == "fp16":
            return [("ppl_ratio", "ppl_ratio", "<=", self.fp16_ppl_ratio_max)]
        if precision == "int8-dynamic":
            return [
                ("ppl_ratio", "ppl_ratio", "<=", self.int8_dynamic_ppl_ratio_max),
                ("top1_agreement", "top1_agreement", ">=", self.int8_dynamic_top1_min),
            ]
        if precision == "int8":
            return [("ppl_ratio", "ppl_ratio", "<=", self.int8_ppl_ratio_max)]
        return []

    def apply(self, result: ParityResult) -> ParityResult:
        """Fill ``result.gates``; NaN metrics fail their gate."""
        for name, attribute, op, limit in self.checks(result.precision):
            value = float(getattr(result, attribute))
            if op == "<=":
                passed = value <= limit
            elif op == ">=":
                passed = value >= limit
            else:
                passed = abs(value - 1.0) <= limit
            result.gates[name] = {"value": value, "op": op, "limit": limit, "passed": bool(passed)}
        return result

    def lines(self, precision: str) -> list[float]:
        """PPL-ratio gate line(s) for plots."""
        for name, _, op, limit in self.checks(precision):
            if name == "ppl_ratio":
                return [1 - limit, 1 + limit] if op == "|x-1|<=" else [limit]
        return []


# --------------------------------------------------------------------------- latency stats

LATENCY_FIELDS = ("count", "mean_ms", "p50_ms", "p90_ms", "p95_ms", "p99_ms", "stdev_ms", "min_ms", "max_ms")


def latency_stats(seconds: list[float] | np.ndarray) -> dict[str, float]:
    """count, mean, p50/p90/p95/p99 (linear interpolation), sample stdev, min, max in ms."""
    ms = np.asarray(seconds, np.float64) * 1e3
    if ms.size == 0:
        return {"count": 0, **{k: float("nan") for k in LATENCY_FIELDS[1:]}}
    p50, p90, p95, p99 = np.percentile(ms, [50, 90, 95, 99])
    return {
        "count": int(ms.size),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "stdev_ms": float(ms.std(ddof=1)) if ms.size > 1 else 0.0,
        "min_ms": float(ms.min()),
        "max_ms": float(ms.max()),
    }
