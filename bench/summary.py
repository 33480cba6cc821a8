"""The summary a user acts on, and the user's budgets, from the measured :class:`BackendResult` s.

* **Eligible** backends: the exported ones (never the TF reference) that pass every parity gate
  and every caption-quality gate;
  under ``--latency-only`` parity did not run, so every exported backend is eligible and the
  summary says parity was not checked.
* **Picks**, among the eligible: the fastest caption (caption p50), the fastest decoder step
  (step p50) and the smallest file (bytes on disk), each with its speed-up over the TF
  reference (reference p50 / its p50; of the caption for the caption and the file, of the step
  for the step) and, where the roofline floor binds (the step's weights are not known to fit in
  the last-level cache), its step p50 as a multiple of the floor at its precision.
* **Budgets** (:class:`~storyedge.bench.results.Budgets`, unset by default): every backend gets a
  verdict per set budget, ``value <= limit`` on the measures of :data:`BUDGET_MEASURES`, and
  the summary names the fastest-caption eligible backend within every set budget.

The peak-RSS measure estimates the peak resident memory of a process that runs only that
backend: the RSS of a fresh process holding Python, numpy and storyedge's runtime but no backend
(``baseline_rss_mb``, :func:`storyedge.bench.latency.baseline_rss_bytes`) plus what creating the
backend and its first inference added in the bench process (``rss_delta_mb``, counted as 0 when
negative). A lower bound, like the delta it is built on: a runtime's shared library counts only in
the delta of the first backend that loaded it.
"""

from __future__ import annotations

from typing import Callable

from storyedge.bench.results import BackendResult, Budgets, BudgetVerdict, Pick, Summary

#: budget name (a :class:`Budgets` field, a key of BUDGET_LABELS) → the backend's figure it limits
#: (None: not measured, e.g. the file size of the in-memory reference)
BUDGET_MEASURES: dict[str, Callable[[BackendResult], float | None]] = {
    "caption_ms": lambda b: b.latency.caption.p50_ms,
    "step_ms": lambda b: b.latency.step.p50_ms,
    "encoder_ms": lambda b: b.latency.encoder.p50_ms,
    "size_mb": lambda b: b.size_mb,
    "peak_rss_mb": lambda b: b.peak_rss_estimate_mb,
}


def peak_rss_estimate_mb(baseline_rss_mb: float, rss_delta_mb: float) -> float:
    """Estimated peak RSS of a process running only one backend (see the module doc)."""
    return baseline_rss_mb + max(rss_delta_mb, 0.0)


def budget_verdicts(result: BackendResult, budgets: Budgets) -> list[BudgetVerdict]:
    """One verdict per set budget: within when the measure is at most the limit."""
    verdicts = []
    for name, limit in budgets.limits().items():
        value = BUDGET_MEASURES[name](result)
        verdicts.append(BudgetVerdict(name, limit, value, None if value is None else value <= limit))
    return verdicts


def eligible(results: list[BackendResult], parity_checked: bool) -> list[BackendResult]:
    """The exported backends a pick may name: passing every gate (all of them without parity)."""
    # Vocabulary-shortlist backends are reported beside the full-vocabulary ones, never picked.
    exported = [b for b in results if not b.reference and b.layout != "shortlist"]
    if not parity_checked:
        return exported
    return [b for b in exported if b.parity is not None and b.parity.passed and b.quality_passed]


def _pick(result: BackendResult, reference: BackendResult | None, value: float, unit: str, speedup_of: str) -> Pick:
    speedup = None
    if reference is not None:
        own = result.latency.caption if speedup_of == "caption" else result.latency.step
        ref = reference.latency.caption if speedup_of == "caption" else reference.latency.step
        speedup = ref.p50_ms / own.p50_ms
    if result.floors is not None:
        floor, binding = result.floors.step.vs_floor, result.floors.step.binding
    else:
        binds = result.roofline.floor_binds
        floor, binding = (result.roofline.step_vs_floor, "bytes") if binds else (None, "")
    return Pick(result.name, value, unit, speedup, speedup_of, floor, binding)


def summarize(results: list[BackendResult], parity_checked: bool, budgets: Budgets) -> Summary:
    """The picks of the module doc over ``results`` (budget verdicts already filled in)."""
    reference = next((b for b in results if b.reference), None)
    pool = eligible(results, parity_checked)
    summary = Summary(parity_checked=parity_checked, reference=reference.name if reference else None,
                      eligible=[b.name for b in pool], budgets_set=bool(budgets.limits()))
    if pool:
        cap = min(pool, key=lambda b: b.latency.caption.p50_ms)
        summary.fastest_caption = _pick(cap, reference, cap.latency.caption.p50_ms, "ms", "caption")
        step = min(pool, key=lambda b: b.latency.step.p50_ms)
        summary.fastest_step = _pick(step, reference, step.latency.step.p50_ms, "ms", "step")
        sized = [b for b in pool if b.size_mb is not None]
        if sized:
            small = min(sized, key=lambda b: (b.size_bytes, b.latency.caption.p50_ms))
            summary.smallest_file = _pick(small, reference, small.size_bytes / 1e6, "MB", "caption")
    within = [b for b in pool if not b.over_budget]
    if summary.budgets_set and within:
        best = min(within, key=lambda b: b.latency.caption.p50_ms)
        summary.within_budgets = _pick(best, reference, best.latency.caption.p50_ms, "ms", "caption")
    return summary
